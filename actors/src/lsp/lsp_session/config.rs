//! The `[lsp]` settings and the server programs they resolve to: each command made
//! absolute, the runtime its `#!` line names probed, its kind known to the bridge.

use std::path::{Path, PathBuf};

use scriptorium_sandbox::limits::LimitsOverride;
use scriptorium_sandbox::{Limits, SandboxError};

use super::ServerKind;

/// `[lsp]` settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LspConfig {
    /// The type-aware language server's command (pyrefly, ty, basedpyright or pylsp);
    /// relative paths are relative to the working directory.
    pub command: Vec<String>,
    /// The lint server run beside it (`ruff server`); empty: none.
    pub lint_command: Vec<String>,
    /// Further files and directories the server may read in its sandbox (its program, the
    /// interpreter named by its `#!` line and the chosen interpreter are always readable).
    pub read_paths: Vec<PathBuf>,
    /// Bounds of one session's sandbox, over [`LspConfig::DEFAULT_LIMITS`].
    pub limits: LimitsOverride,
    pub idle_minutes: u64,
    pub max_sessions: usize,
    pub max_sessions_per_user: usize,
    /// ruff's line length for lint and formatting.
    pub line_length: u32,
    /// ruff rule selection (empty: ruff's defaults).
    pub select: Vec<String>,
}

impl Default for LspConfig {
    fn default() -> Self {
        LspConfig {
            command: vec!["build/lsp/bin/pyrefly".into(), "lsp".into()],
            lint_command: vec!["build/lsp/bin/ruff".into(), "server".into()],
            read_paths: Vec::new(),
            limits: LimitsOverride::default(),
            idle_minutes: 15,
            max_sessions: 32,
            max_sessions_per_user: 4,
            line_length: 100,
            select: vec!["E".into(), "F".into(), "W".into(), "I".into(), "B".into()],
        }
    }
}

impl LspConfig {
    /// A language server lives for a whole editing session: more CPU seconds and address
    /// space than a script run (Jedi on build123d's packages reaches ~450 MiB resident,
    /// several GiB of address space with its threads' arenas); threads count as processes,
    /// and ruff starts one per core. The wall time is the idle
    /// timeout's business; the output goes to the socket, bounded per message.
    pub const DEFAULT_LIMITS: Limits = Limits {
        wall_seconds: 0.0,
        cpu_seconds: 3600,
        memory_mib: 4096,
        processes: 256,
        output_bytes: 0,
        file_size_mib: 64,
        open_files: 256,
        // The session workspace and /tmp (Jedi's caches).
        disk_mib: 256,
        disk_files: 10_000,
    };

    pub fn limits(&self) -> Limits {
        Self::DEFAULT_LIMITS.with(&self.limits)
    }

    /// Finds the programs (the type server first, then the lint server) and what they
    /// need to read; done once when the server starts.
    pub fn resolve(&self) -> Result<Vec<ServerProgram>, LspError> {
        let mut programs = vec![self.resolve_one(&self.command)?];
        if !self.lint_command.is_empty() {
            programs.push(self.resolve_one(&self.lint_command)?);
        }
        Ok(programs)
    }

    fn resolve_one(&self, command: &[String]) -> Result<ServerProgram, LspError> {
        let (program, args) = command.split_first().ok_or(LspError::EmptyCommand)?;
        let program = absolute(Path::new(program)).map_err(|e| LspError::NotInstalled {
            program: program.into(),
            why: e.to_string(),
        })?;
        let mut read: Vec<PathBuf> = self
            .read_paths
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        // A script runs on the interpreter its `#!` line names; `python -m server` on itself.
        let is_python = program
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("python"));
        if let Some(runtime) =
            shebang_interpreter(&program).or_else(|| is_python.then(|| program.clone()))
        {
            let interp = scriptorium_sandbox::interpreters::probe_native("lsp-runtime", &runtime)
                .map_err(|why| LspError::Runtime {
                program: program.clone(),
                runtime: runtime.clone(),
                why,
            })?;
            read.extend(scriptorium_sandbox::linux::interpreter_paths(&interp));
        }
        let kind = ServerKind::of(&program).ok_or_else(|| LspError::UnknownKind {
            program: program.clone(),
        })?;
        Ok(ServerProgram {
            kind,
            program,
            args: args.to_vec(),
            read,
            limits: self.limits(),
        })
    }
}

/// The language server as resolved from `[lsp]`.
#[derive(Debug, Clone)]
pub struct ServerProgram {
    pub kind: ServerKind,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// What it may read besides the chosen interpreter.
    pub read: Vec<PathBuf>,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum LspError {
    #[error(
        "the [lsp] command is empty; set it in scriptorium.toml (e.g. [\"build/lsp/bin/pyrefly\", \"lsp\"])"
    )]
    EmptyCommand,
    #[error(
        "the bridge does not know how to configure {program}; [lsp] command names pyrefly, ty, basedpyright-langserver or pylsp, lint_command ruff"
    )]
    UnknownKind { program: PathBuf },
    #[error(
        "the language server {program} is not installed ({why}); run `make lsp` or fix [lsp] command"
    )]
    NotInstalled { program: PathBuf, why: String },
    #[error(
        "the language server {program} runs on {runtime}, which cannot be probed ({why}); run `make lsp`"
    )]
    Runtime {
        program: PathBuf,
        runtime: PathBuf,
        why: String,
    },
    #[error(
        "the language server is only run in the sandbox, and this machine lacks {0}; sessions are refused rather than run unsandboxed (see docs/security.md)"
    )]
    NoSandbox(String),
    #[error("the language server could not start in its sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("the language server cannot start: {0}")]
    Io(#[from] std::io::Error),
}

/// `path` made absolute with its directory's links resolved, but not its own: a venv's
/// `bin/python` is a link to the base interpreter, and only the link makes it the venv's.
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the command names no file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => std::fs::canonicalize(d)?,
        _ => std::env::current_dir()?,
    };
    let full = dir.join(name);
    std::fs::metadata(&full)?;
    Ok(full)
}

/// The interpreter a script's `#!` line names (`/usr/bin/env NAME` looked up on PATH).
fn shebang_interpreter(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line.split(|b| *b == b'\n').next()?).into_owned();
    let mut words = line.split_whitespace();
    let first = PathBuf::from(words.next()?);
    if first.file_name().is_some_and(|n| n == "env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        return scriptorium_sandbox::interpreters::which(name);
    }
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripts_interpreter_line_names_its_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("server");
        std::fs::write(&script, "#!/opt/venv/bin/python -u\nimport x\n").unwrap();
        assert_eq!(
            shebang_interpreter(&script),
            Some(PathBuf::from("/opt/venv/bin/python"))
        );
        std::fs::write(&script, b"\x7fELF\x02\x01").unwrap();
        assert_eq!(shebang_interpreter(&script), None);
    }

    #[test]
    fn session_limits_start_from_the_language_server_defaults() {
        let mut c = LspConfig::default();
        assert_eq!(c.limits().memory_mib, 4096);
        c.limits.memory_mib = Some(2048);
        let l = c.limits();
        assert_eq!(
            (l.memory_mib, l.cpu_seconds, l.processes),
            (2048, 3600, 256)
        );
    }
}
