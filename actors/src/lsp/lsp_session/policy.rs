//! What passes the bridge, either way. The language server processes untrusted text
//! and the client may be a viewer or a hostile page's script, so:
//!
//! - client → server: one JSON-RPC object per frame; methods only from [`ALLOWED`]
//!   and, for editors only, [`EDITING`]; every `uri` (and any `file:` string) inside
//!   the session workspace; `initialize` rebuilt around the session's root and the
//!   server's own settings; responses only to server requests the bridge forwarded.
//!   A refused request gets a JSON-RPC error reply; a refused notification is dropped
//!   and logged. What passes is re-serialised from the parsed value, so the server
//!   reads exactly what was checked (no duplicate keys, no extra members).
//! - server → client: responses and notifications pass unchanged; server *requests*
//!   are answered by the bridge ([`ANSWERED`]: the configuration is the server's own)
//!   or forwarded ([`FORWARDED`]); any other is answered "not supported".
//!
//! Nothing here is specific to one language server: its settings come in as a value.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// Client methods that pass for everyone (notifications and requests).
pub const ALLOWED: &[&str] = &[
    // lifecycle
    "initialize",
    "initialized",
    "shutdown",
    "exit",
    "$/cancelRequest",
    // document sync
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/willSave",
    "textDocument/didSave",
    "textDocument/didClose",
    // reading
    "textDocument/completion",
    "completionItem/resolve",
    "textDocument/hover",
    "textDocument/signatureHelp",
    "textDocument/definition",
    "textDocument/declaration",
    "textDocument/typeDefinition",
    "textDocument/implementation",
    "textDocument/references",
    "textDocument/documentHighlight",
    "textDocument/documentSymbol",
    "textDocument/foldingRange",
    "textDocument/selectionRange",
    "textDocument/semanticTokens/full",
    "textDocument/semanticTokens/full/delta",
    "textDocument/semanticTokens/range",
    "textDocument/inlayHint",
    "inlayHint/resolve",
    "textDocument/diagnostic",
    "workspace/diagnostic",
    // and the editing methods of EDITING, for editors only
];

/// Allowed methods that compute edits to code: editors only.
pub const EDITING: &[&str] = &[
    "textDocument/codeAction",
    "codeAction/resolve",
    "textDocument/formatting",
    "textDocument/rangeFormatting",
    "textDocument/onTypeFormatting",
    "textDocument/willSaveWaitUntil",
    "textDocument/rename",
    "textDocument/prepareRename",
];

/// Server requests the bridge answers itself, never asking the client.
pub const ANSWERED: &[&str] = &["workspace/configuration", "workspace/workspaceFolders"];

/// Server requests forwarded to the client (their replies carry no configuration).
/// `workspace/applyEdit` only for editors: a viewer's session answers `applied: false`.
pub const FORWARDED: &[&str] = &[
    "client/registerCapability",
    "client/unregisterCapability",
    "window/workDoneProgress/create",
    "window/showMessageRequest",
    "workspace/applyEdit",
    "workspace/semanticTokens/refresh",
    "workspace/inlayHint/refresh",
    "workspace/diagnostic/refresh",
    "workspace/codeLens/refresh",
];

/// Server requests forwarded and not yet answered, at most (a client that never answers
/// does not grow the bridge).
const MAX_FORWARDED: usize = 256;

/// JSON-RPC error codes.
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// What to do with a client message.
#[derive(Debug, PartialEq)]
pub enum FromClient {
    /// Write this to the server; then the server's settings when `then_configure`
    /// (after `initialized`).
    Forward { body: String, then_configure: bool },
    /// Send this to the client (an error reply), the server never sees the message.
    Reply(String),
    /// Drop it; the reason is for the log.
    Drop(String),
}

/// What to do with a server message.
#[derive(Debug, PartialEq)]
pub enum FromServer {
    /// Send it to the client as it is.
    Forward,
    /// Answer the server with this; the client never sees the request.
    Answer(String),
}

pub struct Policy {
    read_only: bool,
    /// `file:///…/lsp/<session>` without a trailing slash.
    root_uri: String,
    /// The server's own settings: initializationOptions and `workspace/configuration`.
    settings: Value,
    initialized: bool,
    /// Server request ids (as JSON text) forwarded to the client, with their method.
    forwarded: HashMap<String, String>,
}

impl Policy {
    pub fn new(read_only: bool, root_uri: String, settings: Value) -> Policy {
        Policy {
            read_only,
            root_uri,
            settings,
            initialized: false,
            forwarded: HashMap::new(),
        }
    }

    pub fn settings(&self) -> &Value {
        &self.settings
    }

