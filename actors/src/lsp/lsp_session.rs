//! `LspSession`: one per editor WebSocket. It owns the session's language servers — the
//! type-aware one (`[lsp] command`, pyrefly by default) and `ruff server` beside it
//! (`[lsp] lint_command`) — each a process in its own linux sandbox (namespaces,
//! Landlock, rlimits, a clean environment, an unprivileged uid: the same as a script
//! run), bridges JSON-RPC between the socket (one JSON message per text frame) and the
//! servers' stdio (`Content-Length` framing, byte lengths), and ends the sandboxes when
//! the socket closes, after an idle timeout, or at shutdown.
//!
//! The bridge
//! - starts each server in the sandbox or not at all ([`start_server`]): it may read its
//!   own installation (the program, the interpreter its script names, `[lsp]
//!   read_paths`) and the chosen interpreter's, and write only its per-session
//!   directory (`DATA/lsp/<session>/` for the type server, with the file that points it
//!   at the interpreter; `DATA/lsp/<session>-ruff/` for ruff);
//! - owns the configuration and filters both directions ([`policy`]): client methods
//!   only from an allow-list, editing ones only for editors, documents only inside the
//!   workspace, `initialize` rebuilt, each server's own settings ([`servers`]) as its
//!   initializationOptions, after `initialized` and as the answer to
//!   `workspace/configuration`;
//! - routes requests by capability and merges answers and diagnostics ([`router`]);
//! - tells the client with a first `scriptorium/session` notification
//!   `{session, pid, pids, servers, rootUri, readOnly, interpreter}` (`pid`: the type
//!   server's sandbox's outermost process; `pids` and `servers`: every server's, type
//!   server first);
//! - bounds message size and the queue of messages not yet written.

mod config;
pub mod policy;
mod pump;
pub mod router;
pub mod servers;
mod start;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use scriptorium_sandbox::Interpreter;
use scriptorium_sandbox::linux::SandboxHandle;
use serde_json::{Value, json};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

pub use config::{LspConfig, LspError, ServerProgram};
use policy::{FromClient, FromServer, Policy};
use pump::{describe_status, drain_stderr, pump_server, write_frame};
use router::Router;
pub use servers::ServerKind;
pub use start::{StartedServer, start_server};

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

pub struct LspSessionArgs {
    pub id: String,
    pub user: String,
    pub read_only: bool,
    pub config: LspConfig,
    /// The interpreter whose packages completion should know.
    pub interpreter: Interpreter,
    /// The session's root: the type server's workspace, where the documents live.
    pub workspace: PathBuf,
    /// The servers, the type server first.
    pub servers: Vec<StartedServer>,
    pub outbound: mpsc::Sender<Outbound>,
    /// Client messages queued for this session (shared with the socket side).
    pub pending: Arc<AtomicUsize>,
}

pub struct LspSession;

/// A running server as the session holds it.
struct Slot {
    kind: ServerKind,
    /// Keeps the sandbox alive; its pipes went to the pumps and `stdin`.
    handle: SandboxHandle,
    stdin: ChildStdin,
    workspace: PathBuf,
    /// Its own settings (initializationOptions).
    settings: Value,
    /// What it is told and answered as configuration ([`ServerKind::configuration`]).
    configuration: Value,
}

pub struct LspSessionState {
    id: String,
    read_only: bool,
    idle_minutes: u64,
    outbound: mpsc::Sender<Outbound>,
    pending: Arc<AtomicUsize>,
    servers: Vec<Slot>,
    policy: Policy,
    router: Router,
    last_activity: Instant,
}

pub enum LspSessionMessage {
    /// A JSON-RPC message from the socket.
    FromClient(String),
    /// A message from server `.0`.
    FromServer(usize, String),
    /// Server `.0`'s stdout ended.
    ServerExited(usize),
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

impl LspSession {
    /// Server `index` died (its output ended, or a write to it failed): tell the client
    /// which and why, close the socket with 1011, and end the session.
    async fn server_gone(
        myself: &ActorRef<LspSessionMessage>,
        state: &mut LspSessionState,
        index: usize,
    ) {
        let slot = &mut state.servers[index];
        let name = slot.kind.name();
        // The exit status follows at once when it died.
        let status = tokio::time::timeout(Duration::from_secs(2), slot.handle.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let why = match status {
            Some(raw) => format!(
                "the language server {name} stopped ({}); reconnect to start a new one",
                describe_status(raw)
            ),
            None => format!(
                "the language server {name} stopped answering; reconnect to start a new one"
            ),
        };
        tracing::warn!(session = %state.id, %why, "language server ended");
        let note = json!({ "jsonrpc": "2.0", "method": "window/showMessage", "params": { "type": 1, "message": why } });
        let _ = state.outbound.send(Outbound::Text(note.to_string())).await;
        let _ = state.outbound.send(Outbound::Close(1011, why)).await;
        myself.stop(None);
    }

    /// Writes to server `index`; a failed write ends the session.
    async fn to_server(
        myself: &ActorRef<LspSessionMessage>,
        state: &mut LspSessionState,
        index: usize,
        body: &str,
    ) -> bool {
        if write_frame(&mut state.servers[index].stdin, body)
            .await
            .is_err()
        {
            Self::server_gone(myself, state, index).await;
            return false;
        }
        true
    }

    /// A checked client message, routed to the servers it is for.
    async fn client_message(
        myself: &ActorRef<LspSessionMessage>,
        state: &mut LspSessionState,
        message: Value,
        then_configure: bool,
    ) {
        let method = message.get("method").and_then(Value::as_str);
        let frames = match (method, message.get("id")) {
            (Some(method), Some(id)) => {
                let settings: Vec<Value> =
                    state.servers.iter().map(|s| s.settings.clone()).collect();
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                state
                    .router
                    .client_request(id.clone(), method, params, &settings)
            }
            (Some(method), None) => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                state.router.client_notification(method, params)
            }
            (None, _) => state.router.client_response(message).into_iter().collect(),
        };
        for (index, frame) in frames {
            if !Self::to_server(myself, state, index, &frame).await {
                return;
            }
        }
        if then_configure {
            // Servers that read settings this way (pylsp) get the bridge's.
            for index in 0..state.servers.len() {
                let config = json!({ "jsonrpc": "2.0", "method": "workspace/didChangeConfiguration",
                    "params": { "settings": state.servers[index].configuration } });
                if !Self::to_server(myself, state, index, &config.to_string()).await {
                    return;
                }
            }
        }
    }

