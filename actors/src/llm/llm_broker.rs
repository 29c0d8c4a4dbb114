//! `LlmBroker`: prompt validation, guardrails, pseudonymisation, the tool-use loop
//! against the provider, and the log of every exchange.
//!
//! Each prompt runs on a task of its own (a model may take a minute), so one user's
//! request never waits for another's. The exchange is written to SQLite as `pending`
//! before anything leaves the machine, then completed as `ok` or `error`; a blocked
//! prompt is logged as `blocked` and never sent.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use scriptorium_sandbox::{Backends, Registry};

use crate::domain::clock;
use crate::domain::version::Version;
use crate::llm::guard::{self, Pseudonymised, StreamRestorer};
use crate::llm::provider::{ChatRequest, Offline, OpenRouter, Provider, Usage};
use crate::llm::tools::Tools;
use crate::llm::verdict::{self, Rejection};
use crate::llm::{LlmConfig, LlmError};
use crate::scripts::catalog::Catalog;
use crate::scripts::python::interpreter_directive;
use crate::scripts::python::{Checked, PythonChecker};

pub fn name(instance: &str) -> String {
    format!("{instance}/llm_broker")
}

const SYSTEM: &str = "You write and change Python scripts for Scriptorium. A script receives its input \
only as a file path in sys.argv[1]; its working directory is where it writes output files. Answer with \
a short explanation, then the complete new script in one ```python code block. Before using a package \
outside the standard library, check with the tools that it is installed. Names such as anon_id_3 or \
anon_str_7 stand for names that must not leave the user's machine: keep them exactly as they are.";

/// Longest instruction accepted.
pub const MAX_INSTRUCTION: usize = 4000;

pub struct PromptRequest {
    pub script_id: i64,
    pub instruction: String,
    /// The editor's current (possibly unsaved) code; the saved version when absent.
    pub code: Option<String>,
    pub interpreter: Option<String>,
    pub user: String,
}

/// What the browser sees while the answer comes.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LlmEvent {
    Status { message: String },
    Delta { text: String },
    Tool { name: String, arguments: String },
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct Proposal {
    pub exchange_id: i64,
    pub code: String,
    pub explanation: String,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    pub latency_ms: u64,
    /// `ast`, `text` (the code did not parse) or `none` (nothing to replace).
    pub pseudonymisation: String,
    pub pseudonymisation_note: Option<String>,
    pub replaced: usize,
    /// Whether the proposed code compiles.
    pub valid: bool,
    pub problem: Option<String>,
}

#[derive(Clone)]
pub struct LlmBrokerArgs {
    pub config: LlmConfig,
    /// The interpreter that runs the helper (pseudonymisation, offline templates).
    pub python: PathBuf,
    pub registry: Arc<Registry>,
    pub backends: Backends,
    pub scratch: PathBuf,
    pub db: Arc<Mutex<Connection>>,
    pub catalog: Arc<Catalog>,
}

pub struct Core {
    args: LlmBrokerArgs,
    provider: Box<dyn Provider>,
}

pub struct LlmBroker;

pub enum LlmBrokerMessage {
    Prompt {
        request: PromptRequest,
        events: Option<mpsc::Sender<LlmEvent>>,
        reply: RpcReplyPort<Result<Proposal, LlmError>>,
    },
    /// The user saved a proposal: record the version it produced.
    Link {
        exchange_id: i64,
        script_id: i64,
        version: Version,
        reply: RpcReplyPort<bool>,
    },
    /// The user rejected a proposal.
    Reject {
        exchange_id: i64,
        script_id: i64,
        user: String,
        reply: RpcReplyPort<Result<Rejection, String>>,
    },
}

