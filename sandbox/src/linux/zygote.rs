//! The zygote: a small process, exec'd once from a helper program (the server binary's
//! `__sandbox-zygote` subcommand, or this crate's `scriptorium-sandbox-zygote`), that
//! forks sandboxes on the server's behalf. Forking the server itself copies its page
//! tables (hundreds of MiB mapped) on every run; the zygote maps a few MiB.
//!
//! The server sends each request over a `SOCK_SEQPACKET` socket: the [`child::Plan`]
//! and the program's argv and environment as JSON, and the sandbox's descriptors (its
//! stdin, stdout and stderr, the status and report pipes, the Landlock ruleset, and an
//! *exit* pipe) with `SCM_RIGHTS`. The zygote forks; its child carries out exactly the
//! plan a direct fork would ([`child::enter`]: same namespaces, root, uid, rlimits,
//! Landlock, seccomp) and execs the program. The zygote answers with the child's pid and
//! a pidfd for it (the server kills the sandbox through it), reaps the child, and
//! writes its wait status to the exit pipe.
//!
//! Nothing of the zygote reaches a script: its child closes every descriptor but the
//! plan's before it starts ([`serve`]), and the script runs two forks further down. The
//! zygote ends when the server's end of the socket closes (the server is gone), and its
//! sandboxes with it (their intermediates die with it, `PR_SET_PDEATHSIG`). If it dies
//! while the server lives, the next launch restarts it; if that fails too, the server
//! forks the sandbox itself and the run record's `protections.launcher` says so.

mod serve;
mod spare;

pub use self::serve::main;

use std::ffi::CString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::child;
use super::launch::{Pipes, Prepared};

/// The helper program's first argument that makes it a zygote.
pub const SUBCOMMAND: &str = "__sandbox-zygote";

/// What the zygote says first, so a wrong program is noticed at once.
const HELLO: &[u8] = b"scriptorium-zygote 1";
/// The largest request or reply.
const MAX_MESSAGE: usize = 1 << 20;
/// How long the server waits for the zygote's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One sandbox to fork. The descriptors travel beside it, in this order: stdin,
/// stdout, stderr, status pipe, report pipe, exit pipe, then the ruleset and the trace
/// pipe if any.
#[derive(Serialize, Deserialize)]
pub(super) struct Request {
    plan: child::Plan,
    /// Install the seccomp filters (the zygote compiles its own, once).
    seccomp: bool,
    ruleset: bool,
    /// The benchmark's phase marks ([`child::Plan::trace_w`]).
    trace: bool,
    program: CString,
    argv: Vec<CString>,
    /// `KEY=VALUE`.
    envp: Vec<CString>,
}

/// What the server sends the zygote.
#[derive(Serialize, Deserialize)]
pub(super) enum Message {
    /// Fork a sandbox.
    Launch(Box<Request>),
    /// Fork a spare that joins these cgroups now and waits for the request that names
    /// them (see [`spare`]). No answer.
    Prefork { cgroup_procs: Vec<CString> },
}

/// The zygote's answer: the child's pid (its pidfd travels beside it), or why not.
#[derive(Serialize, Deserialize)]
enum Reply {
    Forked { pid: u32 },
    Failed { error: String },
}

/// The server's handle on its zygote, started with the backend (or at the next launch).
pub(super) struct Zygote {
    program: PathBuf,
    conn: Mutex<Option<Conn>>,
}

struct Conn {
    sock: OwnedFd,
    process: std::process::Child,
    /// The cgroups this zygote's spare has joined (or is joining), no limits written.
    spare: Option<super::cgroup::RunCgroup>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closing the socket ends the zygote; the kill is for a hung one.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A transport failure (the zygote is gone or hung: restart it) or the zygote's own
/// refusal.
enum CallError {
    Transport(String),
    Refused(String),
}

impl Zygote {
    /// A zygote that `program SUBCOMMAND` starts.
    pub(super) fn new(program: &Path) -> Zygote {
        Zygote {
            program: program.to_path_buf(),
            conn: Mutex::new(None),
        }
    }

    /// Starts the zygote now, so the first run does not wait for it; a failure is
    /// logged and retried at the first launch.
    pub(super) fn start(&self) {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.is_none() {
            match Conn::spawn(&self.program) {
                Ok(c) => *conn = Some(c),
                Err(e) => tracing::warn!(error = %e, "the sandbox zygote did not start"),
            }
        }
    }

