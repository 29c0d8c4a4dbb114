//! The WASI host as a program of its own, for this crate's tests and bench (the server
//! binary runs the same function as `scriptorium __wasi-host`).

fn main() {
    std::process::exit(scriptorium_sandbox::wasi::host::host_main(
        std::env::args_os().skip(1),
    ));
}
