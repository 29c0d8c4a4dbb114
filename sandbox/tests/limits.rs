//! The `linux` backend's limits as a regression suite: each case is an attack a hostile
//! script makes on the machine's memory, processes or disk, and the limit that must end
//! it. The cases follow python-discord's snekbox nsjail tests (timeouts, memory cgroup
//! kill, pids limit, read-only file system outside the run directory, full tmpfs,
//! sparse-file and symlink bombs, shared memory, segfault), written as our own scripts.

// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]
#![cfg(target_os = "linux")]

#[path = "limits/disk.rs"]
mod disk;
#[path = "support.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scriptorium_sandbox::linux::LinuxConfig;
use scriptorium_sandbox::{Backend, Collect, Limit, Limits, Outcome, Registry, RunReport, Stream};
use support::Sandbox;
use tokio_util::sync::CancellationToken;

fn python() -> scriptorium_sandbox::Interpreter {
    Registry::resolve(Default::default(), Path::new("."))
        .native_default()
        .expect("a python3")
        .clone()
}

fn limits() -> Limits {
    Limits {
        wall_seconds: 30.0,
        cpu_seconds: 30,
        memory_mib: 512,
        processes: 32,
        output_bytes: 1 << 20,
        ..Limits::default()
    }
}

async fn run(sb: &Sandbox, script: &str, limits: Limits) -> (RunReport, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let backend = support::linux(LinuxConfig::default());
    let report = backend
        .run(
            sb.spec(&python(), script, "", limits),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    (report, sink)
}

fn limit_of(report: &RunReport) -> Option<Limit> {
    match report.outcome {
        Outcome::LimitExceeded { limit, .. } => Some(limit),
        _ => None,
    }
}

/// Whether this machine gives a root server memory and pids cgroups (as this one does:
/// v1 hierarchies writable as root, or v2 with both controllers). Elsewhere the run
/// must say they were missing, and these tests check that instead.
fn cgroups_expected() -> bool {
    // SAFETY: a getter without side effects.
    (unsafe { libc::geteuid() }) == 0
}

fn text(sink: &Collect) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        sink.text(Stream::Stdout),
        sink.text(Stream::Stderr)
    )
}

// ---- memory ----

