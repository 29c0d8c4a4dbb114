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
pub const SETUP_FAILED: i32 = 125;

/// The uid and gid the script has inside its user namespace.
pub const INNER_ID: u32 = 1000;

/// A directory that the unprivileged uid cannot traverse (e.g. `/root`, mode 0700),
/// covered by an empty tmpfs into which only the needed paths are moved.
pub struct Cover {
    pub path: CString,
    /// Bind this host directory over `path` instead of an empty tmpfs (the private `/tmp`).
    pub bind_from: Option<CString>,
    /// Directories to create on the tmpfs, parents first.
    pub dirs: Vec<CString>,
    /// Empty files to create as mount points for exposed files.
    pub files: Vec<CString>,
    /// Paths under `path` to show again (the same path outside and inside).
    pub exposes: Vec<CString>,
}

pub struct Plan {
    /// The run's `cgroup.procs` files: the intermediate writes itself into each before
    /// anything else, so every process of the sandbox is counted by the run's cgroup.
    pub cgroup_procs: Vec<CString>,
    /// The server runs as root: switch to `uid`/`gid` in the worker.
    pub switch_user: bool,
    pub uid: u32,
    pub gid: u32,
    /// `1000 <uid> 1`, `1000 <gid> 1`.
    pub uid_map: CString,
    pub gid_map: CString,
    pub covers: Vec<Cover>,
    /// (resource, soft, hard)
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    /// The Landlock ruleset built by the parent, or -1.
    pub ruleset_fd: RawFd,
    pub report_w: RawFd,
    /// The server's pid: the intermediate dies with it (no run outlives the server).
    pub server_pid: libc::pid_t,
    /// Init writes the script's raw wait status here the moment it exits, so the server
    /// need not wait for the namespaces to be torn down.
    pub status_w: RawFd,
}

const SLASH: &[u8] = b"/\0";
const PROC: &[u8] = b"/proc\0";
const PROC_FS: &[u8] = b"proc\0";
const TMPFS: &[u8] = b"tmpfs\0";
const TMPFS_OPTS: &[u8] = b"mode=0755,size=64k\0";
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
fn fail(plan: &Plan, step: &[u8]) -> ! {
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
fn close_except(keep: &[RawFd]) {
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
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = fd + 1;
    }
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0) };
}

fn write_id_maps(plan: &Plan) {
    write_file(plan, SELF_UID_MAP, plan.uid_map.as_bytes(), b"write uid_map");
    write_file(plan, SELF_SETGROUPS, DENY, b"write setgroups");
    write_file(plan, SELF_GID_MAP, plan.gid_map.as_bytes(), b"write gid_map");
}

