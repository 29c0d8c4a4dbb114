//! Reliability: no 5xx under ordinary concurrency, stale git locks cleared, bounded
//! connections. One regression test per finding of issue 13; the long form is the
//! soak suite (`tests/soak.rs`, `make soak`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{TestApp, git, test_config};

/// Another writer of the database (as run logs and logins are), committing every
/// 2 ms until stopped.
fn busy_writer(db: std::path::PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let c = rusqlite::Connection::open(db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.execute_batch("CREATE TABLE IF NOT EXISTS noise (x INTEGER)")
            .unwrap();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            c.execute_batch("BEGIN IMMEDIATE; INSERT INTO noise VALUES (1); COMMIT")
                .unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    })
}

/// The files that more than one `Create`/`Fork` commit on `branch` made.
fn duplicate_creates(app: &TestApp, branch: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for subject in app.git(&["log", branch, "--format=%s"]).lines() {
        // "Create script_0005.py (0.1)" / "Fork script_0002.py 0.1 as script_0007.py"
        let words: Vec<&str> = subject.split_whitespace().collect();
        let file = match words.first() {
            Some(&"Create") => words[1],
            Some(&"Fork") => words[words.len() - 1],
            _ => continue,
        };
        *seen.entry(file.to_string()).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(f, n)| format!("{f} ×{n}"))
        .collect()
}

/// Finding 1: creates, saves and forks from 8 clients while other connections write
/// the database: no 5xx ("database is locked"), and no file created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_saves_and_forks_get_no_5xx_and_no_duplicate_create() {
    let app = Arc::new(TestApp::start().await);
    let cookie = app.ed1().await;
    let examples = app
        .get("/api/scripts", &cookie)
        .await
        .json()
        .as_array()
        .unwrap()
        .len();
    let stop = Arc::new(AtomicBool::new(false));
    let noise = busy_writer(app.data().join("scriptorium.db"), stop.clone());
    let mut clients = Vec::new();
    for c in 0..8 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let cookie = app.ed1().await;
            let mut statuses = Vec::new();
            for i in 0..6 {
                let r = app
                    .json(
                        Method::POST,
                        "/api/scripts",
                        Some(&cookie),
                        Some(json!({ "content": format!("\"\"\"c{c} s{i}\"\"\"\nx = {i}\n") })),
                    )
                    .await;
                statuses.push(("create", r.status, r.text()));
                if r.status != StatusCode::CREATED {
                    continue;
                }
                let id = r.json()["id"].as_i64().unwrap();
                let s = app
                    .save(
                        &cookie,
                        id,
                        &format!("\"\"\"c{c} s{i}\"\"\"\nx = {}\n", i + 100),
                        "0.1",
                    )
                    .await;
                statuses.push(("save", s.status, s.text()));
                if i % 3 == 0 {
                    let f = app
                        .json(
                            Method::POST,
                            &format!("/api/scripts/{id}/fork"),
                            Some(&cookie),
                            None,
                        )
                        .await;
                    statuses.push(("fork", f.status, f.text()));
                }
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let noise_commits = noise.join().unwrap();
    let failed: Vec<_> = all.iter().filter(|(_, s, _)| s.is_server_error()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        all.len()
    );
    assert!(
        noise_commits > 10,
        "the other writer did write ({noise_commits})"
    );
    let dups = duplicate_creates(&app, "ed1");
    assert!(dups.is_empty(), "files created twice in git: {dups:?}");
    // Every acknowledged create and fork is a script, each with one Create/Fork commit.
    let made = all
        .iter()
        .filter(|(k, s, _)| (*k == "create" || *k == "fork") && *s == StatusCode::CREATED)
        .count();
    let cookie = app.ed1().await;
    let list = app.get("/api/scripts", &cookie).await.json();
    assert_eq!(list.as_array().unwrap().len(), made + examples);
}

/// Finding 2: a `refs/heads/ed1.lock` left by a killed server stopped every save on
/// `ed1` (500) while health said ok. Start-up now removes it (nobody holds it).
#[tokio::test]
async fn a_stale_branch_lock_is_cleared_at_start_up_and_saves_work() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "x = 1\n").await;
    let dir = app.stop().await;
    let lock = dir.path().join("repo/refs/heads/ed1.lock");
    std::fs::write(&lock, b"").unwrap();

    let config = test_config(dir.path());
    let app = TestApp {
        app: Some(
            scriptorium::server::App::start(&config)
                .await
                .expect("starts"),
        ),
        dir,
    };
    assert!(!lock.exists(), "the stale lock is removed at start-up");
    let ed1 = app.ed1().await;
    let r = app.save(&ed1, id, "x = 2\n", "0.1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(app.create(&ed1, "y = 1\n").await, id + 1);
    let health = app
        .json(Method::GET, "/api/health", None, None)
        .await
        .json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["write_path"]["git"]["ok"], true);
    git(&app.data().join("repo"), &["fsck", "--no-dangling"]);
}

