//! What a launch grants the process: the paths it may read (its program, its
//! interpreter's installation, the system's libraries, a few devices), its rlimits, and
//! its whole environment.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use super::Launch;
use crate::linux_config::interpreter_paths;

/// What a sandbox may read, besides what every sandbox may.
pub(super) struct Readable {
    pub(super) read: BTreeSet<PathBuf>,
    pub(super) system: Vec<PathBuf>,
}

/// Libraries and the few files of `/etc` every program needs.
const SYSTEM: [&str; 8] = [
    "/usr/lib",
    "/lib",
    "/lib64",
    "/usr/lib64",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/etc/os-release",
];
pub(super) const DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/urandom",
    "/dev/random",
];

/// What the process may read: the program, its interpreter's installation, the
/// launch's extra paths, and the system's libraries.
pub(super) fn access(launch: &Launch<'_>) -> Readable {
    let mut read: BTreeSet<PathBuf> = BTreeSet::new();
    read.insert(launch.program.to_path_buf());
    if let Some(interp) = launch.interpreter {
        read.extend(interpreter_paths(interp));
    }
    read.extend(launch.read.iter().cloned());
    let system = SYSTEM
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    Readable { read, system }
}

/// (resource, soft, hard) for the worker.
pub(super) fn rlimits(
    launch: &Launch<'_>,
    pids_cgroup: bool,
) -> Vec<(libc::__rlimit_resource_t, u64, u64)> {
    let limits = launch.limits;
    let mib = |m: u64| m.saturating_mul(1024 * 1024);
    let cpu = limits.cpu_seconds + launch.extra_cpu;
    let address_space = mib(launch.address_space_mib.unwrap_or(limits.memory_mib));
    let mut rlimits = vec![
        (libc::RLIMIT_CPU, cpu, cpu + 1),
        // A second layer under the memory cgroup: one huge allocation fails with a
        // MemoryError the script can see, not a kill.
        (libc::RLIMIT_AS, address_space, address_space),
        (
            libc::RLIMIT_FSIZE,
            mib(limits.file_size_mib),
            mib(limits.file_size_mib),
        ),
        (libc::RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (libc::RLIMIT_CORE, 0, 0),
    ];
    if !pids_cgroup {
        // No pids cgroup: the per-process-tree rlimit is what is left.
        rlimits.push((libc::RLIMIT_NPROC, limits.processes, limits.processes));
    }
    rlimits
}

/// The program's whole environment: nothing of the server's reaches it, API keys above
/// all.
pub(super) fn environment(launch: &Launch<'_>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("PYTHONUNBUFFERED", "1"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONIOENCODING", "utf-8"),
        ("TMPDIR", "/tmp"),
        // Libraries' caches go to the private /tmp, not among the artifacts.
        ("XDG_CACHE_HOME", "/tmp/.cache"),
    ]
    .iter()
    .map(|(k, v)| (OsString::from(k), OsString::from(v)))
    .collect();
    env.push(("HOME".into(), launch.home.as_os_str().to_owned()));
    for (k, v) in &launch.env {
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env
}
