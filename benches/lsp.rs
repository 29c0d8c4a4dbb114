//! The language servers through the bridge, one run, the same machine:
//! - per configured type server (pylsp is the baseline; pyrefly the default; ty), each
//!   with `ruff server` beside it as the bridge runs them, on the build123d venv: the
//!   first completion of a package member (`Box(1, 2, 3).`) in a new session (connect →
//!   answer), warm completion p50/p90, didChange → the type server's and ruff's
//!   diagnostics reflecting the change, and the resident memory of a session (every
//!   process of its sandboxes);
//! - the bridge's own cost: the same cheap request to pyrefly directly over stdio
//!   (unsandboxed, the baseline) and through the bridge, interleaved.
//!
//! Targets: warm p50 ≤ 10 ms, first ≤ 150 ms, diagnostics ≤ 50 ms, bridge ≤ 1 ms.
//! Needs `make lsp build123d`. `cargo bench --bench lsp` (or `make bench`).

// A bench binary links the whole package's dependencies.
#![allow(unused_crate_dependencies)]

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[path = "support.rs"]
mod support;

/// A test on the merged diagnostics of one document.
type DiagnosticsCheck<'a> = dyn Fn(&[Value]) -> bool + 'a;

const WARM: usize = 60;
const DIAGNOSTICS: usize = 20;
const PINGS: usize = 300;
const TEXT: &str = "from build123d import Box\n\nb = Box(1, 2, 3)\nb.";
/// Where `b.` completes.
const AT: (u32, u32) = (3, 2);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Session {
    ws: Ws,
    root: String,
    pids: Vec<u64>,
    next: i64,
}

impl Session {
    async fn open(addr: std::net::SocketAddr, cookie: &str) -> Session {
        let mut req = format!("ws://{addr}/api/lsp?interpreter=build123d")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let hello: Value = match ws.next().await {
            Some(Ok(Message::Text(t))) => serde_json::from_str(&t).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(hello["method"], "scriptorium/session", "{hello}");
        let mut s = Session {
            ws,
            root: hello["params"]["rootUri"].as_str().unwrap().to_string(),
            pids: hello["params"]["pids"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_u64)
                .collect(),
            next: 1,
        };
        s.call(
            "initialize",
            json!({ "processId": null, "rootUri": null, "capabilities": {
            "textDocument": { "completion": { "completionItem": { "snippetSupport": true } } } } }),
        )
        .await;
        s.notify("initialized", json!({})).await;
        s
    }

    async fn notify(&mut self, method: &str, params: Value) {
        let m = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        self.ws
            .send(Message::Text(m.to_string().into()))
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> Value {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v.get("method").is_some() && v.get("id").is_some() {
                        // Answer server requests so they carry on.
                        let r = json!({ "jsonrpc": "2.0", "id": v["id"], "result": null });
                        self.ws
                            .send(Message::Text(r.to_string().into()))
                            .await
                            .unwrap();
                        continue;
                    }
                    return v;
                }
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let m = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.ws
            .send(Message::Text(m.to_string().into()))
            .await
            .unwrap();
        loop {
            let v = self.recv().await;
            if v["id"] == id && v.get("method").is_none() {
                return v;
            }
        }
    }

    async fn open_doc(&mut self, name: &str, text: &str) -> String {
        let uri = format!("{}/{name}", self.root);
        self.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": text } })).await;
        uri
    }

    /// Completion labels at `AT`.
    async fn complete(&mut self, uri: &str) -> Vec<String> {
        let r = self
            .call(
                "textDocument/completion",
                json!({ "textDocument": { "uri": uri }, "position": { "line": AT.0, "character": AT.1 } }),
            )
            .await;
        let items = if r["result"].is_array() {
            r["result"].clone()
        } else {
            r["result"]["items"].clone()
        };
        items
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["label"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until the merged diagnostics of `uri` satisfy `lint` and, when `typed` is
    /// given, `typed`; the time from `t` at which each first held.
    async fn diagnostics(
        &mut self,
        uri: &str,
        t: Instant,
        lint: impl Fn(&[Value]) -> bool,
        typed: Option<&DiagnosticsCheck<'_>>,
    ) -> (Duration, Option<Duration>) {
        let (mut lint_at, mut typed_at) = (None, None);
        loop {
            let v = self.recv().await;
            if v["method"] != "textDocument/publishDiagnostics" || v["params"]["uri"] != uri {
                continue;
            }
            let d = v["params"]["diagnostics"].as_array().unwrap();
            if lint_at.is_none() && lint(d) {
                lint_at = Some(t.elapsed());
            }
            if let Some(typed) = typed
                && typed_at.is_none()
                && typed(d)
            {
                typed_at = Some(t.elapsed());
            }
            if let Some(l) = lint_at
                && (typed.is_none() || typed_at.is_some())
            {
                return (l, typed_at);
            }
        }
    }

    /// Resident memory of every process of the session's sandboxes, MiB.
    fn rss_mib(&self) -> f64 {
        let kib: u64 = self
            .pids
            .iter()
            .flat_map(|p| descendants(*p))
            .map(|p| {
                std::fs::read_to_string(format!("/proc/{p}/status"))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0u64)
            })
            .sum();
        kib as f64 / 1024.0
    }
}

fn descendants(pid: u64) -> Vec<u64> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        for task in std::fs::read_dir(format!("/proc/{}/task", all[i]))
            .into_iter()
            .flatten()
            .flatten()
        {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u64>().ok()),
            );
        }
        i += 1;
    }
    all
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

