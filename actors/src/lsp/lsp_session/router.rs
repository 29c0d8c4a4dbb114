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
mod tests;