    /// Checks one client frame.
    pub fn from_client(&mut self, text: &str) -> FromClient {
        let message: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return FromClient::Reply(error(
                    &Value::Null,
                    -32700,
                    &format!("not JSON ({e}); send one JSON-RPC message per text frame"),
                ));
            }
        };
        let Value::Object(mut message) = message else {
            return FromClient::Reply(error(
                &Value::Null,
                INVALID_REQUEST,
                "send one JSON-RPC object per text frame (batches and other values are refused)",
            ));
        };
        let id = message.remove("id");
        let params = message.remove("params").unwrap_or(Value::Null);
        let Some(method) = message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return self.client_response(id, message);
        };
        let refuse = |why: String| match &id {
            Some(id) => FromClient::Reply(error(id, INVALID_REQUEST, &why)),
            None => FromClient::Drop(why),
        };
        if !ALLOWED.contains(&method.as_str()) && !EDITING.contains(&method.as_str()) {
            return match &id {
                Some(id) => FromClient::Reply(error(
                    id,
                    METHOD_NOT_FOUND,
                    &format!(
                        "`{method}` is not allowed through the bridge; the allowed methods are listed in docs/security.md"
                    ),
                )),
                None => FromClient::Drop(format!("`{method}` is not allowed through the bridge")),
            };
        }
        if self.read_only && EDITING.contains(&method.as_str()) {
            return refuse("viewers cannot change code; sign in as an editor".into());
        }
        let params = if method == "initialize" {
            if self.initialized {
                return refuse(
                    "the session is already initialized; open a new connection to start again"
                        .into(),
                );
            }
            self.initialized = true;
            self.initialize_params(&params)
        } else {
            if let Err(uri) = self.check_uris(&params) {
                let why = format!(
                    "`{}` is outside the session workspace; open documents under the session's rootUri",
                    shorten(&uri)
                );
                return match &id {
                    Some(id) => FromClient::Reply(error(id, INVALID_PARAMS, &why)),
                    None => FromClient::Drop(why),
                };
            }
            params
        };
        let mut out = Map::new();
        out.insert("jsonrpc".into(), json!("2.0"));
        if let Some(id) = id {
            if !(id.is_string() || id.is_i64() || id.is_u64()) {
                return FromClient::Reply(error(
                    &Value::Null,
                    INVALID_REQUEST,
                    "a request id must be a number or a string",
                ));
            }
            out.insert("id".into(), id);
        }
        out.insert("method".into(), json!(method));
        if !params.is_null() {
            out.insert("params".into(), params);
        }
        FromClient::Forward {
            body: Value::Object(out).to_string(),
            then_configure: method == "initialized",
        }
    }

    /// A client response passes only to a request the bridge forwarded, once.
    fn client_response(&mut self, id: Option<Value>, message: Map<String, Value>) -> FromClient {
        let Some(id) = id else {
            return FromClient::Reply(error(
                &Value::Null,
                INVALID_REQUEST,
                "a message needs a `method` (or an `id` when it answers a server request)",
            ));
        };
        let Some(method) = self.forwarded.remove(&id.to_string()) else {
            return FromClient::Drop(format!(
                "a response to {id}, which the server did not ask the client"
            ));
        };
        let mut out = Map::new();
        out.insert("jsonrpc".into(), json!("2.0"));
        out.insert("id".into(), id);
        match (message.get("result"), message.get("error")) {
            (_, Some(e)) if e.is_object() => out.insert("error".into(), e.clone()),
            (Some(r), _) => out.insert("result".into(), r.clone()),
            _ => out.insert("result".into(), Value::Null),
        };
        tracing::trace!(%method, "client answered a server request");
        FromClient::Forward {
            body: Value::Object(out).to_string(),
            then_configure: false,
        }
    }

    /// `initialize` as the server gets it: the session's root and folder, the server's
    /// own settings as initializationOptions, the client's capabilities, nothing else.
    fn initialize_params(&self, given: &Value) -> Value {
        let root_path = self
            .root_uri
            .strip_prefix("file://")
            .map(percent_decode)
            .unwrap_or_default();
        let mut p = Map::new();
        p.insert("processId".into(), Value::Null);
        p.insert("rootUri".into(), json!(self.root_uri));
        p.insert("rootPath".into(), json!(root_path));
        p.insert(
            "workspaceFolders".into(),
            json!([{ "uri": self.root_uri, "name": "scripts" }]),
        );
        p.insert("initializationOptions".into(), self.settings.clone());
        let capabilities = given
            .get("capabilities")
            .filter(|c| c.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        p.insert("capabilities".into(), capabilities);
        if let Some(info) = given.get("clientInfo").and_then(Value::as_object) {
            let keep: Map<String, Value> = info
                .iter()
                .filter(|(k, v)| matches!(k.as_str(), "name" | "version") && v.is_string())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            p.insert("clientInfo".into(), Value::Object(keep));
        }
        if let Some(locale) = given
            .get("locale")
            .filter(|l| l.as_str().is_some_and(|s| s.len() < 32))
        {
            p.insert("locale".into(), locale.clone());
        }
        Value::Object(p)
    }

    /// Every member whose name ends in `uri` (`uri`, `targetUri`, pylsp's `doc_uri` in a
    /// completion item's data, …) must name a document inside the session workspace.
    /// Returns the first that does not.
    fn check_uris(&self, v: &Value) -> Result<(), String> {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k.len() >= 3
                        && k.is_char_boundary(k.len() - 3)
                        && k[k.len() - 3..].eq_ignore_ascii_case("uri")
                        && let Some(s) = x.as_str()
                        && !self.inside(s)
                    {
                        return Err(s.to_string());
                    }
                    self.check_uris(x)?;
                }
                Ok(())
            }
            Value::Array(a) => a.iter().try_for_each(|x| self.check_uris(x)),
            _ => Ok(()),
        }
    }

    /// Is `uri` a `file:` URI below the session root, with no `.`/`..` segment, no
    /// encoded separator, query or fragment?
    pub fn inside(&self, uri: &str) -> bool {
        let Some(rest) = uri
            .strip_prefix(self.root_uri.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        if rest.is_empty() || rest.contains(['?', '#', '\\']) {
            return false;
        }
        let decoded = percent_decode(rest);
        !decoded.contains(['\0', '\\']) && decoded.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            // An encoded '/' would be a separator to the server but not to this check.
            && decoded.split('/').count() == rest.split('/').count()
    }

    /// Checks one server frame. Only requests (a `method` and an `id`) are looked at.
    pub fn from_server(&mut self, text: &str) -> FromServer {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            method: Option<std::borrow::Cow<'a, str>>,
            id: Option<Value>,
            #[serde(default)]
            params: Option<Value>,
        }
        // A response or notification passes as it is; skipping its members is cheap.
        let Ok(head) = serde_json::from_str::<Head>(text) else {
            return FromServer::Forward;
        };
        let (Some(method), Some(id)) = (head.method, head.id) else {
            return FromServer::Forward;
        };
        let answer = |result: Value| {
            FromServer::Answer(json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string())
        };
        match method.as_ref() {
            "workspace/configuration" => {
                let items = head
                    .params
                    .as_ref()
                    .and_then(|p| p.get("items"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                answer(Value::Array(
                    items
                        .iter()
                        .map(|i| self.section(i.get("section").and_then(Value::as_str)))
                        .collect(),
                ))
            }
            "workspace/workspaceFolders" => {
                answer(json!([{ "uri": self.root_uri, "name": "scripts" }]))
            }
            "workspace/applyEdit" if self.read_only => {
                answer(json!({ "applied": false, "failureReason": "viewers cannot change code" }))
            }
            m if FORWARDED.contains(&m) && self.forwarded.len() < MAX_FORWARDED => {
                self.forwarded.insert(id.to_string(), m.to_string());
                FromServer::Forward
            }
            m => FromServer::Answer(error(
                &id,
                METHOD_NOT_FOUND,
                &format!("this client does not support `{m}`"),
            )),
        }
    }

    /// The server's settings for `section` (dotted), or all of them.
    fn section(&self, section: Option<&str>) -> Value {
        let Some(section) = section.filter(|s| !s.is_empty()) else {
            return self.settings.clone();
        };
        section
            .split('.')
            .try_fold(&self.settings, |v, key| v.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// Is this server frame a request (a `method` and an `id`)? Only those need the session.
pub fn is_request(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        method: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        id: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Head>(text).is_ok_and(|h| h.method.is_some() && h.id.is_some())
}

fn error(id: &Value, code: i64, message: &str) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }).to_string()
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s.to_string()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "file:///data/lsp/abc";

    fn policy(read_only: bool) -> Policy {
        Policy::new(
            read_only,
            ROOT.into(),
            json!({ "pylsp": { "plugins": { "jedi": { "environment": "/usr/bin/python3" } } } }),
        )
    }

    fn forwarded(v: FromClient) -> Value {
        match v {
            FromClient::Forward { body, .. } => serde_json::from_str(&body).unwrap(),
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
        assert_eq!(
            params["initializationOptions"]["pylsp"]["plugins"]["jedi"]["environment"],
            "/usr/bin/python3"
        );
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
            matches!(p.from_server(&edit.to_string()), FromServer::Answer(a) if a.contains("\"applied\":false"))
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
        let FromServer::Answer(a) = p.from_server(&req.to_string()) else {
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
        assert_eq!(p.from_server(&reg.to_string()), FromServer::Forward);
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
            matches!(p.from_server(&other.to_string()), FromServer::Answer(a) if a.contains("does not support"))
        );
        // Responses and notifications pass untouched.
        assert_eq!(
            p.from_server(r#"{"jsonrpc":"2.0","id":1,"result":{"items":[]}}"#),
            FromServer::Forward
        );
        assert_eq!(
            p.from_server(
                r#"{"jsonrpc":"2.0","method":"textDocument/publishDiagnostics","params":{}}"#
            ),
            FromServer::Forward
        );
    }
}
