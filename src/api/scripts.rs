//! The scripts routes: list, create, get, save, bump, fork, history, test data, publish.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, AppState, PathId};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use scriptorium_actors::examples;
use scriptorium_actors::{CallError, Ordering, RepoError, Saved, Version};
use scriptorium_actors::{ScriptDetail, ScriptSummary, VersionInfo};

#[derive(Deserialize, Default, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "CreateScriptRequest", optional_fields)]
pub(super) struct CreateBody {
    content: Option<String>,
    filename: Option<String>,
    ordering: Option<String>,
}

#[derive(Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "SaveRequest", optional_fields)]
pub(super) struct SaveBody {
    content: String,
    base_version: String,
    /// The LLM exchange whose proposal this save accepts.
    exchange_id: Option<i64>,
}

/// `POST /api/scripts/{id}/publish`: the version the editor looked at.
#[derive(Deserialize, Default, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "PublishRequest", optional_fields)]
pub(super) struct PublishBody {
    version: Option<String>,
    /// A note for the commit message (at most 2000 characters).
    message: Option<String>,
}

/// `POST /api/scripts/{id}/fork`: where the fork goes (default: next to its parent).
#[derive(Deserialize, Default, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "ForkRequest", optional_fields)]
pub(super) struct ForkBody {
    ordering: Option<String>,
}

#[derive(Deserialize, ts_rs::TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "OrderingRequest", optional_fields)]
pub(super) struct OrderingBody {
    ordering: String,
}

fn parse_version(s: &str, field: &str) -> Result<Version, ApiError> {
    s.parse()
        .map_err(|e| ApiError::BadRequest(format!("`{field}`: {e}")))
}

fn parse_ordering(s: &str) -> Result<Ordering, ApiError> {
    s.parse()
        .map_err(|e: scriptorium_actors::BadOrdering| ApiError::BadRequest(e.to_string()))
}

pub(super) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<ScriptSummary>>, ApiError> {
    Ok(Json(state.read(|c| c.list()).await?))
}

pub(super) async fn template(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "content": state.repo.template().await? })))
}

/// `POST /api/scripts`: the body is optional; without content the template is used.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CreateBody = super::optional_json(body)?;
    let ordering = body.ordering.as_deref().map(parse_ordering).transpose()?;
    let id = state
        .repo
        .create(user.committer(), body.content, body.filename, ordering)
        .await?;
    let detail = state.read(move |c| c.detail(id)).await?;
    state
        .notices
        .push("created", &user.username, json!({ "script_id": id }));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/scripts/{id}"))],
        Json(detail),
    )
        .into_response())
}

/// One shipped example as `GET /api/examples` lists it.
#[derive(serde::Serialize, ts_rs::TS)]
#[ts(rename = "Example")]
pub(super) struct ExampleInfo {
    /// Stable id, e.g. `bracket`.
    id: &'static str,
    name: &'static str,
    summary: String,
    filename: &'static str,
    /// The interpreter it asks for (`# interpreter: ID`); none: the default.
    interpreter: Option<&'static str>,
    available: bool,
    /// Why it cannot run here, when it cannot.
    problem: Option<String>,
}

/// `GET /api/examples`: the example scripts shipped with the app, and whether the
/// interpreter each asks for is available here.
pub(super) async fn examples(State(state): State<AppState>) -> Json<Vec<ExampleInfo>> {
    let list = examples::EXAMPLES
        .iter()
        .map(|e| {
            let interp = e.interpreter();
            let problem = interp.and_then(|id| match state.interpreters.get(Some(id)) {
                Ok(i) if i.available => None,
                Ok(i) => i
                    .problem
                    .clone()
                    .or_else(|| Some(format!("the interpreter `{id}` is not available"))),
                Err(err) => Some(err.to_string()),
            });
            ExampleInfo {
                id: e.id,
                name: e.name(),
                summary: e.summary(),
                filename: e.filename,
                interpreter: interp,
                available: problem.is_none(),
                problem,
            }
        })
        .collect();
    Json(list)
}

