//! The `linux` backend: native CPython in user, mount, pid, net, ipc and uts namespaces,
//! with Landlock, rlimits, a clean environment and (when the server is root) an
//! unprivileged uid. See [`child`] for what happens between fork and exec.

mod cgroup;
mod child;
mod quota;
mod rootfs;
mod seccomp;
mod warm;

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope,
};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::output::{Budget, StderrTail, limit_from_stderr, pump};
use crate::run::{
    Limit, Outcome, OutputSink, Protections, RunReport, RunSpec, SandboxError, Stream, secs,
};
use crate::{Backend, BackendKind, BoxFuture, Interpreter, WarmState};

/// `[sandbox.linux]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinuxConfig {
    /// When the server runs as root, each sandbox gets a host uid (and the same gid)
    /// of its own from this inclusive range, so no run can touch another's files.
    pub uid_range: [u32; 2],
    /// Run with whatever protections are available when user namespaces or Landlock
    /// are missing (the run record lists what was missing). Off: such runs are refused.
    pub allow_degraded: bool,
    /// Warm starts for interpreters with `warm` modules (see [`warm`]).
    pub warm: WarmMode,
}

impl Default for LinuxConfig {
    fn default() -> Self {
        LinuxConfig {
            uid_range: [100_000, 165_535],
            allow_degraded: false,
            warm: WarmMode::Eager,
        }
    }
}

/// When spare sandboxes with pre-imported modules are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmMode {
    /// At start-up (the server asks through [`Backend::prepare`]) and after every run.
    Eager,
    /// After the first run of such an interpreter.
    Lazy,
    /// Never: every run imports for itself.
    Off,
}

impl std::str::FromStr for WarmMode {
    type Err = String;
    fn from_str(s: &str) -> Result<WarmMode, String> {
        match s {
            "eager" => Ok(WarmMode::Eager),
            "lazy" => Ok(WarmMode::Lazy),
            "off" => Ok(WarmMode::Off),
            _ => Err("use eager, lazy or off".into()),
        }
    }
}

/// What the kernel offers, probed once.
#[derive(Debug, Clone, Copy)]
pub struct Support {
    pub landlock_abi: i32,
    pub user_namespaces: bool,
    pub root: bool,
}

impl Support {
    pub fn probe() -> Support {
        // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0,
                1u32,
            )
        } as i32;
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
    // A fork that only calls unshare and _exit is safe in a multi-threaded process.
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
}

/// The host uids of `uid_range` that live sandboxes hold.
#[derive(Default)]
struct Ids {
    state: std::sync::Mutex<(BTreeSet<u32>, u32)>,
}

/// A host uid held by one sandbox until it is dropped.
struct Lease {
    ids: Arc<Ids>,
    uid: u32,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ids
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .remove(&self.uid);
    }
}

impl Ids {
    /// The next free uid of `[first, last]`, round-robin, so that a uid is reused as
    /// late as possible.
    fn lease(self: &Arc<Self>, [first, last]: [u32; 2]) -> Result<Lease, SandboxError> {
        if first == 0 || last < first {
            return Err(SandboxError::Setup(format!(
                "[sandbox.linux] uid_range = [{first}, {last}] is not a range of non-root uids; use e.g. [100000, 165535]"
            )));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (used, next) = &mut *state;
        let span = (last - first) as u64 + 1;
        for i in 0..span {
            let uid = first + ((next.saturating_sub(first) as u64 + i) % span) as u32;
            if used.insert(uid) {
                *next = if uid == last { first } else { uid + 1 };
                return Ok(Lease {
                    ids: self.clone(),
                    uid,
                });
            }
        }
        Err(SandboxError::Setup(format!(
            "all {span} uids of [sandbox.linux] uid_range are held by running sandboxes; widen the range"
        )))
    }
}

impl LinuxBackend {
    pub fn new(config: LinuxConfig) -> LinuxBackend {
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
            }),
            pool: Arc::default(),
        }
    }

    pub fn support(&self) -> Support {
        self.sandbox.support
    }
}

