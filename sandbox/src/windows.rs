//! The `windows` backend: native CPython in a job object.
//!
//! The child is created suspended, assigned to a job object (kill on job close,
//! per-process memory, active process count, per-process CPU time, UI restrictions),
//! and only then resumed, so not one instruction of the script runs outside the job.
//! Terminating or closing the job ends every process in it: after a run, and when the
//! server itself ends (its handle to the job closes with it).
//!
//! The wall time, cancellation and the output cap are the server's to enforce (it
//! terminates the job); the environment is cleared. The job's own limits are enforced
//! by Windows; Wine implements only some of them, and a run under Wine lists the
//! others in `Protections::missing` ([`job::not_enforced`]). `scripts/test-windows.sh`
//! builds this for `x86_64-pc-windows-gnu` and attacks each protection under Wine
//! (`sandbox/tests/windows.rs`).

pub mod job;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use windows_sys::Win32::System::Threading::CREATE_SUSPENDED;

use crate::output::{Budget, StderrTail, limit_from_stderr, pump};
use crate::run::{
    Limit, Outcome, OutputSink, Protections, RunReport, RunSpec, SandboxError, Stream, secs,
};
use crate::{Backend, BackendKind, BoxFuture};
use job::{Job, JobLimits};

pub struct WindowsBackend;

/// The exit status of a process Windows ended for using up the job's per-process CPU
/// time (`ERROR_NOT_ENOUGH_QUOTA`).
const CPU_TIME_EXCEEDED: i32 = 1816;

impl Backend for WindowsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Windows
    }

    fn run<'a>(
        &'a self,
        spec: RunSpec,
        sink: Arc<dyn OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<RunReport, SandboxError>> {
        Box::pin(run(spec, sink, cancel))
    }
}

async fn run(
    spec: RunSpec,
    sink: Arc<dyn OutputSink>,
    cancel: CancellationToken,
) -> Result<RunReport, SandboxError> {
    let program = JobProgram {
        program: spec.interpreter.path.clone(),
        args: spec.python_args(),
        workdir: spec.workdir.clone(),
        env: vec![
            ("PYTHONUNBUFFERED".into(), "1".into()),
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ("PYTHONIOENCODING".into(), "utf-8".into()),
        ],
        limits: spec.limits.clone(),
        memory_mib: spec.limits.memory_mib,
    };
    let ran = run_in_job(program, sink, cancel).await?;
    let outcome = match ran.stop {
        Stop::Exited(code) => match code {
            0 => Outcome::Exited { code: 0 },
            // Windows ends a process over the job's CPU time with this status.
            CPU_TIME_EXCEEDED => Outcome::limit(Limit::CpuTime, &spec.limits),
            code => match limit_from_stderr(&ran.stderr_tail) {
                Some(l) => Outcome::limit(l, &spec.limits),
                None => Outcome::Exited { code },
            },
        },
        other => other.outcome(&spec.limits),
    };
    Ok(RunReport {
        outcome,
        protections: ran.protections,
        duration: ran.duration,
        output_bytes: ran.output_bytes,
        warm_start: false,
    })
}

/// A program to run in a job object (a script's interpreter, a WASI host).
pub struct JobProgram {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub workdir: PathBuf,
    /// Variables on top of the clean set ([`clean_env`]).
    pub env: Vec<(OsString, OsString)>,
    pub limits: crate::Limits,
    /// The job's per-process memory limit (a WASI host needs room beyond its guest's).
    pub memory_mib: u64,
}

/// Why a job run ended.
#[derive(Debug)]
pub enum Stop {
    /// The first process exited with this code (the job was then terminated).
    Exited(i32),
    Cancelled,
    WallTime,
    Output,
}

impl Stop {
    /// The outcome of a run that did not end by itself.
    pub fn outcome(&self, limits: &crate::Limits) -> Outcome {
        match self {
            Stop::Exited(code) => Outcome::Exited { code: *code },
            Stop::Cancelled => Outcome::Cancelled,
            Stop::WallTime => Outcome::limit(Limit::WallTime, limits),
            Stop::Output => Outcome::limit(Limit::Output, limits),
        }
    }
}

