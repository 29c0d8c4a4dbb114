//! The team's notices (issue 16): `GET /api/events` (SSE of what others do, with
//! `Last-Event-ID` replay), `POST /api/presence` (which script a tab has open),
//! `GET /api/audit/duplicates` (scripts on `prod` with the same executable code), and
//! the helpers other handlers call to announce what they did.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, AppState};
use crate::auth::{CurrentUser, Role};
use crate::error::ApiError;
use crate::notices::{Notice, PresenceState, Since};

#[derive(Deserialize, Default)]
pub(super) struct EventsQuery {
    /// For clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<u64>,
}

fn last_event_id(headers: &HeaderMap, q: &EventsQuery) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(q.last_event_id)
}

fn sse_notice(n: &Notice) -> SseEvent {
    SseEvent::default()
        .id(n.id.to_string())
        .event(n.kind.clone())
        .data(serde_json::to_string(n).unwrap_or_default())
}

/// `GET /api/events`: first a `hello` (this stream's `tab`, the current presence and
/// the last id), then what other users do, each with its `id:`. With `Last-Event-ID`
/// the notices missed since come first; past the kept ones a `reset` says to reload.
/// A viewer gets only the notices a viewer may see (no presence); a user with the most
/// streams allowed open gets 429.
pub(super) async fn stream(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let notices = state.notices.clone();
    let connection = notices
        .connect(&user.username)
        .map_err(|e| ApiError::TooMany(e.to_string()))?;
    let editor = user.has(Role::Editor);
    let me = user.username;
    let asked = last_event_id(&headers, &q);
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(256);
    tokio::spawn(async move {
        // Held as long as the client listens: its end ends this tab's presence.
        let connection = connection;
        let mut latest = notices.subscribe();
        let mut cursor = asked.unwrap_or_else(|| notices.last_id());
        let presence = if editor {
            notices.presence()
        } else {
            Vec::new()
        };
        let hello =
            json!({ "tab": connection.tab(), "last_id": notices.last_id(), "presence": presence });
        if tx
            .send(SseEvent::default().event("hello").data(hello.to_string()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            match notices.since(cursor) {
                Since::Gap { oldest } => {
                    let reset = json!({ "oldest": oldest, "last_id": notices.last_id(),
                        "error": "notices since your Last-Event-ID are no longer kept; reload the list and the open script" });
                    cursor = notices.last_id();
                    let e = SseEvent::default()
                        .id(cursor.to_string())
                        .event("reset")
                        .data(reset.to_string());
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                Since::Notices(list) => {
                    for n in list {
                        cursor = n.id;
                        let news = n.user != me && n.for_user(editor);
                        if news && tx.send(sse_notice(&n)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    let stream =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "PresenceRequest", optional_fields)]
pub(super) struct PresenceBody {
    /// The tab: the `tab` of the `hello` of this page's `/api/events` stream.
    tab: u64,
    /// The script the tab has open; `null` when none.
    script_id: Option<i64>,
    /// `editing` when the tab has unsaved edits of it, else `viewing` (the default).
    state: Option<PresenceState>,
}

/// `POST /api/presence` (editors): the script one of the caller's tabs has open now,
/// and whether it has unsaved edits. It lasts as long as that tab's `/api/events`.
pub(super) async fn presence(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiJson(body): ApiJson<PresenceBody>,
) -> Result<Json<Value>, ApiError> {
    if let Some(id) = body.script_id {
        state.read(move |c| c.summary(id)).await?;
    }
    state
        .notices
        .set_presence(
            &user.username,
            body.tab,
            body.script_id,
            body.state.unwrap_or_default(),
        )
        .map_err(|e| ApiError::Conflict {
            message: e.to_string(),
            extra: json!({}),
        })?;
    Ok(Json(json!({ "presence": state.notices.presence() })))
}

/// `GET /api/audit/duplicates`: every set of scripts on `prod` whose executable code
/// is the same (from before the rule, or committed with the git CLI).
pub(super) async fn audit_duplicates(
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let sets = state.repo.audit_duplicates().await?;
    Ok(Json(json!({ "ok": sets.is_empty(), "duplicates": sets })))
}

/// Announces a run's start now and its end when it ends.
pub(super) fn follow_run(state: &AppState, user: &str, run_id: i64, script_id: i64) {
    state.notices.push(
        "run_started",
        user,
        json!({ "run_id": run_id, "script_id": script_id }),
    );
    let (state, user) = (state.clone(), user.to_string());
    tokio::spawn(async move {
        if let Some(live) = state.live.run(run_id) {
            wait_done(&live).await;
        }
        let record = state.run_reader.run(run_id).await;
        let status = match record {
            Ok(Some(r)) => serde_json::to_value(&r).ok().map(|v| v["status"].clone()),
            _ => None,
        };
        state.notices.push(
            "run_finished",
            &user,
            json!({ "run_id": run_id, "script_id": script_id, "status": status }),
        );
    });
}

/// Announces a pass's start now and its end when it ends.
pub(super) fn follow_pass(state: &AppState, user: &str, pass_id: i64) {
    state
        .notices
        .push("pass_started", user, json!({ "pass_id": pass_id }));
    let (state, user) = (state.clone(), user.to_string());
    tokio::spawn(async move {
        if let Some(live) = state.live.pass(pass_id) {
            wait_done(&live).await;
        }
        let record = state.run_reader.pass(pass_id).await;
        let status = match record {
            Ok(Some(p)) => serde_json::to_value(&p).ok().map(|v| v["status"].clone()),
            _ => None,
        };
        state.notices.push(
            "pass_ended",
            &user,
            json!({ "pass_id": pass_id, "status": status }),
        );
    });
}

async fn wait_done(live: &scriptorium_actors::EventLog) {
    let mut cursor = 0;
    loop {
        let (events, done) = live.since(cursor);
        if let Some(last) = events.last() {
            cursor = last.seq;
        }
        if done {
            return;
        }
        live.wait(cursor).await;
    }
}
