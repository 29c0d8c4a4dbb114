//! The API's one error type: a status code and `{"error": "…"}` that says what was wrong
//! and what to do. Internal details are logged, not sent.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use scriptorium_actors::CallError;
use scriptorium_actors::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A conflict, with extra fields for the body (e.g. `current_version`).
    #[error("{message}")]
    Conflict { message: String, extra: Value },
    #[error("{0}")]
    TooLarge(String),
    /// An `If-Match` that cannot be honoured, with extra fields (e.g. `etag`).
    #[error("{message}")]
    PreconditionFailed { message: String, extra: Value },
    /// Well-formed but not acceptable, with extra fields (e.g. `line`, `column`).
    #[error("{message}")]
    Unprocessable { message: String, extra: Value },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    TooMany(String),
    /// The request's content type is not the one the route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Refused for now (throttled, busy): the status (429 or 503) and a `Retry-After`.
    #[error("{message}")]
    RetryLater {
        status: StatusCode,
        message: String,
        seconds: u64,
    },
    /// The LLM provider failed; the message says how.
    #[error("{0}")]
    BadGateway(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RetryLater { status, .. } => *status,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": self.to_string() });
        match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                body = json!({ "error": "something went wrong on the server; the details are in its log" });
            }
            ApiError::Conflict { extra, .. }
            | ApiError::Unprocessable { extra, .. }
            | ApiError::PreconditionFailed { extra, .. } => {
                if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                    b.extend(e.clone());
                }
            }
            ApiError::RetryLater { seconds, .. } => {
                let mut res = (status, Json(body)).into_response();
                res.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(*seconds),
                );
                return res;
            }
            _ => {}
        }
        (status, Json(body)).into_response()
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound(_) | RepoError::NoSuchVersion { .. } => ApiError::NotFound(e.to_string()),
            RepoError::Stale { current, .. } => ApiError::Conflict {
                message: e.to_string(),
                extra: json!({ "current_version": current.to_string() }),
            },
            RepoError::MergeConflict(ref c) => ApiError::Conflict {
                extra: json!({ "current_version": c.theirs.to_string(), "conflict": c }),
                message: e.to_string(),
            },
            RepoError::TestDataConflict(ref c) => ApiError::Conflict {
                extra: json!({ "etag": c.theirs, "conflict": c }),
                message: e.to_string(),
            },
            RepoError::UnknownTestDataBase { ref current, .. } => ApiError::PreconditionFailed {
                extra: json!({ "etag": current }),
                message: e.to_string(),
            },
            RepoError::Moved { current, .. } => ApiError::Conflict {
                message: e.to_string(),
                extra: json!({ "current_version": current.to_string() }),
            },
            RepoError::Duplicate { ref other, .. } => ApiError::Conflict {
                extra: json!({ "duplicate_of": other }),
                message: e.to_string(),
            },
            RepoError::InvalidPython(ref p) => ApiError::Unprocessable {
                extra: json!({ "line": p.line, "column": p.column, "text": p.text }),
                message: e.to_string(),
            },
            RepoError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            RepoError::Dependencies(m) => ApiError::Unprocessable { message: m, extra: json!({}) },
            RepoError::BadInput(m) => ApiError::BadRequest(m),
            RepoError::Missing(m) => ApiError::NotFound(m),
            RepoError::Conflict(m) => ApiError::Conflict { message: m, extra: json!({}) },
            RepoError::Db(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                ApiError::Unavailable("the database stayed busy with other writes; nothing was changed, try again in a moment".into())
            }
            RepoError::Git(ref g) if g.code() == git2::ErrorCode::Locked => ApiError::Unavailable(format!(
                "a git lock file is held by another running process; nothing was changed, try again in a moment ({g})"
            )),
            RepoError::Git(_)
            | RepoError::Db(_)
            | RepoError::Checker(_)
            | RepoError::Background(_)
            | RepoError::Unresolved { .. }
            | RepoError::Internal(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Repo(r) => r.into(),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::BytesRejection(b) => b.into(),
            JsonRejection::MissingJsonContentType(_) => ApiError::BadRequest(
                "send the body as JSON with `Content-Type: application/json`".into(),
            ),
            other => ApiError::BadRequest(format!(
                "the request body is not the JSON expected: {}",
                other.body_text()
            )),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body is too large (at most {} bytes; a sign-in at most {} bytes)",
                crate::api::BODY_LIMIT,
                crate::api::LOGIN_BODY_LIMIT
            ))
        } else {
            ApiError::BadRequest(r.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("background task: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_background_task_is_a_500_that_leaks_nothing() {
        let join = tokio::task::spawn_blocking(|| panic!("secret detail"))
            .await
            .unwrap_err();
        let res = ApiError::from(RepoError::from(join)).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("went wrong on the server"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
