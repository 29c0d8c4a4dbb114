//! `GroupExecutor`: runs one ordering group of a pass — every script whose ordering
//! number shares the integer part — concurrently, bounded by the runner's workers, and
//! answers with each run's final status once all have ended.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_util::sync::CancellationToken;

use crate::domain::status::RunStatus;
use crate::runs::runner::{RunJob, Runner};

pub(crate) struct GroupExecutor;

pub(crate) enum GroupExecutorMessage {
    /// Runs the jobs concurrently; replies `(run id, final status)` for each.
    ExecuteGroup {
        jobs: Vec<(RunJob, CancellationToken)>,
        reply: RpcReplyPort<Vec<(i64, RunStatus)>>,
    },
}

impl Actor for GroupExecutor {
    type Msg = GroupExecutorMessage;
    type State = Arc<Runner>;
    type Arguments = Arc<Runner>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        runner: Arc<Runner>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(runner)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        runner: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GroupExecutorMessage::ExecuteGroup { jobs, reply } => {
                // Dependency environments first, so no script of the group waits on a
                // build while the others run (a failed build fails that run later).
                runner.prepare_envs(jobs.iter().map(|(j, _)| j)).await;
                let runs = jobs.into_iter().map(|(job, token)| {
                    let runner = runner.clone();
                    let id = job.run_id;
                    // Each run on its own task, so the group's scripts truly overlap.
                    (
                        id,
                        tokio::spawn(async move { runner.execute(job, token).await }),
                    )
                });
                let handles: Vec<_> = runs.collect();
                let mut results = Vec::with_capacity(handles.len());
                for (id, h) in handles {
                    results.push((id, h.await.unwrap_or(RunStatus::Error)));
                }
                let _ = reply.send(results);
            }
        }
        Ok(())
    }
}
