//! What the server benchmarks share: an app on a temporary data directory, signed in.

#![allow(dead_code, unreachable_pub)]

use axum::body::Body;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use scriptorium::config::{Config, Overrides};
use scriptorium::server::App;

/// Starts the app on `dir` with the repository's interpreters and no examples.
pub async fn start(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> (App, Config) {
    let mut config = Config::load_with(
        &Overrides {
            data_dir: Some(dir.join("data")),
            ..Default::default()
        },
        |_| None,
    )
    .unwrap();
    config.interpreters = concat!(env!("CARGO_MANIFEST_DIR"), "/interpreters.toml").into();
    config.seed_examples = false;
    config.frontend_dir = dir.join("none");
    // The wasi backend's host is the server binary, not this bench.
    config.sandbox.wasi_host = Some(env!("CARGO_BIN_EXE_scriptorium").into());
    tweak(&mut config);
    (App::start(&config).await.unwrap(), config)
}

/// Signs in as ed1 and returns the `Cookie` value.
pub async fn login(app: &App) -> String {
    let login = Request::builder()
        .method(Method::POST)
        .uri("/api/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"username": "ed1", "password": "1editor"}).to_string(),
        ))
        .unwrap();
    let res = app.router.clone().oneshot(login).await.unwrap();
    res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// One API call; the status and the JSON body (Null when not JSON).
pub async fn call(
    app: &App,
    cookie: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (axum::http::StatusCode, Value) {
    // Changes say `application/json` even without a body, as the server requires.
    let changes = method != Method::GET;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::COOKIE, cookie);
    if changes {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let body = match body {
        Some(b) => {
            if !changes {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = app
        .router
        .clone()
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Follows an event stream (`/api/runs/{id}/events`, `/api/passes/{id}/events`) as a
/// client does, until its `complete` event.
pub async fn wait_complete(app: &App, cookie: &str, path: &str) {
    let req = Request::builder()
        .uri(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let mut body = app.router.clone().oneshot(req).await.unwrap().into_body();
    let mut seen = String::new();
    while !seen.contains("event: complete") {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    seen.push_str(&String::from_utf8_lossy(&d));
                }
            }
            _ => break,
        }
    }
}
