//! The pass driver: a run-all pass takes the scripts published on `prod`, records a run
//! for each at once (so the pass shows its whole shape), groups them by the integer part
//! of their ordering number, and hands the groups one after another to its
//! `GroupExecutor`; a failure stops the later groups unless the pass goes on.

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorRef};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use scriptorium_sandbox::BackendKind;

use crate::domain::status::RunStatus;
use crate::error::{RepoError, Result};
use crate::runs::events::EventKind;
use crate::runs::events::EventLog;
use crate::runs::group_executor::{GroupExecutor, GroupExecutorMessage};
use crate::runs::jobs::{Job, Jobs, Tracked};
use crate::runs::request::{Mode, OnFailure, RunSchedulerArgs, choose, input_for};
use crate::runs::run_store::{self, Log, NewRun};
use crate::runs::runner::{Ending, RunJob};
use crate::scripts::catalog::RunSource;
use crate::scripts::python::interpreter_directive;

/// One run of a pass, ready for its group.
struct PassRun {
    job: RunJob,
    token: CancellationToken,
    /// In the job table until its group has ended.
    tracked: Tracked,
}

/// The groups of a pass by their integer part, in order.
type Groups = BTreeMap<u64, Vec<PassRun>>;

/// What every run of one pass shares.
struct PassPlan<'a> {
    args: &'a RunSchedulerArgs,
    pass_id: i64,
    mode: Mode,
    user: &'a str,
    log: &'a Arc<EventLog>,
}

/// Starts a pass over every published script; returns its id at once.
pub(super) async fn start(
    scheduler: ActorCell,
    args: &Arc<RunSchedulerArgs>,
    jobs: &Jobs,
    mode: Mode,
    on_failure: OnFailure,
    user: String,
) -> Result<i64> {
    let running = jobs.passes();
    if running.len() >= args.max_passes {
        let running: Vec<String> = running.iter().map(i64::to_string).collect();
        return Err(RepoError::Conflict(format!(
            "pass {} is still running; wait for it or cancel it (only {} pass at a time)",
            running.join(", "),
            args.max_passes
        )));
    }
    let args = args.clone();
    let catalog = args.catalog.clone();
    let scripts = tokio::task::spawn_blocking(move || catalog.published()).await??;
    if scripts.is_empty() {
        return Err(RepoError::BadInput(
            "nothing is published on prod; publish a script first".into(),
        ));
    }
    let u = user.clone();
    let pass_id = args
        .runner
        .db(move |c| run_store::insert_pass(c, mode.as_str(), on_failure.as_str(), &u))
        .await?;
    let pass_log = args.runner.live.add_pass(pass_id);
    let pass_token = CancellationToken::new();
    let plan = PassPlan {
        args: &args,
        pass_id,
        mode,
        user: &user,
        log: &pass_log,
    };
    let mut groups = Groups::new();
    let mut shape = Vec::new();
    for source in scripts {
        let group = source.ordering.group();
        let (entry, run) = plan_run(&plan, jobs, &pass_token, source).await?;
        shape.push(entry);
        if let Some(run) = run {
            groups.entry(group).or_default().push(run);
        }
    }
    pass_log.push(
        EventKind::Status,
        json!({ "status": RunStatus::Running, "mode": mode, "on_failure": on_failure, "runs": shape }),
    );
    let tracked = jobs.track(Job::Pass(pass_id), pass_token.clone());
    let (executor, _) = Actor::spawn_linked(None, GroupExecutor, args.runner.clone(), scheduler)
        .await
        .map_err(|e| RepoError::Internal(format!("cannot start the group executor: {e}")))?;
    tokio::spawn(async move {
        let outcome = drive(&args, groups, on_failure, &pass_token, &executor, &pass_log).await;
        executor.stop(None);
        finish(&args, pass_id, &pass_log, outcome).await;
        drop(tracked);
    });
    tracing::info!(
        pass_id,
        mode = mode.as_str(),
        on_failure = on_failure.as_str(),
        "pass started"
    );
    Ok(pass_id)
}

