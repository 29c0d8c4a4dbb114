//! `LspSession`: one per editor WebSocket. It spawns and owns a language-server
//! process (pylsp by default), bridges JSON-RPC between the socket (one JSON message
//! per text frame) and the server's stdio (`Content-Length` framing, byte lengths), and
//! ends the process when the socket closes, after an idle timeout, or at shutdown.
//!
//! The bridge
//! - points the session at a real per-session workspace directory (`rootUri`,
//!   `workspaceFolders` are set whatever the client sent) and tells the client with a
//!   first `scriptorium/session` notification `{session, pid, rootUri}`;
//! - configures the server after `initialized`: Jedi's environment is the chosen
//!   interpreter, so completion knows its installed packages; lint and formatting come
//!   from ruff with the project's settings;
//! - refuses, for viewers, the requests that change code (formatting, rename, code
//!   actions, commands);
//! - bounds message size and the queue of messages not yet written.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

/// The largest message passed either way.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// Client messages accepted but not yet written to the server.
pub const MAX_PENDING: usize = 256;

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
            idle_minutes: 15,
            max_sessions: 32,
            max_sessions_per_user: 4,
            line_length: 100,
            select: vec!["E".into(), "F".into(), "W".into(), "I".into(), "B".into()],
        }
    }
}

pub struct LspSessionArgs {
    pub id: String,
    pub user: String,
    pub read_only: bool,
    pub config: LspConfig,
    /// The interpreter whose packages completion should know.
    pub python: PathBuf,
    pub workspace: PathBuf,
    pub outbound: mpsc::Sender<Outbound>,
    /// Client messages queued for this session (shared with the socket side).
    pub pending: Arc<AtomicUsize>,
}

pub struct LspSession;

pub struct LspSessionState {
    args: LspSessionArgs,
    child: Child,
    stdin: ChildStdin,
    last_activity: Instant,
    root_uri: String,
}

pub enum LspSessionMessage {
    /// A JSON-RPC message from the socket.
    FromClient(String),
    /// The server's stdout ended.
    ServerExited,
    /// Periodic idle check.
    Tick,
}

/// Methods a viewer may not call: they change code.
const WRITE_METHODS: &[&str] = &[
    "textDocument/formatting",
    "textDocument/rangeFormatting",
    "textDocument/onTypeFormatting",
    "textDocument/rename",
    "textDocument/codeAction",
    "workspace/executeCommand",
];

pub fn file_uri(path: &std::path::Path) -> String {
    let mut s = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => s.push(b as char),
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

/// Reads framed messages from the server until EOF, passing each to the socket.
async fn pump_server(stdout: tokio::process::ChildStdout, out: mpsc::Sender<Outbound>, session: String) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut length: Option<usize> = None;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v) {
                length = v.trim().parse().ok();
            }
        }
        let Some(n) = length else { continue };
        if n > MAX_MESSAGE {
            tracing::warn!(%session, bytes = n, "language server message too large; ending the session");
            let _ = out.send(Outbound::Close(1009, "the language server sent a message over 4 MiB".into())).await;
            return;
        }
        let mut body = vec![0u8; n];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        if out.send(Outbound::Text(text)).await.is_err() {
            return;
        }
    }
}

impl LspSession {
    fn settings(state: &LspSessionState) -> Value {
        let c = &state.args.config;
        json!({ "pylsp": { "plugins": {
            "jedi": { "environment": state.args.python },
            "ruff": { "enabled": true, "formatEnabled": true, "lineLength": c.line_length, "select": c.select },
            "pycodestyle": { "enabled": false },
            "pyflakes": { "enabled": false },
            "mccabe": { "enabled": false },
            "autopep8": { "enabled": false },
            "yapf": { "enabled": false },
            "pylint": { "enabled": false },
        }}})
    }

    /// The language server died (its output ended, or a write to it failed): tell the
    /// client why, close the socket with 1011, and end the session.
    async fn server_gone(myself: &ActorRef<LspSessionMessage>, state: &mut LspSessionState) {
        // The exit status follows at once when it died.
        let status = tokio::time::timeout(Duration::from_secs(2), state.child.wait()).await.ok().and_then(Result::ok);
        let why = match status {
            Some(s) => format!("the language server stopped ({s}); reconnect to start a new one"),
            None => "the language server stopped answering; reconnect to start a new one".to_string(),
        };
        tracing::warn!(session = %state.args.id, %why, "language server ended");
        let note = json!({ "jsonrpc": "2.0", "method": "window/showMessage", "params": { "type": 1, "message": why } });
        let _ = state.args.outbound.send(Outbound::Text(note.to_string())).await;
        let _ = state.args.outbound.send(Outbound::Close(1011, why)).await;
        myself.stop(None);
    }

