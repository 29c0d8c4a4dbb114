//! `LspSession`: one per editor WebSocket. It owns a language-server process running in
//! the linux sandbox (namespaces, Landlock, rlimits, a clean environment, the
//! unprivileged uid: the same as a script run), bridges JSON-RPC between the socket (one
//! JSON message per text frame) and the server's stdio (`Content-Length` framing, byte
//! lengths), and ends the sandbox when the socket closes, after an idle timeout, or at
//! shutdown.
//!
//! The bridge
//! - starts the server in the sandbox or not at all ([`start_server`]): it may read its
//!   own installation (the program, the interpreter its script names, `[lsp]
//!   read_paths`) and the chosen interpreter's, and write only its per-session
//!   workspace directory (`DATA/lsp/<session>/`);
//! - owns the configuration and filters both directions ([`policy`]): client methods
//!   only from an allow-list, editing ones only for editors, documents only inside the
//!   workspace, `initialize` rebuilt, the server's own settings as initializationOptions,
//!   after `initialized` and as the answer to `workspace/configuration`;
//! - tells the client with a first `scriptorium/session` notification
//!   `{session, pid, rootUri, readOnly}` (`pid`: the sandbox's outermost process);
//! - bounds message size and the queue of messages not yet written.

pub mod policy;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use scriptorium_sandbox::limits::LimitsOverride;
use scriptorium_sandbox::linux::{LinuxBackend, ProcessSpec, SandboxHandle, SandboxedProcess};
use scriptorium_sandbox::{Interpreter, Limits, SandboxError};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

use policy::{FromClient, FromServer, Policy};

/// The largest message passed either way.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// Client messages accepted but not yet written to the server.
pub const MAX_PENDING: usize = 256;
/// The longest header line accepted from the server.
const MAX_HEADER_LINE: u64 = 1024;

/// What goes out to the socket.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

/// `[lsp]` settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LspConfig {
    /// The language-server command; relative paths are relative to the working directory.
    pub command: Vec<String>,
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
            command: vec!["build/lsp/bin/pylsp".into()],
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

    /// Finds the program and what it needs to read; done once when the server starts.
    pub fn resolve(&self) -> Result<ServerProgram, LspError> {
        let (program, args) = self.command.split_first().ok_or(LspError::EmptyCommand)?;
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
        Ok(ServerProgram {
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
    pub program: PathBuf,
    pub args: Vec<String>,
    /// What it may read besides the chosen interpreter.
    pub read: Vec<PathBuf>,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum LspError {
    #[error(
        "the [lsp] command is empty; set it in scriptorium.toml (e.g. [\"build/lsp/bin/pylsp\"])"
    )]
    EmptyCommand,
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

/// Refuses a machine where the sandbox would miss a protection.
fn require_full_sandbox(support: scriptorium_sandbox::linux::Support) -> Result<(), LspError> {
    let mut missing = Vec::new();
    if !support.user_namespaces {
        missing.push("user namespaces");
    }
    if support.landlock_abi < 1 {
        missing.push("Landlock");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LspError::NoSandbox(missing.join(" and ")))
    }
}

/// Starts `server` in a fresh sandbox with `workspace` as its only writable place,
/// able to read `interpreter`'s installation. It forks: call it from a thread that
/// outlives the session (the sandbox gets SIGKILL when that thread ends), e.g. the
/// session's async task, not `spawn_blocking`.
pub fn start_server(
    backend: &LinuxBackend,
    server: &ServerProgram,
    interpreter: &Interpreter,
    workspace: &Path,
) -> Result<SandboxedProcess, LspError> {
    require_full_sandbox(backend.support())?;
    std::fs::create_dir_all(workspace)?;
    let bin_dir = server
        .program
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // Jedi runs the chosen interpreter inside the same sandbox (and imports compiled
    // modules there to inspect them): it gets at least the room that interpreter's runs get.
    let mut limits = server.limits.clone();
    limits.memory_mib = limits.memory_mib.max(interpreter.limits.memory_mib);
    let spec = ProcessSpec {
        program: server.program.clone(),
        args: server.args.iter().map(Into::into).collect(),
        interpreter: Some(interpreter.clone()),
        read: server.read.clone(),
        workdir: workspace.to_path_buf(),
        // Its own bin directory first (ruff beside pylsp); nothing of the server's
        // environment: the sandbox's clean set.
        env: vec![(
            "PATH".into(),
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()),
        )],
        limits,
        address_space_mib: None,
    };
    let process = backend.spawn(&spec)?;
    // `allow_degraded` lets runs go on with less; a language server does not. (Without
    // cgroups its memory and processes are still bounded per process by rlimits.)
    let missing: Vec<&str> = process
        .protections
        .missing
        .iter()
        .map(String::as_str)
        .filter(|m| !m.starts_with("cgroups"))
        .collect();
    if !missing.is_empty() {
        return Err(LspError::NoSandbox(missing.join(" and ")));
    }
    Ok(process)
}

