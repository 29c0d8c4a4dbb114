//! The job-object backend under attack, on Windows or under Wine
//! (`scripts/test-windows.sh` runs these with `wine64`). The "script" is
//! `scriptorium-job-probe` (no Windows CPython comes from the package registries): its
//! script file's first line says what to try.
//!
//! Each limit's test checks the run record against what happened: where the record
//! says the job object enforces a limit, the attack must fail; where it lists the limit
//! in `protections.missing` (Wine), the attack succeeds, and the test says so. A record
//! that claims a protection the machine did not give fails either way.
// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]
#![cfg(windows)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scriptorium_sandbox::windows::{WindowsBackend, job};
use scriptorium_sandbox::{
    Backend, BackendKind, Collect, Interpreter, InterpreterKind, Limit, Limits, Outcome, RunReport,
    RunSpec, Stream,
};
use tokio_util::sync::CancellationToken;

/// The probe, beside this test's own executable (`…/debug/deps/windows-….exe`).
fn probe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let p = debug.join("scriptorium-job-probe.exe");
    assert!(p.is_file(), "build the probe first: {}", p.display());
    p
}

fn interpreter(path: PathBuf) -> Interpreter {
    Interpreter {
        id: "job-probe".into(),
        kind: InterpreterKind::Native,
        implementation: "probe".into(),
        version: "0".into(),
        path,
        prefix: None,
        env_prefix: None,
        sys_path: Vec::new(),
        backends: vec![BackendKind::Windows],
        default_backend: BackendKind::Windows,
        available: true,
        problem: None,
        source: "configured",
        read_paths: Vec::new(),
        limits: Limits::default(),
        description: None,
        wrapper: None,
        warm: Vec::new(),
    }
}

struct Ran {
    report: RunReport,
    out: Arc<Collect>,
    /// The run directory, kept until the test ends.
    _dir: tempfile::TempDir,
}

impl Ran {
    fn stdout(&self) -> String {
        self.out.text(Stream::Stdout)
    }

    /// Whether the record lists `protection` as not enforced here.
    fn missing(&self, protection: &str) -> bool {
        self.report
            .protections
            .missing
            .iter()
            .any(|m| m.starts_with(protection))
    }
}

async fn run_with(script: &str, limits: Limits, cancel: CancellationToken) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.probe");
    std::fs::write(&file, script).unwrap();
    let input = dir.path().join("input");
    std::fs::write(&input, "the input\r\n").unwrap();
    let out = Arc::new(Collect(Default::default()));
    let spec = RunSpec {
        interpreter: interpreter(probe()),
        script: file,
        input: Some(input),
        args: Vec::new(),
        workdir: dir.path().to_path_buf(),
        limits,
    };
    let report = WindowsBackend
        .run(spec, out.clone(), cancel)
        .await
        .expect("the run starts");
    assert!(report.protections.job_object, "{:?}", report.protections);
    assert_eq!(report.protections.backend, Some(BackendKind::Windows));
    Ran {
        report,
        out,
        _dir: dir,
    }
}

async fn run(script: &str, limits: Limits) -> Ran {
    run_with(script, limits, CancellationToken::new()).await
}

fn limits() -> Limits {
    Limits {
        wall_seconds: 30.0,
        ..Limits::default()
    }
}

/// The file a probe child writes as soon as it runs.
fn started_file(late: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}.started", late.display()))
}

/// Prints what this machine did not enforce, for the test log.
fn note(ran: &Ran, protection: &str) {
    if ran.missing(protection) {
        println!(
            "NOT ENFORCED here, and the run record says so: {:?}",
            ran.report.protections.missing
        );
    }
}

#[tokio::test]
async fn a_script_runs_with_its_input_and_exit_code() {
    let ran = run("print hello from the job", limits()).await;
    assert_eq!(ran.report.outcome, Outcome::Exited { code: 0 });
    assert_eq!(ran.stdout(), "hello from the job\ninput: the input\n");
}

