//! `GET /api/lsp?interpreter=ID`: a WebSocket to a language server that knows the
//! chosen interpreter's packages. The server starts in the linux sandbox (or the session
//! is refused with the reason); one `LspSession` actor per socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use rand::RngCore;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::AppState;
use crate::auth::{CurrentUser, Role};
use crate::error::ApiError;
use scriptorium_actors::{
    LspConfig, LspSession, LspSessionArgs, LspSessionMessage, MAX_MESSAGE, MAX_PENDING, Outbound,
    ServerProgram, StartedServer, start_server,
};
use scriptorium_sandbox::linux::LinuxBackend;
use scriptorium_sandbox::{Interpreter, InterpreterKind};

/// Open sessions, per user and in total, and how to start one.
pub struct LspSessions {
    pub config: LspConfig,
    pub root: std::path::PathBuf,
    /// The language servers as resolved at start-up (the type server first), or why
    /// they cannot run.
    servers: Result<Vec<ServerProgram>, String>,
    /// The sandbox the language servers run in (no warm spares).
    sandbox: Arc<LinuxBackend>,
    per_user: Mutex<HashMap<String, usize>>,
}

pub(super) struct SessionGuard {
    sessions: Arc<LspSessions>,
    user: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut m = self.sessions.per_user.lock().expect("sessions lock");
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
        }
    }
}

impl LspSessions {
    pub fn new(
        config: LspConfig,
        root: std::path::PathBuf,
        sandbox: Arc<LinuxBackend>,
    ) -> LspSessions {
        let servers = config.resolve().map_err(|e| e.to_string());
        if let Err(e) = &servers {
            tracing::warn!(error = %e, "language-server sessions will be refused");
        }
        LspSessions {
            config,
            root,
            servers,
            sandbox,
            per_user: Mutex::new(HashMap::new()),
        }
    }

    fn acquire(self: &Arc<Self>, user: &str) -> Result<SessionGuard, ApiError> {
        let mut m = self.per_user.lock().expect("sessions lock");
        let total: usize = m.values().sum();
        if total >= self.config.max_sessions {
            return Err(ApiError::TooMany(format!(
                "{total} language-server sessions are open, the most allowed; close an editor tab or try again later"
            )));
        }
        let mine = m.entry(user.to_string()).or_default();
        if *mine >= self.config.max_sessions_per_user {
            return Err(ApiError::TooMany(format!(
                "you have {} language-server sessions open, the most allowed per user; close an editor tab",
                *mine
            )));
        }
        *mine += 1;
        Ok(SessionGuard {
            sessions: self.clone(),
            user: user.to_string(),
        })
    }

    /// Sessions open now (all users).
    pub fn open(&self) -> usize {
        self.per_user.lock().expect("sessions lock").values().sum()
    }
}

#[derive(Deserialize)]
pub(super) struct LspQuery {
    interpreter: Option<String>,
    /// The script being edited: the type server also sees its dependency environment.
    script: Option<i64>,
}

pub(super) async fn connect(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Query(q): Query<LspQuery>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // A page of another site must not open a socket with the user's session.
    if let Err(e) = state.origins.check(&headers, &uri) {
        tracing::warn!(user = %user.username, origin = ?headers.get(axum::http::header::ORIGIN), reason = %e, "refused a language-server upgrade");
        return Err(e);
    }
    let interp = state
        .interpreters
        .get(q.interpreter.as_deref())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // A WASI interpreter is analysed with the native one: its standard library is CPython's.
    let python = match interp.kind {
        InterpreterKind::Native => interp.clone(),
        InterpreterKind::Wasi => state
            .interpreters
            .native_default()
            .cloned()
            .ok_or_else(|| {
                ApiError::Unavailable("no native interpreter to analyse code with".into())
            })?,
    };
    let packages = match q.script {
        Some(id) => script_packages(&state, id, &python).await?,
        None => Vec::new(),
    };
    let guard = state.lsp.acquire(&user.username)?;
    let mut raw = [0u8; 8];
    rand::rng().fill_bytes(&mut raw);
    let id = hex::encode(raw);
    let sessions = state.lsp.clone();
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            let read_only = !user.has(Role::Editor);
            session(
                socket,
                sessions,
                id,
                user.username.clone(),
                read_only,
                python,
                packages,
            )
            .await;
            drop(guard);
        }))
}

