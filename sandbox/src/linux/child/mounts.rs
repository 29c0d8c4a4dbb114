//! The mounts of the child's setup: the minimal root built in the intermediate
//! ([`build_root`]), the pivot into it in init ([`enter_root`]), and [`inject`], which
//! shows a run directory inside a running spare. Raw syscalls only, as in [`super`].

use std::ffi::CString;
use std::os::fd::RawFd;

use super::{
    BASE, DEV_LINKS, DEVICES, DOT, NEW_DEV, NEW_PROC, NEW_ROOT, NEW_TMP, OLD_ROOT, PROC_FS,
    PROC_OPTS, Plan, ROOT_OPTS, SLASH, TMPFS, TMPFS_OPTS, c, check, errno, fail,
};

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
unsafe fn bind(plan: &Plan, b: &crate::linux::rootfs::Bind) {
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
pub(super) unsafe fn build_root(plan: &Plan) {
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
pub(super) unsafe fn enter_root(plan: &Plan) {
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
