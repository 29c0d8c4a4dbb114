//! A run's artifacts: the paged listing, and each file served confined to its run
//! directory, streamed, never as a page of this origin.

use std::path::{Component, Path, PathBuf};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::runs::record;
use super::{AppState, PathId};
use crate::error::ApiError;
use scriptorium_actors::content_type;

/// The most artifacts one page lists.
const MAX_PAGE: usize = 1000;

/// `GET /api/runs/{id}/artifacts?offset=&limit=`: one page of a run's artifacts in name
/// order (`limit` 1–1000, default 100), the total, the link to the next page, and what
/// the run left that is not served (links, FIFOs, sockets, devices).
pub(super) async fn artifacts(
    State(state): State<AppState>,
    PathId(id): PathId,
    query: Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = page(&query.0)?;
    let collected = state
        .run_reader
        .artifacts(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    let total = collected.files.len();
    let files: Vec<_> = collected
        .files
        .into_iter()
        .skip(offset)
        .take(limit)
        .collect();
    let end = offset.saturating_add(files.len());
    let next =
        (end < total).then(|| format!("/api/runs/{id}/artifacts?offset={end}&limit={limit}"));
    let skipped: Vec<_> = collected.skipped.into_iter().take(MAX_PAGE).collect();
    Ok(Json(json!({
        "run_id": id, "total": total, "offset": offset, "limit": limit, "artifacts": files, "next": next,
        "skipped": skipped, "truncated": collected.truncated,
    })))
}

/// `offset` and `limit` from a query string, checked.
fn page(query: &[(String, String)]) -> Result<(usize, usize), ApiError> {
    let mut offset = 0usize;
    let mut limit = scriptorium_actors::ARTIFACT_PAGE;
    for (key, value) in query {
        let n = || {
            value.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!("`{key}` must be a whole number, not `{value}`"))
            })
        };
        match key.as_str() {
            "offset" => offset = n()?,
            "limit" => limit = n()?,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{key}`; use `offset` and `limit`"
                )));
            }
        }
    }
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok((offset, limit))
}

/// `GET /api/runs/{id}/artifacts/{*name}`: a file the run wrote, confined to its run
/// directory (no `..`, no absolute paths, no symbolic links).
pub(super) async fn artifact(
    State(state): State<AppState>,
    axum::extract::Path((id, name)): axum::extract::Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("run id `{id}` is not a number")))?;
    record(&state, id).await?;
    let clean = !name.is_empty()
        && !name.contains('\\')
        && !name.contains('\0')
        && Path::new(&name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !clean {
        return Err(ApiError::BadRequest(format!(
            "`{name}` is not an artifact name; use a path inside the run directory"
        )));
    }
    let listed = {
        let name = name.clone();
        state
            .run_reader
            .artifacts(id)
            .await?
            .is_some_and(|all| all.files.iter().any(|a| a.name == name))
    };
    if !listed {
        return Err(ApiError::NotFound(format!(
            "run {id} has no artifact `{name}`; GET /api/runs/{id}/artifacts lists them"
        )));
    }
    let dir = state.runs_dir.join(id.to_string());
    let path = tokio::task::spawn_blocking(move || -> Result<PathBuf, ApiError> {
        let mut p = dir;
        for c in Path::new(&name).components() {
            p.push(c);
            let meta = std::fs::symlink_metadata(&p)
                .map_err(|_| ApiError::NotFound(format!("artifact `{name}` is gone")))?;
            if meta.file_type().is_symlink() {
                return Err(ApiError::NotFound(format!(
                    "artifact `{name}` is a link and is not served"
                )));
            }
        }
        Ok(p)
    })
    .await??;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Streamed, never read whole: a 256 MiB artifact downloaded by many viewers at once
    // must not take the server's memory. Opened without following a link and without
    // blocking on a FIFO, and served only if it is a regular file.
    let (file, len) =
        tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64), ApiError> {
            let gone = || ApiError::NotFound("the artifact could not be read".into());
            let mut open = std::fs::OpenOptions::new();
            open.read(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                open.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
            }
            #[cfg(windows)]
            {
                use std::os::windows::fs::OpenOptionsExt;
                // FILE_FLAG_OPEN_REPARSE_POINT: a link or junction is opened as itself
                // (then not a regular file, so refused below), never followed.
                open.custom_flags(0x0020_0000);
            }
            let file = open.open(&path).map_err(|_| gone())?;
            let meta = file.metadata().map_err(|_| gone())?;
            if !meta.is_file() {
                return Err(ApiError::NotFound(
                    "the artifact is not a regular file and is not served".into(),
                ));
            }
            Ok((file, meta.len()))
        })
        .await??;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    let (kind, disposition) = artifact_presentation(&file_name);
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("{disposition}; {}", disposition_filename(&file_name)),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            // Even opened directly, an artifact is a document of its own with no rights:
            // no script, no requests, a unique origin.
            (header::CONTENT_SECURITY_POLICY, ARTIFACT_POLICY.to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// The policy of every artifact response.
pub(super) const ARTIFACT_POLICY: &str = "sandbox; default-src 'none'";

/// Types that cannot run anything, which the UI shows itself: served as what they are.
const PASSIVE_TYPES: [&str; 8] = [
    "model/stl",
    "model/gltf-binary",
    "model/gltf+json",
    "image/png",
    "image/jpeg",
    "text/plain; charset=utf-8",
    "text/csv; charset=utf-8",
    "application/json",
];

/// The content type and disposition of an artifact: passive types inline, everything
/// else (HTML, SVG, PDF, unknown) a download of opaque bytes, never a page of this origin.
fn artifact_presentation(file: &str) -> (&'static str, &'static str) {
    let kind = content_type(file);
    if PASSIVE_TYPES.contains(&kind) {
        (kind, "inline")
    } else {
        ("application/octet-stream", "attachment")
    }
}

/// `filename="…"` in plain ASCII (anything else becomes `_`) and `filename*=` with the
/// exact UTF-8 name (RFC 6266).
fn disposition_filename(file: &str) -> String {
    let ascii: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ';' | '%') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = file
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passive_types_are_inline() {
        for name in [
            "a.html", "a.HTM", "b.svg", "c.xhtml", "d.pdf", "e.js", "f", "g.step",
        ] {
            assert_eq!(
                artifact_presentation(name),
                ("application/octet-stream", "attachment"),
                "{name}"
            );
        }
        assert_eq!(
            artifact_presentation("r.glb"),
            ("model/gltf-binary", "inline")
        );
        assert_eq!(
            artifact_presentation("out.txt"),
            ("text/plain; charset=utf-8", "inline")
        );
    }

    #[test]
    fn filenames_cannot_break_the_header() {
        let f = disposition_filename("a\"; b\\ é.txt");
        assert_eq!(
            f,
            "filename=\"a__ b_ _.txt\"; filename*=UTF-8''a%22%3B%20b%5C%20%C3%A9.txt"
        );
        assert!(axum::http::HeaderValue::from_str(&f).is_ok());
    }
}
