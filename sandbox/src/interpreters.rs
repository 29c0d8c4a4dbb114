//! The interpreters the server offers: parsed from `interpreters.toml` and merged with
//! what is detected on the machine (python3.x on `PATH`, pypy3, graalpy, uv-managed
//! CPythons).
//!
//! Each interpreter is probed once by running it: the probe reports the implementation,
//! the exact version and the real executable behind any shim (pyenv installs shell
//! scripts named `python3` that take ~90 ms; the sandbox must run the real binary).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::limits::Limits;

mod detect;

use self::detect::{detect, identity, probe};
pub use self::detect::{probe_native, which};

/// What kind of program runs the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterpreterKind {
    /// A native CPython-compatible executable.
    Native,
    /// CPython compiled for WASI, run inside wasmtime.
    Wasi,
}

/// A sandbox backend name, as chosen per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Linux,
    Wasi,
    Windows,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Linux => "linux",
            BackendKind::Wasi => "wasi",
            BackendKind::Windows => "windows",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = InterpreterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linux" => Ok(BackendKind::Linux),
            "wasi" => Ok(BackendKind::Wasi),
            "windows" => Ok(BackendKind::Windows),
            other => Err(InterpreterError::UnknownBackend(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InterpreterError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("interpreters.toml entry `{id}`: {message}")]
    Entry { id: String, message: String },
    #[error("interpreter `{0}` is not known; see `scriptorium interpreters` or interpreters.toml")]
    Unknown(String),
    #[error(
        "interpreter `{id}` is configured but not available: {reason}; install it or fix its entry in interpreters.toml"
    )]
    Unavailable { id: String, reason: String },
    #[error("sandbox backend `{0}` does not exist; choose linux, wasi or windows")]
    UnknownBackend(String),
    #[error("interpreter `{id}` cannot run under the `{backend}` backend; it allows: {allowed}")]
    BackendNotAllowed {
        id: String,
        backend: BackendKind,
        allowed: String,
    },
}

/// `interpreters.toml` as written by the user.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterpretersFile {
    /// The interpreter used when a run names none.
    pub default: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub detect: DetectConfig,
    #[serde(default, rename = "interpreter")]
    pub interpreters: Vec<InterpreterEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Look for interpreters on the machine and add those not configured.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig { enabled: true }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterpreterEntry {
    pub id: String,
    pub kind: InterpreterKind,
    /// Native: a command name looked up on `PATH`, or a path.
    pub command: Option<String>,
    /// WASI: the component built at set-up (relative paths are relative to the file).
    pub component: Option<PathBuf>,
    pub backends: Vec<BackendKind>,
    pub default_backend: Option<BackendKind>,
    /// Extra read-only paths the sandbox must allow (e.g. a venv's site-packages).
    #[serde(default)]
    pub read_paths: Vec<PathBuf>,
    /// Limits that override the file's `[limits]` for this interpreter.
    pub limits: Option<crate::limits::LimitsOverride>,
    /// A short description shown to users.
    pub description: Option<String>,
    /// A runner script that runs the user's script (its path is the runner's first
    /// argument), e.g. one that exports a build123d `result` afterwards.
    pub wrapper: Option<PathBuf>,
    /// How to install it, named when it is missing (e.g. `make build123d`).
    pub setup: Option<String>,
    /// Modules imported ahead of time in a spare sandbox, so a run does not wait for
    /// them (warm start, linux backend), e.g. `["build123d"]`.
    #[serde(default)]
    pub warm: Vec<String>,
}