pub struct LspSessionArgs {
    pub id: String,
    pub user: String,
    pub read_only: bool,
    pub config: LspConfig,
    /// The interpreter whose packages completion should know.
    pub interpreter: Interpreter,
    pub workspace: PathBuf,
    /// The server, already started in its sandbox ([`start_server`]).
    pub server: SandboxedProcess,
    pub outbound: mpsc::Sender<Outbound>,
    /// Client messages queued for this session (shared with the socket side).
    pub pending: Arc<AtomicUsize>,
}

pub struct LspSession;

pub struct LspSessionState {
    id: String,
    read_only: bool,
    idle_minutes: u64,
    workspace: PathBuf,
    outbound: mpsc::Sender<Outbound>,
    pending: Arc<AtomicUsize>,
    /// Keeps the sandbox alive; its pipes went to the pumps and `stdin`.
    server: SandboxHandle,
    stdin: ChildStdin,
    policy: Policy,
    last_activity: Instant,
}

pub enum LspSessionMessage {
    /// A JSON-RPC message from the socket.
    FromClient(String),
    /// A request from the server (responses and notifications go straight to the socket).
    ServerRequest(String),
    /// The server's stdout ended.
    ServerExited,
    /// Periodic idle check.
    Tick,
}

pub fn file_uri(path: &std::path::Path) -> String {
    let mut s = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                s.push(b as char)
            }
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

/// Writes one framed message.
async fn write_frame(stdin: &mut ChildStdin, body: &str) -> std::io::Result<()> {
    let header = format!("Content-Length: {}\r\n\r\n", body.len());
    stdin.write_all(header.as_bytes()).await?;
    stdin.write_all(body.as_bytes()).await?;
    stdin.flush().await
}

/// Reads framed messages from the server until EOF: requests go to the session (the
/// bridge answers some itself), everything else to the socket.
async fn pump_server(
    stdout: tokio::process::ChildStdout,
    out: mpsc::Sender<Outbound>,
    session: ActorRef<LspSessionMessage>,
    id: String,
) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut length: Option<usize> = None;
        loop {
            let mut line = String::new();
            match (&mut reader)
                .take(MAX_HEADER_LINE)
                .read_line(&mut line)
                .await
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !line.ends_with('\n') {
                tracing::warn!(session = %id, "language server header line too long; ending the session");
                let _ = out
                    .send(Outbound::Close(
                        1011,
                        "the language server sent a malformed header".into(),
                    ))
                    .await;
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line
                .split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v)
            {
                length = v.trim().parse().ok();
            }
        }
        let Some(n) = length else { continue };
        if n > MAX_MESSAGE {
            tracing::warn!(session = %id, bytes = n, "language server message too large; ending the session");
            let _ = out
                .send(Outbound::Close(
                    1009,
                    "the language server sent a message over 4 MiB".into(),
                ))
                .await;
            return;
        }
        let mut body = vec![0u8; n];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        if policy::is_request(&text) {
            if session
                .cast(LspSessionMessage::ServerRequest(text))
                .is_err()
            {
                return;
            }
        } else if out.send(Outbound::Text(text)).await.is_err() {
            return;
        }
    }
}

