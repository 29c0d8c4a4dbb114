//! The interpreters the server offers: parsed from `interpreters.toml` and merged with
//! what is detected on the machine (python3.x on `PATH`, pypy3, graalpy, uv-managed
//! CPythons).
//!
//! Each interpreter is probed once by running it: the probe reports the implementation,
//! the exact version and the real executable behind any shim (pyenv installs shell
//! scripts named `python3` that take ~90 ms; the sandbox must run the real binary).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::Limits;

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

/// Probes a native interpreter that is not offered for runs (e.g. the one a language
/// server runs on), so a sandbox can be given read access to its installation.
pub fn probe_native(id: &str, path: &Path) -> Result<Interpreter, String> {
    let mut interp = Interpreter {
        id: id.to_string(),
        kind: InterpreterKind::Native,
        implementation: String::new(),
        version: String::new(),
        path: path.to_path_buf(),
        prefix: None,
        env_prefix: None,
        sys_path: Vec::new(),
        backends: vec![BackendKind::Linux],
        default_backend: BackendKind::Linux,
        available: false,
        problem: None,
        source: "configured",
        read_paths: Vec::new(),
        limits: Limits::default(),
        description: None,
        wrapper: None,
        warm: Vec::new(),
    };
    probe(path)?.fill(&mut interp);
    Ok(interp)
}

/// What the probe script reports.
#[derive(Debug, Deserialize)]
struct Probe {
    implementation: String,
    version: String,
    executable: PathBuf,
    base_prefix: PathBuf,
    prefix: PathBuf,
    path: Vec<PathBuf>,
}

impl Probe {
    fn fill(self, interp: &mut Interpreter) {
        interp.implementation = self.implementation;
        interp.version = self.version;
        interp.path = self.executable;
        interp.prefix = Some(self.base_prefix);
        interp.env_prefix = Some(self.prefix);
        interp.sys_path = self.path.into_iter().filter(|p| p.is_absolute()).collect();
        interp.available = true;
    }
}

const PROBE: &str = r#"import json, os, platform, sys
print(json.dumps({
  "implementation": {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalPy"}.get(sys.implementation.name, sys.implementation.name),
  "version": platform.python_version(),
  "executable": os.path.abspath(sys.executable),
  "base_prefix": sys.base_prefix, "prefix": sys.prefix, "path": sys.path,
}))"#;

/// Runs `path` once to learn what it is. Isolated mode (`-I`) keeps the user's
/// environment variables and site directory from changing the answer.
///
/// `sys.executable` is kept as it is, not resolved: a venv's `bin/python` is a link to
/// the base interpreter, and only the link makes Python use the venv. (A pyenv shim
/// execs the real binary, so `sys.executable` already names that.)
fn probe(path: &Path) -> Result<Probe, String> {
    let mut child = Command::new(path)
        .args(["-I", "-c", PROBE])
        .env_clear()
        // A pyenv shim is a shell script that needs PATH and HOME to find the real binary.
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not answer within 20 s", path.display()));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} failed: {}",
            path.display(),
            err.lines().last().unwrap_or("")
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{} gave an unreadable answer: {e}", path.display()))
}

/// Finds an executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Candidates on the machine: python3.x, python3, pypy3, graalpy on PATH, and uv-managed
/// CPythons. Returns those whose real executable is not already `known`.
/// What makes two interpreters the same: the real binary and its environment (`sys.prefix`).
/// `python3` and `python3.11` of one installation are one; a venv on it is another.
fn identity(i: &Interpreter) -> (PathBuf, PathBuf) {
    (
        std::fs::canonicalize(&i.path).unwrap_or_else(|_| i.path.clone()),
        i.env_prefix.clone().unwrap_or_default(),
    )
}

fn detect(
    known: &HashSet<(PathBuf, PathBuf)>,
    taken: &HashSet<String>,
    limits: &Limits,
) -> Vec<Interpreter> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let wanted = name == "python3"
                    || name == "pypy3"
                    || name == "graalpy"
                    || (name.starts_with("python3.")
                        && name["python3.".len()..].chars().all(|c| c.is_ascii_digit()));
                if wanted && is_executable(&e.path()) {
                    candidates.push(e.path());
                }
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let uv = Path::new(&home).join(".local/share/uv/python");
        if let Ok(entries) = std::fs::read_dir(uv) {
            for e in entries.flatten() {
                let p = e.path().join("bin/python3");
                if is_executable(&p) {
                    candidates.push(p);
                }
            }
        }
    }
    // Probe each distinct file once, in parallel: shims are slow.
    let mut seen_files = HashSet::new();
    candidates
        .retain(|c| seen_files.insert(std::fs::canonicalize(c).unwrap_or_else(|_| c.clone())));
    let probes: Vec<Probe> = std::thread::scope(|scope| {
        let handles: Vec<_> = candidates
            .iter()
            .map(|c| scope.spawn(move || probe(c).ok()))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut by_exe: BTreeMap<(PathBuf, PathBuf), Probe> = BTreeMap::new();
    for p in probes {
        let key = (
            std::fs::canonicalize(&p.executable).unwrap_or_else(|_| p.executable.clone()),
            p.prefix.clone(),
        );
        if !known.contains(&key) {
            by_exe.entry(key).or_insert(p);
        }
    }
    // Name them `<impl>-<major.minor>`, or with the full version where two share that.
    let short = |p: &Probe| {
        let mm: Vec<&str> = p.version.split('.').take(2).collect();
        format!("{}-{}", p.implementation.to_lowercase(), mm.join("."))
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in by_exe.values() {
        *counts.entry(short(p)).or_default() += 1;
    }
    let mut out = Vec::new();
    let mut used = taken.clone();
    for p in by_exe.into_values() {
        let mut id = short(&p);
        if counts[&id] > 1 || used.contains(&id) {
            id = format!("{}-{}", p.implementation.to_lowercase(), p.version);
        }
        if !used.insert(id.clone()) {
            continue;
        }
        let mut interp = Interpreter {
            id,
            kind: InterpreterKind::Native,
            implementation: String::new(),
            version: String::new(),
            path: PathBuf::new(),
            prefix: None,
            env_prefix: None,
            sys_path: Vec::new(),
            backends: native_backends(),
            default_backend: native_backends()[0],
            available: false,
            problem: None,
            source: "detected",
            read_paths: Vec::new(),
            limits: limits.clone(),
            description: None,
            wrapper: None,
            warm: Vec::new(),
        };
        p.fill(&mut interp);
        out.push(interp);
    }
    out
}

fn native_backends() -> Vec<BackendKind> {
    if cfg!(windows) {
        vec![BackendKind::Windows]
    } else {
        vec![BackendKind::Linux]
    }
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