impl Actor for LlmBroker {
    type Msg = LlmBrokerMessage;
    type State = Arc<Core>;
    type Arguments = LlmBrokerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: LlmBrokerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let provider: Box<dyn Provider> = match args
            .config
            .api_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
        {
            Some(key) => Box::new(OpenRouter::new(
                &args.config.base_url,
                key,
                &args.config.model,
                Duration::from_secs(args.config.timeout_seconds),
                args.config.max_retries,
                args.config.stream,
            )),
            None => Box::new(Offline {
                python: args.python.clone(),
            }),
        };
        tracing::info!(
            provider = provider.name(),
            model = provider.model(),
            "LLM broker ready"
        );
        let db = args.db.clone();
        tokio::task::spawn_blocking(move || {
            db.lock().unwrap_or_else(|p| p.into_inner()).execute(
                "UPDATE exchanges SET status = 'error', error = 'the server stopped during this exchange' WHERE status = 'pending'",
                [],
            )
        })
        .await??;
        Ok(Arc::new(Core { args, provider }))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        core: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LlmBrokerMessage::Prompt {
                request,
                events,
                reply,
            } => {
                let core = core.clone();
                tokio::spawn(async move {
                    let _ = reply.send(core.prompt(request, events).await);
                });
            }
            LlmBrokerMessage::Link {
                exchange_id,
                script_id,
                version,
                reply,
            } => {
                let db = core.args.db.clone();
                let linked = tokio::task::spawn_blocking(move || {
                    db.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .execute(
                            "UPDATE exchanges SET produced_major = ?3, produced_minor = ?4 WHERE id = ?1 AND script_id = ?2 AND status = 'ok'",
                            params![exchange_id, script_id, version.major, version.minor],
                        )
                        .map(|n| n == 1)
                        .unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                let _ = reply.send(linked);
            }
            LlmBrokerMessage::Reject {
                exchange_id,
                script_id,
                user,
                reply,
            } => {
                let db = core.args.db.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let c = db.lock().unwrap_or_else(|p| p.into_inner());
                    verdict::reject(&c, script_id, exchange_id, &user).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                let _ = reply.send(done);
            }
        }
        Ok(())
    }
}

/// Splits an answer into its code block and the explanation around it.
pub fn split_answer(text: &str) -> Option<(String, String)> {
    let (start, fence) = [("```python\n", 10usize), ("```py\n", 6), ("```\n", 4)]
        .iter()
        .find_map(|(f, n)| text.find(f).map(|i| (i, *n)))?;
    let body_start = start + fence;
    let end = text[body_start..].find("```").map(|e| body_start + e)?;
    let code = text[body_start..end].to_string();
    let explanation = format!("{}{}", &text[..start], &text[end + 3..])
        .trim()
        .to_string();
    Some((code, explanation))
}

