//! The job object: limits set before the child runs, kill on close, and what this
//! machine actually enforces of them.

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_ACTIVE_PROCESS,
    JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOB_OBJECT_LIMIT_PROCESS_MEMORY, JOB_OBJECT_LIMIT_PROCESS_TIME, JOB_OBJECT_UILIMIT_DESKTOP,
    JOB_OBJECT_UILIMIT_DISPLAYSETTINGS, JOB_OBJECT_UILIMIT_EXITWINDOWS,
    JOB_OBJECT_UILIMIT_GLOBALATOMS, JOB_OBJECT_UILIMIT_HANDLES, JOB_OBJECT_UILIMIT_READCLIPBOARD,
    JOB_OBJECT_UILIMIT_SYSTEMPARAMETERS, JOB_OBJECT_UILIMIT_WRITECLIPBOARD,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_BASIC_UI_RESTRICTIONS,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectBasicAccountingInformation,
    JobObjectBasicUIRestrictions, JobObjectExtendedLimitInformation, QueryInformationJobObject,
    SetInformationJobObject, TerminateJobObject,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{OpenThread, ResumeThread, THREAD_SUSPEND_RESUME};

use crate::run::SandboxError;

/// Exit code the job is terminated with when Scriptorium stops a run.
pub const STOPPED: u32 = 0xC000_013A;

/// The job-object protections a run can have, as the run record names them.
pub const KILL_ON_CLOSE: &str = "job object: kill on job close";
pub const ACTIVE_PROCESSES: &str = "job object: active process limit";
pub const PROCESS_MEMORY: &str = "job object: per-process memory limit";
pub const PROCESS_TIME: &str = "job object: per-process CPU time limit";
pub const UI_RESTRICTIONS: &str = "job object: UI restrictions";

/// The limits Wine accepts but does not enforce (Wine 8.0, measured by
/// `sandbox/tests/windows.rs`, which fails when this list is wrong either way).
const NOT_ENFORCED_BY_WINE: &[&str] = &[
    ACTIVE_PROCESSES,
    PROCESS_MEMORY,
    PROCESS_TIME,
    UI_RESTRICTIONS,
];

/// The job-object protections that are not in force on this machine: none on Windows;
/// under Wine, those it does not implement (each with why, for `Protections::missing`).
pub fn not_enforced() -> Vec<String> {
    match wine_version() {
        Some(v) => NOT_ENFORCED_BY_WINE
            .iter()
            .map(|p| format!("{p} (not implemented by Wine {v})"))
            .collect(),
        None => Vec::new(),
    }
}

/// The Wine version when running under Wine (its ntdll exports `wine_get_version`).
pub fn wine_version() -> Option<String> {
    let ntdll: Vec<u16> = "ntdll.dll\0".encode_utf16().collect();
    // SAFETY: ntdll is loaded in every process; both names are NUL-terminated.
    let get = unsafe {
        let module = GetModuleHandleW(ntdll.as_ptr());
        if module.is_null() {
            return None;
        }
        GetProcAddress(module, c"wine_get_version".as_ptr().cast())?
    };
    // SAFETY: Wine's `const char *wine_get_version(void)` returns a static C string.
    let version = unsafe {
        let get = std::mem::transmute::<
            unsafe extern "system" fn() -> isize,
            extern "C" fn() -> *const std::ffi::c_char,
        >(get);
        std::ffi::CStr::from_ptr(get())
    };
    Some(version.to_string_lossy().into_owned())
}

/// A job object handle, closed (killing what is left in it) on drop.
pub struct Job(HANDLE);

// SAFETY: a job handle is a kernel handle, usable from any thread.
unsafe impl Send for Job {}
// SAFETY: as above; the job's functions take the handle by value.
unsafe impl Sync for Job {}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and closed once; with KILL_ON_JOB_CLOSE this
        // ends every process still in the job.
        unsafe { CloseHandle(self.0) };
    }
}

