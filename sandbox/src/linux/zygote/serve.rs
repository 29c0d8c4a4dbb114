//! The zygote's side of [`super`]: a single-threaded loop that forks sandboxes on
//! request and reaps them. Being single-threaded, it may allocate between fork and
//! exec; the child still does only what [`child::enter`] does after a direct fork.

use std::ffi::CString;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::spare::Spare;
use super::{HELLO, Message, Reply, Request, receive};
use crate::linux::{child, launch, seccomp};

/// A forked sandbox the zygote has not reaped yet.
struct Kid {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    /// Where its wait status goes.
    exit_w: OwnedFd,
}

/// What the zygote prepares once for all its children.
pub(super) struct Shared {
    filters: Result<Arc<seccomp::Filters>, String>,
    spans: ((usize, usize), (usize, usize)),
}

/// A decoded request, its plan completed with the descriptors that came with it.
pub(super) struct Ready {
    pub(super) plan: child::Plan,
    pub(super) fds: Vec<OwnedFd>,
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

/// The zygote's `main`: serves the socket on its stdin until the server closes it.
/// Returns the process's exit code.
pub fn main() -> i32 {
    // SAFETY: plain syscalls on the process's own descriptors: the socket moves off
    // stdin (children get their stdin by dup2 onto 0) and /dev/null takes its place.
    let sock = unsafe {
        let fd = libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 {
            return 1;
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null > 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
        OwnedFd::from_raw_fd(fd)
    };
    // Not dumpable: no process of the server's uid (a sandbox, when the server is not
    // root) may ptrace the zygote or read its memory.
    // SAFETY: a prctl on this process only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if nix::unistd::write(&sock, HELLO).is_err() {
        return 1;
    }
    let shared = Shared {
        filters: seccomp::compiled(),
        spans: launch::server_memory(),
    };
    let mut kids: Vec<Kid> = Vec::new();
    // A process forked ahead that has joined the next run's cgroups (see `spare`).
    let mut spare: Option<Spare> = None;
    loop {
        let mut pfds: Vec<libc::pollfd> = std::iter::once(sock.as_raw_fd())
            .chain(spare.as_ref().map(Spare::pidfd))
            .chain(kids.iter().map(|k| k.pidfd.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if r < 0 {
            if nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                continue;
            }
            return 1;
        }
        let first_kid = 1 + usize::from(spare.is_some());
        if first_kid == 2 && pfds[1].revents != 0 {
            // The spare died (its cgroup join failed, or it was killed): no spare.
            spare = None;
        }
        for i in (0..kids.len()).rev() {
            if pfds[i + first_kid].revents != 0 {
                reap(kids.swap_remove(i));
            }
        }
        if pfds[0].revents == 0 {
            continue;
        }
        let (message, fds) = match receive(sock.as_fd()) {
            Ok((m, _)) if m.is_empty() => return 0,
            Ok(got) => got,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(_) => return 1,
        };
        let bytes = message;
        let request = match serde_json::from_slice::<Message>(&bytes) {
            Ok(Message::Prefork { cgroup_procs }) => {
                // The old spare (if any) is killed and reaped when replaced.
                spare = Spare::fork(cgroup_procs, &shared);
                continue;
            }
            Ok(Message::Launch(request)) => Ok(*request),
            Err(e) => Err(format!("a garbled request: {e}")),
        };
        let (reply, pidfd) = match request.and_then(|r| launch(r, &bytes, fds, &shared, &mut spare))
        {
            Ok(kid) => {
                let reply = Reply::Forked {
                    pid: kid.pid as u32,
                };
                let pidfd = kid.pidfd.as_raw_fd();
                kids.push(kid);
                (reply, Some(pidfd))
            }
            Err(error) => (Reply::Failed { error }, None),
        };
        let bytes = serde_json::to_vec(&reply).expect("a reply serialises");
        let pidfds: Vec<RawFd> = pidfd.into_iter().collect();
        let cmsgs = if pidfds.is_empty() {
            vec![]
        } else {
            vec![ControlMessage::ScmRights(&pidfds)]
        };
        if sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .is_err()
        {
            return 1;
        }
    }
}

/// Writes a reaped child's wait status to its exit pipe.
fn reap(kid: Kid) {
    let mut st = 0;
    // SAFETY: waitpid on this process's own child, whose pidfd said it ended.
    let r = unsafe { libc::waitpid(kid.pid, &mut st, libc::WNOHANG) };
    if r == kid.pid {
        let _ = nix::unistd::write(&kid.exit_w, &st.to_ne_bytes());
    }
}

/// Starts a request's sandbox: in the spare when it has joined exactly the request's
/// cgroups, else in a fresh fork.
fn launch(
    request: Request,
    bytes: &[u8],
    fds: Vec<OwnedFd>,
    shared: &Shared,
    spare: &mut Option<Spare>,
) -> Result<Kid, String> {
    let ready = ready(request, fds, shared, std::process::id() as libc::pid_t)?;
    if let Some(s) = spare.take_if(|s| s.joined(&ready.plan.cgroup_procs))
        // A spare that died before it took the request is dropped (reaped); the fork
        // below joins the cgroups itself.
        && s.hand_over(bytes, &ready.fds).is_ok()
    {
        let (pid, pidfd) = s.into_process();
        let mut fds = ready.fds;
        return Ok(Kid {
            pid,
            pidfd,
            exit_w: fds.swap_remove(5),
        });
    }
    fork(ready)
}

/// Decodes a request and completes its plan with the descriptors that came with it.
/// `parent`: the pid the sandbox's intermediate must have as its parent.
pub(super) fn ready(
    request: Request,
    fds: Vec<OwnedFd>,
    shared: &Shared,
    parent: libc::pid_t,
) -> Result<Ready, String> {
    let want = 6 + usize::from(request.ruleset) + usize::from(request.trace);
    if fds.len() != want {
        return Err(format!("{} descriptors came, {want} were due", fds.len()));
    }
    let mut plan = request.plan;
    plan.seccomp = match (&shared.filters, request.seccomp) {
        (_, false) => None,
        (Ok(f), true) => Some(f.clone()),
        (Err(e), true) => return Err(format!("the zygote has no seccomp filter: {e}")),
    };
    (plan.server_args, plan.server_env) = shared.spans;
    plan.server_pid = parent;
    plan.status_w = fds[3].as_raw_fd();
    plan.report_w = fds[4].as_raw_fd();
    let mut extra = fds[6..].iter().map(|f| f.as_raw_fd());
    plan.ruleset_fd = if request.ruleset {
        extra.next().unwrap_or(-1)
    } else {
        -1
    };
    plan.trace_w = if request.trace {
        extra.next().unwrap_or(-1)
    } else {
        -1
    };
    Ok(Ready {
        plan,
        fds,
        program: request.program,
        argv: request.argv,
        envp: request.envp,
    })
}

/// Forks a request's sandbox.
fn fork(ready: Ready) -> Result<Kid, String> {
    // SAFETY: this process has one thread, so the child may do anything; it only
    // runs `start`, which never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child, with the plan prepared before the fork.
        unsafe { start(&ready) }
    }
    let fds = ready.fds;
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a plain syscall; `pid` is this process's unreaped child.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if pidfd < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: the child is ours; without a pidfd nobody could kill it.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(format!("pidfd_open: {e}"));
    }
    let mut fds = fds;
    Ok(Kid {
        pid,
        // SAFETY: `pidfd_open` just returned this descriptor to us alone.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        exit_w: fds.swap_remove(5),
    })
}

