//! `scriptorium exec` and `scriptorium interpreters`, the terminal entry points.

use std::process::Command;

use crate::util::repo_root;

fn scriptorium(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scriptorium"))
        .args(args)
        .current_dir(repo_root())
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

#[test]
fn exec_streams_output_and_exits_with_the_scripts_code() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.py");
    std::fs::write(&script, "import sys\nprint(open(sys.argv[1]).read().strip().upper())\nprint('oops', file=sys.stderr)\nsys.exit(3)\n").unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hello\n").unwrap();
    let out = scriptorium(&["exec", script.to_str().unwrap(), input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("oops") && err.contains("exited with code 3") && err.contains("run directory"),
        "{err}"
    );
}

#[test]
fn exec_names_the_limit_that_stopped_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("loop.py");
    std::fs::write(&script, "while True:\n    pass\n").unwrap();
    let out = scriptorium(&["exec", "--timeout", "1", script.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 s time limit"), "{err}");

    let out = scriptorium(&[
        "exec",
        "--output-limit",
        "1000",
        script.to_str().unwrap().replace("loop", "loud").as_str(),
    ]);
    assert_ne!(out.status.code(), Some(0), "a missing script fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the script"));
}

#[test]
fn exec_runs_under_wasi_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("v.py");
    std::fs::write(
        &script,
        "import sys\nprint(sys.platform, sys.version_info[:2])\n",
    )
    .unwrap();
    let out = scriptorium(&[
        "exec",
        "--interpreter",
        "wasi-cpython-3.14",
        script.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "wasi (3, 14)\n");
    let out = scriptorium(&[
        "exec",
        "--interpreter",
        "wasi-cpython-3.14",
        "--backend",
        "linux",
        script.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run under the `linux` backend"));
}

#[test]
fn interpreters_lists_exact_versions_and_unknown_ids_are_clear() {
    let out = scriptorium(&["interpreters"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let cpython = text
        .lines()
        .find(|l| l.starts_with("cpython "))
        .unwrap_or_else(|| panic!("{text}"));
    let version = cpython.split_whitespace().nth(2).unwrap();
    assert_eq!(version.split('.').count(), 3, "{cpython}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("wasi-cpython-3.14") && l.contains("3.14.")),
        "{text}"
    );
    let out = scriptorium(&["exec", "--interpreter", "graalpy-nope", "x.py"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interpreter `graalpy-nope` is not known")
    );
}
