//! The WASI host as a program of its own, for this crate's tests and bench (the server
//! binary runs the same function as `scriptorium __wasi-host`).

// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]

fn main() {
    // The same program is the linux backend's zygote when the wasi backend uses it.
    #[cfg(target_os = "linux")]
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == scriptorium_sandbox::linux::ZYGOTE_SUBCOMMAND)
    {
        std::process::exit(scriptorium_sandbox::linux::zygote_main());
    }
    std::process::exit(scriptorium_sandbox::wasi::host::host_main(
        std::env::args_os().skip(1),
    ));
}
