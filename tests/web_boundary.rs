//! The browser boundary: artifacts cannot run in the app's origin, security headers,
//! CSRF (content type and origin), the WebSocket origin check, login throttling.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower::ServiceExt;

use crate::util::{Reply, TestApp};

/// One request with exactly the headers given (and a client address, as the real
/// server's connection info would give it).
pub async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
    from: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body.into()).unwrap();
    if let Some(addr) = from {
        req.extensions_mut()
            .insert(ConnectInfo(addr.parse::<SocketAddr>().unwrap()));
    }
    let router = app.app.as_ref().unwrap().router.clone();
    let res = router.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

async fn script_count(app: &TestApp, cookie: &str) -> usize {
    app.get("/api/scripts", cookie)
        .await
        .json()
        .as_array()
        .unwrap()
        .len()
}

// ---- artifacts ----

const EVIL: &str = r#"
open("evil.html", "w").write("<script>fetch('/api/tokens',{method:'POST'})</script><h1>hi</h1>")
open("evil.svg", "w").write('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
open("page.xhtml", "w").write('<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>')
open("notes.txt", "w").write("<script>alert(1)</script>")
open("table.csv", "w").write("a,b\n1,2\n")
open("data.json", "w").write('{"a": 1}')
open("pic.png", "wb").write(b"\x89PNG\r\n\x1a\n")
open("mesh.stl", "w").write("solid x\nendsolid x\n")
print("written")
"#;

#[tokio::test]
async fn artifacts_are_downloads_under_a_sandbox_policy_and_only_passive_types_show_inline() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, EVIL).await;
    let run = app.start_run(&ed1, json!({ "script_id": id })).await;
    let events = app
        .sse(&format!("/api/runs/{run}/events"), &ed1, None, 1000)
        .await;
    assert_eq!(
        events.last().unwrap().data["status"],
        "succeeded",
        "{events:?}"
    );
    let get = |name: &str| {
        let path = format!("/api/runs/{run}/artifacts/{name}");
        let ed1 = ed1.clone();
        let app = &app;
        async move { app.get(&path, &ed1).await }
    };
    for name in ["evil.html", "evil.svg", "page.xhtml"] {
        let r = get(name).await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        let kind = header(&r, "content-type");
        assert!(
            !kind.contains("html") && !kind.contains("svg") && !kind.contains("xml"),
            "{name} served as {kind}"
        );
        assert!(
            header(&r, "content-disposition").starts_with("attachment"),
            "{name}: {}",
            header(&r, "content-disposition")
        );
    }
    for (name, kind) in [
        ("notes.txt", "text/plain; charset=utf-8"),
        ("table.csv", "text/csv; charset=utf-8"),
        ("data.json", "application/json"),
        ("pic.png", "image/png"),
        ("mesh.stl", "model/stl"),
    ] {
        let r = get(name).await;
        assert_eq!(header(&r, "content-type"), kind, "{name}");
        assert!(
            header(&r, "content-disposition").starts_with("inline"),
            "{name}"
        );
    }
    for name in ["evil.html", "evil.svg", "notes.txt", "mesh.stl"] {
        let r = get(name).await;
        let csp = header(&r, "content-security-policy");
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{name}: CSP `{csp}`"
        );
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{name}");
    }
}

// ---- the app's own headers ----

