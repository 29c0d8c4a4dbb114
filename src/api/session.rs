//! `POST /api/login`, `POST /api/logout`, `GET /api/me`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use super::{ApiJson, AppState};
use crate::auth::{self, CurrentUser};
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

pub async fn login(State(state): State<AppState>, ApiJson(body): ApiJson<LoginBody>) -> Result<Response, ApiError> {
    let auth = state.auth.clone();
    let (user, token) = tokio::task::spawn_blocking(move || auth.login(&body.username, &body.password)).await??;
    tracing::info!(user = %user.username, "signed in");
    Ok(([(header::SET_COOKIE, state.auth.cookie(&token))], Json(user)).into_response())
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = auth::session_token(&headers) {
        let a = state.auth.clone();
        tokio::task::spawn_blocking(move || a.logout(&token)).await??;
    }
    Ok(([(header::SET_COOKIE, auth::clear_cookie())], Json(serde_json::json!({ "signed_out": true }))).into_response())
}

pub async fn me(Extension(user): Extension<CurrentUser>) -> Json<CurrentUser> {
    Json(user)
}