/// `POST /api/examples/{id}`: a new script (on the caller's branch) from a shipped
/// example, with its test data. It keeps the example's file name unless that is taken.
pub(super) async fn from_example(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    Path(example): Path<String>,
) -> Result<Response, ApiError> {
    let Some(e) = examples::find(&example) else {
        let ids: Vec<&str> = examples::EXAMPLES.iter().map(|e| e.id).collect();
        return Err(ApiError::NotFound(format!(
            "no example `{example}`; the examples are {}",
            ids.join(", ")
        )));
    };
    let id = match state
        .repo
        .create(
            user.committer(),
            Some(e.content.into()),
            Some(e.filename.into()),
            None,
        )
        .await
    {
        Err(CallError::Repo(RepoError::Conflict(_))) => {
            state
                .repo
                .create(user.committer(), Some(e.content.into()), None, None)
                .await?
        }
        other => other?,
    };
    state
        .repo
        .put_test_data(user.committer(), id, e.test_data.as_bytes().to_vec(), None)
        .await?;
    let detail = state.read(move |c| c.detail(id)).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/scripts/{id}"))],
        Json(detail),
    )
        .into_response())
}

pub(super) async fn get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<ScriptDetail>, ApiError> {
    let mut detail = state.read(move |c| c.detail(id)).await?;
    detail.dependencies = detail.dependencies.with_resolution(state.deps.state(id));
    Ok(Json(detail))
}

/// Tells the others that script `id` got a new lock (nothing when `saved` kept its lock).
fn notify_relocked(state: &AppState, user: &CurrentUser, id: i64, saved: &Saved) {
    if saved.relocked {
        state.notices.push(
            "dependencies_locked",
            &user.username,
            json!({ "script_id": id, "version": saved.version, "lock_hash": saved.lock_hash }),
        );
    }
}

pub(super) async fn save(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<SaveBody>,
) -> Result<Json<Value>, ApiError> {
    let base = parse_version(&body.base_version, "base_version")?;
    let saved = state
        .repo
        .save(user.committer(), id, body.content, base)
        .await?;
    let linked = match body.exchange_id {
        Some(x) if saved.changed => state.llm.link(x, id, saved.version).await,
        _ => false,
    };
    if saved.changed {
        state.notices.push(
            "saved",
            &user.username,
            json!({ "script_id": id, "version": saved.version, "merged": saved.merged }),
        );
    }
    notify_relocked(&state, &user, id, &saved);
    Ok(Json(json!({
        "version": saved.version,
        "changed": saved.changed,
        "linked_exchange": linked,
        // Set when the edit was based on an older version: the versions merged.
        "merged": saved.merged,
        // Another script on prod with the same executable code: publishing this
        // version would be refused.
        "duplicate_of": saved.duplicate_of,
        // The new version's dependencies: `locked` (with the lock's hash; `relocked`
        // when this save resolved a changed block) or `none`. A failed resolution is a
        // 422 with uv's reason, and nothing is saved.
        "dependencies": {
            "state": if saved.lock_hash.is_some() { "locked" } else { "none" },
            "lock_hash": saved.lock_hash,
            "relocked": saved.relocked,
        },
    })))
}

/// `POST /api/scripts/{id}/relock`: resolves the current version's declared
/// dependencies again; a new version with the new lock (`changed` false when uv gave
/// the same lock). A failed resolution is a 422 with uv's reason.
pub(super) async fn relock(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let saved = state.repo.relock(user.committer(), id).await?;
    notify_relocked(&state, &user, id, &saved);
    Ok(Json(json!({
        "version": saved.version,
        "changed": saved.changed,
        "dependencies": { "state": "locked", "lock_hash": saved.lock_hash, "relocked": saved.relocked },
    })))
}

pub(super) async fn bump_major(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let version = state.repo.bump_major(user.committer(), id).await?;
    Ok(Json(json!({ "version": version })))
}

pub(super) async fn fork(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body: ForkBody = super::optional_json(body)?;
    let ordering = body.ordering.as_deref().map(parse_ordering).transpose()?;
    let new_id = state.repo.fork(user.committer(), id, ordering).await?;
    let detail = state.read(move |c| c.detail(new_id)).await?;
    state.notices.push(
        "forked",
        &user.username,
        json!({ "script_id": new_id, "parent_id": id, "ordering": detail.summary.ordering }),
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/scripts/{new_id}"))],
        Json(detail),
    )
        .into_response())
}

pub(super) async fn versions(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Vec<VersionInfo>>, ApiError> {
    Ok(Json(state.read(move |c| c.versions(id)).await?))
}

pub(super) async fn version(
    State(state): State<AppState>,
    PathId(id): PathId,
    Path((_, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let v = parse_version(&version, "version")?;
    let content = state.read(move |c| c.version_content(id, v)).await?;
    Ok(Json(json!({ "id": id, "version": v, "content": content })))
}

/// `GET /api/scripts/{id}/test-data`: the raw data, with its `ETag` (the git blob id;
/// send it back as `If-Match` when saving an edit of it).
pub(super) async fn test_data_get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (data, etag) = state
        .read(move |c| {
            let data = c.test_data(id)?;
            let etag = git2::Oid::hash_object(git2::ObjectType::Blob, &data)?;
            Ok((data, etag))
        })
        .await?;
    let kind = if std::str::from_utf8(&data).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::ETAG, format!("\"{etag}\"")),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        data,
    )
        .into_response())
}