/// A lock that appears while the server runs: removed by the failed write itself when
/// nobody holds it; left (health `degraded`, 503 naming it) while a live process does.
#[tokio::test]
async fn a_lock_held_by_a_live_process_is_left_and_health_says_degraded() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "x = 1\n").await;
    let lock = app.data().join("repo/refs/heads/ed1.lock");

    // Nobody holds it: the save clears it and succeeds.
    std::fs::write(&lock, b"").unwrap();
    assert_eq!(
        app.save(&ed1, id, "x = 2\n", "0.1").await.status,
        StatusCode::OK
    );
    assert!(!lock.exists());

    // This process holds it open (as a running git would), for a while already.
    let held = std::fs::File::create(&lock).unwrap();
    held.set_modified(std::time::SystemTime::now() - Duration::from_secs(30))
        .unwrap();
    let health = app
        .json(Method::GET, "/api/health", None, None)
        .await
        .json();
    assert_eq!(health["status"], "degraded", "{health}");
    let reason = health["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("refs/heads/") && reason.contains("running process"),
        "{reason}"
    );
    let r = app.save(&ed1, id, "x = 3\n", "0.2").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.error().contains("try again"), "{}", r.error());
    assert!(lock.exists(), "a held lock is never removed");
    // Nothing changed: same version, no dangling branch move.
    assert_eq!(
        app.get(&format!("/api/scripts/{id}"), &ed1).await.json()["version"],
        "0.2"
    );

    drop(held);
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(
        app.save(&ed1, id, "x = 3\n", "0.2").await.status,
        StatusCode::OK
    );
    let health = app
        .json(Method::GET, "/api/health", None, None)
        .await
        .json();
    assert_eq!(
        health["status"], "ok",
        "a successful write clears the failure: {health}"
    );
}

