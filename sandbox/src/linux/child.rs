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

use std::ffi::CString;
use std::os::fd::RawFd;

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
        let mut flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
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

/// In the worker (PID 2): the unprivileged uid, a private keyring, rlimits, Landlock
/// and, last, seccomp. Then std (or the zygote) execs the program.
unsafe fn restrict_worker(plan: &Plan) {
    // SAFETY: raw syscalls on the plan's prepared data.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != 1 {
            libc::_exit(SETUP_FAILED);
        }
        mark(plan, 6);
        // Nothing the server had open reaches the script (stdio stays).
        close_except(&[plan.ruleset_fd, plan.report_w, plan.trace_w]);
        check(
            plan,
            libc::chdir(plan.root.workdir.as_ptr()),
            b"enter the working directory",
        );
        if plan.switch_user {
            switch_user(plan);
        }
        mark(plan, 7);
        // A session keyring of its own: nothing of the server's keys is in reach.
        check(
            plan,
            libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0) as libc::c_int,
            b"join a new session keyring",
        );
        mark(plan, 8);
        for &(res, soft, hard) in &plan.rlimits {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            check(plan, libc::setrlimit(res, &lim), b"setrlimit");
        }
        check(
            plan,
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            b"set no_new_privs",
        );
        mark(plan, 9);
        if plan.ruleset_fd >= 0 {
            allow_proc(plan);
            let r =
                libc::syscall(libc::SYS_landlock_restrict_self, plan.ruleset_fd, 0) as libc::c_int;
            check(plan, r, b"landlock_restrict_self");
            libc::close(plan.ruleset_fd);
        }
        mark(plan, 10);
        if let Some(filters) = &plan.seccomp {
            // Last: from here on the calls the script may make are fixed.
            check(
                plan,
                super::seccomp::install(&filters.deny),
                b"install the seccomp filter",
            );
            check(
                plan,
                super::seccomp::install(&filters.clone3),
                b"install the clone3 filter",
            );
        }
        mark(plan, 11);
    }
}

/// A root server's worker: the run's own uid and gid, then a user namespace of its own.
unsafe fn switch_user(plan: &Plan) {
    // SAFETY: raw syscalls on the plan's ids.
    unsafe {
        check(
            plan,
            libc::setgroups(0, std::ptr::null()),
            b"drop supplementary groups",
        );
        check(
            plan,
            libc::setresgid(plan.gid, plan.gid, plan.gid),
            b"setgid to the sandbox group",
        );
        check(
            plan,
            libc::setresuid(plan.uid, plan.uid, plan.uid),
            b"setuid to the sandbox user",
        );
        // Changing credentials made us undumpable; our /proc files must be ours to
        // write the id maps.
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        check(
            plan,
            libc::unshare(libc::CLONE_NEWUSER),
            b"create the user namespace",
        );
        write_id_maps(plan);
    }
}

/// `struct landlock_path_beneath_attr` (packed in the kernel ABI).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The fresh `/proc` exists only inside the namespace, so its read rule is added here.
unsafe fn allow_proc(plan: &Plan) {
    // SAFETY: raw syscalls on NUL-terminated constants and a rule struct on the stack.
    unsafe {
        let fd = libc::open(c(PROC), libc::O_PATH | libc::O_CLOEXEC);
        check(plan, fd, b"open /proc for Landlock");
        // LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR
        let attr = PathBeneathAttr {
            allowed_access: (1 << 2) | (1 << 3),
            parent_fd: fd,
        };
        let r = libc::syscall(
            libc::SYS_landlock_add_rule,
            plan.ruleset_fd,
            1,
            &attr as *const PathBeneathAttr,
            0,
        ) as libc::c_int;
        check(plan, r, b"landlock_add_rule for /proc");
        libc::close(fd);
        // The fresh /tmp is the sandbox's own to use.
        let fd = libc::open(c(TMP), libc::O_PATH | libc::O_CLOEXEC);
        check(plan, fd, b"open /tmp for Landlock");
        let attr = PathBeneathAttr {
            allowed_access: plan.tmp_access,
            parent_fd: fd,
        };
        let r = libc::syscall(
            libc::SYS_landlock_add_rule,
            plan.ruleset_fd,
            1,
            &attr as *const PathBeneathAttr,
            0,
        ) as libc::c_int;
        check(plan, r, b"landlock_add_rule for /tmp");
        libc::close(fd);
    }
}

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` (mount_setattr(2)).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mkdir` that accepts an existing directory.
unsafe fn mkdir(plan: &Plan, path: *const libc::c_char, mode: libc::mode_t, step: &[u8]) {
    // SAFETY: `path` is a NUL-terminated string the caller owns.
    if unsafe { libc::mkdir(path, mode) } < 0 && errno() != libc::EEXIST {
        fail(plan, step);
    }
}

unsafe fn tmpfs(
    plan: &Plan,
    at: *const libc::c_char,
    flags: libc::c_ulong,
    options: *const libc::c_char,
    step: &[u8],
) {
    // SAFETY: NUL-terminated strings owned by the caller or static.
    check(
        plan,
        unsafe { libc::mount(c(TMPFS), at, c(TMPFS), flags, options.cast()) },
        step,
    );
}

