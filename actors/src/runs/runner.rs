//! Executing one run: the run directory, the input file as `argv[1]`, the sandbox
//! backend, live events, artifacts, and the run's record.
//!
//! Shared by the `RunScheduler` (single runs) and the `GroupExecutor` (pass runs). The
//! worker semaphore bounds how many sandboxed processes run at once, whoever asked.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use scriptorium_sandbox::{
    BackendKind, Backends, Interpreter, Outcome, OutputSink, RunSpec, Stream,
};

use crate::domain::clock;
use crate::domain::status::RunStatus;
use crate::domain::version::Version;
use crate::runs::events::EventKind;
use crate::runs::events::{EventLog, LiveLogs};
use crate::runs::run_store::{self, ARTIFACT_PAGE, Artifact, Collected, Finished, Log, Skipped};

/// The name of the input file in a run directory (passed as `argv[1]`).
pub(crate) const INPUT_FILE: &str = "input";
/// The runner's own files in a run directory.
pub(crate) const SIDE_DIR: &str = ".scriptorium";

/// One run, ready to execute.
pub struct RunJob {
    pub run_id: i64,
    pub script_id: i64,
    pub version: Version,
    pub ordering: String,
    pub content: String,
    /// The version's dependency lock: its environment is built (or found) first.
    pub lock: Option<crate::deps::lock::Lock>,
    pub input: Vec<u8>,
    pub interpreter: Interpreter,
    pub backend: BackendKind,
    /// The pass this run belongs to: its log receives the run's state changes.
    pub pass_log: Option<Arc<EventLog>>,
}

pub struct Runner {
    pub runs_dir: PathBuf,
    pub backends: Backends,
    /// The connection that writes runs, passes and events.
    pub db: Arc<Mutex<Connection>>,
    pub live: Arc<LiveLogs>,
    pub workers: Arc<Semaphore>,
    /// The environments built from dependency locks.
    pub envs: Arc<crate::deps::envs::Envs>,
}

/// Streams a run's output into its event log, and its pass's.
struct LogSink {
    run: Arc<EventLog>,
    pass: Option<(Arc<EventLog>, i64)>,
}

impl OutputSink for LogSink {
    fn line(&self, stream: Stream, line: &str) {
        self.run
            .push(EventKind::Log, json!({ "stream": stream, "line": line }));
        if let Some((pass, run_id)) = &self.pass {
            pass.push(
                EventKind::Log,
                json!({ "run_id": run_id, "stream": stream, "line": line }),
            );
        }
    }
}

