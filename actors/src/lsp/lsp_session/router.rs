//! One client, several language servers: the type-aware server (index 0, the primary)
//! and `ruff server` beside it. The router
//! - sends each client request to the server that offers it (formatting to the lint
//!   server, code actions to every server that has them, everything else to the
//!   primary), under ids of its own so the servers' answers cannot be confused;
//! - sends notifications (document sync, lifecycle) to every server;
//! - answers the client once: `initialize` with the servers' capabilities merged, code
//!   actions as one list (each tagged with its server, so `codeAction/resolve` goes
//!   back to it);
//! - keeps one diagnostics set per server and document and sends the union
//!   (`publishDiagnostics` replaces a document's whole set);
//! - gives server requests forwarded to the client ids that name their server.
//!
//! It sees only messages [`super::policy`] has already checked.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// A response-to-be the client is waiting for.
struct Waiting {
    client_id: Value,
    method: String,
    /// Set when several servers answer one client request.
    merge: Option<u64>,
}

/// Answers collected for one client request sent to several servers.
struct Merge {
    client_id: Value,
    method: String,
    left: usize,
    parts: Vec<(usize, Value)>,
}

pub struct Router {
    names: Vec<&'static str>,
    /// Each server's `initialize` capabilities once it answered.
    capabilities: Vec<Option<Value>>,
    next_id: i64,
    waiting: HashMap<(usize, i64), Waiting>,
    merges: HashMap<u64, Merge>,
    next_merge: u64,
    /// uri → one diagnostics list per server.
    diagnostics: HashMap<String, Vec<Vec<Value>>>,
    /// Ids of server requests as the client sees them → (server, the server's id).
    server_requests: HashMap<String, (usize, Value)>,
    next_server_request: u64,
}

/// Requests answered by every server, the answers merged.
const TO_ALL: &[&str] = &["initialize", "shutdown", "textDocument/codeAction"];

impl Router {
    /// `names[0]` is the primary server.
    pub fn new(names: Vec<&'static str>) -> Router {
        let n = names.len();
        Router {
            names,
            capabilities: vec![None; n],
            next_id: 1,
            waiting: HashMap::new(),
            merges: HashMap::new(),
            next_merge: 1,
            diagnostics: HashMap::new(),
            server_requests: HashMap::new(),
            next_server_request: 1,
        }
    }

    pub fn servers(&self) -> usize {
        self.names.len()
    }