/// One interpreter the server offers, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Interpreter {
    pub id: String,
    pub kind: InterpreterKind,
    /// e.g. `CPython`, `PyPy`, `GraalPy`.
    pub implementation: String,
    /// Exact version as the interpreter reports it, e.g. `3.11.7`.
    pub version: String,
    /// The real executable (shims resolved) or the component file.
    pub path: PathBuf,
    /// The installation prefix (`sys.base_prefix`) for native interpreters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<PathBuf>,
    /// `sys.prefix` (differs from `prefix` inside a venv).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_prefix: Option<PathBuf>,
    /// Directories on `sys.path` at start-up (stdlib, site-packages).
    #[serde(skip)]
    pub sys_path: Vec<PathBuf>,
    pub backends: Vec<BackendKind>,
    pub default_backend: BackendKind,
    pub available: bool,
    /// Why it is not available, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// `configured` or `detected`.
    pub source: &'static str,
    #[serde(skip)]
    pub read_paths: Vec<PathBuf>,
    pub limits: Limits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The runner script the user's script runs under, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrapper: Option<PathBuf>,
    /// Modules a spare sandbox imports ahead of a run (warm start); empty: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warm: Vec<String>,
}

/// The resolved set of interpreters.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    interpreters: Vec<Interpreter>,
    default: Option<String>,
}

