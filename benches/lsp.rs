//! Added latency of the language-server bridge: the same requests (completion, hover)
//! to pylsp directly over stdio and through the server's WebSocket bridge, interleaved
//! in one run. Target: ≤ 1 ms added (median).
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
const TEXT: &str = "import os\nimport os.path\nos.path.join('a', 'b')\nos.pa";

struct Direct {
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    _child: tokio::process::Child,
}

impl Direct {
    async fn send(&mut self, m: &Value) {
        let b = m.to_string();
        self.stdin.write_all(format!("Content-Length: {}\r\n\r\n{b}", b.len()).as_bytes()).await.unwrap();
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

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
    let python = app.state.interpreters.native_default().unwrap().path.clone();
    let cookie = support::login(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Through the bridge.
    let mut req = format!("ws://{addr}/api/lsp").into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let hello: Value = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    let root = hello["params"]["rootUri"].as_str().unwrap().to_string();

    // Directly: the same pylsp, the same settings.
    let mut child = tokio::process::Command::new(std::fs::canonicalize(&config.lsp.command[0]).unwrap())
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut direct = Direct { stdin: child.stdin.take().unwrap(), stdout: BufReader::new(child.stdout.take().unwrap()), _child: child };
    let direct_root = format!("file://{}", dir.path().display());

    let init = |id: i64, root: &str| json!({ "jsonrpc": "2.0", "id": id, "method": "initialize", "params": { "processId": null, "rootUri": root, "capabilities": {} } });
    let settings = json!({ "jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": { "settings": { "pylsp": { "plugins": {
        "jedi": { "environment": python }, "ruff": { "enabled": true }, "pycodestyle": { "enabled": false }, "pyflakes": { "enabled": false }, "mccabe": { "enabled": false } } } } } });
    let initialized = json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} });
    ws_call(&mut ws, &init(1, &root)).await;
    ws.send(Message::Text(initialized.to_string().into())).await.unwrap();
    direct.call(&init(1, &direct_root)).await;
    direct.send(&initialized).await;
    direct.send(&settings).await;
    let open = |uri: &str| json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen", "params": { "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": TEXT } } });
    let (wuri, duri) = (format!("{root}/b.py"), format!("{direct_root}/b.py"));
    ws.send(Message::Text(open(&wuri).to_string().into())).await.unwrap();
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
    // A request pylsp answers at once (an unknown method: "method not found"): the
    // bridge's own cost, without the language server's work and its jitter.
    let ping = |id: i64| json!({ "jsonrpc": "2.0", "id": id, "method": "$/scriptorium/ping", "params": {} });
    let (mut pd, mut pb) = (Vec::new(), Vec::new());
    for _ in 0..(SAMPLES * 4) {
        id += 1;
        let t = Instant::now();
        direct.call(&ping(id)).await;
        pd.push(t.elapsed());
        let t = Instant::now();
        ws_call(&mut ws, &ping(id)).await;
        pb.push(t.elapsed());
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
    println!("| request ({SAMPLES} each, interleaved) | pylsp over stdio (baseline) | through the bridge | added | ratio |");
    println!("|---|---|---|---|---|");
    println!("| minimal request (answered at once) | {:.3} ms | {:.3} ms | {:.3} ms | {:.2}× |", ms(pd), ms(pb), ms(pb) - ms(pd), ms(pb) / ms(pd));
    println!("| completion | {:.2} ms | {:.2} ms | {:.2} ms | {:.3}× |", ms(cd), ms(cb), ms(cb) - ms(cd), ms(cb) / ms(cd));
    println!("| hover | {:.2} ms | {:.2} ms | {:.2} ms | {:.3}× |", ms(hd), ms(hb), ms(hb) - ms(hd), ms(hb) / ms(hd));
    println!("target: ≤ 1 ms added");
}
