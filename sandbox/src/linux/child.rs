//! What runs between `fork` and `exec`: namespaces, mounts, the uid switch, rlimits and
//! Landlock. Everything here is raw syscalls on data prepared beforehand in a [`Plan`]:
//! after `fork` in a multi-threaded server, allocating or taking locks is not safe.
//!
//! Three processes come out of one spawn:
//! - the *intermediate* (the `Child` the server holds) enters new mount, pid, net, ipc
//!   and uts namespaces (and a user namespace when the server is not root), mounts the
//!   private `/tmp` and the exposed interpreter paths, forks *init*, and waits;
//! - *init* is PID 1 of the new pid namespace: it mounts a fresh `/proc`, forks the
//!   *worker*, reaps every process, and exits when the worker does, which makes the
//!   kernel kill whatever the script left behind;
//! - the *worker* (PID 2) drops to the unprivileged uid, enters its own user namespace
//!   (root server), sets rlimits, restricts itself with Landlock, and returns to std,
//!   which execs the interpreter.
//!
//! A failed step writes `step: errno N` to the report pipe and exits with
//! [`SETUP_FAILED`]; the parent turns that into a clear setup error.

mod mounts;
mod worker;

use std::ffi::CString;
use std::os::fd::RawFd;

use self::mounts::{build_root, enter_root};
pub(crate) use self::mounts::{cpath, inject};
use self::worker::restrict_worker;

/// Exit code of a sandbox process whose setup failed (the report pipe says why).
pub(crate) const SETUP_FAILED: i32 = 125;

/// The uid and gid the script has inside its user namespace.
pub(crate) const INNER_ID: u32 = 1000;

#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(crate) struct Plan {
    /// The run's `cgroup.procs` files: the intermediate writes itself into each before
    /// anything else, so every process of the sandbox is counted by the run's cgroup.
    pub(crate) cgroup_procs: Vec<CString>,
    /// The server runs as root: switch to `uid`/`gid` in the worker.
    pub(crate) switch_user: bool,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// `1000 <uid> 1`, `1000 <gid> 1`.
    pub(crate) uid_map: CString,
    pub(crate) gid_map: CString,
    /// The minimal root to build and pivot into.
    pub(crate) root: super::rootfs::Root,
    /// The seccomp filters, installed last (None: not available on this architecture).
    /// Not sent to a zygote, which compiles its own once.
    #[serde(skip)]
    pub(crate) seccomp: Option<std::sync::Arc<super::seccomp::Filters>>,
    /// The server's command line and environment in memory (start, end): init blanks
    /// its copy, so `/proc/1/cmdline` shows nothing of the server.
    pub(crate) server_args: (usize, usize),
    pub(crate) server_env: (usize, usize),
    /// Every Landlock file-system right the ruleset handles: the fresh `/tmp` gets them.
    pub(crate) tmp_access: u64,
    /// (resource, soft, hard)
    pub(crate) rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// The Landlock ruleset built by the parent, or -1.
    pub(crate) ruleset_fd: RawFd,
    pub(crate) report_w: RawFd,
    /// The server's pid: the intermediate dies with it (no run outlives the server).
    pub(crate) server_pid: libc::pid_t,
    /// Init writes the script's raw wait status here the moment it exits, so the server
    /// need not wait for the namespaces to be torn down.
    pub(crate) status_w: RawFd,
    /// Where each step of the setup writes when it is done (9 bytes: the index in
    /// [`PHASES`], CLOCK_MONOTONIC ns), or -1. Only the benchmark asks for it; it
    /// changes nothing else.
    pub(crate) trace_w: RawFd,
}