/// A program to run in the sandbox that is not a script run (a language server, a WASI
/// host). It gets the same namespaces, Landlock rules, rlimits, clean environment and
/// unprivileged uid as a run; the wall-time limit is the caller's to enforce.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    /// An interpreter whose installation (prefix, venv, `sys.path`) the process may read.
    pub interpreter: Option<Interpreter>,
    /// Further files and directories it may read.
    pub read: Vec<PathBuf>,
    /// Its working directory and HOME: with the private `/tmp`, its only writable place.
    pub workdir: PathBuf,
    /// Environment variables on top of the sandbox's clean set.
    pub env: Vec<(String, String)>,
    pub limits: crate::Limits,
    /// RLIMIT_AS in MiB when it must differ from `limits.memory_mib`: a WASI host
    /// reserves gigabytes of address space it never touches (wasmtime's guard regions),
    /// and bounds the guest's memory itself. `None`: the memory limit.
    pub address_space_mib: Option<u64>,
}

/// A running sandboxed process with its stdin, stdout and stderr piped. Dropping it
/// kills the whole sandbox.
pub struct SandboxedProcess {
    pub stdin: tokio::process::ChildStdin,
    pub stdout: tokio::process::ChildStdout,
    pub stderr: tokio::process::ChildStderr,
    pub protections: Protections,
    handle: SandboxHandle,
}

/// What keeps a sandboxed process alive once its pipes are taken
/// ([`SandboxedProcess::into_parts`]): dropping it kills the whole sandbox.
pub struct SandboxHandle {
    child: tokio::process::Child,
    status_r: Option<OwnedFd>,
    _report_r: OwnedFd,
    _lease: Option<Lease>,
    _cgroup: Option<cgroup::RunCgroup>,
}

impl SandboxedProcess {
    /// The host pid of the sandbox's outermost process (the program runs two levels below).
    pub fn id(&self) -> Option<u32> {
        self.handle.id()
    }

    /// Waits until the program ends; its raw wait status (`None` when its setup failed).
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        self.handle.wait().await
    }

    /// Why the sandbox could not start the program, after [`SandboxedProcess::wait`]
    /// returned `None` (empty when it did start).
    pub async fn setup_problem(&mut self) -> String {
        self.handle.setup_problem().await
    }

    /// Ends the sandbox and every process in it.
    pub async fn kill(&mut self) {
        self.handle.kill().await
    }

    /// The pipes, for separate tasks, and the handle that keeps the sandbox alive.
    pub fn into_parts(
        self,
    ) -> (
        tokio::process::ChildStdin,
        tokio::process::ChildStdout,
        tokio::process::ChildStderr,
        SandboxHandle,
    ) {
        (self.stdin, self.stdout, self.stderr, self.handle)
    }
}

impl SandboxHandle {
    /// The host pid of the sandbox's outermost process.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the program ends; its raw wait status (`None` when its setup failed).
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        let Some(fd) = self.status_r.take() else {
            return Ok(None);
        };
        let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
        let mut raw = [0u8; 4];
        Ok(rx
            .read_exact(&mut raw)
            .await
            .ok()
            .map(|_| i32::from_ne_bytes(raw)))
    }

    /// Why the sandbox could not start the program, after [`SandboxedProcess::wait`]
    /// returned `None` (empty when it did start).
    pub async fn setup_problem(&mut self) -> String {
        let Ok(fd) = self._report_r.try_clone() else {
            return String::new();
        };
        let mut report = String::new();
        let mut file = tokio::fs::File::from_std(std::fs::File::from(fd));
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            file.read_to_string(&mut report),
        )
        .await;
        report.trim().to_string()
    }

    /// Ends the sandbox and every process in it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

