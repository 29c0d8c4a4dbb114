//! Bounded connections on the real server (issue 13, findings 3 on): half-sent and idle
//! connections are closed, per-client and total limits, WebSockets hold their permit,
//! and dripped bodies and oversized heads are cut.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::test_config;

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