impl Runner {
    /// Runs `f` with the writing connection on the blocking pool.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> crate::error::Result<T> + Send + 'static,
    ) -> crate::error::Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db.lock().unwrap_or_else(|p| p.into_inner())))
            .await?
    }

    /// Writes the events not yet in SQLite.
    pub async fn flush(&self, log: &Arc<EventLog>, which: Log) {
        let events = log.unflushed();
        if !events.is_empty()
            && let Err(e) = self
                .db(move |c| run_store::append_events(c, which, &events))
                .await
        {
            tracing::error!(error = %e, "cannot store run events");
        }
    }

    /// Executes `job` to its end and returns its final status.
    #[tracing::instrument(skip_all, fields(run_id = job.run_id, script = job.script_id))]
    pub async fn execute(&self, job: RunJob, cancel: CancellationToken) -> RunStatus {
        let log = self.live.add_run(job.run_id);
        // Wait for a worker, unless cancelled first.
        let permit = tokio::select! {
            p = self.workers.clone().acquire_owned() => p.ok(),
            _ = cancel.cancelled() => None,
        };
        if permit.is_none() {
            return self
                .end(
                    &job,
                    &log,
                    Ending::without_run(
                        RunStatus::Cancelled,
                        "the run was cancelled before it started",
                    ),
                )
                .await;
        }
        let started = clock::now();
        let id = job.run_id;
        if let Err(e) = self
            .db(move |c| run_store::mark_running(c, id, started))
            .await
        {
            tracing::error!(error = %e, "cannot mark the run running");
        }
        log.push(
            EventKind::Status,
            json!({ "status": RunStatus::Running, "started_at": clock::format(started) }),
        );
        if let Some(p) = &job.pass_log {
            p.push(EventKind::Run, json!({ "run_id": id, "script_id": job.script_id, "ordering": job.ordering, "status": RunStatus::Running }));
        }

        let flusher = {
            let log = log.clone();
            let db = self.db.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let events = log.unflushed();
                    if !events.is_empty() {
                        let db = db.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            run_store::append_events(
                                &db.lock().unwrap_or_else(|p| p.into_inner()),
                                Log::Run(id),
                                &events,
                            )
                        })
                        .await;
                    }
                }
            })
        };
        let result = self.run_in_sandbox(&job, log.clone(), cancel).await;
        flusher.abort();
        let dir = self.runs_dir.join(id.to_string());
        let over_quota = matches!(&result, Ok(r) if matches!(r.outcome, Outcome::LimitExceeded { limit: scriptorium_sandbox::Limit::Disk, .. }));
        let artifacts = tokio::task::spawn_blocking(move || {
            if over_quota {
                // A run over its disk quota keeps none of it.
                remove_written(&dir);
            }
            collect_artifacts(&dir)
        })
        .await
        .unwrap_or_default();
        let ending = match result {
            Ok(report) => Ending {
                status: match &report.outcome {
                    o if o.success() => RunStatus::Succeeded,
                    Outcome::Cancelled => RunStatus::Cancelled,
                    _ => RunStatus::Failed,
                },
                exit_code: match &report.outcome {
                    Outcome::Exited { code } => Some(*code),
                    _ => None,
                },
                limit: match &report.outcome {
                    Outcome::LimitExceeded { limit, .. } => serde_json::to_value(limit)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from)),
                    _ => None,
                },
                message: if over_quota {
                    format!(
                        "{}; the files it wrote were removed",
                        report.outcome.message()
                    )
                } else {
                    report.outcome.message()
                },
                started: Some(started),
                artifacts,
                protections: serde_json::to_value(&report.protections).ok(),
                output_bytes: report.output_bytes,
                warm_start: Some(report.warm_start),
            },
            Err(e) => Ending {
                started: Some(started),
                artifacts,
                ..Ending::without_run(RunStatus::Error, &e.to_string())
            },
        };
        self.end(&job, &log, ending).await
    }

    async fn run_in_sandbox(
        &self,
        job: &RunJob,
        log: Arc<EventLog>,
        cancel: CancellationToken,
    ) -> Result<scriptorium_sandbox::RunReport, scriptorium_sandbox::SandboxError> {
        let dir = self.runs_dir.join(job.run_id.to_string());
        let input = dir.join(INPUT_FILE);
        let script = dir.join(SIDE_DIR).join("script.py");
        let (i, s, data, content) = (
            input.clone(),
            script.clone(),
            job.input.clone(),
            job.content.clone(),
        );
        tokio::task::spawn_blocking(move || write_run_files(&i, &data, &s, &content))
            .await
            .map_err(std::io::Error::other)??;
        let interpreter = self
            .interpreter_with_deps(job, &dir.join(SIDE_DIR), &log)
            .await?;
        let spec = RunSpec {
            interpreter,
            script,
            input: Some(input),
            args: Vec::new(),
            workdir: dir,
            limits: job.interpreter.limits.clone(),
        };
        let backend = self.backends.get(job.backend)?;
        let sink = LogSink {
            run: log.clone(),
            pass: job.pass_log.clone().map(|p| (p, job.run_id)),
        };
        backend.run(spec, Arc::new(sink), cancel).await
    }

    /// Builds the missing dependency environments of `jobs` (linux runs with a lock),
    /// one at a time. Failures are left for each run to report as its own.
    pub async fn prepare_envs(&self, jobs: impl Iterator<Item = &RunJob>) {
        let wanted: Vec<_> = jobs
            .filter(|j| j.backend == BackendKind::Linux)
            .filter_map(|j| Some((j.interpreter.clone(), j.lock.clone()?, j.content.clone())))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let envs = self.envs.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for (interp, lock, script) in wanted {
                if let Err(e) = envs.ensure(&interp, &lock, &script) {
                    tracing::warn!(error = %e, "a dependency environment could not be built before its group");
                }
            }
        })
        .await;
    }

    /// The interpreter for `job`: as chosen, or, when the version has a lock, with the
    /// lock's environment (built now if missing) on its path. A failed build fails the
    /// run with uv's reason. Records the lock's hash on the run.
    async fn interpreter_with_deps(
        &self,
        job: &RunJob,
        side: &Path,
        log: &Arc<EventLog>,
    ) -> Result<Interpreter, scriptorium_sandbox::SandboxError> {
        let Some(lock) = job.lock.clone() else {
            return Ok(job.interpreter.clone());
        };
        let (id, hash) = (job.run_id, lock.hash.clone());
        if let Err(e) = self
            .db(move |c| crate::deps::envs::record_run_lock(c, id, &hash))
            .await
        {
            tracing::error!(error = %e, "cannot record the run's lock");
        }
        let envs = self.envs.clone();
        let (interp, backend) = (job.interpreter.clone(), job.backend);
        let (script, side) = (job.content.clone(), side.to_path_buf());
        let started = std::time::Instant::now();
        let (interp, env) = tokio::task::spawn_blocking(move || {
            envs.for_run(&interp, backend, &lock, &script, &side)
        })
        .await
        .map_err(|e| scriptorium_sandbox::SandboxError::Setup(e.to_string()))?
        .map_err(|e| scriptorium_sandbox::SandboxError::Setup(e.to_string()))?;
        let what = if env.built { "built" } else { "reused" };
        log.push(
            EventKind::Log,
            json!({ "stream": "stderr", "line": format!(
                "[scriptorium] dependencies: environment {} {what} ({:.2} s)",
                env.dir.file_name().unwrap_or_default().to_string_lossy(),
                started.elapsed().as_secs_f64()
            ) }),
        );
        Ok(interp)
    }

    /// Records the end of a run, emits `complete`, and retires its live log.
    pub async fn end(&self, job: &RunJob, log: &Arc<EventLog>, e: Ending) -> RunStatus {
        let ended = clock::now();
        let id = job.run_id;
        let st = e.status;
        let duration = e.started.map(|s| (ended - s) as f64 / 100.0);
        let complete = json!({
            "status": st, "exit_code": e.exit_code, "limit": e.limit, "message": e.message,
            "duration": duration, "output_bytes": e.output_bytes, "warm_start": e.warm_start,
            // Bounded as in the run record; the rest is paged from the artifacts route.
            "artifacts": e.artifacts.files.iter().take(ARTIFACT_PAGE).collect::<Vec<_>>(),
            "artifact_count": e.artifacts.files.len(),
            "skipped": e.artifacts.skipped.iter().take(ARTIFACT_PAGE).collect::<Vec<_>>(),
        });
        let stored = self
            .db(move |c| {
                run_store::finish_run(
                    c,
                    id,
                    &Finished {
                        status: e.status,
                        started_at: e.started,
                        ended_at: ended,
                        exit_code: e.exit_code,
                        limit: e.limit.as_deref(),
                        message: &e.message,
                        output_bytes: e.output_bytes,
                        warm_start: e.warm_start,
                        artifacts: &e.artifacts,
                        protections: e.protections.as_ref(),
                    },
                )
            })
            .await;
        if let Err(err) = stored {
            tracing::error!(error = %err, "cannot record the end of the run");
        }
        log.push(EventKind::Complete, complete);
        log.finish();
        self.flush(log, Log::Run(id)).await;
        self.live.remove_run(id);
        if let Some(p) = &job.pass_log {
            p.push(
                EventKind::Run,
                json!({ "run_id": id, "script_id": job.script_id, "ordering": job.ordering, "status": st, "duration": duration }),
            );
        }
        tracing::info!(status = %st, "run ended");
        st
    }
}

