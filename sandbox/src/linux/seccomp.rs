//! The seccomp-bpf filter the worker installs last, just before `exec`: a deny list
//! modelled on Docker's default profile (the calls that profile refuses to a container
//! without extra capabilities). Denied calls fail with `EPERM`; `clone3` fails with
//! `ENOSYS`, whose flags live in a struct a filter cannot read, so that libc falls back
//! to `clone`, whose namespace flags are filtered.
//!
//! The programs are compiled here, in the parent, by `seccompiler`; the child only
//! passes them to the kernel (no allocation after `fork`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What the run record says of the filter.
pub(crate) const PROFILE: &str = "docker-default-like";

/// Calls refused outright: the key management calls (the host's keyrings), kernel
/// attack surface a script never needs (io_uring, userfaultfd, bpf, perf), everything
/// that changes mounts or namespaces, tracing other processes, and system administration.
const DENIED: &[(&str, libc::c_long)] = &[
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("setns", libc::SYS_setns),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("fsconfig", libc::SYS_fsconfig),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("chroot", libc::SYS_chroot),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("vhangup", libc::SYS_vhangup),
    ("syslog", libc::SYS_syslog),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
    ("mbind", libc::SYS_mbind),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("move_pages", libc::SYS_move_pages),
];

/// Calls only x86_64 has: port I/O and obsolete interfaces.
#[cfg(target_arch = "x86_64")]
const X86_64_ONLY: &[(&str, libc::c_long)] = &[
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("uselib", libc::SYS_uselib),
    ("ustat", libc::SYS_ustat),
    ("sysfs", libc::SYS_sysfs),
    ("_sysctl", libc::SYS__sysctl),
    ("nfsservctl", libc::SYS_nfsservctl),
];
#[cfg(not(target_arch = "x86_64"))]
const X86_64_ONLY: &[(&str, libc::c_long)] = &[];

/// Namespace flags refused to `clone` and `unshare` (a nested user namespace would give
/// the script CAP_NET_ADMIN over a network stack of its own: nf_tables and the like).
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// `CLONE_NEWTIME`: for `unshare` only (in `clone` the bit is part of the exit signal).
const CLONE_NEWTIME: libc::c_int = 0x80;

/// `personality` values Docker's profile allows: Linux, its 32-bit variant, the
/// `UNAME26` ones and the query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The compiled filters: the deny list (EPERM) and `clone3` (ENOSYS).
pub(crate) struct Filters {
    pub(crate) deny: BpfProgram,
    pub(crate) clone3: BpfProgram,
    /// How many calls the filters refuse (whole or with some arguments).
    pub(crate) denied: usize,
}

impl Filters {
    /// What `protections` says.
    pub(crate) fn describe(&self) -> String {
        format!("{PROFILE}, {} syscalls denied", self.denied)
    }
}

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        format!(
            "no seccomp filter for the {} architecture",
            std::env::consts::ARCH
        )
    })
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, String> {
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

/// One rule per flag: the call matches when any of them is set in argument `arg`.
fn any_flag(arg: u8, flags: impl Iterator<Item = libc::c_int>) -> Result<Vec<SeccompRule>, String> {
    flags
        .map(|f| rule(vec![cond(arg, SeccompCmpOp::MaskedEq(f as u64), f as u64)?]))
        .collect()
}

/// The filters, compiled once per process.
pub(crate) fn compiled() -> Result<Arc<Filters>, String> {
    static FILTERS: OnceLock<Result<Arc<Filters>, String>> = OnceLock::new();
    FILTERS.get_or_init(|| compile().map(Arc::new)).clone()
}

/// Compiles both filters for this machine's architecture.
pub(crate) fn compile() -> Result<Filters, String> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .chain(X86_64_ONLY)
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    rules.insert(
        libc::SYS_clone,
        any_flag(0, NAMESPACE_FLAGS.iter().copied())?,
    );
    rules.insert(
        libc::SYS_unshare,
        any_flag(0, NAMESPACE_FLAGS.iter().copied().chain([CLONE_NEWTIME]))?,
    );
    let other_personality = PERSONALITIES
        .iter()
        .map(|&p| cond(0, SeccompCmpOp::Ne, p))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_personality, vec![rule(other_personality)?]);
    // Netlink sockets other than NETLINK_ROUTE (which getaddrinfo uses): netfilter,
    // audit, uevents and the rest.
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![
            cond(0, SeccompCmpOp::Eq, libc::AF_NETLINK as u64)?,
            cond(2, SeccompCmpOp::Ne, libc::NETLINK_ROUTE as u64)?,
        ])?],
    );
    let denied = rules.len() + 1;
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| e.to_string())?;
    let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into();
    let clone3 = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| e.to_string())?;
    Ok(Filters {
        deny,
        clone3,
        denied,
    })
}

/// Installs `program` on the calling thread (no_new_privs must be set). Raw syscall
/// only: this runs between `fork` and `exec`.
///
/// # Safety
/// `program` must be a valid BPF program that outlives the call.
pub(crate) unsafe fn install(program: &BpfProgram) -> libc::c_int {
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `program`, whose `sock_filter` has the kernel's layout
    // (seccompiler defines it `repr(C)` as the kernel does); the kernel copies it.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        ) as libc::c_int
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filters_compile_for_this_machine() {
        let f = compile().unwrap();
        assert!(!f.deny.is_empty() && !f.clone3.is_empty());
        assert!(f.denied > 60, "{}", f.denied);
        assert_eq!(
            f.describe(),
            format!("docker-default-like, {} syscalls denied", f.denied)
        );
    }

    #[test]
    fn the_list_names_each_call_once() {
        let mut names: Vec<_> = DENIED.iter().chain(X86_64_ONLY).map(|(n, _)| *n).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
    }
}