impl Core {
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, LlmError> {
        let db = self.args.db.clone();
        tokio::task::spawn_blocking(move || f(&db.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| LlmError::Helper(e.to_string()))?
            .map_err(|e| LlmError::Helper(format!("the exchange log: {e}")))
    }

    async fn prompt(
        &self,
        req: PromptRequest,
        events: Option<mpsc::Sender<LlmEvent>>,
    ) -> Result<Proposal, LlmError> {
        let send = |e: LlmEvent| {
            if let Some(tx) = &events {
                let _ = tx.try_send(e);
            }
        };
        let instruction = req.instruction.trim().to_string();
        if instruction.is_empty() {
            return Err(LlmError::BadInput(
                "say what the script should do: the instruction is empty".into(),
            ));
        }
        if instruction.len() > MAX_INSTRUCTION {
            return Err(LlmError::BadInput(format!(
                "the instruction is {} characters; at most {MAX_INSTRUCTION}",
                instruction.len()
            )));
        }
        let code = match req.code {
            Some(c) if c.len() > crate::scripts::script_store::MAX_CONTENT_BYTES => {
                return Err(LlmError::BadInput(format!(
                    "the code is {} bytes; at most {}",
                    c.len(),
                    crate::scripts::script_store::MAX_CONTENT_BYTES
                )));
            }
            Some(c) => c,
            None => {
                let catalog = self.args.catalog.clone();
                let id = req.script_id;
                tokio::task::spawn_blocking(move || catalog.detail(id))
                    .await
                    .map_err(|e| LlmError::Helper(e.to_string()))?
                    .map_err(|e| LlmError::BadInput(e.to_string()))?
                    .content
            }
        };
        let (provider, model) = (
            self.provider.name().to_string(),
            self.provider.model().to_string(),
        );
        let (sid, user, instr) = (req.script_id, req.user.clone(), instruction.clone());
        if let Some(word) = guard::stop_word(&instruction, &self.args.config.stop_words) {
            let word = word.to_string();
            let (p, m, w) = (provider.clone(), model.clone(), word.clone());
            self.db(move |c| {
                c.execute(
                    "INSERT INTO exchanges (script_id, username, created_at, provider, model, instruction, prompt_sent, pseudonymisation, status, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', 'none', 'blocked', ?7)",
                    params![sid, user, clock::now(), p, m, instr, format!("stop word `{w}`")],
                )
            })
            .await?;
            tracing::warn!(script = sid, word = %word, "blocked a prompt");
            return Err(LlmError::Blocked(word));
        }

        send(LlmEvent::Status {
            message: "pseudonymising names before anything leaves the machine".into(),
        });
        let python = self.args.python.clone();
        let names = self.args.config.sensitive_names.clone();
        let (c2, i2) = (code.clone(), instruction.clone());
        let pseudo: Pseudonymised =
            tokio::task::spawn_blocking(move || guard::pseudonymise(&python, &c2, &i2, &names))
                .await
                .map_err(|e| LlmError::Helper(e.to_string()))??;
        let mut messages = vec![
            json!({ "role": "system", "content": SYSTEM }),
            json!({ "role": "user", "content": format!("Instruction:\n{}\n\nCurrent code:\n```python\n{}```\n", pseudo.instruction, pseudo.code) }),
        ];
        // Logged before it is sent.
        let (p, m, sent, mode) = (
            provider.clone(),
            model.clone(),
            json!(messages).to_string(),
            pseudo.mode.clone(),
        );
        let (sid, user, instr) = (req.script_id, req.user.clone(), instruction.clone());
        let exchange_id = self
            .db(move |c| {
                c.execute(
                    "INSERT INTO exchanges (script_id, username, created_at, provider, model, instruction, prompt_sent, pseudonymisation, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending')",
                    params![sid, user, clock::now(), p, m, instr, sent, mode],
                )?;
                Ok(c.last_insert_rowid())
            })
            .await?;

        let started = Instant::now();
        let mut usage = Usage::default();
        let mut raws: Vec<Value> = Vec::new();
        let mut calls: Vec<Value> = Vec::new();
        let outcome = self
            .converse(
                &req.interpreter,
                &code,
                &pseudo,
                &mut messages,
                &mut usage,
                &mut raws,
                &mut calls,
                &send,
            )
            .await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (final_model, content) = match outcome {
            Ok(v) => v,
            Err(e) => {
                let (msg, sent, raw, tools) = (
                    e.to_string(),
                    json!(messages).to_string(),
                    json!(raws).to_string(),
                    json!(calls).to_string(),
                );
                let u = usage.clone();
                self.db(move |c| {
                    c.execute(
                        "UPDATE exchanges SET status = 'error', error = ?2, prompt_sent = ?3, raw_response = ?4, tool_calls = ?5,
                            prompt_tokens = ?6, completion_tokens = ?7, cost = ?8, latency_ms = ?9 WHERE id = ?1",
                        params![exchange_id, msg, sent, raw, tools, u.prompt_tokens as i64, u.completion_tokens as i64, u.cost, latency_ms as i64],
                    )
                })
                .await?;
                tracing::warn!(exchange_id, error = %e, "LLM exchange failed");
                return Err(e);
            }
        };
        let (code_out, explanation) = match split_answer(&content) {
            Some((c, e)) => (
                guard::restore(&c, &pseudo.mapping),
                guard::restore(&e, &pseudo.mapping),
            ),
            None => {
                let raw = json!(raws).to_string();
                self.db(move |c| {
                    c.execute("UPDATE exchanges SET status = 'error', error = ?2, raw_response = ?3 WHERE id = ?1", params![exchange_id, LlmError::NoCode.to_string(), raw])
                })
                .await?;
                return Err(LlmError::NoCode);
            }
        };
        let python = self.args.python.clone();
        let check_code = code_out.clone();
        let checked =
            tokio::task::spawn_blocking(move || PythonChecker::new(&python).check(&check_code))
                .await
                .map_err(|e| LlmError::Helper(e.to_string()))?
                .map_err(|e| LlmError::Helper(e.to_string()))?;
        let (valid, problem) = match checked {
            Checked::Valid { .. } => (true, None),
            Checked::Invalid(p) => (false, Some(p.to_string())),
        };
        let (sent, raw, tools, proposed, fm) = (
            json!(messages).to_string(),
            json!(raws).to_string(),
            json!(calls).to_string(),
            code_out.clone(),
            final_model.clone(),
        );
        let u = usage.clone();
        self.db(move |c| {
            c.execute(
                "UPDATE exchanges SET status = 'ok', model = ?2, prompt_sent = ?3, raw_response = ?4, tool_calls = ?5, prompt_tokens = ?6,
                    completion_tokens = ?7, cost = ?8, latency_ms = ?9, proposed_code = ?10 WHERE id = ?1",
                params![exchange_id, fm, sent, raw, tools, u.prompt_tokens as i64, u.completion_tokens as i64, u.cost, latency_ms as i64, proposed],
            )
        })
        .await?;
        tracing::info!(exchange_id, model = %final_model, tokens = usage.prompt_tokens + usage.completion_tokens, cost = usage.cost, latency_ms, "LLM exchange done");
        Ok(Proposal {
            exchange_id,
            code: code_out,
            explanation,
            provider,
            model: final_model,
            usage,
            latency_ms,
            pseudonymisation: if pseudo.mapping.is_empty() {
                "none".into()
            } else {
                pseudo.mode.clone()
            },
            pseudonymisation_note: pseudo.note.clone(),
            replaced: pseudo.mapping.len(),
            valid,
            problem,
        })
    }

    /// The request/tool loop. Returns the model and the final answer text.
    #[allow(clippy::too_many_arguments)]
    async fn converse(
        &self,
        interpreter: &Option<String>,
        code: &str,
        pseudo: &Pseudonymised,
        messages: &mut Vec<Value>,
        usage: &mut Usage,
        raws: &mut Vec<Value>,
        calls: &mut Vec<Value>,
        send: &(dyn Fn(LlmEvent) + Send + Sync),
    ) -> Result<(String, String), LlmError> {
        let interp = self
            .args
            .registry
            .get(
                interpreter
                    .as_deref()
                    .or_else(|| interpreter_directive(code)),
            )
            .or_else(|_| self.args.registry.get(None))
            .map_err(|e| LlmError::BadInput(e.to_string()))?
            .clone();
        let tools = Tools {
            interpreter: interp,
            backends: self.args.backends.clone(),
            scratch: self.args.scratch.clone(),
            sandbox_dir: self.args.config.sandbox_dir.clone(),
        };
        let definitions = if self.provider.name() == "offline" {
            Vec::new()
        } else {
            tools.definitions()
        };
        let max = self.args.config.max_tool_rounds;
        for round in 0..=max {
            send(LlmEvent::Status {
                message: format!("asking {}", self.provider.model()),
            });
            let restorer = Mutex::new(StreamRestorer::default());
            let mapping = &pseudo.mapping;
            let on_delta = |d: &str| {
                let shown = restorer.lock().expect("restorer lock").push(d, mapping);
                if !shown.is_empty() {
                    send(LlmEvent::Delta { text: shown });
                }
            };
            let req = ChatRequest {
                model: self.provider.model().to_string(),
                messages: messages.clone(),
                tools: definitions.clone(),
            };
            let resp = self.provider.complete(&req, &on_delta).await?;
            let rest = restorer.lock().expect("restorer lock").finish(mapping);
            if !rest.is_empty() {
                send(LlmEvent::Delta { text: rest });
            }
            usage.add(&resp.usage);
            raws.push(resp.raw.clone());
            let tool_calls = resp.message["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if tool_calls.is_empty() {
                let content = resp.message["content"]
                    .as_str()
                    .ok_or_else(|| LlmError::Malformed("the answer has no text".into()))?;
                return Ok((resp.model, content.to_string()));
            }
            if round == max {
                return Err(LlmError::ToolLoop(max));
            }
            messages.push(resp.message.clone());
            for tc in tool_calls {
                let name = tc["function"]["name"].as_str().unwrap_or("").to_string();
                let arguments = tc["function"]["arguments"]
                    .as_str()
                    .unwrap_or("{}")
                    .to_string();
                send(LlmEvent::Tool {
                    name: name.clone(),
                    arguments: arguments.clone(),
                });
                let result = tools.call(&name, &arguments).await;
                calls.push(json!({ "name": name, "arguments": arguments, "result": result }));
                messages
                    .push(json!({ "role": "tool", "tool_call_id": tc["id"], "content": result }));
            }
        }
        Err(LlmError::ToolLoop(max))
    }
}

/// One row of a script's LLM log.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ExchangeRecord {
    pub id: i64,
    pub user: String,
    pub created_at: String,
    pub provider: String,
    pub model: String,
    pub instruction: String,
    pub status: String,
    pub error: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub latency_ms: u64,
    pub pseudonymisation: String,
    pub tool_calls: Value,
    pub produced_version: Option<Version>,
    /// `accepted` (saved: `produced_version`), `rejected`, `proposed`, or the status.
    pub outcome: String,
    pub rejected_by: Option<String>,
    pub rejected_at: Option<String>,
    /// What left the machine (after filtering and pseudonymisation).
    pub prompt_sent: Value,
}