/// The test data an edit started from, from `If-Match` (`None`: absent or `*`, replace
/// whatever is there).
fn if_match(headers: &HeaderMap) -> Result<Option<git2::Oid>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::BadRequest(
            "`If-Match` must be the one ETag that GET …/test-data gave (e.g. \"e69de29bb2d1d6434b8b29ae775ad8c2e48c5391\"), or * to replace the data whatever it is".into(),
        )
    };
    let v = value.to_str().map_err(|_| bad())?.trim();
    if v == "*" {
        return Ok(None);
    }
    let tag = v
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(bad)?;
    if tag.len() != 40 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    git2::Oid::from_str(tag).map(Some).map_err(|_| bad())
}

/// `PUT /api/scripts/{id}/test-data`: replaces the data; with `If-Match` an edit of
/// older data is merged onto the current data (409 with the three sides when it cannot
/// be). `{changed, etag, merged}` and the new `ETag`.
pub(super) async fn test_data_put(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let base = if_match(&headers)?;
    let saved = state
        .repo
        .put_test_data(user.committer(), id, body?.to_vec(), base)
        .await?;
    if saved.changed {
        state.notices.push(
            "test_data_saved",
            &user.username,
            json!({ "script_id": id, "etag": saved.etag, "merged": saved.merged }),
        );
    }
    Ok((
        [(header::ETAG, format!("\"{}\"", saved.etag))],
        Json(json!({ "changed": saved.changed, "etag": saved.etag, "merged": saved.merged })),
    )
        .into_response())
}

/// `GET /api/scripts/{id}/fork-ordering`: where a fork would go, before it is made.
pub(super) async fn fork_ordering(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let o = state.repo.fork_orderings(id).await?;
    Ok(Json(json!({
        "parent": o.parent,
        "same_group": o.same_group,
        "new_group": o.new_group,
        "default": o.same_group.clone().unwrap_or_else(|| o.new_group.clone()),
    })))
}

pub(super) async fn publish(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: PublishBody = super::optional_json(body)?;
    let seen = body
        .version
        .as_deref()
        .map(|v| parse_version(v, "version"))
        .transpose()?;
    if let Some(m) = &body.message {
        if m.chars().count() > scriptorium_actors::MAX_PUBLISH_NOTE {
            return Err(ApiError::BadRequest(format!(
                "`message` is longer than {} characters; shorten it",
                scriptorium_actors::MAX_PUBLISH_NOTE
            )));
        }
        if m.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ApiError::BadRequest(
                "`message` has control characters; use plain text (new lines are fine)".into(),
            ));
        }
    }
    let (version, changed) = state
        .repo
        .publish(user.committer(), id, seen, body.message)
        .await?;
    if changed {
        state.notices.push(
            "published",
            &user.username,
            json!({ "script_id": id, "version": version }),
        );
    }
    Ok(Json(
        json!({ "published_version": version, "changed": changed }),
    ))
}

pub(super) async fn set_ordering(
    State(state): State<AppState>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<OrderingBody>,
) -> Result<Json<ScriptSummary>, ApiError> {
    let ordering = parse_ordering(&body.ordering)?;
    state.repo.set_ordering(id, ordering).await?;
    Ok(Json(state.read(move |c| c.summary(id)).await?))
}

/// `POST /api/scripts/{id}/archive`: out of the queue and of every pass; history kept.
pub(super) async fn archive(
    state: State<AppState>,
    user: Extension<CurrentUser>,
    id: PathId,
) -> Result<Json<Value>, ApiError> {
    set_archived(state, user, id, true).await
}

/// `POST /api/scripts/{id}/unarchive`: back in the queue (unpublished until published).
pub(super) async fn unarchive(
    state: State<AppState>,
    user: Extension<CurrentUser>,
    id: PathId,
) -> Result<Json<Value>, ApiError> {
    set_archived(state, user, id, false).await
}

async fn set_archived(
    State(state): State<AppState>,
    Extension(user): Extension<CurrentUser>,
    PathId(id): PathId,
    archived: bool,
) -> Result<Json<Value>, ApiError> {
    let changed = state
        .repo
        .set_archived(user.committer(), id, archived)
        .await?;
    let summary = state.read(move |c| c.summary(id)).await?;
    Ok(Json(json!({ "changed": changed, "script": summary })))
}