/// Makes the mount at `path` read-only (its own flags only, not the mounts below it).
unsafe fn read_only(plan: &Plan, path: *const libc::c_char, extra: libc::c_ulong, step: &[u8]) {
    let flags = libc::MS_REMOUNT
        | libc::MS_BIND
        | libc::MS_RDONLY
        | libc::MS_NOSUID
        | libc::MS_NODEV
        | extra;
    // SAFETY: `path` is NUL-terminated.
    check(
        plan,
        unsafe {
            libc::mount(
                std::ptr::null(),
                path,
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        },
        step,
    );
}

/// Binds host path `b.src` at `b.dst`, with everything mounted below it, read-only
/// unless writable, never set-uid or device-bearing.
unsafe fn bind(plan: &Plan, b: &super::rootfs::Bind) {
    // SAFETY: raw syscalls on the bind's NUL-terminated strings from the plan.
    unsafe {
        if !b.nested {
            if b.file {
                let fd = libc::open(
                    b.dst.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                check(plan, fd, b"create a mount point for a file");
                libc::close(fd);
            } else {
                mkdir(plan, b.dst.as_ptr(), 0o755, b"create a mount point");
            }
        }
        let flags = (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
            | libc::AT_RECURSIVE as libc::c_uint;
        let tree =
            libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, b.src.as_ptr(), flags) as RawFd;
        check(plan, tree, b"open_tree of an exposed path");
        let r = set_tree_attrs(
            tree,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | if b.writable { 0 } else { MOUNT_ATTR_RDONLY },
        );
        check(plan, r, b"mount_setattr of an exposed path");
        let r = libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            b.dst.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        ) as libc::c_int;
        check(plan, r, b"move_mount of an exposed path");
        libc::close(tree);
    }
}

/// In the intermediate: builds the minimal root. A scratch tmpfs (mounted on `/tmp`,
/// which only hides it here) becomes the root with the host's at `/oldroot`, and the
/// new root is laid out at `/newroot`; init mounts `/proc` there and pivots in.
unsafe fn build_root(plan: &Plan) {
    let root = &plan.root;
    // SAFETY: raw mount syscalls on NUL-terminated constants and plan strings.
    unsafe {
        tmpfs(
            plan,
            c(BASE),
            libc::MS_NOSUID | libc::MS_NODEV,
            c(TMPFS_OPTS),
            b"mount the scratch tmpfs",
        );
        check(plan, libc::chdir(c(BASE)), b"enter the scratch tmpfs");
        mkdir(plan, c(&NEW_ROOT[1..]), 0o755, b"mkdir newroot");
        mkdir(plan, c(&OLD_ROOT[1..]), 0o755, b"mkdir oldroot");
        tmpfs(
            plan,
            c(&NEW_ROOT[1..]),
            libc::MS_NOSUID | libc::MS_NODEV,
            c(ROOT_OPTS),
            b"mount the new root",
        );
        check(
            plan,
            libc::syscall(libc::SYS_pivot_root, c(DOT), c(&OLD_ROOT[1..])) as libc::c_int,
            b"pivot_root to the scratch tmpfs",
        );
        check(plan, libc::chdir(c(SLASH)), b"chdir /");

        mkdir(plan, c(NEW_TMP), 0o1777, b"mkdir /tmp");
        tmpfs(
            plan,
            c(NEW_TMP),
            libc::MS_NOSUID | libc::MS_NODEV,
            root.tmp_options.as_ptr(),
            b"mount /tmp",
        );
        for s in &root.skeletons {
            mkdir(plan, s.as_ptr(), 0o755, b"mkdir a skeleton below /tmp");
            tmpfs(
                plan,
                s.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c(TMPFS_OPTS),
                b"mount a skeleton below /tmp",
            );
        }
        mkdir(plan, c(NEW_DEV), 0o755, b"mkdir /dev");
        tmpfs(
            plan,
            c(NEW_DEV),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c(TMPFS_OPTS),
            b"mount /dev",
        );
        for (host, node) in DEVICES {
            let fd = libc::open(
                c(node),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            check(plan, fd, b"create a device mount point");
            libc::close(fd);
            check(
                plan,
                libc::mount(
                    c(host),
                    c(node),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ),
                b"bind a device node",
            );
        }
        for (target, link) in DEV_LINKS {
            check(plan, libc::symlink(c(target), c(link)), b"symlink in /dev");
        }
        mkdir(plan, c(NEW_PROC), 0o555, b"mkdir /proc");
        for d in &root.dirs {
            mkdir(plan, d.as_ptr(), 0o755, b"mkdir on the new root");
        }
        for (target, link) in &root.symlinks {
            if libc::symlink(target.as_ptr(), link.as_ptr()) < 0 && errno() != libc::EEXIST {
                fail(plan, b"symlink on the new root");
            }
        }
        for b in &root.binds {
            bind(plan, b);
        }
        for s in &root.skeletons {
            read_only(plan, s.as_ptr(), 0, b"make a skeleton read-only");
        }
        read_only(plan, c(NEW_DEV), libc::MS_NOEXEC, b"make /dev read-only");
        read_only(plan, c(NEW_ROOT), 0, b"make the new root read-only");
    }
}

/// In init: mounts the fresh `/proc` (only the sandbox's processes, and of those only
/// what the reader may ptrace), lets go of the host's root and pivots into the new one.
unsafe fn enter_root(plan: &Plan) {
    // SAFETY: raw mount syscalls on NUL-terminated constants.
    unsafe {
        check(
            plan,
            libc::mount(
                c(PROC_FS),
                c(NEW_PROC),
                c(PROC_FS),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c(PROC_OPTS).cast(),
            ),
            b"mount /proc",
        );
        check(
            plan,
            libc::umount2(c(OLD_ROOT), libc::MNT_DETACH),
            b"detach the host's root",
        );
        check(plan, libc::chdir(c(NEW_ROOT)), b"enter the new root");
        check(
            plan,
            libc::syscall(libc::SYS_pivot_root, c(DOT), c(DOT)) as libc::c_int,
            b"pivot_root to the new root",
        );
        check(
            plan,
            libc::umount2(c(DOT), libc::MNT_DETACH),
            b"detach the scratch root",
        );
        check(plan, libc::chdir(c(SLASH)), b"chdir / in the new root");
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

/// `CString` from a path, for the plan.
/// `mount_setattr` on a detached tree (and everything below it): sets `set`, clears
/// nothing. Raw syscall only: callable between fork and exec.
fn set_tree_attrs(tree: libc::c_int, set: u64) -> libc::c_int {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` lives across the call and its size is passed; `tree` is a descriptor
    // from `open_tree`, and an empty path with AT_EMPTY_PATH names it.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) as libc::c_int
    }
}

pub(crate) fn cpath(p: &std::path::Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL bytes")
}

/// Shows host directory `dir` inside a running sandbox at the same path: a spare's
/// run directory, once the spare has been given its run (root server only: it needs
/// CAP_SYS_ADMIN over the host's mounts for `open_tree`). A forked helper enters the
/// sandbox's mount namespace, makes the mount point on the (briefly writable) root and
/// moves a clone of `dir` there. Blocking: call it off the async executor.
pub(crate) fn inject(sandbox_pid: u32, dir: &std::path::Path) -> std::io::Result<()> {
    let err = std::io::Error::last_os_error;
    let ns = CString::new(format!("/proc/{sandbox_pid}/ns/mnt")).expect("no NUL");
    let target = cpath(dir);
    // SAFETY: plain syscalls on descriptors and strings owned here; the forked helper
    // only makes raw syscalls on data prepared before the fork, then `_exit`s.
    unsafe {
        let ns_fd = libc::open(ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if ns_fd < 0 {
            return Err(err());
        }
        let flags = (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
            | libc::AT_RECURSIVE as libc::c_uint;
        let tree =
            libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, target.as_ptr(), flags) as RawFd;
        if tree < 0 {
            let e = err();
            libc::close(ns_fd);
            return Err(e);
        }
        let r = set_tree_attrs(tree, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        let pid = if r < 0 { -1 } else { libc::fork() };
        if pid == 0 {
            let step = |ok: bool, code: i32| {
                if !ok {
                    libc::_exit(code);
                }
            };
            step(libc::setns(ns_fd, libc::CLONE_NEWNS) == 0, 1);
            let rw = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NODEV;
            step(
                libc::mount(
                    std::ptr::null(),
                    c(SLASH),
                    std::ptr::null(),
                    rw,
                    std::ptr::null(),
                ) == 0,
                2,
            );
            let made = libc::mkdir(target.as_ptr(), 0o700) == 0 || errno() == libc::EEXIST;
            let ro = libc::mount(
                std::ptr::null(),
                c(SLASH),
                std::ptr::null(),
                rw | libc::MS_RDONLY,
                std::ptr::null(),
            ) == 0;
            step(made, 3);
            step(ro, 4);
            let r = libc::syscall(
                libc::SYS_move_mount,
                tree,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            );
            step(r == 0, 5);
            libc::_exit(0);
        }
        let fork_err = err();
        libc::close(tree);
        libc::close(ns_fd);
        if pid < 0 {
            return Err(fork_err);
        }
        let mut st = 0;
        while libc::waitpid(pid, &mut st, 0) < 0 {
            if errno() != libc::EINTR {
                return Err(err());
            }
        }
        if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
            Ok(())
        } else {
            let step = [
                "",
                "setns",
                "remount the root writable",
                "mkdir the mount point",
                "remount the root read-only",
                "move_mount",
            ];
            let code = if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st) as usize
            } else {
                0
            };
            Err(std::io::Error::other(format!(
                "showing the run directory in the spare failed at {}",
                step.get(code).unwrap_or(&"a signal")
            )))
        }
    }
}
