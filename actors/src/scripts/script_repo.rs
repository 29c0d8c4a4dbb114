//! `ScriptRepo`: the only writer of the git repository and the script metadata.
//!
//! Messages are handled one at a time, so saves, forks, bumps and publishing are
//! serialised. The git and SQLite work is blocking and runs on the blocking pool while
//! the actor awaits it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::domain::ordering::Ordering;
use crate::domain::team::DuplicateOf;
use crate::domain::version::Version;
use crate::error::{RepoError, Result};
use crate::handle::{ActorHandle, CallError};
use crate::scripts::script_store::{
    Committer, ForkOrderings, RepairReport, Saved, ScriptStore, StoreConfig,
};

/// The registered name of the actor of one server instance (several may share a
/// process, e.g. in tests; ractor's registry is process-wide).
pub(crate) fn name(instance: &str) -> String {
    format!("{instance}/script_repo")
}

pub(crate) struct ScriptRepo;

pub(crate) struct ScriptRepoState {
    store: Arc<Mutex<ScriptStore>>,
}

pub(crate) enum ScriptRepoMessage {
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
        ordering: Option<Ordering>,
        reply: RpcReplyPort<Result<i64>>,
    },
    ForkOrderings {
        id: i64,
        reply: RpcReplyPort<Result<ForkOrderings>>,
    },
    /// Sets of scripts on `prod` with the same executable code.
    AuditDuplicates {
        reply: RpcReplyPort<Result<Vec<Vec<DuplicateOf>>>>,
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
        seen: Option<Version>,
        /// The publisher's words, a paragraph of the commit message.
        note: Option<String>,
        reply: RpcReplyPort<Result<(Version, bool)>>,
    },
    SetOrdering {
        id: i64,
        ordering: Ordering,
        reply: RpcReplyPort<Result<()>>,
    },
    /// Archives (`true`) or restores a script; replies whether that changed anything.
    SetArchived {
        who: Committer,
        id: i64,
        archived: bool,
        reply: RpcReplyPort<Result<bool>>,
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
            tokio::task::spawn_blocking(move || {
                let (mut store, report) = ScriptStore::open(&cfg)?;
                // The duplicate rule on prod: say at start-up what breaks it already.
                match store.prod_duplicates() {
                    Ok(sets) => {
                        for set in &sets {
                            let names: Vec<String> = set.iter().map(|d| d.to_string()).collect();
                            tracing::warn!(scripts = ?names, "prod holds scripts with the same executable code; see GET /api/audit/duplicates");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the duplicate-code audit of prod failed"),
                }
                Ok::<_, RepoError>((store, report))
            })
            .await??;
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
            ScriptRepoMessage::Fork {
                who,
                id,
                ordering,
                reply,
            } => run(store, reply, move |s| s.fork(&who, id, ordering)).await,
            ScriptRepoMessage::ForkOrderings { id, reply } => {
                run(store, reply, move |s| s.fork_orderings(id)).await
            }
            ScriptRepoMessage::AuditDuplicates { reply } => {
                run(store, reply, |s| s.prod_duplicates()).await
            }
            ScriptRepoMessage::PutTestData {
                who,
                id,
                data,
                reply,
            } => run(store, reply, move |s| s.put_test_data(&who, id, &data)).await,
            ScriptRepoMessage::Publish {
                who,
                id,
                seen,
                note,
                reply,
            } => {
                run(store, reply, move |s| {
                    s.publish_with_note(&who, id, seen, note.as_deref())
                })
                .await
            }
            ScriptRepoMessage::SetOrdering {
                id,
                ordering,
                reply,
            } => run(store, reply, move |s| s.set_ordering(id, &ordering)).await,
            ScriptRepoMessage::SetArchived {
                who,
                id,
                archived,
                reply,
            } => run(store, reply, move |s| s.set_archived(&who, id, archived)).await,
            ScriptRepoMessage::Template { reply } => run(store, reply, |s| s.template()).await,
        }
    }
}

/// How callers reach the actor: typed methods with a timeout, looked up by name so a
/// restarted actor is found again.
#[derive(Clone)]
pub struct ScriptRepoHandle {
    actor: ActorHandle<ScriptRepoMessage>,
}

impl ScriptRepoHandle {
    pub fn new(instance: &str) -> ScriptRepoHandle {
        ScriptRepoHandle {
            actor: ActorHandle::new(name(instance), "script repository", Duration::from_secs(30)),
        }
    }

    pub async fn create(
        &self,
        who: Committer,
        content: Option<String>,
        filename: Option<String>,
        ordering: Option<Ordering>,
    ) -> Result<i64, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::Create {
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
        self.actor
            .try_call(|reply| ScriptRepoMessage::Save {
                who,
                id,
                content,
                base,
                reply,
            })
            .await
    }
    pub async fn bump_major(&self, who: Committer, id: i64) -> Result<Version, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::BumpMajor { who, id, reply })
            .await
    }
    pub async fn fork(
        &self,
        who: Committer,
        id: i64,
        ordering: Option<Ordering>,
    ) -> Result<i64, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::Fork {
                who,
                id,
                ordering,
                reply,
            })
            .await
    }
    pub async fn fork_orderings(&self, id: i64) -> Result<ForkOrderings, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::ForkOrderings { id, reply })
            .await
    }
    pub async fn audit_duplicates(&self) -> Result<Vec<Vec<DuplicateOf>>, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::AuditDuplicates { reply })
            .await
    }
    pub async fn put_test_data(
        &self,
        who: Committer,
        id: i64,
        data: Vec<u8>,
    ) -> Result<bool, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::PutTestData {
                who,
                id,
                data,
                reply,
            })
            .await
    }
    pub async fn publish(
        &self,
        who: Committer,
        id: i64,
        seen: Option<Version>,
        note: Option<String>,
    ) -> Result<(Version, bool), CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::Publish {
                who,
                id,
                seen,
                note,
                reply,
            })
            .await
    }
    pub async fn set_ordering(&self, id: i64, ordering: Ordering) -> Result<(), CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::SetOrdering {
                id,
                ordering,
                reply,
            })
            .await
    }
    pub async fn set_archived(
        &self,
        who: Committer,
        id: i64,
        archived: bool,
    ) -> Result<bool, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::SetArchived {
                who,
                id,
                archived,
                reply,
            })
            .await
    }
    pub async fn template(&self) -> Result<String, CallError> {
        self.actor
            .call(|reply| ScriptRepoMessage::Template { reply })
            .await
    }
}
