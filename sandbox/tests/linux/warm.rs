//! Warm starts: a run started from a spare interpreter that has already imported its
//! modules looks to the script exactly like a cold one, gets its own budget and sees no
//! other run; a spare that cannot import is reported and runs start cold.

use super::*;

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