impl LinuxBackend {
    /// Starts `spec` in a fresh sandbox and returns at once.
    pub fn spawn(&self, spec: &ProcessSpec) -> Result<SandboxedProcess, SandboxError> {
        let started = self.sandbox.start(Launch {
            program: &spec.program,
            interpreter: spec.interpreter.as_ref(),
            args: spec.args.clone(),
            env: spec.env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
            read: spec.read.clone(),
            workdir: &spec.workdir,
            expose: &spec.workdir,
            home: &spec.workdir,
            limits: &spec.limits,
            address_space_mib: spec.address_space_mib,
            extra_cpu: 0,
            stdin: true,
        })?;
        let Started {
            child,
            stdin,
            stdout,
            stderr,
            status_r,
            report_r,
            protections,
            _lease,
            cgroup,
        } = started;
        Ok(SandboxedProcess {
            stdin: stdin.expect("stdin is piped"),
            stdout,
            stderr,
            protections,
            handle: SandboxHandle {
                child,
                status_r: Some(status_r),
                _report_r: report_r,
                _lease,
                _cgroup: cgroup,
            },
        })
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
    /// Starts a cold sandbox for `spec`. Setting one up forks, writes cgroup files and
    /// waits for the child's set-up: blocking work, so it runs on the blocking pool,
    /// never on the async executor, and within [`START_TIMEOUT`].
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
        let report = supervise(started, &spec.limits, quota, sink, cancel, warm_start).await;
        if warm {
            // The next run of this interpreter finds a spare ready.
            self.pool
                .ensure(&self.sandbox, &spec.interpreter, &spec.limits, &runs_dir);
        }
        report
    }
}

/// One sandboxed process to start.
struct Launch<'a> {
    /// The program to exec (for a run, the interpreter).
    program: &'a Path,
    /// An interpreter whose installation (prefix, venv, `sys.path`) the process may read.
    interpreter: Option<&'a Interpreter>,
    args: Vec<std::ffi::OsString>,
    /// Environment variables on top of the sandbox's clean set.
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Files and directories the process may read besides the interpreter's.
    read: Vec<PathBuf>,
    /// The only writable place (with the private /tmp), the working directory.
    workdir: &'a Path,
    /// What is shown inside when the workdir lies below a cover (a spare shows the runs
    /// directory, so the run directory it is renamed to is visible at the same path).
    expose: &'a Path,
    home: &'a Path,
    limits: &'a crate::Limits,
    /// RLIMIT_AS in MiB, when not `limits.memory_mib` (see [`ProcessSpec`]).
    address_space_mib: Option<u64>,
    /// CPU seconds allowed on top of the limit (a spare's import; its runner takes them
    /// back before the script starts).
    extra_cpu: u64,
    /// Keep a pipe to stdin (a spare reads its request there); else /dev/null.
    stdin: bool,
}

impl<'a> Launch<'a> {
    fn for_run(spec: &'a RunSpec) -> Launch<'a> {
        let mut read = vec![spec.script.clone()];
        read.extend(spec.input.clone());
        Launch {
            program: &spec.interpreter.path,
            interpreter: Some(&spec.interpreter),
            args: spec.python_args(),
            env: Vec::new(),
            read,
            workdir: &spec.workdir,
            expose: &spec.workdir,
            home: &spec.workdir,
            limits: &spec.limits,
            address_space_mib: None,
            extra_cpu: 0,
            stdin: false,
        }
    }
}

/// A started sandbox: the intermediate process and the pipes to watch.
struct Started {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::process::ChildStdout,
    stderr: tokio::process::ChildStderr,
    status_r: OwnedFd,
    report_r: OwnedFd,
    protections: Protections,
    /// The host uid this sandbox holds (root server).
    _lease: Option<Lease>,
    /// The run's cgroup: removed when the sandbox is dropped.
    cgroup: Option<cgroup::RunCgroup>,
}

impl Sandbox {
    /// The host ids the sandbox runs as: a leased uid of its own when the server is
    /// root, else the server's (mapped to an unprivileged id inside).
    fn ids(&self) -> Result<(u32, u32, Option<Lease>), SandboxError> {
        if self.support.root {
            let lease = self.ids.lease(self.config.uid_range)?;
            Ok((lease.uid, lease.uid, Some(lease)))
        } else {
            // SAFETY: getters without side effects.
            Ok(unsafe { (libc::geteuid(), libc::getegid(), None) })
        }
    }

