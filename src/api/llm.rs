//! `POST /api/scripts/{id}/prompt`: an LLM proposal for a script (JSON, or SSE when the
//! client accepts `text/event-stream`); `GET /api/scripts/{id}/exchanges`: the log.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiJson, AppState, PathId};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use scriptorium_actors::LlmError;
use scriptorium_actors::Rejection;
use scriptorium_actors::{ExchangeRecord, LlmEvent, PromptRequest};

/// The longest a prompt may take end to end (tool rounds and retries included).
const PROMPT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "PromptRequest", optional_fields)]
pub(super) struct PromptBody {
    instruction: String,
    code: Option<String>,
    interpreter: Option<String>,
}

impl From<LlmError> for ApiError {
    fn from(e: LlmError) -> Self {
        let message = e.to_string();
        match e {
            LlmError::BadInput(_) => ApiError::BadRequest(message),
            LlmError::Blocked(_) => ApiError::Unprocessable {
                message,
                extra: json!({ "blocked": true }),
            },
            LlmError::Helper(m) if m.starts_with("the code does not parse") => {
                ApiError::Unprocessable {
                    message: format!("{m}; fix it first or ask with code that parses"),
                    extra: json!({}),
                }
            }
            LlmError::Helper(_) => ApiError::Internal(message),
            _ => ApiError::BadGateway(message),
        }
    }
}

pub(super) async fn prompt(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PromptBody>,
) -> Result<Response, ApiError> {
    state.read(move |c| c.summary(id)).await?;
    let request = PromptRequest {
        script_id: id,
        instruction: body.instruction,
        code: body.code,
        interpreter: body.interpreter,
        user: user.username.clone(),
    };
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if !streaming {
        let proposal = state.llm.prompt(request, None, PROMPT_TIMEOUT).await?;
        return Ok(Json(proposal).into_response());
    }
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel::<LlmEvent>(1024);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<SseEvent>(1024);
    let llm = state.llm.clone();
    tokio::spawn(async move {
        let forward = {
            let out = out_tx.clone();
            tokio::spawn(async move {
                while let Some(e) = events_rx.recv().await {
                    let kind = match &e {
                        LlmEvent::Status { .. } => "status",
                        LlmEvent::Delta { .. } => "delta",
                        LlmEvent::Tool { .. } => "tool",
                    };
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    if out
                        .send(SseEvent::default().event(kind).data(data))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            })
        };
        let result = llm.prompt(request, Some(events_tx), PROMPT_TIMEOUT).await;
        let _ = forward.await;
        let last = match result {
            Ok(p) => SseEvent::default()
                .event("proposal")
                .data(serde_json::to_string(&p).unwrap_or_default()),
            Err(e) => SseEvent::default()
                .event("error")
                .data(json!({ "error": e.to_string() }).to_string()),
        };
        let _ = out_tx.send(last).await;
    });
    let stream = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

pub(super) async fn exchanges(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Vec<ExchangeRecord>>, ApiError> {
    state.read(move |c| c.summary(id)).await?;
    Ok(Json(state.exchanges.of_script(id).await?))
}

/// `POST /api/scripts/{id}/exchanges/{exchange}/reject`: records that the user rejected
/// a proposal (who and when); the log then shows it `rejected`.
pub(super) async fn exchanges_reject(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    axum::extract::Path((id, exchange)): axum::extract::Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let number = |v: &str, what: &str| {
        v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::BadRequest(format!("{what} `{v}` is not a positive whole number"))
        })
    };
    let (id, exchange) = (number(&id, "script id")?, number(&exchange, "exchange id")?);
    state.read(move |c| c.summary(id)).await?;
    match state
        .llm
        .reject(exchange, id, user.username.clone())
        .await?
    {
        Rejection::Recorded => Ok(Json(
            json!({ "exchange_id": exchange, "outcome": "rejected" }),
        )),
        Rejection::Saved => Err(ApiError::Conflict {
            message: format!(
                "exchange {exchange} was saved as a version already; undo it by saving the code you want"
            ),
            extra: json!({}),
        }),
        Rejection::NoProposal(status) => Err(ApiError::Conflict {
            message: format!("exchange {exchange} made no proposal to reject (it is `{status}`)"),
            extra: json!({}),
        }),
        Rejection::Unknown => Err(ApiError::NotFound(format!(
            "script {id} has no exchange {exchange}; GET /api/scripts/{id}/exchanges lists them"
        ))),
    }
}
