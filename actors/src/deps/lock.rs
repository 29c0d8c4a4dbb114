//! Resolving a script's declared dependencies into a lock with uv.
//!
//! The lock is the output of `uv pip compile --generate-hashes --only-binary :all:`
//! against the chosen interpreter: a requirements file with every package pinned to
//! one version and the sha256 of each allowed wheel. It is plain text that `git show`
//! displays, and `uv pip install --require-hashes --no-deps` installs exactly it,
//! deterministically, without resolving again (a `uv lock --script` lock would need
//! `uv sync`, which makes a venv of uv's choosing rather than a directory we control).
//!
//! uv runs outside the sandbox, as the server, with a cleared environment, a timeout
//! and wheels only: resolving never builds an sdist, so no package code runs. (Allowing
//! sdists would mean running their build backends, i.e. package code, which must then
//! happen inside the sandbox; not supported.)

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::deps::pep723::Metadata;

/// How uv is run (`[uv]` in scriptorium.toml).
#[derive(Debug, Clone)]
pub struct UvConfig {
    /// The uv executable (set-up installs it at `build/tools/bin/uv`).
    pub uv: PathBuf,
    /// The package index (uv's default, PyPI, when `None`).
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    /// Use only uv's cache (`--offline`), e.g. with a local mirror.
    pub offline: bool,
    /// uv's cache directory (shared by all resolutions and builds: hardlinks).
    pub cache_dir: PathBuf,
    /// How long one resolution may take. It runs inside a save, which the HTTP handler
    /// waits on for 30 s: keep it below that, so a slow index fails the save cleanly.
    pub timeout: Duration,
    /// How long one environment build may take (before a run, off the save path).
    pub build_timeout: Duration,
}

impl UvConfig {
    /// The defaults for a data directory: `build/tools/bin/uv` if present, else `uv` on
    /// `PATH`; PyPI; cache in `DATA/uv-cache`; 25 s to resolve, 600 s to build.
    pub fn for_data_dir(data_dir: &Path) -> UvConfig {
        let local = PathBuf::from("build/tools/bin/uv");
        UvConfig {
            uv: if local.exists() {
                std::fs::canonicalize(&local).unwrap_or(local)
            } else {
                PathBuf::from("uv")
            },
            index_url: None,
            extra_index_urls: Vec::new(),
            offline: false,
            cache_dir: data_dir.join("uv-cache"),
            timeout: Duration::from_secs(25),
            build_timeout: Duration::from_secs(600),
        }
    }

    /// A uv command with a cleared environment: only what uv needs to find its cache
    /// and certificates, never the server's secrets (API keys).
    pub fn command(&self, sub: &[&str]) -> Command {
        let mut c = Command::new(&self.uv);
        c.args(sub)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.cache_dir)
            .env("UV_NO_CONFIG", "1")
            .env("UV_PYTHON_DOWNLOADS", "never")
            .envs(
                NETWORK_VARS
                    .iter()
                    .filter_map(|k| Some((*k, std::env::var_os(k)?))),
            )
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(["--only-binary", ":all:", "--quiet", "--color", "never"]);
        if let Some(i) = &self.index_url {
            c.args(["--index-url", i]);
        }
        for e in &self.extra_index_urls {
            c.args(["--extra-index-url", e]);
        }
        if self.offline {
            c.arg("--offline");
        }
        c
    }
}

/// What uv needs from the server's environment to reach the index: the certificate
/// authorities and proxies of this machine (no credentials of the server's own).
const NETWORK_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// A lock: its text and the hex sha256 of that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub text: String,
    pub hash: String,
}

impl Lock {
    pub fn new(text: String) -> Lock {
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        Lock { text, hash }
    }
    /// The pinned packages (`name==version`), for listing.
    pub fn pins(&self) -> Vec<String> {
        self.text
            .lines()
            .filter(|l| !l.starts_with([' ', '#', '-']) && l.contains("=="))
            .map(|l| l.trim_end_matches(" \\").trim().to_string())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error("the dependencies could not be resolved: {0}")]
    Unresolvable(String),
    #[error(
        "uv ({uv}) could not be started: {message}; run `make setup` (it installs uv in build/tools) or set [uv] path"
    )]
    NoUv { uv: String, message: String },
    #[error(
        "resolving the dependencies took longer than {0:?}; try again, or raise [uv] timeout_secs"
    )]
    Timeout(Duration),
}

