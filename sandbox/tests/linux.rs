//! The `linux` backend, for real: namespaces, Landlock, rlimits, streaming, limits.

// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]
#![cfg(target_os = "linux")]

#[path = "support.rs"]
mod support;
#[path = "linux/zygote.rs"]
mod zygote;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scriptorium_sandbox::linux::{LinuxBackend, LinuxConfig};
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
        wall_seconds: 20.0,
        cpu_seconds: 20,
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
            sb.spec(&python(), script, "alpha\nbeta\n", limits),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    (report, sink)
}

#[tokio::test]
async fn reads_argv1_prints_and_writes_an_artifact() {
    let sb = Sandbox::new();
    let (report, out) = run(
        &sb,
        "import sys\nlines = open(sys.argv[1]).read().split()\nprint('got', len(lines), 'lines:', ','.join(lines))\nopen('result.csv', 'w').write('n\\n2\\n')\n",
        limits(),
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        out.text(Stream::Stderr)
    );
    assert_eq!(out.text(Stream::Stdout), "got 2 lines: alpha,beta\n");
    assert_eq!(
        std::fs::read_to_string(sb.run_dir().join("result.csv")).unwrap(),
        "n\n2\n"
    );
    let p = &report.protections;
    assert_eq!(p.namespaces, ["user", "mount", "pid", "net", "ipc", "uts"]);
    assert!(
        p.landlock_abi >= 4 && p.landlock_filesystem && p.landlock_network,
        "{p:?}"
    );
    assert!(p.missing.is_empty());
}

#[tokio::test]
async fn output_arrives_line_by_line_while_the_script_runs() {
    support::assert_streams_line_by_line(
        &support::linux(LinuxConfig::default()),
        &python(),
        limits(),
    )
    .await;
}

#[tokio::test]
async fn secrets_files_and_the_network_are_out_of_reach() {
    let (_, escaped, connected) =
        support::probe_containment(&support::linux(LinuxConfig::default()), &python(), limits())
            .await;
    assert!(!escaped && !connected);
}