    /// Refuses (unless allowed) when a protection is missing; lists what is missing.
    fn missing(&self) -> Result<Vec<String>, SandboxError> {
        let mut missing = Vec::new();
        if !self.support.user_namespaces {
            missing.push(("user namespaces", "the kernel or a security module (e.g. Ubuntu's AppArmor `kernel.apparmor_restrict_unprivileged_userns`) does not allow them"));
        }
        if self.support.landlock_abi < 1 {
            missing.push(("Landlock", "the kernel does not offer it (needs Linux 5.13+ with Landlock enabled in the `lsm=` boot parameter)"));
        }
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        if !self.config.allow_degraded {
            let (what, why): (Vec<_>, Vec<_>) = missing.into_iter().unzip();
            return Err(SandboxError::Unavailable {
                missing: what.join(" and "),
                why: why.join("; "),
            });
        }
        Ok(missing.into_iter().map(|(w, _)| w.to_string()).collect())
    }

    /// Starts `launch` in a fresh sandbox and returns at once.
    fn start(&self, launch: Launch<'_>) -> Result<Started, SandboxError> {
        let missing = self.missing()?;
        let support = self.support;
        let limits = launch.limits;
        let (uid, gid, lease) = self.ids()?;
        let program = launch.program;
        if !program.is_file() {
            return Err(SandboxError::Setup(format!(
                "the program {} does not exist",
                program.display()
            )));
        }

        let workdir = launch.workdir;
        if support.root {
            // The run directory is its sandbox's uid's alone (a spare, which sees the
            // runs directory, finds the others closed even without Landlock).
            chown_tree(workdir, uid, gid)?;
            std::fs::set_permissions(workdir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }

        // What the script may read, and where it may write.
        let mut read: BTreeSet<PathBuf> = BTreeSet::new();
        read.insert(program.to_path_buf());
        if let Some(interp) = launch.interpreter {
            read.extend(interpreter_paths(interp));
        }
        read.extend(launch.read.iter().cloned());
        let system: Vec<PathBuf> = [
            "/usr/lib",
            "/lib",
            "/lib64",
            "/usr/lib64",
            "/etc/ld.so.cache",
            "/etc/localtime",
            "/usr/share/zoneinfo",
            "/etc/os-release",
        ]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
        let devices: Vec<PathBuf> = [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/urandom",
            "/dev/random",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let writable = [workdir.to_path_buf()];

        let mut protections = Protections {
            backend: Some(BackendKind::Linux),
            namespaces: if support.user_namespaces || support.root {
                vec!["user", "mount", "pid", "net", "ipc", "uts"]
            } else {
                vec![]
            },
            rlimits: true,
            no_new_privs: true,
            uid: Some(uid),
            missing: missing.clone(),
            ..Default::default()
        };
        let run_cgroup = match &self.cgroups {
            Ok(cgroups) => Some(cgroups.create(limits).map_err(SandboxError::Setup)?),
            Err(why) => {
                protections.missing.push(format!("cgroups: {why}"));
                None
            }
        };
        protections.cgroup = run_cgroup.as_ref().map(cgroup::RunCgroup::protection);
        if !support.root && !support.user_namespaces {
            return Err(SandboxError::Setup(
                "without root or user namespaces no namespaces can be made; degraded runs need at least one".into(),
            ));
        }
        let ruleset = if support.landlock_abi >= 1 {
            let (fd, abi) =
                landlock_ruleset(support.landlock_abi, &read, &system, &devices, &writable)
                    .map_err(|e| SandboxError::Setup(format!("Landlock rules: {e}")))?;
            protections.landlock_abi = abi as u32;
            protections.landlock_filesystem = true;
            protections.landlock_network = abi >= 4;
            protections.landlock_scopes = abi >= 6;
            Some(fd)
        } else {
            None
        };

        let mut planner = rootfs::Planner::default();
        for p in read.iter().chain(&system) {
            planner.expose(p, false);
        }
        planner.expose(launch.expose, true);
        let root = planner.finish(workdir, limits.disk_mib, limits.disk_files);
        protections.minimal_root = true;
        protections.private_keyring = true;
        let filters = match seccomp::compiled() {
            Ok(f) => {
                protections.seccomp = Some(f.describe());
                Some(f)
            }
            Err(e) if self.config.allow_degraded => {
                protections.missing.push(format!("seccomp ({e})"));
                None
            }
            Err(e) => {
                return Err(SandboxError::Setup(format!(
                    "{e}; set `allow_degraded = true` to run without it"
                )));
            }
        };
        let (report_r, report_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let (status_r, status_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let mib = |m: u64| m.saturating_mul(1024 * 1024);
        let cpu = limits.cpu_seconds + launch.extra_cpu;
        let address_space = mib(launch.address_space_mib.unwrap_or(limits.memory_mib));
        let mut rlimits = vec![
            (libc::RLIMIT_CPU, cpu, cpu + 1),
            // A second layer under the memory cgroup: one huge allocation fails with a
            // MemoryError the script can see, not a kill.
            (libc::RLIMIT_AS, address_space, address_space),
            (
                libc::RLIMIT_FSIZE,
                mib(limits.file_size_mib),
                mib(limits.file_size_mib),
            ),
            (libc::RLIMIT_NOFILE, limits.open_files, limits.open_files),
            (libc::RLIMIT_CORE, 0, 0),
        ];
        if !protections.cgroup.as_ref().is_some_and(|c| c.pids) {
            // No pids cgroup: the per-process-tree rlimit is what is left.
            rlimits.push((libc::RLIMIT_NPROC, limits.processes, limits.processes));
        }
        let plan = child::Plan {
            cgroup_procs: run_cgroup
                .as_ref()
                .map(cgroup::RunCgroup::procs_files)
                .unwrap_or_default(),
            switch_user: support.root,
            uid,
            gid,
            uid_map: std::ffi::CString::new(format!("{} {uid} 1", child::INNER_ID))
                .expect("no NUL"),
            gid_map: std::ffi::CString::new(format!("{} {gid} 1", child::INNER_ID))
                .expect("no NUL"),
            root,
            seccomp: filters,
            server_args: server_memory().0,
            server_env: server_memory().1,
            tmp_access: AccessFs::from_all(landlock_abi(support.landlock_abi.max(1))).bits(),
            rlimits,
            ruleset_fd: ruleset.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
            report_w: report_w.as_raw_fd(),
            server_pid: std::process::id() as libc::pid_t,
            status_w: status_w.as_raw_fd(),
        };

        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&launch.args);
        // Nothing of the server's environment reaches the script, API keys above all.
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .env("HOME", launch.home)
            .env("TMPDIR", "/tmp")
            // Libraries' caches go to the private /tmp, not among the artifacts.
            .env("XDG_CACHE_HOME", "/tmp/.cache")
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(workdir)
            .stdin(if launch.stdin {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let plan = Arc::new(plan);
        let child_plan = plan.clone();
        unsafe {
            cmd.pre_exec(move || child::enter(&child_plan));
        }
        let spawned = cmd.spawn();
        drop(report_w);
        drop(status_w);
        drop(ruleset);
        let mut child = spawned
            .map_err(|e| SandboxError::Setup(format!("cannot start {}: {e}", program.display())))?;
        Ok(Started {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().expect("piped"),
            stderr: child.stderr.take().expect("piped"),
            child,
            status_r,
            report_r,
            protections,
            _lease: lease,
            cgroup: run_cgroup,
        })
    }
}

/// What a process may read of an interpreter's installation: the executable, its prefix
/// and venv (unless that is the whole system), `sys.path`, extra read paths, its wrapper.
pub fn interpreter_paths(interp: &Interpreter) -> Vec<PathBuf> {
    let mut read = vec![interp.path.clone()];
    for p in interp.prefix.iter().chain(interp.env_prefix.iter()) {
        if !matches!(p.to_str(), Some("/" | "/usr" | "/usr/local")) {
            read.push(p.clone());
        }
    }
    read.extend(
        interp
            .sys_path
            .iter()
            .chain(interp.read_paths.iter())
            .filter(|p| p.exists())
            .cloned(),
    );
    read.extend(interp.wrapper.iter().cloned());
    read
}

/// Streams a started sandbox's output to `sink` and waits until it ends, a limit is hit
/// or `cancel` fires. The wall-time limit counts from here.
async fn supervise(
    started: Started,
    limits: &crate::Limits,
    quota: quota::Quota,
    sink: Arc<dyn OutputSink>,
    cancel: CancellationToken,
    warm_start: bool,
) -> Result<RunReport, SandboxError> {
    let Started {
        mut child,
        stdin,
        stdout,
        stderr,
        status_r,
        report_r,
        mut protections,
        _lease,
        cgroup,
    } = started;
    protections.disk_quota = true;
    drop(stdin);
    let started = Instant::now();
    let budget = Budget::new(limits.output_bytes);
    let tail = Arc::new(StderrTail::new(sink));
    let mut out = tokio::spawn(pump(stdout, Stream::Stdout, tail.clone(), budget.clone()));
    let mut err = tokio::spawn(pump(stderr, Stream::Stderr, tail.clone(), budget.clone()));

    // The run is over when init has reported the script's wait status and both output
    // pipes have ended: only the sandbox's processes held them, so every one of them
    // is gone. The namespaces' teardown then goes on without the server waiting.
    let mut status_rx = tokio::net::unix::pipe::Receiver::from_owned_fd(status_r)?;
    let finished = async {
        let mut raw = [0u8; 4];
        let status = status_rx
            .read_exact(&mut raw)
            .await
            .ok()
            .map(|_| i32::from_ne_bytes(raw));
        let _ = (&mut out).await;
        let _ = (&mut err).await;
        status
    };
    enum Stop {
        Exited(Option<i32>),
        Cancelled,
        WallTime,
        Output,
        Disk,
    }
    let stop = tokio::select! {
        status = finished => Stop::Exited(status),
        _ = cancel.cancelled() => Stop::Cancelled,
        _ = tokio::time::sleep(secs(limits.wall_seconds)) => Stop::WallTime,
        _ = budget.exceeded() => Stop::Output,
        _ = quota.exceeded() => Stop::Disk,
    };
    let duration = started.elapsed();
    // `finished` already drained the output when the script ended by itself.
    let drained = matches!(stop, Stop::Exited(_));
    let status: Option<(Option<i32>, Option<i32>)> = match stop {
        Stop::Exited(Some(raw)) => {
            // Reap the intermediate in the background.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            Some(if libc::WIFSIGNALED(raw) {
                (None, Some(libc::WTERMSIG(raw)))
            } else {
                (Some(libc::WEXITSTATUS(raw)), None)
            })
        }
        Stop::Exited(None) => {
            // No status from init (its setup failed): the intermediate's exit says why.
            use std::os::unix::process::ExitStatusExt;
            let s = child.wait().await?;
            Some((s.code(), s.signal()))
        }
        _ => {
            // SIGKILL to the intermediate; init follows (PDEATHSIG) and takes the
            // whole pid namespace with it.
            let _ = child.start_kill();
            let _ = child.wait().await;
            None
        }
    };
    if !drained {
        // The pipes close when the last process of the namespace is gone.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = out.await;
            let _ = err.await;
        })
        .await;
    }
    let mut report = String::new();
    let mut report_file = tokio::fs::File::from_std(std::fs::File::from(report_r));
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        report_file.read_to_string(&mut report),
    )
    .await;