const SLASH: &[u8] = b"/\0";
const PROC: &[u8] = b"/proc\0";
const PROC_FS: &[u8] = b"proc\0";
const TMPFS: &[u8] = b"tmpfs\0";
const TMPFS_OPTS: &[u8] = b"mode=0755,size=64k\0";
const ROOT_OPTS: &[u8] = b"mode=0755,size=1m\0";
const PROC_OPTS: &[u8] = b"hidepid=invisible,subset=pid\0";
const BASE: &[u8] = b"/tmp\0";
const NEW_ROOT: &[u8] = b"/newroot\0";
const OLD_ROOT: &[u8] = b"/oldroot\0";
const NEW_TMP: &[u8] = b"/newroot/tmp\0";
const NEW_DEV: &[u8] = b"/newroot/dev\0";
const NEW_PROC: &[u8] = b"/newroot/proc\0";
const DOT: &[u8] = b".\0";
const TMP: &[u8] = b"/tmp\0";
const INIT_NAME: &[u8] = b"sandbox-init\0";
/// Device nodes: (host path below the old root, mount point in the new root).
const DEVICES: [(&[u8], &[u8]); 5] = [
    (b"/oldroot/dev/null\0", b"/newroot/dev/null\0"),
    (b"/oldroot/dev/zero\0", b"/newroot/dev/zero\0"),
    (b"/oldroot/dev/full\0", b"/newroot/dev/full\0"),
    (b"/oldroot/dev/random\0", b"/newroot/dev/random\0"),
    (b"/oldroot/dev/urandom\0", b"/newroot/dev/urandom\0"),
];
/// (target, link) in the new `/dev`.
const DEV_LINKS: [(&[u8], &[u8]); 5] = [
    (b"/proc/self/fd\0", b"/newroot/dev/fd\0"),
    (b"/proc/self/fd/0\0", b"/newroot/dev/stdin\0"),
    (b"/proc/self/fd/1\0", b"/newroot/dev/stdout\0"),
    (b"/proc/self/fd/2\0", b"/newroot/dev/stderr\0"),
    (b"/tmp\0", b"/newroot/dev/shm\0"),
];
const HOSTNAME: &[u8] = b"sandbox";
const SELF_UID_MAP: &[u8] = b"/proc/self/uid_map\0";
const SELF_GID_MAP: &[u8] = b"/proc/self/gid_map\0";
const SELF_SETGROUPS: &[u8] = b"/proc/self/setgroups\0";
const DENY: &[u8] = b"deny";

fn c(b: &[u8]) -> *const libc::c_char {
    b.as_ptr().cast()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Writes `step: errno N\n` to the report pipe and exits.
pub(super) fn fail(plan: &Plan, step: &[u8]) -> ! {
    let e = errno();
    let mut buf = [0u8; 160];
    let mut n = 0;
    for &b in step.iter().chain(b": errno ".iter()) {
        if n < 140 {
            buf[n] = b;
            n += 1;
        }
    }
    let mut digits = [0u8; 12];
    let mut d = 0;
    let mut v = e.unsigned_abs();
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        buf[n] = digits[d];
        n += 1;
    }
    buf[n] = b'\n';
    n += 1;
    // SAFETY: writes a buffer on the stack to the plan's report pipe, then exits.
    unsafe {
        libc::write(plan.report_w, buf.as_ptr().cast(), n);
        libc::_exit(SETUP_FAILED)
    }
}

fn check(plan: &Plan, r: libc::c_int, step: &[u8]) {
    if r < 0 {
        fail(plan, step);
    }
}

fn write_file(plan: &Plan, path: &[u8], data: &[u8], step: &[u8]) {
    // SAFETY: `path` is a NUL-terminated constant or plan string; `data` outlives the write.
    unsafe {
        let fd = libc::open(c(path), libc::O_WRONLY | libc::O_CLOEXEC);
        check(plan, fd, step);
        if libc::write(fd, data.as_ptr().cast(), data.len()) != data.len() as isize {
            fail(plan, step);
        }
        libc::close(fd);
    }
}