#[tokio::test]
async fn nothing_of_the_servers_environment_reaches_the_script() {
    // SAFETY: on Windows `set_var` is SetEnvironmentVariableW, safe alongside readers.
    unsafe { std::env::set_var("OPENROUTER_API_KEY", "sk-or-secret-of-the-server") };
    let ran = run("env", limits()).await;
    let env = ran.stdout();
    assert!(!env.contains("sk-or-secret"), "{env}");
    let names: Vec<String> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_ascii_uppercase()))
        .filter(|k| !k.is_empty())
        .collect();
    for n in &names {
        assert!(
            ["SYSTEMROOT", "TEMP", "TMP", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING"]
                .contains(&n.as_str())
                // Wine adds its own loader variables and SystemDrive to every process
                // it starts (none of them the server's).
                || n.starts_with("WINE")
                || n == "SYSTEMDRIVE",
            "unexpected variable {n} in {env}"
        );
    }
}

/// A process the script leaves behind would write its file 3 s later.
#[tokio::test]
async fn kill_on_job_close_no_process_outlives_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.txt");
    let ran = run(&format!("orphan 3 {}", late.display()), limits()).await;
    assert_eq!(ran.report.outcome, Outcome::Exited { code: 0 });
    assert!(ran.stdout().contains("child started"), "{}", ran.stdout());
    std::thread::sleep(Duration::from_secs(5));
    assert!(started_file(&late).exists(), "the child never ran");
    assert!(!late.exists(), "a process of the run outlived it");
    assert!(!ran.missing(job::KILL_ON_CLOSE));
}

#[tokio::test]
async fn wall_time_kills_the_script_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.txt");
    let started = Instant::now();
    let ran = run(
        &format!("hold 4 {}", late.display()),
        Limits {
            wall_seconds: 1.5,
            ..Limits::default()
        },
    )
    .await;
    assert!(
        matches!(
            ran.report.outcome,
            Outcome::LimitExceeded {
                limit: Limit::WallTime,
                ..
            }
        ),
        "{:?}",
        ran.report.outcome
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(5));
    assert!(started_file(&late).exists(), "the child never ran");
    assert!(!late.exists(), "the held child outlived the killed run");
}

#[tokio::test]
async fn cancel_ends_the_whole_job() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.txt");
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.cancel();
    });
    let ran = run_with(&format!("hold 4 {}", late.display()), limits(), cancel).await;
    assert_eq!(ran.report.outcome, Outcome::Cancelled);
    std::thread::sleep(Duration::from_secs(5));
    assert!(started_file(&late).exists(), "the child never ran");
    assert!(!late.exists(), "a process outlived the cancelled run");
}

#[tokio::test]
async fn output_cap_stops_the_script() {
    let ran = run(
        "flood 50000000",
        Limits {
            output_bytes: 20_000,
            ..limits()
        },
    )
    .await;
    assert!(
        matches!(
            ran.report.outcome,
            Outcome::LimitExceeded {
                limit: Limit::Output,
                ..
            }
        ),
        "{:?}",
        ran.report.outcome
    );
    assert!(ran.report.output_bytes <= 20_000);
    assert!(ran.report.duration < Duration::from_secs(20));
}

#[tokio::test]
async fn active_process_limit() {
    let ran = run(
        "spawn 6 20",
        Limits {
            processes: 3,
            ..limits()
        },
    )
    .await;
    let out = ran.stdout();
    let started: u32 = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"));
    note(&ran, job::ACTIVE_PROCESSES);
    if ran.missing(job::ACTIVE_PROCESSES) {
        assert_eq!(started, 6, "the record says unenforced, but it was: {out}");
    } else {
        // Three processes in the job: the script and two children.
        assert!(started <= 2, "the job allowed {started} children: {out}");
    }
}

