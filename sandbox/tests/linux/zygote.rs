//! The zygote that forks sandboxes: same protections, nothing of it reachable by a
//! script, restarted when it dies, and the record says which way a run was started.

use super::*;

/// Runs `script` with `backend`; it must exit 0. Its stdout and the record.
async fn run_with(backend: &LinuxBackend, script: &str) -> (RunReport, String) {
    let sb = Sandbox::new();
    let sink = Arc::new(Collect::default());
    let report = backend
        .run(
            sb.spec(&python(), script, "", limits()),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        sink.text(Stream::Stderr)
    );
    (report, sink.text(Stream::Stdout))
}

/// Lists the script's open descriptors and what they are.
const FDS: &str = "import os\nfor fd in sorted(os.listdir('/proc/self/fd'), key=int):\n    try:\n        print(fd, os.readlink('/proc/self/fd/' + fd))\n    except OSError as e:\n        print(fd, e.errno)\n";

#[tokio::test]
async fn a_zygote_run_says_so_and_holds_nothing_of_the_zygote() {
    let backend = support::linux(LinuxConfig::default());
    // A second sandbox alive at the same time: the zygote holds its pidfd and exit pipe.
    let sb = Sandbox::new();
    let other = backend.run(
        sb.spec(&python(), "import time\ntime.sleep(3)\n", "", limits()),
        Arc::new(Collect::default()),
        CancellationToken::new(),
    );
    let (other, (report, fds)) = tokio::join!(other, async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        run_with(&backend, FDS).await
    });
    assert!(other.unwrap().outcome.success());
    assert_eq!(report.protections.launcher.as_deref(), Some("zygote"));
    assert!(backend.zygote_pid().is_some());
    // stdin (/dev/null), the two output pipes, and the directory listdir holds.
    let lines: Vec<&str> = fds.lines().collect();
    assert_eq!(lines.len(), 4, "{fds}");
    assert!(lines[0].starts_with("0 /dev/null"), "{fds}");
    assert!(
        lines[1].starts_with("1 pipe:") && lines[2].starts_with("2 pipe:"),
        "{fds}"
    );
    assert!(!fds.contains("socket:") && !fds.contains("pidfd"), "{fds}");
    // The same protections as a direct start.
    let p = &report.protections;
    assert!(
        p.seccomp.is_some() && p.minimal_root && p.private_keyring,
        "{p:?}"
    );
    assert_eq!(
        p.namespaces,
        ["user", "mount", "pid", "net", "ipc", "uts", "cgroup"]
    );
}

#[tokio::test]
async fn a_killed_zygote_is_restarted_and_its_runs_are_as_contained() {
    let backend = support::linux(LinuxConfig::default());
    let (first, _) = run_with(&backend, "pass\n").await;
    assert_eq!(first.protections.launcher.as_deref(), Some("zygote"));
    let pid = backend.zygote_pid().expect("the zygote runs");
    // SAFETY: a signal to the zygote this test's backend started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, escaped, connected) = support::probe_containment(&backend, &python(), limits()).await;
    assert!(!escaped && !connected);
    let (report, _) = run_with(&backend, "pass\n").await;
    assert_eq!(report.protections.launcher.as_deref(), Some("zygote"));
    let again = backend.zygote_pid().expect("a new zygote runs");
    assert_ne!(again, pid);
}

#[tokio::test]
async fn without_a_working_zygote_the_server_forks_and_the_record_says_why() {
    let backend = LinuxBackend::with_zygote(LinuxConfig::default(), Path::new("/bin/true"));
    let (_, escaped, connected) = support::probe_containment(&backend, &python(), limits()).await;
    assert!(!escaped && !connected);
    let (report, _) = run_with(&backend, "pass\n").await;
    let launcher = report.protections.launcher.clone().unwrap_or_default();
    assert!(
        launcher.starts_with("direct (the zygote failed:")
            && launcher.contains("not a sandbox zygote"),
        "{launcher}"
    );
    // The protections do not depend on the launcher.
    let direct = LinuxBackend::new(LinuxConfig::default());
    let (plain, _) = run_with(&direct, "pass\n").await;
    assert_eq!(plain.protections.launcher.as_deref(), Some("direct"));
    let strip = |p: &scriptorium_sandbox::Protections| {
        let mut p = p.clone();
        p.launcher = None;
        p.uid = None;
        p.cgroup = None;
        format!("{p:?}")
    };
    assert_eq!(strip(&report.protections), strip(&plain.protections));
}

