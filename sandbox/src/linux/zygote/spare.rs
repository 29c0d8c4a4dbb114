//! The zygote's *spare*: a process forked ahead of the next run that has already
//! joined the run's cgroups, so a start does not wait for the join.
//!
//! Joining a cgroup moves a process (`cgroup.procs`), and on cgroup v1 every such move
//! waits for an RCU grace period: 8–10 ms per start on this kind of machine, more than
//! the rest of the jail together. After each launch the server makes the next run's
//! cgroups (no limits yet) and sends them with [`super::Message::Prefork`]; the zygote
//! forks a spare that drops every descriptor but its socket, dies with the zygote,
//! joins them, and waits. When a request names exactly those cgroups, the server has
//! written the run's limits into them first, and the zygote hands the request and its
//! descriptors to the spare, which then carries out the plan as any sandbox's first
//! process does ([`super::serve::start`]): the same namespaces, root, uid, rlimits,
//! Landlock and seccomp. A spare whose join failed exits; the next run is then forked
//! and joins as before.

use std::ffi::CString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};

use super::serve::{Shared, ready, start};
use super::{Message, receive};
use crate::linux::child;

/// A spare waiting for its request.
pub(super) struct Spare {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    /// The zygote's end of the socket the request goes through.
    sock: OwnedFd,
    /// The `cgroup.procs` files it joined.
    cgroup_procs: Vec<CString>,
}

impl Spare {
    /// Forks a spare that joins `cgroup_procs`; `None` if it cannot be forked.
    pub(super) fn fork(cgroup_procs: Vec<CString>, shared: &Shared) -> Option<Spare> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ok()?;
        let zygote = std::process::id() as libc::pid_t;
        // SAFETY: the zygote has one thread; the child only runs `wait`, which never
        // returns.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: in the freshly forked child.
            unsafe { wait(theirs.as_raw_fd(), &cgroup_procs, shared, zygote) }
        }
        if pid < 0 {
            return None;
        }
        // SAFETY: a plain syscall on this process's unreaped child.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
        let spare = Spare {
            pid,
            // SAFETY: `pidfd_open` just returned this descriptor to us alone.
            pidfd: (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) }),
            sock: ours,
            cgroup_procs,
        };
        // Without a pidfd the zygote could not tell it died: no spare then.
        spare.pidfd.is_some().then_some(spare)
    }

    pub(super) fn pidfd(&self) -> RawFd {
        self.pidfd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Whether it joined exactly these cgroups.
    pub(super) fn joined(&self, cgroup_procs: &[CString]) -> bool {
        !cgroup_procs.is_empty() && self.cgroup_procs == cgroup_procs
    }

    /// Sends it the request as it came, with its descriptors.
    pub(super) fn hand_over(&self, request: &[u8], fds: &[OwnedFd]) -> Result<(), String> {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &[IoSlice::new(request)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("the spare did not take its request: {e}"))
    }

    /// Its pid and pidfd, now that it is a sandbox like any forked one.
    pub(super) fn into_process(mut self) -> (libc::pid_t, OwnedFd) {
        let pidfd = self.pidfd.take().expect("a spare has a pidfd");
        (std::mem::replace(&mut self.pid, 0), pidfd)
    }
}

impl Drop for Spare {
    /// A spare that is not used is killed and reaped.
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: signals and reaps this process's own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// In the spare: nothing of the zygote but the socket, the cgroups joined, then the
/// request; never returns.
///
/// # Safety
/// Only in the spare, right after `fork`.
unsafe fn wait(sock: RawFd, cgroup_procs: &[CString], shared: &Shared, zygote: libc::pid_t) -> ! {
    // SAFETY: raw syscalls on this process's own descriptors and the plan's strings.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != zygote {
            libc::_exit(child::SETUP_FAILED);
        }
        // The server's socket, the other sandboxes' pidfds and exit pipes: closed.
        child::close_except(&[sock]);
        for procs in cgroup_procs {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(child::SETUP_FAILED);
            }
            libc::close(fd);
        }
        let (message, fds) = match receive(BorrowedFd::borrow_raw(sock)) {
            Ok((m, fds)) if !m.is_empty() => (m, fds),
            _ => libc::_exit(0),
        };
        libc::close(sock);
        let Ok(Message::Launch(request)) = serde_json::from_slice::<Message>(&message) else {
            libc::_exit(child::SETUP_FAILED)
        };
        match ready(*request, fds, shared, zygote) {
            Ok(mut ready) => {
                // Joined already.
                ready.plan.cgroup_procs.clear();
                start(&ready)
            }
            Err(_) => libc::_exit(child::SETUP_FAILED),
        }
    }
}
