//! The `wasi` backend, for real: CPython 3.14 for WASI in wasmtime.
//! Needs the component built by `make wasi` (the test command builds it).

#![cfg(feature = "wasi")]

#[path = "support.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scriptorium_sandbox::wasi::WasiBackend;
use scriptorium_sandbox::{Backend, Collect, Limit, Limits, Outcome, Registry, RunReport, Stream};
use support::Sandbox;
use tokio_util::sync::CancellationToken;

fn interpreter() -> scriptorium_sandbox::Interpreter {
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interpreters.toml");
    let reg = Registry::load(&toml).unwrap();
    reg.get(Some("wasi-cpython-3.14"))
        .unwrap_or_else(|e| panic!("{e}\nbuild it with `make wasi` (the test command does)"))
        .clone()
}

fn limits() -> Limits {
    Limits { wall_seconds: 30.0, memory_mib: 512, output_bytes: 1 << 20, ..Limits::default() }
}

async fn run(sb: &Sandbox, script: &str, limits: Limits) -> (RunReport, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let backend = WasiBackend::new().unwrap();
    let report = backend.run(sb.spec(&interpreter(), script, "alpha\nbeta\n", limits), sink.clone(), CancellationToken::new()).await.unwrap();
    (report, sink)
}

#[tokio::test]
async fn reads_argv1_prints_and_writes_an_artifact() {
    let sb = Sandbox::new();
    let (report, out) = run(
        &sb,
        "import sys, json\nlines = open(sys.argv[1]).read().split()\nprint('got', len(lines), 'lines:', ','.join(lines))\njson.dump({'n': 2}, open('result.json', 'w'))\nprint(sys.version_info[:2])\n",
        limits(),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Exited { code: 0 }, "{}", out.text(Stream::Stderr));
    assert_eq!(out.text(Stream::Stdout), "got 2 lines: alpha,beta\n(3, 14)\n");
    assert_eq!(std::fs::read_to_string(sb.run_dir().join("result.json")).unwrap(), "{\"n\": 2}");
    // The runner's own files are gone; only what the script wrote remains.
    let names: Vec<_> = std::fs::read_dir(sb.run_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["result.json"]);
    assert!(report.protections.wasm_isolation);
}

#[tokio::test]
async fn exit_codes_and_tracebacks_come_through() {
    let sb = Sandbox::new();
    let (report, _) = run(&sb, "import sys\nsys.exit(3)\n", limits()).await;
    assert_eq!(report.outcome, Outcome::Exited { code: 3 });
    let (report, out) = run(&sb, "def f():\n    raise ValueError('bad row 7')\nf()\n", limits()).await;
    assert_eq!(report.outcome, Outcome::Exited { code: 1 });
    assert!(out.text(Stream::Stderr).contains("ValueError: bad row 7"), "{}", out.text(Stream::Stderr));
}

#[tokio::test]
async fn output_arrives_line_by_line_while_the_script_runs() {
    support::assert_streams_line_by_line(&WasiBackend::new().unwrap(), &interpreter(), limits()).await;
}

#[tokio::test]
async fn the_guest_sees_only_the_run_directory() {
    let (_, escaped, connected) = support::probe_containment(&WasiBackend::new().unwrap(), &interpreter(), limits()).await;
    assert!(!escaped && !connected);
    // WASI has no fork at all.
    let sb = Sandbox::new();
    let (report, out) = run(&sb, "import os
try:
    os.fork()
    print('forked')
except Exception as e:
    print('denied', type(e).__name__)
", limits()).await;
    assert!(report.outcome.success());
    assert!(out.text(Stream::Stdout).starts_with("denied"), "{}", out.text(Stream::Stdout));
}

#[tokio::test]
async fn two_gib_under_a_256_mib_limit_is_a_memory_limit() {
    let sb = Sandbox::new();
    let l = Limits { memory_mib: 256, ..limits() };
    // wasm32 cannot index one 2 GiB object: 32 chunks of 64 MiB.
    let (report, out) = run(&sb, "x = [bytearray(64 * 1024**2) for _ in range(32)]\nprint('allocated')\n", l).await;
    assert!(matches!(report.outcome, Outcome::LimitExceeded { limit: Limit::Memory, .. }), "{:?} {}", report.outcome, out.text(Stream::Stderr));
    assert!(!out.text(Stream::Stdout).contains("allocated"));
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_wall_limit() {
    let sb = Sandbox::new();
    let backend = WasiBackend::new().unwrap();
    backend.prepare(&interpreter().path).await.unwrap();
    let l = Limits { wall_seconds: 2.0, ..limits() };
    let started = Instant::now();
    let report = backend.run(sb.spec(&interpreter(), "while True:\n    pass\n", "", l), Arc::new(Collect::default()), CancellationToken::new()).await.unwrap();
    let took = started.elapsed();
    assert!(matches!(report.outcome, Outcome::LimitExceeded { limit: Limit::WallTime, .. }), "{:?}", report.outcome);
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test]
async fn a_hundred_megabytes_of_output_stop_at_the_cap() {
    let sb = Sandbox::new();
    let (report, out) = run(&sb, "import sys\nline = 'x' * 99 + '\\n'\nfor _ in range(1_000_000):\n    sys.stdout.write(line)\n", limits()).await;
    assert!(matches!(report.outcome, Outcome::LimitExceeded { limit: Limit::Output, .. }), "{:?}", report.outcome);
    assert!(out.text(Stream::Stdout).len() <= (1 << 20) + 100);
}

#[tokio::test]
async fn cancelling_stops_the_guest_within_a_second() {
    let sb = Sandbox::new();
    let backend = Arc::new(WasiBackend::new().unwrap());
    backend.prepare(&interpreter().path).await.unwrap();
    let cancel = CancellationToken::new();
    let spec = sb.spec(&interpreter(), "import time\nwhile True:\n    open('beat', 'a').write('.')\n    time.sleep(0.05)\n", "", limits());
    let task = {
        let (b, c) = (backend.clone(), cancel.clone());
        tokio::spawn(async move { b.run(spec, Arc::new(Collect::default()), c).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = Instant::now();
    cancel.cancel();
    let report = task.await.unwrap().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
    assert_eq!(report.outcome, Outcome::Cancelled);
    let beats = std::fs::read_to_string(sb.run_dir().join("beat")).unwrap().len();
    assert!(beats > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::read_to_string(sb.run_dir().join("beat")).unwrap().len(), beats);
}

#[tokio::test]
async fn a_missing_component_is_a_clear_setup_error() {
    let sb = Sandbox::new();
    let mut spec = sb.spec(&interpreter(), "print(1)\n", "", limits());
    spec.interpreter.path = Path::new("/nonexistent/python.wasm").to_path_buf();
    let err = WasiBackend::new().unwrap().run(spec, Arc::new(Collect::default()), CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("make wasi"), "{err}");
}