#[tokio::test]
async fn a_setup_failure_in_a_zygote_child_is_reported() {
    // A program that is not there inside the sandbox: exec fails in the worker, after
    // every protection is in place, and the run says so instead of hanging.
    let backend = support::linux(LinuxConfig::default());
    let sb = Sandbox::new();
    let mut interp = python();
    let fake = sb.dir.path().join("in/not-a-program");
    std::fs::write(&fake, "not an ELF").unwrap();
    interp.path = fake;
    let r = backend
        .run(
            sb.spec(&interp, "pass\n", "", limits()),
            Arc::new(Collect::default()),
            CancellationToken::new(),
        )
        .await;
    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("exec the program"), "{e}");
}

#[tokio::test]
async fn a_traced_run_marks_every_setup_phase_in_order_either_way() {
    for backend in [
        support::linux(LinuxConfig::default()),
        LinuxBackend::new(LinuxConfig::default()),
    ] {
        let sb = Sandbox::new();
        let (report, phases) = backend
            .run_traced(sb.spec(&python(), "pass\n", "", limits()))
            .await
            .unwrap();
        assert!(report.outcome.success(), "{:?}", report.outcome);
        let names: Vec<&str> = phases.iter().map(|(n, _)| *n).collect();
        // The server's preparation, the child's twelve phases, the program's run.
        assert_eq!(names.len(), 14, "{names:?}");
        assert!(names[0].starts_with("server"), "{names:?}");
        assert_eq!(names[1], "fork (intermediate runs)");
        assert_eq!(names[12], "seccomp");
        assert!(names[13].starts_with("exec"), "{names:?}");
        // Every protection of a plain run is in force in a traced one.
        let p = &report.protections;
        assert!(
            p.seccomp.is_some() && p.minimal_root && p.landlock_filesystem,
            "{p:?}"
        );
        let total: Duration = phases.iter().map(|(_, d)| *d).sum();
        assert!(
            total > Duration::ZERO && total < Duration::from_secs(20),
            "{phases:?}"
        );
    }
}

/// A hostile script that knows the zygote's host pid tries to signal it, open its
/// descriptors (its socket to the server), read its memory or environment, and use any
/// descriptor it might have inherited. None of it is there; the zygote still serves.
#[tokio::test]
async fn a_script_cannot_find_signal_or_use_the_zygote() {
    let backend = support::linux(LinuxConfig::default());
    let (first, _) = run_with(&backend, "pass\n").await;
    assert_eq!(first.protections.launcher.as_deref(), Some("zygote"));
    let pid = backend.zygote_pid().expect("the zygote runs");
    let script = format!(
        r#"
import os, signal, socket
pid = {pid}
def attempt(name, f):
    try:
        f()
        print(name, "REACHED")
    except OSError as e:
        print(name, "refused")
attempt("signal", lambda: os.kill(pid, 0))
attempt("kill", lambda: os.kill(pid, signal.SIGKILL))
for f in ["fd/0", "fd/3", "environ", "mem", "cmdline"]:
    attempt(f, lambda: open("/proc/%d/%s" % (pid, f), "rb").read(1))
attempt("root", lambda: os.listdir("/proc/%d/root/" % pid))
attempt("net/unix", lambda: open("/proc/net/unix").read())
# Every descriptor number a script could have inherited: none is a socket.
used = 0
for fd in range(3, 1024):
    try:
        os.fstat(fd)
        used += 1
        s = socket.socket(fileno=fd)
        s.send(b"{{}}")
        print("fd", fd, "REACHED")
    except OSError:
        pass
print("descriptors", used)
"#
    );
    let (_, out) = run_with(&backend, &script).await;
    assert!(!out.contains("REACHED"), "{out}");
    assert_eq!(out.matches("refused").count(), 9, "{out}");
    assert!(out.contains("descriptors 0"), "{out}");
    // The zygote lives on and serves the next run.
    let (next, _) = run_with(&backend, "pass\n").await;
    assert_eq!(next.protections.launcher.as_deref(), Some("zygote"));
    assert_eq!(backend.zygote_pid(), Some(pid));
}

