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

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use scriptorium_sandbox::{Backends, Registry};

use crate::domain::version::Version;
use crate::llm::exchanges::{self, NewExchange, Transcript};
use crate::llm::guard::{self, Pseudonymised, StreamRestorer};
use crate::llm::provider::{ChatRequest, Offline, OpenRouter, Provider, Usage};
use crate::llm::tools::Tools;
use crate::llm::verdict::{self, Rejection};
use crate::llm::{LlmConfig, LlmError};
use crate::scripts::catalog::Catalog;
use crate::scripts::python::interpreter_directive;
use crate::scripts::python::{Checked, PythonChecker};
use crate::scripts::script_store::MAX_CONTENT_BYTES;

mod handle;

pub use handle::LlmBrokerHandle;

pub(crate) fn name(instance: &str) -> String {
    format!("{instance}/llm_broker")
}

const SYSTEM: &str = "You write and change Python scripts for Scriptorium. A script receives its input \
only as a file path in sys.argv[1]; its working directory is where it writes output files. Answer with \
a short explanation, then the complete new script in one ```python code block. Before using a package \
outside the standard library, check with the tools that it is installed. Names such as anon_id_3 or \
anon_str_7 stand for names that must not leave the user's machine: keep them exactly as they are.";

/// Longest instruction accepted.
pub(crate) const MAX_INSTRUCTION: usize = 4000;

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

pub(crate) struct Core {
    args: LlmBrokerArgs,
    provider: Box<dyn Provider>,
}

pub(crate) struct LlmBroker;

