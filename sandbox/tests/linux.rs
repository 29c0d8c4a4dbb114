//! The `linux` backend, for real: namespaces, Landlock, rlimits, streaming, limits.

// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]
#![cfg(target_os = "linux")]

#[path = "linux/jail.rs"]
mod jail;
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
