//! The `linux` backend: native CPython in user, mount, pid, net, ipc and uts namespaces,
//! with Landlock, rlimits, a clean environment and (when the server is root) an
//! unprivileged uid. See [`child`] for what happens between fork and exec.

mod child;
mod warm;

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::output::{Budget, StderrTail, limit_from_stderr, pump};
use crate::run::{Limit, Outcome, OutputSink, Protections, RunReport, RunSpec, SandboxError, Stream, secs};
use crate::{Backend, BackendKind, BoxFuture, Interpreter, WarmState};

/// `[sandbox.linux]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinuxConfig {
    /// The host uid and gid scripts run as when the server runs as root.
    pub uid: u32,
    pub gid: u32,
    /// Run with whatever protections are available when user namespaces or Landlock
    /// are missing (the run record lists what was missing). Off: such runs are refused.
    pub allow_degraded: bool,
    /// Warm starts for interpreters with `warm` modules (see [`warm`]).
    pub warm: WarmMode,
}

impl Default for LinuxConfig {
    fn default() -> Self {
        LinuxConfig { uid: 65534, gid: 65534, allow_degraded: false, warm: WarmMode::Eager }
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
        let abi = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0, 1u32) } as i32;
        let root = unsafe { libc::geteuid() } == 0;
        Support { landlock_abi: abi.max(0), user_namespaces: probe_userns(), root }
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
}

impl LinuxBackend {
    pub fn new(config: LinuxConfig) -> LinuxBackend {
        LinuxBackend { sandbox: Arc::new(Sandbox { config, support: Support::probe() }), pool: Arc::default() }
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
    child: tokio::process::Child,
    status_r: Option<OwnedFd>,
    _report_r: OwnedFd,
    _tmp: RemoveDir,
}

impl SandboxedProcess {
    /// Waits until the program ends; its raw wait status (`None` when its setup failed).
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        let Some(fd) = self.status_r.take() else { return Ok(None) };
        let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
        let mut raw = [0u8; 4];
        Ok(rx.read_exact(&mut raw).await.ok().map(|_| i32::from_ne_bytes(raw)))
    }

    /// Why the sandbox could not start the program, after [`SandboxedProcess::wait`]
    /// returned `None` (empty when it did start).
    pub async fn setup_problem(&mut self) -> String {
        let Ok(fd) = self._report_r.try_clone() else { return String::new() };
        let mut report = String::new();
        let mut file = tokio::fs::File::from_std(std::fs::File::from(fd));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), file.read_to_string(&mut report)).await;
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
        let Started { child, stdin, stdout, stderr, status_r, report_r, protections, _tmp } = started;
        Ok(SandboxedProcess {
            stdin: stdin.expect("stdin is piped"),
            stdout,
            stderr,
            protections,
            child,
            status_r: Some(status_r),
            _report_r: report_r,
            _tmp,
        })
    }
}

impl Backend for LinuxBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Linux
    }

    fn run<'a>(&'a self, spec: RunSpec, sink: Arc<dyn OutputSink>, cancel: CancellationToken) -> BoxFuture<'a, Result<RunReport, SandboxError>> {
        Box::pin(self.run_inner(spec, sink, cancel))
    }

    fn prepare(&self, interpreter: &Interpreter, runs_dir: &Path) {
        if self.sandbox.config.warm == WarmMode::Eager && self.warm_capable(interpreter) && warm::runs_dir_allowed(runs_dir) {
            self.pool.ensure(&self.sandbox, interpreter, &interpreter.limits, runs_dir);
        }
    }

    fn warm_state(&self, interpreter: &Interpreter, runs_dir: &Path) -> Option<WarmState> {
        (self.warm_capable(interpreter) && warm::runs_dir_allowed(runs_dir)).then(|| self.pool.state(interpreter, &interpreter.limits, runs_dir))
    }
}

impl LinuxBackend {
    /// Warm starts need the full sandbox: a spare's rules are fixed before its run is known.
    fn warm_capable(&self, interpreter: &Interpreter) -> bool {
        self.sandbox.config.warm != WarmMode::Off
            && !interpreter.warm.is_empty()
            && interpreter.kind == crate::InterpreterKind::Native
            && self.sandbox.support.landlock_abi >= 1
            && (self.sandbox.support.user_namespaces || self.sandbox.support.root)
    }

