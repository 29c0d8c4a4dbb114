//! Sandboxed processes that are not script runs (a language server, a WASI host):
//! started with [`LinuxBackend::spawn`], held by a [`SandboxHandle`].

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use tokio::io::AsyncReadExt;

use super::LinuxBackend;
use super::cgroup;
use super::ids::Lease;
use super::launch::{Intermediate, Launch, Started};
use crate::Interpreter;
use crate::run::{Protections, SandboxError};

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
    child: Intermediate,
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
        self.child.kill().await;
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
            trace: false,
        })?;
        let Started {
            child,
            stdin,
            stdout,
            stderr,
            status_r,
            report_r,
            mut protections,
            _lease,
            cgroup,
            trace: _,
            cpu_note: _,
        } = started;
        // Nothing watches a spawned process's CPU counter: RLIMIT_CPU bounds it (a WASI
        // host is one process; a language server's limit is its whole session).
        if let Some(c) = &mut protections.cgroup {
            c.cpu = false;
        }
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
