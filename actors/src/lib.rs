//! Scriptorium's supervised actors, grouped by capability. Imports flow one way:
//! `domain` ← `error`/`db` ← `scripts` ← `runs` ← `llm`; `lsp` stands alone and the
//! `supervisor` starts them all.
//!
//! - [`domain`]: `Major.Minor` versions, exact ordering numbers, 0.01 s time, states.
//! - [`error`]: the crate's error; [`db`]: SQLite and its migrations.
//! - [`scripts`]: `ScriptRepo`, the only writer of git and the script metadata, and the
//!   read-side catalog.
//! - [`runs`]: `RunScheduler` and `GroupExecutor`, single runs and run-all passes.
//! - [`llm`]: `LlmBroker`, prompt-to-code with guardrails and a logged exchange.
//! - [`lsp`]: `LspSession`, one language server per editor WebSocket.
//! - [`supervisor`]: the root supervisor that starts and restarts the actors.

pub mod db;
pub mod domain;
pub mod error;
pub mod llm;
pub mod lsp;
pub mod runs;
pub mod scripts;
pub mod supervisor;

pub use domain::ordering::Ordering;
pub use domain::version::Version;
pub use error::RepoError;
pub use scripts::catalog::Catalog;
pub use scripts::script_repo::{CallError, ScriptRepoHandle};
pub use scripts::script_store::{Committer, StoreConfig};
