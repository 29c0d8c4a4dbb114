//! The `wasi` backend: CPython 3.14 for WASI (a `wasi:cli/command` component built by
//! componentize-py at set-up, see `scripts/build-wasi.sh`) inside wasmtime.
//!
//! The guest does not run in the server. Each run starts a [`host`] process (the server
//! binary's hidden `__wasi-host` subcommand) through the Linux process sandbox: the same
//! namespaces, Landlock rules, rlimits, clean environment and unprivileged uid as a
//! native run. Whatever the guest does (open files, write big files, leave symlinks
//! behind) costs that process, not the server, and the server reads nothing the guest
//! could have changed: the exit code is the host process's own.
//!
//! Inside the host the guest sees only the run directory (preopened read-write at
//! `/run`) and has no sockets; its linear memory is bounded by `StoreLimits`. The
//! server enforces the wall time, cancellation and the output cap by ending the sandbox,
//! and streams the host's stdout/stderr through the same line pump as native runs.
//!
//! The component is compiled once per engine configuration and component file, in the
//! server (`Engine::precompile_component`, cached as `.cwasm` beside the component);
//! the host only maps the `.cwasm` (`deserialize_file`, a few ms).

pub mod host;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use wasmtime::{Config, Engine};

use crate::interpreters::InterpreterKind;
use crate::output::limit_from_stderr;
#[cfg(target_os = "linux")]
use crate::output::{Budget, StderrTail, pump};
#[cfg(target_os = "linux")]
use crate::run::Stream;
use crate::run::{Limit, Outcome, OutputSink, RunReport, RunSpec, SandboxError};
use crate::{Backend, BackendKind, BoxFuture, SandboxConfig};

/// Where the guest finds the run directory.
const GUEST_RUN: &str = "/run";
/// The runner's files inside the run directory (removed after the run).
const SIDE_DIR: &str = ".scriptorium";
/// Address space the host process may reserve beyond the memory limit: wasmtime maps
/// 4 GiB plus a 32 MiB guard for each linear memory (of which only what the guest
/// grows, bounded by `StoreLimits`, is ever backed), plus the mapped `.cwasm` and the
/// runtime's own. The component has one memory; the host needs ~4.2 GiB in all for
/// `pass` (measured with `ulimit -v`).
#[cfg(target_os = "linux")]
const HOST_RESERVE_MIB: u64 = 6 * 1024;
/// Memory the host may commit beyond its guest's on Windows (the job's per-process
/// limit counts committed memory, not reserved address space): wasmtime, the runtime
/// and the private pages of the mapped `.cwasm`.
#[cfg(windows)]
const HOST_COMMIT_MIB: u64 = 512;

/// The engine configuration: the server compiles with it and the host loads with it
/// (the `.cwasm` only loads into an engine with the same compatibility hash).
fn engine() -> Result<Engine, SandboxError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    Engine::new(&config).map_err(|e| SandboxError::Setup(format!("wasmtime engine: {e}")))
}

/// The backend; cheap to share.
pub struct WasiBackend {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    /// The program started as the host, with [`host::SUBCOMMAND`] as its first argument.
    host_program: PathBuf,
    #[cfg(target_os = "linux")]
    sandbox: crate::linux::LinuxBackend,
    /// Component path → (file stamp, its `.cwasm`).
    prepared: Mutex<HashMap<PathBuf, (u64, PathBuf)>>,
}

/// Only one thread compiles a component at a time; the others then find its cache.
static COMPILING: Mutex<()> = Mutex::new(());

