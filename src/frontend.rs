//! Serving the built browser UI (`frontend/dist`), with `index.html` for the app's own
//! URLs (`/scripts/12`, `/runs/345`, `/passes/latest`, …) so a reload or a shared link
//! opens the app there. Any other path is a file of the build or a real 404: a missing
//! `/assets/x.js` must not answer with the app's page. Without a build, a small page
//! says how to make one.

use std::path::Path;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use tower_http::services::{ServeDir, ServeFile};

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scriptorium</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;line-height:1.5}</style></head>
<body><h1>Scriptorium</h1>
<p>The server is running, but the browser UI has not been built. <code>make run</code> builds it;
the JSON API is under <code>/api</code> (see the README).</p></body></html>"#;

/// The first path segments the browser app routes itself (`frontend/src/routes.tsx`).
pub const CLIENT_ROUTES: &[&str] = &["scripts", "runs", "passes", "tokens", "pipeline"];

pub fn router(dist: &Path) -> Router {
    let index = dist.join("index.html");
    if index.is_file() {
        let page = ServeFile::new(index);
        let mut router = Router::new();
        for segment in CLIENT_ROUTES {
            router = router
                .route_service(&format!("/{segment}"), page.clone())
                .route_service(&format!("/{segment}/{{*rest}}"), page.clone());
        }
        // `/` is the directory's index.html; a missing file is a 404.
        router.fallback_service(ServeDir::new(dist))
    } else {
        tracing::warn!(dir = %dist.display(), "no built frontend; serving a placeholder page");
        Router::new().fallback(get(|| async { Html(PLACEHOLDER) }))
    }
}
