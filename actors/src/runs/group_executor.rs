//! `GroupExecutor`: runs one ordering group of a pass — every script whose ordering
//! number shares the integer part — concurrently, bounded by the runner's workers, and
//! answers with each run's final status once all have ended.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_util::sync::CancellationToken;

use crate::runs::runner::{RunJob, Runner};

pub struct GroupExecutor;

pub enum GroupExecutorMessage {
    /// Runs the jobs concurrently; replies `(run id, final status)` for each.
    ExecuteGroup {
        jobs: Vec<(RunJob, CancellationToken)>,
        reply: RpcReplyPort<Vec<(i64, &'static str)>>,
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
                let runs = jobs.into_iter().map(|(job, token)| {
                    let runner = runner.clone();
                    let id = job.run_id;
                    // Each run on its own task, so the group's scripts truly overlap.
                    tokio::spawn(async move { (id, runner.execute(job, token).await) })
                });
                let handles: Vec<_> = runs.collect();
                let mut results = Vec::with_capacity(handles.len());
                for h in handles {
                    results.push(h.await.unwrap_or((0, crate::domain::status::ERROR)));
                }
                let _ = reply.send(results);
            }
        }
        Ok(())
    }
}
