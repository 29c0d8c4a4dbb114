//! The `wasi` backend, for real: CPython 3.14 for WASI in wasmtime.
//! Needs the component built by `make wasi` (the test command builds it).

// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]
#![cfg(feature = "wasi")]

#[path = "support.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scriptorium_sandbox::wasi::WasiBackend;
use scriptorium_sandbox::{
    Backend, Collect, Limit, Limits, Outcome, Registry, RunReport, SandboxConfig, Stream,
};
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
    Limits {
        wall_seconds: 30.0,
        memory_mib: 512,
        output_bytes: 1 << 20,
        ..Limits::default()
    }
}

/// The backend as the server makes it, with this crate's host program.
fn backend() -> WasiBackend {
    WasiBackend::new(
        env!("CARGO_BIN_EXE_scriptorium-wasi-host"),
        &SandboxConfig::default(),
    )
    .unwrap()
}

async fn run(sb: &Sandbox, script: &str, limits: Limits) -> (RunReport, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let backend = backend();
    let report = backend
        .run(
            sb.spec(&interpreter(), script, "alpha\nbeta\n", limits),
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
        "import sys, json\nlines = open(sys.argv[1]).read().split()\nprint('got', len(lines), 'lines:', ','.join(lines))\njson.dump({'n': 2}, open('result.json', 'w'))\nprint(sys.version_info[:2])\n",
        limits(),
    )
    .await;
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        out.text(Stream::Stderr)
    );
    assert_eq!(
        out.text(Stream::Stdout),
        "got 2 lines: alpha,beta\n(3, 14)\n"
    );
    assert_eq!(
        std::fs::read_to_string(sb.run_dir().join("result.json")).unwrap(),
        "{\"n\": 2}"
    );
    // The runner's own files are gone; only what the script wrote remains.
    let names: Vec<_> = std::fs::read_dir(sb.run_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["result.json"]);
    assert!(report.protections.wasm_isolation);
}

#[tokio::test]
async fn exit_codes_and_tracebacks_come_through() {
    let sb = Sandbox::new();
    let (report, _) = run(&sb, "import sys\nsys.exit(3)\n", limits()).await;
    assert_eq!(report.outcome, Outcome::Exited { code: 3 });
    let (report, out) = run(
        &sb,
        "def f():\n    raise ValueError('bad row 7')\nf()\n",
        limits(),
    )
    .await;
    assert_eq!(report.outcome, Outcome::Exited { code: 1 });
    assert!(
        out.text(Stream::Stderr).contains("ValueError: bad row 7"),
        "{}",
        out.text(Stream::Stderr)
    );
}

#[tokio::test]
async fn output_arrives_line_by_line_while_the_script_runs() {
    support::assert_streams_line_by_line(&backend(), &interpreter(), limits()).await;
}

#[tokio::test]
async fn the_guest_sees_only_the_run_directory() {
    let (_, escaped, connected) =
        support::probe_containment(&backend(), &interpreter(), limits()).await;
    assert!(!escaped && !connected);
    // WASI has no fork at all.
    let sb = Sandbox::new();
    let (report, out) = run(
        &sb,
        "import os
try:
    os.fork()
    print('forked')
except Exception as e:
    print('denied', type(e).__name__)
",
        limits(),
    )
    .await;
    assert!(report.outcome.success());
    assert!(
        out.text(Stream::Stdout).starts_with("denied"),
        "{}",
        out.text(Stream::Stdout)
    );
}