#[tokio::test]
async fn a_fork_bomb_hits_the_process_limit_and_leaves_nothing() {
    let sb = Sandbox::new();
    let script = "import os\nwhile True:\n    os.fork()\n";
    let l = Limits {
        processes: 16,
        wall_seconds: 15.0,
        ..limits()
    };
    let started = Instant::now();
    let (report, out) = run(&sb, script, l).await;
    assert!(
        matches!(
            report.outcome,
            Outcome::LimitExceeded {
                limit: Limit::Processes,
                ..
            }
        ),
        "{:?}\n{}",
        report.outcome,
        out.text(Stream::Stderr).lines().last().unwrap_or("")
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn two_gib_under_a_256_mib_limit_is_a_memory_limit() {
    let sb = Sandbox::new();
    let l = Limits {
        memory_mib: 256,
        ..limits()
    };
    let (report, out) = run(&sb, "x = bytearray(2 * 1024**3)\nprint('allocated')\n", l).await;
    assert!(
        matches!(
            report.outcome,
            Outcome::LimitExceeded {
                limit: Limit::Memory,
                ..
            }
        ),
        "{:?}",
        report.outcome
    );
    assert!(!out.text(Stream::Stdout).contains("allocated"));
    assert!(
        report.outcome.message().contains("256 MiB"),
        "{}",
        report.outcome.message()
    );
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_wall_limit() {
    let sb = Sandbox::new();
    let l = Limits {
        wall_seconds: 2.0,
        ..limits()
    };
    let started = Instant::now();
    let (report, _) = run(&sb, "while True:\n    pass\n", l).await;
    let took = started.elapsed();
    assert!(
        matches!(
            report.outcome,
            Outcome::LimitExceeded {
                limit: Limit::WallTime,
                ..
            }
        ),
        "{:?}",
        report.outcome
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_hundred_megabytes_of_output_stop_at_the_cap() {
    let sb = Sandbox::new();
    let l = Limits {
        output_bytes: 1 << 20,
        ..limits()
    };
    let started = Instant::now();
    let (report, out) = run(&sb, "import sys\nline = 'x' * 99 + '\\n'\nfor _ in range(1_000_000):\n    sys.stdout.write(line)\n", l).await;
    assert!(
        matches!(
            report.outcome,
            Outcome::LimitExceeded {
                limit: Limit::Output,
                ..
            }
        ),
        "{:?}",
        report.outcome
    );
    let kept: usize = out.text(Stream::Stdout).len();
    assert!(kept <= (1 << 20) + 100, "kept {kept} bytes");
    assert!(report.output_bytes <= 1 << 20);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A script that starts a child which keeps touching a file.
const HEARTBEAT: &str = r#"
import subprocess, sys
code = "import time\nwhile True:\n    open('beat', 'a').write('.')\n    time.sleep(0.05)\n"
subprocess.Popen([sys.executable, "-c", code])
print("started", flush=True)
"#;

fn beats(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("beat"))
        .map(|s| s.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_child_left_running_dies_with_the_script() {
    let sb = Sandbox::new();
    // The script ends once the child has written (a loaded machine may start it slowly).
    let script = format!(
        "{HEARTBEAT}import os, time\nfor _ in range(200):\n    if os.path.exists('beat'):\n        break\n    time.sleep(0.05)\ntime.sleep(0.2)\n"
    );
    let (report, out) = run(&sb, &script, limits()).await;
    assert!(report.outcome.success(), "{}", out.text(Stream::Stderr));
    let after = beats(&sb.run_dir());
    assert!(after > 0, "the child never ran");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(beats(&sb.run_dir()), after, "the child outlived the script");
}

#[tokio::test]
async fn cancelling_kills_the_whole_run_within_a_second() {
    let sb = Sandbox::new();
    let script = format!("{HEARTBEAT}import time\ntime.sleep(60)\n");
    let backend = support::linux(LinuxConfig::default());
    let cancel = CancellationToken::new();
    let sink = Arc::new(Collect::default());
    let spec = sb.spec(&python(), &script, "", limits());
    let task = {
        let cancel = cancel.clone();
        let sink = sink.clone();
        tokio::spawn(async move { backend.run(spec, sink, cancel).await })
    };
    // Cancel once the child is beating (a loaded machine may start it slowly).
    let deadline = Instant::now() + Duration::from_secs(15);
    while beats(&sb.run_dir()) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    cancel.cancel();
    let report = task.await.unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(report.outcome, Outcome::Cancelled);
    let after = beats(&sb.run_dir());
    assert!(after > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        beats(&sb.run_dir()),
        after,
        "a process survived cancellation"
    );
}

#[tokio::test]
async fn the_script_runs_as_an_unprivileged_user() {
    let sb = Sandbox::new();
    let (report, out) = run(
        &sb,
        "import os\nprint(os.getuid(), os.getpid())\nopen('f', 'w').close()\n",
        limits(),
    )
    .await;
    assert!(report.outcome.success(), "{}", out.text(Stream::Stderr));
    assert_eq!(out.text(Stream::Stdout), "1000 2\n");
    // SAFETY: a getter without side effects.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(sb.run_dir().join("f")).unwrap().uid();
        assert!(
            (100_000..=165_535).contains(&owner),
            "a root server runs each script as a uid of its own range: {owner}"
        );
        assert_eq!(report.protections.uid, Some(owner));
    }
}

/// Run directories as the server lays them out: `runs/<n>/` holding the input and the
/// script under `.scriptorium/`.
struct Runs {
    dir: tempfile::TempDir,
}

impl Runs {
    /// Not below /tmp: there runs start cold (see `warm::runs_dir_allowed`).
    fn new() -> Runs {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::create_dir(dir.path().join("runs")).unwrap();
        Runs { dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("runs")
    }

    fn spec(
        &self,
        n: u32,
        interp: &scriptorium_sandbox::Interpreter,
        script: &str,
        limits: Limits,
    ) -> scriptorium_sandbox::RunSpec {
        let run = self.path().join(n.to_string());
        std::fs::create_dir_all(run.join(".scriptorium")).unwrap();
        std::fs::write(run.join("input"), "alpha\nbeta\n").unwrap();
        std::fs::write(run.join(".scriptorium/script.py"), script).unwrap();
        scriptorium_sandbox::RunSpec {
            interpreter: interp.clone(),
            script: run.join(".scriptorium/script.py"),
            input: Some(run.join("input")),
            args: vec![],
            workdir: run,
            limits,
        }
    }
}

/// The machine's Python with `module` imported by its spares.
fn warm_python(module: &str) -> scriptorium_sandbox::Interpreter {
    let mut interp = python();
    interp.warm = vec![module.into()];
    interp.limits = limits();
    interp
}

fn warm_backend() -> LinuxBackend {
    support::linux(LinuxConfig {
        warm: scriptorium_sandbox::linux::WarmMode::Lazy,
        ..LinuxConfig::default()
    })
}

async fn wait_warm(
    backend: &LinuxBackend,
    interp: &scriptorium_sandbox::Interpreter,
    runs: &Path,
) -> scriptorium_sandbox::WarmState {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = backend
            .warm_state(interp, runs)
            .expect("warm starts apply to this interpreter");
        if !matches!(
            state,
            scriptorium_sandbox::WarmState::Warming | scriptorium_sandbox::WarmState::Idle
        ) || Instant::now() > deadline
        {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a script can observe of how it was started, with the run directory's path
/// written as `<run>` so that two runs compare equal.
const OBSERVE: &str = r#"
import os, sys
run = os.getcwd()
show = lambda v: str(v).replace(run, "<run>")
print("argv", show(sys.argv))
print("file", show(__file__), __name__)
print("home", show(os.environ["HOME"]), "cwd", show(os.getcwd()))
print("input", open(sys.argv[1]).read().split())
print("stdin", repr(sys.stdin.read()))
print("globals", sorted(k for k in globals() if not k.startswith("__")))
print("path0", show(sys.path[0]))
open("made.txt", "w").write("artifact")
raise SystemExit(3)
"#;

#[tokio::test]
async fn a_warm_start_looks_to_the_script_exactly_like_a_cold_one() {
    let runs = Runs::new();
    let backend = warm_backend();
    let interp = warm_python("decimal");
    assert_eq!(
        backend.warm_state(&interp, &runs.path()),
        Some(scriptorium_sandbox::WarmState::Idle),
        "lazy: no spare before the first run"
    );

    let cold_sink = Arc::new(Collect::default());
    let cold = backend
        .run(
            runs.spec(1, &interp, OBSERVE, limits()),
            cold_sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(!cold.warm_start);
    assert_eq!(
        wait_warm(&backend, &interp, &runs.path()).await,
        scriptorium_sandbox::WarmState::Ready
    );

    let warm_sink = Arc::new(Collect::default());
    let warm = backend
        .run(
            runs.spec(2, &interp, OBSERVE, limits()),
            warm_sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(warm.warm_start, "the second run used the spare");
    assert_eq!(
        warm.outcome,
        Outcome::Exited { code: 3 },
        "{}",
        warm_sink.text(Stream::Stderr)
    );
    assert_eq!(cold.outcome, warm.outcome);
    assert_eq!(
        warm_sink.text(Stream::Stdout),
        cold_sink.text(Stream::Stdout)
    );
    assert_eq!(warm_sink.text(Stream::Stderr), "");
    assert!(
        warm_sink
            .text(Stream::Stdout)
            .contains("input ['alpha', 'beta']"),
        "{}",
        warm_sink.text(Stream::Stdout)
    );
    // Every protection of a cold run; only the leased host uid differs (root server).
    let without_uid = |p: &scriptorium_sandbox::Protections| scriptorium_sandbox::Protections {
        uid: None,
        ..p.clone()
    };
    assert_eq!(
        without_uid(&warm.protections),
        without_uid(&cold.protections),
        "the spare had every protection of a cold run"
    );
    assert!(
        warm.protections.seccomp.is_some()
            && warm.protections.minimal_root
            && warm.protections.private_keyring
    );
    let run2 = runs.path().join("2");
    assert_eq!(
        std::fs::read_to_string(run2.join("made.txt")).unwrap(),
        "artifact"
    );
    assert!(run2.join(".scriptorium/script.py").is_file() && run2.join("input").is_file());

    // Errors point at the script, as in a cold run.
    let failing = "x = 1\nraise ValueError('bad size')\n";
    wait_warm(&backend, &interp, &runs.path()).await;
    let sink = Arc::new(Collect::default());
    let report = backend
        .run(
            runs.spec(3, &interp, failing, limits()),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.warm_start);
    assert_eq!(report.outcome, Outcome::Exited { code: 1 });
    let stderr = sink.text(Stream::Stderr);
    assert!(
        stderr.starts_with("Traceback (most recent call last):\n")
            && stderr.contains("script.py\", line 2, in <module>"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("ValueError: bad size\n") && !stderr.contains("<string>"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_warm_run_gets_its_own_cpu_budget_and_sees_no_other_run() {
    let runs = Runs::new();
    let backend = warm_backend();
    let mut interp = warm_python("decimal");
    let secret = runs.path().join("7/result.csv");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, "another run's result").unwrap();
    // A root server shows a spare only its own run directory: the sibling is not even
    // there to stat (without root, the runs directory is shown and Landlock guards it).
    // SAFETY: a getter without side effects.
    let root = unsafe { libc::geteuid() } == 0;
    let see = if root {
        format!(", ('see', lambda: os.stat({secret:?}))")
    } else {
        String::new()
    };
    let probe = format!(
        "import os\nfor name, f in [('sibling', lambda: open({secret:?}).read()), ('list', lambda: os.listdir('..')), ('write', lambda: open('../8.txt', 'w')){see}]:\n    try:\n        f(); print(name, 'LEAKED')\n    except OSError as e:\n        print(name, 'denied')\n"
    );
    let expected = if root {
        "sibling denied\nlist denied\nwrite denied\nsee denied\n"
    } else {
        "sibling denied\nlist denied\nwrite denied\n"
    };
    let sink = Arc::new(Collect::default());
    let report = backend
        .run(
            runs.spec(1, &interp, &probe, limits()),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(!report.warm_start);
    assert_eq!(sink.text(Stream::Stdout), expected, "cold");
    wait_warm(&backend, &interp, &runs.path()).await;
    let sink = Arc::new(Collect::default());
    let report = backend
        .run(
            runs.spec(2, &interp, &probe, limits()),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.warm_start);
    assert_eq!(sink.text(Stream::Stdout), expected);

    // The import's CPU allowance is taken back: a busy loop stops at the run's 1 s.
    let tight = Limits {
        cpu_seconds: 1,
        wall_seconds: 15.0,
        ..limits()
    };
    interp.limits = tight.clone();
    backend
        .run(
            runs.spec(3, &interp, "pass\n", tight.clone()),
            Arc::new(Collect::default()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    wait_warm(&backend, &interp, &runs.path()).await;
    let began = Instant::now();
    let report = backend
        .run(
            runs.spec(4, &interp, "while True:\n    pass\n", tight.clone()),
            Arc::new(Collect::default()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(report.warm_start);
    assert_eq!(report.outcome, Outcome::limit(Limit::CpuTime, &tight));
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_spare_that_cannot_import_is_reported_and_runs_start_cold() {
    let runs = Runs::new();
    let backend = warm_backend();
    let interp = warm_python("no_such_module_for_scriptorium");
    let first = backend
        .run(
            runs.spec(1, &interp, "print('one')\n", limits()),
            Arc::new(Collect::default()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(first.outcome.success());
    match wait_warm(&backend, &interp, &runs.path()).await {
        scriptorium_sandbox::WarmState::Failed { problem } => {
            assert!(
                problem.contains("No module named 'no_such_module_for_scriptorium'"),
                "{problem}"
            )
        }
        other => panic!("{other:?}"),
    }
    let sink = Arc::new(Collect::default());
    let second = backend
        .run(
            runs.spec(2, &interp, "print('two')\n", limits()),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(second.outcome.success() && !second.warm_start);
    assert_eq!(sink.text(Stream::Stdout), "two\n");
    let leftovers: Vec<_> = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("warm"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// --- The jail: escapes a hostile script tries (issue 14). Each asserts the attack
// failed and what stopped it.

/// Runs `script` in a cold sandbox and returns its stdout; it must exit 0.
async fn probe(script: &str) -> (RunReport, String) {
    let sb = Sandbox::new();
    let (report, out) = run(&sb, script, limits()).await;
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        out.text(Stream::Stderr)
    );
    (report, out.text(Stream::Stdout))
}

/// Python that calls a raw syscall and prints `name ok` or `name <errno name>`.
const SYSCALL: &str = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(name, nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    e = ctypes.get_errno()
    print(name, "ok" if r >= 0 else errno.errorcode.get(e, str(e)), flush=True)
    return r
"#;

#[tokio::test]
async fn a_key_in_the_servers_session_keyring_is_out_of_reach() {
    // The test process joins a session keyring of its own and puts a secret in it, as
    // a server might hold a credential there.
    let desc = format!("scriptorium-test-{}", std::process::id());
    // SAFETY: add_key with NUL-terminated strings and a buffer that outlive the call.
    let serial = unsafe {
        assert!(
            libc::syscall(libc::SYS_keyctl, 1, c"scriptorium-test-session".as_ptr()) >= 0,
            "join a session keyring"
        );
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            std::ffi::CString::new(desc.clone()).unwrap().as_ptr(),
            c"key-secret-payload".as_ptr(),
            18usize,
            -3i64, // KEY_SPEC_SESSION_KEYRING
        )
    };
    assert!(serial > 0, "add_key: {}", std::io::Error::last_os_error());
    let script = format!(
        r#"{SYSCALL}
buf = ctypes.create_string_buffer(256)
call("read", 250, 11, {serial}, buf, 256)  # KEYCTL_READ
print("payload", buf.value)
call("search", 250, 10, -3, b"user", {desc:?}.encode(), 0)  # KEYCTL_SEARCH in the session keyring
try:
    keys = open("/proc/keys").read()
    print("proc_keys", "LEAKED" if {desc:?} in keys else "hidden")
except OSError as e:
    print("proc_keys", type(e).__name__)
"#
    );
    let (report, out) = probe(&script).await;
    assert!(!out.contains("key-secret-payload"), "{out}");
    assert!(
        out.contains("read EPERM\n") && out.contains("search EPERM\n"),
        "seccomp refuses keyctl: {out}"
    );
    assert!(
        out.contains("proc_keys FileNotFoundError"),
        "/proc has only the processes: {out}"
    );
    assert!(report.protections.private_keyring);
}

#[tokio::test]
async fn kernel_attack_surface_is_refused_by_seccomp() {
    let script = format!(
        r#"{SYSCALL}
params = ctypes.create_string_buffer(120)
call("io_uring_setup", 425, 1, params)
call("userfaultfd", 323, 1)  # UFFD_USER_MODE_ONLY
call("keyctl", 250, 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of the session keyring
call("bpf", 321, 0, 0, 0)
call("ptrace", 101, 16, 1, 0, 0)  # PTRACE_ATTACH to init
call("mount", 165, b"none", b"/tmp", b"tmpfs", 0, 0)
call("clone3", 435, 0, 0)
call("nf_tables_socket", 41, 16, 3, 12)  # socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER)
call("route_socket", 41, 16, 3, 0)  # NETLINK_ROUTE stays: getaddrinfo uses it
call("unshare", 272, 0x10000000 | 0x40000000)  # CLONE_NEWUSER | CLONE_NEWNET
pid = os.fork()  # plain fork still works (clone without namespace flags)
if pid == 0:
    os._exit(7)
print("fork", os.waitpid(pid, 0)[1] >> 8)
"#
    );
    let (report, out) = probe(&script).await;
    for name in [
        "io_uring_setup",
        "userfaultfd",
        "keyctl",
        "bpf",
        "ptrace",
        "mount",
        "nf_tables_socket",
        "unshare",
    ] {
        assert!(out.contains(&format!("{name} EPERM\n")), "{name}: {out}");
    }
    assert!(
        out.contains("clone3 ENOSYS\n"),
        "libc falls back to clone: {out}"
    );
    assert!(
        out.contains("route_socket ok\n") && out.contains("fork 7\n"),
        "{out}"
    );
    let seccomp = report
        .protections
        .seccomp
        .expect("the run record names the filter");
    assert!(
        seccomp.starts_with("docker-default-like, ") && seccomp.ends_with(" syscalls denied"),
        "{seccomp}"
    );
}

#[tokio::test]
async fn a_host_unix_socket_outside_tmp_is_not_there() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({path:?})\n    print('connected LEAKED')\nexcept OSError as e:\n    print('connect', type(e).__name__)\n"
    );
    let (_, out) = probe(&script).await;
    assert_eq!(
        out, "connect FileNotFoundError\n",
        "the socket's path does not exist in the minimal root"
    );
    assert!(
        listener.accept().is_err(),
        "the host listener saw a connection"
    );
}

#[tokio::test]
async fn a_run_cannot_touch_a_concurrent_runs_directory() {
    let runs = Runs::new();
    let backend = support::linux(LinuxConfig::default());
    let interp = python();
    let a_dir = runs.path().join("1");
    // A waits until B is done with its attack, then writes its result.
    let a = "import os, time\nfor _ in range(200):\n    if os.path.exists('../2/done'):\n        break\n    time.sleep(0.05)\nopen('result.txt', 'w').write('A ok')\nprint(os.listdir('.'))\n";
    let b = format!(
        r#"
import os
for name, f in [("chmod", lambda: os.chmod({a:?}, 0)), ("write", lambda: open({a:?} + "/evil", "w")),
                ("list", lambda: os.listdir({a:?})), ("chmod_tmp", lambda: os.chmod("/tmp", 0))]:
    try:
        f(); print(name, "done")
    except OSError as e:
        print(name, type(e).__name__)
open("done", "w").close()
"#,
        a = a_dir.display().to_string()
    );
    let (sa, sb) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
    let (ra, rb) = tokio::join!(
        backend.run(
            runs.spec(1, &interp, a, limits()),
            sa.clone(),
            CancellationToken::new()
        ),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            backend
                .run(
                    runs.spec(2, &interp, &b, limits()),
                    sb.clone(),
                    CancellationToken::new(),
                )
                .await
        }
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(rb.outcome.success(), "{}", sb.text(Stream::Stderr));
    let out_b = sb.text(Stream::Stdout);
    // B's /tmp is its own: whatever it does to it stays there.
    assert!(
        out_b.starts_with(
            "chmod FileNotFoundError\nwrite FileNotFoundError\nlist FileNotFoundError\nchmod_tmp "
        ),
        "B sees no other run: {out_b}"
    );
    assert!(
        ra.outcome.success(),
        "A was harmed: {}",
        sa.text(Stream::Stderr)
    );
    assert_eq!(
        std::fs::read_to_string(a_dir.join("result.txt")).unwrap(),
        "A ok"
    );
    assert!(!a_dir.join("evil").exists());
    // SAFETY: a getter without side effects.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        assert_ne!(
            ra.protections.uid, rb.protections.uid,
            "each run has a host uid of its own"
        );
        assert_eq!(
            Some(std::fs::metadata(&a_dir).unwrap().uid()),
            ra.protections.uid
        );
        assert_eq!(
            std::fs::metadata(&a_dir).unwrap().mode() & 0o777,
            0o700,
            "closed to every other uid"
        );
        assert_eq!(
            Some(std::fs::metadata(runs.path().join("2")).unwrap().uid()),
            rb.protections.uid
        );
    }
}

#[tokio::test]
async fn pid_1_shows_nothing_of_the_server() {
    let me = std::env::args().next().unwrap();
    let script = r#"
import os
for f in ["cmdline", "environ", "comm", "status"]:
    try:
        print(f, repr(open("/proc/1/" + f, "rb").read()))
    except OSError as e:
        print(f, type(e).__name__)
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("proc", sorted(p for p in os.listdir("/proc") if not p.isdigit()))
"#;
    let (_, out) = probe(script).await;
    let name = Path::new(&me)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        !out.contains(&name) && !out.contains("OPENROUTER"),
        "the test binary's command line shows: {out}"
    );
    // init cannot be seen at all: only what the script may ptrace is listed.
    assert!(out.contains("cmdline FileNotFoundError"), "{out}");
    let pids = out.lines().find(|l| l.starts_with("pids ")).unwrap();
    assert_eq!(pids, "pids [2]", "only the script's own process: {out}");
    let proc = out.lines().find(|l| l.starts_with("proc ")).unwrap();
    assert_eq!(
        proc, "proc ['self', 'thread-self']",
        "no host information in /proc: {out}"
    );
}

#[tokio::test]
async fn the_root_holds_only_what_the_run_needs() {
    let host_mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| !["/", "/dev", "/proc", "/tmp"].contains(&m.as_str()))
        .collect();
    let script = r#"
import os
mounts = [l.split()[4] for l in open("/proc/self/mountinfo")]
print("mounts", len(mounts))
for m in mounts:
    print("mount", m)
# Landlock still refuses to list the skeleton directories; what exists is asked by path.
for p in ["/sys", "/boot", "/home", "/run", "/srv", "/mnt", "/etc/passwd", "/etc/hostname", "/dev/pts", "/dev/tty",
          "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm", "/dev/stdin"]:
    print("exists", p, os.path.exists(p))
tmp = [l.split() for l in open("/proc/self/mountinfo") if l.split()[4] == "/tmp"][0]
print("tmp_fs", tmp[tmp.index("-") + 1])
st = os.statvfs("/tmp")
print("tmp_mib", st.f_blocks * st.f_frsize // 2**20)
chunk = b"x" * (16 * 2**20)
try:
    for i in range(20):
        open(f"/tmp/big{i}", "wb").write(chunk)
    print("big written")
except OSError as e:
    print("big", type(e).__name__, e.errno)
"#;
    // /tmp is bounded by the run's disk quota.
    let sb = Sandbox::new();
    let (report, out) = run(
        &sb,
        script,
        Limits {
            disk_mib: 256,
            ..limits()
        },
    )
    .await;
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        out.text(Stream::Stderr)
    );
    let out = out.text(Stream::Stdout);
    let mounts: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("mount "))
        .collect();
    for m in &host_mounts {
        assert!(
            !mounts.contains(&m.as_str()),
            "the host's mount {m} is visible: {out}"
        );
    }
    assert!(mounts.len() <= 30, "{out}");
    for p in [
        "/sys",
        "/boot",
        "/home",
        "/run",
        "/srv",
        "/mnt",
        "/etc/passwd",
        "/etc/hostname",
        "/dev/pts",
        "/dev/tty",
    ] {
        assert!(
            out.contains(&format!("exists {p} False\n")),
            "{p} is visible: {out}"
        );
    }
    for p in [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/shm",
        "/dev/stdin",
    ] {
        assert!(
            out.contains(&format!("exists {p} True\n")),
            "{p} is missing: {out}"
        );
    }
    assert!(
        out.contains("tmp_fs tmpfs\n") && out.contains("tmp_mib 256\n"),
        "{out}"
    );
    assert!(
        out.contains("big OSError 28"),
        "a full /tmp says ENOSPC: {out}"
    );
}
