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

use scriptorium_sandbox::{BackendKind, Backends, Interpreter, Outcome, OutputSink, RunSpec, Stream};

use crate::clock;
use crate::events::{EventLog, LiveLogs};
use crate::runstore::{self, Artifact, Finished, Log, status};
use crate::version::Version;

/// The name of the input file in a run directory (passed as `argv[1]`).
pub const INPUT_FILE: &str = "input";
/// The runner's own files in a run directory.
pub const SIDE_DIR: &str = ".scriptorium";

/// One run, ready to execute.
pub struct RunJob {
    pub run_id: i64,
    pub script_id: i64,
    pub version: Version,
    pub ordering: String,
    pub content: String,
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
}

/// Streams a run's output into its event log, and its pass's.
struct LogSink {
    run: Arc<EventLog>,
    pass: Option<(Arc<EventLog>, i64)>,
}

impl OutputSink for LogSink {
    fn line(&self, stream: Stream, line: &str) {
        self.run.push("log", json!({ "stream": stream, "line": line }));
        if let Some((pass, run_id)) = &self.pass {
            pass.push("log", json!({ "run_id": run_id, "stream": stream, "line": line }));
        }
    }
}

impl Runner {
    /// Runs `f` with the writing connection on the blocking pool.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> crate::store::Result<T> + Send + 'static,
    ) -> crate::store::Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| crate::store::RepoError::BadInput(format!("background task failed: {e}")))?
    }

    /// Writes the events not yet in SQLite.
    pub async fn flush(&self, log: &Arc<EventLog>, which: Log) {
        let events = log.unflushed();
        if !events.is_empty()
            && let Err(e) = self.db(move |c| runstore::append_events(c, which, &events)).await
        {
            tracing::error!(error = %e, "cannot store run events");
        }
    }

    /// Executes `job` to its end and returns its final status.
    #[tracing::instrument(skip_all, fields(run_id = job.run_id, script = job.script_id))]
    pub async fn execute(&self, job: RunJob, cancel: CancellationToken) -> &'static str {
        let log = self.live.add_run(job.run_id);
        // Wait for a worker, unless cancelled first.
        let permit = tokio::select! {
            p = self.workers.clone().acquire_owned() => p.ok(),
            _ = cancel.cancelled() => None,
        };
        if permit.is_none() {
            return self.end(&job, &log, Ending::without_run(status::CANCELLED, "the run was cancelled before it started")).await;
        }
        let started = clock::now();
        let id = job.run_id;
        if let Err(e) = self.db(move |c| runstore::mark_running(c, id, started)).await {
            tracing::error!(error = %e, "cannot mark the run running");
        }
        log.push("status", json!({ "status": status::RUNNING, "started_at": clock::format(started) }));
        if let Some(p) = &job.pass_log {
            p.push("run", json!({ "run_id": id, "script_id": job.script_id, "ordering": job.ordering, "status": status::RUNNING }));
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
                            runstore::append_events(&db.lock().unwrap_or_else(|p| p.into_inner()), Log::Run(id), &events)
                        })
                        .await;
                    }
                }
            })
        };
        let result = self.run_in_sandbox(&job, log.clone(), cancel).await;
        flusher.abort();
        let dir = self.runs_dir.join(id.to_string());
        let artifacts = tokio::task::spawn_blocking(move || collect_artifacts(&dir)).await.unwrap_or_default();
        let ending = match result {
            Ok(report) => Ending {
                status: match &report.outcome {
                    o if o.success() => status::SUCCEEDED,
                    Outcome::Cancelled => status::CANCELLED,
                    _ => status::FAILED,
                },
                exit_code: match &report.outcome {
                    Outcome::Exited { code } => Some(*code),
                    _ => None,
                },
                limit: match &report.outcome {
                    Outcome::LimitExceeded { limit, .. } => serde_json::to_value(limit).ok().and_then(|v| v.as_str().map(String::from)),
                    _ => None,
                },
                message: report.outcome.message(),
                started: Some(started),
                artifacts,
                protections: serde_json::to_value(&report.protections).ok(),
                output_bytes: report.output_bytes,
                warm_start: Some(report.warm_start),
            },
            Err(e) => Ending { started: Some(started), artifacts, ..Ending::without_run(status::ERROR, &e.to_string()) },
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
        let side = dir.join(SIDE_DIR);
        std::fs::create_dir_all(&side)?;
        let input = dir.join(INPUT_FILE);
        std::fs::write(&input, &job.input)?;
        let script = side.join("script.py");
        std::fs::write(&script, &job.content)?;
        let spec = RunSpec {
            interpreter: job.interpreter.clone(),
            script,
            input: Some(input),
            args: Vec::new(),
            workdir: dir,
            limits: job.interpreter.limits.clone(),
        };
        let backend = self.backends.get(job.backend)?;
        let sink = LogSink { run: log, pass: job.pass_log.clone().map(|p| (p, job.run_id)) };
        backend.run(spec, Arc::new(sink), cancel).await
    }

    /// Records the end of a run, emits `complete`, and retires its live log.
    pub async fn end(&self, job: &RunJob, log: &Arc<EventLog>, e: Ending) -> &'static str {
        let ended = clock::now();
        let id = job.run_id;
        let st = e.status;
        let duration = e.started.map(|s| (ended - s) as f64 / 100.0);
        let complete = json!({
            "status": st, "exit_code": e.exit_code, "limit": e.limit, "message": e.message,
            "duration": duration, "artifacts": e.artifacts, "output_bytes": e.output_bytes,
            "warm_start": e.warm_start,
        });
        let stored = self
            .db(move |c| {
                runstore::finish_run(
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
        log.push("complete", complete);
        log.finish();
        self.flush(log, Log::Run(id)).await;
        self.live.remove_run(id);
        if let Some(p) = &job.pass_log {
            p.push(
                "run",
                json!({ "run_id": id, "script_id": job.script_id, "ordering": job.ordering, "status": st, "duration": duration }),
            );
        }
        tracing::info!(status = st, "run ended");
        st
    }
}

/// How a run ended.
pub struct Ending {
    pub status: &'static str,
    pub started: Option<clock::Centis>,
    pub exit_code: Option<i32>,
    pub message: String,
    pub limit: Option<String>,
    pub artifacts: Vec<Artifact>,
    pub protections: Option<serde_json::Value>,
    pub output_bytes: u64,
    pub warm_start: Option<bool>,
}

impl Ending {
    /// A run that ends without having run (cancelled while queued, skipped, …).
    pub fn without_run(status: &'static str, message: &str) -> Ending {
        Ending {
            status,
            started: None,
            exit_code: None,
            message: message.into(),
            limit: None,
            artifacts: Vec::new(),
            protections: None,
            output_bytes: 0,
            warm_start: None,
        }
    }
}

/// Files the script wrote: everything in the run directory but the input and the
/// runner's own files. Symbolic links are not followed or listed.
pub fn collect_artifacts(dir: &Path) -> Vec<Artifact> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Artifact>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            if rel == INPUT_FILE || rel == SIDE_DIR {
                continue;
            }
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_file() {
                out.push(Artifact { content_type: content_type(&rel).to_string(), name: rel, size: meta.len() });
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
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

/// The interpreter a script asks for with a `# interpreter: ID` line near its top.
pub fn interpreter_directive(content: &str) -> Option<&str> {
    content.lines().take(40).find_map(|l| {
        let rest = l.trim().strip_prefix('#')?.trim();
        let id = rest.strip_prefix("interpreter:")?.trim();
        (!id.is_empty() && !id.contains(' ')).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_is_read_from_a_comment() {
        assert_eq!(interpreter_directive("\"\"\"Doc\"\"\"\n# interpreter: wasi-cpython-3.14\nprint(1)\n"), Some("wasi-cpython-3.14"));
        assert_eq!(interpreter_directive("print(1)\n"), None);
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
        let names: Vec<_> = collect_artifacts(d.path()).into_iter().map(|a| (a.name, a.content_type)).collect();
        assert_eq!(
            names,
            [("a.glb".to_string(), "model/gltf-binary".to_string()), ("out/part.stl".to_string(), "model/stl".to_string())]
        );
    }
}
