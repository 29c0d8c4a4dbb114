//! Guardrails: the stop-word filter, pseudonymisation of what leaves the machine, and
//! restoring the answer.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::LlmError;

const HELPER: &str = include_str!("helper.py");

/// The first stop word the text contains (case-insensitive), if any.
pub(crate) fn stop_word<'a>(text: &str, words: &'a [String]) -> Option<&'a str> {
    let lower = text.to_lowercase();
    words
        .iter()
        .map(String::as_str)
        .find(|w| !w.trim().is_empty() && lower.contains(&w.to_lowercase()))
}

/// Runs the helper (`helper.py`) with one request. It only parses and rewrites code.
pub(crate) fn helper(python: &Path, request: &Value) -> Result<Value, LlmError> {
    use std::io::Write;
    let mut child = std::process::Command::new(python)
        .args(["-I", "-S", "-c", HELPER])
        // The helper needs nothing of the server's environment.
        .env_clear()
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| LlmError::Helper(format!("cannot start {}: {e}", python.display())))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(request.to_string().as_bytes())
        .map_err(|e| LlmError::Helper(e.to_string()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child
        .try_wait()
        .map_err(|e| LlmError::Helper(e.to_string()))?
        .is_none()
    {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LlmError::Helper(
                "the code helper took more than 30 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LlmError::Helper(e.to_string()))?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        LlmError::Helper(format!(
            "unreadable helper answer ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(LlmError::Helper(err.to_string()));
    }
    Ok(v)
}

/// One replaced name or string.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Entry {
    pub placeholder: String,
    pub original: String,
    /// The original source text (a string literal with its quotes).
    pub token: String,
}

/// Code and instruction as they will be sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pseudonymised {
    /// `ast`, or `text` when the code does not parse.
    pub mode: String,
    pub note: Option<String>,
    pub code: String,
    pub instruction: String,
    pub mapping: Vec<Entry>,
}

pub(crate) fn pseudonymise(
    python: &Path,
    code: &str,
    instruction: &str,
    names: &[String],
) -> Result<Pseudonymised, LlmError> {
    let v = helper(
        python,
        &json!({ "op": "pseudonymise", "code": code, "instruction": instruction, "names": names }),
    )?;
    serde_json::from_value(v).map_err(|e| LlmError::Helper(e.to_string()))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces whole-word occurrences of `from` by `to`.
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Puts the originals back into text the model wrote.
pub(crate) fn restore(text: &str, mapping: &[Entry]) -> String {
    let mut out = text.to_string();
    // Longest placeholders first: anon_id_12 before anon_id_1.
    let mut entries: Vec<&Entry> = mapping.iter().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.placeholder.len()));
    for e in entries {
        if e.placeholder.starts_with("anon_str_") {
            for q in ["\"", "'"] {
                out = out.replace(&format!("{q}{}{q}", e.placeholder), &e.token);
            }
            out = replace_word(&out, &e.placeholder, &e.original);
        } else {
            out = replace_word(&out, &e.placeholder, &e.original);
        }
    }
    out
}

/// Restores streamed text piecewise: holds back a possibly cut placeholder.
#[derive(Default)]
pub(crate) struct StreamRestorer {
    pending: String,
}

impl StreamRestorer {
    /// Takes a delta; returns what can be shown now.
    pub(crate) fn push(&mut self, delta: &str, mapping: &[Entry]) -> String {
        self.pending.push_str(delta);
        let cut = self
            .pending
            .rfind(|c: char| !is_ident(c))
            .map(|i| i + self.pending[i..].chars().next().map_or(1, char::len_utf8));
        match cut {
            Some(i) => {
                let ready: String = self.pending.drain(..i).collect();
                restore(&ready, mapping)
            }
            None => String::new(),
        }
    }

    pub(crate) fn finish(&mut self, mapping: &[Entry]) -> String {
        let rest = std::mem::take(&mut self.pending);
        restore(&rest, mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                placeholder: "anon_id_1".into(),
                original: "fetch_payroll".into(),
                token: "fetch_payroll".into(),
            },
            Entry {
                placeholder: "anon_str_2".into(),
                original: "db.acme.internal".into(),
                token: "'db.acme.internal'".into(),
            },
            Entry {
                placeholder: "anon_id_12".into(),
                original: "acme".into(),
                token: "acme".into(),
            },
        ]
    }

    #[test]
    fn restores_identifiers_and_string_tokens() {
        let text = "def anon_id_1(anon_id_12):\n    return connect(\"anon_str_2\")  # anon_str_2\nanon_id_1x = 1\n";
        assert_eq!(
            restore(text, &entries()),
            "def fetch_payroll(acme):\n    return connect('db.acme.internal')  # db.acme.internal\nanon_id_1x = 1\n"
        );
    }

    #[test]
    fn stream_restoring_never_shows_half_a_placeholder() {
        let mut r = StreamRestorer::default();
        let mut shown = String::new();
        for d in ["def anon_", "id_1(", "anon_id", "_12):", "\n"] {
            shown.push_str(&r.push(d, &entries()));
            assert!(!shown.contains("anon_"), "{shown}");
        }
        shown.push_str(&r.finish(&entries()));
        assert_eq!(shown, "def fetch_payroll(acme):\n");
    }

    #[test]
    fn stop_words_match_case_insensitively() {
        let words = vec!["reverse shell".to_string()];
        assert_eq!(
            stop_word("Open a Reverse Shell please", &words),
            Some("reverse shell")
        );
        assert_eq!(stop_word("sum the rows", &words), None);
    }
}
