//! Runs: single runs and run-all passes, from the queue to the sandbox and back.
//!
//! - [`run_scheduler`]: the `RunScheduler` actor, the job queue and the pass driver.
//! - [`group_executor`]: the `GroupExecutor` actor, one ordering group of a pass.
//! - [`runner`]: executing one run in the sandbox and collecting its artifacts.
//! - [`events`]: live, replayable event logs for SSE.
//! - [`run_store`]: runs, passes, events and artifacts in SQLite.

pub mod events;
pub mod group_executor;
pub mod run_scheduler;
pub mod run_store;
pub mod runner;