/// The zygote dies while a run is in it: that run ends at once (its sandbox dies with
/// its parent) and says why; the next run restarts the zygote.
#[tokio::test]
async fn a_zygote_killed_mid_run_ends_that_run_with_the_reason_and_the_next_is_restarted() {
    let backend = support::linux(LinuxConfig::default());
    let (first, _) = run_with(&backend, "pass\n").await;
    assert_eq!(first.protections.launcher.as_deref(), Some("zygote"));
    let pid = backend.zygote_pid().expect("the zygote runs");
    let sb = Sandbox::new();
    let sink = Arc::new(Collect::default());
    let began = Instant::now();
    let running = backend.run(
        sb.spec(
            &python(),
            "import time\nprint('started', flush=True)\ntime.sleep(30)\n",
            "",
            limits(),
        ),
        sink.clone(),
        CancellationToken::new(),
    );
    let (report, _) = tokio::join!(running, async {
        while !sink.text(Stream::Stdout).contains("started") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // SAFETY: a signal to the zygote this test's backend started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    });
    let report = report.unwrap();
    assert!(began.elapsed() < Duration::from_secs(15), "{report:?}");
    match &report.outcome {
        Outcome::Crashed { message } => {
            assert!(message.contains("zygote"), "{message}")
        }
        other => panic!("the run does not say the zygote ended it: {other:?}"),
    }
    let (next, _) = run_with(&backend, "pass\n").await;
    assert_eq!(next.protections.launcher.as_deref(), Some("zygote"));
    assert_ne!(backend.zygote_pid(), Some(pid));
}

/// After a launch the zygote forks the next run's first process ahead, in fresh cgroups
/// with no limits yet (`zygote/spare.rs`). A run that starts from such a spare must be
/// held to its own limits all the same: memory across processes and the process count.
#[tokio::test]
async fn a_run_started_from_the_zygotes_spare_is_held_to_its_own_limits() {
    // SAFETY: a getter without side effects.
    if unsafe { libc::geteuid() } != 0 {
        return; // No cgroups for a server that is not root here: no spare either.
    }
    let backend = support::linux(LinuxConfig::default());
    let attacks = [
        (
            "import os, sys, time\nkids = []\nfor i in range(3):\n    pid = os.fork()\n    if pid == 0:\n        b = bytearray(200 * 1024 * 1024)\n        for j in range(0, len(b), 4096):\n            b[j] = 1\n        time.sleep(2)\n        os._exit(0)\n    kids.append(pid)\nsys.exit(sum(1 for p in kids if os.waitpid(p, 0)[1] != 0))\n",
            Limits {
                memory_mib: 256,
                ..limits()
            },
            Limit::Memory,
        ),
        (
            "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(5)\n        os._exit(0)\n",
            Limits {
                processes: 8,
                ..limits()
            },
            Limit::Processes,
        ),
    ];
    run_with(&backend, "pass\n").await;
    for (script, l, limit) in attacks {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !backend.zygote_has_spare() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(backend.zygote_has_spare(), "no spare after a launch");
        let sb = Sandbox::new();
        let sink = Arc::new(Collect::default());
        let report = backend
            .run(
                sb.spec(&python(), script, "", l.clone()),
                sink.clone(),
                CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(report.protections.launcher.as_deref(), Some("zygote"));
        assert_eq!(
            report.outcome,
            Outcome::limit(limit, &l),
            "{}",
            sink.text(Stream::Stderr)
        );
    }
}
