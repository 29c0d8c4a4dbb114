//! LLM providers: OpenRouter's OpenAI-compatible chat completions, and the offline
//! template provider used when no key is configured.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::{LlmError, guard};

/// One chat-completions request.
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Value>,
    pub tools: Vec<Value>,
}

#[derive(Debug, Clone, Default, serde::Serialize, ts_rs::TS)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// In the provider's currency (OpenRouter: credits ≈ USD).
    pub cost: f64,
}

impl Usage {
    pub fn add(&mut self, o: &Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cost += o.cost;
    }
}

/// The assistant's message (content and/or tool calls) and what it cost.
pub struct ChatResponse {
    pub message: Value,
    pub usage: Usage,
    pub model: String,
    /// What the provider sent, as received (for the exchange log).
    pub raw: Value,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    fn model(&self) -> &str;
    /// Sends the request; `on_delta` receives answer text as it streams.
    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
        on_delta: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>>;
}

pub struct OpenRouter {
    pub client: reqwest::Client,
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub timeout: Duration,
    pub max_retries: u32,
    pub stream: bool,
}

fn usage_of(v: &Value) -> Usage {
    let u = &v["usage"];
    Usage {
        prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
        cost: u["cost"]
            .as_f64()
            .or_else(|| u["total_cost"].as_f64())
            .unwrap_or(0.0),
    }
}

impl OpenRouter {
    pub fn new(
        base_url: &str,
        api_key: &str,
        model: &str,
        timeout: Duration,
        max_retries: u32,
        stream: bool,
    ) -> OpenRouter {
        OpenRouter {
            // No proxy, no redirects to elsewhere: the only network request the app makes.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            model: model.to_string(),
            timeout,
            max_retries,
            stream,
        }
    }