/// Closes every descriptor from 3 up except those in `keep` (at most 4).
pub(super) fn close_except(keep: &[RawFd]) {
    let mut k = [i32::MAX; 4];
    for (i, fd) in keep.iter().take(4).enumerate() {
        k[i] = *fd;
    }
    k.sort_unstable();
    let mut from: u32 = 3;
    for fd in k {
        if fd == i32::MAX || fd < 3 {
            continue;
        }
        let fd = fd as u32;
        if fd > from {
            // SAFETY: closes descriptors of this process only; none is in use by Rust code.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = fd + 1;
    }
    // SAFETY: as above: closes this process's descriptors above the kept ones.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

fn write_id_maps(plan: &Plan) {
    write_file(
        plan,
        SELF_UID_MAP,
        plan.uid_map.as_bytes(),
        b"write uid_map",
    );
    write_file(plan, SELF_SETGROUPS, DENY, b"write setgroups");
    write_file(
        plan,
        SELF_GID_MAP,
        plan.gid_map.as_bytes(),
        b"write gid_map",
    );
}

/// The phases [`enter`] marks on the plan's trace pipe (see [`Plan::trace_w`]), in order.
pub(crate) const PHASES: [&str; 12] = [
    "fork (intermediate runs)",
    "join the run's cgroup",
    "namespaces (unshare, id maps)",
    "minimal root (tmpfs, /dev, bind mounts)",
    "fork init",
    "/proc, pivot_root",
    "fork the worker",
    "uid switch, user namespace",
    "session keyring",
    "rlimits, no_new_privs",
    "Landlock",
    "seccomp",
];

/// Writes (phase, CLOCK_MONOTONIC ns) to the trace pipe, if the plan has one.
fn mark(plan: &Plan, phase: u8) {
    if plan.trace_w < 0 {
        return;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: raw syscalls on a timespec on the stack and the plan's descriptor.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let mut rec = [0u8; 9];
        rec[0] = phase;
        rec[1..].copy_from_slice(&ns.to_ne_bytes());
        libc::write(plan.trace_w, rec.as_ptr().cast(), rec.len());
    }
}

/// The `pre_exec` hook. Returns only in the worker, which std then execs.
///
/// # Safety
/// Must run in the child between `fork` and `exec`, with `plan` prepared before the fork.
pub(crate) unsafe fn enter(plan: &Plan) -> std::io::Result<()> {
    // SAFETY: the caller's contract: each step makes raw syscalls on the plan only.
    unsafe {
        mark(plan, 0);
        enter_namespaces(plan);
        let status_pipe = make_pipe(plan, b"status pipe");
        // Init's parent is outside its pid namespace (getppid() says 0), so it learns
        // whether the intermediate still lives from this pipe's write end.
        let lifeline = make_pipe(plan, b"lifeline pipe");
        let init = libc::fork();
        check(plan, init, b"fork init");
        if init > 0 {
            wait_for_init(init, status_pipe[0], lifeline[1]);
        }
        mark(plan, 4);
        start_init(plan, lifeline, status_pipe[0]);
        let worker = libc::fork();
        check(plan, worker, b"fork the worker");
        if worker > 0 {
            reap_as_init(plan, worker, status_pipe[1]);
        }
        restrict_worker(plan);
    }
    Ok(())
}

/// In the intermediate: the run's cgroup, the new namespaces and the minimal root.
unsafe fn enter_namespaces(plan: &Plan) {
    // SAFETY: raw syscalls on the plan's prepared strings and constants.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != plan.server_pid {
            libc::_exit(SETUP_FAILED);
        }
        for procs in &plan.cgroup_procs {
            // "0": the writing process itself.
            write_file(
                plan,
                procs.as_bytes_with_nul(),
                b"0",
                b"join the run's cgroup",
            );
        }
        mark(plan, 1);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        // The cgroup namespace comes after joining the run's cgroups: inside, they are
        // `/`, and nothing of the host's cgroup paths (the server's cgroup, its pid in
        // the run cgroup's name) shows in /proc/self/cgroup.
        let mut flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP;
        if !plan.switch_user {
            // Not root: a user namespace is what makes the others possible.
            flags |= libc::CLONE_NEWUSER;
        }
        check(plan, libc::unshare(flags), b"create namespaces (unshare)");
        if !plan.switch_user {
            write_id_maps(plan);
        }
        // Not dumpable: the sandbox cannot read init's memory or see it in /proc (and
        // init inherits this). After the id maps, which need /proc/self to be ours.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        check(
            plan,
            libc::mount(
                std::ptr::null(),
                c(SLASH),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ),
            b"make mounts private",
        );
        mark(plan, 2);
        build_root(plan);
        libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len());
        mark(plan, 3);
    }
}

