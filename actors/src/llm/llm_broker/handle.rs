//! `LlmBrokerHandle`: how the HTTP side reaches the broker (prompt, reject, link), each
//! call with a timeout.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{LlmBrokerMessage, LlmEvent, PromptRequest, Proposal, name};
use crate::domain::version::Version;
use crate::handle::{ActorHandle, CallError};
use crate::llm::LlmError;
use crate::llm::verdict::Rejection;

/// How the HTTP side reaches the broker.
#[derive(Clone)]
pub struct LlmBrokerHandle {
    actor: ActorHandle<LlmBrokerMessage>,
}

impl LlmBrokerHandle {
    pub fn new(instance: &str) -> LlmBrokerHandle {
        LlmBrokerHandle {
            actor: ActorHandle::new(name(instance), "LLM broker", Duration::from_secs(10)),
        }
    }

    /// Runs a prompt; `events` receives progress and streamed text.
    pub async fn prompt(
        &self,
        request: PromptRequest,
        events: Option<mpsc::Sender<LlmEvent>>,
        timeout: Duration,
    ) -> Result<Proposal, LlmError> {
        let answer = self
            .actor
            .call_within(timeout, |reply| LlmBrokerMessage::Prompt {
                request,
                events,
                reply,
            })
            .await;
        match answer {
            Ok(r) => r,
            Err(CallError::Timeout(..)) => Err(LlmError::Timeout(timeout.as_secs())),
            Err(e) => Err(LlmError::Helper(e.to_string())),
        }
    }

    /// Records that `user` rejected the proposal of exchange `exchange_id`.
    pub async fn reject(
        &self,
        exchange_id: i64,
        script_id: i64,
        user: String,
    ) -> Result<Rejection, LlmError> {
        let answer = self
            .actor
            .call_within(Duration::from_secs(10), |reply| LlmBrokerMessage::Reject {
                exchange_id,
                script_id,
                user,
                reply,
            })
            .await;
        match answer {
            Ok(r) => r.map_err(LlmError::Helper),
            Err(e) => Err(LlmError::Helper(e.to_string())),
        }
    }

    /// Records the version a saved proposal produced; false when it could not be.
    pub async fn link(&self, exchange_id: i64, script_id: i64, version: Version) -> bool {
        let linked = self.actor.call(|reply| LlmBrokerMessage::Link {
            exchange_id,
            script_id,
            version,
            reply,
        });
        matches!(linked.await, Ok(true))
    }
}
