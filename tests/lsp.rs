//! The language-server bridge with the real servers (pyrefly and `ruff server` by
//! default, pylsp as configured) over the real WebSocket endpoint.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::TestApp;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves the app on a real socket (WebSockets need one).
pub async fn serve(app: &TestApp) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.app.as_ref().unwrap().router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

pub async fn connect(
    addr: std::net::SocketAddr,
    cookie: Option<&str>,
    interpreter: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let q = interpreter
        .map(|i| format!("?interpreter={i}"))
        .unwrap_or_default();
    let mut req = format!("ws://{addr}/api/lsp{q}")
        .into_client_request()
        .unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
}

pub struct Lsp {
    pub ws: Socket,
    pub next: i64,
    pub seen: Vec<Value>,
    pub session: Value,
}

impl Lsp {
    pub async fn open(addr: std::net::SocketAddr, cookie: &str, interpreter: Option<&str>) -> Lsp {
        let ws = connect(addr, Some(cookie), interpreter)
            .await
            .expect("upgrade");
        let mut lsp = Lsp {
            ws,
            next: 1,
            seen: Vec::new(),
            session: Value::Null,
        };
        lsp.session = lsp.notification("scriptorium/session").await;
        let init = lsp.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": {
            "textDocument": { "hover": { "contentFormat": ["markdown", "plaintext"] },
                              "completion": { "completionItem": { "snippetSupport": false } } } } })).await;
        assert!(init["result"]["capabilities"].is_object(), "{init}");
        lsp.notify("initialized", json!({})).await;
        lsp
    }

    pub fn root(&self) -> String {
        self.session["params"]["rootUri"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("no message within 30 s");
            match msg {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Close(f))) => {
                    return json!({ "closed": f.map(|f| (u16::from(f.code), f.reason.to_string())) });
                }
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        let m = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        self.ws
            .send(Message::Text(m.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Value {
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
            if v["method"] == "workspace/configuration"
                || v["method"] == "client/registerCapability"
            {
                // Answer server requests so it carries on.
                let reply = json!({ "jsonrpc": "2.0", "id": v["id"], "result": null });
                self.ws
                    .send(Message::Text(reply.to_string().into()))
                    .await
                    .unwrap();
            }
            self.seen.push(v);
        }
    }

    pub async fn notification(&mut self, method: &str) -> Value {
        if let Some(i) = self.seen.iter().position(|v| v["method"] == method) {
            return self.seen.remove(i);
        }
        loop {
            let v = self.recv().await;
            if v["method"] == method {
                return v;
            }
            self.seen.push(v);
        }
    }

    pub async fn open_doc(&mut self, name: &str, text: &str) -> String {
        let uri = format!("{}/{name}", self.root());
        self.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": text } })).await;
        uri
    }

    /// Waits for the merged diagnostics of `uri` until `done` holds for them.
    pub async fn diagnostics_until(
        &mut self,
        uri: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such diagnostics for {uri}"
            );
            let d = self.notification("textDocument/publishDiagnostics").await;
            if d["params"]["uri"] != uri {
                continue;
            }
            let list = d["params"]["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if done(&list) {
                return list;
            }
        }
    }

    pub async fn completion_labels(&mut self, uri: &str, line: u32, character: u32) -> Vec<String> {
        let r = self.request("textDocument/completion", json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } })).await;
        let items = if r["result"].is_array() {
            r["result"].clone()
        } else {
            r["result"]["items"].clone()
        };
        items
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["label"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn pid_alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

pub fn has(d: &[Value], source: &str, code: &str, line: u64) -> bool {
    d.iter().any(|x| {
        x["source"]
            .as_str()
            .unwrap_or("")
            .eq_ignore_ascii_case(source)
            && x["code"].as_str().unwrap_or("") == code
            && x["range"]["start"]["line"] == line
    })
}

#[tokio::test]
async fn diagnostics_of_both_servers_are_merged_and_each_feature_comes_from_its_server() {
    let app = TestApp::start().await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let mut lsp = Lsp::open(addr, &ed1, None).await;
    // The documents live under a real per-session directory.
    assert!(
        lsp.root().starts_with("file:///") && lsp.root().contains("/lsp/"),
        "{}",
        lsp.root()
    );
    assert_eq!(lsp.session["params"]["servers"], json!(["pyrefly", "ruff"]));

    // A lint finding (ruff's F401, unused import) and a type error (pyrefly's, an `int`
    // has no length) in one document: the client sees both, each with its source and
    // rule code, whichever server published last.
    let uri = lsp.open_doc("both.py", "import sys\n\nlen(5)\n").await;
    let d = lsp
        .diagnostics_until(&uri, |d| {
            has(d, "ruff", "F401", 0) && has(d, "pyrefly", "bad-argument-type", 2)
        })
        .await;
    // Nothing twice: each server's set is in the union once.
    let f401 = d.iter().filter(|x| x["code"] == "F401").count();
    assert_eq!(f401, 1, "{d:?}");
    // Fixing the type error takes pyrefly's finding away and keeps ruff's.
    lsp.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 },
        "contentChanges": [{ "text": "import sys\n\nlen('abc')\n" }] }),
    )
    .await;
    let d = lsp
        .diagnostics_until(&uri, |d| {
            has(d, "ruff", "F401", 0) && !d.iter().any(|x| x["code"] == "bad-argument-type")
        })
        .await;
    assert!(d.iter().all(|x| x["range"]["start"]["line"] == 0), "{d:?}");

    let uri = lsp
        .open_doc("broken.py", "x = 1\n\n\n\ndef f(:\n    pass\n")
        .await;
    lsp.diagnostics_until(&uri, |d| {
        d.iter()
            .any(|x| x["range"]["start"]["line"] == 4 && x["severity"] == 1)
    })
    .await;

    let uri = lsp.open_doc("complete.py", "import os\nos.pa").await;
    let labels = lsp.completion_labels(&uri, 1, 5).await;
    assert!(labels.iter().any(|l| l == "path"), "{labels:?}");

    let uri = lsp
        .open_doc("hover.py", "import os.path\nos.path.join('a', 'b')\n")
        .await;
    let hover = lsp
        .request(
            "textDocument/hover",
            json!({ "textDocument": { "uri": uri }, "position": { "line": 1, "character": 9 } }),
        )
        .await;
    let text = hover["result"]["contents"].to_string();
    assert!(text.contains("join("), "{hover}");

    let uri = lsp.open_doc("ugly.py", "x=1\nprint( x )\n").await;
    let fmt = lsp.request("textDocument/formatting", json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } })).await;
    let edits = fmt["result"].as_array().unwrap_or_else(|| panic!("{fmt}"));
    let formatted: String = edits
        .iter()
        .map(|e| e["newText"].as_str().unwrap_or(""))
        .collect();
    assert!(
        formatted.contains("x = 1") && formatted.contains("print(x)"),
        "{fmt}"
    );
}

