//! The root supervisor: starts the actors, restarts one that fails, and never lets a
//! failure take the server down.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::script_repo::{self, ScriptRepo};
use crate::store::StoreConfig;

pub struct Supervisor;

pub struct SupervisorArgs {
    /// Names this server's actors apart from others in the same process.
    pub instance: String,
    pub store: StoreConfig,
}

pub struct SupervisorState {
    instance: String,
    store: StoreConfig,
    /// Recent restarts, to stop restarting an actor that fails at once every time.
    restarts: Vec<Instant>,
}

/// At most this many restarts within [`RESTART_WINDOW`].
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

pub enum SupervisorMessage {}

impl Supervisor {
    async fn start_script_repo(myself: &ActorRef<SupervisorMessage>, instance: &str, cfg: StoreConfig) -> Result<(), ActorProcessingErr> {
        Actor::spawn_linked(Some(script_repo::name(instance)), ScriptRepo, cfg, myself.get_cell()).await?;
        Ok(())
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: SupervisorArgs) -> Result<Self::State, ActorProcessingErr> {
        Self::start_script_repo(&myself, &args.instance, args.store.clone()).await?;
        Ok(SupervisorState { instance: args.instance, store: args.store, restarts: Vec::new() })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason): (ActorCell, String) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, format!("stopped: {}", reason.unwrap_or_default())),
            _ => return Ok(()),
        };
        let name = cell.get_name().unwrap_or_default();
        tracing::error!(actor = %name, %reason, "supervised actor ended");
        if name != script_repo::name(&state.instance) {
            return Ok(());
        }
        let now = Instant::now();
        state.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if state.restarts.len() >= MAX_RESTARTS {
            tracing::error!(actor = %name, "restarted {MAX_RESTARTS} times within a minute; leaving it stopped");
            return Ok(());
        }
        state.restarts.push(now);
        match Self::start_script_repo(&myself, &state.instance, state.store.clone()).await {
            Ok(()) => tracing::warn!(actor = %name, "restarted"),
            Err(e) => tracing::error!(actor = %name, error = %e, "restart failed"),
        }
        Ok(())
    }
}

/// Starts the supervision tree and waits until the children are ready.
pub async fn start(args: SupervisorArgs) -> Result<(ActorRef<SupervisorMessage>, tokio::task::JoinHandle<()>), ActorProcessingErr> {
    let name = format!("{}/supervisor", args.instance);
    let (actor, handle) = Actor::spawn(Some(name), Supervisor, args).await?;
    Ok((actor, handle))
}
