//! Who may call what: the 401/403 matrix over every route, sessions and cookies.

use axum::http::{Method, StatusCode, header};
use serde_json::json;

use crate::util::{ServerProcess, TestApp, http_client};

/// Marks a raw body (test and production data): sent as `application/octet-stream`.
const RAW: &str = "raw body: data";

/// Sends `body` as JSON, or as raw bytes where it is [`RAW`].
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    body: Option<serde_json::Value>,
) -> crate::util::Reply {
    match body {
        Some(b) if b == json!(RAW) => app.put_raw(path, cookie, RAW).await,
        other => app.json(method, path, cookie, other).await,
    }
}

/// Every route with a body that would succeed for an editor.
fn routes(id: i64) -> Vec<(Method, String, Option<serde_json::Value>)> {
    let s = format!("/api/scripts/{id}");
    vec![
        (Method::GET, "/api/me".into(), None),
        (Method::GET, "/api/tokens".into(), None),
        (Method::GET, "/api/scripts".into(), None),
        (Method::GET, "/api/template".into(), None),
        (Method::GET, "/api/examples".into(), None),
        (Method::POST, "/api/examples/word_count".into(), None),
        (Method::GET, "/api/interpreters".into(), None),
        (Method::GET, s.clone(), None),
        (Method::GET, format!("{s}/versions"), None),
        (Method::GET, format!("{s}/versions/0.1"), None),
        (Method::GET, format!("{s}/test-data"), None),
        (
            Method::POST,
            "/api/scripts".into(),
            Some(json!({ "content": "x = 1\n" })),
        ),
        (
            Method::PUT,
            s.clone(),
            Some(json!({ "content": "x = 2\n", "base_version": "0.1" })),
        ),
        (Method::POST, format!("{s}/bump-major"), None),
        (Method::POST, format!("{s}/fork"), None),
        (Method::GET, format!("{s}/fork-ordering"), None),
        (Method::GET, "/api/audit/duplicates".into(), None),
        (Method::PUT, format!("{s}/test-data"), Some(json!(RAW))),
        (Method::POST, format!("{s}/publish"), None),
        (
            Method::PUT,
            format!("{s}/ordering"),
            Some(json!({ "ordering": "9.5" })),
        ),
        (Method::GET, format!("{s}/exchanges"), None),
        (Method::GET, format!("{s}/last-success"), None),
        (
            Method::POST,
            format!("{s}/prompt"),
            Some(json!({ "instruction": "add logging" })),
        ),
        (Method::GET, format!("{s}/production-data"), None),
        (
            Method::PUT,
            format!("{s}/production-data"),
            Some(json!(RAW)),
        ),
        (Method::GET, "/api/runs".into(), None),
        (Method::GET, "/api/runs/1".into(), None),
        (Method::GET, "/api/runs/1/events".into(), None),
        (Method::GET, "/api/runs/1/log".into(), None),
        (Method::GET, "/api/runs/1/artifacts".into(), None),
        (
            Method::POST,
            "/api/runs".into(),
            Some(json!({ "script_id": 1 })),
        ),
        (Method::POST, "/api/runs/1/cancel".into(), None),
        (Method::POST, "/api/passes".into(), None),
        (Method::GET, "/api/passes/latest".into(), None),
        (Method::GET, "/api/passes/1".into(), None),
        (Method::POST, "/api/passes/1/cancel".into(), None),
        (Method::POST, "/api/logout".into(), None),
    ]
}

/// Routes only editors may use, reading included.
fn editors_only(method: &Method, path: &str) -> bool {
    method != Method::GET || path.ends_with("/production-data")
}