#[tokio::test]
async fn code_actions_of_both_servers_are_offered_and_a_ruff_fix_resolves_to_an_edit() {
    let app = TestApp::start().await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let mut lsp = Lsp::open(addr, &ed1, None).await;
    let uri = lsp
        .open_doc("fix.py", "import os\nimport sys\n\nprint(sys.argv)\n")
        .await;
    let d = lsp
        .diagnostics_until(&uri, |d| has(d, "ruff", "F401", 0))
        .await;
    let unused: Vec<Value> = d
        .into_iter()
        .filter(|x| x["range"]["start"]["line"] == 0)
        .collect();
    let r = lsp
        .request(
            "textDocument/codeAction",
            json!({ "textDocument": { "uri": uri }, "range": unused[0]["range"], "context": { "diagnostics": unused } }),
        )
        .await;
    let actions = r["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    let titles: Vec<&str> = actions
        .iter()
        .map(|a| a["title"].as_str().unwrap_or(""))
        .collect();
    let ruff_fix = actions
        .iter()
        .find(|a| {
            a["kind"] == "quickfix" && a["title"].as_str().unwrap_or("").starts_with("Ruff (F401)")
        })
        .unwrap_or_else(|| panic!("ruff's quick fix: {titles:?}"));
    assert!(
        titles.iter().any(|t| t.contains("Ruff")),
        "ruff's source actions too: {titles:?}"
    );
    // Resolve it (ruff computes the edit then) and check it removes line 0.
    let edit = if ruff_fix.get("edit").is_some_and(|e| {
        e["changes"].as_object().is_some_and(|c| !c.is_empty())
            || e.get("documentChanges").is_some()
    }) {
        ruff_fix["edit"].clone()
    } else {
        let r = lsp.request("codeAction/resolve", ruff_fix.clone()).await;
        r["result"]["edit"].clone()
    };
    let s = edit.to_string();
    assert!(
        s.contains("\"line\":0") && s.contains("\"newText\":\"\""),
        "{edit}"
    );
}

#[tokio::test]
async fn completion_sees_the_packages_of_the_chosen_interpreter() {
    // An interpreter with a package no other has.
    let extra = tempfile::tempdir().unwrap();
    let (venv, _site) = venv_with_probe_pkg(extra.path());
    let toml = interpreters_toml(extra.path(), &venv, true);
    let app = TestApp::start_with(|c| c.interpreters = toml.clone()).await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let text = "import scriptorium_probe_pkg\nscriptorium_probe_pkg.pro";
    let mut with = Lsp::open(addr, &ed1, Some("with-pkg")).await;
    let uri = with.open_doc("a.py", text).await;
    // Jedi labels functions with their parentheses.
    let labels = with.completion_labels(&uri, 1, 25).await;
    assert!(
        labels.iter().any(|l| l.starts_with("probe_function")),
        "{labels:?}"
    );
    let mut without = Lsp::open(addr, &ed1, Some("plain")).await;
    let uri = without.open_doc("a.py", text).await;
    let labels = without.completion_labels(&uri, 1, 25).await;
    assert!(
        !labels.iter().any(|l| l.starts_with("probe_function")),
        "{labels:?}"
    );
    // Without the package its import is unresolved; with it, it is not.
    let missing = |d: &[Value]| {
        d.iter()
            .any(|x| x["code"] == "missing-import" && x["range"]["start"]["line"] == 0)
    };
    let uri = without
        .open_doc("b.py", "import scriptorium_probe_pkg\n")
        .await;
    without.diagnostics_until(&uri, missing).await;
    let uri = with
        .open_doc(
            "b.py",
            "import scriptorium_probe_pkg\nimport no_such_pkg_anywhere\n",
        )
        .await;
    let d = with
        .diagnostics_until(&uri, |d| d.iter().any(|x| x["code"] == "missing-import"))
        .await;
    assert!(
        !missing(&d) && d.iter().any(|x| x["range"]["start"]["line"] == 1),
        "only the import no interpreter has is unresolved: {d:?}"
    );
}

#[tokio::test]
async fn a_client_cannot_point_the_type_server_at_another_interpreter() {
    let extra = tempfile::tempdir().unwrap();
    let (venv, _site) = venv_with_probe_pkg(extra.path());
    let toml = interpreters_toml(extra.path(), &venv, true);
    let app = TestApp::start_with(|c| c.interpreters = toml.clone()).await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let other = venv.join("bin/python").display().to_string();
    // pyrefly's, basedpyright's and ty's ways of naming an interpreter, all at once.
    let settings = json!({ "python": { "pythonPath": other, "defaultInterpreterPath": other },
        "pyrefly": { "pythonInterpreterPath": other }, "ty": { "environment": { "python": other } } });
    let mut lsp = Lsp::open_with(addr, &ed1, settings.clone()).await;
    lsp.notify(
        "workspace/didChangeConfiguration",
        json!({ "settings": settings }),
    )
    .await;
    let uri = lsp
        .open_doc(
            "a.py",
            "import scriptorium_probe_pkg\nscriptorium_probe_pkg.pro",
        )
        .await;
    let labels = lsp.completion_labels(&uri, 1, 25).await;
    assert!(
        !labels.iter().any(|l| l.starts_with("probe_function")),
        "the client's settings chose the interpreter: {labels:?}"
    );
    lsp.diagnostics_until(&uri, |d| d.iter().any(|x| x["code"] == "missing-import"))
        .await;
    let root = lsp.root();
    let dir = root.strip_prefix("file://").unwrap();
    let config = std::fs::read_to_string(std::path::Path::new(dir).join("pyrefly.toml")).unwrap();
    assert!(!config.contains(&other), "{config}");
    assert!(config.starts_with("python-interpreter-path = "), "{config}");
}

#[tokio::test]
async fn the_server_process_lives_exactly_as_long_as_the_socket() {
    let app = TestApp::start().await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let mut lsp = Lsp::open(addr, &ed1, None).await;
    let pids: Vec<u64> = lsp.session["params"]["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{}", lsp.session);
    assert!(pids.iter().all(|p| pid_alive(*p)));
    lsp.ws.close(None).await.unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if !pids.iter().any(|p| pid_alive(*p)) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "a server of {pids:?} outlived its socket");

    // Killing either server mid-session: the client is told which, and the socket closes.
    for (index, name) in [(0, "pyrefly"), (1, "ruff")] {
        let mut lsp = Lsp::open(addr, &ed1, None).await;
        let pid = lsp.session["params"]["pids"][index].as_u64().unwrap();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        let note = lsp.notification("window/showMessage").await;
        assert!(
            note["params"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("language server {name} stopped")),
            "{note}"
        );
        let closed = loop {
            let v = lsp.recv().await;
            if v.get("closed").is_some() {
                break v;
            }
        };
        assert_eq!(closed["closed"][0], 1011, "{closed}");
    }
}

