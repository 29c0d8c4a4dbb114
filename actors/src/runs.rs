//! Runs: single runs and run-all passes, from the queue to the sandbox and back.
//!
//! - [`run_scheduler`]: the `RunScheduler` actor, the job queue; [`pass`]: the pass
//!   driver; [`jobs`]: the runs and passes in flight.
//! - [`group_executor`]: the `GroupExecutor` actor, one ordering group of a pass.
//! - [`request`]: what a run or pass is asked for (mode, interpreter, input).
//! - [`runner`]: executing one run in the sandbox and collecting its artifacts.
//! - [`events`]: live, replayable event logs for SSE.
//! - [`run_store`]: runs, passes, events and artifacts in SQLite; [`run_reader`]: its
//!   read side for the server.

pub(crate) mod events;
pub(crate) mod group_executor;
pub(crate) mod jobs;
pub(crate) mod pass;
pub(crate) mod request;
pub(crate) mod run_reader;
pub(crate) mod run_scheduler;
pub(crate) mod run_store;
pub(crate) mod runner;
