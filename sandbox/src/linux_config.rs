//! The linux backend's settings (`[sandbox.linux]`), what it found the kernel offers, and
//! what a sandboxed process may read of an interpreter: one definition for every
//! platform, so one `scriptorium.toml` parses everywhere (off Linux the backend refuses
//! to spawn, see `no_linux.rs`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::Interpreter;

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
    /// Warm starts for interpreters with `warm` modules (see the linux backend's `warm` module).
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Support {
    pub landlock_abi: i32,
    pub user_namespaces: bool,
    pub root: bool,
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
