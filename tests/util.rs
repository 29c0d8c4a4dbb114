//! Helpers: an in-process app on a temporary data directory, requests, git queries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use scriptorium::config::{Config, Overrides};
use scriptorium::server::App;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn test_config(data: &Path) -> Config {
    let mut c = Config::load_with(
        &Overrides {
            data_dir: Some(data.to_path_buf()),
            ..Default::default()
        },
        |_| None,
    )
    .expect("default config");
    c.interpreters = repo_root().join("interpreters.toml");
    c.frontend_dir = data.join("no-frontend");
    // The wasi backend's host is the server binary (`scriptorium __wasi-host`), not
    // this test program.
    c.sandbox.wasi_host = Some(env!("CARGO_BIN_EXE_scriptorium").into());
    c
}

pub struct TestApp {
    pub app: Option<App>,
    pub dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.json()))
            .to_string()
    }
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::start_in(tempfile::tempdir().unwrap(), tweak).await
    }

    /// A server whose data lives in `dir` (e.g. outside /tmp, where runs may start warm).
    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let app = App::start(&config).await.expect("app starts");
        TestApp {
            app: Some(app),
            dir,
        }
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Body,
        content_type: Option<&str>,
    ) -> Reply {
        self.call_with(method, path, cookie, body, content_type, &[])
            .await
    }

    /// [`TestApp::call`] with more request headers (e.g. `If-Match`).
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Body,
        content_type: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        let router = self.app.as_ref().unwrap().router.clone();
        let res = router.oneshot(req.body(body).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A JSON request; without a body, state changes still say `application/json`, as
    /// the server requires (reads send no content type).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        match body {
            Some(b) => {
                self.call(
                    method,
                    path,
                    cookie,
                    Body::from(b.to_string()),
                    Some("application/json"),
                )
                .await
            }
            None if method == Method::GET || method == Method::HEAD => {
                self.call(method, path, cookie, Body::empty(), None).await
            }
            None => {
                self.call(
                    method,
                    path,
                    cookie,
                    Body::empty(),
                    Some("application/json"),
                )
                .await
            }
        }
    }

    /// A raw body (test data, production data), as `application/octet-stream`.
    pub async fn put_raw(&self, path: &str, cookie: Option<&str>, body: impl Into<Body>) -> Reply {
        self.call(
            Method::PUT,
            path,
            cookie,
            body.into(),
            Some("application/octet-stream"),
        )
        .await
    }

    pub async fn get(&self, path: &str, cookie: &str) -> Reply {
        self.json(Method::GET, path, Some(cookie), None).await
    }

    /// Signs in and returns the `Cookie` header value.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .json(
                Method::POST,
                "/api/login",
                None,
                Some(serde_json::json!({ "username": user, "password": password })),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "login {user}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    }

    pub async fn ed1(&self) -> String {
        self.login("ed1", "1editor").await
    }

    pub async fn mo1(&self) -> String {
        self.login("mo1", "2viewer").await
    }

    /// Creates a script with `content` and returns its id.
    pub async fn create(&self, cookie: &str, content: &str) -> i64 {
        let r = self
            .json(
                Method::POST,
                "/api/scripts",
                Some(cookie),
                Some(serde_json::json!({ "content": content })),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["id"].as_i64().unwrap()
    }

    pub async fn save(&self, cookie: &str, id: i64, content: &str, base: &str) -> Reply {
        self.json(
            Method::PUT,
            &format!("/api/scripts/{id}"),
            Some(cookie),
            Some(serde_json::json!({ "content": content, "base_version": base })),
        )
        .await
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.data().join("repo"), args)
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        self.app.take().unwrap().stop().await;
        self.dir
    }
}

