//! Unit tests of what passes the bridge, either way.

use super::*;

const ROOT: &str = "file:///data/lsp/abc";

fn policy(read_only: bool) -> Policy {
    Policy::new(read_only, ROOT.into())
}

fn settings() -> Value {
    json!({ "pylsp": { "plugins": { "jedi": { "environment": "/usr/bin/python3" } } } })
}

fn forwarded(v: FromClient) -> Value {
    match v {
        FromClient::Forward { message, .. } => message,
        other => panic!("not forwarded: {other:?}"),
    }
}

fn reply(v: FromClient) -> String {
    match v {
        FromClient::Reply(t) => serde_json::from_str::<Value>(&t).unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string(),
        other => panic!("no reply: {other:?}"),
    }
}

#[test]
fn initialize_gets_the_sessions_root_and_the_servers_settings() {
    let mut p = policy(false);
    let m = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "processId": 7, "rootUri": "file:///", "rootPath": "/", "workspaceFolders": [{ "uri": "file:///etc", "name": "x" }],
        "initializationOptions": { "pylsp": { "plugins": { "jedi": { "environment": "/bin/bash" } } } },
        "capabilities": { "workspace": { "configuration": true } }, "trace": "verbose", "evil": 1 } });
    let out = forwarded(p.from_client(&m.to_string()));
    let params = &out["params"];
    assert_eq!(params["rootUri"], ROOT);
    assert_eq!(params["rootPath"], "/data/lsp/abc");
    assert_eq!(params["workspaceFolders"][0]["uri"], ROOT);
    assert_eq!(params["processId"], Value::Null);
    // The client's options never reach a server (the router puts the server's own).
    assert!(params.get("initializationOptions").is_none());
    assert_eq!(params["capabilities"]["workspace"]["configuration"], true);
    assert!(params.get("evil").is_none() && params.get("trace").is_none());
    // Only once.
    assert!(reply(p.from_client(&m.to_string())).contains("already initialized"));
}

#[test]
fn methods_outside_the_list_are_refused_with_a_reply_or_dropped() {
    let mut p = policy(false);
    let req = json!({ "jsonrpc": "2.0", "id": 3, "method": "workspace/executeCommand", "params": { "command": "x" } });
    assert!(reply(p.from_client(&req.to_string())).contains("not allowed"));
    let note = json!({ "jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": { "settings": {} } });
    assert!(matches!(
        p.from_client(&note.to_string()),
        FromClient::Drop(_)
    ));
    assert!(
        reply(p.from_client("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"shutdown\"}]"))
            .contains("one JSON-RPC object")
    );
    assert!(reply(p.from_client("{not json")).contains("not JSON"));
}

#[test]
fn duplicate_keys_cannot_smuggle_a_method() {
    let mut p = policy(false);
    // serde keeps the last `method`; what is forwarded is re-serialised from it.
    let text = r#"{"jsonrpc":"2.0","id":1,"method":"workspace/executeCommand","method":"textDocument/hover","params":{"textDocument":{"uri":"file:///data/lsp/abc/a.py"}},"extra":1}"#;
    let out = forwarded(p.from_client(text));
    assert_eq!(out["method"], "textDocument/hover");
    assert_eq!(out.as_object().unwrap().len(), 4);
}

#[test]
fn viewers_cannot_ask_for_edits() {
    let mut p = policy(true);
    for m in EDITING {
        let req = json!({ "jsonrpc": "2.0", "id": 1, "method": m, "params": { "textDocument": { "uri": format!("{ROOT}/a.py") } } });
        assert!(
            reply(p.from_client(&req.to_string())).contains("viewers cannot change code"),
            "{m}"
        );
    }
    let req = json!({ "jsonrpc": "2.0", "id": 1, "method": "textDocument/hover", "params": { "textDocument": { "uri": format!("{ROOT}/a.py") } } });
    forwarded(p.from_client(&req.to_string()));
    // A server's applyEdit never reaches a viewer.
    let edit = json!({ "jsonrpc": "2.0", "id": 5, "method": "workspace/applyEdit", "params": { "edit": {} } });
    assert!(
        matches!(p.from_server(&edit.to_string(), &settings()), FromServer::Answer(a) if a.contains("\"applied\":false"))
    );
}