impl WasiBackend {
    /// A backend whose runs start `host_program __wasi-host …` (the server binary, or
    /// the crate's `scriptorium-wasi-host`) in a sandbox configured by `config`.
    pub fn new(
        host_program: impl Into<PathBuf>,
        config: &SandboxConfig,
    ) -> Result<WasiBackend, SandboxError> {
        let host_program = host_program.into();
        // Its real path: the sandbox exposes and allows exactly that file.
        let host_program = std::fs::canonicalize(&host_program)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                SandboxError::Setup(format!(
                    "the WASI host program {} does not exist",
                    host_program.display()
                ))
            })?;
        let _ = config;
        #[cfg(target_os = "linux")]
        let sandbox = crate::linux::LinuxBackend::with_zygote(config.linux.clone(), &host_program);
        Ok(WasiBackend {
            inner: Arc::new(Inner {
                engine: engine()?,
                host_program,
                #[cfg(target_os = "linux")]
                sandbox,
                prepared: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The `.cwasm` of `component`, compiled now if needed (blocking: seconds the
    /// first time), and the program that hosts it: what a long-lived guest outside a run
    /// (the syntax checker) is started with.
    pub fn compiled(&self, component: &Path) -> Result<(PathBuf, PathBuf), SandboxError> {
        Ok((
            self.inner.host_program.clone(),
            self.inner.prepare(component)?,
        ))
    }

    /// Compiles `component` ahead of the first run (or finds its compilation).
    pub async fn prepare(&self, component: &Path) -> Result<(), SandboxError> {
        let inner = self.inner.clone();
        let component = component.to_path_buf();
        tokio::task::spawn_blocking(move || inner.prepare(&component).map(|_| ()))
            .await
            .map_err(|e| SandboxError::Setup(format!("compiling the component: {e}")))?
    }
}

impl Inner {
    /// The `.cwasm` of `component`, compiled now if there is none for this engine.
    fn prepare(&self, component: &Path) -> Result<PathBuf, SandboxError> {
        let meta = std::fs::metadata(component).map_err(|e| {
            SandboxError::Setup(format!(
                "the WASI component {} is missing ({e}); run `make wasi`",
                component.display()
            ))
        })?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
        let stamp = h.finish();
        if let Some((s, cwasm)) = self.prepared.lock().expect("prepared lock").get(component)
            && *s == stamp
            && cwasm.is_file()
        {
            return Ok(cwasm.clone());
        }
        // Its real path (the build directory may be a link): the sandbox exposes that.
        let cwasm = std::fs::canonicalize(component)?.with_extension(format!("{stamp:016x}.cwasm"));
        {
            let _one = COMPILING.lock().unwrap_or_else(|p| p.into_inner());
            if !cwasm.is_file() {
                let started = Instant::now();
                let bytes = std::fs::read(component)?;
                let compiled = self.engine.precompile_component(&bytes).map_err(|e| {
                    SandboxError::Setup(format!("cannot compile {}: {e}", component.display()))
                })?;
                let tmp = cwasm.with_extension(format!("cwasm.{}.tmp", std::process::id()));
                std::fs::write(&tmp, compiled)?;
                std::fs::rename(&tmp, &cwasm)?;
                remove_stale_compilations(component, &cwasm);
                tracing::info!(component = %component.display(), secs = started.elapsed().as_secs_f64(), "compiled the WASI component");
            }
        }
        self.prepared
            .lock()
            .expect("prepared lock")
            .insert(component.to_path_buf(), (stamp, cwasm.clone()));
        Ok(cwasm)
    }
}

impl Backend for WasiBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Wasi
    }

    fn run<'a>(
        &'a self,
        spec: RunSpec,
        sink: Arc<dyn OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<RunReport, SandboxError>> {
        Box::pin(self.run_inner(spec, sink, cancel))
    }
}

/// A guest path for a host file: inside the run directory as it is, else copied in.
fn place(workdir: &Path, side: &Path, file: &Path) -> Result<String, SandboxError> {
    if let Ok(rel) = file.strip_prefix(workdir) {
        // The guest's separator is `/` on every host (Windows paths have `\`).
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        return Ok(format!("{GUEST_RUN}/{}", parts.join("/")));
    }
    let name = file
        .file_name()
        .ok_or_else(|| SandboxError::Setup(format!("{} has no file name", file.display())))?;
    std::fs::copy(file, side.join(name))?;
    Ok(format!("{GUEST_RUN}/{SIDE_DIR}/{}", name.to_string_lossy()))
}

impl WasiBackend {
    async fn run_inner(
        &self,
        spec: RunSpec,
        sink: Arc<dyn OutputSink>,
        cancel: CancellationToken,
    ) -> Result<RunReport, SandboxError> {
        if spec.interpreter.kind != InterpreterKind::Wasi {
            return Err(SandboxError::Setup(format!(
                "interpreter `{}` is not a WASI component",
                spec.interpreter.id
            )));
        }
        let component = spec.interpreter.path.clone();
        // Compiling takes seconds the first time: not on the async executor.
        let inner = self.inner.clone();
        let cwasm = tokio::task::spawn_blocking(move || inner.prepare(&component))
            .await
            .map_err(|e| SandboxError::Setup(format!("compiling the component: {e}")))??;
        // The server made the side directory before the guest existed; it removes it
        // afterwards without following links (`remove_dir_all` does not).
        let side = spec.workdir.join(SIDE_DIR);
        std::fs::create_dir_all(&side)?;
        let _cleanup = RemoveDir(side.clone());
        let script = place(&spec.workdir, &side, &spec.script)?;
        let mut argv = vec!["python".to_string()];
        // A wrapper (e.g. the dependencies' bootstrap) runs first, with the script next.
        if let Some(w) = &spec.interpreter.wrapper {
            argv.push(place(&spec.workdir, &side, w)?);
        }
        argv.push(script);
        if let Some(input) = &spec.input {
            argv.push(place(&spec.workdir, &side, input)?);
        }
        argv.extend(spec.args.iter().cloned());
        self.supervise(&spec, &cwasm, argv, sink, cancel).await
    }

    /// Starts the host in a job object (the windows backend's) and watches it like a
    /// native run. The job's memory limit leaves the host room beyond its guest's.
    #[cfg(windows)]
    async fn supervise(
        &self,
        spec: &RunSpec,
        cwasm: &Path,
        argv: Vec<String>,
        sink: Arc<dyn OutputSink>,
        cancel: CancellationToken,
    ) -> Result<RunReport, SandboxError> {
        let limits = &spec.limits;
        let memory = limits.memory_mib.saturating_mul(1024 * 1024);
        let mut args: Vec<std::ffi::OsString> = vec![
            host::SUBCOMMAND.into(),
            cwasm.into(),
            memory.to_string().into(),
        ];
        args.extend(argv.into_iter().map(Into::into));
        let ran = crate::windows::run_in_job(
            crate::windows::JobProgram {
                program: self.inner.host_program.clone(),
                args,
                workdir: spec.workdir.clone(),
                env: Vec::new(),
                limits: limits.clone(),
                memory_mib: limits.memory_mib.saturating_add(HOST_COMMIT_MIB),
            },
            sink,
            cancel,
        )
        .await?;
        let outcome = match ran.stop {
            crate::windows::Stop::Exited(code) => classify_exit(code, &ran.stderr_tail, limits),
            other => other.outcome(limits),
        };
        let mut protections = ran.protections;
        protections.backend = Some(BackendKind::Wasi);
        protections.wasm_isolation = true;
        Ok(RunReport {
            outcome,
            protections,
            duration: ran.duration,
            output_bytes: ran.output_bytes,
            warm_start: false,
        })
    }

    #[cfg(not(any(target_os = "linux", windows)))]
    async fn supervise(
        &self,
        _: &RunSpec,
        _: &Path,
        _: Vec<String>,
        _: Arc<dyn OutputSink>,
        _: CancellationToken,
    ) -> Result<RunReport, SandboxError> {
        Err(SandboxError::Setup(
            "the wasi backend runs its guest in the Linux process sandbox or a Windows job object, neither of which this platform has; use another backend"
                .into(),
        ))
    }

    /// Starts the host in the process sandbox and watches it like a native run.
    #[cfg(target_os = "linux")]
    async fn supervise(
        &self,
        spec: &RunSpec,
        cwasm: &Path,
        argv: Vec<String>,
        sink: Arc<dyn OutputSink>,
        cancel: CancellationToken,
    ) -> Result<RunReport, SandboxError> {
        use crate::run::secs;
        let limits = &spec.limits;
        // The interpreter's extra read path (a dependency environment's site-packages)
        // is preopened read-only for the guest at `/deps`; the guest sees nothing else.
        let deps = match spec.interpreter.read_paths.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            more => {
                return Err(SandboxError::Setup(format!(
                    "a WASI run can be given one read-only directory, not {}; remove read_paths of interpreter `{}`",
                    more.len(),
                    spec.interpreter.id
                )));
            }
        };
        let memory = limits.memory_mib.saturating_mul(1024 * 1024);
        let mut args: Vec<std::ffi::OsString> = vec![
            host::SUBCOMMAND.into(),
            cwasm.into(),
            memory.to_string().into(),
        ];
        args.extend(argv.into_iter().map(Into::into));
        let mut process = self.inner.sandbox.spawn(&crate::linux::ProcessSpec {
            program: self.inner.host_program.clone(),
            args,
            interpreter: None,
            read: std::iter::once(cwasm.to_path_buf())
                .chain(deps.clone())
                .collect(),
            workdir: spec.workdir.clone(),
            env: deps
                .into_iter()
                .map(|d| (host::DEPS_VAR.to_string(), d.to_string_lossy().into_owned()))
                .collect(),
            limits: limits.clone(),
            address_space_mib: Some(limits.memory_mib.saturating_add(HOST_RESERVE_MIB)),
        })?;
        let started = Instant::now();
        let budget = Budget::new(limits.output_bytes);
        let tail = Arc::new(StderrTail::new(sink));
        // The pumps get their own read ends: `process` stays whole for `wait` and `kill`.
        let stdout = reader(&process.stdout)?;
        let stderr = reader(&process.stderr)?;
        let mut out = tokio::spawn(pump(stdout, Stream::Stdout, tail.clone(), budget.clone()));
        let mut err = tokio::spawn(pump(stderr, Stream::Stderr, tail.clone(), budget.clone()));
        enum Stop {
            Exited(Option<i32>),
            Cancelled,
            WallTime,
            Output,
        }
        let stop = {
            let finished = async {
                let status = process.wait().await;
                let _ = (&mut out).await;
                let _ = (&mut err).await;
                status
            };
            tokio::select! {
                status = finished => Stop::Exited(status?),
                _ = cancel.cancelled() => Stop::Cancelled,
                _ = tokio::time::sleep(secs(limits.wall_seconds)) => Stop::WallTime,
                _ = budget.exceeded() => Stop::Output,
            }
        };
        let duration = started.elapsed();
        if !matches!(stop, Stop::Exited(Some(_))) {
            process.kill().await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let _ = out.await;
                let _ = err.await;
            })
            .await;
        }
        let outcome = match stop {
            Stop::Cancelled => Outcome::Cancelled,
            Stop::WallTime => Outcome::limit(Limit::WallTime, limits),
            Stop::Output => Outcome::limit(Limit::Output, limits),
            Stop::Exited(None) => {
                let problem = process.setup_problem().await;
                return Err(SandboxError::Setup(format!(
                    "the WASI host could not start: {problem}"
                )));
            }
            Stop::Exited(Some(raw)) => classify(raw, &tail.text(), limits, budget.is_exceeded()),
        };
        let mut protections = process.protections.clone();
        protections.backend = Some(BackendKind::Wasi);
        protections.wasm_isolation = true;
        Ok(RunReport {
            outcome,
            protections,
            duration,
            output_bytes: budget.used(),
            warm_start: false,
        })
    }
}
/// A second read end of a sandboxed process's pipe, owned by a pump.
#[cfg(target_os = "linux")]
fn reader(pipe: &impl std::os::fd::AsFd) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(pipe.as_fd().try_clone_to_owned()?)
}