/// How a run ended.
pub struct Ending {
    pub status: RunStatus,
    pub started: Option<clock::Centis>,
    pub exit_code: Option<i32>,
    pub message: String,
    pub limit: Option<String>,
    pub artifacts: Collected,
    pub protections: Option<serde_json::Value>,
    pub output_bytes: u64,
    pub warm_start: Option<bool>,
}

impl Ending {
    /// A run that ends without having run (cancelled while queued, skipped, …).
    pub fn without_run(status: RunStatus, message: &str) -> Ending {
        Ending {
            status,
            started: None,
            exit_code: None,
            message: message.into(),
            limit: None,
            artifacts: Collected::default(),
            protections: None,
            output_bytes: 0,
            warm_start: None,
        }
    }
}

/// The run directory with its input file and, beside it, the script.
fn write_run_files(input: &Path, data: &[u8], script: &Path, content: &str) -> std::io::Result<()> {
    if let Some(side) = script.parent() {
        std::fs::create_dir_all(side)?;
    }
    std::fs::write(input, data)?;
    std::fs::write(script, content)
}

/// The most artifacts, and skipped entries, listed for one run; a run that left more
/// is listed as truncated (the disk quota keeps runs well below this).
pub(crate) const MAX_LISTED: usize = 20_000;

/// What the script left: everything in the run directory but the input and the runner's
/// own files. Regular files are artifacts; symbolic links are never followed and FIFOs,
/// sockets and devices never opened: they are listed as skipped. No file is read.
pub(crate) fn collect_artifacts(dir: &Path) -> Collected {
    use scriptorium_sandbox::fswalk::{self, Flow, Kind};
    let mut out = Collected::default();
    let options = fswalk::Options {
        sorted: true,
        ..Default::default()
    };
    let walked = fswalk::walk(dir, options, |e| {
        let name = e.path.to_string_lossy().replace('\\', "/");
        if name == INPUT_FILE || name == SIDE_DIR {
            return Flow::Skip;
        }
        if out.files.len() + out.skipped.len() >= MAX_LISTED {
            out.truncated = true;
            return Flow::Stop;
        }
        match e.kind {
            Kind::Dir => {}
            Kind::File => out.files.push(Artifact {
                content_type: content_type(&name).to_string(),
                name,
                size: e.len,
            }),
            other => out.skipped.push(Skipped {
                name,
                kind: other.describe().to_string(),
            }),
        }
        Flow::Continue
    });
    if let Ok(w) = walked {
        out.truncated |= w.too_deep || w.unreadable > 0;
    }
    out
}

