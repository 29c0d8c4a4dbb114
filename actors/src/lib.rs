//! Scriptorium's supervised actors and the script repository they guard.
//!
//! - [`supervisor`]: the root supervisor that starts and restarts the actors.
//! - [`script_repo`]: `ScriptRepo`, the only writer of git and the script metadata.
//! - [`store`]: what `ScriptRepo` does (git commit + SQLite record, start-up repair).
//! - [`run_scheduler`]: `RunScheduler`, the job queue for single runs and run-all passes.
//! - [`group_executor`]: `GroupExecutor`, one ordering group of a pass, concurrently.
//! - [`runner`]: executing one run in the sandbox; [`runstore`]: runs in SQLite;
//!   [`events`]: live, replayable event logs for SSE.
//! - [`llm_broker`]: `LlmBroker`, prompt-to-code with guardrails and a logged exchange;
//!   [`llm`]: its providers, tools and guardrails.
//! - [`lsp_session`]: `LspSession`, one language server per editor WebSocket.
//! - [`examples`]: the example scripts shipped with the app.
//! - [`catalog`]: the read side (list, details, history), used without the actor.
//! - [`gitstore`], [`db`], [`python`]: git2, SQLite and the Python syntax checker;
//!   [`gitlock`]: stale git lock files; [`health`]: whether a write can succeed now.
//! - [`version`], [`ordering`], [`clock`]: `Major.Minor`, exact ordering numbers, 0.01 s time.

pub mod catalog;
pub mod clock;
pub mod db;
pub mod events;
pub mod examples;
pub mod gitlock;
pub mod gitstore;
pub mod group_executor;
pub mod health;
pub mod llm;
pub mod llm_broker;
pub mod lsp_session;
pub mod ordering;
pub mod python;
pub mod run_scheduler;
pub mod runner;
pub mod runstore;
pub mod script_repo;
pub mod store;
pub mod supervisor;
pub mod version;

pub use catalog::Catalog;
pub use ordering::Ordering;
pub use script_repo::{CallError, ScriptRepoHandle};
pub use store::{Committer, RepoError, StoreConfig};
pub use version::Version;
