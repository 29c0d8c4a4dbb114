//! The Linux process sandbox's API on other platforms (`scriptorium_sandbox::linux` when
//! not compiled for Linux): the same configuration and types, and every spawn refused.
//!
//! Code that runs programs other than scripts in the Linux sandbox (language servers)
//! compiles unchanged and fails with the reason at run time: nothing runs unsandboxed.
//! `[sandbox.linux]` settings still parse, so one `scriptorium.toml` serves both.

use std::convert::Infallible;
use std::path::PathBuf;

use serde::Deserialize;

use crate::run::{Protections, SandboxError};
use crate::{BackendKind, Interpreter};

/// `[sandbox.linux]` settings (read, and unused off Linux).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinuxConfig {
    pub uid_range: [u32; 2],
    pub allow_degraded: bool,
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

/// When spare sandboxes with pre-imported modules are made (Linux only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmMode {
    Eager,
    Lazy,
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

/// What the kernel offers: here, none of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Support {
    pub landlock_abi: i32,
    pub user_namespaces: bool,
    pub root: bool,
}

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

/// What a process may read of an interpreter's installation.
pub fn interpreter_paths(interp: &Interpreter) -> Vec<PathBuf> {
    let mut read = vec![interp.path.clone()];
    read.extend(
        interp
            .prefix
            .iter()
            .chain(interp.env_prefix.iter())
            .cloned(),
    );
    read.extend(interp.sys_path.iter().cloned());
    read
}