/// Records the run of one script of the pass. Returns its entry in the pass's shape,
/// and the run to execute — none when its interpreter cannot be chosen (the run is then
/// recorded as an error at once; the rest of the pass goes on as configured).
async fn plan_run(
    plan: &PassPlan<'_>,
    jobs: &Jobs,
    pass_token: &CancellationToken,
    source: RunSource,
) -> Result<(Value, Option<PassRun>)> {
    let args = plan.args;
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
    let input = input_for(args, &source, plan.mode).await?;
    let (ordering, user, version, script_id) = (
        source.ordering.to_string(),
        plan.user.to_string(),
        source.version,
        source.id,
    );
    let (o, pass_id, mode) = (ordering.clone(), plan.pass_id, plan.mode);
    let run_id = args
        .runner
        .db(move |c| {
            run_store::insert_run(
                c,
                &NewRun {
                    script_id,
                    version,
                    pass_id: Some(pass_id),
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
    let entry = json!({ "run_id": run_id, "script_id": script_id, "ordering": ordering, "group": source.ordering.group() });
    let log = args.runner.live.add_run(run_id);
    log.push(EventKind::Status, json!({ "status": RunStatus::Queued }));
    let mut job = RunJob {
        run_id,
        script_id,
        version,
        ordering,
        content: String::new(),
        lock: None,
        input: Vec::new(),
        interpreter: match &chosen {
            Ok((i, _)) => i.clone(),
            Err(_) => args
                .registry
                .native_default()
                .or_else(|| args.registry.all().first())
                .cloned()
                .expect("an interpreter (the server does not start without one)"),
        },
        backend: BackendKind::Linux,
        pass_log: Some(plan.log.clone()),
    };
    let backend = match chosen {
        Ok((_, backend)) => backend,
        Err(e) => {
            let ending = Ending::without_run(RunStatus::Error, &e.to_string());
            args.runner.end(&job, &log, ending).await;
            return Ok((entry, None));
        }
    };
    job.content = source.content;
    job.lock = source.lock;
    job.input = input;
    job.backend = backend;
    let token = pass_token.child_token();
    let tracked = jobs.track(Job::Run(run_id), token.clone());
    Ok((
        entry,
        Some(PassRun {
            job,
            token,
            tracked,
        }),
    ))
}

/// Records the end of a pass and retires its live log.
async fn finish(
    args: &RunSchedulerArgs,
    pass_id: i64,
    pass_log: &Arc<EventLog>,
    (st, message): (RunStatus, String),
) {
    let m = message.clone();
    if let Err(e) = args
        .runner
        .db(move |c| run_store::finish_pass(c, pass_id, st, &m))
        .await
    {
        tracing::error!(error = %e, pass_id, "cannot record the end of the pass");
    }
    pass_log.push(
        EventKind::Complete,
        json!({ "status": st, "message": message }),
    );
    pass_log.finish();
    args.runner.flush(pass_log, Log::Pass(pass_id)).await;
    args.runner.live.remove_pass(pass_id);
    tracing::info!(pass_id, status = %st, "pass ended");
}

/// Runs the groups in order; returns the pass's final status and a message.
async fn drive(
    args: &RunSchedulerArgs,
    groups: Groups,
    on_failure: OnFailure,
    token: &CancellationToken,
    executor: &ActorRef<GroupExecutorMessage>,
    pass_log: &Arc<EventLog>,
) -> (RunStatus, String) {
    let mut failed: Vec<String> = Vec::new();
    let mut stopped_after: Option<u64> = None;
    for (group, runs) in groups {
        if token.is_cancelled() || stopped_after.is_some() {
            let (st, why) = if token.is_cancelled() {
                (
                    RunStatus::Cancelled,
                    "the pass was cancelled before this group".to_string(),
                )
            } else {
                (
                    RunStatus::Skipped,
                    format!(
                        "skipped: group {} failed and the pass stops on failure",
                        stopped_after.unwrap_or(0)
                    ),
                )
            };
            for run in runs {
                let log = args.runner.live.add_run(run.job.run_id);
                args.runner
                    .end(&run.job, &log, Ending::without_run(st, &why))
                    .await;
            }
            continue;
        }
        let results = run_group(group, runs, executor, pass_log).await;
        for (run_id, st) in &results {
            if st.is_failure() {
                failed.push(run_id.to_string());
            }
        }
        if !failed.is_empty() && on_failure == OnFailure::Stop && stopped_after.is_none() {
            stopped_after = Some(group);
        }
    }
    if token.is_cancelled() {
        (RunStatus::Cancelled, "the pass was cancelled".into())
    } else if failed.is_empty() {
        (RunStatus::Succeeded, "every script succeeded".into())
    } else {
        (
            RunStatus::Failed,
            format!("runs {} failed", failed.join(", ")),
        )
    }
}

/// Runs one group on the executor; returns each run's final status. The runs stay in
/// the job table (cancellable) until the group has ended.
async fn run_group(
    group: u64,
    runs: Vec<PassRun>,
    executor: &ActorRef<GroupExecutorMessage>,
    pass_log: &Arc<EventLog>,
) -> Vec<(i64, RunStatus)> {
    let ids: Vec<i64> = runs.iter().map(|r| r.job.run_id).collect();
    pass_log.push(
        EventKind::Group,
        json!({ "group": group, "status": RunStatus::Running, "runs": ids }),
    );
    let mut tracked = Vec::with_capacity(runs.len());
    let mut jobs = Vec::with_capacity(runs.len());
    for run in runs {
        jobs.push((run.job, run.token));
        tracked.push(run.tracked);
    }
    let answer = executor
        .call(
            |reply| GroupExecutorMessage::ExecuteGroup { jobs, reply },
            None,
        )
        .await;
    drop(tracked);
    let results = match answer {
        Ok(CallResult::Success(r)) => r,
        _ => ids.iter().map(|id| (*id, RunStatus::Error)).collect(),
    };
    pass_log.push(EventKind::Group, json!({ "group": group, "status": "done", "results": results.iter().map(|(id, st)| json!({"run_id": id, "status": st})).collect::<Vec<_>>() }));
    results
}