/// Keeps the server's stderr flowing (a full pipe would stall it); logs it at debug.
async fn drain_stderr(stderr: tokio::process::ChildStderr, id: String) {
    let mut reader = BufReader::new(stderr);
    loop {
        let mut line = String::new();
        match (&mut reader).take(4096).read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                tracing::debug!(session = %id, line = %line.trim_end(), "language server stderr")
            }
        }
    }
}

/// Words for a raw wait status.
#[cfg(unix)]
fn describe_status(raw: i32) -> String {
    if libc::WIFSIGNALED(raw) {
        match libc::WTERMSIG(raw) {
            libc::SIGXCPU => "its CPU time limit ([lsp.limits] cpu_seconds) was reached".into(),
            sig => format!("killed by signal {sig}"),
        }
    } else {
        format!("exit status {}", libc::WEXITSTATUS(raw))
    }
}

/// Words for an exit status (no language server runs off Linux: see `linux::spawn`).
#[cfg(not(unix))]
fn describe_status(raw: i32) -> String {
    format!("exit status {raw}")
}

impl LspSession {
    /// The server's own settings: the one part specific to pylsp. Jedi analyses with the
    /// chosen interpreter (inside the sandbox its paths are the same as outside), with
    /// no extra paths; lint and formatting come from ruff (run as
    /// `python -m ruff` by its plugin) with the project's settings; every plugin that
    /// runs other programs or reads other configuration is off.
    pub fn settings(config: &LspConfig, python: &Path) -> Value {
        json!({ "pylsp": {
            "configurationSources": [],
            "plugins": {
                // No `env_vars`: Jedi's process inherits the sandbox's clean environment.
                "jedi": { "environment": python, "extra_paths": [] },
                "ruff": { "enabled": true, "formatEnabled": true, "lineLength": config.line_length, "select": config.select,
                          "executable": Value::Null, "config": Value::Null },
                "pycodestyle": { "enabled": false },
                "pyflakes": { "enabled": false },
                "mccabe": { "enabled": false },
                "autopep8": { "enabled": false },
                "yapf": { "enabled": false },
                "pylint": { "enabled": false },
                "flake8": { "enabled": false },
                "pydocstyle": { "enabled": false },
                "rope_autoimport": { "enabled": false },
                "rope_completion": { "enabled": false },
            }
        }})
    }