/// NULL-terminated pointers to `strings` (which must outlive them).
pub(super) fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// In the forked child: stdio from the request, nothing else of the zygote, then the
/// sandbox exactly as after a direct fork, and exec.
///
/// # Safety
/// Only in the zygote's child (or its spare) right after `fork` (or the request).
pub(super) unsafe fn start(ready: &Ready) -> ! {
    let Ready {
        plan, fds, program, ..
    } = ready;
    let argv = pointers(&ready.argv);
    let envp = pointers(&ready.envp);
    // SAFETY: raw syscalls on descriptors the request brought and strings prepared
    // before the fork.
    unsafe {
        for (i, fd) in fds[..3].iter().enumerate() {
            if libc::dup2(fd.as_raw_fd(), i as RawFd) < 0 {
                child::fail(plan, b"set up stdio");
            }
        }
        // What std's spawn gives a child: default SIGPIPE (Rust ignores it) and no
        // blocked signals.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Dumpable again, as after a direct fork: the intermediate writes its own id
        // maps, which needs /proc/self to belong to it (it turns this off itself after).
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        // The socket, the other sandboxes' pidfds and exit pipes: all closed.
        child::close_except(&[plan.status_w, plan.report_w, plan.ruleset_fd, plan.trace_w]);
        if child::enter(plan).is_err() {
            libc::_exit(child::SETUP_FAILED);
        }
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        child::fail(plan, b"exec the program")
    }
}