    async fn run_inner(&self, spec: RunSpec, sink: Arc<dyn OutputSink>, cancel: CancellationToken) -> Result<RunReport, SandboxError> {
        let warm = self.warm_capable(&spec.interpreter) && warm::eligible(&spec);
        let runs_dir = spec.workdir.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut started = None;
        if warm && let Some(spare) = self.pool.take(&spec.interpreter, &spec.limits, &runs_dir) {
            let spare = tokio::select! {
                s = spare => s,
                _ = cancel.cancelled() => return Ok(RunReport::cancelled_before_start(Protections::default())),
            };
            let owner = self.sandbox.support.root.then(|| (self.sandbox.uid(), self.sandbox.gid()));
            let claimed = match spare {
                Ok(spare) => spare.claim(&spec, owner).await,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(s) => started = Some(s),
                Err(e) => tracing::warn!(interpreter = %spec.interpreter.id, error = %e, "no warm start; starting cold"),
            }
        }
        let warm_start = started.is_some();
        let started = match started {
            Some(s) => s,
            None => self.sandbox.start(Launch::for_run(&spec))?,
        };
        let report = supervise(started, &spec.limits, sink, cancel, warm_start).await;
        if warm {
            // The next run of this interpreter finds a spare ready.
            self.pool.ensure(&self.sandbox, &spec.interpreter, &spec.limits, &runs_dir);
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
    _tmp: RemoveDir,
}

impl Sandbox {
    fn uid(&self) -> u32 {
        if self.support.root { self.config.uid } else { unsafe { libc::geteuid() } }
    }

    fn gid(&self) -> u32 {
        if self.support.root { self.config.gid } else { unsafe { libc::getegid() } }
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
            return Err(SandboxError::Unavailable { missing: what.join(" and "), why: why.join("; ") });
        }
        Ok(missing.into_iter().map(|(w, _)| w.to_string()).collect())
    }

    /// Starts `launch` in a fresh sandbox and returns at once.
    fn start(&self, launch: Launch<'_>) -> Result<Started, SandboxError> {
        let missing = self.missing()?;
        let support = self.support;
        let limits = launch.limits;
        let (uid, gid) = (self.uid(), self.gid());
        let program = launch.program;
        if !program.is_file() {
            return Err(SandboxError::Setup(format!("the program {} does not exist", program.display())));
        }

        // The private /tmp, beside the run directory, owned by the sandbox user.
        let workdir = launch.workdir;
        let name = workdir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
        let tmp = workdir.with_file_name(format!(".{name}.tmp"));
        std::fs::create_dir_all(&tmp)?;
        let tmp_guard = RemoveDir(tmp.clone());
        if support.root {
            chown_tree(workdir, uid, gid)?;
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        }

        // What the script may read, and where it may write.
        let mut read: BTreeSet<PathBuf> = BTreeSet::new();
        read.insert(program.to_path_buf());
        if let Some(interp) = launch.interpreter {
            read.extend(interpreter_paths(interp));
        }
        read.extend(launch.read.iter().cloned());
        let system: Vec<PathBuf> = [
            "/usr/lib", "/lib", "/lib64", "/usr/lib64", "/etc/ld.so.cache", "/etc/localtime", "/usr/share/zoneinfo",
            "/etc/os-release",
        ]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
        let devices: Vec<PathBuf> = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let writable = [workdir.to_path_buf(), tmp.clone()];

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
        if !support.root && !support.user_namespaces {
            return Err(SandboxError::Setup(
                "without root or user namespaces no namespaces can be made; degraded runs need at least one".into(),
            ));
        }
        let ruleset = if support.landlock_abi >= 1 {
            let (fd, abi) = landlock_ruleset(support.landlock_abi, &read, &system, &devices, &writable)
                .map_err(|e| SandboxError::Setup(format!("Landlock rules: {e}")))?;
            protections.landlock_abi = abi as u32;
            protections.landlock_filesystem = true;
            protections.landlock_network = abi >= 4;
            protections.landlock_scopes = abi >= 6;
            Some(fd)
        } else {
            None
        };

        let expose = launch.expose.to_path_buf();
        let covers = covers_for(read.iter().chain([&expose]), &tmp, support.root.then_some((uid, gid)));
        let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let mib = |m: u64| m.saturating_mul(1024 * 1024);
        let cpu = limits.cpu_seconds + launch.extra_cpu;
        let address_space = mib(launch.address_space_mib.unwrap_or(limits.memory_mib));
        let plan = child::Plan {
            switch_user: support.root,
            uid,
            gid,
            uid_map: std::ffi::CString::new(format!("{} {uid} 1", child::INNER_ID)).expect("no NUL"),
            gid_map: std::ffi::CString::new(format!("{} {gid} 1", child::INNER_ID)).expect("no NUL"),
            covers,
            rlimits: vec![
                (libc::RLIMIT_CPU, cpu, cpu + 1),
                (libc::RLIMIT_AS, address_space, address_space),
                (libc::RLIMIT_NPROC, limits.processes, limits.processes),
                (libc::RLIMIT_FSIZE, mib(limits.file_size_mib), mib(limits.file_size_mib)),
                (libc::RLIMIT_NOFILE, limits.open_files, limits.open_files),
                (libc::RLIMIT_CORE, 0, 0),
            ],
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
            .stdin(if launch.stdin { std::process::Stdio::piped() } else { std::process::Stdio::null() })
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
        let mut child = spawned.map_err(|e| SandboxError::Setup(format!("cannot start {}: {e}", program.display())))?;
        Ok(Started {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().expect("piped"),
            stderr: child.stderr.take().expect("piped"),
            child,
            status_r,
            report_r,
            protections,
            _tmp: tmp_guard,
        })
    }
}

/// What a process may read of an interpreter's installation: the executable, its prefix
/// and venv (unless that is the whole system), `sys.path`, extra read paths, its wrapper.
fn interpreter_paths(interp: &Interpreter) -> Vec<PathBuf> {
    let mut read = vec![interp.path.clone()];
    for p in interp.prefix.iter().chain(interp.env_prefix.iter()) {
        if !matches!(p.to_str(), Some("/" | "/usr" | "/usr/local")) {
            read.push(p.clone());
        }
    }
    read.extend(interp.sys_path.iter().chain(interp.read_paths.iter()).filter(|p| p.exists()).cloned());
    read.extend(interp.wrapper.iter().cloned());
    read
}

/// Streams a started sandbox's output to `sink` and waits until it ends, a limit is hit
/// or `cancel` fires. The wall-time limit counts from here.
async fn supervise(
    started: Started,
    limits: &crate::Limits,
    sink: Arc<dyn OutputSink>,
    cancel: CancellationToken,
    warm_start: bool,
) -> Result<RunReport, SandboxError> {
    let Started { mut child, stdin, stdout, stderr, status_r, report_r, protections, _tmp } = started;
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
        let status = status_rx.read_exact(&mut raw).await.ok().map(|_| i32::from_ne_bytes(raw));
        let _ = (&mut out).await;
        let _ = (&mut err).await;
        status
    };
    enum Stop {
        Exited(Option<i32>),
        Cancelled,
        WallTime,
        Output,
    }
    let stop = tokio::select! {
        status = finished => Stop::Exited(status),
        _ = cancel.cancelled() => Stop::Cancelled,
        _ = tokio::time::sleep(secs(limits.wall_seconds)) => Stop::WallTime,
        _ = budget.exceeded() => Stop::Output,
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
            Some(if libc::WIFSIGNALED(raw) { (None, Some(libc::WTERMSIG(raw))) } else { (Some(libc::WEXITSTATUS(raw)), None) })
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
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), report_file.read_to_string(&mut report)).await;