/// Runs the `git` CLI on the repository and returns its stdout.
pub fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The real `scriptorium serve` binary on port 0.
pub struct ServerProcess {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl ServerProcess {
    // The child is reaped by `Drop for ServerProcess` (or below, when it never starts).
    #[allow(clippy::zombie_processes)]
    pub fn start(data: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let log = data.with_extension(format!(
            "log{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scriptorium"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env(
                "SCRIPTORIUM_INTERPRETERS",
                repo_root().join("interpreters.toml"),
            )
            .env("SCRIPTORIUM_FRONTEND_DIR", data.join("no-frontend"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("server binary starts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("Scriptorium is listening addr=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().to_string();
                return ServerProcess { child, addr, log };
            }
            if std::time::Instant::now() > deadline {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start: {text}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait: the graceful path.
    pub fn terminate(mut self) -> String {
        unsafe_kill(self.child.id(), 15);
        let _ = self.child.wait();
        self.log_text()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A reqwest client that keeps cookies, signed in as `user`.
pub async fn http_client(server: &ServerProcess, user: &str, password: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = client
        .post(server.url("/api/login"))
        .json(&serde_json::json!({ "username": user, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    client
}

/// One server-sent event, with when it arrived.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: u64,
    pub event: String,
    pub data: Value,
    pub at: std::time::Instant,
}

/// Parses complete events out of `buf`, leaving a partial one in place.
pub fn parse_sse(buf: &mut String, out: &mut Vec<Sse>) {
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let (mut id, mut event, mut data) = (0, String::from("message"), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !data.is_empty() {
            out.push(Sse {
                id,
                event,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
                at: std::time::Instant::now(),
            });
        }
    }
}

impl TestApp {
    /// Reads the SSE stream at `path` until a `complete` event or `max` events.
    pub async fn sse(
        &self,
        path: &str,
        cookie: &str,
        last_event_id: Option<u64>,
        max: usize,
    ) -> Vec<Sse> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::COOKIE, cookie);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let router = self.app.as_ref().unwrap().router.clone();
        let res = router
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "SSE {path}");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut body = res.into_body();
        let (mut buf, mut out) = (String::new(), Vec::new());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while out.len() < max && !out.iter().any(|e: &Sse| e.event == "complete") {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let frame = tokio::time::timeout(left, body.frame())
                .await
                .expect("SSE stalled");
            let Some(frame) = frame else { break };
            if let Ok(data) = frame.unwrap().into_data() {
                buf.push_str(&String::from_utf8_lossy(&data));
                parse_sse(&mut buf, &mut out);
            }
        }
        out.truncate(max);
        out
    }

    /// Creates a script at `ordering` with `content` and test data, and publishes it.
    pub async fn published(
        &self,
        cookie: &str,
        ordering: &str,
        content: &str,
        test_data: &str,
    ) -> i64 {
        let r = self
            .json(
                Method::POST,
                "/api/scripts",
                Some(cookie),
                Some(serde_json::json!({ "content": content, "ordering": ordering })),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let id = r.json()["id"].as_i64().unwrap();
        let put = self
            .put_raw(
                &format!("/api/scripts/{id}/test-data"),
                Some(cookie),
                test_data.to_string(),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK);
        let p = self
            .json(
                Method::POST,
                &format!("/api/scripts/{id}/publish"),
                Some(cookie),
                None,
            )
            .await;
        assert_eq!(p.status, StatusCode::OK);
        id
    }

    /// Starts a run and returns its id.
    pub async fn start_run(&self, cookie: &str, body: Value) -> i64 {
        let r = self
            .json(Method::POST, "/api/runs", Some(cookie), Some(body))
            .await;
        assert_eq!(
            r.status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["run_id"].as_i64().unwrap()
    }
}

/// The team of Phase 2: editors ed1…ed4 (ed2…ed4 with password `pw-edN`) and the
/// viewer mo1.
pub fn add_team(c: &mut Config) {
    for n in 2..=4 {
        c.users.push(scriptorium::config::UserConfig {
            username: format!("ed{n}"),
            password_hash: scriptorium::auth::hash_password(&format!("pw-ed{n}")),
            roles: vec![
                scriptorium::auth::Role::Viewer,
                scriptorium::auth::Role::Editor,
            ],
            email: Some(format!("ed{n}@scriptorium.local")),
            disabled: false,
        });
    }
}

impl TestApp {
    pub async fn team() -> TestApp {
        Self::start_with(add_team).await
    }

    /// Signs in one of the team: `ed1`…`ed4` or `mo1`.
    pub async fn as_user(&self, user: &str) -> String {
        match user {
            "ed1" => self.ed1().await,
            "mo1" => self.mo1().await,
            other => self.login(other, &format!("pw-{other}")).await,
        }
    }

    /// Opens an SSE stream and hands its events over a channel as they arrive.
    pub async fn sse_live(&self, path: &str, cookie: &str, last_event_id: Option<u64>) -> LiveSse {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::COOKIE, cookie);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let router = self.app.as_ref().unwrap().router.clone();
        let res = router
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "SSE {path}");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut body = res.into_body();
        let task = tokio::spawn(async move {
            let (mut buf, mut out) = (String::new(), Vec::new());
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    buf.push_str(&String::from_utf8_lossy(&data));
                    parse_sse(&mut buf, &mut out);
                    for e in out.drain(..) {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        LiveSse { rx, task }
    }
}

/// An open SSE stream; dropping it closes the connection.
pub struct LiveSse {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<Sse>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LiveSse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next event of `kind` within `within`, skipping others.
pub async fn next_event(
    live: &mut LiveSse,
    kind: &str,
    within: std::time::Duration,
) -> Option<Sse> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, live.rx.recv()).await {
            Ok(Some(e)) if e.event == kind => return Some(e),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}
