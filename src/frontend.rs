//! Serving the built browser UI (`frontend/dist`), with `index.html` for client-side
//! routes. Without a build, a small page says how to make one.

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

pub fn router(dist: &Path) -> Router {
    let index = dist.join("index.html");
    if index.is_file() {
        Router::new().fallback_service(ServeDir::new(dist).fallback(ServeFile::new(index)))
    } else {
        tracing::warn!(dir = %dist.display(), "no built frontend; serving a placeholder page");
        Router::new().fallback(get(|| async { Html(PLACEHOLDER) }))
    }
}
