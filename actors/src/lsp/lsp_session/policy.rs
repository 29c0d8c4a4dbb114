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
//! Nothing here is specific to one language server: a server's settings come in as a
//! value, and [`super::router`] puts them into its `initialize`.

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
    /// Pass this on (re-built from what was checked); then the servers' settings when
    /// `then_configure` (after `initialized`).
    Forward {
        message: Value,
        then_configure: bool,
    },
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
    initialized: bool,
    /// Server request ids (as JSON text) forwarded to the client, with their method.
    forwarded: HashMap<String, String>,
}

impl Policy {
    pub fn new(read_only: bool, root_uri: String) -> Policy {
        Policy {
            read_only,
            root_uri,
            initialized: false,
            forwarded: HashMap::new(),
        }
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
            message: Value::Object(out),
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
            message: Value::Object(out),
            then_configure: false,
        }
    }

    /// `initialize` as the servers get it: the session's root and folder, the client's
    /// capabilities, nothing else (the router adds each server's own settings as its
    /// initializationOptions).
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

    /// Checks one server frame; `settings` are that server's own. Only requests (a
    /// `method` and an `id`) are looked at.
    pub fn from_server(&mut self, text: &str, settings: &Value) -> FromServer {
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
                        .map(|i| section(settings, i.get("section").and_then(Value::as_str)))
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
}

/// A server's settings for `section` (dotted), or all of them.
fn section(settings: &Value, section: Option<&str>) -> Value {
    let Some(section) = section.filter(|s| !s.is_empty()) else {
        return settings.clone();
    };
    section
        .split('.')
        .try_fold(settings, |v, key| v.get(key))
        .cloned()
        .unwrap_or(Value::Null)
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
mod tests;