    async fn attempt(
        &self,
        body: &Value,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ChatResponse, Attempt> {
        let url = format!("{}/chat/completions", self.base_url);
        let send = self
            .client
            .post(&url)
            .bearer_auth(&self.api_key)
            .header("HTTP-Referer", "http://127.0.0.1/scriptorium")
            .header("X-Title", "Scriptorium")
            .json(body)
            .send();
        let res = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => {
                return Err(Attempt::Transient(LlmError::Timeout(
                    self.timeout.as_secs(),
                )));
            }
            Ok(Err(e)) if e.is_connect() || e.is_timeout() => {
                return Err(Attempt::Transient(LlmError::Connect {
                    url,
                    message: e.to_string(),
                }));
            }
            Ok(Err(e)) => {
                return Err(Attempt::Final(LlmError::Connect {
                    url,
                    message: e.to_string(),
                }));
            }
            Ok(Ok(r)) => r,
        };
        let status = res.status().as_u16();
        if status == 401 || status == 403 {
            return Err(Attempt::Final(LlmError::Unauthorized));
        }
        if status == 429 {
            let after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(2);
            return Err(Attempt::RateLimited(after));
        }
        if status >= 400 {
            let body: String = res
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            let err = LlmError::Provider {
                status,
                attempts: 1,
                body,
            };
            return Err(if status >= 500 {
                Attempt::Transient(err)
            } else {
                Attempt::Final(err)
            });
        }
        let streamed = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let read = async {
            if streamed {
                self.read_stream(res, on_delta).await
            } else {
                self.read_whole(res, on_delta).await
            }
        };
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => Err(Attempt::Transient(LlmError::Timeout(
                self.timeout.as_secs(),
            ))),
            Ok(r) => r.map_err(Attempt::Final),
        }
    }

    async fn read_whole(
        &self,
        res: reqwest::Response,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ChatResponse, LlmError> {
        let text = res
            .text()
            .await
            .map_err(|e| LlmError::Malformed(e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            LlmError::Malformed(format!(
                "{e}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        let message = v["choices"][0]["message"].clone();
        if !message.is_object() {
            return Err(LlmError::Malformed(format!(
                "no choices[0].message in {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        if let Some(c) = message["content"].as_str() {
            on_delta(c);
        }
        Ok(ChatResponse {
            message,
            usage: usage_of(&v),
            model: v["model"].as_str().unwrap_or(&self.model).to_string(),
            raw: v,
        })
    }

    async fn read_stream(
        &self,
        res: reqwest::Response,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ChatResponse, LlmError> {
        let mut body = res.bytes_stream();
        let mut buf = String::new();
        let mut content = String::new();
        let mut tool_calls: Vec<Value> = Vec::new();
        let mut usage = Usage::default();
        let mut model = self.model.clone();
        let mut chunks = Vec::new();
        let mut done = false;
        while let Some(part) = body.next().await {
            let part = part.map_err(|e| LlmError::Malformed(format!("the stream broke: {e}")))?;
            buf.push_str(&String::from_utf8_lossy(&part));
            while let Some(nl) = buf.find('\n') {
                let line: String = buf.drain(..=nl).collect();
                let line = line.trim();
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let v: Value = serde_json::from_str(data).map_err(|e| {
                    LlmError::Malformed(format!("a stream chunk is not JSON ({e})"))
                })?;
                if let Some(err) = v.get("error") {
                    return Err(LlmError::Provider {
                        status: 200,
                        attempts: 1,
                        body: err.to_string(),
                    });
                }
                if let Some(m) = v["model"].as_str() {
                    model = m.to_string();
                }
                if v.get("usage").is_some_and(|u| u.is_object()) {
                    usage = usage_of(&v);
                }
                let delta = &v["choices"][0]["delta"];
                if let Some(c) = delta["content"].as_str() {
                    content.push_str(c);
                    on_delta(c);
                }
                for tc in delta["tool_calls"].as_array().into_iter().flatten() {
                    let i = tc["index"].as_u64().unwrap_or(0) as usize;
                    while tool_calls.len() <= i {
                        tool_calls.push(json!({ "id": "", "type": "function", "function": { "name": "", "arguments": "" } }));
                    }
                    let slot = &mut tool_calls[i];
                    if let Some(id) = tc["id"].as_str() {
                        slot["id"] = json!(id);
                    }
                    if let Some(n) = tc["function"]["name"].as_str() {
                        let name =
                            format!("{}{n}", slot["function"]["name"].as_str().unwrap_or(""));
                        slot["function"]["name"] = json!(name);
                    }
                    if let Some(a) = tc["function"]["arguments"].as_str() {
                        let args = format!(
                            "{}{a}",
                            slot["function"]["arguments"].as_str().unwrap_or("")
                        );
                        slot["function"]["arguments"] = json!(args);
                    }
                }
                chunks.push(v);
            }
        }
        if !done && chunks.is_empty() {
            return Err(LlmError::Malformed(
                "the stream ended without any data".into(),
            ));
        }
        let mut message = json!({ "role": "assistant", "content": content });
        if !tool_calls.is_empty() {
            message["tool_calls"] = json!(tool_calls);
        }
        Ok(ChatResponse {
            message,
            usage,
            model,
            raw: json!(chunks),
        })
    }
}

enum Attempt {
    Transient(LlmError),
    RateLimited(u64),
    Final(LlmError),
}

impl Provider for OpenRouter {
    fn name(&self) -> &'static str {
        "openrouter"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
        on_delta: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let mut body = json!({ "model": req.model, "messages": req.messages, "stream": self.stream, "usage": { "include": true } });
            if !req.tools.is_empty() {
                body["tools"] = json!(req.tools);
            }
            let mut attempts = 0;
            loop {
                attempts += 1;
                let last = attempts > self.max_retries;
                match self.attempt(&body, on_delta).await {
                    Ok(r) => return Ok(r),
                    Err(Attempt::Final(e)) => return Err(e),
                    Err(Attempt::RateLimited(after)) => {
                        // Wait as asked, but not for long: a user is waiting.
                        if last || after > 10 {
                            return Err(LlmError::RateLimited {
                                attempts,
                                retry_after: after,
                            });
                        }
                        tracing::warn!(after, attempts, "LLM provider rate-limited; retrying");
                        tokio::time::sleep(Duration::from_secs(after)).await;
                    }
                    Err(Attempt::Transient(e)) => {
                        if last {
                            return Err(match e {
                                LlmError::Provider { status, body, .. } => LlmError::Provider {
                                    status,
                                    attempts,
                                    body,
                                },
                                other => other,
                            });
                        }
                        tracing::warn!(error = %e, attempts, "transient LLM provider failure; retrying");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempts))).await;
                    }
                }
            }
        })
    }
}

/// The offline provider: deterministic templates keyed on the instruction, so the
/// whole flow works air-gapped. It reads the instruction and code from the prompt the
/// broker built and answers in the same shape a model would.
pub struct Offline {
    pub python: PathBuf,
}

pub const OFFLINE_MODEL: &str = "offline/templates";

/// The parts of the user prompt the broker builds.
pub fn split_prompt(prompt: &str) -> (String, String) {
    let instruction = prompt
        .split("Instruction:\n")
        .nth(1)
        .and_then(|r| r.split("\n\nCurrent code").next())
        .unwrap_or("")
        .trim()
        .to_string();
    let code = prompt
        .split("```python\n")
        .nth(1)
        .and_then(|r| r.rsplit_once("```").map(|(c, _)| c.to_string()))
        .unwrap_or_default();
    (instruction, code)
}

impl Provider for Offline {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn model(&self) -> &str {
        OFFLINE_MODEL
    }

    fn complete<'a>(
        &'a self,
        req: &'a ChatRequest,
        on_delta: &'a (dyn Fn(&str) + Send + Sync),
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let prompt = req
                .messages
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .and_then(|m| m["content"].as_str())
                .unwrap_or("");
            let (instruction, code) = split_prompt(prompt);
            let python = self.python.clone();
            let v = tokio::task::spawn_blocking(move || {
                guard::helper(
                    &python,
                    &json!({ "op": "offline", "code": code, "instruction": instruction }),
                )
            })
            .await
            .map_err(|e| LlmError::Helper(e.to_string()))??;
            let text = format!(
                "{}\n\n```python\n{}```\n",
                v["explanation"].as_str().unwrap_or(""),
                v["code"].as_str().unwrap_or("")
            );
            // Stream it line by line, as a provider would.
            for line in text.split_inclusive('\n') {
                on_delta(line);
            }
            let words = |s: &str| s.split_whitespace().count() as u64;
            let usage = Usage {
                prompt_tokens: words(prompt),
                completion_tokens: words(&text),
                cost: 0.0,
            };
            Ok(ChatResponse {
                message: json!({ "role": "assistant", "content": text }),
                usage,
                model: OFFLINE_MODEL.into(),
                raw: v,
            })
        })
    }
}
