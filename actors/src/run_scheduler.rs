//! `RunScheduler`: the job queue. It accepts single runs and run-all passes, assigns
//! ids, records them, enforces the pass limit, cancels by id, and marks what was in
//! flight at a restart as `interrupted`.
//!
//! A single run is queued at once (202) and executes when a worker is free. A pass
//! takes the scripts published on `prod`, groups them by the integer part of their
//! ordering number, and hands the groups one after another to its `GroupExecutor`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use scriptorium_sandbox::{BackendKind, Interpreter, Registry};

use crate::catalog::{Catalog, RunSource};
use crate::events::EventLog;
use crate::group_executor::{GroupExecutor, GroupExecutorMessage};
use crate::runner::{Ending, RunJob, Runner, interpreter_directive};
use crate::runstore::{self, Log, NewRun, status};
use crate::store::{RepoError, Result};
use crate::version::Version;

pub fn name(instance: &str) -> String {
    format!("{instance}/run_scheduler")
}

/// Which data a run gets as its input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Production,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Production => "production",
        }
    }
}

/// What happens after a script of a pass fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The failing group finishes; later groups are skipped. The default.
    #[default]
    Stop,
    /// Every group runs regardless.
    Continue,
}

impl OnFailure {
    fn as_str(self) -> &'static str {
        match self {
            OnFailure::Stop => "stop",
            OnFailure::Continue => "continue",
        }
    }
}

pub struct RunRequest {
    pub script_id: i64,
    pub version: Option<Version>,
    pub interpreter: Option<String>,
    pub backend: Option<BackendKind>,
    pub mode: Mode,
    pub user: String,
}

pub struct RunSchedulerArgs {
    pub runner: Arc<Runner>,
    pub registry: Arc<Registry>,
    pub catalog: Arc<Catalog>,
    /// Passes allowed at once.
    pub max_passes: usize,
}

pub struct RunScheduler;

pub struct RunSchedulerState {
    args: Arc<RunSchedulerArgs>,
    runs: Arc<Mutex<HashMap<i64, CancellationToken>>>,
    passes: HashMap<i64, CancellationToken>,
}

pub enum RunSchedulerMessage {
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
    /// A pass's driver finished.
    PassEnded(i64),
}

/// The interpreter for a run: asked for, else named in the script, else the default.
fn choose(
    registry: &Registry,
    asked: Option<&str>,
    content: &str,
    backend: Option<BackendKind>,
) -> Result<(Interpreter, BackendKind)> {
    let id = asked.or_else(|| interpreter_directive(content));
    let interp = registry
        .get(id)
        .map_err(|e| RepoError::BadInput(e.to_string()))?;
    let backend = interp
        .backend(backend)
        .map_err(|e| RepoError::BadInput(e.to_string()))?;
    Ok((interp.clone(), backend))
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
        let (runs, passes) = args.runner.db(runstore::interrupt_unfinished).await?;
        if runs + passes > 0 {
            tracing::warn!(
                runs,
                passes,
                "marked runs and passes in flight at the last stop as interrupted"
            );
        }
        Ok(RunSchedulerState {
            args,
            runs: Arc::default(),
            passes: HashMap::new(),
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
                let token = state.runs.lock().expect("runs lock").get(&id).cloned();
                let exists = state
                    .args
                    .runner
                    .db(move |c| runstore::run(c, id).map(|r| r.is_some()));
                let _ = reply.send(
                    cancel_or_explain(token.as_ref(), exists, || {
                        format!("run {id} does not exist")
                    })
                    .await,
                );
            }
            RunSchedulerMessage::StartPass {
                mode,
                on_failure,
                user,
                reply,
            } => {
                let _ = reply.send(start_pass(&myself, state, mode, on_failure, user).await);
            }
            RunSchedulerMessage::CancelPass { id, reply } => {
                let exists = state
                    .args
                    .runner
                    .db(move |c| runstore::pass(c, id).map(|p| p.is_some()));
                let answer = cancel_or_explain(state.passes.get(&id), exists, || {
                    format!("pass {id} does not exist")
                })
                .await;
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
                        .db(move |c| runstore::put_production_data(c, script_id, &data, &user))
                        .await,
                );
            }
            RunSchedulerMessage::PassEnded(id) => {
                state.passes.remove(&id);
            }
        }
        Ok(())
    }
}