/// Resolves `meta` against `python` into a lock.
pub(crate) fn resolve(cfg: &UvConfig, python: &Path, meta: &Metadata) -> Result<Lock, LockError> {
    std::fs::create_dir_all(&cfg.cache_dir).map_err(|e| LockError::NoUv {
        uv: cfg.uv.display().to_string(),
        message: format!("cannot create its cache {}: {e}", cfg.cache_dir.display()),
    })?;
    // Not the server's working directory (nothing uv might take for a relative path) and
    // not its cache (uv refuses a project directory inside its cache): an empty one.
    let empty = tempfile::tempdir().map_err(|e| LockError::NoUv {
        uv: cfg.uv.display().to_string(),
        message: format!("cannot create an empty working directory: {e}"),
    })?;
    let mut cmd = cfg.command(&["pip", "compile", "-"]);
    cmd.current_dir(empty.path());
    cmd.args([
        "--generate-hashes",
        "--no-header",
        "--no-annotate",
        "--python",
    ])
    .arg(python);
    let out = run(cmd, meta.requirements().as_bytes(), cfg.timeout).map_err(|e| match e {
        RunError::Start(message) => LockError::NoUv {
            uv: cfg.uv.display().to_string(),
            message,
        },
        RunError::Timeout => LockError::Timeout(cfg.timeout),
    })?;
    if !out.success {
        return Err(LockError::Unresolvable(uv_reason(&out.stderr)));
    }
    let mut text = String::from(
        "# Locked by Scriptorium with `uv pip compile --generate-hashes --only-binary :all:`\n",
    );
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok(Lock::new(text))
}

/// uv's explanation, without its decoration, bounded.
pub(crate) fn uv_reason(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let mut r: String = s
        .lines()
        .map(|l| {
            let l = l.trim_start_matches(['×', '╰', '─', '▶', '│', ' ']).trim();
            l.strip_prefix("error: ")
                .or_else(|| l.strip_prefix("cause: "))
                .unwrap_or(l)
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if r.len() > 2000 {
        let mut cut = 2000;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r.truncate(cut);
        r.push('…');
    }
    if r.is_empty() {
        "uv failed without saying why".into()
    } else {
        r
    }
}

pub(crate) struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub(crate) enum RunError {
    Start(String),
    Timeout,
}

/// Runs `cmd` with `stdin`, collecting its output (bounded to 16 MiB each), killing it
/// after `timeout`. Blocking: call from a blocking thread.
pub(crate) fn run(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Result<Output, RunError> {
    const MAX: u64 = 16 << 20;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Start(e.to_string()))?;
    let mut input = child.stdin.take().expect("piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&data);
    });
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = (&mut so).take(MAX).read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = (&mut se).take(MAX).read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = writer.join();
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    match status {
        Some(s) => Ok(Output {
            success: s.success(),
            stdout,
            stderr,
        }),
        None => Err(RunError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uv_decoration_is_stripped() {
        let e = "  × No solution found when resolving dependencies:\n  ╰─▶ Because nope was not found in the package registry and you require nope, we can conclude that your requirements are unsatisfiable.\n";
        let r = uv_reason(e.as_bytes());
        assert!(r.starts_with("No solution found"), "{r}");
        assert!(r.contains("Because nope was not found"), "{r}");
    }

    #[test]
    fn pins_are_listed() {
        let l = Lock::new(
            "# header\ntabulate==0.9.0 \\\n    --hash=sha256:abc\nwcwidth==0.2.13 \\\n    --hash=sha256:def\n"
                .into(),
        );
        assert_eq!(l.pins(), ["tabulate==0.9.0", "wcwidth==0.2.13"]);
        assert_eq!(l.hash.len(), 64);
    }

    #[test]
    fn a_command_that_outlives_its_timeout_is_killed() {
        let mut c = Command::new("sleep");
        c.arg("5");
        let t = Instant::now();
        assert!(matches!(
            run(c, b"", Duration::from_millis(200)),
            Err(RunError::Timeout)
        ));
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