    /// The zygote's pid, once it runs.
    pub(super) fn pid(&self) -> Option<u32> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.as_ref().map(|c| c.process.id())
    }

    /// The cgroups the zygote's spare process has joined, for the next launch to write
    /// its limits into and name in its plan (see [`spare`]); `None` when there is none.
    pub(super) fn take_spare(&self) -> Option<super::cgroup::RunCgroup> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.as_mut().and_then(|c| c.spare.take())
    }

    /// Whether a spare's cgroups are held for the next launch.
    pub(super) fn has_spare(&self) -> bool {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.as_ref().is_some_and(|c| c.spare.is_some())
    }

    /// Has the zygote fork a spare that joins a fresh cgroup ahead of the next launch.
    /// A failure only means the next launch joins its cgroups itself.
    pub(super) fn prefork(&self, cgroups: &super::cgroup::Cgroups) {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = conn.as_mut() else { return };
        if c.spare.is_some() {
            return;
        }
        let Ok(cgroup) = cgroups.make() else { return };
        let message = Message::Prefork {
            cgroup_procs: cgroup.procs_files(),
        };
        let Ok(bytes) = serde_json::to_vec(&message) else {
            return;
        };
        if sendmsg::<()>(
            c.sock.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .is_ok()
        {
            c.spare = Some(cgroup);
        }
    }

    /// Has the zygote fork `prepared`'s sandbox; restarts it once if it is gone.
    pub(super) fn launch(&self, prepared: &mut Prepared) -> Result<(Forked, Pipes), String> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = String::new();
        for _ in 0..2 {
            if conn.is_none() {
                *conn = Some(Conn::spawn(&self.program)?);
            }
            let c = conn.as_ref().expect("started above");
            match c.call(prepared) {
                Ok(forked) => return Ok(forked),
                Err(CallError::Refused(e)) => return Err(e),
                Err(CallError::Transport(e)) => {
                    tracing::warn!(error = %e, "the sandbox zygote is gone; restarting it");
                    *conn = None;
                    last = e;
                }
            }
        }
        Err(format!("it failed twice: {last}"))
    }
}