/// Names the limit or failure behind the host process's raw wait status.
#[cfg(target_os = "linux")]
fn classify(raw: i32, stderr: &str, limits: &crate::Limits, output_over: bool) -> Outcome {
    if output_over {
        return Outcome::limit(Limit::Output, limits);
    }
    if libc::WIFSIGNALED(raw) {
        return match libc::WTERMSIG(raw) {
            libc::SIGXCPU => Outcome::limit(Limit::CpuTime, limits),
            libc::SIGXFSZ => Outcome::limit(Limit::FileSize, limits),
            // The host's own failure: its last stderr line says what.
            libc::SIGABRT => match host_failure(stderr) {
                Some(m) if m.starts_with("MemoryError") => Outcome::limit(Limit::Memory, limits),
                Some(m) => Outcome::Crashed { message: m },
                None => Outcome::Crashed {
                    message: "the WASI host aborted".into(),
                },
            },
            sig => Outcome::Signaled { signal: sig },
        };
    }
    match libc::WEXITSTATUS(raw) {
        0 => Outcome::Exited { code: 0 },
        code => match limit_from_stderr(stderr) {
            Some(l) => Outcome::limit(l, limits),
            None => Outcome::Exited { code },
        },
    }
}

/// Names the limit or failure behind the host's exit code (Windows: no signals). The
/// guest's codes are 0–255; a host failure aborts (a code far above that) after its
/// failure line.
#[cfg(windows)]
fn classify_exit(code: i32, stderr: &str, limits: &crate::Limits) -> Outcome {
    if let Some(m) = host_failure(stderr).filter(|_| !(0..=255).contains(&code)) {
        return if m.starts_with("MemoryError") {
            Outcome::limit(Limit::Memory, limits)
        } else {
            Outcome::Crashed { message: m }
        };
    }
    match code {
        0 => Outcome::Exited { code: 0 },
        code if (0..=255).contains(&code) => match limit_from_stderr(stderr) {
            Some(l) => Outcome::limit(l, limits),
            None => Outcome::Exited { code },
        },
        code => Outcome::Crashed {
            message: format!("the WASI host ended with status {:#x}", code as u32),
        },
    }
}