struct Row {
    server: &'static str,
    first: f64,
    warm_p50: f64,
    warm_p90: f64,
    type_diag: Option<f64>,
    lint_diag: f64,
    rss: f64,
}

/// One type server (with ruff beside) in an app of its own.
async fn measure(
    dir: &std::path::Path,
    server: &'static str,
    command: Vec<String>,
    type_errors: bool,
) -> Row {
    let (app, _) = support::start(dir, |c| {
        c.lsp.command = command;
        c.sandbox.linux.warm = scriptorium_sandbox::linux::WarmMode::Off;
    })
    .await;
    let cookie = support::login(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // First package-member completion in a new session: connect → labels.
    let t = Instant::now();
    let mut s = Session::open(addr, &cookie).await;
    let uri = s.open_doc("first.py", TEXT).await;
    let mut labels = s.complete(&uri).await;
    // A server still indexing may answer empty at first: the user waits until it does not.
    while !labels.iter().any(|l| l.starts_with("volume")) {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{server}: {labels:?}"
        );
        labels = s.complete(&uri).await;
    }
    let first = t.elapsed().as_secs_f64() * 1e3;

    let mut warm = Vec::with_capacity(WARM);
    for _ in 0..WARM {
        let t = Instant::now();
        let l = s.complete(&uri).await;
        warm.push(t.elapsed());
        assert!(l.iter().any(|l| l.starts_with("volume")), "{server}: {l:?}");
    }

    // didChange → diagnostics: a type error (`len(5)`) and a lint finding (an unused
    // import) appear and go, alternately.
    let duri = s.open_doc("diag.py", "import os\n").await;
    let (mut type_diag, mut lint_diag) = (Vec::new(), Vec::new());
    for version in 2..(2 + DIAGNOSTICS as i64) {
        let broken = version % 2 == 0;
        let text = if broken {
            "import sys\nlen(5)\n"
        } else {
            "len('abc')\n"
        };
        let t = Instant::now();
        s.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": duri, "version": version },
            "contentChanges": [{ "text": text }] }),
        )
        .await;
        let lint = |d: &[Value]| d.iter().any(|x| x["code"] == "F401") == broken;
        let typed = |d: &[Value]| {
            d.iter()
                .any(|x| x["range"]["start"]["line"] == 1 && x["code"] != "F401")
                == broken
        };
        let (l, ty) = s
            .diagnostics(
                &duri,
                t,
                lint,
                type_errors.then_some(&typed as &dyn Fn(&[Value]) -> bool),
            )
            .await;
        lint_diag.push(l);
        type_diag.extend(ty);
    }
    let rss = s.rss_mib();
    let _ = s.ws.close(None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Row {
        server,
        first,
        warm_p50: percentile(&mut warm, 0.5),
        warm_p90: percentile(&mut warm, 0.9),
        type_diag: type_errors.then(|| percentile(&mut type_diag, 0.5)),
        lint_diag: percentile(&mut lint_diag, 0.5),
        rss,
    }
}

struct Direct {
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    _child: tokio::process::Child,
}