#[test]
fn only_documents_inside_the_workspace() {
    let p = policy(false);
    assert!(p.inside("file:///data/lsp/abc/a.py"));
    assert!(p.inside("file:///data/lsp/abc/sub/a%20b.py"));
    for bad in [
        "file:///etc/passwd",
        "file:///data/lsp/abc",
        "file:///data/lsp/abc/",
        "file:///data/lsp/abcd/a.py",
        "file:///data/lsp/abc/../x.py",
        "file:///data/lsp/abc/%2E%2E/x.py",
        "file:///data/lsp/abc/a%2F..%2F..%2Fx.py",
        "file:///data/lsp/abc/a.py?x",
        "file:///data/lsp/abc//etc/passwd",
        "untitled:1",
        "inmemory://model/1",
    ] {
        assert!(!p.inside(bad), "{bad}");
    }
    let mut p = policy(false);
    let note = json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen", "params": { "textDocument": { "uri": "file:///etc/shadow", "text": "" } } });
    assert!(
        matches!(p.from_client(&note.to_string()), FromClient::Drop(w) if w.contains("outside"))
    );
    let req = json!({ "jsonrpc": "2.0", "id": 2, "method": "textDocument/references", "params": { "textDocument": { "uri": format!("{ROOT}/a.py") }, "context": { "includeDeclaration": true }, "item": { "data": { "doc_uri": "file:///etc/shadow" } } } });
    assert!(reply(p.from_client(&req.to_string())).contains("outside the session workspace"));
    // Text that merely looks like a URI is not one.
    let change = json!({ "jsonrpc": "2.0", "method": "textDocument/didChange", "params": { "textDocument": { "uri": format!("{ROOT}/a.py") }, "contentChanges": [{ "text": "file: str = 'file:///etc/passwd'\n" }] } });
    forwarded(p.from_client(&change.to_string()));
    let req = json!({ "jsonrpc": "2.0", "id": 3, "method": "completionItem/resolve", "params": { "label": "x", "data": { "doc_uri": "file:///etc/shadow" } } });
    assert!(reply(p.from_client(&req.to_string())).contains("outside the session workspace"));
}

#[test]
fn the_bridge_answers_configuration_and_passes_only_expected_responses() {
    let mut p = policy(false);
    let req = json!({ "jsonrpc": "2.0", "id": 9, "method": "workspace/configuration", "params": { "items": [{ "section": "pylsp.plugins.jedi" }, { "section": "nope" }, {}] } });
    let FromServer::Answer(a) = p.from_server(&req.to_string(), &settings()) else {
        panic!()
    };
    let a: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(a["id"], 9);
    assert_eq!(a["result"][0]["environment"], "/usr/bin/python3");
    assert_eq!(a["result"][1], Value::Null);
    assert_eq!(
        a["result"][2]["pylsp"]["plugins"]["jedi"]["environment"],
        "/usr/bin/python3"
    );
    // A client cannot answer for it.
    let fake = json!({ "jsonrpc": "2.0", "id": 9, "result": [{ "environment": "/bin/bash" }] });
    assert!(matches!(
        p.from_client(&fake.to_string()),
        FromClient::Drop(_)
    ));
    // A forwarded request gets exactly one answer through.
    let reg = json!({ "jsonrpc": "2.0", "id": "r1", "method": "client/registerCapability", "params": { "registrations": [] } });
    assert_eq!(
        p.from_server(&reg.to_string(), &settings()),
        FromServer::Forward
    );
    let ok = json!({ "jsonrpc": "2.0", "id": "r1", "result": null, "method2": "x" });
    assert_eq!(
        forwarded(p.from_client(&ok.to_string())),
        json!({ "jsonrpc": "2.0", "id": "r1", "result": null })
    );
    assert!(matches!(
        p.from_client(&ok.to_string()),
        FromClient::Drop(_)
    ));
    // Anything else the server asks is declined by the bridge.
    let other = json!({ "jsonrpc": "2.0", "id": 4, "method": "window/showDocument", "params": { "uri": "https://x", "external": true } });
    assert!(
        matches!(p.from_server(&other.to_string(), &settings()), FromServer::Answer(a) if a.contains("does not support"))
    );
    // Responses and notifications pass untouched.
    assert_eq!(
        p.from_server(
            r#"{"jsonrpc":"2.0","id":1,"result":{"items":[]}}"#,
            &settings()
        ),
        FromServer::Forward
    );
    assert_eq!(
        p.from_server(
            r#"{"jsonrpc":"2.0","method":"textDocument/publishDiagnostics","params":{}}"#,
            &settings()
        ),
        FromServer::Forward
    );
}
