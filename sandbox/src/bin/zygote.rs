//! The sandbox zygote as a program of its own, for this crate's tests and bench (the
//! server binary runs the same function as `scriptorium __sandbox-zygote`).

// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the sandbox zygote exists on Linux only");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn main() {
    let zygote = std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == scriptorium_sandbox::linux::ZYGOTE_SUBCOMMAND);
    if !zygote {
        eprintln!(
            "usage: {} (started by the linux backend)",
            scriptorium_sandbox::linux::ZYGOTE_SUBCOMMAND
        );
        std::process::exit(2);
    }
    std::process::exit(scriptorium_sandbox::linux::zygote_main());
}
