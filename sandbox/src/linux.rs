//! The `linux` backend: native CPython in user, mount, pid, net, ipc and uts namespaces,
//! with Landlock, rlimits, a clean environment and (when the server is root) an
//! unprivileged uid.
//!
//! - [`launch`]: what a sandbox is decided to be before the fork (its [`child::Plan`]);
//! - [`zygote`]: the small process that forks sandboxes for the server;
//! - [`child`]: what happens between fork and exec; [`rootfs`], [`seccomp`],
//!   [`landlock`], [`cgroup`], [`ids`]: the parts of the plan;
//! - [`supervise`]: watching a run to its end; [`quota`]: its disk quota;
//! - [`warm`]: spare sandboxes with pre-imported modules;
//! - [`process`]: sandboxed processes that are not runs (language servers, WASI hosts).

mod cgroup;
mod child;
mod ids;
mod intermediate;
mod landlock;
mod launch;
mod process;
mod quota;
mod rootfs;
mod seccomp;
mod supervise;
mod warm;
mod zygote;

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use self::ids::Ids;
use self::launch::{Launch, Started};
pub use self::process::{ProcessSpec, SandboxHandle, SandboxedProcess};
pub use self::zygote::SUBCOMMAND as ZYGOTE_SUBCOMMAND;
pub use self::zygote::main as zygote_main;
pub use crate::linux_config::{LinuxConfig, Support, WarmMode, interpreter_paths};
use crate::run::{OutputSink, Protections, RunReport, RunSpec, SandboxError};
use crate::{Backend, BackendKind, BoxFuture, Interpreter, WarmState};

impl Support {
    pub fn probe() -> Support {
        // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
        // SAFETY: with a NULL attribute and this flag the call only returns the ABI.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0,
                1u32,
            )
        } as i32;
        // SAFETY: a getter without side effects.
        let root = unsafe { libc::geteuid() } == 0;
        Support {
            landlock_abi: abi.max(0),
            user_namespaces: probe_userns(),
            root,
        }
    }
}

/// Can this process's children create a user namespace? (Ubuntu's AppArmor may say no.)
fn probe_userns() -> bool {
    // SAFETY: a fork that only calls unshare and _exit is safe in a multi-threaded
    // process; the parent only waits for that child.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let r = libc::unshare(libc::CLONE_NEWUSER);
            libc::_exit(if r == 0 { 0 } else { 1 });
        }
        if pid < 0 {
            return false;
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
    }
}

pub struct LinuxBackend {
    sandbox: Arc<Sandbox>,
    pool: Arc<warm::Pool>,
}

/// Starts sandboxed processes; shared with the tasks that make spares.
struct Sandbox {
    config: LinuxConfig,
    support: Support,
    ids: Arc<Ids>,
    /// The hierarchies runs get their cgroups in, or why there are none.
    cgroups: Result<cgroup::Cgroups, String>,
    /// Forks sandboxes without copying the server's memory; `None`: the server forks.
    zygote: Option<zygote::Zygote>,
}

impl LinuxBackend {
    /// A backend whose sandboxes the server forks itself. [`LinuxBackend::with_zygote`]
    /// starts them faster.
    pub fn new(config: LinuxConfig) -> LinuxBackend {
        LinuxBackend::build(config, None)
    }

    /// A backend whose sandboxes a zygote forks: `helper __sandbox-zygote` (the server
    /// binary, or this crate's `scriptorium-sandbox-zygote`), started now and
    /// restarted when it dies. Every protection is the same as with [`LinuxBackend::new`];
    /// each run's `protections.launcher` says which way it was started.
    pub fn with_zygote(config: LinuxConfig, helper: &Path) -> LinuxBackend {
        let zygote = zygote::Zygote::new(helper);
        zygote.start();
        LinuxBackend::build(config, Some(zygote))
    }

    /// The zygote's pid once it runs (for tests that kill it).
    pub fn zygote_pid(&self) -> Option<u32> {
        self.sandbox.zygote.as_ref().and_then(zygote::Zygote::pid)
    }

    /// Whether the zygote holds a spare process in the next run's cgroups (for tests).
    #[doc(hidden)]
    pub fn zygote_has_spare(&self) -> bool {
        self.sandbox
            .zygote
            .as_ref()
            .is_some_and(zygote::Zygote::has_spare)
    }

    fn build(config: LinuxConfig, zygote: Option<zygote::Zygote>) -> LinuxBackend {
        let cgroups = cgroup::Cgroups::probe();
        if let Err(why) = &cgroups {
            tracing::warn!(%why, "runs get no cgroup: memory and processes are bounded per process by rlimits only");
        }
        LinuxBackend {
            sandbox: Arc::new(Sandbox {
                config,
                support: Support::probe(),
                ids: Arc::default(),
                cgroups,
                zygote,
            }),
            pool: Arc::default(),
        }
    }

    pub fn support(&self) -> Support {
        self.sandbox.support
    }
}

impl Backend for LinuxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Linux
    }

    fn run<'a>(
        &'a self,
        spec: RunSpec,
        sink: Arc<dyn OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<RunReport, SandboxError>> {
        Box::pin(self.run_inner(spec, sink, cancel))
    }

    fn prepare(&self, interpreter: &Interpreter, runs_dir: &Path) {
        if self.sandbox.config.warm == WarmMode::Eager
            && self.warm_capable(interpreter)
            && warm::runs_dir_allowed(runs_dir)
        {
            self.pool
                .ensure(&self.sandbox, interpreter, &interpreter.limits, runs_dir);
        }
    }

    fn warm_state(&self, interpreter: &Interpreter, runs_dir: &Path) -> Option<WarmState> {
        (self.warm_capable(interpreter) && warm::runs_dir_allowed(runs_dir))
            .then(|| self.pool.state(interpreter, &interpreter.limits, runs_dir))
    }
}