/// Removes what a run wrote to its directory (not the input or the runner's files).
/// Links are removed, never followed.
fn remove_written(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name == INPUT_FILE || name == SIDE_DIR {
            continue;
        }
        let path = e.path();
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(err) = removed {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove a file of a run over its disk quota");
        }
    }
}

/// The media type of an artifact, by extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "stl" => "model/stl",
        "glb" => "model/gltf-binary",
        "gltf" => "model/gltf+json",
        "step" | "stp" => "model/step",
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        "txt" | "log" | "md" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_background_task_is_the_servers_fault_not_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let runner = Runner {
            runs_dir: d.path().join("runs"),
            backends: Backends::default(),
            db: Arc::new(Mutex::new(crate::db::open(&d.path().join("db")).unwrap())),
            live: Arc::default(),
            workers: Arc::new(Semaphore::new(1)),
            envs: Arc::new(crate::deps::envs::Envs::new(
                d.path(),
                crate::deps::lock::UvConfig::for_data_dir(d.path()),
            )),
        };
        let err = runner
            .db(|_| -> crate::error::Result<()> { panic!("a bug in a database task") })
            .await
            .unwrap_err();
        assert!(
            matches!(err, crate::error::RepoError::Background(_)),
            "{err:?}"
        );
    }

    #[test]
    fn artifacts_skip_input_side_files_and_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(INPUT_FILE), "in").unwrap();
        std::fs::create_dir_all(d.path().join(SIDE_DIR)).unwrap();
        std::fs::write(d.path().join(SIDE_DIR).join("script.py"), "x").unwrap();
        std::fs::create_dir(d.path().join("out")).unwrap();
        std::fs::write(d.path().join("out/part.stl"), "solid").unwrap();
        std::fs::write(d.path().join("a.glb"), "glTF").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let collected = collect_artifacts(d.path());
        let names: Vec<_> = collected
            .files
            .into_iter()
            .map(|a| (a.name, a.content_type))
            .collect();
        assert_eq!(
            names,
            [
                ("a.glb".to_string(), "model/gltf-binary".to_string()),
                ("out/part.stl".to_string(), "model/stl".to_string())
            ]
        );
        assert_eq!(
            collected.skipped,
            [Skipped {
                name: "link".into(),
                kind: "symbolic link".into()
            }]
        );
    }

    #[test]
    fn the_listing_is_bounded_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..MAX_LISTED + 5 {
            std::fs::write(d.path().join(format!("{i:06}")), "").unwrap();
        }
        let collected = collect_artifacts(d.path());
        assert_eq!(collected.files.len(), MAX_LISTED);
        assert!(collected.truncated);
    }

    #[test]
    fn removing_an_over_quota_runs_files_keeps_the_input_and_follows_no_link() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "precious").unwrap();
        std::fs::write(d.path().join(INPUT_FILE), "in").unwrap();
        std::fs::create_dir_all(d.path().join(SIDE_DIR)).unwrap();
        std::fs::create_dir_all(d.path().join("big/deeper")).unwrap();
        std::fs::write(d.path().join("big/deeper/x"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("big/out")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        remove_written(d.path());
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, [SIDE_DIR, INPUT_FILE]);
        assert_eq!(
            std::fs::read_to_string(outside.path().join("keep")).unwrap(),
            "precious"
        );
    }
}
