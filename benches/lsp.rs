//! Added latency of the language-server bridge: the same requests (completion, hover)
//! to pylsp directly over stdio (unsandboxed, the baseline) and through the server's
//! WebSocket bridge (policy checks, pylsp in the linux sandbox), interleaved in one run.
//! Target: ≤ 1 ms added per message (median). Session start (connect → `initialize`
//! answered) is measured the same way: the sandbox may cost there.
//!
//! `cargo bench --bench lsp` (or `make bench`).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[path = "support.rs"]
mod support;

const SAMPLES: usize = 150;
/// Session starts measured each way.
const STARTS: usize = 5;
const TEXT: &str = "import os\nimport os.path\nos.path.join('a', 'b')\nos.pa";

struct Direct {
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    _child: tokio::process::Child,
}

impl Direct {
    async fn send(&mut self, m: &Value) {
        let b = m.to_string();
        self.stdin
            .write_all(format!("Content-Length: {}\r\n\r\n{b}", b.len()).as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }
    async fn recv(&mut self) -> Value {
        let mut n = 0;
        loop {
            let mut line = String::new();
            self.stdout.read_line(&mut line).await.unwrap();
            let line = line.trim();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length:") {
                n = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; n];
        self.stdout.read_exact(&mut body).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }
    async fn call(&mut self, m: &Value) -> Value {
        self.send(m).await;
        loop {
            let v = self.recv().await;
            if v["id"] == m["id"] && v.get("method").is_none() {
                return v;
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_call(ws: &mut Ws, m: &Value) -> Value {
    ws.send(Message::Text(m.to_string().into())).await.unwrap();
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == m["id"] && v.get("method").is_none() {
                return v;
            }
        }
    }
}

/// pylsp started directly, as the baseline.
fn spawn_direct(program: &std::path::Path, dir: &std::path::Path) -> Direct {
    let mut child = tokio::process::Command::new(program)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Direct {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        _child: child,
    }
}

async fn ws_open(addr: std::net::SocketAddr, cookie: &str) -> (Ws, String) {
    let mut req = format!("ws://{addr}/api/lsp")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let hello: Value = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    (ws, hello["params"]["rootUri"].as_str().unwrap().to_string())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (app, config) = support::start(dir.path(), |_| {}).await;
    let python = app
        .state
        .interpreters
        .native_default()
        .unwrap()
        .path
        .clone();
    let cookie = support::login(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let program = std::fs::canonicalize(&config.lsp.command[0]).unwrap();
    let direct_root = format!("file://{}", dir.path().display());
    let init = |id: i64, root: &str| json!({ "jsonrpc": "2.0", "id": id, "method": "initialize", "params": { "processId": null, "rootUri": root, "capabilities": {} } });

    // Session start: connect (or spawn) until `initialize` is answered.
    let (mut sd, mut sb) = (Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let t = Instant::now();
        let mut d = spawn_direct(&program, dir.path());
        d.call(&init(1, &direct_root)).await;
        sd.push(t.elapsed());
        drop(d);
        let t = Instant::now();
        let (mut ws, root) = ws_open(addr, &cookie).await;
        ws_call(&mut ws, &init(1, &root)).await;
        sb.push(t.elapsed());
        ws.close(None).await.unwrap();
        // Out of the timing: let the session end (sessions per user are bounded).
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (sd, sb) = (median(sd), median(sb));

    // Through the bridge.
    let (mut ws, root) = ws_open(addr, &cookie).await;
    // Directly: the same pylsp, the same settings.
    let mut direct = spawn_direct(&program, dir.path());

    let settings = json!({ "jsonrpc": "2.0", "method": "workspace/didChangeConfiguration",
        "params": { "settings": scriptorium_actors::lsp::lsp_session::LspSession::settings(&config.lsp, &python) } });
    let initialized = json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} });
    ws_call(&mut ws, &init(1, &root)).await;
    ws.send(Message::Text(initialized.to_string().into()))
        .await
        .unwrap();
    direct.call(&init(1, &direct_root)).await;
    direct.send(&initialized).await;
    direct.send(&settings).await;
    let open = |uri: &str| json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen", "params": { "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": TEXT } } });
    let (wuri, duri) = (format!("{root}/b.py"), format!("{direct_root}/b.py"));
    ws.send(Message::Text(open(&wuri).to_string().into()))
        .await
        .unwrap();
    direct.send(&open(&duri)).await;

    let completion = |id: i64, uri: &str| json!({ "jsonrpc": "2.0", "id": id, "method": "textDocument/completion", "params": { "textDocument": { "uri": uri }, "position": { "line": 3, "character": 5 } } });
    let hover = |id: i64, uri: &str| json!({ "jsonrpc": "2.0", "id": id, "method": "textDocument/hover", "params": { "textDocument": { "uri": uri }, "position": { "line": 2, "character": 9 } } });
    let mut id = 10;
    // Warm both (Jedi caches).
    for _ in 0..10 {
        id += 1;
        ws_call(&mut ws, &completion(id, &wuri)).await;
        direct.call(&completion(id, &duri)).await;
        ws_call(&mut ws, &hover(id + 100_000, &wuri)).await;
        direct.call(&hover(id + 100_000, &duri)).await;
    }
    // A request the bridge lets through and pylsp answers at once ("method not found":
    // it has no selection ranges): the bridge's own cost (parse, allow-list, URI check,
    // re-serialise, the sandbox's pipes), without the language server's work.
    let ping = |id: i64, uri: &str| {
        json!({ "jsonrpc": "2.0", "id": id, "method": "textDocument/selectionRange",
        "params": { "textDocument": { "uri": uri }, "positions": [{ "line": 0, "character": 1 }] } })
    };
    let (mut pd, mut pb) = (Vec::new(), Vec::new());
    for _ in 0..(SAMPLES * 4) {
        id += 1;
        let t = Instant::now();
        let r = direct.call(&ping(id, &duri)).await;
        pd.push(t.elapsed());
        let t = Instant::now();
        let b = ws_call(&mut ws, &ping(id, &wuri)).await;
        pb.push(t.elapsed());
        assert_eq!(r["error"]["code"], b["error"]["code"], "{r} {b}");
    }
    let (pd, pb) = (median(pd), median(pb));
    let (mut cd, mut cb, mut hd, mut hb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        id += 1;
        let t = Instant::now();
        let r = direct.call(&completion(id, &duri)).await;
        cd.push(t.elapsed());
        assert!(r["result"].is_object() || r["result"].is_array());
        let t = Instant::now();
        ws_call(&mut ws, &completion(id, &wuri)).await;
        cb.push(t.elapsed());
        let t = Instant::now();
        direct.call(&hover(id + 100_000, &duri)).await;
        hd.push(t.elapsed());
        let t = Instant::now();
        ws_call(&mut ws, &hover(id + 100_000, &wuri)).await;
        hb.push(t.elapsed());
    }
    let (cd, cb, hd, hb) = (median(cd), median(cb), median(hd), median(hb));
    println!(
        "| request ({SAMPLES} each, interleaved) | pylsp over stdio (baseline) | through the bridge | added | ratio |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| minimal request (answered at once) | {:.3} ms | {:.3} ms | {:.3} ms | {:.2}× |",
        ms(pd),
        ms(pb),
        ms(pb) - ms(pd),
        ms(pb) / ms(pd)
    );
    println!(
        "| completion | {:.2} ms | {:.2} ms | {:.2} ms | {:.3}× |",
        ms(cd),
        ms(cb),
        ms(cb) - ms(cd),
        ms(cb) / ms(cd)
    );
    println!(
        "| hover | {:.2} ms | {:.2} ms | {:.2} ms | {:.3}× |",
        ms(hd),
        ms(hb),
        ms(hb) - ms(hd),
        ms(hb) / ms(hd)
    );
    println!("target: ≤ 1 ms added");
    println!();
    println!(
        "| session start ({STARTS} each, interleaved) | pylsp spawned directly (baseline) | through the bridge, sandboxed | added | ratio |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| connect → initialize answered | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× |",
        ms(sd),
        ms(sb),
        ms(sb) - ms(sd),
        ms(sb) / ms(sd)
    );
}
