//! Probing an interpreter (implementation, exact version, the real executable behind
//! a shim) and detecting the ones installed on the machine.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{BackendKind, Interpreter, InterpreterKind};
use crate::limits::Limits;

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
pub(super) struct Probe {
    implementation: String,
    version: String,
    executable: PathBuf,
    base_prefix: PathBuf,
    prefix: PathBuf,
    path: Vec<PathBuf>,
}

impl Probe {
    pub(super) fn fill(self, interp: &mut Interpreter) {
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
pub(super) fn probe(path: &Path) -> Result<Probe, String> {
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
pub(super) fn identity(i: &Interpreter) -> (PathBuf, PathBuf) {
    (
        std::fs::canonicalize(&i.path).unwrap_or_else(|_| i.path.clone()),
        i.env_prefix.clone().unwrap_or_default(),
    )
}

pub(super) fn detect(
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

pub(super) fn native_backends() -> Vec<BackendKind> {
    if cfg!(windows) {
        vec![BackendKind::Windows]
    } else {
        vec![BackendKind::Linux]
    }
}