/// How long setting up a cold sandbox may take (it takes milliseconds; a stuck setup
/// must not hold a run, or a thread, forever).
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl LinuxBackend {
    /// Starts a cold sandbox for `spec`. Setting one up forks (or asks the zygote to),
    /// writes cgroup files and waits for the child's set-up: blocking work, so it runs on
    /// the blocking pool, never on the async executor, and within [`START_TIMEOUT`].
    async fn start_cold(&self, spec: &RunSpec) -> Result<Started, SandboxError> {
        let (sandbox, spec) = (self.sandbox.clone(), spec.clone());
        let start = tokio::task::spawn_blocking(move || sandbox.start(Launch::for_run(&spec)));
        match tokio::time::timeout(START_TIMEOUT, start).await {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => Err(SandboxError::Setup(format!(
                "the start-up task failed: {e}"
            ))),
            Err(_) => Err(SandboxError::Setup(format!(
                "the sandbox was not set up within {START_TIMEOUT:?}; the machine may be overloaded, try again"
            ))),
        }
    }

    /// Warm starts need the full sandbox: a spare's rules are fixed before its run is known.
    fn warm_capable(&self, interpreter: &Interpreter) -> bool {
        self.sandbox.config.warm != WarmMode::Off
            && !interpreter.warm.is_empty()
            && interpreter.kind == crate::InterpreterKind::Native
            && self.sandbox.support.landlock_abi >= 1
            && (self.sandbox.support.user_namespaces || self.sandbox.support.root)
    }

    async fn run_inner(
        &self,
        spec: RunSpec,
        sink: Arc<dyn OutputSink>,
        cancel: CancellationToken,
    ) -> Result<RunReport, SandboxError> {
        let warm = self.warm_capable(&spec.interpreter) && warm::eligible(&spec);
        let runs_dir = spec
            .workdir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut started = None;
        if warm && let Some(spare) = self.pool.take(&spec.interpreter, &spec.limits, &runs_dir) {
            let spare = tokio::select! {
                s = spare => s,
                _ = cancel.cancelled() => return Ok(RunReport::cancelled_before_start(Protections::default())),
            };
            let claimed = match spare {
                Ok(spare) => spare.claim(&spec, self.sandbox.support.root).await,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(s) => started = Some(s),
                Err(e) => {
                    tracing::warn!(interpreter = %spec.interpreter.id, error = %e, "no warm start; starting cold")
                }
            }
        }
        let warm_start = started.is_some();
        let started = match started {
            Some(s) => s,
            None => self.start_cold(&spec).await?,
        };
        // The disk quota covers the run directory and the private /tmp together.
        let quota = quota::Quota::new(vec![spec.workdir.clone()], &spec.limits);
        let report =
            supervise::supervise(started, &spec.limits, quota, sink, cancel, warm_start).await;
        if warm {
            // The next run of this interpreter finds a spare ready.
            self.pool
                .ensure(&self.sandbox, &spec.interpreter, &spec.limits, &runs_dir);
        }
        report
    }

    /// Runs `spec` cold, as [`Backend::run`] does, with the child marking each setup
    /// phase: how long each took (the server's preparation first, the program's own run
    /// from exec to its end last). Every protection is the same as in any run; only
    /// the benchmark calls this.
    #[doc(hidden)]
    pub async fn run_traced(
        &self,
        spec: RunSpec,
    ) -> Result<(RunReport, Vec<(&'static str, std::time::Duration)>), SandboxError> {
        let mut launch = Launch::for_run(&spec);
        launch.trace = true;
        let mut started = self.sandbox.start(launch)?;
        let trace = started.trace.take().expect("a traced launch");
        let quota = quota::Quota::new(vec![spec.workdir.clone()], &spec.limits);
        let sink: Arc<dyn OutputSink> = Arc::new(crate::Collect::default());
        let report = supervise::supervise(
            started,
            &spec.limits,
            quota,
            sink,
            CancellationToken::new(),
            false,
        )
        .await?;
        let ended = launch::monotonic_ns();
        let mut marks = Vec::new();
        let mut file = std::fs::File::from(trace.marks);
        std::io::Read::read_to_end(&mut file, &mut marks)?;
        let mut phases = vec![(
            "server: uid, cgroup, Landlock rules, root plan",
            trace.began,
            trace.prepared,
        )];
        let mut last = trace.prepared;
        for rec in marks.chunks_exact(9) {
            let at = u64::from_ne_bytes(rec[1..].try_into().expect("8 bytes"));
            let name = child::PHASES.get(rec[0] as usize).copied().unwrap_or("?");
            phases.push((name, last, at));
            last = at;
        }
        phases.push(("exec, the program's run, its end seen", last, ended));
        let phases = phases
            .into_iter()
            .map(|(name, from, to)| {
                (
                    name,
                    std::time::Duration::from_nanos(to.saturating_sub(from)),
                )
            })
            .collect();
        Ok((report, phases))
    }
}