impl Conn {
    fn spawn(program: &Path) -> Result<Conn, String> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        // The zygote gets the socket as its stdin and nothing of the server's
        // environment.
        let process = std::process::Command::new(program)
            .arg(SUBCOMMAND)
            .env_clear()
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {} {SUBCOMMAND}: {e}", program.display()))?;
        let timeout = nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0);
        nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        let conn = Conn {
            sock: ours,
            process,
            spare: None,
        };
        let mut buf = [0u8; 64];
        let n = nix::unistd::read(&conn.sock, &mut buf).unwrap_or(0);
        if &buf[..n] != HELLO {
            return Err(format!(
                "{} {SUBCOMMAND} is not a sandbox zygote (it said {:?})",
                program.display(),
                String::from_utf8_lossy(&buf[..n])
            ));
        }
        Ok(conn)
    }

    fn call(&self, prepared: &mut Prepared) -> Result<(Forked, Pipes), CallError> {
        let t = |e: nix::Error| CallError::Transport(e.to_string());
        let io = |e: std::io::Error| CallError::Refused(e.to_string());
        let (stdin_r, stdin_w) = if prepared.stdin {
            let (r, w) = pipe().map_err(io)?;
            (r, Some(w))
        } else {
            (
                OwnedFd::from(std::fs::File::open("/dev/null").map_err(io)?),
                None,
            )
        };
        let (stdout_r, stdout_w) = pipe().map_err(io)?;
        let (stderr_r, stderr_w) = pipe().map_err(io)?;
        let (exit_r, exit_w) = pipe().map_err(io)?;
        let (status_w, report_w, ruleset, trace) = prepared.child_fds();
        let mut fds: Vec<RawFd> = [&stdin_r, &stdout_w, &stderr_w, status_w, report_w, &exit_w]
            .iter()
            .map(|f| f.as_raw_fd())
            .collect();
        let ruleset = ruleset.map(|r| r.as_raw_fd());
        let trace = trace.map(|t| t.as_raw_fd());
        fds.extend(ruleset);
        fds.extend(trace);
        let seccomp = prepared.plan.seccomp.is_some();
        let request = Message::Launch(Box::new(Request {
            plan: std::mem::take(&mut prepared.plan),
            seccomp,
            ruleset: ruleset.is_some(),
            trace: trace.is_some(),
            program: prepared.program.clone(),
            argv: prepared.argv.clone(),
            envp: prepared
                .env
                .iter()
                .map(|(k, v)| {
                    use std::os::unix::ffi::OsStrExt;
                    let mut kv = k.as_bytes().to_vec();
                    kv.push(b'=');
                    kv.extend_from_slice(v.as_bytes());
                    CString::new(kv).expect("the environment has no NUL bytes")
                })
                .collect(),
        }));
        let bytes = serde_json::to_vec(&request).map_err(|e| CallError::Refused(e.to_string()))?;
        let Message::Launch(request) = request else {
            unreachable!("made above")
        };
        prepared.plan = request.plan;
        if bytes.len() > MAX_MESSAGE {
            return Err(CallError::Refused(format!(
                "the request is {} bytes, over {MAX_MESSAGE}",
                bytes.len()
            )));
        }
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(t)?;
        let (reply, mut received) = receive(self.sock.as_fd()).map_err(t)?;
        if reply.is_empty() {
            return Err(CallError::Transport("the zygote closed its socket".into()));
        }
        let reply: Reply = serde_json::from_slice(&reply)
            .map_err(|e| CallError::Transport(format!("a garbled reply: {e}")))?;
        match reply {
            Reply::Failed { error } => Err(CallError::Refused(error)),
            Reply::Forked { pid } => {
                let pidfd = received
                    .pop()
                    .ok_or_else(|| CallError::Transport("no pidfd in the reply".into()))?;
                let forked = Forked {
                    pid,
                    pidfd,
                    exit_r: Some(exit_r),
                    status: None,
                    lost: false,
                };
                let pipes = Pipes {
                    stdin: stdin_w
                        .map(|w| tokio::process::ChildStdin::from_std(w.into()))
                        .transpose()
                        .map_err(io)?,
                    stdout: tokio::process::ChildStdout::from_std(stdout_r.into()).map_err(io)?,
                    stderr: tokio::process::ChildStderr::from_std(stderr_r.into()).map_err(io)?,
                };
                Ok((forked, pipes))
            }
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// One message and the descriptors that came with it (close-on-exec). An empty
/// message: the other end closed.
fn receive(sock: std::os::fd::BorrowedFd<'_>) -> nix::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(list) = c {
            // SAFETY: the kernel just installed these descriptors in this process for
            // this message; nothing else owns them.
            fds.extend(
                list.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    Ok((buf, fds))
}

/// A sandbox's intermediate forked by the zygote. Dropping it kills it (and with it the
/// sandbox), as `kill_on_drop` does for one the server forked.
pub(super) struct Forked {
    pid: u32,
    pidfd: OwnedFd,
    /// Its wait status (4 bytes) once the zygote has reaped it.
    exit_r: Option<OwnedFd>,
    status: Option<(Option<i32>, Option<i32>)>,
    /// The zygote ended without reporting this sandbox's end.
    lost: bool,
}

impl Forked {
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILL through the pidfd: never another process that reused the pid.
    pub(super) fn kill(&self) {
        // SAFETY: a plain syscall on a descriptor this struct owns.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }

    /// Whether the zygote died before it reported this sandbox's end.
    pub(super) fn zygote_lost(&self) -> bool {
        self.lost
    }

    /// Whether it has ended (its pidfd is readable then).
    pub(super) fn has_ended(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
    }

    /// Waits until the zygote has reaped it: (exit code, signal). Without the zygote
    /// (it died, and its children with it) it counts as killed.
    pub(super) async fn wait(&mut self) -> std::io::Result<(Option<i32>, Option<i32>)> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let Some(fd) = self.exit_r.take() else {
            return Ok((None, Some(libc::SIGKILL)));
        };
        let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
        let mut raw = [0u8; 4];
        let status = match rx.read_exact(&mut raw).await {
            Ok(_) => {
                let st = i32::from_ne_bytes(raw);
                if libc::WIFSIGNALED(st) {
                    (None, Some(libc::WTERMSIG(st)))
                } else {
                    (Some(libc::WEXITSTATUS(st)), None)
                }
            }
            Err(_) => {
                self.lost = true;
                (None, Some(libc::SIGKILL))
            }
        };
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill();
        }
    }
}