    /// A message from server `index`: requests are answered by the bridge or forwarded
    /// under an id naming the server; responses and notifications go through the router.
    async fn server_message(
        myself: &ActorRef<LspSessionMessage>,
        state: &mut LspSessionState,
        index: usize,
        text: String,
    ) {
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            tracing::warn!(session = %state.id, server = state.servers[index].kind.name(), "dropped a message that is not JSON");
            return;
        };
        if message.get("method").is_some() && message.get("id").is_some() {
            let request = state.router.server_request_out(index, message);
            match state
                .policy
                .from_server(&request, &state.servers[index].configuration)
            {
                FromServer::Forward => {
                    let _ = state.outbound.send(Outbound::Text(request)).await;
                }
                FromServer::Answer(answer) => {
                    let answer = serde_json::from_str(&answer).unwrap_or(Value::Null);
                    if let Some((to, frame)) = state.router.client_response(answer) {
                        Self::to_server(myself, state, to, &frame).await;
                    }
                }
            }
        } else if let Some(out) = state.router.server_message(index, message) {
            let _ = state.outbound.send(Outbound::Text(out)).await;
        }
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
            servers,
            outbound,
            pending,
        } = args;
        let pids: Vec<Option<u32>> = servers.iter().map(|s| s.process.id()).collect();
        let pid = pids.first().copied().flatten();
        let lint_beside = servers.len() > 1;
        let mut slots = Vec::with_capacity(servers.len());
        for (index, server) in servers.into_iter().enumerate() {
            let (stdin, stdout, stderr, handle) = server.process.into_parts();
            let me = myself.clone();
            let (out, session) = (outbound.clone(), id.clone());
            tokio::spawn(async move {
                pump_server(stdout, out, me.clone(), index, session).await;
                let _ = me.cast(LspSessionMessage::ServerExited(index));
            });
            tokio::spawn(drain_stderr(stderr, id.clone()));
            let settings = server
                .kind
                .settings(&config, &interpreter.path, lint_beside);
            slots.push(Slot {
                kind: server.kind,
                handle,
                stdin,
                workspace: server.workspace,
                configuration: server.kind.configuration(&settings),
                settings,
            });
        }
        myself.send_interval(Duration::from_secs(30), || LspSessionMessage::Tick);
        let root_uri = file_uri(&workspace);
        let names: Vec<&'static str> = slots.iter().map(|s| s.kind.name()).collect();
        let hello = json!({ "jsonrpc": "2.0", "method": "scriptorium/session",
            "params": { "session": id, "pid": pid, "pids": pids, "servers": names, "rootUri": root_uri,
                        "readOnly": read_only, "interpreter": interpreter.id } });
        outbound.send(Outbound::Text(hello.to_string())).await?;
        tracing::info!(session = %id, %user, pid, servers = ?names, interpreter = %interpreter.id, "language servers started in the sandbox");
        Ok(LspSessionState {
            id,
            read_only,
            idle_minutes: config.idle_minutes,
            outbound,
            pending,
            servers: slots,
            policy: Policy::new(read_only, root_uri),
            router: Router::new(names),
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
                        message,
                        then_configure,
                    } => Self::client_message(&myself, state, message, then_configure).await,
                    FromClient::Reply(reply) => {
                        tracing::info!(session = %state.id, read_only = state.read_only, "refused a client request");
                        let _ = state.outbound.send(Outbound::Text(reply)).await;
                    }
                    FromClient::Drop(why) => {
                        tracing::warn!(session = %state.id, read_only = state.read_only, %why, "dropped a client message")
                    }
                }
            }
            LspSessionMessage::FromServer(index, text) => {
                Self::server_message(&myself, state, index, text).await
            }
            LspSessionMessage::ServerExited(index) => {
                Self::server_gone(&myself, state, index).await
            }
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
        for slot in &mut state.servers {
            slot.handle.kill().await;
            let _ = tokio::fs::remove_dir_all(&slot.workspace).await;
        }
        tracing::info!(session = %state.id, "language servers ended with their session");
        Ok(())
    }
}
