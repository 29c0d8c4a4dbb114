//! The Linux process sandbox's API on other platforms (`scriptorium_sandbox::linux` when
//! not compiled for Linux): the same configuration and types, and every spawn refused.
//!
//! Code that runs programs other than scripts in the Linux sandbox (language servers)
//! compiles unchanged and fails with the reason at run time: nothing runs unsandboxed.
//! `[sandbox.linux]` settings still parse, so one `scriptorium.toml` serves both.

use std::convert::Infallible;
use std::path::PathBuf;

pub use crate::linux_config::{LinuxConfig, Support, WarmMode, interpreter_paths};
use crate::run::{Protections, SandboxError};
use crate::{BackendKind, Interpreter};

/// A program to run in the Linux sandbox (see the Linux module).
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub interpreter: Option<Interpreter>,
    pub read: Vec<PathBuf>,
    pub workdir: PathBuf,
    pub env: Vec<(String, String)>,
    pub limits: crate::Limits,
    pub address_space_mib: Option<u64>,
}

/// Never made: [`LinuxBackend::spawn`] always fails off Linux.
pub struct SandboxedProcess {
    pub stdin: tokio::process::ChildStdin,
    pub stdout: tokio::process::ChildStdout,
    pub stderr: tokio::process::ChildStderr,
    pub protections: Protections,
    handle: SandboxHandle,
}

/// Never made (it holds an uninhabited value).
pub struct SandboxHandle(Infallible);

impl SandboxedProcess {
    pub fn id(&self) -> Option<u32> {
        self.handle.id()
    }
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        self.handle.wait().await
    }
    pub async fn setup_problem(&mut self) -> String {
        self.handle.setup_problem().await
    }
    pub async fn kill(&mut self) {
        self.handle.kill().await
    }
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
    pub fn id(&self) -> Option<u32> {
        match self.0 {}
    }
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        match self.0 {}
    }
    pub async fn setup_problem(&mut self) -> String {
        match self.0 {}
    }
    pub async fn kill(&mut self) {
        match self.0 {}
    }
}

/// The Linux sandbox where there is none: it refuses every program.
#[derive(Clone)]
pub struct LinuxBackend;

impl LinuxBackend {
    pub fn new(_config: LinuxConfig) -> LinuxBackend {
        LinuxBackend
    }

    pub fn support(&self) -> Support {
        Support::default()
    }

    pub fn spawn(&self, _spec: &ProcessSpec) -> Result<SandboxedProcess, SandboxError> {
        Err(SandboxError::Unsupported(BackendKind::Linux))
    }
}