    /// Which servers get a client request.
    fn targets(&self, method: &str, params: &Value) -> Vec<usize> {
        let all: Vec<usize> = (0..self.servers()).collect();
        match method {
            "textDocument/codeAction" => {
                let with: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|&i| self.offers(i, "codeActionProvider") != Some(false))
                    .collect();
                if with.is_empty() { vec![0] } else { with }
            }
            m if TO_ALL.contains(&m) => all,
            "textDocument/formatting" | "textDocument/rangeFormatting" => {
                let cap = if method == "textDocument/formatting" {
                    "documentFormattingProvider"
                } else {
                    "documentRangeFormattingProvider"
                };
                // The last server that formats: the lint server when it runs.
                vec![
                    all.iter()
                        .rev()
                        .copied()
                        .find(|&i| self.offers(i, cap) != Some(false))
                        .unwrap_or(0),
                ]
            }
            "codeAction/resolve" => vec![tagged_server(params).unwrap_or(0)],
            _ => vec![0],
        }
    }

    /// Whether server `i` offers `capability` (None: it has not said yet).
    fn offers(&self, i: usize, capability: &str) -> Option<bool> {
        let caps = self.capabilities.get(i)?.as_ref()?;
        Some(
            caps.get(capability)
                .is_some_and(|c| !c.is_null() && c != &json!(false)),
        )
    }

    /// A checked client request (`id`, `method`, `params`) as frames for the servers.
    pub fn client_request(
        &mut self,
        id: Value,
        method: &str,
        params: Value,
        settings: &[Value],
    ) -> Vec<(usize, String)> {
        let targets = self.targets(method, &params);
        let merge = (targets.len() > 1).then(|| {
            let m = self.next_merge;
            self.next_merge += 1;
            self.merges.insert(
                m,
                Merge {
                    client_id: id.clone(),
                    method: method.to_string(),
                    left: targets.len(),
                    parts: Vec::new(),
                },
            );
            m
        });
        let mut out = Vec::with_capacity(targets.len());
        for server in targets {
            let bridge_id = self.next_id;
            self.next_id += 1;
            self.waiting.insert(
                (server, bridge_id),
                Waiting {
                    client_id: id.clone(),
                    method: method.to_string(),
                    merge,
                },
            );
            let params = match method {
                "initialize" => initialize_for(&params, settings.get(server)),
                "codeAction/resolve" => untag(params.clone()),
                _ => params.clone(),
            };
            out.push((server, frame(Some(json!(bridge_id)), method, params)));
        }
        out
    }

    /// A checked client notification as frames for the servers.
    pub fn client_notification(&mut self, method: &str, params: Value) -> Vec<(usize, String)> {
        if method == "$/cancelRequest" {
            let Some(id) = params.get("id") else {
                return Vec::new();
            };
            return self
                .waiting
                .iter()
                .filter(|(_, w)| &w.client_id == id)
                .map(|((server, bridge), _)| {
                    (*server, frame(None, method, json!({ "id": bridge })))
                })
                .collect();
        }
        (0..self.servers())
            .map(|s| (s, frame(None, method, params.clone())))
            .collect()
    }

    /// A server request on its way to the client: its id becomes one that names the server.
    pub fn server_request_out(&mut self, server: usize, mut message: Value) -> String {
        let key = format!("s{server}-{}", self.next_server_request);
        self.next_server_request += 1;
        let original = message.get("id").cloned().unwrap_or(Value::Null);
        self.server_requests.insert(key.clone(), (server, original));
        message["id"] = json!(key);
        message.to_string()
    }

    /// The client's (checked) answer to a server request: to that server, under its id.
    pub fn client_response(&mut self, mut message: Value) -> Option<(usize, String)> {
        let key = message.get("id")?.as_str()?.to_string();
        let (server, original) = self.server_requests.remove(&key)?;
        message["id"] = original;
        Some((server, message.to_string()))
    }

    /// A response or notification from `server`: what the client gets, if anything.
    pub fn server_message(&mut self, server: usize, mut message: Value) -> Option<String> {
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            if method == "textDocument/publishDiagnostics" {
                return self.diagnostics(server, message.get("params")?);
            }
            return Some(message.to_string());
        }
        let id = message.get("id")?.as_i64()?;
        let waiting = self.waiting.remove(&(server, id))?;
        if waiting.method == "initialize" {
            self.capabilities[server] = message.pointer("/result/capabilities").cloned();
        }
        if let Some(m) = waiting.merge {
            return self.merge_part(m, server, message);
        }
        message["id"] = waiting.client_id;
        if waiting.method == "codeAction/resolve"
            && let Some(r) = message.get_mut("result")
        {
            tag(r, server);
        }
        Some(message.to_string())
    }

    fn merge_part(&mut self, m: u64, server: usize, message: Value) -> Option<String> {
        let merge = self.merges.get_mut(&m)?;
        merge.parts.push((server, message));
        merge.left -= 1;
        if merge.left > 0 {
            return None;
        }
        let merge = self.merges.remove(&m)?;
        let mut parts = merge.parts;
        parts.sort_by_key(|(s, _)| *s);
        let ok: Vec<(usize, Value)> = parts
            .iter()
            .filter(|(_, p)| p.get("error").is_none())
            .map(|(s, p)| (*s, p.get("result").cloned().unwrap_or(Value::Null)))
            .collect();
        let mut out = Map::new();
        out.insert("jsonrpc".into(), json!("2.0"));
        out.insert("id".into(), merge.client_id);
        if ok.is_empty() || (merge.method == "initialize" && ok.len() < parts.len()) {
            // The first error speaks for all (an initialize any server refused fails).
            let err = parts.iter().find_map(|(_, p)| p.get("error").cloned());
            out.insert("error".into(), err.unwrap_or(Value::Null));
            return Some(Value::Object(out).to_string());
        }
        let result = match merge.method.as_str() {
            "initialize" => self.merged_initialize(&ok),
            "textDocument/codeAction" => merged_code_actions(ok),
            _ => ok.into_iter().next().map(|(_, r)| r).unwrap_or(Value::Null),
        };
        out.insert("result".into(), result);
        Some(Value::Object(out).to_string())
    }

    /// The primary's capabilities, with formatting and code actions from the others.
    /// Commands and pull diagnostics are not offered (the bridge refuses
    /// `workspace/executeCommand`; diagnostics are pushed and merged here).
    fn merged_initialize(&self, results: &[(usize, Value)]) -> Value {
        let mut caps = results
            .iter()
            .find(|(s, _)| *s == 0)
            .and_then(|(_, r)| r.get("capabilities").cloned())
            .unwrap_or_else(|| json!({}));
        for (_, r) in results.iter().filter(|(s, _)| *s != 0) {
            let Some(other) = r.get("capabilities") else {
                continue;
            };
            for key in [
                "documentFormattingProvider",
                "documentRangeFormattingProvider",
            ] {
                if other.get(key).is_some_and(|v| v != &json!(false)) {
                    caps[key] = json!(true);
                }
            }
            if let Some(theirs) = other.get("codeActionProvider") {
                caps["codeActionProvider"] =
                    merged_code_action_provider(caps.get("codeActionProvider"), theirs);
            }
        }
        if let Some(c) = caps.as_object_mut() {
            c.remove("executeCommandProvider");
            c.remove("diagnosticProvider");
            c.remove("notebookDocumentSync");
        }
        let names = self.names.join(" + ");
        json!({ "capabilities": caps, "serverInfo": { "name": names } })
    }

    /// Stores `server`'s set for the document and answers with the union of all sets.
    fn diagnostics(&mut self, server: usize, params: &Value) -> Option<String> {
        let uri = params.get("uri")?.as_str()?.to_string();
        let n = self.servers();
        let name = self.names[server];
        let mut mine: Vec<Value> = params
            .get("diagnostics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for d in &mut mine {
            if d.get("source").and_then(Value::as_str).is_none() {
                d["source"] = json!(name);
            }
        }
        let sets = self
            .diagnostics
            .entry(uri.clone())
            .or_insert_with(|| vec![Vec::new(); n]);
        sets[server] = mine;
        let union: Vec<Value> = sets.iter().flatten().cloned().collect();
        if union.is_empty() && sets.iter().all(Vec::is_empty) {
            // Forget documents with nothing to report (closed ones end here).
            self.diagnostics.remove(&uri);
        }
        let mut out = json!({ "uri": uri, "diagnostics": union });
        if let Some(v) = params.get("version") {
            out["version"] = v.clone();
        }
        Some(
            json!({ "jsonrpc": "2.0", "method": "textDocument/publishDiagnostics", "params": out })
                .to_string(),
        )
    }
}