/// The `site-packages` of script `id`'s dependency environment for `python` (built
/// now if missing), or nothing when its current version declares no dependencies. An
/// environment that cannot be had (a refused lock, `requires-python` excluding
/// `python`) leaves the session without it: its imports are then flagged unresolved.
async fn script_packages(
    state: &AppState,
    id: i64,
    python: &Interpreter,
) -> Result<Vec<std::path::PathBuf>, ApiError> {
    let (content, lock) = state
        .read(move |c| {
            let d = c.detail(id)?;
            let lock = c.version_lock(id, d.summary.version)?;
            Ok((d.content, lock))
        })
        .await?;
    let Some(lock) = lock else {
        return Ok(Vec::new());
    };
    let (envs, python) = (state.envs.clone(), python.clone());
    match tokio::task::spawn_blocking(move || envs.ensure(&python, &lock, &content)).await {
        Ok(Ok(env)) => Ok(vec![env.site_packages]),
        Ok(Err(e)) => {
            tracing::warn!(script = id, error = %e, "language server without the script's dependencies");
            Ok(Vec::new())
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// Starts the session's language servers, each in its own sandbox: the type server in
/// the session's root `workspace` (where the documents live), the others in a sibling
/// directory of their own (each sandbox gets its own uid, and its directory is that
/// uid's alone). This runs on the session's own task, not in `spawn_blocking`: a
/// sandbox dies with the thread that forked it (its `PR_SET_PDEATHSIG` follows that
/// thread), and the blocking pool ends idle threads after 10 s. The forks and the
/// directory set-up take a few milliseconds.
fn start(
    sessions: &LspSessions,
    interpreter: &Interpreter,
    packages: &[std::path::PathBuf],
    workspace: &std::path::Path,
) -> Result<Vec<StartedServer>, String> {
    let programs = sessions.servers.as_ref().map_err(Clone::clone)?;
    let mut started: Vec<StartedServer> = Vec::with_capacity(programs.len());
    for (i, program) in programs.iter().enumerate() {
        let dir = if i == 0 {
            workspace.to_path_buf()
        } else {
            let mut name = workspace.as_os_str().to_owned();
            name.push(format!("-{}", program.kind.name()));
            std::path::PathBuf::from(name)
        };
        match start_server(&sessions.sandbox, program, interpreter, packages, &dir) {
            Ok(process) => started.push(StartedServer {
                kind: program.kind,
                process,
                workspace: dir,
            }),
            Err(e) => {
                // Dropping a started server kills its sandbox.
                for s in started.iter().map(|s| s.workspace.clone()).chain([dir]) {
                    let _ = std::fs::remove_dir_all(s);
                }
                return Err(format!("{}: {e}", program.kind.name()));
            }
        }
    }
    Ok(started)
}

/// Tells the client why there is no session (a message it shows, and the close reason).
async fn refuse(sink: &mut futures::stream::SplitSink<WebSocket, Message>, why: &str) {
    let note = serde_json::json!({ "jsonrpc": "2.0", "method": "window/showMessage", "params": { "type": 1, "message": why } });
    let _ = sink.send(Message::Text(note.to_string().into())).await;
    // A close reason is at most 123 bytes.
    let mut reason: String = String::new();
    for c in why.chars() {
        if reason.len() + c.len_utf8() > 120 {
            break;
        }
        reason.push(c);
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: 1011,
            reason: reason.into(),
        })))
        .await;
}

async fn session(
    socket: WebSocket,
    sessions: Arc<LspSessions>,
    id: String,
    user: String,
    read_only: bool,
    interpreter: Interpreter,
    packages: Vec<std::path::PathBuf>,
) {
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(MAX_PENDING);
    let pending = Arc::new(AtomicUsize::new(0));
    let workspace = sessions.root.join(&id);
    let (mut sink, mut stream) = socket.split();
    let servers = match start(&sessions, &interpreter, &packages, &workspace) {
        Ok(servers) => servers,
        Err(why) => {
            tracing::error!(session = %id, %user, error = %why, "language-server session refused");
            refuse(&mut sink, &why).await;
            return;
        }
    };
    let args = LspSessionArgs {
        workspace,
        id: id.clone(),
        user,
        read_only,
        config: sessions.config.clone(),
        interpreter,
        servers,
        outbound: out_tx,
        pending: pending.clone(),
    };
    let actor = match ractor::Actor::spawn(None, LspSession, args).await {
        Ok((actor, _)) => actor,
        Err(e) => {
            tracing::error!(session = %id, error = %e, "cannot start a language-server session");
            refuse(
                &mut sink,
                &format!("the language-server session could not start: {e}"),
            )
            .await;
            return;
        }
    };
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
                        let frame = CloseFrame { code: 1008, reason: "too many messages waiting for the language server".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break;
                    }
                    if actor.cast(LspSessionMessage::FromClient(text.to_string())).is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let frame = CloseFrame { code: 1003, reason: "send JSON-RPC as text frames".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            outgoing = out_rx.recv() => match outgoing {
                Some(Outbound::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break;
                }
                None => break,
            },
        }
    }
    // The socket is gone: end the server process before this session counts as closed.
    let _ = actor
        .stop_and_wait(
            Some("socket closed".into()),
            Some(std::time::Duration::from_secs(5)),
        )
        .await;
}