#[tokio::test]
async fn two_gib_under_a_256_mib_limit_is_a_memory_limit() {
    let sb = Sandbox::new();
    let l = Limits {
        memory_mib: 256,
        ..limits()
    };
    // wasm32 cannot index one 2 GiB object: 32 chunks of 64 MiB.
    let (report, out) = run(
        &sb,
        "x = [bytearray(64 * 1024**2) for _ in range(32)]\nprint('allocated')\n",
        l,
    )
    .await;
    assert!(
        matches!(
            report.outcome,
            Outcome::LimitExceeded {
                limit: Limit::Memory,
                ..
            }
        ),
        "{:?} {}",
        report.outcome,
        out.text(Stream::Stderr)
    );
    assert!(!out.text(Stream::Stdout).contains("allocated"));
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_wall_limit() {
    let sb = Sandbox::new();
    let backend = backend();
    backend.prepare(&interpreter().path).await.unwrap();
    let l = Limits {
        wall_seconds: 2.0,
        ..limits()
    };
    let started = Instant::now();
    let report = backend
        .run(
            sb.spec(&interpreter(), "while True:\n    pass\n", "", l),
            Arc::new(Collect::default()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
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
    let (report, out) = run(&sb, "import sys\nline = 'x' * 99 + '\\n'\nfor _ in range(1_000_000):\n    sys.stdout.write(line)\n", limits()).await;
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
    assert!(out.text(Stream::Stdout).len() <= (1 << 20) + 100);
}

#[tokio::test]
async fn cancelling_stops_the_guest_within_a_second() {
    let sb = Sandbox::new();
    let backend = Arc::new(backend());
    backend.prepare(&interpreter().path).await.unwrap();
    let cancel = CancellationToken::new();
    let spec = sb.spec(
        &interpreter(),
        "import time\nwhile True:\n    open('beat', 'a').write('.')\n    time.sleep(0.05)\n",
        "",
        limits(),
    );
    let task = {
        let (b, c) = (backend.clone(), cancel.clone());
        tokio::spawn(async move { b.run(spec, Arc::new(Collect::default()), c).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let asked = Instant::now();
    cancel.cancel();
    let report = task.await.unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(report.outcome, Outcome::Cancelled);
    let beats = std::fs::read_to_string(sb.run_dir().join("beat"))
        .unwrap()
        .len();
    assert!(beats > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read_to_string(sb.run_dir().join("beat"))
            .unwrap()
            .len(),
        beats
    );
}

#[tokio::test]
async fn a_missing_component_is_a_clear_setup_error() {
    let sb = Sandbox::new();
    let mut spec = sb.spec(&interpreter(), "print(1)\n", "", limits());
    spec.interpreter.path = Path::new("/nonexistent/python.wasm").to_path_buf();
    let err = backend()
        .run(spec, Arc::new(Collect::default()), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("make wasi"), "{err}");
}

/// This process's resident memory and open descriptors, read from /proc.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Samples this (the server's stand-in) process while a run goes on: the highest RSS
/// and descriptor count seen. Past `max_rss_growth_kib` it ends the process at once,
/// so a failing run cannot take the machine down with it.
struct Watch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, usize)>>,
    rss0: u64,
    fds0: usize,
}

impl Watch {
    fn start(max_rss_growth_kib: u64) -> Watch {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (rss0, fds0) = (rss_kib(), open_fds());
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut rss, mut fds) = (rss0, fds0);
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                rss = rss.max(rss_kib());
                fds = fds.max(open_fds());
                if rss > rss0 + max_rss_growth_kib {
                    eprintln!(
                        "the test process grew from {rss0} KiB to {rss} KiB during the run: the host read what the guest left behind"
                    );
                    std::process::exit(3);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (rss, fds)
        });
        Watch {
            stop,
            thread: Some(thread),
            rss0,
            fds0,
        }
    }

    /// (RSS growth in KiB, descriptor growth) at their highest.
    fn finish(mut self) -> (u64, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (rss, fds) = self.thread.take().unwrap().join().unwrap();
        (rss - self.rss0, fds.saturating_sub(self.fds0))
    }
}

/// The attack of finding 8: after the script, whatever file the host might read back
/// (the runner's status file) is a relative symlink out of the run directory.
fn link_the_status_file_to(target: &str, code: i32) -> String {
    format!(
        r#"
import os, sys
side = "/run/.scriptorium"
os.makedirs(side, exist_ok=True)
for name in ("exit", "status"):
    p = side + "/" + name
    try:
        os.remove(p)
    except FileNotFoundError:
        pass
    os.symlink("../" * 40 + {target:?}, p)
print("linked")
sys.exit({code})
"#
    )
}

#[tokio::test]
async fn a_status_file_linked_to_pid_max_does_not_become_the_exit_code() {
    let sb = Sandbox::new();
    let backend = backend();
    backend.prepare(&interpreter().path).await.unwrap();
    let sink = Arc::new(Collect::default());
    let spec = sb.spec(
        &interpreter(),
        &link_the_status_file_to("proc/sys/kernel/pid_max", 3),
        "",
        limits(),
    );
    let report = backend
        .run(spec, sink.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        sink.text(Stream::Stdout),
        "linked\n",
        "{}",
        sink.text(Stream::Stderr)
    );
    // The guest's own exit code, not the number in /proc/sys/kernel/pid_max.
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 3 },
        "{}",
        sink.text(Stream::Stderr)
    );
    // The host ran in the process sandbox, and the record says so.
    assert!(
        report.protections.wasm_isolation && report.protections.rlimits,
        "{:?}",
        report.protections
    );
    assert!(
        report.protections.namespaces.contains(&"user")
            || report.protections.namespaces.contains(&"mount"),
        "{:?}",
        report.protections
    );
    // Nothing watches the host's cgroup CPU counter (RLIMIT_CPU bounds its one
    // process): the record must not claim a run-wide count.
    assert!(
        !report.protections.cgroup.as_ref().is_some_and(|c| c.cpu),
        "{:?}",
        report.protections.cgroup
    );
}