fn frame(id: Option<Value>, method: &str, params: Value) -> String {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), json!("2.0"));
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    m.insert("method".into(), json!(method));
    if !params.is_null() {
        m.insert("params".into(), params);
    }
    Value::Object(m).to_string()
}

/// `initialize` for one server: its own settings, and no pull diagnostics (each server
/// pushes its set, which the router merges).
fn initialize_for(params: &Value, settings: Option<&Value>) -> Value {
    let mut p = params.clone();
    p["initializationOptions"] = settings.cloned().unwrap_or(Value::Null);
    if let Some(td) = p
        .pointer_mut("/capabilities/textDocument")
        .and_then(Value::as_object_mut)
    {
        td.remove("diagnostic");
    }
    if let Some(ws) = p
        .pointer_mut("/capabilities/workspace")
        .and_then(Value::as_object_mut)
    {
        ws.remove("diagnostics");
    }
    p
}

fn merged_code_action_provider(ours: Option<&Value>, theirs: &Value) -> Value {
    let kinds = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(|v| v.get("codeActionKinds"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut all = kinds(ours);
    for k in kinds(Some(theirs)) {
        if !all.contains(&k) {
            all.push(k);
        }
    }
    json!({ "codeActionKinds": all, "resolveProvider": true })
}

/// Every server's actions in one list, each tagged with its server.
fn merged_code_actions(results: Vec<(usize, Value)>) -> Value {
    let mut all = Vec::new();
    for (server, r) in results {
        for mut action in r.as_array().cloned().unwrap_or_default() {
            tag(&mut action, server);
            all.push(action);
        }
    }
    Value::Array(all)
}

/// Wraps a code action's `data` so its resolve goes back to `server`.
fn tag(action: &mut Value, server: usize) {
    if let Some(a) = action.as_object_mut() {
        let data = a.remove("data").unwrap_or(Value::Null);
        a.insert(
            "data".into(),
            json!({ "scriptoriumServer": server, "data": data }),
        );
    }
}

fn tagged_server(params: &Value) -> Option<usize> {
    params
        .pointer("/data/scriptoriumServer")
        .and_then(Value::as_u64)
        .map(|s| s as usize)
}

/// The action as its server made it.
fn untag(mut params: Value) -> Value {
    if let Some(a) = params.as_object_mut() {
        match a.remove("data").and_then(|d| d.get("data").cloned()) {
            Some(Value::Null) | None => {}
            Some(d) => {
                a.insert("data".into(), d);
            }
        }
    }
    params
}

#[cfg(test)]
mod tests {
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
            caps.get("executeCommandProvider").is_none()
                && caps.get("diagnosticProvider").is_none()
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
        assert!(r.server_message(1, json!({ "id": ids[1], "result": [{ "title": "Ruff: fix", "data": { "uri": "u" } }] })).is_none());
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
}
