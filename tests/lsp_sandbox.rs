//! The language-server bridge's own configuration and the sandbox the servers run in:
//! what a client may not configure, which documents and methods pass, and the server
//! process's confinement (the common helpers are in `lsp.rs`).

use std::time::Duration;

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::lsp::{Lsp, connect, interpreters_toml, serve, venv_with_probe_pkg};
use crate::util::TestApp;

// --- The bridge owns the configuration; the server runs in the sandbox -------------

/// A marker file outside /tmp (the sandbox has a private /tmp) that an attack would write.
fn marker(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lsp-marker-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The sandbox user could write here if anything let it: only the bridge and the
    // sandbox stand in the way.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let file = dir.join("pwned");
    let _ = std::fs::remove_file(&file);
    file
}

/// jedi's `environment` and `env_vars` as pylsp settings: bash runs `$BASH_ENV` at start.
fn bash_settings(file: &std::path::Path) -> Value {
    json!({ "pylsp": { "plugins": { "jedi": {
        "environment": "/bin/bash",
        "env_vars": { "BASH_ENV": format!("$(id -u > {})", file.display()) },
    }}}})
}

/// The same through the real interpreter: a warning filter imports `antigravity`, which
/// opens `$BROWSER` (bash), which runs `$BASH_ENV`.
fn python_settings(file: &std::path::Path) -> Value {
    json!({ "pylsp": { "plugins": { "jedi": { "environment": "/usr/bin/python3", "env_vars": {
        "PYTHONWARNINGS": "ignore::antigravity.x",
        "BROWSER": "/bin/bash",
        "BASH_ENV": format!("$(id -u > {})", file.display()),
    }}}}})
}

impl Lsp {
    /// Opens a session whose `initialize` carries `options` as initializationOptions
    /// (and workspace settings pointing outside the session).
    pub async fn open_with(addr: std::net::SocketAddr, cookie: &str, options: Value) -> Lsp {
        let ws = connect(addr, Some(cookie), None).await.expect("upgrade");
        let mut lsp = Lsp {
            ws,
            next: 1,
            seen: Vec::new(),
            session: Value::Null,
        };
        lsp.session = lsp.notification("scriptorium/session").await;
        let init = lsp
            .request(
                "initialize",
                json!({ "processId": 1, "rootUri": "file:///", "rootPath": "/",
                "workspaceFolders": [{ "uri": "file:///etc", "name": "etc" }],
                "initializationOptions": options,
                "capabilities": { "workspace": { "configuration": true } } }),
            )
            .await;
        assert!(init["result"]["capabilities"].is_object(), "{init}");
        lsp.notify("initialized", json!({})).await;
        lsp
    }

    /// Serves a completion and a hover, so an attack in the configuration had its chance;
    /// whether completion still worked.
    async fn exercise(&mut self) -> bool {
        let uri = self.open_doc("exercise.py", "import os\nos.pa").await;
        let labels = self.completion_labels(&uri, 1, 5).await;
        let _ = self.request("textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": { "line": 1, "character": 1 } })).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        labels.iter().any(|l| l == "path")
    }
}

async fn configuration_attack(viewer: bool) {
    let app = TestApp::start().await;
    let addr = serve(&app).await;
    let cookie = if viewer {
        app.mo1().await
    } else {
        app.ed1().await
    };

    // workspace/didChangeConfiguration from the client (each attack in its own session:
    // a later configuration replaces an earlier one).
    for (name, settings) in [
        (
            "change-bash",
            bash_settings as fn(&std::path::Path) -> Value,
        ),
        ("change-python", python_settings),
    ] {
        let file = marker(&format!("{name}-{viewer}"));
        let mut lsp = Lsp::open(addr, &cookie, None).await;
        lsp.notify(
            "workspace/didChangeConfiguration",
            json!({ "settings": settings(&file) }),
        )
        .await;
        let completes = lsp.exercise().await;
        assert!(
            !file.exists(),
            "the client's didChangeConfiguration ran a command: {:?}",
            std::fs::read_to_string(&file)
        );
        assert!(
            completes,
            "completion still works with the server's own settings"
        );
    }

    // initializationOptions.
    let file = marker(&format!("init-bash-{viewer}"));
    let mut lsp = Lsp::open_with(addr, &cookie, bash_settings(&file)).await;
    let completes = lsp.exercise().await;
    assert!(
        !file.exists(),
        "initializationOptions ran a command: {:?}",
        std::fs::read_to_string(&file)
    );
    assert!(
        completes,
        "completion still works with the server's own settings"
    );
    let file = marker(&format!("init-python-{viewer}"));
    let mut lsp = Lsp::open_with(addr, &cookie, python_settings(&file)).await;
    let completes = lsp.exercise().await;
    assert!(
        !file.exists(),
        "initializationOptions ran a command: {:?}",
        std::fs::read_to_string(&file)
    );
    assert!(
        completes,
        "completion still works with the server's own settings"
    );

    // A command the server would run for the client.
    let r = lsp
        .request(
            "workspace/executeCommand",
            json!({ "command": "pylsp.anything", "arguments": [] }),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not allowed"),
        "{r}"
    );
}