    let evidence = Evidence {
        output_over: budget.is_exceeded(),
        oom_kills: cgroup.as_ref().map_or(0, cgroup::RunCgroup::oom_kills),
        pids_refused: cgroup.as_ref().map_or(0, cgroup::RunCgroup::pids_refused),
        // Measured once more at the end: a script may fill the disk and exit between two
        // measurements.
        disk_over: matches!(stop, Stop::Disk)
            || (matches!(stop, Stop::Exited(_)) && quota.is_over(&quota.measure_async().await)),
    };
    drop(cgroup);
    let outcome = match (stop, status) {
        (Stop::Cancelled, _) => Outcome::Cancelled,
        (Stop::WallTime, _) => Outcome::limit(Limit::WallTime, limits),
        (Stop::Output, _) => Outcome::limit(Limit::Output, limits),
        (Stop::Disk, _) => Outcome::limit(Limit::Disk, limits),
        (Stop::Exited(_), Some((code, signal))) => {
            if !report.trim().is_empty() {
                return Err(SandboxError::Setup(report.trim().to_string()));
            }
            let stderr = tail.text();
            classify(code, signal, &stderr, limits, &evidence)
        }
        (Stop::Exited(_), None) => unreachable!("an exited run has a status"),
    };
    Ok(RunReport {
        outcome,
        protections,
        duration,
        output_bytes: budget.used(),
        warm_start,
    })
}

/// What the server saw of a run besides its exit status.
#[derive(Debug, Default)]
struct Evidence {
    output_over: bool,
    /// Processes the run's memory cgroup killed.
    oom_kills: u64,
    /// Forks the run's pids cgroup refused.
    pids_refused: u64,
    disk_over: bool,
}

/// Names the limit behind a failure where the evidence allows.
fn classify(
    code: Option<i32>,
    signal: Option<i32>,
    stderr: &str,
    limits: &crate::Limits,
    evidence: &Evidence,
) -> Outcome {
    if evidence.output_over {
        return Outcome::limit(Limit::Output, limits);
    }
    if evidence.disk_over {
        return Outcome::limit(Limit::Disk, limits);
    }
    let failed = !matches!((code, signal), (Some(0), None));
    if failed && evidence.oom_kills > 0 {
        return Outcome::limit(Limit::Memory, limits);
    }
    if failed
        && evidence.pids_refused > 0
        && signal.is_none()
        && limit_from_stderr(stderr).is_none_or(|l| l == Limit::Processes)
    {
        return Outcome::limit(Limit::Processes, limits);
    }
    match (code, signal) {
        (_, Some(libc::SIGXCPU)) => Outcome::limit(Limit::CpuTime, limits),
        (_, Some(libc::SIGXFSZ)) => Outcome::limit(Limit::FileSize, limits),
        (_, Some(sig)) => Outcome::Signaled { signal: sig },
        (Some(0), None) => Outcome::Exited { code: 0 },
        (Some(code), None) => match limit_from_stderr(stderr) {
            Some(l) => Outcome::limit(l, limits),
            None => Outcome::Exited { code },
        },
        (None, None) => Outcome::Signaled { signal: 0 },
    }
}

/// Builds the ruleset: read+execute on `read` and `system`, read/write on `devices`,
/// everything on `writable`; TCP denied (ABI ≥ 4); signals and abstract sockets scoped
/// (ABI ≥ 6).
fn landlock_ruleset(
    kernel_abi: i32,
    read: &BTreeSet<PathBuf>,
    system: &[PathBuf],
    devices: &[PathBuf],
    writable: &[PathBuf],
) -> Result<(OwnedFd, i32), String> {
    let abi = landlock_abi(kernel_abi);
    let e = |e: landlock::RulesetError| e.to_string();
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(e)?;
    if kernel_abi >= 4 {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi)).map_err(e)?;
    }
    if kernel_abi >= 6 {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(e)?;
    }
    let mut created = ruleset
        .create()
        .map_err(e)?
        .set_compatibility(CompatLevel::BestEffort);
    let read_access = AccessFs::from_read(abi);
    for p in read.iter().chain(system.iter()) {
        if let Ok(fd) = PathFd::new(p) {
            created = created
                .add_rule(PathBeneath::new(fd, read_access))
                .map_err(e)?;
        }
    }
    for p in devices {
        if let Ok(fd) = PathFd::new(p) {
            created = created
                .add_rule(PathBeneath::new(
                    fd,
                    AccessFs::ReadFile | AccessFs::WriteFile,
                ))
                .map_err(e)?;
        }
    }
    for p in writable {
        let fd = PathFd::new(p).map_err(|err| format!("{}: {err}", p.display()))?;
        created = created
            .add_rule(PathBeneath::new(fd, AccessFs::from_all(abi)))
            .map_err(e)?;
    }
    let fd: Option<OwnedFd> = created.into();
    Ok((
        fd.expect("a created ruleset has a descriptor"),
        kernel_abi.min(6),
    ))
}

