//! Runs and run-all passes: start, read, cancel, live events (SSE), artifacts.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, AppState, PathId};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use scriptorium_actors::events::{Event, EventLog};
use scriptorium_actors::run_scheduler::{Mode, OnFailure, RunRequest};
use scriptorium_actors::runner::content_type;
use scriptorium_actors::runstore::{self, Log, PassRecord, RunRecord};
use scriptorium_actors::{RepoError, Version};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRunBody {
    script_id: i64,
    version: Option<String>,
    interpreter: Option<String>,
    backend: Option<String>,
    mode: Option<Mode>,
}

pub async fn start(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiJson(body): ApiJson<StartRunBody>,
) -> Result<Response, ApiError> {
    let version = body
        .version
        .as_deref()
        .map(|v| {
            v.parse::<Version>()
                .map_err(|e| ApiError::BadRequest(format!("`version`: {e}")))
        })
        .transpose()?;
    let backend = body
        .backend
        .as_deref()
        .map(|b| {
            b.parse()
                .map_err(|e: scriptorium_sandbox::InterpreterError| {
                    ApiError::BadRequest(e.to_string())
                })
        })
        .transpose()?;
    let request = RunRequest {
        script_id: body.script_id,
        version,
        interpreter: body.interpreter,
        backend,
        mode: body.mode.unwrap_or(Mode::Test),
        user: user.username.clone(),
    };
    let run_id = state.runs.start_run(request).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/runs/{run_id}"))],
        Json(json!({ "run_id": run_id, "events": format!("/api/runs/{run_id}/events") })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    script_id: Option<i64>,
    limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<RunRecord>>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    Ok(Json(
        state
            .read(move |c| c.with_conn(|conn| runstore::runs(conn, q.script_id, limit)))
            .await?,
    ))
}

async fn record(state: &AppState, id: i64) -> Result<RunRecord, ApiError> {
    state
        .read(move |c| c.with_conn(|conn| runstore::run(conn, id)))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))
}

pub async fn get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<RunRecord>, ApiError> {
    Ok(Json(record(&state, id).await?))
}

pub async fn log(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    record(&state, id).await?;
    let lines = state
        .read(move |c| c.with_conn(|conn| runstore::output(conn, id)))
        .await?;
    Ok(Json(json!(
        lines
            .into_iter()
            .map(|(stream, line)| json!({ "stream": stream, "line": line }))
            .collect::<Vec<_>>()
    )))
}

pub async fn cancel(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let cancelled = state.runs.cancel_run(id).await?;
    Ok(Json(json!({ "run_id": id, "cancelled": cancelled })))
}

pub async fn events(
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    record(&state, id).await?;
    let live = state.live.run(id);
    Ok(sse(state, Log::Run(id), live, last_event_id(&headers)).into_response())
}

/// The most artifacts one page lists.
const MAX_PAGE: usize = 1000;

/// `GET /api/runs/{id}/artifacts?offset=&limit=`: one page of a run's artifacts in name
/// order (`limit` 1–1000, default 100), the total, the link to the next page, and what
/// the run left that is not served (links, FIFOs, sockets, devices).
pub async fn artifacts(
    State(state): State<AppState>,
    PathId(id): PathId,
    query: Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = page(&query.0)?;
    let collected = state
        .read(move |c| c.with_conn(|conn| runstore::artifacts(conn, id)))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    let total = collected.files.len();
    let files: Vec<_> = collected
        .files
        .into_iter()
        .skip(offset)
        .take(limit)
        .collect();
    let end = offset.saturating_add(files.len());
    let next =
        (end < total).then(|| format!("/api/runs/{id}/artifacts?offset={end}&limit={limit}"));
    let skipped: Vec<_> = collected.skipped.into_iter().take(MAX_PAGE).collect();
    Ok(Json(json!({
        "run_id": id, "total": total, "offset": offset, "limit": limit, "artifacts": files, "next": next,
        "skipped": skipped, "truncated": collected.truncated,
    })))
}