#[tokio::test]
async fn a_viewer_cannot_configure_the_language_server_to_run_commands() {
    configuration_attack(true).await;
}

#[tokio::test]
async fn an_editor_cannot_configure_the_language_server_to_run_commands() {
    configuration_attack(false).await;
}

#[tokio::test]
async fn documents_outside_the_session_and_unlisted_methods_are_refused() {
    let app = TestApp::start().await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let mut lsp = Lsp::open(addr, &ed1, None).await;
    let root = lsp.root();
    for uri in [
        "file:///etc/passwd".to_string(),
        format!("{root}/../../../../etc/passwd"),
        format!("{root}/%2E%2E/x.py"),
        "untitled:x".into(),
    ] {
        lsp.notify("textDocument/didOpen", json!({ "textDocument": { "uri": uri, "languageId": "python", "version": 1, "text": "import os\n" } })).await;
        let r = lsp.request("textDocument/hover", json!({ "textDocument": { "uri": uri }, "position": { "line": 0, "character": 8 } })).await;
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("session workspace"),
            "{uri}: {r}"
        );
    }
    // Only the document inside the session got diagnostics.
    let ok = lsp.open_doc("ok.py", "import sys\n").await;
    let d = lsp.notification("textDocument/publishDiagnostics").await;
    assert_eq!(
        d["params"]["uri"], ok,
        "no diagnostics for a refused document: {d}"
    );
    // A method outside the allow-list gets an error reply, not silence.
    let r = lsp
        .request("workspace/symbol", json!({ "query": "x" }))
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not allowed"),
        "{r}"
    );
    // A batch cannot smuggle methods past the list.
    let batch = json!([{ "jsonrpc": "2.0", "id": 99, "method": "workspace/executeCommand", "params": { "command": "x" } }]);
    lsp.ws
        .send(Message::Text(batch.to_string().into()))
        .await
        .unwrap();
    let r = loop {
        let v = lsp.recv().await;
        if v.get("error").is_some() {
            break v;
        }
    };
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("one JSON-RPC object"),
        "{r}"
    );
}

#[tokio::test]
async fn viewers_get_errors_for_editing_requests_and_editors_get_edits() {
    let app = TestApp::start().await;
    let addr = serve(&app).await;
    let text = "def f(x):\n    return x\n\nf( 1 )\n";
    let rename = |uri: &str| json!({ "textDocument": { "uri": uri }, "position": { "line": 0, "character": 4 }, "newName": "g" });
    let format = |uri: &str| json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } });

    let mo1 = app.mo1().await;
    let mut viewer = Lsp::open(addr, &mo1, None).await;
    let uri = viewer.open_doc("v.py", text).await;
    for (method, params) in [
        ("textDocument/formatting", format(&uri)),
        ("textDocument/rename", rename(&uri)),
        ("textDocument/prepareRename", rename(&uri)),
        ("textDocument/rangeFormatting", format(&uri)),
    ] {
        let r = viewer.request(method, params).await;
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("viewers cannot change code"),
            "{method}: {r}"
        );
    }

    let ed1 = app.ed1().await;
    let mut editor = Lsp::open(addr, &ed1, None).await;
    let uri = editor.open_doc("e.py", text).await;
    let r = editor
        .request("textDocument/formatting", format(&uri))
        .await;
    let edits = r["result"].as_array().unwrap_or_else(|| panic!("{r}"));
    assert!(
        edits
            .iter()
            .any(|e| e["newText"].as_str().unwrap_or("").contains("f(1)")),
        "{r}"
    );
    let r = editor.request("textDocument/rename", rename(&uri)).await;
    let edits = r["result"]["changes"][&uri]
        .as_array()
        .or_else(|| r["result"]["documentChanges"][0]["edits"].as_array())
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    let mut lines: Vec<u64> = edits
        .iter()
        .filter(|e| e["newText"] == "g")
        .map(|e| e["range"]["start"]["line"].as_u64().unwrap())
        .collect();
    lines.sort();
    assert_eq!(lines, [0, 3], "the definition and the call renamed: {r}");
}

/// Host pids of `pid` and all its descendants.
fn descendants(pid: u64) -> Vec<u64> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
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

