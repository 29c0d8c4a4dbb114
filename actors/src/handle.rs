//! One way to reach an actor from outside it: look it up by its registered name (so a
//! restarted actor is found again), send a message carrying a reply port, and wait at
//! most a timeout. Each actor's typed handle (`ScriptRepoHandle`, `RunSchedulerHandle`,
//! `LlmBrokerHandle`) is a thin wrapper around an [`ActorHandle`].

use std::marker::PhantomData;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::error::RepoError;

/// Why a call to an actor did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The actor answered with an error.
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("the {0} is not running (it may be restarting); try again in a moment")]
    Unavailable(&'static str),
    #[error("the {0} did not answer within {1:?}; try again")]
    Timeout(&'static str, Duration),
}

/// The way to call one registered actor, by name, with a timeout.
pub(crate) struct ActorHandle<M> {
    name: String,
    /// What the actor is, for messages ("script repository").
    what: &'static str,
    timeout: Duration,
    _message: PhantomData<fn() -> M>,
}

impl<M> Clone for ActorHandle<M> {
    fn clone(&self) -> Self {
        ActorHandle {
            name: self.name.clone(),
            what: self.what,
            timeout: self.timeout,
            _message: PhantomData,
        }
    }
}

impl<M: Message> ActorHandle<M> {
    pub(crate) fn new(name: String, what: &'static str, timeout: Duration) -> ActorHandle<M> {
        ActorHandle {
            name,
            what,
            timeout,
            _message: PhantomData,
        }
    }

    /// Sends the message `build` makes around a reply port; waits for the answer at
    /// most the handle's timeout.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> M,
    ) -> Result<T, CallError> {
        self.call_within(self.timeout, build).await
    }

    /// [`call`](Self::call) with a timeout of the caller's.
    pub(crate) async fn call_within<T: Send + 'static>(
        &self,
        timeout: Duration,
        build: impl FnOnce(RpcReplyPort<T>) -> M,
    ) -> Result<T, CallError> {
        let actor: ActorRef<M> = ractor::registry::where_is(self.name.clone())
            .ok_or(CallError::Unavailable(self.what))?
            .into();
        match actor.call(build, Some(timeout)).await {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(CallResult::Timeout) => Err(CallError::Timeout(self.what, timeout)),
            Ok(CallResult::SenderError) | Err(_) => Err(CallError::Unavailable(self.what)),
        }
    }

    /// [`call`](Self::call) for messages whose answer is itself a result.
    pub(crate) async fn try_call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<T, RepoError>>) -> M,
    ) -> Result<T, CallError> {
        Ok(self.call(build).await??)
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr};

    use super::*;

    struct Slow;

    impl Actor for Slow {
        type Msg = RpcReplyPort<u32>;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<Self::Msg>,
            reply: Self::Msg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = reply.send(7);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_call_answers_times_out_or_says_the_actor_is_not_there() {
        let handle: ActorHandle<RpcReplyPort<u32>> = ActorHandle::new(
            "handle-test/slow".into(),
            "slow actor",
            Duration::from_secs(5),
        );
        let missing = handle.call(|reply| reply).await.unwrap_err();
        assert!(
            matches!(missing, CallError::Unavailable("slow actor")),
            "{missing:?}"
        );
        let (actor, done) = Actor::spawn(Some("handle-test/slow".into()), Slow, ())
            .await
            .unwrap();
        assert_eq!(handle.call(|reply| reply).await.unwrap(), 7);
        let late = handle
            .call_within(Duration::from_millis(20), |reply| reply)
            .await
            .unwrap_err();
        assert!(
            matches!(late, CallError::Timeout("slow actor", _)),
            "{late:?}"
        );
        assert_eq!(
            late.to_string(),
            "the slow actor did not answer within 20ms; try again"
        );
        actor.stop(None);
        done.await.unwrap();
    }
}
