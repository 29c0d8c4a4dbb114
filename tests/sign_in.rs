//! Signing in from the browser boundary: guessing is throttled per user and per address
//! (also on the real server, by the peer address), the login takes JSON only and a
//! bounded body, and a rebound host name is not served (helpers in `web_boundary.rs`).

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::json;

use crate::util::{Reply, TestApp};
use crate::web_boundary::{header, send};

// ---- login throttling ----

async fn login_from(app: &TestApp, user: &str, password: &str, from: &str) -> Reply {
    let body = json!({ "username": user, "password": password }).to_string();
    send(
        app,
        Method::POST,
        "/api/login",
        &[("content-type", "application/json")],
        body,
        Some(from),
    )
    .await
}

fn retry_after(r: &Reply) -> u64 {
    header(r, "retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("no Retry-After on {}: {}", r.status, r.text()))
}

#[tokio::test]
async fn one_mistype_is_not_slowed_and_guessing_is_throttled_per_user_and_per_address() {
    let app = TestApp::start().await;
    // A real user mistypes once, then signs in, at once.
    let started = std::time::Instant::now();
    assert_eq!(
        login_from(&app, "ed1", "1editr", "10.0.0.1:5000")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, "ed1", "1editor", "10.0.0.1:5000")
            .await
            .status,
        StatusCode::OK
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Guessing mo1's password from one address: refused with 429 and Retry-After.
    let mut statuses = Vec::new();
    let mut first_429 = None;
    for _ in 0..20 {
        let r = login_from(&app, "mo1", "guess", "10.0.0.2:5000").await;
        statuses.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS && first_429.is_none() {
            assert!(retry_after(&r) >= 1);
            assert!(r.error().contains("try again"), "{}", r.error());
            first_429 = Some(r);
        }
    }
    assert!(
        first_429.is_some(),
        "20 wrong passwords were never throttled: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .take(3)
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    // While locked, even the right password waits, from anywhere: the lock is mo1's.
    let locked = login_from(&app, "mo1", "2viewer", "10.0.0.3:5000").await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text()
    );
    assert!(retry_after(&locked) >= 1);
    // Another user, from another address, is not slowed.
    assert_eq!(
        login_from(&app, "ed1", "1editor", "10.0.0.3:5000")
            .await
            .status,
        StatusCode::OK
    );

    // One address cycling user names is throttled as an address.
    let mut throttled = false;
    for i in 0..40 {
        let r = login_from(&app, &format!("user{i}"), "guess", "10.0.0.4:5000").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            retry_after(&r);
            throttled = true;
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert!(
        throttled,
        "an address guessing 40 user names was never throttled"
    );
    assert_eq!(
        login_from(&app, "ed1", "1editor", "10.0.0.4:6000")
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&app, "ed1", "1editor", "10.0.0.5:5000")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn refusals_name_the_header_and_login_needs_json() {
    let app = TestApp::start().await;
    let r = send(
        &app,
        Method::POST,
        "/api/login",
        &[("content-type", "text/plain")],
        r#"{"username":"ed1","password":"1editor"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    assert!(
        r.error().contains("Content-Type: application/json"),
        "{}",
        r.error()
    );
}

#[tokio::test]
async fn a_rebound_host_name_is_not_served_on_loopback() {
    // DNS rebinding: evil.example resolves to 127.0.0.1, so its page is "same-origin".
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let evil = [
        ("host", "evil.example:8080"),
        ("origin", "http://evil.example:8080"),
        ("content-type", "application/json"),
    ];
    let login = send(
        &app,
        Method::POST,
        "/api/login",
        &evil,
        r#"{"username":"ed1","password":"1editor"}"#,
        None,
    )
    .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN, "{}", login.text());
    assert!(login.error().contains("evil.example"), "{}", login.error());
    let mut with_cookie = evil.to_vec();
    with_cookie.push(("cookie", ed1.as_str()));
    let read = send(
        &app,
        Method::GET,
        "/api/scripts",
        &with_cookie,
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    let own = send(
        &app,
        Method::GET,
        "/api/scripts",
        &[("host", "localhost:8080"), ("cookie", &ed1)],
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(own.status, StatusCode::OK);
}

#[tokio::test]
async fn the_real_server_throttles_by_the_peer_address() {
    // The address comes from the connection (server::run), not from any header.
    let dir = tempfile::tempdir().unwrap();
    let server = crate::util::ServerProcess::start(
        &dir.path().join("data"),
        &[("SCRIPTORIUM_SEED_EXAMPLES", "false")],
    );
    let client = reqwest::Client::new();
    let mut refused = None;
    for i in 0..25 {
        let r = client
            .post(server.url("/api/login"))
            .json(&json!({ "username": format!("nobody{i}"), "password": "guess" }))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            refused = Some(i);
            assert!(r.headers().contains_key("retry-after"));
            break;
        }
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        refused,
        Some(21),
        "the 21st wrong password from one address should wait"
    );
    let log = server.terminate();
    assert!(
        log.contains("sign-in refused: too many wrong passwords"),
        "{log}"
    );
}

#[tokio::test]
async fn a_huge_sign_in_body_is_refused_before_hashing() {
    let app = TestApp::start().await;
    let body = json!({ "username": "ed1", "password": "x".repeat(100_000) }).to_string();
    let r = send(
        &app,
        Method::POST,
        "/api/login",
        &[("content-type", "application/json")],
        body,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert!(r.error().contains("too large"), "{}", r.error());
}