pub fn exchanges(c: &Connection, script_id: i64) -> rusqlite::Result<Vec<ExchangeRecord>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, username, created_at, provider, model, instruction, status, error, prompt_tokens, completion_tokens, cost,
            latency_ms, pseudonymisation, tool_calls, produced_major, produced_minor, prompt_sent,
            rejected_by, rejected_at
         FROM exchanges WHERE script_id = ?1 ORDER BY id DESC",
    )?;
    let rows = stmt.query_map([script_id], |r| {
        let produced_version = r
            .get::<_, Option<u32>>(14)?
            .zip(r.get::<_, Option<u32>>(15)?)
            .map(|(a, b)| Version::new(a, b));
        let rejected_by: Option<String> = r.get(17)?;
        let status: String = r.get(6)?;
        Ok(ExchangeRecord {
            outcome: verdict::outcome(&status, produced_version.is_some(), rejected_by.is_some()),
            rejected_by,
            rejected_at: r.get::<_, Option<clock::Centis>>(18)?.map(clock::format),
            id: r.get(0)?,
            user: r.get(1)?,
            created_at: clock::format(r.get(2)?),
            provider: r.get(3)?,
            model: r.get(4)?,
            instruction: r.get(5)?,
            status,
            error: r.get(7)?,
            prompt_tokens: r.get::<_, i64>(8)? as u64,
            completion_tokens: r.get::<_, i64>(9)? as u64,
            cost: r.get(10)?,
            latency_ms: r.get::<_, i64>(11)? as u64,
            pseudonymisation: r.get(12)?,
            tool_calls: serde_json::from_str(&r.get::<_, String>(13)?).unwrap_or(Value::Null),
            produced_version,
            prompt_sent: serde_json::from_str(&r.get::<_, String>(16)?).unwrap_or(Value::Null),
        })
    })?;
    rows.collect()
}

