//! Unit tests of the router: where requests go, merged answers and diagnostics.

use super::*;

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

fn initialized() -> Router {
    let mut r = Router::new(vec!["pyrefly", "ruff"]);
    let sent = r.client_request(
        json!(1),
        "initialize",
        json!({ "capabilities": { "textDocument": { "diagnostic": {} } } }),
        &[json!({ "a": 1 }), json!({ "b": 2 })],
    );
    assert_eq!(sent.len(), 2);
    let (s0, s1) = (parse(&sent[0].1), parse(&sent[1].1));
    assert_eq!(s0["params"]["initializationOptions"], json!({ "a": 1 }));
    assert_eq!(s1["params"]["initializationOptions"], json!({ "b": 2 }));
    assert!(
        s0["params"]["capabilities"]["textDocument"]
            .get("diagnostic")
            .is_none()
    );
    let a = r.server_message(0, json!({ "jsonrpc": "2.0", "id": s0["id"], "result": { "capabilities": {
        "hoverProvider": true, "completionProvider": {}, "codeActionProvider": { "codeActionKinds": ["quickfix"] } } } }));
    assert!(a.is_none(), "waits for the other server");
    let b = r
        .server_message(1, json!({ "jsonrpc": "2.0", "id": s1["id"], "result": { "capabilities": {
        "hoverProvider": true, "documentFormattingProvider": true, "executeCommandProvider": { "commands": ["ruff.applyFormat"] },
        "codeActionProvider": { "codeActionKinds": ["quickfix", "source.fixAll.ruff"], "resolveProvider": true },
        "diagnosticProvider": {} } } }))
        .unwrap();
    let b = parse(&b);
    assert_eq!(b["id"], 1);
    let caps = &b["result"]["capabilities"];
    assert_eq!(caps["documentFormattingProvider"], true);
    assert_eq!(caps["completionProvider"], json!({}));
    assert_eq!(
        caps["codeActionProvider"]["codeActionKinds"],
        json!(["quickfix", "source.fixAll.ruff"])
    );
    assert!(
        caps.get("executeCommandProvider").is_none() && caps.get("diagnosticProvider").is_none()
    );
    assert_eq!(b["result"]["serverInfo"]["name"], "pyrefly + ruff");
    r
}

#[test]
fn requests_go_to_the_server_that_offers_them_and_answers_keep_the_clients_id() {
    let mut r = initialized();
    let sent = r.client_request(json!("c7"), "textDocument/hover", json!({}), &[]);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, 0, "hover from the type server, not ruff");
    let bridge_id = parse(&sent[0].1)["id"].clone();
    assert_ne!(bridge_id, json!("c7"));
    // The other server answering the same id is not an answer to the client.
    assert!(
        r.server_message(1, json!({ "id": bridge_id, "result": 1 }))
            .is_none()
    );
    let a = parse(
        &r.server_message(
            0,
            json!({ "jsonrpc": "2.0", "id": bridge_id, "result": { "contents": "x" } }),
        )
        .unwrap(),
    );
    assert_eq!(a["id"], "c7");
    let sent = r.client_request(json!(8), "textDocument/formatting", json!({}), &[]);
    assert_eq!(sent[0].0, 1, "formatting from ruff");
}

#[test]
fn code_actions_come_from_both_and_resolve_goes_back_to_its_server() {
    let mut r = initialized();
    let sent = r.client_request(json!(9), "textDocument/codeAction", json!({}), &[]);
    assert_eq!(sent.len(), 2);
    let ids: Vec<Value> = sent.iter().map(|(_, f)| parse(f)["id"].clone()).collect();
    assert!(
        r.server_message(
            1,
            json!({ "id": ids[1], "result": [{ "title": "Ruff: fix", "data": { "uri": "u" } }] })
        )
        .is_none()
    );
    let all = parse(
        &r.server_message(
            0,
            json!({ "id": ids[0], "result": [{ "title": "Remove import" }] }),
        )
        .unwrap(),
    );
    let titles: Vec<&str> = all["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Remove import", "Ruff: fix"]);
    let ruffs = all["result"][1].clone();
    let sent = r.client_request(json!(10), "codeAction/resolve", ruffs, &[]);
    assert_eq!(sent[0].0, 1);
    let body = parse(&sent[0].1);
    assert_eq!(
        body["params"]["data"],
        json!({ "uri": "u" }),
        "ruff sees its own data"
    );
    let done = parse(&r.server_message(1, json!({ "id": body["id"], "result": { "title": "Ruff: fix", "edit": {}, "data": { "uri": "u" } } })).unwrap());
    assert_eq!(done["id"], 10);
    assert_eq!(done["result"]["data"]["scriptoriumServer"], 1);
}

#[test]
fn diagnostics_are_the_union_of_each_servers_latest_set() {
    let mut r = initialized();
    let d = |msg: &str| json!({ "range": {}, "message": msg });
    let publish = |ds: Vec<Value>| json!({ "jsonrpc": "2.0", "method": "textDocument/publishDiagnostics", "params": { "uri": "file:///w/a.py", "diagnostics": ds } });
    let got = |s: String| -> Vec<String> {
        parse(&s)["params"]["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                format!(
                    "{}:{}",
                    d["source"].as_str().unwrap(),
                    d["message"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        got(r.server_message(0, publish(vec![d("type")])).unwrap()),
        ["pyrefly:type"]
    );
    let mut lint = d("unused");
    lint["source"] = json!("Ruff");
    assert_eq!(
        got(r.server_message(1, publish(vec![lint])).unwrap()),
        ["pyrefly:type", "Ruff:unused"]
    );
    // A new set from one server replaces only its own.
    assert_eq!(
        got(r.server_message(0, publish(vec![])).unwrap()),
        ["Ruff:unused"]
    );
    assert_eq!(
        got(r.server_message(1, publish(vec![])).unwrap()),
        Vec::<String>::new()
    );
    assert!(r.diagnostics.is_empty());
}

#[test]
fn server_requests_get_ids_that_name_their_server() {
    let mut r = initialized();
    let a = parse(&r.server_request_out(
        0,
        json!({ "jsonrpc": "2.0", "id": 0, "method": "client/registerCapability" }),
    ));
    let b = parse(&r.server_request_out(
        1,
        json!({ "jsonrpc": "2.0", "id": 0, "method": "client/registerCapability" }),
    ));
    assert_ne!(a["id"], b["id"]);
    let (s, f) = r
        .client_response(json!({ "jsonrpc": "2.0", "id": b["id"], "result": null }))
        .unwrap();
    assert_eq!((s, parse(&f)["id"].clone()), (1, json!(0)));
    assert!(
        r.client_response(json!({ "id": b["id"], "result": null }))
            .is_none(),
        "once"
    );
    // Cancelling a client request cancels it at every server it went to.
    let sent = r.client_request(json!(5), "textDocument/codeAction", json!({}), &[]);
    let cancels = r.client_notification("$/cancelRequest", json!({ "id": 5 }));
    assert_eq!(cancels.len(), 2);
    for (s, f) in cancels {
        let bridge = sent
            .iter()
            .find(|(t, _)| *t == s)
            .map(|(_, f)| parse(f)["id"].clone());
        assert_eq!(Some(parse(&f)["params"]["id"].clone()), bridge);
    }
}