#[tokio::test]
async fn a_status_file_linked_to_dev_zero_does_not_grow_the_server() {
    let sb = Sandbox::new();
    let backend = backend();
    backend.prepare(&interpreter().path).await.unwrap();
    let sink = Arc::new(Collect::default());
    let spec = sb.spec(
        &interpreter(),
        &link_the_status_file_to("dev/zero", 4),
        "",
        limits(),
    );
    let watch = Watch::start(256 * 1024);
    let report = backend
        .run(spec, sink.clone(), CancellationToken::new())
        .await
        .unwrap();
    let (rss_growth, _) = watch.finish();
    assert_eq!(
        report.outcome,
        Outcome::Exited { code: 4 },
        "{}",
        sink.text(Stream::Stderr)
    );
    // Reading /dev/zero grew the server by 1.5 GB in 1.6 s; the host process reads nothing now.
    assert!(
        rss_growth < 128 * 1024,
        "the test process grew by {rss_growth} KiB"
    );
}

#[tokio::test]
async fn a_file_larger_than_the_file_size_limit_is_refused() {
    let sb = Sandbox::new();
    let l = Limits {
        file_size_mib: 256,
        ..limits()
    };
    let script = "chunk = b'x' * (1 << 20)\nwith open('big.bin', 'wb') as f:\n    for i in range(257):\n        f.write(chunk)\nprint('wrote 257 MiB')\n";
    let (report, out) = run(&sb, script, l).await;
    let size = std::fs::symlink_metadata(sb.run_dir().join("big.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        size <= 256 << 20,
        "big.bin has {size} bytes under a 256 MiB limit"
    );
    assert!(
        !out.text(Stream::Stdout).contains("wrote 257 MiB"),
        "{}",
        out.text(Stream::Stdout)
    );
    // The write failed inside the guest (EFBIG, which WASI reports as an I/O error),
    // and the run names the limit.
    assert!(
        out.text(Stream::Stderr).contains("OSError"),
        "{}",
        out.text(Stream::Stderr)
    );
    assert!(
        matches!(
            report.outcome,
            Outcome::LimitExceeded {
                limit: Limit::FileSize,
                ..
            }
        ),
        "{:?}",
        report.outcome
    );
}

#[tokio::test]
async fn opening_4096_files_stops_at_the_open_files_limit() {
    let sb = Sandbox::new();
    let backend = backend();
    backend.prepare(&interpreter().path).await.unwrap();
    let l = Limits {
        open_files: 256,
        ..limits()
    };
    let script = "import sys\nfs = []\ntry:\n    for i in range(4096):\n        fs.append(open(f'f{i}', 'w'))\n    print('opened', len(fs))\nexcept OSError as e:\n    print('stopped at', len(fs), e.strerror)\n";
    let sink = Arc::new(Collect::default());
    let watch = Watch::start(512 * 1024);
    let report = backend
        .run(
            sb.spec(&interpreter(), script, "", l),
            sink.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let (_, fd_growth) = watch.finish();
    let text = sink.text(Stream::Stdout);
    assert!(
        report.outcome.success(),
        "{:?} {}",
        report.outcome,
        sink.text(Stream::Stderr)
    );
    let opened: usize = text
        .strip_prefix("stopped at ")
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not stopped: {text}"));
    // EMFILE reaches the guest as an OSError (WASI reports it as an I/O error).
    assert!(opened < 256, "{text}");
    // Each guest file was a descriptor of the server; now they belong to the host process.
    assert!(
        fd_growth < 64,
        "the test process gained {fd_growth} descriptors during the run"
    );
}
