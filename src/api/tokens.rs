//! Personal API tokens: `GET`/`POST /api/tokens`, `DELETE /api/tokens/{id}`. Managed from
//! the web session only: a token cannot make or revoke tokens.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiJson, AppState, PathId};
use crate::auth::{ApiToken, CurrentUser};
use crate::error::ApiError;

#[derive(Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "CreateTokenRequest", optional_fields)]
pub struct CreateBody {
    name: String,
}

fn session_only(user: &CurrentUser) -> Result<(), ApiError> {
    if user.via_token {
        return Err(ApiError::Forbidden(
            "API tokens are managed from the signed-in web session, not with a token".into(),
        ));
    }
    Ok(())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    let auth = state.auth.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || auth.tokens(&user.username)).await??,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    session_only(&user)?;
    let auth = state.auth.clone();
    let (token, secret) =
        tokio::task::spawn_blocking(move || auth.create_token(&user.username, &body.name))
            .await??;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": secret, "id": token.id, "name": token.name, "prefix": token.prefix, "created_at": token.created_at,
            "note": "shown once: store it now; send it as `Authorization: Bearer <token>`" })),
    )
        .into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
) -> Result<Json<serde_json::Value>, ApiError> {
    session_only(&user)?;
    let auth = state.auth.clone();
    let username = user.username.clone();
    if !tokio::task::spawn_blocking(move || auth.revoke_token(&username, id)).await?? {
        return Err(ApiError::NotFound(format!("you have no API token {id}")));
    }
    Ok(Json(json!({ "id": id, "revoked": true })))
}