    /// The language server died (its output ended, or a write to it failed): tell the
    /// client why, close the socket with 1011, and end the session.
    async fn server_gone(myself: &ActorRef<LspSessionMessage>, state: &mut LspSessionState) {
        // The exit status follows at once when it died.
        let status = tokio::time::timeout(Duration::from_secs(2), state.server.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let why = match status {
            Some(raw) => format!(
                "the language server stopped ({}); reconnect to start a new one",
                describe_status(raw)
            ),
            None => {
                "the language server stopped answering; reconnect to start a new one".to_string()
            }
        };
        tracing::warn!(session = %state.id, %why, "language server ended");
        let note = json!({ "jsonrpc": "2.0", "method": "window/showMessage", "params": { "type": 1, "message": why } });
        let _ = state.outbound.send(Outbound::Text(note.to_string())).await;
        let _ = state.outbound.send(Outbound::Close(1011, why)).await;
        myself.stop(None);
    }

    /// Writes to the server; a failed write ends the session.
    async fn to_server(
        myself: &ActorRef<LspSessionMessage>,
        state: &mut LspSessionState,
        body: &str,
    ) -> bool {
        if write_frame(&mut state.stdin, body).await.is_err() {
            Self::server_gone(myself, state).await;
            return false;
        }
        true
    }
}

impl Actor for LspSession {
    type Msg = LspSessionMessage;
    type State = LspSessionState;
    type Arguments = LspSessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: LspSessionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let LspSessionArgs {
            id,
            user,
            read_only,
            config,
            interpreter,
            workspace,
            server,
            outbound,
            pending,
        } = args;
        let pid = server.id();
        let (stdin, stdout, stderr, server) = server.into_parts();
        let me = myself.clone();
        let (out, session) = (outbound.clone(), id.clone());
        tokio::spawn(async move {
            pump_server(stdout, out, me.clone(), session).await;
            let _ = me.cast(LspSessionMessage::ServerExited);
        });
        tokio::spawn(drain_stderr(stderr, id.clone()));
        myself.send_interval(Duration::from_secs(30), || LspSessionMessage::Tick);
        let root_uri = file_uri(&workspace);
        let hello = json!({ "jsonrpc": "2.0", "method": "scriptorium/session",
            "params": { "session": id, "pid": pid, "rootUri": root_uri, "readOnly": read_only } });
        outbound.send(Outbound::Text(hello.to_string())).await?;
        tracing::info!(session = %id, %user, pid, interpreter = %interpreter.id, "language server started in the sandbox");
        let policy = Policy::new(
            read_only,
            root_uri,
            Self::settings(&config, &interpreter.path),
        );
        Ok(LspSessionState {
            id,
            read_only,
            idle_minutes: config.idle_minutes,
            workspace,
            outbound,
            pending,
            server,
            stdin,
            policy,
            last_activity: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LspSessionMessage::FromClient(text) => {
                state.pending.fetch_sub(1, Ordering::SeqCst);
                state.last_activity = Instant::now();
                match state.policy.from_client(&text) {
                    FromClient::Forward {
                        body,
                        then_configure,
                    } => {
                        if !Self::to_server(&myself, state, &body).await {
                            return Ok(());
                        }
                        if then_configure {
                            // Servers that read settings this way (pylsp) get the bridge's.
                            let config = json!({ "jsonrpc": "2.0", "method": "workspace/didChangeConfiguration",
                                "params": { "settings": state.policy.settings() } });
                            Self::to_server(&myself, state, &config.to_string()).await;
                        }
                    }
                    FromClient::Reply(reply) => {
                        tracing::info!(session = %state.id, read_only = state.read_only, "refused a client request");
                        let _ = state.outbound.send(Outbound::Text(reply)).await;
                    }
                    FromClient::Drop(why) => {
                        tracing::warn!(session = %state.id, read_only = state.read_only, %why, "dropped a client message")
                    }
                }
            }
            LspSessionMessage::ServerRequest(text) => match state.policy.from_server(&text) {
                FromServer::Forward => {
                    let _ = state.outbound.send(Outbound::Text(text)).await;
                }
                FromServer::Answer(answer) => {
                    Self::to_server(&myself, state, &answer).await;
                }
            },
            LspSessionMessage::ServerExited => Self::server_gone(&myself, state).await,
            LspSessionMessage::Tick => {
                let idle = Duration::from_secs(state.idle_minutes * 60);
                if state.last_activity.elapsed() > idle {
                    let why = format!(
                        "closed after {} minutes without activity; reconnect to continue",
                        state.idle_minutes
                    );
                    let _ = state.outbound.send(Outbound::Close(1000, why)).await;
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.server.kill().await;
        let _ = tokio::fs::remove_dir_all(&state.workspace).await;
        tracing::info!(session = %state.id, "language server ended with its session");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_the_full_sandbox_is_refused() {
        use scriptorium_sandbox::linux::Support;
        assert!(
            require_full_sandbox(Support {
                landlock_abi: 7,
                user_namespaces: true,
                root: true
            })
            .is_ok()
        );
        let e = require_full_sandbox(Support {
            landlock_abi: 0,
            user_namespaces: false,
            root: true,
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("lacks user namespaces and Landlock"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("refused rather than run unsandboxed"),
            "{e}"
        );
    }

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