#[tokio::test]
async fn per_process_memory_limit() {
    let ran = run(
        "alloc 400",
        Limits {
            memory_mib: 64,
            ..limits()
        },
    )
    .await;
    note(&ran, job::PROCESS_MEMORY);
    if ran.missing(job::PROCESS_MEMORY) {
        assert_eq!(ran.report.outcome, Outcome::Exited { code: 0 });
        assert!(ran.stdout().contains("allocated 400 MiB"));
    } else {
        assert!(
            matches!(
                ran.report.outcome,
                Outcome::LimitExceeded {
                    limit: Limit::Memory,
                    ..
                }
            ),
            "{:?}",
            ran.report.outcome
        );
    }
}

#[tokio::test]
async fn per_process_cpu_time_limit() {
    let ran = run(
        "spin 4",
        Limits {
            cpu_seconds: 1,
            ..limits()
        },
    )
    .await;
    note(&ran, job::PROCESS_TIME);
    if ran.missing(job::PROCESS_TIME) {
        assert_eq!(ran.report.outcome, Outcome::Exited { code: 0 });
    } else {
        assert!(
            matches!(
                ran.report.outcome,
                Outcome::LimitExceeded {
                    limit: Limit::CpuTime,
                    ..
                }
            ),
            "{:?}",
            ran.report.outcome
        );
    }
}

/// With `JOB_OBJECT_UILIMIT_GLOBALATOMS` the script gets an atom table of its own: an
/// atom it adds is not in the global table the server sees.
#[tokio::test]
async fn ui_restrictions_keep_global_atoms_private() {
    use windows_sys::Win32::System::DataExchange::{GlobalDeleteAtom, GlobalFindAtomW};
    let name = format!("scriptorium-probe-{}", std::process::id());
    let ran = run(&format!("atom {name}"), limits()).await;
    assert_eq!(ran.report.outcome, Outcome::Exited { code: 0 });
    let wide: Vec<u16> = name.encode_utf16().chain([0]).collect();
    // SAFETY: a NUL-terminated UTF-16 string.
    let atom = unsafe { GlobalFindAtomW(wide.as_ptr()) };
    note(&ran, job::UI_RESTRICTIONS);
    if atom != 0 {
        // SAFETY: deleting the atom just found.
        unsafe { GlobalDeleteAtom(atom) };
    }
    if ran.missing(job::UI_RESTRICTIONS) {
        assert_ne!(
            atom, 0,
            "the record says unenforced, but the atom stayed private"
        );
    } else {
        assert_eq!(
            atom,
            0,
            "the script's atom reached the global table: {}",
            ran.stdout()
        );
    }
}

/// The record names the machine: under Wine the unenforced limits are listed.
#[test]
fn under_wine_the_record_lists_what_wine_does_not_enforce() {
    let missing = job::not_enforced();
    match job::wine_version() {
        Some(v) => {
            println!("Wine {v}: not enforced: {missing:?}");
            assert!(!missing.is_empty());
            assert!(missing.iter().all(|m| m.contains("Wine")));
            assert!(!missing.iter().any(|m| m.starts_with(job::KILL_ON_CLOSE)));
        }
        None => assert!(missing.is_empty(), "{missing:?}"),
    }
}

/// The server dies mid-run (killed, no clean-up): its handle to the job closes with it,
/// and the job takes the script and its children along. The "server" is this test
/// binary run again with `SCRIPTORIUM_TEST_HOLD` set.
#[tokio::test]
async fn no_process_outlives_a_killed_server() {
    if let Some(late) = std::env::var_os("SCRIPTORIUM_TEST_HOLD") {
        let ran = run(
            &format!("hold 4 {}", PathBuf::from(late).display()),
            limits(),
        )
        .await;
        panic!("the held run ended: {:?}", ran.report.outcome);
    }
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.txt");
    let mut server = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "no_process_outlives_a_killed_server",
            "--exact",
            "--nocapture",
        ])
        .env("SCRIPTORIUM_TEST_HOLD", &late)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Until the run's child has started (it writes its file 4 s later).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started_file(&late).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        started_file(&late).exists(),
        "the run's child never started"
    );
    assert!(
        server.try_wait().unwrap().is_none(),
        "the holding server ended early"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !late.exists(),
        "a process of the run outlived the killed server"
    );
}