/// A close-on-exec pipe, or the setup fails.
fn make_pipe(plan: &Plan, step: &[u8]) -> [RawFd; 2] {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(
        plan,
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        step,
    );
    fds
}

/// The intermediate, after forking init: waits for it and passes the script's status
/// on. It lets go of the output pipes, so their end means the sandbox's processes are
/// gone.
unsafe fn wait_for_init(init: libc::pid_t, status_r: RawFd, lifeline_w: RawFd) -> ! {
    // SAFETY: raw syscalls on this process's own descriptors and child.
    unsafe {
        close_except(&[status_r, lifeline_w]);
        for fd in 0..3 {
            libc::close(fd);
        }
        let mut st = 0;
        while libc::waitpid(init, &mut st, 0) < 0 && errno() == libc::EINTR {}
        let mut raw = [0u8; 4];
        let got = libc::read(status_r, raw.as_mut_ptr().cast(), 4);
        let st = if got == 4 {
            i32::from_ne_bytes(raw)
        } else {
            st
        };
        if got != 4 && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == SETUP_FAILED {
            libc::_exit(SETUP_FAILED);
        }
        if libc::WIFSIGNALED(st) {
            let sig = libc::WTERMSIG(st);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(if libc::WIFEXITED(st) {
            libc::WEXITSTATUS(st)
        } else {
            1
        });
    }
}

/// In init (PID 1): dies with the intermediate, shows nothing of the server, and
/// enters the new root.
unsafe fn start_init(plan: &Plan, lifeline: [RawFd; 2], status_r: RawFd) {
    // SAFETY: raw syscalls on this process's own descriptors and the plan.
    unsafe {
        libc::close(lifeline[1]);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let mut pfd = libc::pollfd {
            fd: lifeline[0],
            events: 0,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            // The intermediate died before PDEATHSIG was armed.
            libc::_exit(SETUP_FAILED);
        }
        libc::close(lifeline[0]);
        libc::close(status_r);
        blank(plan.server_args);
        blank(plan.server_env);
        libc::prctl(libc::PR_SET_NAME, c(INIT_NAME), 0, 0, 0);
        enter_root(plan);
        mark(plan, 5);
    }
}

/// Init, after forking the worker: reaps every process, reports the worker's status,
/// and exits with it, which ends the pid namespace.
unsafe fn reap_as_init(plan: &Plan, worker: libc::pid_t, status_w: RawFd) -> ! {
    // SAFETY: raw syscalls on this process's own descriptors and children.
    unsafe {
        close_except(&[status_w, plan.report_w, plan.status_w]);
        for fd in 0..3 {
            libc::close(fd);
        }
        drop_capabilities(plan);
        loop {
            let mut st = 0;
            let pid = libc::waitpid(-1, &mut st, 0);
            if pid == worker {
                let raw = st.to_ne_bytes();
                libc::write(plan.status_w, raw.as_ptr().cast(), 4);
                libc::write(status_w, raw.as_ptr().cast(), 4);
                // Exiting ends the pid namespace: the kernel kills what is left.
                libc::_exit(0);
            }
            if pid < 0 && errno() == libc::ECHILD {
                libc::_exit(SETUP_FAILED);
            }
        }
    }
}

/// Zeroes init's copy of a span of the server's memory (its command line, environment).
fn blank((start, end): (usize, usize)) {
    if start == 0 || end <= start || end - start > 1 << 20 {
        return;
    }
    // SAFETY: the span is the server's argv/environ strings as the kernel reported them
    // (/proc/self/stat), mapped and writable in this forked copy of its memory; only
    // this process, which never reads them again, sees the change.
    unsafe {
        std::ptr::write_bytes(start as *mut u8, 0, end - start);
        let name = &INIT_NAME[..INIT_NAME.len() - 1];
        if end - start > name.len() {
            std::ptr::copy_nonoverlapping(name.as_ptr(), start as *mut u8, name.len());
        }
    }
}

/// Init keeps no capability: it only waits and writes to pipes.
unsafe fn drop_capabilities(plan: &Plan) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset with a header and data on the stack, in the kernel's layout.
    unsafe {
        check(
            plan,
            libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) as libc::c_int,
            b"drop init's capabilities",
        );
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
}
