//! What every backend takes and returns: the run specification, the output sink,
//! the outcome and the protections that applied.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::interpreters::{BackendKind, Interpreter};
use crate::limits::Limits;

/// One run to perform.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub interpreter: Interpreter,
    /// The script file on the host.
    pub script: PathBuf,
    /// The input file, passed as `argv[1]` (a host path; readable by the script).
    pub input: Option<PathBuf>,
    /// Further arguments after the input.
    pub args: Vec<String>,
    /// The working directory: the script's only writable place; its files are artifacts.
    pub workdir: PathBuf,
    pub limits: Limits,
}

impl RunSpec {
    /// The interpreter's arguments for a native run: isolated (`-I`: no PYTHON* variables,
    /// no user site) and unbuffered (`-u`), the interpreter's wrapper if it has one, the
    /// script, the input file as `argv[1]`, then the further arguments.
    pub fn python_args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["-I".into(), "-u".into()];
        if let Some(w) = &self.interpreter.wrapper {
            a.push(w.into());
        }
        a.push(self.script.clone().into());
        if let Some(input) = &self.input {
            a.push(input.into());
        }
        a.extend(self.args.iter().map(Into::into));
        a
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives output lines as the script writes them.
pub trait OutputSink: Send + Sync {
    fn line(&self, stream: Stream, line: &str);
}

/// A sink that collects lines (tests, the terminal entry point's summary).
#[derive(Default)]
pub struct Collect(pub std::sync::Mutex<Vec<(Stream, String)>>);

impl OutputSink for Collect {
    fn line(&self, stream: Stream, line: &str) {
        self.0
            .lock()
            .expect("collect lock")
            .push((stream, line.to_string()));
    }
}

impl Collect {
    pub fn text(&self, stream: Stream) -> String {
        let lines = self.0.lock().expect("collect lock");
        lines
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }
}

/// A bound a run hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    WallTime,
    CpuTime,
    Memory,
    Output,
    Processes,
    FileSize,
    /// The run directory and /tmp together held more bytes or files than allowed.
    Disk,
}

impl Limit {
    pub fn describe(self, limits: &Limits) -> String {
        match self {
            Limit::WallTime => format!(
                "the run took longer than its {} s time limit and was stopped",
                limits.wall_seconds
            ),
            Limit::CpuTime => format!(
                "the script used more than its {} s of CPU time",
                limits.cpu_seconds
            ),
            Limit::Memory => format!(
                "the script needed more than its {} MiB memory limit",
                limits.memory_mib
            ),
            Limit::Output => format!(
                "the script printed more than its {} bytes output limit and was stopped",
                limits.output_bytes
            ),
            Limit::Processes => format!(
                "the script tried to start more than {} processes",
                limits.processes
            ),
            Limit::FileSize => format!(
                "the script wrote a file larger than its {} MiB limit",
                limits.file_size_mib
            ),
            Limit::Disk => format!(
                "the run filled more than its disk quota ({} MiB or {} files in its directory and /tmp) and was stopped",
                limits.disk_mib, limits.disk_files
            ),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The script exited with this code (0 is success).
    Exited { code: i32 },
    /// The script was killed by a signal that no limit explains.
    Signaled { signal: i32 },
    /// A bound was hit; the run was stopped or failed because of it.
    LimitExceeded { limit: Limit, message: String },
    /// Cancelled on request.
    Cancelled,
    /// The interpreter itself failed (e.g. a WebAssembly trap).
    Crashed { message: String },
}

impl Outcome {
    pub fn limit(limit: Limit, limits: &Limits) -> Outcome {
        Outcome::LimitExceeded {
            limit,
            message: limit.describe(limits),
        }
    }

    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited { code: 0 })
    }

    /// A sentence for the user.
    pub fn message(&self) -> String {
        match self {
            Outcome::Exited { code: 0 } => "the script finished successfully".into(),
            Outcome::Exited { code } => format!("the script exited with code {code}"),
            Outcome::Signaled { signal } => format!("the script was killed by signal {signal}"),
            Outcome::LimitExceeded { message, .. } => message.clone(),
            Outcome::Cancelled => "the run was cancelled".into(),
            Outcome::Crashed { message } => format!("the interpreter crashed: {message}"),
        }
    }

    /// The process exit code a terminal user would expect for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited { code } => *code,
            Outcome::Signaled { signal } => 128 + signal,
            Outcome::LimitExceeded { .. } => 124,
            Outcome::Cancelled => 130,
            Outcome::Crashed { .. } => 70,
        }
    }
}