#[tokio::test]
async fn anonymous_upgrades_are_refused_and_viewers_cannot_format() {
    let app = TestApp::start().await;
    let addr = serve(&app).await;
    match connect(addr, None, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let mo1 = app.mo1().await;
    let mut lsp = Lsp::open(addr, &mo1, None).await;
    assert_eq!(lsp.session["params"]["readOnly"], true);
    let uri = lsp.open_doc("v.py", "x=1\n").await;
    let fmt = lsp.request("textDocument/formatting", json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } })).await;
    assert!(
        fmt["error"]["message"]
            .as_str()
            .unwrap()
            .contains("viewers cannot change code"),
        "{fmt}"
    );
    // Reading still works for viewers.
    let uri = lsp.open_doc("c.py", "import os\nos.pa").await;
    assert!(
        lsp.completion_labels(&uri, 1, 5)
            .await
            .iter()
            .any(|l| l == "path")
    );
    match connect(addr, Some(&mo1), Some("nope")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 400),
        other => panic!("expected 400, got {:?}", other.map(|_| ())),
    }
}

/// A venv in `dir` with a package no other interpreter has (`scriptorium_probe_pkg`);
/// its path and its site-packages.
pub fn venv_with_probe_pkg(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let venv = dir.join("venv");
    let ok = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(ok.success());
    let site = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages");
    std::fs::create_dir_all(site.join("scriptorium_probe_pkg")).unwrap();
    std::fs::write(
        site.join("scriptorium_probe_pkg/__init__.py"),
        "def probe_function():\n    \"\"\"Only here.\"\"\"\n",
    )
    .unwrap();
    (venv, site)
}

/// An `interpreters.toml` in `dir` offering `venv` as `with-pkg` (the default), and the
/// machine's `python3` as `plain` (then the default) when `with_plain`.
pub fn interpreters_toml(
    dir: &std::path::Path,
    venv: &std::path::Path,
    with_plain: bool,
) -> std::path::PathBuf {
    let entry = |id: &str, command: &str| {
        format!(
            "[[interpreter]]\nid = \"{id}\"\nkind = \"native\"\ncommand = \"{command}\"\nbackends = [\"linux\"]\n"
        )
    };
    let mut text = format!(
        "default = \"{}\"\n[detect]\nenabled = false\n",
        if with_plain { "plain" } else { "with-pkg" }
    );
    if with_plain {
        text += &entry("plain", "python3");
    }
    text += &entry("with-pkg", &venv.join("bin/python").display().to_string());
    let toml = dir.join("interpreters.toml");
    std::fs::write(&toml, text).unwrap();
    toml
}