pub(crate) enum LlmBrokerMessage {
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
                let linked = core
                    .db(move |c| exchanges::link(c, exchange_id, script_id, version))
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
pub(crate) fn split_answer(text: &str) -> Option<(String, String)> {
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
        let (instruction, code) = self.checked_input(&req).await?;
        let new = NewExchange {
            script_id: req.script_id,
            user: req.user.clone(),
            provider: self.provider.name().to_string(),
            model: self.provider.model().to_string(),
            instruction: instruction.clone(),
        };
        self.refuse_stop_words(&new).await?;
        send(LlmEvent::Status {
            message: "pseudonymising names before anything leaves the machine".into(),
        });
        let pseudo = self.pseudonymise(&code, &instruction).await?;
        let mut messages = vec![
            json!({ "role": "system", "content": SYSTEM }),
            json!({ "role": "user", "content": format!("Instruction:\n{}\n\nCurrent code:\n```python\n{}```\n", pseudo.instruction, pseudo.code) }),
        ];
        // Logged before it is sent.
        let (sent, mode) = (json!(messages).to_string(), pseudo.mode.clone());
        let logged = new.clone();
        let exchange_id = self
            .db(move |c| exchanges::insert_pending(c, &logged, &sent, &mode))
            .await?;

        // What the code declares (PEP 723) and what the saved version's lock pins.
        let dependencies = {
            let (catalog, id, c) = (self.args.catalog.clone(), req.script_id, code.clone());
            tokio::task::spawn_blocking(move || {
                let lock = catalog
                    .summary(id)
                    .and_then(|s| catalog.version_lock(id, s.version))
                    .ok()
                    .flatten();
                crate::deps::Dependencies::of(&c, lock.as_ref())
            })
            .await
            .unwrap_or_default()
        };
        let started = Instant::now();
        let mut transcript = Transcript::default();
        let outcome = match self.tools_for(&req.interpreter, dependencies, &code) {
            Ok(tools) => {
                self.converse(tools, &pseudo, &mut messages, &mut transcript, &send)
                    .await
            }
            Err(e) => Err(e),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let sent = json!(messages).to_string();
        let (final_model, content) = match outcome {
            Ok(v) => v,
            Err(e) => {
                let (msg, t) = (e.to_string(), transcript.clone());
                self.db(move |c| {
                    exchanges::finish_failed(c, exchange_id, &msg, &sent, &t, latency_ms)
                })
                .await?;
                tracing::warn!(exchange_id, error = %e, "LLM exchange failed");
                return Err(e);
            }
        };
        let Some((code_out, explanation)) = split_answer(&content) else {
            let t = transcript.clone();
            let msg = LlmError::NoCode.to_string();
            self.db(move |c| exchanges::finish_without_code(c, exchange_id, &msg, &t))
                .await?;
            return Err(LlmError::NoCode);
        };
        let code_out = guard::restore(&code_out, &pseudo.mapping);
        let explanation = guard::restore(&explanation, &pseudo.mapping);
        let (valid, problem) = self.compiles(&code_out).await?;
        let (t, fm, proposed) = (transcript.clone(), final_model.clone(), code_out.clone());
        self.db(move |c| {
            exchanges::finish_ok(c, exchange_id, &fm, &sent, &t, latency_ms, &proposed)
        })
        .await?;
        let usage = transcript.usage;
        tracing::info!(exchange_id, model = %final_model, tokens = usage.prompt_tokens + usage.completion_tokens, cost = usage.cost, latency_ms, "LLM exchange done");
        Ok(Proposal {
            exchange_id,
            code: code_out,
            explanation,
            provider: new.provider,
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

    /// The instruction (trimmed) and the code to change (the editor's, else the saved
    /// version), each within its limit.
    async fn checked_input(&self, req: &PromptRequest) -> Result<(String, String), LlmError> {
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
        let code = match &req.code {
            Some(c) if c.len() > MAX_CONTENT_BYTES => {
                return Err(LlmError::BadInput(format!(
                    "the code is {} bytes; at most {MAX_CONTENT_BYTES}",
                    c.len(),
                )));
            }
            Some(c) => c.clone(),
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
        Ok((instruction, code))
    }

    /// Refuses (and logs) a prompt with a stop word in it.
    async fn refuse_stop_words(&self, new: &NewExchange) -> Result<(), LlmError> {
        let Some(word) = guard::stop_word(&new.instruction, &self.args.config.stop_words) else {
            return Ok(());
        };
        let (word, logged) = (word.to_string(), new.clone());
        let w = word.clone();
        self.db(move |c| exchanges::insert_blocked(c, &logged, &w))
            .await?;
        tracing::warn!(script = new.script_id, word = %word, "blocked a prompt");
        Err(LlmError::Blocked(word))
    }

    /// Sensitive names in the code and instruction replaced, through the helper.
    async fn pseudonymise(&self, code: &str, instruction: &str) -> Result<Pseudonymised, LlmError> {
        let python = self.args.python.clone();
        let names = self.args.config.sensitive_names.clone();
        let (code, instruction) = (code.to_string(), instruction.to_string());
        tokio::task::spawn_blocking(move || {
            guard::pseudonymise(&python, &code, &instruction, &names)
        })
        .await
        .map_err(|e| LlmError::Helper(e.to_string()))?
    }

    /// Whether the proposed code compiles, and if not, why.
    async fn compiles(&self, code: &str) -> Result<(bool, Option<String>), LlmError> {
        let python = self.args.python.clone();
        let code = code.to_string();
        let checked = tokio::task::spawn_blocking(move || PythonChecker::new(&python).check(&code))
            .await
            .map_err(|e| LlmError::Helper(e.to_string()))?
            .map_err(|e| LlmError::Helper(e.to_string()))?;
        Ok(match checked {
            Checked::Valid { .. } => (true, None),
            Checked::Invalid(p) => (false, Some(p.to_string())),
        })
    }

    /// The tools the model may call for this script: its interpreter (asked for, else
    /// the script's directive, else the default) and its declared dependencies.
    fn tools_for(
        &self,
        interpreter: &Option<String>,
        dependencies: crate::deps::Dependencies,
        code: &str,
    ) -> Result<Tools, LlmError> {
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
            dependencies,
        };
        Ok(tools)
    }

    /// The request/tool loop. Returns the model and the final answer text.
    async fn converse(
        &self,
        tools: Tools,
        pseudo: &Pseudonymised,
        messages: &mut Vec<Value>,
        transcript: &mut Transcript,
        send: &(dyn Fn(LlmEvent) + Send + Sync),
    ) -> Result<(String, String), LlmError> {
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
            transcript.usage.add(&resp.usage);
            transcript.raws.push(resp.raw.clone());
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
                transcript
                    .calls
                    .push(json!({ "name": name, "arguments": arguments, "result": result }));
                messages
                    .push(json!({ "role": "tool", "tool_call_id": tc["id"], "content": result }));
            }
        }
        Err(LlmError::ToolLoop(max))
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
