//! `RunScheduler`: the job queue. It accepts single runs and run-all passes, assigns
//! ids, records them, enforces the pass limit, cancels by id, and marks what was in
//! flight at a restart as `interrupted`.
//!
//! A single run is queued at once (202) and executes when a worker is free. A pass
//! takes the scripts published on `prod`, groups them by the integer part of their
//! ordering number, and hands the groups one after another to its `GroupExecutor`.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::domain::status::RunStatus;
use crate::error::{RepoError, Result};
use crate::handle::{ActorHandle, CallError};
use crate::runs::events::EventKind;
use crate::runs::jobs::{Job, Jobs};
use crate::runs::pass;
use crate::runs::request::{Mode, OnFailure, RunRequest, RunSchedulerArgs, choose, input_for};
use crate::runs::run_store::{self, NewRun};
use crate::runs::runner::RunJob;

pub(crate) fn name(instance: &str) -> String {
    format!("{instance}/run_scheduler")
}

pub(crate) struct RunScheduler;

pub(crate) struct RunSchedulerState {
    args: Arc<RunSchedulerArgs>,
    /// Runs and passes in flight.
    jobs: Jobs,
}

pub(crate) enum RunSchedulerMessage {
    StartRun {
        request: RunRequest,
        reply: RpcReplyPort<Result<i64>>,
    },
    CancelRun {
        id: i64,
        reply: RpcReplyPort<Result<bool>>,
    },
    StartPass {
        mode: Mode,
        on_failure: OnFailure,
        user: String,
        reply: RpcReplyPort<Result<i64>>,
    },
    CancelPass {
        id: i64,
        reply: RpcReplyPort<Result<bool>>,
    },
    PutProductionData {
        script_id: i64,
        data: Vec<u8>,
        user: String,
        reply: RpcReplyPort<Result<()>>,
    },
}

impl Actor for RunScheduler {
    type Msg = RunSchedulerMessage;
    type State = RunSchedulerState;
    type Arguments = Arc<RunSchedulerArgs>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (runs, passes) = args.runner.db(run_store::interrupt_unfinished).await?;
        if runs + passes > 0 {
            tracing::warn!(
                runs,
                passes,
                "marked runs and passes in flight at the last stop as interrupted"
            );
        }
        Ok(RunSchedulerState {
            args,
            jobs: Jobs::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RunSchedulerMessage::StartRun { request, reply } => {
                let _ = reply.send(start_run(state, request).await);
            }
            RunSchedulerMessage::CancelRun { id, reply } => {
                let exists = state
                    .args
                    .runner
                    .db(move |c| run_store::run(c, id).map(|r| r.is_some()));
                let answer = cancel_or_explain(&state.jobs, Job::Run(id), exists).await;
                let _ = reply.send(answer);
            }
            RunSchedulerMessage::StartPass {
                mode,
                on_failure,
                user,
                reply,
            } => {
                let _ = reply.send(
                    pass::start(
                        myself.get_cell(),
                        &state.args,
                        &state.jobs,
                        mode,
                        on_failure,
                        user,
                    )
                    .await,
                );
            }
            RunSchedulerMessage::CancelPass { id, reply } => {
                let exists = state
                    .args
                    .runner
                    .db(move |c| run_store::pass(c, id).map(|p| p.is_some()));
                let answer = cancel_or_explain(&state.jobs, Job::Pass(id), exists).await;
                let _ = reply.send(answer);
            }
            RunSchedulerMessage::PutProductionData {
                script_id,
                data,
                user,
                reply,
            } => {
                let _ = reply.send(
                    state
                        .args
                        .runner
                        .db(move |c| run_store::put_production_data(c, script_id, &data, &user))
                        .await,
                );
            }
        }
        Ok(())
    }
}

