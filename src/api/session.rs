//! `POST /api/login`, `POST /api/logout`, `GET /api/me`.

use axum::Extension;
use axum::Json;
use axum::extract::ConnectInfo;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Instant;

use super::{ApiJson, AppState};
use crate::auth::{self, CurrentUser};
use crate::error::ApiError;

/// The largest sign-in body accepted.
pub const LOGIN_BODY_LIMIT: usize = 4096;

#[derive(Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "LoginRequest", optional_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// `POST /api/login`, throttled: a locked user name or address is refused before any
/// password is hashed, and hashes run in a bounded number of slots (see `throttle`).
pub async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let from = client.map(|Extension(ConnectInfo(addr))| addr.ip());
    let throttle = &state.auth.throttle;
    throttle.check(&body.username, from, Instant::now())?;
    let slot = throttle.hash_slot().await?;
    // Other attempts may have locked the name while this one waited for a slot.
    throttle.check(&body.username, from, Instant::now())?;
    let auth = state.auth.clone();
    let username = body.username.clone();
    // The slot goes with the hash: freed when the hash ends, even if the client left.
    let checked = tokio::task::spawn_blocking(move || {
        let checked = auth.login(&body.username, &body.password);
        drop(slot);
        checked
    })
    .await?;
    let (user, token) = match checked {
        Err(e @ ApiError::Unauthorized(_)) => {
            throttle.failed(&username, from, Instant::now());
            tracing::warn!(user = %username.chars().take(64).collect::<String>(), from = ?from, "sign-in refused: wrong user name or password");
            return Err(e);
        }
        other => other?,
    };
    throttle.succeeded(&username);
    tracing::info!(user = %user.username, "signed in");
    Ok((
        [(header::SET_COOKIE, state.auth.cookie(&token))],
        Json(user),
    )
        .into_response())
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = auth::session_token(&headers) {
        let a = state.auth.clone();
        tokio::task::spawn_blocking(move || a.logout(&token)).await??;
    }
    Ok((
        [(header::SET_COOKIE, auth::clear_cookie())],
        Json(serde_json::json!({ "signed_out": true })),
    )
        .into_response())
}

pub async fn me(Extension(user): Extension<CurrentUser>) -> Json<CurrentUser> {
    Json(user)
}