/// The host's failure line at the end of stderr, without its prefix.
#[cfg(any(target_os = "linux", windows))]
fn host_failure(stderr: &str) -> Option<String> {
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty())?;
    last.strip_prefix(host::FAILURE_PREFIX).map(str::to_string)
}

/// Deletes `<component>.<other stamp>.cwasm` files left by earlier builds beside `keep`
/// (compared by name: the directory may be reached through a link).
fn remove_stale_compilations(component: &Path, keep: &Path) {
    let (Some(dir), Some(keep_name), Some(stem)) =
        (keep.parent(), keep.file_name(), component.file_stem())
    else {
        return;
    };
    let prefix = format!("{}.", stem.to_string_lossy());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".cwasm") && e.file_name() != keep_name {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

use crate::RemoveDir;

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn stale_compilations_go_and_the_new_one_stays_even_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        for f in [
            "cpython.wasm",
            "cpython.old.cwasm",
            "cpython.new.cwasm",
            "other.old.cwasm",
        ] {
            std::fs::write(real.join(f), "x").unwrap();
        }
        remove_stale_compilations(
            &dir.path().join("link/cpython.wasm"),
            &real.join("cpython.new.cwasm"),
        );
        let mut left: Vec<_> = std::fs::read_dir(&real)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["cpython.new.cwasm", "cpython.wasm", "other.old.cwasm"]
        );
    }
}
