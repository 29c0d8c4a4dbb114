//! The WASI host: the process that runs one guest, started by [`super::WasiBackend`]
//! inside the Linux process sandbox (`scriptorium __wasi-host …`, or the crate's own
//! `scriptorium-wasi-host` binary in its tests and bench).
//!
//! It loads the precompiled component (no compilation here), preopens its working
//! directory (the run directory) at `/run`, gives the guest its own stdout and stderr,
//! and exits with the guest's exit code, which the runner reports through
//! `wasi:cli/exit.exit-with-code`: no file is read back after the guest ends.
//!
//! Everything the guest causes is a resource of this process, held by the sandbox's
//! rlimits: each open guest file is one of its descriptors (RLIMIT_NOFILE), each write
//! is checked against RLIMIT_FSIZE, CPU time is RLIMIT_CPU. A write past the file-size
//! limit fails in the guest (wasmtime-wasi reports EFBIG as an I/O error); if the
//! guest then fails, the host ends by SIGXFSZ, so the run names the limit.
//!
//! A failure of the host itself (a trap, a memory limit, a setup error, a panic) is
//! written to stderr as one line and ends the process with SIGABRT, which the guest
//! cannot cause: the backend tells a guest's exit code from a host failure by the signal.

use std::ffi::OsString;
use std::path::PathBuf;
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use super::{GUEST_RUN, engine};

/// The first argument that selects the host in the server binary.
pub const SUBCOMMAND: &str = "__wasi-host";

/// Set to `1` in the host's environment to give the guest the host's stdin.
pub const STDIN_VAR: &str = "SCRIPTORIUM_WASI_STDIN";

/// A host directory to preopen read-only for the guest at [`GUEST_DEPS`] (a script's
/// pure-Python dependencies, put on its `sys.path` by its wrapper).
pub const DEPS_VAR: &str = "SCRIPTORIUM_WASI_DEPS";

/// Where the guest sees the directory of [`DEPS_VAR`].
pub const GUEST_DEPS: &str = "/deps";

/// Prefix of the host's own failure lines on stderr.
pub const FAILURE_PREFIX: &str = "wasi host: ";

struct Guest {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// What the host is asked to run.
#[derive(Debug)]
struct Args {
    cwasm: PathBuf,
    memory_bytes: usize,
    guest_argv: Vec<String>,
}

/// `[__wasi-host] CWASM MEMORY_BYTES GUEST_ARG...`
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == SUBCOMMAND) {
        args.next();
    }
    let usage =
        "usage: __wasi-host CWASM MEMORY_BYTES GUEST_ARG... (started by the server's wasi backend)";
    let cwasm = PathBuf::from(args.next().ok_or(usage)?);
    let memory_bytes = args
        .next()
        .and_then(|m| m.to_str()?.parse().ok())
        .ok_or(usage)?;
    let guest_argv = args
        .map(|a| {
            a.into_string()
                .map_err(|_| "a guest argument is not UTF-8".to_string())
        })
        .collect::<Result<_, _>>()?;
    Ok(Args {
        cwasm,
        memory_bytes,
        guest_argv,
    })
}

/// Runs the guest and returns the process exit code; a host failure does not return.
pub fn host_main(args: impl IntoIterator<Item = OsString>) -> i32 {
    std::panic::set_hook(Box::new(|info| fail(&format!("panicked: {info}"))));
    #[cfg(unix)]
    note_file_size_signals();
    let args = parse(args).unwrap_or_else(|e| fail(&e));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // The guest is one thread; wasmtime-wasi's file calls use a few blocking threads,
        // which count against the sandbox's process limit.
        .max_blocking_threads(4)
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start the runtime: {e}")));
    let code = runtime.block_on(run(args));
    #[cfg(unix)]
    if code != 0 && FILE_SIZE_HIT.load(Ordering::SeqCst) {
        // The guest failed after a write past RLIMIT_FSIZE: end as a native process
        // killed by SIGXFSZ would, so the run names the limit.
        // SAFETY: restoring the default disposition and raising a signal; the default
        // action ends the process (RLIMIT_CORE is 0: no core file).
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            libc::raise(libc::SIGXFSZ);
        }
    }
    code
}

/// Set when a write of the guest went past RLIMIT_FSIZE.
#[cfg(unix)]
static FILE_SIZE_HIT: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_file_size_signal(_: libc::c_int) {
    FILE_SIZE_HIT.store(true, Ordering::SeqCst);
}

/// A write past RLIMIT_FSIZE raises SIGXFSZ, whose default action would end the host
/// at once; instead the write fails with EFBIG in the guest (as native CPython, which
/// ignores the signal, sees it) and the signal is remembered.
#[cfg(unix)]
fn note_file_size_signals() {
    // SAFETY: installs a handler before any other thread exists; the handler only
    // stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_file_size_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGXFSZ, &action, std::ptr::null_mut());
    }
}

