//! Prompt-to-code with an LLM: configuration, guardrails, providers and tools. The
//! `LlmBroker` actor (`llm_broker.rs`) runs the flow and logs every exchange.
//!
//! - [`guard`]: the stop-word filter, AST-based pseudonymisation (through a real
//!   interpreter) and restoring the answer.
//! - [`provider`]: OpenRouter's OpenAI-compatible chat completions (streaming, tool
//!   calls, usage with cost, retries) and the offline template provider.
//! - [`tools`]: what the model may look up: the interpreter's exact version, installed
//!   modules, a module's signatures and docstrings (introspected in the sandbox), and —
//!   only when configured — files in one read-only directory.

pub(crate) mod exchanges;
pub(crate) mod guard;
pub(crate) mod llm_broker;
pub(crate) mod provider;
pub(crate) mod tools;
pub(crate) mod verdict;

use std::path::PathBuf;

use serde::Deserialize;

/// `[llm]` settings; `OPENROUTER_API_KEY`, `SCRIPTORIUM_LLM_BASE_URL` and
/// `SCRIPTORIUM_LLM_MODEL` override them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    pub base_url: String,
    pub model: String,
    /// Usually from `OPENROUTER_API_KEY`; without one the offline provider answers.
    pub api_key: Option<String>,
    pub timeout_seconds: u64,
    /// Rounds of tool calls allowed before the exchange is abandoned.
    pub max_tool_rounds: u32,
    /// Retries of a transient failure (429, 5xx, timeout, connection).
    pub max_retries: u32,
    /// Ask the provider to stream its answer.
    pub stream: bool,
    /// Prompts containing one of these (case-insensitive) are blocked.
    pub stop_words: Vec<String>,
    /// Identifiers always pseudonymised before code leaves the machine.
    pub sensitive_names: Vec<String>,
    /// A directory the model may list and read (read-only); none by default.
    pub sandbox_dir: Option<PathBuf>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: "https://openrouter.ai/api/v1".into(),
            model: "openai/gpt-4o-mini".into(),
            api_key: None,
            timeout_seconds: 120,
            max_tool_rounds: 4,
            max_retries: 2,
            stream: true,
            stop_words: [
                "ignore previous instructions",
                "ignore all previous",
                "disregard your instructions",
                "reveal your system prompt",
                "reverse shell",
                "exfiltrate",
                "/etc/shadow",
                "rm -rf /",
                "begin rsa private key",
                "openrouter_api_key",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            sensitive_names: Vec::new(),
            sandbox_dir: None,
        }
    }
}

/// Why an exchange failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{0}")]
    BadInput(String),
    #[error(
        "the prompt was blocked: it contains `{0}`, which is on the stop-word list; rephrase the request"
    )]
    Blocked(String),
    #[error("the LLM provider refused the API key (HTTP 401); check OPENROUTER_API_KEY")]
    Unauthorized,
    #[error(
        "the LLM provider is rate-limiting requests (HTTP 429) after {attempts} attempts; try again in {retry_after} s"
    )]
    RateLimited { attempts: u32, retry_after: u64 },
    #[error("the LLM provider failed (HTTP {status}) after {attempts} attempts: {body}")]
    Provider {
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error(
        "the LLM provider did not answer within {0} s (after retries); try again or raise [llm] timeout_seconds"
    )]
    Timeout(u64),
    #[error("cannot reach the LLM provider at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the LLM provider's reply could not be read: {0}")]
    Malformed(String),
    #[error(
        "the model kept calling tools past {0} rounds without answering; the exchange was stopped"
    )]
    ToolLoop(u32),
    #[error("the model's answer contains no Python code block; try a more specific request")]
    NoCode,
    #[error("{0}")]
    Helper(String),
}