impl Registry {
    /// Reads `path` (which may be absent: then only detection is used) and probes.
    pub fn load(path: &Path) -> Result<Registry, InterpreterError> {
        let file = match std::fs::read_to_string(path) {
            Ok(text) => parse_file(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => InterpretersFile::default(),
            Err(source) => {
                return Err(InterpreterError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Self::resolve(file, base))
    }

    /// Resolves a parsed file: probes configured entries and, when enabled, detects more.
    pub fn resolve(file: InterpretersFile, base: &Path) -> Registry {
        let mut interpreters: Vec<Interpreter> = std::thread::scope(|scope| {
            let handles: Vec<_> = file
                .interpreters
                .iter()
                .map(|entry| scope.spawn(|| resolve_entry(entry, &file.limits, base)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread panicked"))
                .collect()
        });
        if file.detect.enabled {
            let known: HashSet<(PathBuf, PathBuf)> = interpreters.iter().map(identity).collect();
            let taken: HashSet<String> = interpreters.iter().map(|i| i.id.clone()).collect();
            interpreters.extend(detect(&known, &taken, &file.limits));
        }
        let default = file
            .default
            .clone()
            .filter(|d| interpreters.iter().any(|i| &i.id == d))
            .or_else(|| {
                interpreters
                    .iter()
                    .find(|i| i.available && i.kind == InterpreterKind::Native)
                    .map(|i| i.id.clone())
            });
        Registry {
            interpreters,
            default,
        }
    }

    pub fn all(&self) -> &[Interpreter] {
        &self.interpreters
    }

    pub fn available(&self) -> impl Iterator<Item = &Interpreter> {
        self.interpreters.iter().filter(|i| i.available)
    }

    pub fn default_id(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// Looks up an interpreter by id (or the default when `None`) and checks it can run.
    pub fn get(&self, id: Option<&str>) -> Result<&Interpreter, InterpreterError> {
        let id = match id.or(self.default.as_deref()) {
            Some(id) => id,
            None => {
                return Err(InterpreterError::Unknown(
                    "(default: none configured or detected)".into(),
                ));
            }
        };
        let interp = self
            .interpreters
            .iter()
            .find(|i| i.id == id)
            .ok_or_else(|| InterpreterError::Unknown(id.to_string()))?;
        if !interp.available {
            return Err(InterpreterError::Unavailable {
                id: id.to_string(),
                reason: interp
                    .problem
                    .clone()
                    .unwrap_or_else(|| "unknown reason".into()),
            });
        }
        Ok(interp)
    }

    /// The first available native interpreter: used for checking Python syntax.
    pub fn native_default(&self) -> Option<&Interpreter> {
        self.default
            .as_deref()
            .and_then(|d| self.interpreters.iter().find(|i| i.id == d))
            .filter(|i| i.available && i.kind == InterpreterKind::Native)
            .or_else(|| self.available().find(|i| i.kind == InterpreterKind::Native))
    }
}

impl Interpreter {
    /// Checks that `backend` (or this interpreter's default) is allowed and returns it.
    pub fn backend(&self, backend: Option<BackendKind>) -> Result<BackendKind, InterpreterError> {
        let b = backend.unwrap_or(self.default_backend);
        if self.backends.contains(&b) {
            Ok(b)
        } else {
            Err(InterpreterError::BackendNotAllowed {
                id: self.id.clone(),
                backend: b,
                allowed: self
                    .backends
                    .iter()
                    .map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

/// Parses and validates the text of an `interpreters.toml`.
pub fn parse_file(path: &Path, text: &str) -> Result<InterpretersFile, InterpreterError> {
    let file: InterpretersFile = toml::from_str(text).map_err(|e| InterpreterError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut seen = HashSet::new();
    for entry in &file.interpreters {
        let fail = |message: &str| InterpreterError::Entry {
            id: entry.id.clone(),
            message: message.into(),
        };
        if entry.id.is_empty()
            || !entry
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(fail(
                "the id must be non-empty and use only letters, digits, `-`, `_` and `.`",
            ));
        }
        if !seen.insert(entry.id.clone()) {
            return Err(fail("this id appears twice"));
        }
        if entry.backends.is_empty() {
            return Err(fail(
                "`backends` must name at least one of linux, wasi, windows",
            ));
        }
        match entry.kind {
            InterpreterKind::Native => {
                if entry.command.is_none() {
                    return Err(fail(
                        "a native interpreter needs `command` (a name on PATH or a path)",
                    ));
                }
                if entry.backends.contains(&BackendKind::Wasi) {
                    return Err(fail("a native interpreter cannot use the wasi backend"));
                }
            }
            InterpreterKind::Wasi => {
                if entry.component.is_none() {
                    return Err(fail(
                        "a wasi interpreter needs `component` (the .wasm built at set-up)",
                    ));
                }
                if entry.backends != [BackendKind::Wasi] {
                    return Err(fail("a wasi interpreter runs only under the wasi backend"));
                }
            }
        }
        if let Some(b) = entry.default_backend
            && !entry.backends.contains(&b)
        {
            return Err(fail("`default_backend` must be one of its `backends`"));
        }
        if !entry.warm.is_empty()
            && (entry.kind != InterpreterKind::Native
                || !entry.backends.contains(&BackendKind::Linux))
        {
            return Err(fail(
                "`warm` (modules imported ahead of a run) needs a native interpreter with the linux backend",
            ));
        }
        if let Some(m) = entry.warm.iter().find(|m| {
            m.is_empty()
                || !m.split('.').all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
        }) {
            return Err(fail(&format!(
                "`warm` entry `{m}` is not a module name (e.g. \"build123d\" or \"numpy.linalg\")"
            )));
        }
    }
    if let Some(d) = &file.default
        && !file.interpreters.iter().any(|i| &i.id == d)
        && !d.starts_with("cpython")
    {
        // A default may name a detected interpreter (cpython-3.x); anything else must be configured.
        return Err(InterpreterError::Parse {
            path: path.to_path_buf(),
            message: format!("`default = \"{d}\"` names no [[interpreter]] entry"),
        });
    }
    Ok(file)
}

fn resolve_entry(entry: &InterpreterEntry, limits: &Limits, base: &Path) -> Interpreter {
    let limits = match &entry.limits {
        Some(o) => limits.with(o),
        None => limits.clone(),
    };
    let default_backend = entry.default_backend.unwrap_or(entry.backends[0]);
    let mut interp = Interpreter {
        id: entry.id.clone(),
        kind: entry.kind,
        implementation: String::new(),
        version: String::new(),
        path: PathBuf::new(),
        prefix: None,
        env_prefix: None,
        sys_path: Vec::new(),
        backends: entry.backends.clone(),
        default_backend,
        available: false,
        problem: None,
        source: "configured",
        read_paths: entry.read_paths.iter().map(|p| base.join(p)).collect(),
        limits,
        description: entry.description.clone(),
        wrapper: entry.wrapper.as_ref().map(|w| base.join(w)),
        warm: entry.warm.clone(),
    };
    match entry.kind {
        InterpreterKind::Native => {
            let command = entry.command.as_deref().unwrap_or_default();
            let located = if command.contains('/') {
                let p = base.join(command);
                p.exists().then_some(p)
            } else {
                which(command)
            };
            match located {
                None => {
                    interp.problem = Some(match &entry.setup {
                        Some(setup) => {
                            format!("`{command}` was not found; run `{setup}` to install it")
                        }
                        None => format!("`{command}` was not found"),
                    })
                }
                Some(path) => match probe(&path) {
                    Ok(p) => p.fill(&mut interp),
                    Err(e) => {
                        interp.path = path;
                        interp.problem = Some(e);
                    }
                },
            }
        }
        InterpreterKind::Wasi => {
            let component = base.join(entry.component.as_deref().unwrap_or(Path::new("")));
            interp.implementation = "CPython (WASI)".into();
            let version_file = component.with_extension("version");
            interp.version = std::fs::read_to_string(&version_file)
                .map(|v| v.trim().to_string())
                .unwrap_or_default();
            if component.is_file() {
                interp.available = true;
            } else {
                interp.problem = Some(format!(
                    "the component {} has not been built (run `make wasi`)",
                    component.display()
                ));
            }
            interp.path = component;
        }
    }
    interp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<InterpretersFile, InterpreterError> {
        parse_file(Path::new("interpreters.toml"), text)
    }

    #[test]
    fn a_native_entry_without_command_is_rejected_by_name() {
        let err =
            parse("[[interpreter]]\nid = \"py\"\nkind = \"native\"\nbackends = [\"linux\"]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("`py`") && err.contains("command"), "{err}");
    }

    #[test]
    fn unknown_fields_and_backends_are_reported() {
        let err = parse("[[interpreter]]\nid = \"py\"\nkind = \"native\"\ncommand = \"python3\"\nbackends = [\"docker\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker"), "{err}");
        let err = parse("colour = 1\n").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_wasi_misuse_are_rejected() {
        let dup = "[[interpreter]]\nid = \"a\"\nkind = \"native\"\ncommand = \"x\"\nbackends = [\"linux\"]\n";
        let err = parse(&format!("{dup}{dup}")).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        let err = parse("[[interpreter]]\nid = \"w\"\nkind = \"wasi\"\ncomponent = \"p.wasm\"\nbackends = [\"linux\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("only under the wasi backend"), "{err}");
    }

    #[test]
    fn a_missing_command_is_unavailable_with_its_name() {
        let file = parse(
            "[detect]\nenabled = false\n[[interpreter]]\nid = \"graal\"\nkind = \"native\"\ncommand = \"graalpy-not-here\"\nbackends = [\"linux\"]\n",
        )
        .unwrap();
        let reg = Registry::resolve(file, Path::new("."));
        let err = reg.get(Some("graal")).unwrap_err().to_string();
        assert!(
            err.contains("`graal`") && err.contains("graalpy-not-here"),
            "{err}"
        );
        let err = reg.get(Some("nope")).unwrap_err().to_string();
        assert!(err.contains("`nope` is not known"), "{err}");
    }

    #[test]
    fn detection_finds_the_machine_python_with_exact_version() {
        let reg = Registry::resolve(InterpretersFile::default(), Path::new("."));
        let py = reg.native_default().expect("a python3 on PATH");
        assert_eq!(py.version.split('.').count(), 3, "{:?}", py.version);
        assert!(py.path.is_absolute() && py.path.exists());
        // Shims are resolved to the real binary.
        let head = std::fs::read(&py.path).unwrap();
        assert_eq!(&head[..4], b"\x7fELF");
    }
}
