//! Warm starts: a spare sandbox whose interpreter has imported its `warm` modules
//! (e.g. build123d, seconds of import) and waits for a run.
//!
//! A spare is made exactly as a run's sandbox is (minimal root, namespaces, seccomp,
//! Landlock, rlimits, a uid of its own), for a directory `.warm-…` beside the run directories, and serves
//! one run only, so nothing of one run reaches another. When a run comes, the run
//! directory's files are moved into the spare's directory, which is then renamed to the
//! run directory: Landlock rules hold the directory itself, not its name. With a root
//! server the spare was shown only its own directory, and the renamed one is bound into
//! its mount namespace at the run's path ([`super::child::inject`]); without root it was
//! shown the whole runs directory (Landlock keeps it to its own). Either way the script
//! sees its files at the same paths as in a cold run. The spare's runner
//! (`runners/warm.py`) then reads the run's arguments from stdin, sets the CPU limit to
//! what the import used plus the run's own, and runs the script as `python -I -u` would.
//!
//! A spare is keyed by interpreter, limits and runs directory. Spares are made in the
//! background: at start-up ([`WarmMode::Eager`](super::WarmMode)) and after each run.
//! Anything that goes wrong with a spare means a cold start, never a failed run.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::Sandbox;
use super::launch::{Launch, RemoveDir, Started, chown_tree};
use crate::{Interpreter, Limits, RunSpec, WarmState};

/// The spare's runner, passed with `-c`.
const RUNNER: &str = include_str!("../../runners/warm.py");
/// What the runner writes on stdout once the imports are done (or failed).
const READY: &[u8] = b"\0scriptorium-warm-ready\n";
const FAILED: &[u8] = b"\0scriptorium-warm-failed: ";
/// CPU seconds a spare may spend importing, on top of its run's own limit.
const IMPORT_CPU: u64 = 120;
/// How long a spare may take to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// After a spare failed, runs start cold this long before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(300);
/// The prefix of a spare's directory name.
const DIR_PREFIX: &str = ".warm-";

/// A ready spare.
pub(super) struct Spare {
    started: Started,
    /// The spare's directory until a run adopts it.
    dir: RemoveDir,
}

type Pending = oneshot::Receiver<Result<Spare, String>>;

#[derive(Default)]
pub(super) struct Pool {
    slots: Mutex<HashMap<String, Slot>>,
    /// Runs directories already cleared of spares a killed server left behind.
    swept: Mutex<HashSet<PathBuf>>,
}

#[derive(Default)]
struct Slot {
    /// The spare being made or ready; taken by the next run.
    spare: Option<Pending>,
    ready: bool,
    /// Which spare `ready` and `failed` speak of.
    generation: u64,
    failed: Option<(String, Instant)>,
}

fn key(interp: &Interpreter, limits: &Limits, runs_dir: &Path) -> String {
    format!(
        "{}|{}|{:?}|{:?}|{limits:?}|{}",
        interp.id,
        interp.path.display(),
        interp.wrapper,
        interp.warm,
        runs_dir.display()
    )
}

/// Can `spec` be run by a spare? Its files must lie in its run directory (the spare
/// sees no other place) and its arguments must be text (they travel as JSON).
pub(super) fn eligible(spec: &RunSpec) -> bool {
    spec.workdir.parent().is_some_and(runs_dir_allowed)
        && spec.script.starts_with(&spec.workdir)
        && spec
            .input
            .as_ref()
            .is_none_or(|i| i.starts_with(&spec.workdir))
        && spec.python_args().iter().all(|a| a.to_str().is_some())
}

/// A spare shows its whole runs directory (Landlock keeps it to its own run). Below
/// `/tmp` that view would be mounted on the sandbox's private, writable `/tmp`, and
/// Landlock grants what an ancestor on the visible path allows: there, runs start cold.
pub(super) fn runs_dir_allowed(runs_dir: &Path) -> bool {
    runs_dir.is_absolute() && !runs_dir.starts_with("/tmp")
}

