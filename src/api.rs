//! The JSON API under `/api`: routes, shared state and extractors. Handlers turn HTTP
//! into actor messages or catalog reads and back; they hold no logic of their own.

mod artifacts;
#[cfg(test)]
mod bindings;
mod events;
mod history;
mod llm;
mod lsp;
mod runs;
mod scripts;
mod session;
mod tokens;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::middleware;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{self, Auth};
use crate::error::ApiError;
use scriptorium_actors::LiveLogs;
use scriptorium_actors::LlmBrokerHandle;
use scriptorium_actors::RunSchedulerHandle;
use scriptorium_actors::{Catalog, ExchangeReader, RunReader, ScriptRepoHandle};
use scriptorium_sandbox::Registry;

/// The largest request body: scripts are limited to 1 MiB, test data to 8 MiB.
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Auth>,
    pub catalog: Arc<Catalog>,
    pub repo: ScriptRepoHandle,
    pub runs: RunSchedulerHandle,
    /// Runs, passes and their events as stored.
    pub run_reader: RunReader,
    /// The LLM log.
    pub exchanges: ExchangeReader,
    pub llm: LlmBrokerHandle,
    pub live: Arc<LiveLogs>,
    pub runs_dir: PathBuf,
    /// The runner's backends (their warm-start state is shown with the interpreters).
    pub backends: scriptorium_sandbox::Backends,
    pub interpreters: Arc<Registry>,
    pub lsp: Arc<lsp::LspSessions>,
    /// This server's origins, for the CSRF guard and the WebSocket upgrade.
    pub origins: Arc<crate::origin::Origins>,
    /// What the team does, for `/api/events`.
    pub notices: Arc<crate::notices::Notices>,
    /// Whether a write can succeed now (for `/api/health`).
    pub health: Arc<scriptorium_actors::WriteHealth>,
    /// Dependency resolutions in progress or failed, per script.
    pub deps: Arc<scriptorium_actors::Resolutions>,
    /// The dependency environments (shared with the runner).
    pub envs: Arc<scriptorium_actors::Envs>,
}

pub use lsp::LspSessions;
pub use session::LOGIN_BODY_LIMIT;

impl AppState {
    /// Runs a blocking catalog read on the blocking pool.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> Result<T, scriptorium_actors::RepoError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let catalog = self.catalog.clone();
        Ok(tokio::task::spawn_blocking(move || f(&catalog)).await??)
    }
}

/// `axum::Json` whose rejections are our JSON errors.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A JSON body that may be left out: empty means the defaults.
pub fn optional_json<T: Default + serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("the request body is not the JSON expected: {e}"))
    })
}

/// The `{id}` of a path (a script, run or pass), with a clear error when it is not a number.
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(params): axum::extract::Path<Vec<(String, String)>> =
            axum::extract::Path::from_request_parts(parts, state).await?;
        let raw = params
            .iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(PathId)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("id `{raw}` is not a positive whole number"))
            })
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        // A sign-in is a name and a password: no reason to read (or hash) megabytes.
        .route(
            "/login",
            post(session::login).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route("/logout", post(session::logout))
        .route("/me", get(session::me))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/template", get(scripts::template))
        .route("/examples", get(scripts::examples))
        .route("/examples/{id}", post(scripts::from_example))
        .route("/interpreters", get(interpreters_list))
        .route("/lsp", get(lsp::connect))
        .route("/scripts", get(scripts::list).post(scripts::create))
        .route("/scripts/{id}", get(scripts::get).put(scripts::save))
        .route("/scripts/{id}/bump-major", post(scripts::bump_major))
        .route("/scripts/{id}/relock", post(scripts::relock))
        .route("/scripts/{id}/fork", post(scripts::fork))
        .route("/scripts/{id}/fork-ordering", get(scripts::fork_ordering))
        .route("/events", get(events::stream))
        .route("/presence", post(events::presence))
        .route("/audit/duplicates", get(events::audit_duplicates))
        .route("/scripts/{id}/versions", get(scripts::versions))
        .route("/scripts/{id}/versions/{version}", get(scripts::version))
        .route(
            "/scripts/{id}/test-data",
            get(scripts::test_data_get).put(scripts::test_data_put),
        )
        .route("/scripts/{id}/publish", post(scripts::publish))
        .route("/scripts/{id}/ordering", put(scripts::set_ordering))
        .route("/scripts/{id}/archive", post(scripts::archive))
        .route("/scripts/{id}/unarchive", post(scripts::unarchive))
        .route("/scripts/{id}/last-success", get(runs::last_success))
        .route("/scripts/{id}/prompt", post(llm::prompt))
        .route("/scripts/{id}/exchanges", get(llm::exchanges))
        .route(
            "/scripts/{id}/exchanges/{exchange}/reject",
            post(llm::exchanges_reject),
        )
        .route(
            "/scripts/{id}/production-data",
            get(runs::production_data_get).put(runs::production_data_put),
        )
        .route("/runs", get(history::runs_list).post(runs::start))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/events", get(runs::events))
        .route("/runs/{id}/log", get(runs::log))
        .route("/runs/{id}/artifacts", get(artifacts::artifacts))
        .route("/runs/{id}/artifacts/{*name}", get(artifacts::artifact))
        .route("/passes", get(history::passes_list).post(runs::pass_start))
        .route("/passes/current", get(history::pass_current))
        .route("/passes/latest", get(runs::pass_latest))
        .route("/passes/{id}", get(runs::pass_get))
        .route("/passes/{id}/cancel", post(runs::pass_cancel))
        .route("/passes/{id}/events", get(runs::pass_events))
        .fallback(api_not_found)
        // After authorisation (so 401/403 say the first thing wrong), before any handler:
        // a cross-site or mistyped change goes no further.
        .layer(middleware::from_fn_with_state(
            state.origins.clone(),
            crate::origin::guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::authorize,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    Router::new().nest("/api", api)
}

/// `ok`, or `degraded` with the reasons when a write cannot succeed now; the write
/// path's parts (`git`, `db`, `disk`) each say whether they are fine.
async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Json<Value> {
    let health = state.health.clone();
    let report = tokio::task::spawn_blocking(move || health.check()).await;
    Json(match report {
        Ok(r) => json!({
            "status": if r.ok() { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "reasons": r.reasons(),
            "write_path": r,
        }),
        Err(e) => {
            json!({ "status": "degraded", "version": env!("CARGO_PKG_VERSION"), "reasons": [format!("the health check failed: {e}")] })
        }
    })
}

async fn api_not_found(uri: axum::extract::OriginalUri) -> ApiError {
    ApiError::NotFound(format!(
        "no API route {}; the routes are listed in the README",
        uri.path()
    ))
}

async fn interpreters_list(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Json<Value> {
    let interpreters: Vec<Value> = state
        .interpreters
        .all()
        .iter()
        .map(|i| {
            let mut v = serde_json::to_value(i).unwrap_or_default();
            // Whether the next run starts warm (modules imported already), per backend.
            let warm = state
                .backends
                .get(i.default_backend)
                .ok()
                .and_then(|b| b.warm_state(i, &state.runs_dir));
            if let (Some(w), Some(obj)) = (warm, v.as_object_mut()) {
                obj.insert(
                    "warm_state".into(),
                    serde_json::to_value(w).unwrap_or_default(),
                );
            }
            v
        })
        .collect();
    Json(json!({ "default": state.interpreters.default_id(), "interpreters": interpreters }))
}