fn last_error(what: &str) -> SandboxError {
    SandboxError::Setup(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// What a job allows each process in it.
pub struct JobLimits {
    pub processes: u64,
    pub memory_mib: u64,
    pub cpu_seconds: u64,
}

impl Job {
    pub fn new(limits: &JobLimits) -> Result<Job, SandboxError> {
        // SAFETY: no name and default security: a new anonymous, non-inheritable job.
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            return Err(last_error("CreateJobObjectW"));
        }
        let job = Job(handle);
        // SAFETY: a plain C struct; all zeroes is "no limits".
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION
            | JOB_OBJECT_LIMIT_PROCESS_MEMORY
            | JOB_OBJECT_LIMIT_ACTIVE_PROCESS
            | JOB_OBJECT_LIMIT_PROCESS_TIME;
        info.BasicLimitInformation.ActiveProcessLimit =
            limits.processes.clamp(1, u32::MAX as u64) as u32;
        // 100 ns units.
        info.BasicLimitInformation.PerProcessUserTimeLimit =
            (limits.cpu_seconds.min(i64::MAX as u64) as i64).saturating_mul(10_000_000);
        info.ProcessMemoryLimit = (limits.memory_mib as usize).saturating_mul(1024 * 1024);
        job.set(
            JobObjectExtendedLimitInformation,
            &info,
            "SetInformationJobObject (limits)",
        )?;
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
        job.set(
            JobObjectBasicUIRestrictions,
            &ui,
            "SetInformationJobObject (UI restrictions)",
        )?;
        Ok(job)
    }

    fn set<T>(&self, class: i32, value: &T, what: &str) -> Result<(), SandboxError> {
        // SAFETY: `value` is the struct `class` names, passed with its exact size.
        let ok = unsafe {
            SetInformationJobObject(
                self.0,
                class,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as u32,
            )
        };
        if ok == 0 {
            return Err(last_error(what));
        }
        Ok(())
    }

    /// Puts a (suspended) process into the job.
    pub fn assign(
        &self,
        process: std::os::windows::io::BorrowedHandle<'_>,
    ) -> Result<(), SandboxError> {
        use std::os::windows::io::AsRawHandle;
        // SAFETY: both handles are valid: the job is owned, the process handle is
        // borrowed for the length of the call.
        if unsafe { AssignProcessToJobObject(self.0, process.as_raw_handle() as HANDLE) } == 0 {
            return Err(last_error("AssignProcessToJobObject"));
        }
        Ok(())
    }

    /// Ends every process in the job.
    pub fn terminate(&self) {
        // SAFETY: the handle is owned and valid.
        unsafe { TerminateJobObject(self.0, STOPPED) };
    }

    /// How many processes are in the job now; `None` where the system cannot say.
    fn active_processes(&self) -> Option<u32> {
        // SAFETY: a plain C struct, filled by the call.
        let mut info: JOBOBJECT_BASIC_ACCOUNTING_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is the struct the class names, passed with its exact size.
        let ok = unsafe {
            QueryInformationJobObject(
                self.0,
                JobObjectBasicAccountingInformation,
                (&mut info as *mut JOBOBJECT_BASIC_ACCOUNTING_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                std::ptr::null_mut(),
            )
        };
        (ok != 0).then_some(info.ActiveProcesses)
    }

    /// After [`Job::terminate`]: waits (up to `limit`) until no process is left, so
    /// nothing of the run can still change its directory when the caller reads it.
    pub async fn wait_empty(&self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.active_processes().is_some_and(|n| n > 0) && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Resumes every thread of a process created with `CREATE_SUSPENDED`.
pub fn resume_process(pid: u32) -> Result<(), SandboxError> {
    // SAFETY: a snapshot of all threads; the handle is closed below.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snap == INVALID_HANDLE_VALUE {
        return Err(last_error("CreateToolhelp32Snapshot"));
    }
    // SAFETY: a plain C struct, its size set as the API requires.
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    let mut resumed = 0;
    // SAFETY: `snap` is a valid snapshot and `entry` a correctly sized struct.
    let mut more = unsafe { Thread32First(snap, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: opening a thread by id; a null handle is checked.
            let thread = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) };
            if !thread.is_null() {
                // SAFETY: `thread` is a valid handle, closed once.
                unsafe {
                    ResumeThread(thread);
                    CloseHandle(thread);
                }
                resumed += 1;
            }
        }
        // SAFETY: as for Thread32First.
        more = unsafe { Thread32Next(snap, &mut entry) } != 0;
    }
    // SAFETY: the snapshot handle is owned and closed once.
    unsafe { CloseHandle(snap) };
    if resumed == 0 {
        return Err(SandboxError::Setup(
            "could not resume the suspended process".into(),
        ));
    }
    Ok(())
}