impl Direct {
    fn spawn(program: &std::path::Path, dir: &std::path::Path) -> Direct {
        let mut child = tokio::process::Command::new(program)
            .arg("lsp")
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
            if v.get("method").is_some() && v.get("id").is_some() {
                self.send(&json!({ "jsonrpc": "2.0", "id": v["id"], "result": null }))
                    .await;
                continue;
            }
            if v["id"] == m["id"] && v.get("method").is_none() {
                return v;
            }
        }
    }
}

/// The same cheap request (a selection range) to pyrefly directly and through the bridge.
async fn bridge_overhead(dir: &std::path::Path) -> (f64, f64) {
    let (app, config) = support::start(dir, |c| {
        c.sandbox.linux.warm = scriptorium_sandbox::linux::WarmMode::Off;
    })
    .await;
    let cookie = support::login(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let mut s = Session::open(addr, &cookie).await;
    let buri = s.open_doc("b.py", "x = 1\n").await;

    let work = dir.join("direct");
    std::fs::create_dir_all(&work).unwrap();
    let program = std::fs::canonicalize(&config.lsp.command[0]).unwrap();
    let mut d = Direct::spawn(&program, &work);
    let droot = format!("file://{}", work.display());
    d.call(&json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "processId": null, "rootUri": droot, "capabilities": {} } })).await;
    d.send(&json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }))
        .await;
    let duri = format!("{droot}/b.py");
    d.send(&json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen", "params": { "textDocument": { "uri": duri, "languageId": "python", "version": 1, "text": "x = 1\n" } } })).await;
    let ping = |uri: &str| json!({ "textDocument": { "uri": uri }, "positions": [{ "line": 0, "character": 0 }] });
    let (mut pd, mut pb) = (Vec::new(), Vec::new());
    for i in 0..PINGS {
        let t = Instant::now();
        let r = d.call(&json!({ "jsonrpc": "2.0", "id": 1000 + i, "method": "textDocument/selectionRange", "params": ping(&duri) })).await;
        pd.push(t.elapsed());
        let t = Instant::now();
        let b = s.call("textDocument/selectionRange", ping(&buri)).await;
        pb.push(t.elapsed());
        assert_eq!(r["result"].is_array(), b["result"].is_array(), "{r} {b}");
    }
    (percentile(&mut pd, 0.5), percentile(&mut pb, 0.5))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for (name, command, typed) in [
        ("pylsp (baseline)", vec!["build/lsp/bin/pylsp"], false),
        (
            "pyrefly (default)",
            vec!["build/lsp/bin/pyrefly", "lsp"],
            true,
        ),
        ("ty", vec!["build/lsp/bin/ty", "server"], true),
    ] {
        let sub = dir.path().join(name.split(' ').next().unwrap());
        std::fs::create_dir_all(&sub).unwrap();
        let command = command.into_iter().map(String::from).collect();
        rows.push(measure(&sub, name, command, typed).await);
    }
    println!(
        "| type server (+ ruff server), through the bridge, build123d venv | first `Box(1, 2, 3).` completion, new session | warm completion p50 / p90 ({WARM}) | didChange → type diagnostics (p50 of {DIAGNOSTICS}) | didChange → ruff diagnostics (p50) | RSS per session |"
    );
    println!("|---|---|---|---|---|---|");
    let base = &rows[0];
    for r in &rows {
        println!(
            "| {} | {:.0} ms ({:.2}×) | {:.1} / {:.1} ms ({:.3}×) | {} | {:.1} ms | {:.0} MiB |",
            r.server,
            r.first,
            r.first / base.first,
            r.warm_p50,
            r.warm_p90,
            r.warm_p50 / base.warm_p50,
            r.type_diag
                .map(|d| format!("{d:.1} ms"))
                .unwrap_or_else(|| "– (no type errors)".into()),
            r.lint_diag,
            r.rss
        );
    }
    println!("targets: first ≤ 150 ms, warm p50 ≤ 10 ms, diagnostics ≤ 50 ms");
    println!();
    let sub = dir.path().join("overhead");
    std::fs::create_dir_all(&sub).unwrap();
    let (direct, bridged) = bridge_overhead(&sub).await;
    println!(
        "| request ({PINGS}, interleaved) | pyrefly over stdio (baseline) | through the bridge (sandboxed, ruff beside) | added | ratio |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| selection range (answered at once) | {direct:.3} ms | {bridged:.3} ms | {:.3} ms | {:.2}× |",
        bridged - direct,
        bridged / direct
    );
    println!("target: ≤ 1 ms added");
}