    let outcome = match (stop, status) {
        (Stop::Cancelled, _) => Outcome::Cancelled,
        (Stop::WallTime, _) => Outcome::limit(Limit::WallTime, limits),
        (Stop::Output, _) => Outcome::limit(Limit::Output, limits),
        (Stop::Exited(_), Some((code, signal))) => {
            if !report.trim().is_empty() {
                return Err(SandboxError::Setup(report.trim().to_string()));
            }
            let stderr = tail.text();
            classify(code, signal, &stderr, limits, budget.is_exceeded())
        }
        (Stop::Exited(_), None) => unreachable!("an exited run has a status"),
    };
    Ok(RunReport { outcome, protections, duration, output_bytes: budget.used(), warm_start })
}

/// Names the limit behind a failure where the evidence allows.
fn classify(code: Option<i32>, signal: Option<i32>, stderr: &str, limits: &crate::Limits, output_over: bool) -> Outcome {
    if output_over {
        return Outcome::limit(Limit::Output, limits);
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
    let abi = match kernel_abi {
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        _ => ABI::V6,
    };
    let e = |e: landlock::RulesetError| e.to_string();
    let mut ruleset =
        Ruleset::default().set_compatibility(CompatLevel::HardRequirement).handle_access(AccessFs::from_all(abi)).map_err(e)?;
    if kernel_abi >= 4 {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi)).map_err(e)?;
    }
    if kernel_abi >= 6 {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(e)?;
    }
    let mut created = ruleset.create().map_err(e)?.set_compatibility(CompatLevel::BestEffort);
    let read_access = AccessFs::from_read(abi);
    for p in read.iter().chain(system.iter()) {
        if let Ok(fd) = PathFd::new(p) {
            created = created.add_rule(PathBeneath::new(fd, read_access)).map_err(e)?;
        }
    }
    for p in devices {
        if let Ok(fd) = PathFd::new(p) {
            created = created.add_rule(PathBeneath::new(fd, AccessFs::ReadFile | AccessFs::WriteFile)).map_err(e)?;
        }
    }
    for p in writable {
        let fd = PathFd::new(p).map_err(|err| format!("{}: {err}", p.display()))?;
        created = created.add_rule(PathBeneath::new(fd, AccessFs::from_all(abi))).map_err(e)?;
    }
    let fd: Option<OwnedFd> = created.into();
    Ok((fd.expect("a created ruleset has a descriptor"), kernel_abi.min(6)))
}