/// Cancels a live run or pass (`true`); otherwise says whether it exists at all: `false`
/// when it has ended already, `Missing` when there never was one.
async fn cancel_or_explain(
    live: Option<&CancellationToken>,
    exists: impl Future<Output = Result<bool>>,
    missing: impl FnOnce() -> String,
) -> Result<bool> {
    match live {
        Some(t) => {
            t.cancel();
            Ok(true)
        }
        None if exists.await? => Ok(false),
        None => Err(RepoError::Missing(missing())),
    }
}

async fn input_for(args: &RunSchedulerArgs, source: &RunSource, mode: Mode) -> Result<Vec<u8>> {
    match mode {
        Mode::Test => Ok(source.test_data.clone()),
        Mode::Production => {
            let id = source.id;
            Ok(args
                .runner
                .db(move |c| runstore::production_data(c, id))
                .await?
                .unwrap_or_default())
        }
    }
}

async fn start_run(state: &mut RunSchedulerState, req: RunRequest) -> Result<i64> {
    let args = state.args.clone();
    let catalog = args.catalog.clone();
    let (script_id, version) = (req.script_id, req.version);
    let source = tokio::task::spawn_blocking(move || catalog.run_source(script_id, version))
        .await
        .map_err(|e| RepoError::BadInput(e.to_string()))??;
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
            runstore::insert_run(
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
    log.push("status", json!({ "status": status::QUEUED }));
    let token = CancellationToken::new();
    state
        .runs
        .lock()
        .expect("runs lock")
        .insert(run_id, token.clone());
    let job = RunJob {
        run_id,
        script_id,
        version: source.version,
        ordering,
        content: source.content,
        input,
        interpreter,
        backend,
        pass_log: None,
    };
    let runs = state.runs.clone();
    tokio::spawn(async move {
        args.runner.execute(job, token).await;
        runs.lock().expect("runs lock").remove(&run_id);
    });
    tracing::info!(run_id, script_id, user = %req.user, "run queued");
    Ok(run_id)
}

async fn start_pass(
    myself: &ActorRef<RunSchedulerMessage>,
    state: &mut RunSchedulerState,
    mode: Mode,
    on_failure: OnFailure,
    user: String,
) -> Result<i64> {
    if state.passes.len() >= state.args.max_passes {
        let running: Vec<String> = state.passes.keys().map(|k| k.to_string()).collect();
        return Err(RepoError::Conflict(format!(
            "pass {} is still running; wait for it or cancel it (only {} pass at a time)",
            running.join(", "),
            state.args.max_passes
        )));
    }
    let args = state.args.clone();
    let catalog = args.catalog.clone();
    let scripts = tokio::task::spawn_blocking(move || catalog.published())
        .await
        .map_err(|e| RepoError::BadInput(e.to_string()))??;
    if scripts.is_empty() {
        return Err(RepoError::BadInput(
            "nothing is published on prod; publish a script first".into(),
        ));
    }
    let u = user.clone();
    let pass_id = args
        .runner
        .db(move |c| runstore::insert_pass(c, mode.as_str(), on_failure.as_str(), &u))
        .await?;
    let pass_log = args.runner.live.add_pass(pass_id);

    // Every script gets its run row now, so the pass shows its whole shape at once.
    let mut groups: BTreeMap<u64, Vec<(RunJob, CancellationToken)>> = BTreeMap::new();
    let pass_token = CancellationToken::new();
    let mut shape = Vec::new();
    for source in scripts {
        let chosen = choose(&args.registry, None, &source.content, None);
        let (iid, iversion, bname) = match &chosen {
            Ok((i, b)) => (i.id.clone(), i.version.clone(), b.as_str()),
            Err(_) => (
                interpreter_directive(&source.content)
                    .unwrap_or("?")
                    .to_string(),
                String::new(),
                "?",
            ),
        };
        let input = input_for(&args, &source, mode).await?;
        let (ordering, u, v, sid) = (
            source.ordering.to_string(),
            user.clone(),
            source.version,
            source.id,
        );
        let o = ordering.clone();
        let run_id = args
            .runner
            .db(move |c| {
                runstore::insert_run(
                    c,
                    &NewRun {
                        script_id: sid,
                        version: v,
                        pass_id: Some(pass_id),
                        ordering: Some(&o),
                        mode: mode.as_str(),
                        requested_by: &u,
                        interpreter: &iid,
                        interpreter_version: &iversion,
                        backend: bname,
                    },
                )
            })
            .await?;
        shape.push(json!({ "run_id": run_id, "script_id": sid, "ordering": ordering, "group": source.ordering.group() }));
        let log = args.runner.live.add_run(run_id);
        log.push("status", json!({ "status": status::QUEUED }));
        let (interpreter, backend) = match chosen {
            Ok(c) => c,
            Err(e) => {
                // Recorded as an error at once; the rest of the pass goes on as configured.
                let job = RunJob {
                    run_id,
                    script_id: sid,
                    version: v,
                    ordering,
                    content: String::new(),
                    input: Vec::new(),
                    // Only names the run's record; a machine without a native Python
                    // (Windows with only the WASI component) has another.
                    interpreter: args
                        .registry
                        .native_default()
                        .or_else(|| args.registry.all().first())
                        .cloned()
                        .expect("an interpreter (the server does not start without one)"),
                    backend: BackendKind::Linux,
                    pass_log: Some(pass_log.clone()),
                };
                args.runner
                    .end(
                        &job,
                        &log,
                        Ending::without_run(status::ERROR, &e.to_string()),
                    )
                    .await;
                continue;
            }
        };
        let token = pass_token.child_token();
        state
            .runs
            .lock()
            .expect("runs lock")
            .insert(run_id, token.clone());
        let job = RunJob {
            run_id,
            script_id: sid,
            version: v,
            ordering,
            content: source.content,
            input,
            interpreter,
            backend,
            pass_log: Some(pass_log.clone()),
        };
        groups
            .entry(source.ordering.group())
            .or_default()
            .push((job, token));
    }
    pass_log.push(
        "status",
        json!({ "status": status::RUNNING, "mode": mode, "on_failure": on_failure, "runs": shape }),
    );
    state.passes.insert(pass_id, pass_token.clone());

    let (executor, _) =
        Actor::spawn_linked(None, GroupExecutor, args.runner.clone(), myself.get_cell())
            .await
            .map_err(|e| RepoError::BadInput(format!("cannot start the group executor: {e}")))?;
    let myself = myself.clone();
    let runs = state.runs.clone();
    tokio::spawn(async move {
        let outcome = drive(
            &args,
            groups,
            on_failure,
            &pass_token,
            &executor,
            &pass_log,
            &runs,
        )
        .await;
        executor.stop(None);
        let (st, message) = outcome;
        let m = message.clone();
        if let Err(e) = args
            .runner
            .db(move |c| runstore::finish_pass(c, pass_id, st, &m))
            .await
        {
            tracing::error!(error = %e, pass_id, "cannot record the end of the pass");
        }
        pass_log.push("complete", json!({ "status": st, "message": message }));
        pass_log.finish();
        args.runner.flush(&pass_log, Log::Pass(pass_id)).await;
        args.runner.live.remove_pass(pass_id);
        let _ = myself.cast(RunSchedulerMessage::PassEnded(pass_id));
        tracing::info!(pass_id, status = st, "pass ended");
    });
    tracing::info!(
        pass_id,
        mode = mode.as_str(),
        on_failure = on_failure.as_str(),
        "pass started"
    );
    Ok(pass_id)
}

/// Runs the groups in order; returns the pass's final status and a message.
#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &RunSchedulerArgs,
    groups: BTreeMap<u64, Vec<(RunJob, CancellationToken)>>,
    on_failure: OnFailure,
    token: &CancellationToken,
    executor: &ActorRef<GroupExecutorMessage>,
    pass_log: &Arc<EventLog>,
    runs: &Arc<Mutex<HashMap<i64, CancellationToken>>>,
) -> (&'static str, String) {
    let mut failed: Vec<String> = Vec::new();
    let mut stopped_after: Option<u64> = None;
    for (group, jobs) in groups {
        let ids: Vec<i64> = jobs.iter().map(|(j, _)| j.run_id).collect();
        if token.is_cancelled() || stopped_after.is_some() {
            let (st, why) = if token.is_cancelled() {
                (
                    status::CANCELLED,
                    "the pass was cancelled before this group".to_string(),
                )
            } else {
                (
                    status::SKIPPED,
                    format!(
                        "skipped: group {} failed and the pass stops on failure",
                        stopped_after.unwrap_or(0)
                    ),
                )
            };
            for (job, _) in jobs {
                let log = args.runner.live.add_run(job.run_id);
                args.runner
                    .end(&job, &log, Ending::without_run(st, &why))
                    .await;
            }
        } else {
            pass_log.push(
                "group",
                json!({ "group": group, "status": status::RUNNING, "runs": ids }),
            );
            let answer = executor
                .call(
                    |reply| GroupExecutorMessage::ExecuteGroup { jobs, reply },
                    None,
                )
                .await;
            let results = match answer {
                Ok(CallResult::Success(r)) => r,
                _ => ids.iter().map(|id| (*id, status::ERROR)).collect(),
            };
            for (run_id, st) in &results {
                if *st != status::SUCCEEDED && *st != status::CANCELLED {
                    failed.push(run_id.to_string());
                }
            }
            pass_log.push("group", json!({ "group": group, "status": "done", "results": results.iter().map(|(id, st)| json!({"run_id": id, "status": st})).collect::<Vec<_>>() }));
            if !failed.is_empty() && on_failure == OnFailure::Stop && stopped_after.is_none() {
                stopped_after = Some(group);
            }
        }
        let mut r = runs.lock().expect("runs lock");
        for id in ids {
            r.remove(&id);
        }
    }
    if token.is_cancelled() {
        (status::CANCELLED, "the pass was cancelled".into())
    } else if failed.is_empty() {
        (status::SUCCEEDED, "every script succeeded".into())
    } else {
        (status::FAILED, format!("runs {} failed", failed.join(", ")))
    }
}

