//! The root supervisor: starts the actors, restarts one that fails, and never lets a
//! failure take the server down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::llm::llm_broker::{self, LlmBroker, LlmBrokerArgs};
use crate::runs::run_scheduler::{self, RunScheduler, RunSchedulerArgs};
use crate::scripts::script_repo::{self, ScriptRepo};
use crate::scripts::script_store::StoreConfig;

pub struct Supervisor;

pub struct SupervisorArgs {
    /// Names this server's actors apart from others in the same process.
    pub instance: String,
    pub store: StoreConfig,
    pub runs: Arc<RunSchedulerArgs>,
    pub llm: LlmBrokerArgs,
}

pub struct SupervisorState {
    args: SupervisorArgs,
    /// Recent restarts, to stop restarting an actor that fails at once every time.
    restarts: Vec<Instant>,
}

/// At most this many restarts within [`RESTART_WINDOW`].
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

pub enum SupervisorMessage {}

/// The children, by what they are.
#[derive(Clone, Copy, Debug)]
enum Child {
    ScriptRepo,
    RunScheduler,
    LlmBroker,
}

impl Supervisor {
    async fn start(
        myself: &ActorRef<SupervisorMessage>,
        args: &SupervisorArgs,
        child: Child,
    ) -> Result<(), ActorProcessingErr> {
        match child {
            Child::ScriptRepo => {
                Actor::spawn_linked(
                    Some(script_repo::name(&args.instance)),
                    ScriptRepo,
                    args.store.clone(),
                    myself.get_cell(),
                )
                .await?;
            }
            Child::RunScheduler => {
                Actor::spawn_linked(
                    Some(run_scheduler::name(&args.instance)),
                    RunScheduler,
                    args.runs.clone(),
                    myself.get_cell(),
                )
                .await?;
            }
            Child::LlmBroker => {
                Actor::spawn_linked(
                    Some(llm_broker::name(&args.instance)),
                    LlmBroker,
                    args.llm.clone(),
                    myself.get_cell(),
                )
                .await?;
            }
        }
        Ok(())
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // The repository first: opening it applies the database migrations.
        Self::start(&myself, &args, Child::ScriptRepo).await?;
        Self::start(&myself, &args, Child::RunScheduler).await?;
        Self::start(&myself, &args, Child::LlmBroker).await?;
        Ok(SupervisorState {
            args,
            restarts: Vec::new(),
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason): (ActorCell, String) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, format!("stopped: {}", reason.unwrap_or_default()))
            }
            _ => return Ok(()),
        };
        let name = cell.get_name().unwrap_or_default();
        let child = if name == script_repo::name(&state.args.instance) {
            Child::ScriptRepo
        } else if name == run_scheduler::name(&state.args.instance) {
            Child::RunScheduler
        } else if name == llm_broker::name(&state.args.instance) {
            Child::LlmBroker
        } else {
            return Ok(());
        };
        tracing::error!(actor = %name, %reason, "supervised actor ended");
        let now = Instant::now();
        state
            .restarts
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if state.restarts.len() >= MAX_RESTARTS {
            tracing::error!(actor = %name, "restarted {MAX_RESTARTS} times within a minute; leaving it stopped");
            return Ok(());
        }
        state.restarts.push(now);
        match Self::start(&myself, &state.args, child).await {
            Ok(()) => tracing::warn!(actor = %name, ?child, "restarted"),
            Err(e) => tracing::error!(actor = %name, error = %e, "restart failed"),
        }
        Ok(())
    }
}

/// Starts the supervision tree and waits until the children are ready.
pub async fn start(
    args: SupervisorArgs,
) -> Result<(ActorRef<SupervisorMessage>, tokio::task::JoinHandle<()>), ActorProcessingErr> {
    let name = format!("{}/supervisor", args.instance);
    let (actor, handle) = Actor::spawn(Some(name), Supervisor, args).await?;
    Ok((actor, handle))
}