impl Pool {
    /// The spare for runs like this one, if one is ready or being made.
    pub(super) fn take(
        &self,
        interp: &Interpreter,
        limits: &Limits,
        runs_dir: &Path,
    ) -> Option<impl Future<Output = Result<Spare, String>> + use<>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get_mut(&key(interp, limits, runs_dir))?;
        let pending = slot.spare.take()?;
        slot.ready = false;
        Some(async move {
            pending
                .await
                .unwrap_or_else(|_| Err("the spare was dropped".into()))
        })
    }

    /// Starts making a spare for runs like this one unless there is one, or one failed
    /// a short while ago.
    pub(super) fn ensure(
        self: &Arc<Self>,
        sandbox: &Arc<Sandbox>,
        interp: &Interpreter,
        limits: &Limits,
        runs_dir: &Path,
    ) {
        let key = key(interp, limits, runs_dir);
        let generation = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let slot = slots.entry(key.clone()).or_default();
            if slot.spare.is_some()
                || slot
                    .failed
                    .as_ref()
                    .is_some_and(|(_, at)| at.elapsed() < RETRY_AFTER)
            {
                return;
            }
            let (tx, rx) = oneshot::channel();
            slot.spare = Some(rx);
            slot.ready = false;
            slot.generation += 1;
            let generation = slot.generation;
            let (pool, sandbox) = (Arc::downgrade(self), sandbox.clone());
            let (interp, limits, runs_dir) =
                (interp.clone(), limits.clone(), runs_dir.to_path_buf());
            tokio::spawn(async move {
                if let Some(p) = pool.upgrade() {
                    p.sweep(&runs_dir);
                }
                let began = Instant::now();
                let made = make(&sandbox, &interp, &limits, &runs_dir).await;
                match &made {
                    Ok(_) => {
                        tracing::info!(interpreter = %interp.id, seconds = began.elapsed().as_secs_f64(), "a warm spare is ready")
                    }
                    Err(e) => {
                        tracing::warn!(interpreter = %interp.id, error = %e, "cannot make a warm spare; runs start cold")
                    }
                }
                record(&pool, &key, generation, &made);
                let _ = tx.send(made);
            });
            generation
        };
        tracing::debug!(interpreter = %interp.id, generation, "making a warm spare");
    }

    pub(super) fn state(
        &self,
        interp: &Interpreter,
        limits: &Limits,
        runs_dir: &Path,
    ) -> WarmState {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(&key(interp, limits, runs_dir)) {
            None => WarmState::Idle,
            Some(s) if s.spare.is_some() && s.ready => WarmState::Ready,
            Some(Slot {
                failed: Some((problem, at)),
                ..
            }) if at.elapsed() < RETRY_AFTER => WarmState::Failed {
                problem: problem.clone(),
            },
            Some(s) if s.spare.is_some() => WarmState::Warming,
            Some(_) => WarmState::Idle,
        }
    }

    /// Removes the spare directories a killed server of this machine left in `runs_dir`.
    fn sweep(&self, runs_dir: &Path) {
        if !self
            .swept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(runs_dir.to_path_buf())
        {
            return;
        }
        let Ok(entries) = std::fs::read_dir(runs_dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name
                .strip_prefix(DIR_PREFIX)
                .or_else(|| name.strip_prefix(&format!(".{DIR_PREFIX}")))
            else {
                continue;
            };
            let pid: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
            // Only the leftovers of servers that are gone (the directory names their pid).
            let gone = |pid: i32| {
                // SAFETY: kill with signal 0 only asks whether the process exists.
                (unsafe { libc::kill(pid, 0) }) != 0
            };
            if pid.is_some_and(|pid| pid != std::process::id() as i32 && gone(pid)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Notes how making spare `generation` went, unless a newer one replaced it.
fn record(pool: &Weak<Pool>, key: &str, generation: u64, made: &Result<Spare, String>) {
    let Some(pool) = pool.upgrade() else { return };
    let mut slots = pool.slots.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(slot) = slots.get_mut(key)
        && slot.generation == generation
    {
        match made {
            Ok(_) => {
                slot.ready = slot.spare.is_some();
                slot.failed = None;
            }
            Err(e) => slot.failed = Some((e.clone(), Instant::now())),
        }
    }
}

/// Starts a spare and waits until its imports are done.
async fn make(
    sandbox: &Sandbox,
    interp: &Interpreter,
    limits: &Limits,
    runs_dir: &Path,
) -> Result<Spare, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = runs_dir.join(format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = RemoveDir(dir);
    let mut args: Vec<OsString> = vec!["-I".into(), "-u".into(), "-c".into(), RUNNER.into()];
    args.extend(interp.warm.iter().map(OsString::from));
    let mut started = sandbox
        .start(Launch {
            program: &interp.path,
            interpreter: Some(interp),
            args,
            env: Vec::new(),
            read: Vec::new(),
            workdir: &dir.0,
            // A root server shows the spare only its own directory and, at its run, the
            // run directory (see `claim`); otherwise the runs directory, kept to its own
            // by Landlock.
            expose: if sandbox.support.root {
                &dir.0
            } else {
                runs_dir
            },
            // Whatever the imports write to ~ stays out of the run directory.
            home: Path::new("/tmp"),
            limits,
            address_space_mib: None,
            extra_cpu: IMPORT_CPU,
            stdin: true,
            trace: false,
        })
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(READY_TIMEOUT, wait_ready(&mut started.stdout)).await {
        Err(_) => Err(format!(
            "importing {} took longer than {} s",
            interp.warm.join(", "),
            READY_TIMEOUT.as_secs()
        )),
        Ok(Err(problem)) => {
            // A sandbox that could not be set up says why on the report pipe.
            let mut report = String::new();
            let mut file = tokio::fs::File::from_std(std::fs::File::from(started.report_r));
            let _ = tokio::time::timeout(Duration::from_secs(1), file.read_to_string(&mut report))
                .await;
            Err(if report.trim().is_empty() {
                problem
            } else {
                format!("the sandbox could not be set up: {}", report.trim())
            })
        }
        Ok(Ok(())) => Ok(Spare { started, dir }),
    }
}

/// Reads the spare's stdout up to the ready marker; anything before it is dropped.
async fn wait_ready(stdout: &mut tokio::process::ChildStdout) -> Result<(), String> {
    let mut seen: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stdout
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the spare: {e}"))?;
        if n == 0 {
            let text = String::from_utf8_lossy(&seen);
            return Err(
                match text.split_once(std::str::from_utf8(FAILED).expect("ascii")) {
                    Some((_, why)) => format!("importing failed: {}", why.trim()),
                    None => "the spare's interpreter ended before it was ready".into(),
                },
            );
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.ends_with(READY) {
            return Ok(());
        }
        if seen.len() > 64 * 1024 {
            seen.drain(..seen.len() - 1024);
        }
    }
}

impl Spare {
    /// Hands `spec` to this spare: its run directory becomes the spare's, and the runner
    /// gets the arguments. On error nothing of the run directory is lost and the run can
    /// start cold.
    pub(super) async fn claim(mut self, spec: &RunSpec, root: bool) -> Result<Started, String> {
        if self.started.child.has_ended() {
            return Err("the spare had ended".into());
        }
        adopt(&self.dir.0, &spec.workdir)
            .map_err(|e| format!("cannot move the run directory into the spare: {e}"))?;
        // A root server gave the spare a uid of its own: the run directory becomes its.
        if root && let Some(uid) = self.started.protections.uid {
            chown_tree(&spec.workdir, uid, uid)
                .map_err(|e| format!("cannot hand the run directory over: {e}"))?;
        }
        if root {
            let pid = self.started.child.id().ok_or("the spare had ended")?;
            let dir = spec.workdir.clone();
            tokio::task::spawn_blocking(move || super::child::inject(pid, &dir))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot show the run directory to the spare: {e}"))?;
        }
        // The arguments after `-I -u`, exactly as a cold start passes them.
        let argv: Vec<String> = spec
            .python_args()
            .into_iter()
            .skip(2)
            .filter_map(|a| a.into_string().ok())
            .collect();
        let request = serde_json::json!({
            "cwd": spec.workdir, "home": spec.workdir, "argv": argv, "cpu_seconds": spec.limits.cpu_seconds,
        });
        let mut line = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut stdin = self.started.stdin.take().ok_or("the spare has no stdin")?;
        stdin
            .write_all(&line)
            .await
            .map_err(|e| format!("the spare did not take the run: {e}"))?;
        drop(stdin);
        Ok(self.started)
    }
}

/// Moves the files of `run` into `spare`, then renames `spare` to `run`. On failure
/// the files are moved back.
fn adopt(spare: &Path, run: &Path) -> std::io::Result<()> {
    // The spare's directory is empty unless an import wrote there.
    for e in std::fs::read_dir(spare)?.flatten() {
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    let names: Vec<OsString> = std::fs::read_dir(run)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    let back = |moved: &[OsString]| {
        for n in moved {
            let _ = std::fs::rename(spare.join(n), run.join(n));
        }
    };
    for (i, n) in names.iter().enumerate() {
        if let Err(e) = std::fs::rename(run.join(n), spare.join(n)) {
            back(&names[..i]);
            return Err(e);
        }
    }
    // Replaces the now empty run directory in one step.
    if let Err(e) = std::fs::rename(spare, run) {
        back(&names);
        return Err(e);
    }
    Ok(())
}
