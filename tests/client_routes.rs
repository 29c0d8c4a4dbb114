//! The built browser UI: its own URLs (`/scripts/12`, `/runs/345`, `/passes/latest`) load
//! the app on a reload or a shared link, while a missing asset or API route stays a real
//! 404 (never the app's page, which a `<script src>` would then try to run).

use axum::http::{Method, StatusCode};

use crate::util::TestApp;

const INDEX: &str =
    "<!doctype html><title>Scriptorium</title><script type=module src=/assets/app.js></script>";

/// A server whose frontend directory holds an `index.html` and one asset.
async fn app_with_built_ui() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), INDEX).unwrap();
    std::fs::write(dist.join("assets/app.js"), "console.log(1)").unwrap();
    TestApp::start_in(dir, |c| c.frontend_dir = dist).await
}

#[tokio::test]
async fn client_routes_load_the_app() {
    let app = app_with_built_ui().await;
    for path in [
        "/",
        "/scripts",
        "/scripts/12",
        "/runs/345",
        "/passes/latest",
        "/passes/7",
        "/tokens",
        "/pipeline",
    ] {
        let r = app.json(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.text(), INDEX, "{path}");
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
    }
    let js = app.json(Method::GET, "/assets/app.js", None, None).await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.text(), "console.log(1)");
}

#[tokio::test]
async fn missing_assets_and_api_routes_are_real_404s() {
    let app = app_with_built_ui().await;
    for path in [
        "/assets/missing.js",
        "/assets/sub/x.css",
        "/favicon.ico",
        "/nothing-here",
    ] {
        let r = app.json(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !r.text().contains("<script"),
            "{path} answered with the app's page"
        );
    }
    let ed1 = app.ed1().await;
    let r = app.get("/api/nothing-here", &ed1).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("/api/nothing-here"), "{}", r.error());
    // A client route's name under /api is still the API's.
    let r = app.get("/api/scripts/999999", &ed1).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"].is_string());
}