/// `offset` and `limit` from a query string, checked.
fn page(query: &[(String, String)]) -> Result<(usize, usize), ApiError> {
    let mut offset = 0usize;
    let mut limit = runstore::ARTIFACT_PAGE;
    for (key, value) in query {
        let n = || {
            value.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!("`{key}` must be a whole number, not `{value}`"))
            })
        };
        match key.as_str() {
            "offset" => offset = n()?,
            "limit" => limit = n()?,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{key}`; use `offset` and `limit`"
                )));
            }
        }
    }
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok((offset, limit))
}

/// `GET /api/runs/{id}/artifacts/{*name}`: a file the run wrote, confined to its run
/// directory (no `..`, no absolute paths, no symbolic links).
pub async fn artifact(
    State(state): State<AppState>,
    axum::extract::Path((id, name)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("run id `{id}` is not a number")))?;
    record(&state, id).await?;
    let clean = !name.is_empty()
        && !name.contains('\\')
        && !name.contains('\0')
        && Path::new(&name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !clean {
        return Err(ApiError::BadRequest(format!(
            "`{name}` is not an artifact name; use a path inside the run directory"
        )));
    }
    let listed = {
        let name = name.clone();
        state
            .read(move |c| c.with_conn(|conn| runstore::artifacts(conn, id)))
            .await?
            .is_some_and(|all| all.files.iter().any(|a| a.name == name))
    };
    if !listed {
        return Err(ApiError::NotFound(format!(
            "run {id} has no artifact `{name}`; GET /api/runs/{id}/artifacts lists them"
        )));
    }
    let dir = state.runs_dir.join(id.to_string());
    let path = tokio::task::spawn_blocking(move || -> Result<PathBuf, ApiError> {
        let mut p = dir;
        for c in Path::new(&name).components() {
            p.push(c);
            let meta = std::fs::symlink_metadata(&p)
                .map_err(|_| ApiError::NotFound(format!("artifact `{name}` is gone")))?;
            if meta.file_type().is_symlink() {
                return Err(ApiError::NotFound(format!(
                    "artifact `{name}` is a link and is not served"
                )));
            }
        }
        Ok(p)
    })
    .await??;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Streamed, never read whole: a 256 MiB artifact downloaded by many viewers at once
    // must not take the server's memory. Opened without following a link and without
    // blocking on a FIFO, and served only if it is a regular file.
    let (file, len) =
        tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64), ApiError> {
            let gone = || ApiError::NotFound("the artifact could not be read".into());
            let mut open = std::fs::OpenOptions::new();
            open.read(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                open.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
            }
            #[cfg(windows)]
            {
                use std::os::windows::fs::OpenOptionsExt;
                // FILE_FLAG_OPEN_REPARSE_POINT: a link or junction is opened as itself
                // (then not a regular file, so refused below), never followed.
                open.custom_flags(0x0020_0000);
            }
            let file = open.open(&path).map_err(|_| gone())?;
            let meta = file.metadata().map_err(|_| gone())?;
            if !meta.is_file() {
                return Err(ApiError::NotFound(
                    "the artifact is not a regular file and is not served".into(),
                ));
            }
            Ok((file, meta.len()))
        })
        .await??;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    let (kind, disposition) = artifact_presentation(&file_name);
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("{disposition}; {}", disposition_filename(&file_name)),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            // Even opened directly, an artifact is a document of its own with no rights:
            // no script, no requests, a unique origin.
            (header::CONTENT_SECURITY_POLICY, ARTIFACT_POLICY.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// The policy of every artifact response.
pub const ARTIFACT_POLICY: &str = "sandbox; default-src 'none'";

/// Types that cannot run anything, which the UI shows itself: served as what they are.
const PASSIVE_TYPES: [&str; 8] = [
    "model/stl",
    "model/gltf-binary",
    "model/gltf+json",
    "image/png",
    "image/jpeg",
    "text/plain; charset=utf-8",
    "text/csv; charset=utf-8",
    "application/json",
];

/// The content type and disposition of an artifact: passive types inline, everything
/// else (HTML, SVG, PDF, unknown) a download of opaque bytes, never a page of this origin.
fn artifact_presentation(file: &str) -> (&'static str, &'static str) {
    let kind = content_type(file);
    if PASSIVE_TYPES.contains(&kind) {
        (kind, "inline")
    } else {
        ("application/octet-stream", "attachment")
    }
}

/// `filename="…"` in plain ASCII (anything else becomes `_`) and `filename*=` with the
/// exact UTF-8 name (RFC 6266).
fn disposition_filename(file: &str) -> String {
    let ascii: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ';' | '%') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = file
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

// ---- passes ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StartPassBody {
    mode: Option<Mode>,
    on_failure: Option<OnFailure>,
}

pub async fn pass_start(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body: StartPassBody = super::optional_json(body)?;
    let pass_id = state
        .runs
        .start_pass(
            body.mode.unwrap_or(Mode::Test),
            body.on_failure.unwrap_or_default(),
            user.username.clone(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/passes/{pass_id}"))],
        Json(json!({ "pass_id": pass_id, "events": format!("/api/passes/{pass_id}/events") })),
    )
        .into_response())
}

pub async fn pass_get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<PassRecord>, ApiError> {
    state
        .read(move |c| c.with_conn(|conn| runstore::pass(conn, id)))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("pass {id} does not exist")))
}

pub async fn pass_latest(State(state): State<AppState>) -> Result<Json<PassRecord>, ApiError> {
    state
        .read(|c| c.with_conn(runstore::latest_full_pass))
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound("no full pass has run yet; POST /api/passes starts one".into())
        })
}

pub async fn pass_cancel(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let cancelled = state.runs.cancel_pass(id).await?;
    Ok(Json(json!({ "pass_id": id, "cancelled": cancelled })))
}

pub async fn pass_events(
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .read(move |c| c.with_conn(|conn| runstore::pass(conn, id)))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("pass {id} does not exist")))?;
    let live = state.live.pass(id);
    Ok(sse(state, Log::Pass(id), live, last_event_id(&headers)).into_response())
}

// ---- per script ----

pub async fn last_success(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    state.read(move |c| c.summary(id)).await?;
    let run = state
        .read(move |c| c.with_conn(|conn| runstore::last_success(conn, id)))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("script {id} has no successful run yet")))?;
    let run_id = run.id;
    let output = state
        .read(move |c| c.with_conn(|conn| runstore::output(conn, run_id)))
        .await?;
    Ok(Json(json!({
        "run": run,
        "output": output.into_iter().map(|(stream, line)| json!({ "stream": stream, "line": line })).collect::<Vec<_>>(),
    })))
}

pub async fn production_data_get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    state.read(move |c| c.summary(id)).await?;
    let data = state
        .read(move |c| c.with_conn(|conn| runstore::production_data(conn, id)))
        .await?
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

pub async fn production_data_put(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body?;
    if body.len() > scriptorium_actors::store::MAX_TEST_DATA_BYTES {
        return Err(RepoError::TooLarge {
            what: "the production data",
            size: body.len(),
            limit: scriptorium_actors::store::MAX_TEST_DATA_BYTES,
        }
        .into());
    }
    let size = body.len();
    state
        .runs
        .put_production_data(id, body.to_vec(), user.username.clone())
        .await?;
    Ok(Json(json!({ "size": size })))
}

// ---- SSE ----

fn last_event_id(headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn sse_event(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.kind.clone())
        .data(e.data.to_string())
}

/// Streams the events after `after`: from the live log while the run or pass goes on,
/// else from SQLite (with a `complete` made from the record when the server stopped
/// before writing one).
fn sse(
    state: AppState,
    log: Log,
    live: Option<Arc<EventLog>>,
    after: u64,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(256);
    tokio::spawn(async move {
        let mut cursor = after;
        if let Some(live) = live {
            loop {
                let (events, done) = live.since(cursor);
                for e in &events {
                    if tx.send(sse_event(e)).await.is_err() {
                        return;
                    }
                    cursor = e.seq;
                }
                if done {
                    return;
                }
                tokio::select! {
                    _ = live.wait(cursor) => {}
                    _ = tx.closed() => return,
                }
            }
        }
        let stored = state
            .read(move |c| c.with_conn(|conn| runstore::events(conn, log, cursor)))
            .await
            .unwrap_or_default();
        let mut complete = false;
        for e in &stored {
            complete |= e.kind == "complete";
            cursor = e.seq;
            if tx.send(sse_event(e)).await.is_err() {
                return;
            }
        }
        if !complete {
            let (st, message) = match log {
                Log::Run(id) => match state
                    .read(move |c| c.with_conn(|conn| runstore::run(conn, id)))
                    .await
                {
                    Ok(Some(r)) => (r.status, r.message),
                    _ => return,
                },
                Log::Pass(id) => match state
                    .read(move |c| c.with_conn(|conn| runstore::pass(conn, id)))
                    .await
                {
                    Ok(Some(p)) => (p.status, p.message),
                    _ => return,
                },
            };
            let e = Event {
                seq: cursor + 1,
                kind: "complete".into(),
                data: json!({ "status": st, "message": message }),
            };
            let _ = tx.send(sse_event(&e)).await;
        }
    });
    let stream =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passive_types_are_inline() {
        for name in [
            "a.html", "a.HTM", "b.svg", "c.xhtml", "d.pdf", "e.js", "f", "g.step",
        ] {
            assert_eq!(
                artifact_presentation(name),
                ("application/octet-stream", "attachment"),
                "{name}"
            );
        }
        assert_eq!(
            artifact_presentation("r.glb"),
            ("model/gltf-binary", "inline")
        );
        assert_eq!(
            artifact_presentation("out.txt"),
            ("text/plain; charset=utf-8", "inline")
        );
    }

    #[test]
    fn filenames_cannot_break_the_header() {
        let f = disposition_filename("a\"; b\\ é.txt");
        assert_eq!(
            f,
            "filename=\"a__ b_ _.txt\"; filename*=UTF-8''a%22%3B%20b%5C%20%C3%A9.txt"
        );
        assert!(axum::http::HeaderValue::from_str(&f).is_ok());
    }
}