#[tokio::test]
async fn every_route_refuses_anonymous_and_viewer_writes() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let mo1 = app.mo1().await;
    let id = app.create(&ed1, "x = 0\n").await;
    // A finished run 1, so the run routes have something to show.
    let run = app.start_run(&ed1, json!({ "script_id": 1 })).await;
    app.sse(&format!("/api/runs/{run}/events"), &ed1, None, 1000)
        .await;
    let commits_before = app.git(&["rev-list", "--all", "--count"]);
    for (method, path, body) in routes(id) {
        let anon = send(&app, method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            anon.status,
            StatusCode::UNAUTHORIZED,
            "anonymous {method} {path}"
        );
        assert!(anon.error().contains("sign in"), "{}", anon.error());
        let forged = send(
            &app,
            method.clone(),
            &path,
            Some("scriptorium_session=forged"),
            body.clone(),
        )
        .await;
        assert_eq!(
            forged.status,
            StatusCode::UNAUTHORIZED,
            "forged cookie {method} {path}"
        );
        if path == "/api/logout" {
            continue;
        }
        let viewer = send(&app, method.clone(), &path, Some(&mo1), body.clone()).await;
        if editors_only(&method, &path) {
            assert_eq!(viewer.status, StatusCode::FORBIDDEN, "mo1 {method} {path}");
            assert!(viewer.error().contains("editor role"), "{}", viewer.error());
        } else {
            // Some reads may find nothing (404): what matters is that they are allowed.
            assert!(
                viewer.status == StatusCode::OK || viewer.status == StatusCode::NOT_FOUND,
                "mo1 {method} {path}: {}",
                viewer.status
            );
        }
    }
    // Nothing the refused requests asked for happened.
    assert_eq!(app.git(&["rev-list", "--all", "--count"]), commits_before);
    assert_eq!(
        app.get("/api/runs", &ed1)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1,
        "a refused run started"
    );
    for (method, path, body) in routes(id) {
        let r = send(&app, method.clone(), &path, Some(&ed1), body).await;
        let allowed =
            r.status.is_success() || (r.status == StatusCode::NOT_FOUND && method == Method::GET);
        assert!(
            allowed,
            "ed1 {method} {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    // ed1 signed out at the end: the session is gone.
    assert_eq!(
        app.get("/api/me", &ed1).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_rejects_bad_passwords() {
    let app = TestApp::start().await;
    let bad = app
        .json(
            Method::POST,
            "/api/login",
            None,
            Some(json!({ "username": "ed1", "password": "2viewer" })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.error(), "wrong user name or password");
    assert!(bad.headers.get(header::SET_COOKIE).is_none());
    let nobody = app
        .json(
            Method::POST,
            "/api/login",
            None,
            Some(json!({ "username": "nobody", "password": "x" })),
        )
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    let garbled = app
        .call(
            Method::POST,
            "/api/login",
            None,
            "{".into(),
            Some("application/json"),
        )
        .await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);

    let ok = app
        .json(
            Method::POST,
            "/api/login",
            None,
            Some(json!({ "username": "mo1", "password": "2viewer" })),
        )
        .await;
    assert_eq!(ok.json(), json!({ "username": "mo1", "roles": ["viewer"] }));
    let cookie = ok
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cookie.starts_with("scriptorium_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    let me = app.get("/api/me", cookie.split(';').next().unwrap()).await;
    assert_eq!(me.json(), json!({ "username": "mo1", "roles": ["viewer"] }));
}

#[tokio::test]
async fn viewers_read_the_same_list_contents_and_history() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let mo1 = app.mo1().await;
    let id = app.create(&ed1, "\"\"\"Shared\"\"\"\nx = 1\n").await;
    app.save(&ed1, id, "\"\"\"Shared\"\"\"\nx = 2\n", "0.1")
        .await;
    for path in [
        "/api/scripts".to_string(),
        format!("/api/scripts/{id}"),
        format!("/api/scripts/{id}/versions"),
    ] {
        assert_eq!(
            app.get(&path, &ed1).await.json(),
            app.get(&path, &mo1).await.json(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn unknown_api_routes_are_json_404s_for_signed_in_users() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let r = app.get("/api/nothing-here", &ed1).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("/api/nothing-here"), "{}", r.error());
    // The health check is open, for start-up scripts.
    let h = app.json(Method::GET, "/api/health", None, None).await;
    assert_eq!(h.json()["status"], "ok");
}

#[tokio::test]
async fn the_real_binary_serves_on_a_socket_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    let anon = reqwest::get(server.url("/api/scripts")).await.unwrap();
    assert_eq!(anon.status(), 401);
    let client = http_client(&server, "ed1", "1editor").await;
    let list: serde_json::Value = client
        .get(server.url("/api/scripts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // First start seeds examples 1.0, 2.0 and 2.1 on prod.
    let orderings: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ordering"].as_str().unwrap())
        .collect();
    assert_eq!(orderings, ["1.0", "2.0", "2.1"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|s| s["published_version"] == "0.1" && s["has_test_data"] == true)
    );
    let page = reqwest::get(server.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Scriptorium"));
    let log = server.terminate();
    assert!(log.contains("shutting down"), "{log}");
}