/// How the HTTP side reaches the scheduler.
#[derive(Clone)]
pub struct RunSchedulerHandle {
    name: String,
    timeout: Duration,
}

impl RunSchedulerHandle {
    pub fn new(instance: &str) -> RunSchedulerHandle {
        RunSchedulerHandle {
            name: name(instance),
            timeout: Duration::from_secs(30),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<Result<T>>) -> RunSchedulerMessage,
    ) -> Result<T, crate::CallError> {
        let actor: ActorRef<RunSchedulerMessage> = ractor::registry::where_is(self.name.clone())
            .ok_or(crate::CallError::Unavailable)?
            .into();
        match actor.call(build, Some(self.timeout)).await {
            Ok(CallResult::Success(v)) => Ok(v?),
            Ok(CallResult::Timeout) => Err(crate::CallError::Timeout(self.timeout)),
            _ => Err(crate::CallError::Unavailable),
        }
    }

    pub async fn start_run(&self, request: RunRequest) -> Result<i64, crate::CallError> {
        self.call(|reply| RunSchedulerMessage::StartRun { request, reply })
            .await
    }
    pub async fn cancel_run(&self, id: i64) -> Result<bool, crate::CallError> {
        self.call(|reply| RunSchedulerMessage::CancelRun { id, reply })
            .await
    }
    pub async fn start_pass(
        &self,
        mode: Mode,
        on_failure: OnFailure,
        user: String,
    ) -> Result<i64, crate::CallError> {
        self.call(|reply| RunSchedulerMessage::StartPass {
            mode,
            on_failure,
            user,
            reply,
        })
        .await
    }
    pub async fn cancel_pass(&self, id: i64) -> Result<bool, crate::CallError> {
        self.call(|reply| RunSchedulerMessage::CancelPass { id, reply })
            .await
    }
    pub async fn put_production_data(
        &self,
        script_id: i64,
        data: Vec<u8>,
        user: String,
    ) -> Result<(), crate::CallError> {
        self.call(|reply| RunSchedulerMessage::PutProductionData {
            script_id,
            data,
            user,
            reply,
        })
        .await
    }
}