async fn run(args: Args) -> i32 {
    let engine = engine().unwrap_or_else(|e| fail(&e.to_string()));
    // SAFETY: the server's `prepare` wrote this file with `precompile_component` of an
    // engine of the same configuration (its compatibility hash is in the file name and
    // is checked again on load); the guest cannot reach it.
    let component = load(&engine, &args.cwasm)
        .unwrap_or_else(|e| fail(&format!("cannot load {}: {e}", args.cwasm.display())));
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .unwrap_or_else(|e| fail(&format!("WASI linker: {e}")));

    let mut builder = WasiCtx::builder();
    builder
        .args(&args.guest_argv)
        .env("HOME", GUEST_RUN)
        .env("LANG", "C.UTF-8")
        .env("PYTHONUNBUFFERED", "1")
        .inherit_stdout()
        .inherit_stderr()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    // The syntax checker's worker reads its sources from stdin (`python.rs` in the
    // actors crate); runs get none (their host's stdin is null anyway).
    if std::env::var_os(STDIN_VAR).is_some_and(|v| v == "1") {
        builder.inherit_stdin();
    }
    builder
        .preopened_dir(".", GUEST_RUN, FsPerms::ReadWrite)
        .unwrap_or_else(|e| fail(&format!("cannot open the run directory: {e}")));
    if let Some(deps) = std::env::var_os(DEPS_VAR) {
        builder
            .preopened_dir(&deps, GUEST_DEPS, FsPerms::ReadOnly)
            .unwrap_or_else(|e| fail(&format!("cannot open the dependencies: {e}")));
    }
    let guest = Guest {
        ctx: builder.build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(args.memory_bytes)
            .instances(64)
            .tables(256)
            .memories(64)
            .build(),
    };
    let mut store = Store::new(&engine, guest);
    store.limiter(|g| &mut g.limits);
    let result = async {
        let command = Command::instantiate_async(&mut store, &component, &linker).await?;
        command.wasi_cli_run().call_run(&mut store).await
    }
    .await;
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(())) => 1,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => *code,
            None => {
                let message = format!("{e:#}");
                let first = message.lines().next().unwrap_or("").to_string();
                if message.contains("memory") && message.contains("grow") {
                    fail(&format!(
                        "MemoryError: the guest's memory could not grow ({first})"
                    ))
                }
                fail(&format!("the guest trapped: {first}"))
            }
        },
    }
}

/// Maps the `.cwasm` (a few ms).
///
/// # Safety
/// `cwasm` must be a compilation by `precompile_component` of an engine of the same
/// configuration (see the caller).
#[cfg(not(windows))]
fn load(engine: &wasmtime::Engine, cwasm: &std::path::Path) -> wasmtime::Result<Component> {
    // SAFETY: see the caller; the guest cannot reach the file.
    unsafe { Component::deserialize_file(engine, cwasm) }
}

/// Reads the `.cwasm` into memory: under Wine 8.0 the file mapping `deserialize_file`
/// makes cannot be made executable ("failed to load code"), so Windows copies it.
#[cfg(windows)]
fn load(engine: &wasmtime::Engine, cwasm: &std::path::Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(cwasm)?;
    // SAFETY: as for the mapped file: written by the server's `prepare` with an engine
    // of the same configuration; the guest cannot reach it.
    unsafe { Component::deserialize(engine, &bytes) }
}

/// Reports a failure of the host on stderr and ends the process with SIGABRT.
fn fail(message: &str) -> ! {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n{FAILURE_PREFIX}{}", message.replace('\n', " "));
    let _ = err.flush();
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_with_and_without_the_subcommand() {
        let a = parse(
            [
                "__wasi-host",
                "/b/c.cwasm",
                "1048576",
                "python",
                "/run/s.py",
            ]
            .map(OsString::from),
        )
        .unwrap();
        assert_eq!(
            (a.cwasm, a.memory_bytes, a.guest_argv),
            (
                PathBuf::from("/b/c.cwasm"),
                1 << 20,
                vec!["python".to_string(), "/run/s.py".into()]
            )
        );
        let a = parse(["/b/c.cwasm", "5", "python"].map(OsString::from)).unwrap();
        assert_eq!(a.memory_bytes, 5);
        assert!(
            parse(["__wasi-host", "/b/c.cwasm"].map(OsString::from))
                .unwrap_err()
                .contains("usage")
        );
        assert!(parse(["/b/c.cwasm", "lots"].map(OsString::from)).is_err());
    }
}