/// How a job run went.
pub struct JobRun {
    pub stop: Stop,
    pub stderr_tail: String,
    pub protections: Protections,
    pub duration: Duration,
    pub output_bytes: u64,
}

/// The environment every program in a job starts with: nothing of the server's. CPython
/// (and Rust's std) need SYSTEMROOT for their random source and sockets; TEMP and TMP
/// point into the run directory.
fn clean_env(workdir: &std::path::Path) -> Vec<(OsString, OsString)> {
    vec![
        (
            "SYSTEMROOT".into(),
            std::env::var_os("SYSTEMROOT").unwrap_or_else(|| "C:\\Windows".into()),
        ),
        ("TEMP".into(), workdir.into()),
        ("TMP".into(), workdir.into()),
    ]
}

/// Starts `p` suspended, puts it in a fresh job, resumes it, streams its output to
/// `sink`, and ends the job when it exits, `cancel` fires, the wall time passes or the
/// output cap is reached. Every process it started ends with the job.
pub async fn run_in_job(
    p: JobProgram,
    sink: Arc<dyn OutputSink>,
    cancel: CancellationToken,
) -> Result<JobRun, SandboxError> {
    let limits = p.limits.clone();
    let job = Job::new(&JobLimits {
        processes: limits.processes,
        memory_mib: p.memory_mib,
        cpu_seconds: limits.cpu_seconds,
    })?;
    let mut cmd = tokio::process::Command::new(&p.program);
    cmd.args(&p.args)
        .env_clear()
        .envs(clean_env(&p.workdir))
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&p.workdir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .creation_flags(CREATE_SUSPENDED)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| SandboxError::Setup(format!("cannot start {}: {e}", p.program.display())))?;
    let process = child
        .raw_handle()
        .ok_or_else(|| SandboxError::Setup("the process exited at once".into()))?;
    // SAFETY: the handle belongs to `child`, which is not waited for and outlives this
    // borrow.
    let process = unsafe { std::os::windows::io::BorrowedHandle::borrow_raw(process) };
    if let Err(e) = job.assign(process) {
        let _ = child.start_kill();
        return Err(e);
    }
    let pid = child.id().unwrap_or(0);
    if let Err(e) = job::resume_process(pid) {
        job.terminate();
        return Err(e);
    }

    let budget = Budget::new(limits.output_bytes);
    let tail = Arc::new(StderrTail::new(sink));
    let out = tokio::spawn(pump(
        child.stdout.take().expect("piped"),
        Stream::Stdout,
        tail.clone(),
        budget.clone(),
    ));
    let err = tokio::spawn(pump(
        child.stderr.take().expect("piped"),
        Stream::Stderr,
        tail.clone(),
        budget.clone(),
    ));
    let stop = tokio::select! {
        s = child.wait() => Stop::Exited(s?.code().unwrap_or(-1)),
        _ = cancel.cancelled() => Stop::Cancelled,
        _ = tokio::time::sleep(secs(limits.wall_seconds)) => Stop::WallTime,
        _ = budget.exceeded() => Stop::Output,
    };
    // Whatever the program started ends with it.
    job.terminate();
    let _ = child.wait().await;
    job.wait_empty(Duration::from_secs(2)).await;
    let duration = started.elapsed();
    // A grandchild holding the pipes is gone with the job; bound the wait all the same.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = out.await;
        let _ = err.await;
    })
    .await;
    let stop = match stop {
        Stop::Exited(_) if budget.is_exceeded() => Stop::Output,
        s => s,
    };
    Ok(JobRun {
        stop,
        stderr_tail: tail.text(),
        protections: Protections {
            backend: Some(BackendKind::Windows),
            job_object: true,
            missing: job::not_enforced(),
            ..Default::default()
        },
        duration,
        output_bytes: budget.used(),
    })
}