/// Can `uid`/`gid` search directory `m`?
fn searchable(m: &std::fs::Metadata, uid: u32, gid: u32) -> bool {
    let mode = m.mode();
    if m.uid() == uid {
        mode & 0o100 != 0
    } else if m.gid() == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Plans the mounts that shape the sandbox's view of the file system:
/// - `/tmp` is covered by the run's private temporary directory;
/// - when switching to `user` (a root server), a directory that user cannot enter
///   (e.g. `/root` at 0700) is covered by an empty tmpfs;
///
/// and the needed `paths` below a cover are moved back in, at the same place.
fn covers_for<'a>(paths: impl Iterator<Item = &'a PathBuf>, private_tmp: &Path, user: Option<(u32, u32)>) -> Vec<child::Cover> {
    let tmp = PathBuf::from("/tmp");
    let mut by_cover: std::collections::BTreeMap<PathBuf, BTreeSet<PathBuf>> = Default::default();
    by_cover.insert(tmp.clone(), BTreeSet::new());
    for p in paths {
        if p.starts_with(&tmp) {
            by_cover.entry(tmp.clone()).or_default().insert(p.clone());
            continue;
        }
        let Some((uid, gid)) = user else { continue };
        let mut acc = PathBuf::from("/");
        for comp in p.components().skip(1) {
            let Ok(m) = std::fs::metadata(&acc) else { break };
            if !searchable(&m, uid, gid) {
                by_cover.entry(acc.clone()).or_default().insert(p.clone());
                break;
            }
            acc.push(comp);
        }
    }
    // The private /tmp first: its source may lie below another cover.
    let mut order: Vec<_> = by_cover.into_iter().collect();
    order.sort_by_key(|(c, _)| c != &tmp);
    order
        .into_iter()
        .map(|(cover, paths)| {
            // Drop paths that lie inside another exposed path.
            let paths: Vec<PathBuf> = paths.iter().filter(|p| !paths.iter().any(|q| q != *p && p.starts_with(q))).cloned().collect();
            let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
            let mut files = Vec::new();
            for p in &paths {
                let mut parent = p.parent();
                while let Some(d) = parent {
                    if d == cover || !d.starts_with(&cover) {
                        break;
                    }
                    dirs.insert(d.to_path_buf());
                    parent = d.parent();
                }
                if p.is_dir() {
                    dirs.insert(p.clone());
                } else {
                    files.push(p.clone());
                }
            }
            // BTreeSet order puts parents before children.
            child::Cover {
                bind_from: (cover == tmp).then(|| child::cpath(private_tmp)),
                path: child::cpath(&cover),
                dirs: dirs.iter().map(|d| child::cpath(d)).collect(),
                files: files.iter().map(|f| child::cpath(f)).collect(),
                exposes: paths.iter().map(|p| child::cpath(p)).collect(),
            }
        })
        .collect()
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

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
