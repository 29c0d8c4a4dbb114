//! Runs one Python script in a sandbox and reports what happened.
//!
//! - [`Backend`]: the one trait; a backend is chosen per run.
//! - [`linux`]: native CPython in namespaces with Landlock, rlimits and an unprivileged uid.
//! - [`wasi`]: CPython 3.14 for WASI inside wasmtime, seeing only the run directory; the
//!   guest runs in a host process ([`wasi::host`]) inside the linux backend's sandbox.
//! - [`windows`]: native CPython in a job object (built for Windows and tested under Wine
//!   by `scripts/test-windows.sh`).
//! - [`interpreters`]: `interpreters.toml` and detection of the interpreters on the machine.
//! - [`limits`]: the bounds of a run; [`run`]: the spec, sink, outcome and protections.
//! - [`output`]: streaming stdout/stderr line by line under a byte cap.
//! - [`fswalk`]: walking a directory a script wrote without following its links.
//!
//! The crate does not depend on the server; the server depends on it.

#[cfg(any(unix, windows))]
pub mod fswalk;
pub mod interpreters;
pub mod limits;
#[cfg(target_os = "linux")]
pub mod linux;
/// Off Linux: the same API, every spawn refused.
#[cfg(not(target_os = "linux"))]
#[path = "no_linux.rs"]
pub mod linux;
/// `[sandbox.linux]` and its kin, on every platform (re-exported by [`linux`]).
mod linux_config;
pub mod output;
mod remove_dir;
pub mod run;
#[cfg(feature = "wasi")]
pub mod wasi;
#[cfg(windows)]
pub mod windows;

// Without the linux and wasi backends (the Windows type-check) nothing logs.
#[cfg(not(any(target_os = "linux", feature = "wasi")))]
use tracing as _;
// The tests' libc (a dev-dependency on every platform) is not used by the Windows unit
// tests.
#[cfg(all(test, windows))]
use libc as _;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use interpreters::{BackendKind, Interpreter, InterpreterError, InterpreterKind, Registry};
pub use limits::Limits;
pub use remove_dir::RemoveDir;
pub use run::{
    CgroupProtection, Collect, Limit, Outcome, OutputSink, Protections, RunReport, RunSpec,
    SandboxError, Stream,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A way of running a script in isolation.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Runs `spec`, streaming output lines to `sink` as they are written, until the
    /// script ends, a limit is hit or `cancel` fires.
    fn run<'a>(
        &'a self,
        spec: RunSpec,
        sink: Arc<dyn OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<RunReport, SandboxError>>;

    /// Gets ready for runs of `interpreter` whose directories will be made in `runs_dir`
    /// (the linux backend makes a spare sandbox with the interpreter's `warm` modules
    /// imported). Returns at once; the work goes on in the background.
    fn prepare(&self, _interpreter: &Interpreter, _runs_dir: &std::path::Path) {}

    /// Whether a run of `interpreter` in `runs_dir` would start warm; `None` when this
    /// backend has no warm start for it.
    fn warm_state(
        &self,
        _interpreter: &Interpreter,
        _runs_dir: &std::path::Path,
    ) -> Option<WarmState> {
        None
    }
}

/// Where the warm start of an interpreter stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WarmState {
    /// No spare yet (lazy mode before the first run, or after the spare was used).
    Idle,
    /// A spare is importing the modules.
    Warming,
    /// A spare is ready: the next run starts warm.
    Ready,
    /// Making a spare failed; runs start cold until the retry.
    Failed { problem: String },
}

/// `[sandbox]` configuration.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    pub linux: linux::LinuxConfig,
    /// The program the wasi backend starts as its host (`PROGRAM __wasi-host …`) and the
    /// linux backend as its zygote (`PROGRAM __sandbox-zygote`); default: the running
    /// executable (the server binary has both subcommands).
    pub wasi_host: Option<std::path::PathBuf>,
}

/// The backends available on this machine.
#[derive(Clone, Default)]
pub struct Backends {
    by_kind: BTreeMap<BackendKind, Arc<dyn Backend>>,
}

impl Backends {
    /// Every backend this platform supports.
    pub fn for_this_machine(config: &SandboxConfig) -> Backends {
        let mut b = Backends::default();
        // The helper program: the wasi backend's host and the linux backend's zygote.
        let helper = config
            .wasi_host
            .clone()
            .map(Ok)
            .unwrap_or_else(std::env::current_exe);
        #[cfg(target_os = "linux")]
        b.insert(Arc::new(match &helper {
            Ok(helper) => linux::LinuxBackend::with_zygote(config.linux.clone(), helper),
            Err(e) => {
                tracing::warn!(error = %e, "no sandbox zygote: the server forks each sandbox itself");
                linux::LinuxBackend::new(config.linux.clone())
            }
        }));
        #[cfg(windows)]
        b.insert(Arc::new(windows::WindowsBackend));
        #[cfg(feature = "wasi")]
        {
            match helper
                .as_ref()
                .map_err(|e| SandboxError::Io(std::io::Error::new(e.kind(), e.to_string())))
                .and_then(|host| wasi::WasiBackend::new(host, config))
            {
                Ok(w) => b.insert(Arc::new(w)),
                Err(e) => tracing::warn!(error = %e, "the wasi backend is not available"),
            }
        }
        let _ = (config, helper);
        b
    }

    pub fn insert(&mut self, backend: Arc<dyn Backend>) {
        self.by_kind.insert(backend.kind(), backend);
    }

    pub fn get(&self, kind: BackendKind) -> Result<Arc<dyn Backend>, SandboxError> {
        self.by_kind
            .get(&kind)
            .cloned()
            .ok_or(SandboxError::Unsupported(kind))
    }

    pub fn kinds(&self) -> impl Iterator<Item = BackendKind> + '_ {
        self.by_kind.keys().copied()
    }
}