fn status_field(pid: u64, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test]
async fn the_language_server_runs_in_the_sandbox_and_still_knows_the_interpreters_packages() {
    // A host file any user may read, outside the sandbox's paths, and a port on loopback.
    let secret = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("lsp-secret-{}", std::process::id()));
    std::fs::write(&secret, "host secret").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    // An interpreter with a package no other has, and a `.pth` that reports, from inside
    // every process of that interpreter started in a language-server session (Jedi starts
    // one to inspect the environment), what it can do.
    let extra = tempfile::tempdir().unwrap();
    let (venv, site) = venv_with_probe_pkg(extra.path());
    let probe = format!(
        r#"import os, json, socket
def _try(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return type(e).__name__
def _read(p):
    with open(p) as fh:
        fh.read()
def _connect():
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
if "/lsp/" in os.getcwd():
    with open(os.path.join(os.getcwd(), "probe-report.json"), "w") as fh:
        json.dump({{"secret": _try(lambda: _read({secret:?})), "passwd": _try(lambda: _read("/etc/passwd")), "tcp": _try(_connect)}}, fh)
"#,
        secret = secret.display().to_string()
    );
    std::fs::write(site.join("scriptorium_probe.py"), probe).unwrap();
    std::fs::write(
        site.join("scriptorium_probe.pth"),
        "import scriptorium_probe\n",
    )
    .unwrap();
    let toml = interpreters_toml(extra.path(), &venv, false);
    let app = TestApp::start_with(|c| c.interpreters = toml.clone()).await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let mut lsp = Lsp::open(addr, &ed1, Some("with-pkg")).await;
    let uri = lsp
        .open_doc(
            "a.py",
            "import scriptorium_probe_pkg\nscriptorium_probe_pkg.pro",
        )
        .await;
    let labels = lsp.completion_labels(&uri, 1, 25).await;
    assert!(
        labels.iter().any(|l| l.starts_with("probe_function")),
        "completion knows the interpreter's package: {labels:?}"
    );

    // The language server process, seen from the host.
    let pid = lsp.session["params"]["pid"].as_u64().unwrap();
    let server = descendants(pid)
        .into_iter()
        .find(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline)
                .split('\0')
                .any(|a| a.ends_with("/pyrefly"))
        })
        .expect("a pyrefly process under the session");
    let uid: Vec<String> = status_field(server, "Uid")
        .split_whitespace()
        .map(String::from)
        .collect();
    let me = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    if me == 0 {
        // A host uid of its own, leased from `[sandbox.linux] uid_range` (100000–165535).
        let n: u32 = uid[0].parse().unwrap();
        assert!(
            (100_000..=165_535).contains(&n),
            "the language server runs as a leased unprivileged uid: {uid:?}"
        );
        assert!(
            uid.iter().all(|u| u == &uid[0]),
            "real, effective, saved and fs uids agree: {uid:?}"
        );
    } else {
        assert_eq!(uid[0], me.to_string());
    }
    assert_eq!(status_field(server, "NoNewPrivs"), "1");
    for ns in ["net", "pid", "mnt"] {
        let theirs = std::fs::read_link(format!("/proc/{server}/ns/{ns}")).unwrap();
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(
            theirs, mine,
            "the language server has its own {ns} namespace"
        );
    }

    // What the interpreter's process (a child of the language server) could do.
    let workspace = app.data().join("lsp");
    let report = std::fs::read_dir(&workspace)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("probe-report.json"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no probe report under {}", workspace.display()));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    // Not in the minimal root at all (FileNotFoundError), or refused by Landlock.
    assert!(
        report["secret"] == "FileNotFoundError" || report["secret"] == "PermissionError",
        "a host file outside the allowed paths: {report}"
    );
    assert_ne!(report["passwd"], "ok", "{report}");
    assert_ne!(report["tcp"], "ok", "{report}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "nothing connected to the host's loopback"
    );
    let _ = std::fs::remove_file(secret);
}

#[tokio::test]
async fn a_session_whose_server_cannot_start_is_refused_with_the_reason() {
    let app =
        TestApp::start_with(|c| c.lsp.command = vec!["build/lsp/bin/no-such-server".into()]).await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let ws = connect(addr, Some(&ed1), None).await.expect("upgrade");
    let mut lsp = Lsp {
        ws,
        next: 1,
        seen: Vec::new(),
        session: Value::Null,
    };
    let note = lsp.notification("window/showMessage").await;
    let message = note["params"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("no-such-server") && message.contains("make lsp"),
        "{note}"
    );
    let closed = lsp.recv().await;
    assert_eq!(closed["closed"][0], 1011, "{closed}");
    assert!(
        closed["closed"][1]
            .as_str()
            .unwrap()
            .contains("not installed"),
        "{closed}"
    );
    // Nothing was started and no session directory is left.
    let left: Vec<_> = std::fs::read_dir(app.data().join("lsp"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