/// Finding 5: RLIMIT_AS is per process, so five processes each well under the limit held
/// three times the limit between them. The run's memory cgroup counts them together.
#[tokio::test]
async fn five_processes_of_600_mib_under_a_1024_mib_limit_are_one_memory_limit() {
    let sb = Sandbox::new();
    let script = r#"
import os, sys, time
children = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        block = bytearray(600 * 1024 * 1024)
        for j in range(0, len(block), 4096):
            block[j] = 1
        print("held", i, flush=True)
        time.sleep(4)
        os._exit(0)
    children.append(pid)
failed = 0
for pid in children:
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed += 1
print("failed children:", failed, flush=True)
sys.exit(1 if failed else 0)
"#;
    let l = Limits {
        memory_mib: 1024,
        ..limits()
    };
    let (report, out) = run(&sb, script, l.clone()).await;
    let held = out.text(Stream::Stdout).matches("held").count();
    assert!(
        held <= 1,
        "{held} processes held 600 MiB each under a 1024 MiB limit\n{}",
        text(&out)
    );
    assert_eq!(
        limit_of(&report),
        Some(Limit::Memory),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
    assert!(
        report.outcome.message().contains("1024 MiB"),
        "{}",
        report.outcome.message()
    );
    if cgroups_expected() {
        let cg = report
            .protections
            .cgroup
            .as_ref()
            .expect("a root server puts each run in a cgroup");
        assert!(cg.memory && cg.pids, "{cg:?}");
    }
}

/// Shared memory is memory: 1 GiB written into memfds (no mapping, so RLIMIT_AS does not
/// see it; each below the file-size limit) under a 512 MiB limit.
#[tokio::test]
async fn shared_memory_in_memfds_counts_against_the_memory_limit() {
    let sb = Sandbox::new();
    let script = r#"
import os
chunk = b"x" * (1024 * 1024)
fds = []
for i in range(8):
    fd = os.memfd_create(f"hoard{i}")
    fds.append(fd)
    for _ in range(128):
        os.write(fd, chunk)
    print("memfd", i, "full", flush=True)
print("hoarded 1 GiB", flush=True)
"#;
    let (report, out) = run(&sb, script, limits()).await;
    assert!(
        !out.text(Stream::Stdout).contains("hoarded"),
        "{}",
        text(&out)
    );
    if cgroups_expected() {
        assert_eq!(
            limit_of(&report),
            Some(Limit::Memory),
            "{:?}\n{}",
            report.outcome,
            text(&out)
        );
    }
}

/// A single big allocation stays a friendly MemoryError (RLIMIT_AS, the second layer).
#[tokio::test]
async fn one_big_allocation_is_a_memory_limit_with_the_limit_named() {
    let sb = Sandbox::new();
    let l = Limits {
        memory_mib: 256,
        ..limits()
    };
    let (report, out) = run(&sb, "x = bytearray(3 * 1024**3)\nprint('allocated')\n", l).await;
    assert_eq!(
        limit_of(&report),
        Some(Limit::Memory),
        "{:?}",
        report.outcome
    );
    assert!(!out.text(Stream::Stdout).contains("allocated"));
}

// ---- processes ----

/// A fork bomb is held by the run's pids cgroup (RLIMIT_NPROC applies only where there
/// is none): the script never has more than its 16 processes, and the run names the limit.
#[tokio::test]
async fn a_fork_bomb_is_held_by_the_pids_cgroup() {
    let sb = Sandbox::new();
    let script = r#"
import os, time
n = 0
try:
    while True:
        pid = os.fork()
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        n += 1
except OSError:
    print("children", n, flush=True)
    raise
"#;
    let l = Limits {
        processes: 16,
        wall_seconds: 15.0,
        ..limits()
    };
    let started = Instant::now();
    let (report, out) = run(&sb, script, l).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let stdout = out.text(Stream::Stdout);
    let children: u32 = stdout
        .trim()
        .strip_prefix("children ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", text(&out)));
    assert!(
        children < 16,
        "{children} children under a limit of 16 processes"
    );
    assert_eq!(
        limit_of(&report),
        Some(Limit::Processes),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
    if cgroups_expected() {
        let cg = report.protections.cgroup.as_ref().expect("a run cgroup");
        assert!(cg.pids, "{cg:?}");
    }
}

// ---- file system ----

/// Outside the run directory and /tmp, the file system is read-only: nothing the
/// interpreter reads can be changed, and no other place takes a file. (`/dev/shm` is a
/// link to the run's own bounded `/tmp` in the minimal root, so it is not listed here.)
#[tokio::test]
async fn the_file_system_outside_the_run_directory_is_read_only() {
    let sb = Sandbox::new();
    let script = r#"
import os, sys
targets = [sys.executable, os.path.dirname(os.__file__) + "/os.py", "/usr/lib/new-file", "/etc/passwd", "/var/tmp/escape"]
for t in targets:
    try:
        open(t, "a").close()
        print("WROTE", t)
    except OSError as e:
        print("denied", type(e).__name__)
open("ok.txt", "w").write("fine")
print("run dir writable")
"#;
    let (report, out) = run(&sb, script, limits()).await;
    assert!(report.outcome.success(), "{}", text(&out));
    let stdout = out.text(Stream::Stdout);
    assert!(!stdout.contains("WROTE"), "{stdout}");
    assert_eq!(stdout.matches("denied").count(), 5, "{stdout}");
    assert!(stdout.contains("run dir writable"));
}

// ---- crashes and time ----

/// A segfault is reported as the signal, not as a limit or success.
#[tokio::test]
async fn a_segfault_is_reported_as_signal_11() {
    let sb = Sandbox::new();
    let (report, out) = run(&sb, "import ctypes\nctypes.string_at(0)\n", limits()).await;
    assert_eq!(
        report.outcome,
        Outcome::Signaled {
            signal: libc::SIGSEGV
        },
        "{}",
        text(&out)
    );
}

/// A script that sleeps past the wall limit is stopped at it (snekbox's timeout case).
#[tokio::test]
async fn sleeping_past_the_wall_limit_is_a_wall_time_limit() {
    let sb = Sandbox::new();
    let started = Instant::now();
    let (report, _) = run(
        &sb,
        "import time\ntime.sleep(30)\n",
        Limits {
            wall_seconds: 1.0,
            ..limits()
        },
    )
    .await;
    assert_eq!(
        limit_of(&report),
        Some(Limit::WallTime),
        "{:?}",
        report.outcome
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// Without cgroups a run says so: `cgroup: null` and the reason in `missing`.
#[tokio::test]
async fn the_run_record_names_the_cgroup_that_applied() {
    let sb = Sandbox::new();
    let (report, out) = run(&sb, "print('hi')\n", limits()).await;
    assert!(report.outcome.success(), "{}", text(&out));
    match &report.protections.cgroup {
        Some(cg) => {
            assert!(cg.version == 1 || cg.version == 2, "{cg:?}");
            assert!(cg.memory && cg.pids, "{cg:?}");
            assert!(
                !report
                    .protections
                    .missing
                    .iter()
                    .any(|m| m.starts_with("cgroups"))
            );
        }
        None => assert!(
            report
                .protections
                .missing
                .iter()
                .any(|m| m.starts_with("cgroups: ")),
            "{:?}",
            report.protections
        ),
    }
    assert!(report.protections.disk_quota);
}

/// A script whose child is OOM-killed and that exits 0 anyway succeeds (the bound held,
/// the script went on), but its record still says what the cgroup did.
#[tokio::test]
async fn an_oom_kill_the_script_survives_is_on_the_record() {
    if !cgroups_expected() {
        return;
    }
    let sb = Sandbox::new();
    // Three children of 150 MiB each (each under RLIMIT_AS) in a 256 MiB cgroup: the
    // OOM killer ends at least one; the script ignores that and exits 0.
    let script = r#"
import os, time
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        block = bytearray(150 * 1024 * 1024)
        for j in range(0, len(block), 4096):
            block[j] = 1
        time.sleep(2)
        os._exit(0)
    kids.append(pid)
killed = sum(1 for pid in kids if os.waitpid(pid, 0)[1] != 0)
print("killed", killed, flush=True)
"#;
    let l = Limits {
        memory_mib: 256,
        ..limits()
    };
    let (report, out) = run(&sb, script, l).await;
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
    assert!(
        !out.text(Stream::Stdout).contains("killed 0"),
        "{}",
        text(&out)
    );
    let cgroup = report.protections.cgroup.clone().expect("a cgroup");
    assert!(cgroup.oom_kills >= 1, "{cgroup:?}");
}

/// Refused forks a script survives are on the record too.
#[tokio::test]
async fn refused_forks_the_script_survives_are_on_the_record() {
    if !cgroups_expected() {
        return;
    }
    let sb = Sandbox::new();
    let script = r#"
import os, time
kids = []
try:
    for _ in range(64):
        pid = os.fork()
        if pid == 0:
            time.sleep(2)
            os._exit(0)
        kids.append(pid)
except OSError:
    pass
for pid in kids:
    os.waitpid(pid, 0)
print("forked", len(kids), flush=True)
"#;
    let l = Limits {
        processes: 8,
        ..limits()
    };
    let (report, out) = run(&sb, script, l).await;
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
    let cgroup = report.protections.cgroup.clone().expect("a cgroup");
    assert!(cgroup.pids_refused >= 1, "{cgroup:?}");
}

// ---- CPU ----

/// RLIMIT_CPU is per process: three children spinning 2.5 s each stay under a 3 s limit
/// one by one (7.5 s together). The run's cgroup counts them together and the run ends
/// at its 3 s with `limit: "cpu_time"`; without a cpu cgroup the record says the limit
/// was per process.
#[tokio::test]
async fn three_children_spinning_share_one_cpu_budget() {
    let sb = Sandbox::new();
    let tight = Limits {
        cpu_seconds: 3,
        wall_seconds: 90.0,
        ..limits()
    };
    let script = r#"
import os, time
def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        spin(2.5)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
t = os.times()
print("children cpu", round(t.children_user + t.children_system, 1))
"#;
    let (report, out) = run(&sb, script, tight.clone()).await;
    let cpu = report.protections.cgroup.as_ref().is_some_and(|c| c.cpu);
    if cgroups_expected() {
        assert!(cpu, "{:?}", report.protections);
    }
    if cpu {
        assert_eq!(
            limit_of(&report),
            Some(Limit::CpuTime),
            "{:?}\n{}",
            report.outcome,
            text(&out)
        );
        assert!(!text(&out).contains("children cpu"), "{}", text(&out));
    } else {
        assert!(
            report
                .protections
                .missing
                .iter()
                .any(|m| m.contains("per process")),
            "{:?}",
            report.protections
        );
    }
}
