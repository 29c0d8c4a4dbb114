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

/// Checks a lock before anything is installed from it: it must be what Scriptorium
/// writes (see [`resolve`]) and cover what the script declares. A lock can reach a
/// version without a resolution by this server (a commit made with the git CLI that
/// start-up repair records, a lock edited in a clone): uv would honour any option in
/// it (`--index-url`, `--find-links`, `-e`), any URL or path requirement, and would
/// install an unhashed pin from whatever the index serves. So every logical line must
/// be `name==version` followed only by `--hash=sha256:<64 hex>` options (at least one),
/// with at most an environment marker, and every declared name must be pinned.
pub(crate) fn check(lock: &Lock, meta: &Metadata) -> Result<(), String> {
    let mut pinned: Vec<(String, String)> = Vec::new();
    let mut logical = String::new();
    let mut lines = lock.text.lines().peekable();
    while let Some(raw) = lines.next() {
        let line = raw.trim();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) if lines.peek().is_some() => {
                logical.push_str(part);
                logical.push(' ');
            }
            _ => {
                logical.push_str(line);
                pinned.push(check_pin(&logical)?);
                logical.clear();
            }
        }
    }
    for d in &meta.dependencies {
        let (name, rest) = split_requirement(d);
        let Some((_, version)) = pinned.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "it pins no version of `{name}`, which the script declares"
            ));
        };
        let exact = rest.trim().strip_prefix("==").map(str::trim);
        if let Some(want) = exact.filter(|w| !w.contains(['*', ',', ';']))
            && want != version
        {
            return Err(format!(
                "it pins `{name}=={version}`, but the script declares `{}`",
                d.trim()
            ));
        }
    }
    Ok(())
}

/// One logical line of a lock: `name==version [; marker] --hash=sha256:… …`.
fn check_pin(line: &str) -> Result<(String, String), String> {
    let bad = |why: &str| {
        let shown: String = line.chars().take(120).collect();
        Err(format!("line `{}` {why}", shown.escape_debug()))
    };
    let (req, hashes) = match line.find(" --") {
        Some(i) => (line[..i].trim(), line[i..].trim()),
        None => (line.trim(), ""),
    };
    let (pin, marker) = match req.split_once(';') {
        Some((p, m)) => (p.trim(), Some(m.trim())),
        None => (req, None),
    };
    let Some((name, version)) = pin.split_once("==") else {
        return bad("is not an exact pin `name==version`");
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    let version_ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '_' | '-'));
    if !name_ok || !version_ok {
        return bad("is not an exact pin `name==version`");
    }
    if marker.is_some_and(|m| {
        !m.chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._'\"<>=!()~".contains(c))
    }) {
        return bad("has an environment marker that is not one");
    }
    let mut count = 0;
    for opt in hashes.split_whitespace() {
        let Some(h) = opt.strip_prefix("--hash=sha256:") else {
            return bad("has an option other than `--hash=sha256:…`");
        };
        if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return bad("has a hash that is not a sha256");
        }
        count += 1;
    }
    if count == 0 {
        return bad("has no `--hash=sha256:…` (a lock pins each wheel by its hash)");
    }
    Ok((normalize(name), version.to_string()))
}

/// The normalised name a requirement starts with (PEP 503) and what follows it.
pub(crate) fn split_requirement(req: &str) -> (String, &str) {
    let t = req.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(t.len());
    (normalize(&t[..end]), &t[end..])
}

fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if matches!(c, '.' | '_' | '-') {
            '-'
        } else {
            c.to_ascii_lowercase()
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
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

    fn meta(deps: &[&str]) -> Metadata {
        Metadata {
            requires_python: None,
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_lock_as_scriptorium_writes_it_passes() {
        let l = Lock::new(format!(
            "# Locked by Scriptorium\ntabulate==0.9.0 \\\n    --hash=sha256:{H} \\\n    --hash=sha256:{H}\nwcwidth==0.2.13 ; python_version >= \"3.8\" \\\n    --hash=sha256:{H}\n"
        ));
        assert_eq!(check(&l, &meta(&["Tabulate==0.9.0", "wcwidth"])), Ok(()));
    }

    #[test]
    fn a_planted_lock_is_refused_saying_why() {
        let m = meta(&["tabulate"]);
        let refused = |text: String, why: &str| {
            let e = check(&Lock::new(text.clone()), &m).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        };
        refused("tabulate==0.9.0\n".into(), "no `--hash");
        refused(
            format!("--index-url http://127.0.0.1:9/simple\ntabulate==0.9.0 --hash=sha256:{H}\n"),
            "exact pin",
        );
        refused(
            format!("tabulate==0.9.0 --hash=sha256:{H} --find-links /etc\n"),
            "option other than",
        );
        refused(
            format!("tabulate @ file:///etc/passwd --hash=sha256:{H}\n"),
            "exact pin",
        );
        refused(format!("tabulate>=0.8 --hash=sha256:{H}\n"), "exact pin");
        refused(
            format!("tabulate==0.9.0 --hash=sha256:{}\n", &H[..10]),
            "not a sha256",
        );
        refused(
            format!("other==1.0 --hash=sha256:{H}\n"),
            "pins no version of `tabulate`",
        );
        let e = check(
            &Lock::new(format!("tabulate==0.8.0 --hash=sha256:{H}\n")),
            &meta(&["tabulate==0.9.0"]),
        )
        .unwrap_err();
        assert!(e.contains("declares `tabulate==0.9.0`"), "{e}");
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
