//! `ScriptRepo`: the only writer of the git repository and the script metadata.
//!
//! Messages are handled one at a time, so saves, forks, bumps and publishing are
//! serialised. The git and SQLite work is blocking and runs on the blocking pool while
//! the actor awaits it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::domain::ordering::Ordering;
use crate::domain::version::Version;
use crate::error::{RepoError, Result};
use crate::scripts::script_store::{Committer, RepairReport, Saved, ScriptStore, StoreConfig};

/// The registered name of the actor of one server instance (several may share a
/// process, e.g. in tests; ractor's registry is process-wide).
pub fn name(instance: &str) -> String {
    format!("{instance}/script_repo")
}

pub struct ScriptRepo;

pub struct ScriptRepoState {
    store: Arc<Mutex<ScriptStore>>,
}

pub enum ScriptRepoMessage {
    Create {
        who: Committer,
        content: Option<String>,
        filename: Option<String>,
        ordering: Option<Ordering>,
        reply: RpcReplyPort<Result<i64>>,
    },
    Save {
        who: Committer,
        id: i64,
        content: String,
        base: Version,
        reply: RpcReplyPort<Result<Saved>>,
    },
    BumpMajor {
        who: Committer,
        id: i64,
        reply: RpcReplyPort<Result<Version>>,
    },
    Fork {
        who: Committer,
        id: i64,
        reply: RpcReplyPort<Result<i64>>,
    },
    PutTestData {
        who: Committer,
        id: i64,
        data: Vec<u8>,
        reply: RpcReplyPort<Result<bool>>,
    },
    Publish {
        who: Committer,
        id: i64,
        reply: RpcReplyPort<Result<(Version, bool)>>,
    },
    SetOrdering {
        id: i64,
        ordering: Ordering,
        reply: RpcReplyPort<Result<()>>,
    },
    Template {
        reply: RpcReplyPort<String>,
    },
}

impl Actor for ScriptRepo {
    type Msg = ScriptRepoMessage;
    type State = ScriptRepoState;
    type Arguments = StoreConfig;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        cfg: StoreConfig,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (store, report): (ScriptStore, RepairReport) =
            tokio::task::spawn_blocking(move || ScriptStore::open(&cfg)).await??;
        if !report.recovered.is_empty() || !report.foreign.is_empty() {
            tracing::warn!(recovered = ?report.recovered, foreign = ?report.foreign, "script repository repaired at start-up");
        }
        Ok(ScriptRepoState {
            store: Arc::new(Mutex::new(store)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let store = state.store.clone();
        // Runs `f` on the store on the blocking pool and sends its answer.
        async fn run<T: Send + 'static>(
            store: Arc<Mutex<ScriptStore>>,
            reply: RpcReplyPort<T>,
            f: impl FnOnce(&mut ScriptStore) -> T + Send + 'static,
        ) -> Result<(), ActorProcessingErr> {
            let out = tokio::task::spawn_blocking(move || {
                let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut guard)
            })
            .await?;
            // The caller may have timed out and gone; that is not the actor's failure.
            let _ = reply.send(out);
            Ok(())
        }
        match msg {
            ScriptRepoMessage::Create {
                who,
                content,
                filename,
                ordering,
                reply,
            } => {
                run(store, reply, move |s| {
                    s.create(&who, content, filename, ordering)
                })
                .await
            }
            ScriptRepoMessage::Save {
                who,
                id,
                content,
                base,
                reply,
            } => run(store, reply, move |s| s.save(&who, id, &content, base)).await,
            ScriptRepoMessage::BumpMajor { who, id, reply } => {
                run(store, reply, move |s| s.bump_major(&who, id)).await
            }
            ScriptRepoMessage::Fork { who, id, reply } => {
                run(store, reply, move |s| s.fork(&who, id)).await
            }
            ScriptRepoMessage::PutTestData {
                who,
                id,
                data,
                reply,
            } => run(store, reply, move |s| s.put_test_data(&who, id, &data)).await,
            ScriptRepoMessage::Publish { who, id, reply } => {
                run(store, reply, move |s| s.publish(&who, id)).await
            }
            ScriptRepoMessage::SetOrdering {
                id,
                ordering,
                reply,
            } => run(store, reply, move |s| s.set_ordering(id, &ordering)).await,
            ScriptRepoMessage::Template { reply } => run(store, reply, |s| s.template()).await,
        }
    }
}

/// How callers reach the actor: typed methods with a timeout, looked up by name so a
/// restarted actor is found again.
#[derive(Clone)]
pub struct ScriptRepoHandle {
    name: String,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("the script repository is not running (it may be restarting); try again in a moment")]
    Unavailable,
    #[error("the script repository did not answer within {0:?}; try again")]
    Timeout(Duration),
}

impl ScriptRepoHandle {
    pub fn new(instance: &str) -> ScriptRepoHandle {
        ScriptRepoHandle {
            name: name(instance),
            timeout: Duration::from_secs(30),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> ScriptRepoMessage,
    ) -> Result<T, CallError> {
        let actor: ActorRef<ScriptRepoMessage> = ractor::registry::where_is(self.name.clone())
            .ok_or(CallError::Unavailable)?
            .into();
        match actor.call(build, Some(self.timeout)).await {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(CallResult::Timeout) => Err(CallError::Timeout(self.timeout)),
            Ok(CallResult::SenderError) | Err(_) => Err(CallError::Unavailable),
        }
    }

    async fn try_call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<T>>) -> ScriptRepoMessage,
    ) -> Result<T, CallError> {
        Ok(self.call(build).await??)
    }

    pub async fn create(
        &self,
        who: Committer,
        content: Option<String>,
        filename: Option<String>,
        ordering: Option<Ordering>,
    ) -> Result<i64, CallError> {
        self.try_call(|reply| ScriptRepoMessage::Create {
            who,
            content,
            filename,
            ordering,
            reply,
        })
        .await
    }
    pub async fn save(
        &self,
        who: Committer,
        id: i64,
        content: String,
        base: Version,
    ) -> Result<Saved, CallError> {
        self.try_call(|reply| ScriptRepoMessage::Save {
            who,
            id,
            content,
            base,
            reply,
        })
        .await
    }
    pub async fn bump_major(&self, who: Committer, id: i64) -> Result<Version, CallError> {
        self.try_call(|reply| ScriptRepoMessage::BumpMajor { who, id, reply })
            .await
    }
    pub async fn fork(&self, who: Committer, id: i64) -> Result<i64, CallError> {
        self.try_call(|reply| ScriptRepoMessage::Fork { who, id, reply })
            .await
    }
    pub async fn put_test_data(
        &self,
        who: Committer,
        id: i64,
        data: Vec<u8>,
    ) -> Result<bool, CallError> {
        self.try_call(|reply| ScriptRepoMessage::PutTestData {
            who,
            id,
            data,
            reply,
        })
        .await
    }
    pub async fn publish(&self, who: Committer, id: i64) -> Result<(Version, bool), CallError> {
        self.try_call(|reply| ScriptRepoMessage::Publish { who, id, reply })
            .await
    }
    pub async fn set_ordering(&self, id: i64, ordering: Ordering) -> Result<(), CallError> {
        self.try_call(|reply| ScriptRepoMessage::SetOrdering {
            id,
            ordering,
            reply,
        })
        .await
    }
    pub async fn template(&self) -> Result<String, CallError> {
        self.call(|reply| ScriptRepoMessage::Template { reply })
            .await
    }
}
