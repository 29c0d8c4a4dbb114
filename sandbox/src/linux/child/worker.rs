//! The worker (PID 2), last before exec: the unprivileged uid, a private keyring,
//! rlimits, Landlock and seccomp. Raw syscalls only, as in [`super`].

use super::{PROC, Plan, SETUP_FAILED, TMP, c, check, close_except, mark, write_id_maps};

/// In the worker (PID 2): the unprivileged uid, a private keyring, rlimits, Landlock
/// and, last, seccomp. Then std (or the zygote) execs the program.
pub(super) unsafe fn restrict_worker(plan: &Plan) {
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
                crate::linux::seccomp::install(&filters.deny),
                b"install the seccomp filter",
            );
            check(
                plan,
                crate::linux::seccomp::install(&filters.clone3),
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