/// Cancels a live run or pass (`true`); otherwise says whether it exists at all: `false`
/// when it has ended already, `Missing` when there never was one.
async fn cancel_or_explain(
    jobs: &Jobs,
    job: Job,
    exists: impl Future<Output = Result<bool>>,
) -> Result<bool> {
    if jobs.cancel(job) {
        return Ok(true);
    }
    if exists.await? {
        return Ok(false);
    }
    Err(RepoError::Missing(match job {
        Job::Run(id) => format!("run {id} does not exist"),
        Job::Pass(id) => format!("pass {id} does not exist"),
    }))
}

async fn start_run(state: &mut RunSchedulerState, req: RunRequest) -> Result<i64> {
    let args = state.args.clone();
    let catalog = args.catalog.clone();
    let (script_id, version) = (req.script_id, req.version);
    let source =
        tokio::task::spawn_blocking(move || catalog.run_source(script_id, version)).await??;
    let (interpreter, backend) = choose(
        &args.registry,
        req.interpreter.as_deref(),
        &source.content,
        req.backend,
    )?;
    let input = input_for(&args, &source, req.mode).await?;
    let (ordering, user, mode) = (source.ordering.to_string(), req.user.clone(), req.mode);
    let (iid, iversion, bname, o) = (
        interpreter.id.clone(),
        interpreter.version.clone(),
        backend.as_str(),
        ordering.clone(),
    );
    let run_id = args
        .runner
        .db(move |c| {
            run_store::insert_run(
                c,
                &NewRun {
                    script_id,
                    version: source.version,
                    pass_id: None,
                    ordering: Some(&o),
                    mode: mode.as_str(),
                    requested_by: &user,
                    interpreter: &iid,
                    interpreter_version: &iversion,
                    backend: bname,
                },
            )
        })
        .await?;
    let log = args.runner.live.add_run(run_id);
    log.push(EventKind::Status, json!({ "status": RunStatus::Queued }));
    let token = CancellationToken::new();
    let tracked = state.jobs.track(Job::Run(run_id), token.clone());
    let job = RunJob {
        run_id,
        script_id,
        version: source.version,
        ordering,
        content: source.content,
        lock: source.lock,
        input,
        interpreter,
        backend,
        pass_log: None,
    };
    tokio::spawn(async move {
        args.runner.execute(job, token).await;
        drop(tracked);
    });
    tracing::info!(run_id, script_id, user = %req.user, "run queued");
    Ok(run_id)
}

/// How the HTTP side reaches the scheduler.
#[derive(Clone)]
pub struct RunSchedulerHandle {
    actor: ActorHandle<RunSchedulerMessage>,
}

impl RunSchedulerHandle {
    pub fn new(instance: &str) -> RunSchedulerHandle {
        RunSchedulerHandle {
            actor: ActorHandle::new(name(instance), "run scheduler", Duration::from_secs(30)),
        }
    }

    pub async fn start_run(&self, request: RunRequest) -> Result<i64, CallError> {
        self.actor
            .try_call(|reply| RunSchedulerMessage::StartRun { request, reply })
            .await
    }
    pub async fn cancel_run(&self, id: i64) -> Result<bool, CallError> {
        self.actor
            .try_call(|reply| RunSchedulerMessage::CancelRun { id, reply })
            .await
    }
    pub async fn start_pass(
        &self,
        mode: Mode,
        on_failure: OnFailure,
        user: String,
    ) -> Result<i64, CallError> {
        self.actor
            .try_call(|reply| RunSchedulerMessage::StartPass {
                mode,
                on_failure,
                user,
                reply,
            })
            .await
    }
    pub async fn cancel_pass(&self, id: i64) -> Result<bool, CallError> {
        self.actor
            .try_call(|reply| RunSchedulerMessage::CancelPass { id, reply })
            .await
    }
    pub async fn put_production_data(
        &self,
        script_id: i64,
        data: Vec<u8>,
        user: String,
    ) -> Result<(), CallError> {
        self.actor
            .try_call(|reply| RunSchedulerMessage::PutProductionData {
                script_id,
                data,
                user,
                reply,
            })
            .await
    }
}