pub fn exchange_exists(c: &Connection, id: i64, script_id: i64) -> rusqlite::Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM exchanges WHERE id = ?1 AND script_id = ?2",
        params![id, script_id],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// How the HTTP side reaches the broker.
#[derive(Clone)]
pub struct LlmBrokerHandle {
    name: String,
}

impl LlmBrokerHandle {
    pub fn new(instance: &str) -> LlmBrokerHandle {
        LlmBrokerHandle {
            name: name(instance),
        }
    }

    fn actor(&self) -> Result<ActorRef<LlmBrokerMessage>, LlmError> {
        ractor::registry::where_is(self.name.clone())
            .map(Into::into)
            .ok_or_else(|| {
                LlmError::Helper(
                    "the LLM broker is not running (it may be restarting); try again".into(),
                )
            })
    }

    /// Runs a prompt; `events` receives progress and streamed text.
    pub async fn prompt(
        &self,
        request: PromptRequest,
        events: Option<mpsc::Sender<LlmEvent>>,
        timeout: Duration,
    ) -> Result<Proposal, LlmError> {
        match self
            .actor()?
            .call(
                |reply| LlmBrokerMessage::Prompt {
                    request,
                    events,
                    reply,
                },
                Some(timeout),
            )
            .await
        {
            Ok(CallResult::Success(r)) => r,
            Ok(CallResult::Timeout) => Err(LlmError::Timeout(timeout.as_secs())),
            _ => Err(LlmError::Helper("the LLM broker did not answer".into())),
        }
    }

    /// Records that `user` rejected the proposal of exchange `exchange_id`.
    pub async fn reject(
        &self,
        exchange_id: i64,
        script_id: i64,
        user: String,
    ) -> Result<Rejection, LlmError> {
        let actor = self.actor()?;
        let call = actor.call(
            |reply| LlmBrokerMessage::Reject {
                exchange_id,
                script_id,
                user,
                reply,
            },
            Some(Duration::from_secs(10)),
        );
        match call.await {
            Ok(CallResult::Success(r)) => r.map_err(LlmError::Helper),
            _ => Err(LlmError::Helper("the LLM broker did not answer".into())),
        }
    }

    pub async fn link(&self, exchange_id: i64, script_id: i64, version: Version) -> bool {
        let Ok(actor) = self.actor() else {
            return false;
        };
        matches!(
            actor
                .call(
                    |reply| LlmBrokerMessage::Link {
                        exchange_id,
                        script_id,
                        version,
                        reply
                    },
                    Some(Duration::from_secs(10))
                )
                .await,
            Ok(CallResult::Success(true))
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_split_into_code_and_explanation() {
        let (code, expl) =
            super::split_answer("Adds logging.\n\n```python\nimport logging\n```\nDone.").unwrap();
        assert_eq!(code, "import logging\n");
        assert_eq!(expl, "Adds logging.\n\n\nDone.");
        assert!(super::split_answer("no code here").is_none());
    }
}