/// Which protections a run actually had; kept with the run record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Protections {
    pub backend: Option<BackendKind>,
    /// Namespaces entered, e.g. `["user", "mount", "pid", "net", "ipc", "uts", "cgroup"]`.
    pub namespaces: Vec<&'static str>,
    /// The Landlock ABI in force (0: none).
    pub landlock_abi: u32,
    pub landlock_filesystem: bool,
    pub landlock_network: bool,
    pub landlock_scopes: bool,
    pub no_new_privs: bool,
    pub rlimits: bool,
    /// The seccomp filter in force, e.g. `docker-default-like, 66 syscalls denied`.
    pub seccomp: Option<String>,
    /// The script had a session keyring of its own (none of the server's keys).
    pub private_keyring: bool,
    /// The script saw a minimal root: only its interpreter, its run directory, a
    /// private tmpfs `/tmp`, five device nodes and its own `/proc`.
    pub minimal_root: bool,
    /// The host uid the script ran as.
    pub uid: Option<u32>,
    /// WASI: the guest sees only the run directory and has no sockets.
    pub wasm_isolation: bool,
    /// Windows: a job object with kill-on-close and limits.
    pub job_object: bool,
    /// The run's own cgroup (linux), `None` when cgroups were not available (then
    /// `missing` says why and only rlimits bound memory and processes).
    pub cgroup: Option<CgroupProtection>,
    /// The run directory and /tmp were held to `disk_mib` / `disk_files`.
    pub disk_quota: bool,
    /// What forked the sandbox (linux): `zygote`, or `direct` (the server itself; with
    /// the reason when a zygote was configured but failed). The protections are the same.
    pub launcher: Option<String>,
    /// Protections that were wanted but not available: with `allow_degraded` for the
    /// required ones; always listed for the optional ones (cgroups).
    pub missing: Vec<String>,
}

/// The cgroup a linux run was put in before its interpreter started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CgroupProtection {
    /// 1 (v1 hierarchies, e.g. a hybrid layout) or 2 (the unified hierarchy).
    pub version: u8,
    /// `memory.max` (v2) or `memory.limit_in_bytes` (v1): every process and its tmpfs
    /// pages counted together.
    pub memory: bool,
    /// Swap is bounded too (`memory.swap.max = 0` / `memory.memsw.limit_in_bytes`).
    pub swap: bool,
    /// `pids.max`: the processes and threads of the whole run.
    pub pids: bool,
    /// The CPU time of all the run's processes is counted together (v2 `cpu.stat`, v1
    /// `cpuacct`) and held to `cpu_seconds`. `false`: only per process (RLIMIT_CPU):
    /// where no cpu cgroup is available (a run's `missing` then says why), and for a
    /// WASI run, whose host is one process.
    pub cpu: bool,
    /// Processes of the run the memory cgroup's OOM killer ended, even when the run
    /// went on and succeeded.
    pub oom_kills: u64,
    /// Forks refused at `pids.max`, even when the run went on and succeeded.
    pub pids_refused: u64,
}

/// What a backend reports after a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub outcome: Outcome,
    pub protections: Protections,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
    /// Bytes of stdout + stderr the script wrote (up to the cap).
    pub output_bytes: u64,
    /// The run used a spare sandbox whose interpreter had its modules imported already.
    pub warm_start: bool,
}

impl RunReport {
    /// A run cancelled before its script started.
    pub fn cancelled_before_start(protections: Protections) -> RunReport {
        RunReport {
            outcome: Outcome::Cancelled,
            protections,
            duration: Duration::ZERO,
            output_bytes: 0,
            warm_start: false,
        }
    }
}

mod duration_secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 100.0).round() / 100.0)
    }
}

/// Why a run could not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox could not be set up: {0}")]
    Setup(String),
    #[error(
        "refusing to run without {missing}: {why}. Fix the machine, or set `allow_degraded = true` under [sandbox] to run with what is available (the run record will say what applied)"
    )]
    Unavailable { missing: String, why: String },
    #[error("the `{0}` backend is not available on this platform")]
    Unsupported(BackendKind),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Interpreter(#[from] crate::interpreters::InterpreterError),
}

/// Duration → seconds for limits written as floats.
pub fn secs(f: f64) -> Duration {
    Duration::from_secs_f64(f.max(0.0))
}
