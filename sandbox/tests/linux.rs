//! The `linux` backend, for real: namespaces, Landlock, rlimits, streaming, limits.

// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]
#![cfg(target_os = "linux")]

#[path = "linux/jail.rs"]
mod jail;
#[path = "support.rs"]
mod support;
#[path = "linux/warm.rs"]
mod warm;
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
    assert_eq!(
        p.namespaces,
        ["user", "mount", "pid", "net", "ipc", "uts", "cgroup"]
    );
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