#[tokio::test]
async fn the_app_and_the_api_send_a_strict_policy() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    for path in ["/", "/some/client/route", "/api/scripts"] {
        let r = send(
            &app,
            Method::GET,
            path,
            &[("cookie", &ed1)],
            Body::empty(),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let csp = header(&r, "content-security-policy");
        for part in [
            "script-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(part), "{path}: CSP `{csp}` lacks {part}");
        }
        assert!(
            !csp.contains("unsafe-eval")
                && !csp
                    .split(';')
                    .any(|d| d.contains("script-src") && d.contains("unsafe-inline")),
            "{csp}"
        );
        assert_eq!(header(&r, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&r, "referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
    }
}

// ---- CSRF ----

#[tokio::test]
async fn cross_site_form_and_text_posts_are_refused_and_change_nothing() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "\"\"\"Kept\"\"\"\nx = 1\n").await;
    let scripts = script_count(&app, &ed1).await;
    let commits = app.git(&["rev-list", "--all", "--count"]);

    // What a hostile page can send without a preflight: text/plain, a form, no type.
    let text = send(
        &app,
        Method::POST,
        "/api/scripts",
        &[("cookie", &ed1), ("content-type", "text/plain")],
        r#"{"content":"x=1\n"}"#,
        None,
    )
    .await;
    assert_eq!(
        text.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        text.text()
    );
    assert!(
        text.error().contains("application/json"),
        "{}",
        text.error()
    );
    let form = send(
        &app,
        Method::POST,
        &format!("/api/scripts/{id}/publish"),
        &[
            ("cookie", &ed1),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "a=b",
        None,
    )
    .await;
    assert_eq!(
        form.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        form.text()
    );
    let bare = send(
        &app,
        Method::POST,
        &format!("/api/scripts/{id}/publish"),
        &[("cookie", &ed1)],
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(
        bare.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        bare.text()
    );
    let multipart = send(
        &app,
        Method::POST,
        "/api/passes",
        &[
            ("cookie", &ed1),
            ("content-type", "multipart/form-data; boundary=x"),
        ],
        "--x--",
        None,
    )
    .await;
    assert_eq!(multipart.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The raw-body routes take exactly application/octet-stream.
    let raw = send(
        &app,
        Method::PUT,
        &format!("/api/scripts/{id}/test-data"),
        &[("cookie", &ed1), ("content-type", "text/plain")],
        "evil",
        None,
    )
    .await;
    assert_eq!(raw.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        raw.error().contains("application/octet-stream"),
        "{}",
        raw.error()
    );

    assert_eq!(
        script_count(&app, &ed1).await,
        scripts,
        "a refused request created a script"
    );
    assert_eq!(
        app.git(&["rev-list", "--all", "--count"]),
        commits,
        "a refused request committed"
    );
    assert_eq!(
        app.get(&format!("/api/scripts/{id}"), &ed1).await.json()["published_version"],
        Value::Null
    );
    assert_eq!(
        app.get(&format!("/api/scripts/{id}/test-data"), &ed1)
            .await
            .text(),
        ""
    );
}

#[tokio::test]
async fn json_from_a_foreign_origin_is_refused_and_the_own_origin_works() {
    let app = TestApp::start_with(|c| {
        c.server.allowed_origins = vec!["https://scriptorium.example.org".into()]
    })
    .await;
    let ed1 = app.ed1().await;
    let scripts = script_count(&app, &ed1).await;
    let body = r#"{"content":"x = 1\n"}"#;
    let json_ct = ("content-type", "application/json");
    let host = ("host", "127.0.0.1:8080");
    for foreign in [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("origin", "http://127.0.0.1:8081")],
        vec![("origin", "https://127.0.0.1:8080.evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ],
    ] {
        let mut h = vec![("cookie", ed1.as_str()), json_ct, host];
        h.extend(foreign.iter().copied());
        let r = send(&app, Method::POST, "/api/scripts", &h, body, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{foreign:?}: {}", r.text());
        assert!(r.error().contains("allowed_origins"), "{}", r.error());
    }
    // Login from a foreign page is refused too (login CSRF).
    let r = send(
        &app,
        Method::POST,
        "/api/login",
        &[json_ct, host, ("origin", "http://evil.example")],
        r#"{"username":"ed1","password":"1editor"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(script_count(&app, &ed1).await, scripts);

    for own in [
        vec![("origin", "http://127.0.0.1:8080")],
        vec![
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![("sec-fetch-site", "same-origin")],
        vec![
            ("origin", "https://scriptorium.example.org"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![],
    ] {
        let mut h = vec![("cookie", ed1.as_str()), json_ct, host];
        h.extend(own.iter().copied());
        let r = send(&app, Method::POST, "/api/scripts", &h, body, None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{own:?}: {}", r.text());
    }
    // Reading is not a state change: a cross-site GET is left to the cookie's SameSite.
    let r = send(
        &app,
        Method::GET,
        "/api/scripts",
        &[("cookie", &ed1), ("sec-fetch-site", "cross-site")],
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(script_count(&app, &ed1).await, scripts + 5);
}

#[tokio::test]
async fn a_bearer_token_skips_the_origin_check_but_not_the_content_type_rule() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let made = app
        .json(
            Method::POST,
            "/api/tokens",
            Some(&ed1),
            Some(json!({ "name": "agent" })),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let bearer = format!("Bearer {}", made.json()["token"].as_str().unwrap());
    let body = r#"{"content":"x = 1\n"}"#;
    let r = send(
        &app,
        Method::POST,
        "/api/scripts",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        body,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(
        &app,
        Method::POST,
        "/api/scripts",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json; charset=utf-8"),
            ("origin", "http://ci.example"),
        ],
        body,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(
        &app,
        Method::POST,
        "/api/scripts",
        &[("authorization", &bearer), ("content-type", "text/plain")],
        body,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(script_count(&app, &ed1).await, 2 + 3);
    // A bearer header on the open login route proves nothing: the origin check holds.
    let r = send(
        &app,
        Method::POST,
        "/api/login",
        &[
            ("authorization", "Bearer scr_junk"),
            ("content-type", "application/json"),
            ("origin", "http://evil.example"),
        ],
        r#"{"username":"ed1","password":"1editor"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
}

// ---- WebSocket ----

#[tokio::test]
async fn a_language_server_upgrade_from_a_foreign_origin_is_refused() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.app.as_ref().unwrap().router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let connect = |origin: Option<String>| {
        let mut req = format!("ws://{addr}/api/lsp")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("cookie", ed1.parse().unwrap());
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    for foreign in [
        "http://evil.example",
        "null",
        "http://localhost.evil.example",
    ] {
        match connect(Some(foreign.into())).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 403, "{foreign}");
                let body: Value =
                    serde_json::from_slice(res.body().as_deref().unwrap_or_default()).unwrap();
                assert!(
                    body["error"].as_str().unwrap().contains("allowed_origins"),
                    "{body}"
                );
            }
            other => panic!(
                "{foreign}: expected 403, got {:?}",
                other.map(|(_, r)| r.status())
            ),
        }
    }
    let (mut ws, res) = connect(Some(format!("http://{addr}")))
        .await
        .expect("the app's own origin upgrades");
    assert_eq!(res.status(), 101);
    ws.close(None).await.unwrap();
}

/// The server's resident memory, from `/proc`.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024
}

/// Found by an attack: a download read the whole artifact into memory, so a viewer
/// fetching one 250 MiB (sparse, so free to make) artifact eight times at once took the
/// server to 2 GB. Downloads now stream: several slow readers of a 200 MiB artifact
/// leave the server's memory where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_downloads_of_a_big_artifact_do_not_take_the_servers_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::util::ServerProcess::start(&dir.path().join("data"), &[]);
    let ed = crate::util::http_client(&server, "ed1", "1editor").await;
    let script =
        "f = open('sparse.bin', 'wb')\nf.truncate(200 * 1024 * 1024)\nf.close()\nprint('made')\n";
    let r = ed
        .post(server.url("/api/scripts"))
        .json(&json!({ "content": script }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let r = ed
        .post(server.url("/api/runs"))
        .json(&json!({ "script_id": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let run = r.json::<Value>().await.unwrap()["run_id"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let v: Value = ed
            .get(server.url(&format!("/api/runs/{run}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] != "queued" && v["status"] != "running" {
            assert_eq!(v["status"], "succeeded", "{v}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not end: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before = rss_mib(server.child.id());
    let viewer = crate::util::http_client(&server, "mo1", "2viewer").await;
    let mut open = Vec::new();
    for _ in 0..6 {
        let mut r = viewer
            .get(server.url(&format!("/api/runs/{run}/artifacts/sparse.bin")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"],
            (200u64 * 1024 * 1024).to_string()
        );
        // Read a little, then stop reading: a slow client.
        assert!(r.chunk().await.unwrap().is_some());
        open.push(r);
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let during = rss_mib(server.child.id());
    assert!(
        during < before + 200,
        "six slow downloads of a 200 MiB artifact took the server from {before} to {during} MiB"
    );
    drop(open);
}