    async fn reply_error(state: &LspSessionState, id: &Value, message: &str) {
        let err = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32600, "message": message } });
        let _ = state.args.outbound.send(Outbound::Text(err.to_string())).await;
    }
}

impl Actor for LspSession {
    type Msg = LspSessionMessage;
    type State = LspSessionState;
    type Arguments = LspSessionArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: LspSessionArgs) -> Result<Self::State, ActorProcessingErr> {
        std::fs::create_dir_all(&args.workspace)?;
        let (program, rest) = args.config.command.split_first().ok_or("the [lsp] command is empty")?;
        let program = std::fs::canonicalize(program).unwrap_or_else(|_| PathBuf::from(program));
        let bin_dir = program.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let cache = args.workspace.join(".cache");
        // The language server gets a clean environment: its own bin directory on PATH
        // (for ruff), a private cache, nothing of the server's secrets.
        let mut child = tokio::process::Command::new(&program)
            .args(rest)
            .env_clear()
            .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()))
            .env("HOME", &args.workspace)
            .env("XDG_CACHE_HOME", &cache)
            .env("LANG", "C.UTF-8")
            .current_dir(&args.workspace)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the language server {}: {e}; run `make setup-lsp` or fix [lsp] command", program.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let out = args.outbound.clone();
        let me = myself.clone();
        let session = args.id.clone();
        tokio::spawn(async move {
            pump_server(stdout, out, session).await;
            let _ = me.cast(LspSessionMessage::ServerExited);
        });
        myself.send_interval(Duration::from_secs(30), || LspSessionMessage::Tick);
        let root_uri = file_uri(&args.workspace);
        let hello = json!({ "jsonrpc": "2.0", "method": "scriptorium/session",
            "params": { "session": args.id, "pid": child.id(), "rootUri": root_uri, "readOnly": args.read_only } });
        args.outbound.send(Outbound::Text(hello.to_string())).await?;
        tracing::info!(session = %args.id, user = %args.user, pid = child.id(), "language server started");
        Ok(LspSessionState { args, child, stdin, last_activity: Instant::now(), root_uri })
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, msg: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            LspSessionMessage::FromClient(text) => {
                state.args.pending.fetch_sub(1, Ordering::SeqCst);
                state.last_activity = Instant::now();
                let Ok(mut message) = serde_json::from_str::<Value>(&text) else {
                    let err = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32700, "message": "not JSON" } });
                    let _ = state.args.outbound.send(Outbound::Text(err.to_string())).await;
                    return Ok(());
                };
                let method = message["method"].as_str().unwrap_or("").to_string();
                if state.args.read_only && WRITE_METHODS.contains(&method.as_str()) {
                    Self::reply_error(state, &message["id"], "viewers cannot change code; sign in as an editor").await;
                    return Ok(());
                }
                if method == "initialize" {
                    let folder = json!([{ "uri": state.root_uri, "name": "scripts" }]);
                    let params = &mut message["params"];
                    params["rootUri"] = json!(state.root_uri);
                    params["rootPath"] = json!(state.args.workspace);
                    params["workspaceFolders"] = folder;
                    params["processId"] = Value::Null;
                }
                let body = if method == "initialize" { message.to_string() } else { text };
                if write_frame(&mut state.stdin, &body).await.is_err() {
                    Self::server_gone(&myself, state).await;
                    return Ok(());
                }
                if method == "initialized" {
                    let config = json!({ "jsonrpc": "2.0", "method": "workspace/didChangeConfiguration",
                        "params": { "settings": Self::settings(state) } });
                    let _ = write_frame(&mut state.stdin, &config.to_string()).await;
                }
            }
            LspSessionMessage::ServerExited => Self::server_gone(&myself, state).await,
            LspSessionMessage::Tick => {
                let idle = Duration::from_secs(state.args.config.idle_minutes * 60);
                if state.last_activity.elapsed() > idle {
                    let why = format!("closed after {} minutes without activity; reconnect to continue", state.args.config.idle_minutes);
                    let _ = state.args.outbound.send(Outbound::Close(1000, why)).await;
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let _ = state.child.start_kill();
        let _ = state.child.wait().await;
        let _ = tokio::fs::remove_dir_all(&state.args.workspace).await;
        tracing::info!(session = %state.args.id, "language server ended with its session");
        Ok(())
    }
}