/// The `pre_exec` hook. Returns only in the worker, which std then execs.
///
/// # Safety
/// Must run in the child between `fork` and `exec`, with `plan` prepared before the fork.
pub unsafe fn enter(plan: &Plan) -> std::io::Result<()> {
    unsafe {
        // --- intermediate ---
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != plan.server_pid {
            libc::_exit(SETUP_FAILED);
        }
        for procs in &plan.cgroup_procs {
            // "0": the writing process itself.
            write_file(plan, procs.as_bytes_with_nul(), b"0", b"join the run's cgroup");
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if !plan.switch_user {
            // Not root: a user namespace is what makes the others possible.
            flags |= libc::CLONE_NEWUSER;
        }
        check(plan, libc::unshare(flags), b"create namespaces (unshare)");
        if !plan.switch_user {
            write_id_maps(plan);
        }
        check(
            plan,
            libc::mount(std::ptr::null(), c(SLASH), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()),
            b"make mounts private",
        );
        // Detach copies of the paths to expose before covering their parents.
        let mut trees = [-1 as RawFd; 64];
        let mut t = 0;
        for cover in &plan.covers {
            for e in &cover.exposes {
                if t < trees.len() {
                    let fd = libc::syscall(
                        libc::SYS_open_tree,
                        libc::AT_FDCWD,
                        e.as_ptr(),
                        (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
                    ) as RawFd;
                    check(plan, fd, b"open_tree of an interpreter path");
                    trees[t] = fd;
                    t += 1;
                }
            }
        }
        let mut t = 0;
        for cover in &plan.covers {
            match &cover.bind_from {
                Some(src) => check(
                    plan,
                    libc::mount(src.as_ptr(), cover.path.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null()),
                    b"bind the private /tmp",
                ),
                None => check(
                    plan,
                    libc::mount(c(TMPFS), cover.path.as_ptr(), c(TMPFS), libc::MS_NOSUID | libc::MS_NODEV, c(TMPFS_OPTS).cast()),
                    b"cover an unreadable directory",
                ),
            }
            for d in &cover.dirs {
                check(plan, libc::mkdir(d.as_ptr(), 0o755), b"mkdir on the cover");
            }
            for f in &cover.files {
                let fd = libc::open(f.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                check(plan, fd, b"create a mount point on the cover");
                libc::close(fd);
            }
            for e in &cover.exposes {
                if t < trees.len() {
                    let r = libc::syscall(
                        libc::SYS_move_mount,
                        trees[t],
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        e.as_ptr(),
                        libc::MOVE_MOUNT_F_EMPTY_PATH,
                    ) as libc::c_int;
                    check(plan, r, b"move_mount of an interpreter path");
                    libc::close(trees[t]);
                    t += 1;
                }
            }
        }
        libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len());

        let mut status_pipe = [0 as RawFd; 2];
        check(plan, libc::pipe2(status_pipe.as_mut_ptr(), libc::O_CLOEXEC), b"status pipe");
        // Init's parent is outside its pid namespace (getppid() says 0), so it learns
        // whether the intermediate still lives from this pipe's write end.
        let mut lifeline = [0 as RawFd; 2];
        check(plan, libc::pipe2(lifeline.as_mut_ptr(), libc::O_CLOEXEC), b"lifeline pipe");
        let init = libc::fork();
        check(plan, init, b"fork init");
        if init > 0 {
            // The intermediate waits for init and passes the script's status on. It lets
            // go of the output pipes, so their end means the sandbox's processes are gone.
            close_except(&[status_pipe[0], lifeline[1]]);
            for fd in 0..3 {
                libc::close(fd);
            }
            let mut st = 0;
            while libc::waitpid(init, &mut st, 0) < 0 && errno() == libc::EINTR {}
            let mut raw = [0u8; 4];
            let got = libc::read(status_pipe[0], raw.as_mut_ptr().cast(), 4);
            let st = if got == 4 { i32::from_ne_bytes(raw) } else { st };
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
            libc::_exit(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 1 });
        }

        // --- init (PID 1) ---
        libc::close(lifeline[1]);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let mut pfd = libc::pollfd { fd: lifeline[0], events: 0, revents: 0 };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            // The intermediate died before PDEATHSIG was armed.
            libc::_exit(SETUP_FAILED);
        }
        libc::close(lifeline[0]);
        libc::close(status_pipe[0]);
        check(
            plan,
            libc::mount(c(PROC_FS), c(PROC), c(PROC_FS), libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, std::ptr::null()),
            b"mount /proc",
        );
        let worker = libc::fork();
        check(plan, worker, b"fork the worker");
        if worker > 0 {
            close_except(&[status_pipe[1], plan.report_w, plan.status_w]);
            for fd in 0..3 {
                libc::close(fd);
            }
            loop {
                let mut st = 0;
                let pid = libc::waitpid(-1, &mut st, 0);
                if pid == worker {
                    let raw = st.to_ne_bytes();
                    libc::write(plan.status_w, raw.as_ptr().cast(), 4);
                    libc::write(status_pipe[1], raw.as_ptr().cast(), 4);
                    // Exiting ends the pid namespace: the kernel kills what is left.
                    libc::_exit(0);
                }
                if pid < 0 && errno() == libc::ECHILD {
                    libc::_exit(SETUP_FAILED);
                }
            }
        }

        // --- worker (PID 2) ---
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != 1 {
            libc::_exit(SETUP_FAILED);
        }
        // Nothing the server had open reaches the script (stdio stays).
        close_except(&[plan.ruleset_fd, plan.report_w]);
        if plan.switch_user {
            check(plan, libc::setgroups(0, std::ptr::null()), b"drop supplementary groups");
            check(plan, libc::setresgid(plan.gid, plan.gid, plan.gid), b"setgid to the sandbox group");
            check(plan, libc::setresuid(plan.uid, plan.uid, plan.uid), b"setuid to the sandbox user");
            // Changing credentials made us undumpable; our /proc files must be ours to
            // write the id maps.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            check(plan, libc::unshare(libc::CLONE_NEWUSER), b"create the user namespace");
            write_id_maps(plan);
        }
        for &(res, soft, hard) in &plan.rlimits {
            let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            check(plan, libc::setrlimit(res, &lim), b"setrlimit");
        }
        check(plan, libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), b"set no_new_privs");
        if plan.ruleset_fd >= 0 {
            allow_proc(plan);
            let r = libc::syscall(libc::SYS_landlock_restrict_self, plan.ruleset_fd, 0) as libc::c_int;
            check(plan, r, b"landlock_restrict_self");
            libc::close(plan.ruleset_fd);
        }
        Ok(())
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
    unsafe {
        let fd = libc::open(c(PROC), libc::O_PATH | libc::O_CLOEXEC);
        check(plan, fd, b"open /proc for Landlock");
        // LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR
        let attr = PathBeneathAttr { allowed_access: (1 << 2) | (1 << 3), parent_fd: fd };
        let r = libc::syscall(libc::SYS_landlock_add_rule, plan.ruleset_fd, 1, &attr as *const PathBeneathAttr, 0) as libc::c_int;
        check(plan, r, b"landlock_add_rule for /proc");
        libc::close(fd);
    }
}

/// `CString` from a path, for the plan.
pub fn cpath(p: &std::path::Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL bytes")
}
