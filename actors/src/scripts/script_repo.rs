//! `ScriptRepo`: the only writer of the git repository and the script metadata.
//!
//! Messages are handled one at a time, so saves, forks, bumps and publishing are
//! serialised. The git and SQLite work is blocking and runs on the blocking pool while
//! the actor awaits it. Resolving declared dependencies with uv (seconds) never runs
//! inside a message: a save that needs it is answered once a task off the actor has
//! resolved them and sent the save back (see `deps::resolutions`), so other saves go on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::deps::pep723::Metadata;
use crate::deps::resolutions::{Resolution, Resolutions};
use crate::domain::ordering::Ordering;
use crate::domain::team::DuplicateOf;
use crate::domain::version::Version;
use crate::error::{RepoError, Result};
use crate::handle::{ActorHandle, CallError};
use crate::scripts::script_store::{
    Committer, ForkOrderings, RepairReport, Saved, ScriptStore, StoreConfig, TestDataSaved,
};

/// The registered name of the actor of one server instance (several may share a
/// process, e.g. in tests; ractor's registry is process-wide).
pub(crate) fn name(instance: &str) -> String {
    format!("{instance}/script_repo")
}

pub(crate) struct ScriptRepo;

pub(crate) struct ScriptRepoState {
    store: Arc<Mutex<ScriptStore>>,
    deps: Arc<Resolutions>,
}

/// How many times one save or create may wait for a resolution (the block it needs
/// resolved can change under it only through a concurrent merge).
const MAX_RESOLUTIONS: u8 = 2;

pub(crate) enum ScriptRepoMessage {
    Create {
        who: Committer,
        content: Option<String>,
        filename: Option<String>,
        ordering: Option<Ordering>,
        reply: RpcReplyPort<Result<i64>>,
        /// Resolutions already made for it.
        resolved: u8,
    },
    Save {
        who: Committer,
        id: i64,
        content: String,
        base: Version,
        reply: RpcReplyPort<Result<Saved>>,
        resolved: u8,
    },
    /// Resolves the current version's block again into a new version.
    Relock {
        who: Committer,
        id: i64,
        reply: RpcReplyPort<Result<Saved>>,
        resolved: u8,
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
        base: Option<git2::Oid>,
        reply: RpcReplyPort<Result<TestDataSaved>>,
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
        let deps = cfg.deps.clone();
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
            deps,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
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
            let out = blocking(store, f).await?;
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
                resolved,
            } => {
                let (w, c, f, o) = (
                    who.clone(),
                    content.clone(),
                    filename.clone(),
                    ordering.clone(),
                );
                let out = blocking(store, move |s| s.create(&w, c, f, o)).await?;
                let retry = move |reply| ScriptRepoMessage::Create {
                    who,
                    content,
                    filename,
                    ordering,
                    reply,
                    resolved: resolved + 1,
                };
                answer_or_resolve(&myself, &state.deps, None, resolved, out, reply, retry);
                Ok(())
            }
            ScriptRepoMessage::Save {
                who,
                id,
                content,
                base,
                reply,
                resolved,
            } => {
                let (w, c) = (who.clone(), content.clone());
                let out = blocking(store, move |s| s.save(&w, id, &c, base)).await?;
                if out.is_ok() {
                    state.deps.set_state(id, None);
                }
                let retry = move |reply| ScriptRepoMessage::Save {
                    who,
                    id,
                    content,
                    base,
                    reply,
                    resolved: resolved + 1,
                };
                answer_or_resolve(&myself, &state.deps, Some(id), resolved, out, reply, retry);
                Ok(())
            }
            ScriptRepoMessage::Relock {
                who,
                id,
                reply,
                resolved,
            } => {
                let w = who.clone();
                // The first attempt always resolves afresh (a finished resolution of the
                // same block may be waiting from a save, but a re-lock asks for now).
                let out = if resolved == 0 {
                    blocking(store, move |s| s.unresolved_block(id)).await?
                } else {
                    blocking(store, move |s| s.relock(&w, id)).await?
                };
                if out.is_ok() {
                    state.deps.set_state(id, None);
                }
                let retry = move |reply| ScriptRepoMessage::Relock {
                    who,
                    id,
                    reply,
                    resolved: resolved + 1,
                };
                answer_or_resolve(&myself, &state.deps, Some(id), resolved, out, reply, retry);
                Ok(())
            }
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
                base,
                reply,
            } => {
                run(store, reply, move |s| {
                    s.put_test_data(&who, id, &data, base)
                })
                .await
            }
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

/// Runs `f` on the store on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: Arc<Mutex<ScriptStore>>,
    f: impl FnOnce(&mut ScriptStore) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
}

/// Sends `out` to `reply`, unless the store asked for a resolution first: then a task
/// on the blocking pool resolves (the actor goes on with other messages) and sends
/// `retry` back to the actor, or answers with uv's reason. Script `id`'s state is
/// `resolving` meanwhile and `failed` after a failure.
fn answer_or_resolve<T: Send + 'static>(
    myself: &ActorRef<ScriptRepoMessage>,
    deps: &Arc<Resolutions>,
    id: Option<i64>,
    resolved: u8,
    out: Result<T>,
    reply: RpcReplyPort<Result<T>>,
    retry: impl FnOnce(RpcReplyPort<Result<T>>) -> ScriptRepoMessage + Send + 'static,
) {
    let meta = match out {
        Err(RepoError::Unresolved {
            requires_python,
            dependencies,
        }) if resolved < MAX_RESOLUTIONS => Metadata {
            requires_python,
            dependencies,
        },
        other => {
            // The caller may have timed out and gone; that is not the actor's failure.
            let _ = reply.send(other);
            return;
        }
    };
    let (myself, deps) = (myself.clone(), deps.clone());
    if let Some(id) = id {
        deps.set_state(id, Some(Resolution::Resolving));
    }
    tokio::spawn(async move {
        let d = deps.clone();
        // Held until uv is done: at most a few resolutions run at once.
        let permit = deps.permits.clone().acquire_owned().await;
        let done = tokio::task::spawn_blocking(move || d.resolve(&meta))
            .await
            .unwrap_or_else(|e| Err(RepoError::Background(e)));
        drop(permit);
        match done {
            Ok(()) => {
                if let Err(e) = myself.send_message(retry(reply)) {
                    tracing::warn!(error = %e, "the script repository stopped before a resolved save");
                }
            }
            Err(e) => {
                if let Some(id) = id {
                    deps.set_state(
                        id,
                        Some(Resolution::Failed {
                            error: e.to_string(),
                        }),
                    );
                }
                let _ = reply.send(Err(e));
            }
        }
    });
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
                resolved: 0,
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
                resolved: 0,
            })
            .await
    }
    /// Resolves script `id`'s declared dependencies again: a new version with the new
    /// lock (`changed` false when the lock came out the same).
    pub async fn relock(&self, who: Committer, id: i64) -> Result<Saved, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::Relock {
                who,
                id,
                reply,
                resolved: 0,
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
    /// Replaces the test data; `base`: the ETag the edit started from (see
    /// `ScriptStore::put_test_data`).
    pub async fn put_test_data(
        &self,
        who: Committer,
        id: i64,
        data: Vec<u8>,
        base: Option<git2::Oid>,
    ) -> Result<TestDataSaved, CallError> {
        self.actor
            .try_call(|reply| ScriptRepoMessage::PutTestData {
                who,
                id,
                data,
                base,
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