/// The Landlock ABI the crate knows, for the kernel's.
fn landlock_abi(kernel_abi: i32) -> ABI {
    match kernel_abi {
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        _ => ABI::V6,
    }
}

/// Where this process's command line and environment lie in its memory (fields 48–51
/// of `/proc/self/stat`), read once: a sandbox's init blanks its copies of them.
fn server_memory() -> ((usize, usize), (usize, usize)) {
    static SPANS: std::sync::OnceLock<((usize, usize), (usize, usize))> =
        std::sync::OnceLock::new();
    *SPANS.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let f: Vec<usize> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // `rest` starts at field 3.
        let at = |n: usize| f.get(n - 3).copied().unwrap_or(0);
        ((at(48), at(49)), (at(50), at(51)))
    })
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if dir.is_dir() {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                chown_tree(&e.path(), uid, gid)?;
            } else {
                std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))?;
            }
        }
    }
    Ok(())
}

/// The one shared guard (also used by the warm pool).
use crate::RemoveDir;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_leased_round_robin_and_returned_on_drop() {
        let ids = Arc::new(Ids::default());
        let a = ids.lease([1000, 1002]).unwrap();
        let b = ids.lease([1000, 1002]).unwrap();
        assert_eq!((a.uid, b.uid), (1000, 1001));
        drop(a);
        // The freed 1000 comes back only after the rest of the range.
        let c = ids.lease([1000, 1002]).unwrap();
        assert_eq!(c.uid, 1002);
        let d = ids.lease([1000, 1002]).unwrap();
        assert_eq!(d.uid, 1000);
        let full = ids.lease([1000, 1002]).err().unwrap().to_string();
        assert!(
            full.contains("all 3 uids") && full.contains("widen the range"),
            "{full}"
        );
        drop(b);
        assert_eq!(ids.lease([1000, 1002]).unwrap().uid, 1001);
    }

    #[test]
    fn a_range_that_includes_root_or_is_reversed_is_refused() {
        let ids = Arc::new(Ids::default());
        for range in [[0, 10], [20, 10]] {
            let e = ids.lease(range).err().unwrap().to_string();
            assert!(
                e.contains("uid_range") && e.contains("[100000, 165535]"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_servers_command_line_span_is_found() {
        let ((a, b), (c, d)) = server_memory();
        assert!(a > 0 && b > a && c >= b && d > c, "{a} {b} {c} {d}");
    }
}