/// A real server on a port-0 socket, stopped when dropped.
pub struct Served {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Served {
    pub async fn start(tweak: impl FnOnce(&mut scriptorium::config::Config)) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(scriptorium::server::run(config, listener, async move {
            let _ = rx.await;
        }));
        let served = Served {
            addr,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while served.health_status().await != Some(200) {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    }

    /// One `GET /api/health` on a new connection; the status code, if any answer.
    pub async fn health_status(&self) -> Option<u16> {
        let mut s = TcpStream::connect(self.addr).await.ok()?;
        s.write_all(b"GET /api/health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace().nth(1)?.parse().ok()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.task.take().unwrap().await;
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Reads until the peer closes; how long that took, or `None` if it did not within `limit`.
pub async fn time_to_close(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Finding 3: half-sent requests and idle keep-alive connections were never closed
/// (20,000 of them exhausted the open files and stopped `/api/health`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_and_idle_connections_are_closed_and_health_keeps_answering() {
    let served = Served::start(|c| {
        c.server.header_read_timeout_secs = 1.0;
        c.server.body_timeout_secs = 1.0;
    })
    .await;

    // A body that stops halfway: answered with an error, not waited for forever.
    let mut slow_body = TcpStream::connect(served.addr).await.unwrap();
    slow_body
        .write_all(b"POST /api/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"username\"")
        .await
        .unwrap();

    // A request head that never ends.
    let mut half = TcpStream::connect(served.addr).await.unwrap();
    half.write_all(b"GET /api/health HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // A keep-alive connection that goes quiet after one request.
    let mut idle = TcpStream::connect(served.addr).await.unwrap();
    idle.write_all(b"GET /api/health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Many connections that never send anything.
    let mut quiet = Vec::new();
    for _ in 0..500 {
        quiet.push(TcpStream::connect(served.addr).await.unwrap());
    }
    let start = Instant::now();
    assert_eq!(served.health_status().await, Some(200));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "health took {:?} with 500 idle connections",
        start.elapsed()
    );

    let mut answer = Vec::new();
    let body_start = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), slow_body.read_to_end(&mut answer))
        .await
        .expect("a stalled body is cut off")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(
        body_start.elapsed() < Duration::from_secs(4),
        "{:?}",
        body_start.elapsed()
    );
    let half_closed = time_to_close(&mut half, Duration::from_secs(6)).await;
    assert!(
        half_closed.is_some(),
        "a half-sent request head is closed after the header timeout"
    );
    assert!(
        time_to_close(&mut idle, Duration::from_secs(6))
            .await
            .is_some(),
        "an idle keep-alive connection is closed"
    );
    for (i, q) in quiet.iter_mut().enumerate() {
        assert!(
            time_to_close(q, Duration::from_secs(6)).await.is_some(),
            "idle connection {i} still open"
        );
    }
    served.stop().await;
}

async fn connect_from(ip: &str, to: std::net::SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// The connection limits: over `max_connections_per_client` a client gets a 503 at
/// once; over `max_connections` a new connection waits until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_make_new_connections_wait_or_get_503() {
    let served = Served::start(|c| {
        c.server.max_connections = 3;
        c.server.max_connections_per_client = 2;
        c.server.header_read_timeout_secs = 30.0;
    })
    .await;
    // The start-up probe's connection ends on the server a moment after the client saw
    // its answer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a1 = connect_from("127.0.0.1", served.addr).await;
    let _a2 = connect_from("127.0.0.1", served.addr).await;
    // A third from the same address: over the per-client limit.
    let mut a3 = connect_from("127.0.0.1", served.addr).await;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), a3.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many open connections"),
        "{body}"
    );
    // Another client takes the last connection; one more waits.
    let _b1 = connect_from("127.0.0.2", served.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut b2 = connect_from("127.0.0.2", served.addr).await;
    b2.write_all(b"GET /api/health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let waited = tokio::time::timeout(Duration::from_millis(500), b2.read_to_end(&mut reply)).await;
    assert!(
        waited.is_err(),
        "served over the limit: {}",
        String::from_utf8_lossy(&reply)
    );
    // One closes: the waiting one is served.
    drop(a1);
    tokio::time::timeout(Duration::from_secs(5), b2.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    served.stop().await;
}

/// Signs in over a connection of its own that the server closes; the `Cookie` value.
async fn login_cookie(addr: std::net::SocketAddr) -> String {
    let body = json!({ "username": "ed1", "password": "1editor" }).to_string();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{text}"));
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// A WebSocket (the language server) outlives the header timeout, and holds its
/// connection permit while open: with `max_connections = 1` a new connection waits
/// until the socket closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_the_header_timeout_and_counts_as_a_connection() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let served = Served::start(|c| {
        c.server.max_connections = 1;
        c.server.header_read_timeout_secs = 1.0;
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cookie = login_cookie(served.addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut req = format!("ws://{}/api/lsp", served.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");

    // Quiet for longer than the header timeout, then still usable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "processId": null, "rootUri": null, "capabilities": {} } });
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m
                && serde_json::from_str::<Value>(&t).is_ok_and(|v| v["id"] == 1)
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        answered,
        Ok(true),
        "the language server answered over the old socket"
    );

    // The socket holds the only connection: health waits…
    let mut probe = TcpStream::connect(served.addr).await.unwrap();
    probe
        .write_all(b"GET /api/health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), probe.read_to_end(&mut reply))
            .await
            .is_err(),
        "served past the limit"
    );
    // …until it closes.
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::timeout(Duration::from_secs(10), probe.read_to_end(&mut reply))
        .await
        .expect("served after the socket closed")
        .unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    served.stop().await;
}

/// Found by an attack after the connection layer landed: the body timeout restarted with
/// every chunk, so a client dripping one byte at a time held a connection for as long as
/// it liked. The body must now arrive whole within `body_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_dripped_a_byte_at_a_time_is_cut_at_the_body_deadline() {
    let served = Served::start(|c| {
        c.server.header_read_timeout_secs = 2.0;
        c.server.body_timeout_secs = 2.0;
    })
    .await;
    let mut drip = TcpStream::connect(served.addr).await.unwrap();
    drip.write_all(b"POST /api/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // One byte every 0.5 s (well inside any per-chunk timer) for up to 10 s.
    while start.elapsed() < Duration::from_secs(10) {
        if drip.write_all(b" ").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), drip.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "a dripped body is refused once its deadline passes: {answer:?}"
    );
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "cut after {:?}, not at the 2 s deadline",
        start.elapsed()
    );
}

/// Found by the same attack: each connection could buffer ~400 KiB of request head
/// (1,500 of them took the server from 32 to 375 MB). A head over 64 KiB gets 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused() {
    let served = Served::start(|_| {}).await;
    let mut big = TcpStream::connect(served.addr).await.unwrap();
    let head = format!(
        "GET /api/health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(served.health_status().await, Some(200));
}
