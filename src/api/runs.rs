//! Runs and run-all passes: start, read, cancel, live events (SSE). Artifacts are in
//! `artifacts.rs`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, AppState, PathId};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use scriptorium_actors::{Event, EventKind, EventLog};
use scriptorium_actors::{Log, PassRecord, RunRecord};
use scriptorium_actors::{Mode, OnFailure, RunRequest};
use scriptorium_actors::{RepoError, Version};

#[derive(Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "StartRunRequest", optional_fields)]
pub(super) struct StartRunBody {
    script_id: i64,
    version: Option<String>,
    interpreter: Option<String>,
    backend: Option<String>,
    mode: Option<Mode>,
}

pub(super) async fn start(
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
    let script_id = request.script_id;
    let run_id = state.runs.start_run(request).await?;
    super::events::follow_run(&state, &user.username, run_id, script_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/runs/{run_id}"))],
        Json(json!({ "run_id": run_id, "events": format!("/api/runs/{run_id}/events") })),
    )
        .into_response())
}

pub(super) async fn record(state: &AppState, id: i64) -> Result<RunRecord, ApiError> {
    state
        .run_reader
        .run(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))
}

pub(super) async fn get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<RunRecord>, ApiError> {
    Ok(Json(record(&state, id).await?))
}

pub(super) async fn log(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    record(&state, id).await?;
    let lines = state.run_reader.output(id).await?;
    Ok(Json(json!(
        lines
            .into_iter()
            .map(|(stream, line)| json!({ "stream": stream, "line": line }))
            .collect::<Vec<_>>()
    )))
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let cancelled = state.runs.cancel_run(id).await?;
    Ok(Json(json!({ "run_id": id, "cancelled": cancelled })))
}

pub(super) async fn events(
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    record(&state, id).await?;
    let live = state.live.run(id);
    Ok(sse(state, Log::Run(id), live, last_event_id(&headers)).into_response())
}

// ---- passes ----

#[derive(Deserialize, Default, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "StartPassRequest", optional_fields)]
pub(super) struct StartPassBody {
    mode: Option<Mode>,
    on_failure: Option<OnFailure>,
}

pub(super) async fn pass_start(
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
    super::events::follow_pass(&state, &user.username, pass_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/passes/{pass_id}"))],
        Json(json!({ "pass_id": pass_id, "events": format!("/api/passes/{pass_id}/events") })),
    )
        .into_response())
}

pub(super) async fn pass_get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<PassRecord>, ApiError> {
    state
        .run_reader
        .pass(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("pass {id} does not exist")))
}

pub(super) async fn pass_latest(
    State(state): State<AppState>,
) -> Result<Json<PassRecord>, ApiError> {
    state
        .run_reader
        .latest_full_pass()
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound("no full pass has run yet; POST /api/passes starts one".into())
        })
}

pub(super) async fn pass_cancel(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let cancelled = state.runs.cancel_pass(id).await?;
    Ok(Json(json!({ "pass_id": id, "cancelled": cancelled })))
}

pub(super) async fn pass_events(
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .run_reader
        .pass(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("pass {id} does not exist")))?;
    let live = state.live.pass(id);
    Ok(sse(state, Log::Pass(id), live, last_event_id(&headers)).into_response())
}

// ---- per script ----

pub(super) async fn last_success(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    state.read(move |c| c.summary(id)).await?;
    let run = state
        .run_reader
        .last_success(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("script {id} has no successful run yet")))?;
    let run_id = run.id;
    let output = state.run_reader.output(run_id).await?;
    Ok(Json(json!({
        "run": run,
        "output": output.into_iter().map(|(stream, line)| json!({ "stream": stream, "line": line })).collect::<Vec<_>>(),
    })))
}

pub(super) async fn production_data_get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    state.read(move |c| c.summary(id)).await?;
    let data = state
        .run_reader
        .production_data(id)
        .await?
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

pub(super) async fn production_data_put(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body?;
    if body.len() > scriptorium_actors::MAX_TEST_DATA_BYTES {
        return Err(RepoError::TooLarge {
            what: "the production data",
            size: body.len(),
            limit: scriptorium_actors::MAX_TEST_DATA_BYTES,
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
        .event(e.kind.as_str())
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
            .run_reader
            .events(log, cursor)
            .await
            .unwrap_or_default();
        let mut complete = false;
        for e in &stored {
            complete |= e.kind == EventKind::Complete;
            cursor = e.seq;
            if tx.send(sse_event(e)).await.is_err() {
                return;
            }
        }
        if !complete {
            let (st, message) = match log {
                Log::Run(id) => match state.run_reader.run(id).await {
                    Ok(Some(r)) => (r.status, r.message),
                    _ => return,
                },
                Log::Pass(id) => match state.run_reader.pass(id).await {
                    Ok(Some(p)) => (p.status, p.message),
                    _ => return,
                },
            };
            let e = Event {
                seq: cursor + 1,
                kind: EventKind::Complete,
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
