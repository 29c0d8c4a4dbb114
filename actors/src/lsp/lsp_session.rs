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

pub mod policy;
mod pump;
pub mod router;
pub mod servers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use scriptorium_sandbox::limits::LimitsOverride;
use scriptorium_sandbox::linux::{LinuxBackend, ProcessSpec, SandboxHandle, SandboxedProcess};
use scriptorium_sandbox::{Interpreter, Limits, SandboxError};
use serde_json::{Value, json};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

use policy::{FromClient, FromServer, Policy};
use pump::{describe_status, drain_stderr, pump_server, write_frame};
use router::Router;
pub use servers::ServerKind;

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
/// able to read `interpreter`'s installation, with the files that point it at that
/// interpreter written there first. It forks: call it from a thread that
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
    for (name, content) in server.kind.workspace_files(&interpreter.path) {
        std::fs::write(workspace.join(name), content)?;
    }
    let bin_dir = server
        .program
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    // pyrefly asks the chosen interpreter for its paths, Jedi runs it inside the same
    // sandbox (and imports compiled modules there to inspect them): the server gets at
    // least the room that interpreter's runs get.
    let mut limits = server.limits.clone();
    limits.memory_mib = limits.memory_mib.max(interpreter.limits.memory_mib);
    let spec = ProcessSpec {
        program: server.program.clone(),
        args: server.args.iter().map(Into::into).collect(),
        interpreter: Some(interpreter.clone()),
        read: server.read.clone(),
        workdir: workspace.to_path_buf(),
        // Its own bin directory first (pylsp's ruff plugin); nothing of the server's
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

/// One server of a session, started in its sandbox ([`start_server`]).
pub struct StartedServer {
    pub kind: ServerKind,
    pub process: SandboxedProcess,
    /// Its writable directory, removed when the session ends.
    pub workspace: PathBuf,
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
