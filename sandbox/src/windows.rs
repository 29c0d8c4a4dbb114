//! The `windows` backend: native CPython in a job object.
//!
//! The child is created suspended, assigned to a job object (kill on job close,
//! per-process memory, active process count, per-process CPU time, UI restrictions),
//! and only then resumed, so not one instruction of the script runs outside the job.
//! Closing or terminating the job ends every process in it.
//!
//! Built and type-checked for `x86_64-pc-windows-gnu` in CI; not run there (no Windows).

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_ACTIVE_PROCESS,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOB_OBJECT_LIMIT_PROCESS_MEMORY,
    JOB_OBJECT_LIMIT_PROCESS_TIME, JOB_OBJECT_UILIMIT_DESKTOP, JOB_OBJECT_UILIMIT_DISPLAYSETTINGS,
    JOB_OBJECT_UILIMIT_EXITWINDOWS, JOB_OBJECT_UILIMIT_GLOBALATOMS, JOB_OBJECT_UILIMIT_HANDLES,
    JOB_OBJECT_UILIMIT_READCLIPBOARD, JOB_OBJECT_UILIMIT_SYSTEMPARAMETERS,
    JOB_OBJECT_UILIMIT_WRITECLIPBOARD, JOBOBJECT_BASIC_UI_RESTRICTIONS,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectBasicUIRestrictions,
    JobObjectExtendedLimitInformation, SetInformationJobObject, TerminateJobObject,
};
use windows_sys::Win32::System::Threading::{
    CREATE_SUSPENDED, OpenThread, ResumeThread, THREAD_SUSPEND_RESUME,
};

use crate::output::{Budget, StderrTail, limit_from_stderr, pump};
use crate::run::{
    Limit, Outcome, OutputSink, Protections, RunReport, RunSpec, SandboxError, Stream, secs,
};
use crate::{Backend, BackendKind, BoxFuture};

/// Exit code the job is terminated with when Scriptorium stops a run.
const STOPPED: u32 = 0xC000_013A;

pub struct WindowsBackend;

/// A job object handle, closed (killing what is left in it) on drop.
struct Job(HANDLE);

// SAFETY: a job handle may be used from any thread.
unsafe impl Send for Job {}
unsafe impl Sync for Job {}

impl Drop for Job {
    fn drop(&mut self) {
        unsafe { CloseHandle(self.0) };
    }
}

fn last_error(what: &str) -> SandboxError {
    SandboxError::Setup(format!("{what}: {}", std::io::Error::last_os_error()))
}

