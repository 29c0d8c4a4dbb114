//! What ran before, paged newest first: a script's (or every) run, the past passes, and
//! the pass running now. A page links to the next one in a `Link: <…>; rel="next"` header.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use crate::error::ApiError;
use scriptorium_actors::PassRecord;

/// The most entries one page lists; the default is [`DEFAULT_PAGE`].
const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

/// `limit`, `before` (an id: the page holds older entries) and, for runs, `script_id`.
#[derive(Default)]
struct Paging {
    limit: u32,
    before: Option<i64>,
    script_id: Option<i64>,
}

impl Paging {
    fn parse(query: &[(String, String)], allowed: &[&str]) -> Result<Paging, ApiError> {
        let mut p = Paging {
            limit: DEFAULT_PAGE,
            ..Paging::default()
        };
        for (key, value) in query {
            if !allowed.contains(&key.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{key}`; use {}",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let bad =
                || ApiError::BadRequest(format!("`{key}` must be a whole number, not `{value}`"));
            match key.as_str() {
                "limit" => p.limit = value.parse().map_err(|_| bad())?,
                "before" => p.before = Some(value.parse().map_err(|_| bad())?),
                _ => p.script_id = Some(value.parse().map_err(|_| bad())?),
            }
        }
        if p.limit == 0 || p.limit > MAX_PAGE {
            return Err(ApiError::BadRequest(format!(
                "`limit` must be between 1 and {MAX_PAGE}"
            )));
        }
        Ok(p)
    }

    /// The URL of the page after one that ended at `last`.
    fn next(&self, path: &str, last: i64) -> String {
        let script = self
            .script_id
            .map(|s| format!("script_id={s}&"))
            .unwrap_or_default();
        format!("{path}?{script}limit={}&before={last}", self.limit)
    }
}

/// A page as JSON, with a `Link` to the next page when there is one. `items` holds one
/// entry more than the page when more exist.
fn page<T: Serialize>(
    paging: &Paging,
    path: &str,
    mut items: Vec<T>,
    id: impl Fn(&T) -> i64,
) -> Response {
    let more = items.len() > paging.limit as usize;
    items.truncate(paging.limit as usize);
    let next = items
        .last()
        .filter(|_| more)
        .map(|last| paging.next(path, id(last)));
    let mut response = Json(items).into_response();
    if let Some(url) =
        next.and_then(|u| HeaderValue::from_str(&format!("<{u}>; rel=\"next\"")).ok())
    {
        response.headers_mut().insert(header::LINK, url);
    }
    response
}

/// `GET /api/runs?script_id=&limit=&before=`: runs newest first.
pub(super) async fn runs_list(
    State(state): State<AppState>,
    query: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let paging = Paging::parse(&query.0, &["script_id", "limit", "before"])?;
    let (script, before, n) = (paging.script_id, paging.before, paging.limit + 1);
    let runs = state.run_reader.runs(script, before, n).await?;
    Ok(page(&paging, "/api/runs", runs, |r| r.id))
}

/// `GET /api/passes?limit=&before=`: passes newest first with their outcome.
pub(super) async fn passes_list(
    State(state): State<AppState>,
    query: Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let paging = Paging::parse(&query.0, &["limit", "before"])?;
    let (before, n) = (paging.before, paging.limit + 1);
    let passes = state.run_reader.passes(before, n).await?;
    Ok(page(&paging, "/api/passes", passes, |p| p.id))
}

/// `GET /api/passes/current`: the pass running now, with its groups so far.
pub(super) async fn pass_current(
    State(state): State<AppState>,
) -> Result<Json<PassRecord>, ApiError> {
    state
        .run_reader
        .current_pass()
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(
                "no pass is running; GET /api/passes lists past ones, POST /api/passes starts one"
                    .into(),
            )
        })
}