impl Job {
    fn new(limits: &crate::Limits) -> Result<Job, SandboxError> {
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            return Err(last_error("CreateJobObjectW"));
        }
        let job = Job(handle);
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            | JOB_OBJECT_LIMIT_PROCESS_MEMORY
            | JOB_OBJECT_LIMIT_ACTIVE_PROCESS
            | JOB_OBJECT_LIMIT_PROCESS_TIME;
        info.BasicLimitInformation.ActiveProcessLimit =
            limits.processes.min(u32::MAX as u64) as u32;
        // 100 ns units.
        info.BasicLimitInformation.PerProcessUserTimeLimit =
            (limits.cpu_seconds as i64).saturating_mul(10_000_000);
        info.ProcessMemoryLimit = (limits.memory_mib as usize).saturating_mul(1024 * 1024);
        let ok = unsafe {
            SetInformationJobObject(
                job.0,
                JobObjectExtendedLimitInformation,
                (&info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if ok == 0 {
            return Err(last_error("SetInformationJobObject (limits)"));
        }
        let ui = JOBOBJECT_BASIC_UI_RESTRICTIONS {
            UIRestrictionsClass: JOB_OBJECT_UILIMIT_DESKTOP
                | JOB_OBJECT_UILIMIT_DISPLAYSETTINGS
                | JOB_OBJECT_UILIMIT_EXITWINDOWS
                | JOB_OBJECT_UILIMIT_GLOBALATOMS
                | JOB_OBJECT_UILIMIT_HANDLES
                | JOB_OBJECT_UILIMIT_READCLIPBOARD
                | JOB_OBJECT_UILIMIT_SYSTEMPARAMETERS
                | JOB_OBJECT_UILIMIT_WRITECLIPBOARD,
        };
        let ok = unsafe {
            SetInformationJobObject(
                job.0,
                JobObjectBasicUIRestrictions,
                (&ui as *const JOBOBJECT_BASIC_UI_RESTRICTIONS).cast(),
                std::mem::size_of::<JOBOBJECT_BASIC_UI_RESTRICTIONS>() as u32,
            )
        };
        if ok == 0 {
            return Err(last_error("SetInformationJobObject (UI restrictions)"));
        }
        Ok(job)
    }

    fn terminate(&self) {
        unsafe { TerminateJobObject(self.0, STOPPED) };
    }
}

/// Resumes every thread of a process created with `CREATE_SUSPENDED`.
fn resume_process(pid: u32) -> Result<(), SandboxError> {
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return Err(last_error("CreateToolhelp32Snapshot"));
    }
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut resumed = 0;
    let mut more = unsafe { Thread32First(snap, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
            if !thread.is_null() {
                unsafe {
                    ResumeThread(thread);
                    CloseHandle(thread);
                }
                resumed += 1;
            }
        }
        more = unsafe { Thread32Next(snap, &mut entry) } != 0;
    }
    unsafe { CloseHandle(snap) };
    if resumed == 0 {
        return Err(SandboxError::Setup(
            "could not resume the suspended interpreter".into(),
        ));
    }
    Ok(())
}

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
    let limits = spec.limits.clone();
    let job = Job::new(&limits)?;
    let mut cmd = tokio::process::Command::new(&spec.interpreter.path);
    cmd.args(spec.python_args());
    // Nothing of the server's environment reaches the script; CPython on Windows needs
    // SYSTEMROOT to initialise its random source and sockets.
    cmd.env_clear()
        .env(
            "SYSTEMROOT",
            std::env::var_os("SYSTEMROOT").unwrap_or_else(|| "C:\\Windows".into()),
        )
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .env("TEMP", &spec.workdir)
        .env("TMP", &spec.workdir)
        .current_dir(&spec.workdir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .creation_flags(CREATE_SUSPENDED)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        SandboxError::Setup(format!(
            "cannot start {}: {e}",
            spec.interpreter.path.display()
        ))
    })?;
    let process = child
        .raw_handle()
        .ok_or_else(|| SandboxError::Setup("the interpreter exited at once".into()))?;
    if unsafe { AssignProcessToJobObject(job.0, process as HANDLE) } == 0 {
        let _ = child.start_kill();
        return Err(last_error("AssignProcessToJobObject"));
    }
    let pid = child.id().unwrap_or(0);
    if let Err(e) = resume_process(pid) {
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
    enum Stop {
        Exited(std::process::ExitStatus),
        Cancelled,
        WallTime,
        Output,
    }
    let stop = tokio::select! {
        s = child.wait() => Stop::Exited(s?),
        _ = cancel.cancelled() => Stop::Cancelled,
        _ = tokio::time::sleep(secs(limits.wall_seconds)) => Stop::WallTime,
        _ = budget.exceeded() => Stop::Output,
    };
    // Whatever the script started ends with it.
    job.terminate();
    let _ = child.wait().await;
    let duration = started.elapsed();
    let _ = out.await;
    let _ = err.await;
    let outcome = match stop {
        Stop::Cancelled => Outcome::Cancelled,
        Stop::WallTime => Outcome::limit(Limit::WallTime, &limits),
        Stop::Output => Outcome::limit(Limit::Output, &limits),
        Stop::Exited(status) => match status.code() {
            Some(0) => Outcome::Exited { code: 0 },
            Some(code) => match limit_from_stderr(&tail.text()) {
                Some(l) => Outcome::limit(l, &limits),
                None => Outcome::Exited { code },
            },
            None => Outcome::Signaled { signal: 0 },
        },
    };
    let protections = Protections {
        backend: Some(BackendKind::Windows),
        job_object: true,
        rlimits: true,
        ..Default::default()
    };
    Ok(RunReport {
        outcome,
        protections,
        duration,
        output_bytes: budget.used(),
        warm_start: false,
    })
}
