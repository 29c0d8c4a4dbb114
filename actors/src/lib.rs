//! Scriptorium's supervised actors, grouped by capability. Imports flow one way:
//! `domain` ← `error`/`db`/`handle` ← `scripts` ← `runs` ← `llm`; `lsp` stands alone and the
//! `supervisor` starts them all.
//!
//! - `domain`: `Major.Minor` versions, exact ordering numbers, 0.01 s time, states.
//! - `error`: the crate's error; `db`: SQLite and its migrations; `data_dir`: where each
//!   part of the data directory lives; `handle`: calling an actor with a timeout.
//! - `scripts`: `ScriptRepo`, the only writer of git and the script metadata, and the
//!   read-side catalog.
//! - `runs`: `RunScheduler` and `GroupExecutor`, single runs and run-all passes.
//! - `llm`: `LlmBroker`, prompt-to-code with guardrails and a logged exchange.
//! - `lsp`: `LspSession`, one language server per editor WebSocket.
//! - `supervisor`: the root supervisor that starts and restarts the actors.
//!
//! Every module is private: what the server may use is re-exported below, by
//! capability. It reaches the actors through their handles (`ScriptRepoHandle`,
//! `RunSchedulerHandle`, `LlmBrokerHandle`) and reads through `Catalog`, `RunReader` and
//! `ExchangeReader`; no SQL of the actors is visible outside this crate.

mod data_dir;
mod db;
mod deps;
mod domain;
mod error;
mod handle;
mod llm;
mod lsp;
mod runs;
mod scripts;
mod supervisor;

// Shared pieces.
pub use data_dir::DataDir;
pub use db::{open_existing, open_for_logs};
pub use deps::envs::Envs;
pub use deps::lock::UvConfig;
pub use deps::resolutions::{Resolution, Resolutions};
pub use deps::{DependencyState, Resolver};
pub use domain::clock;
pub use domain::ordering::{BadOrdering, Ordering};
pub use domain::syntax::SyntaxProblem;
pub use domain::team::{DuplicateOf, Hunk, MergeConflict, TestDataConflict, Unmergeable};
pub use domain::version::{BadVersion, Version};
pub use error::{CheckerError, RepoError};
pub use supervisor::{SupervisorArgs, SupervisorMessage, start as start_supervisor};

// Scripts.
pub use handle::CallError;
pub use scripts::catalog::{Catalog, Parent, ScriptDetail, ScriptSummary, VersionInfo};
pub use scripts::examples;
pub use scripts::health::WriteHealth;
pub use scripts::python::PythonCommand;
pub use scripts::script_repo::ScriptRepoHandle;
pub use scripts::script_store::{
    Committer, ForkOrderings, MAX_CONTENT_BYTES, MAX_PUBLISH_NOTE, MAX_TEST_DATA_BYTES, MergedFrom,
    Saved, StoreConfig, TestDataMerged, TestDataSaved, empty_test_data_etag,
};

// Runs.
pub use runs::events::{Event, EventKind, EventLog, LiveLogs};
pub use runs::request::{Mode, OnFailure, RunRequest, RunSchedulerArgs};
pub use runs::run_reader::RunReader;
pub use runs::run_scheduler::RunSchedulerHandle;
pub use runs::run_store::{
    ARTIFACT_PAGE, Artifact, Collected, Log, PassRecord, PassSummary, RunRecord, Skipped,
};
pub use runs::runner::{Runner, content_type};

// The LLM.
pub use llm::exchanges::{ExchangeReader, ExchangeRecord};
pub use llm::llm_broker::{LlmBrokerArgs, LlmBrokerHandle, LlmEvent, PromptRequest, Proposal};
pub use llm::verdict::Rejection;
pub use llm::{LlmConfig, LlmError};

// The language server.
pub use lsp::lsp_session::{
    LspConfig, LspSession, LspSessionArgs, LspSessionMessage, MAX_MESSAGE, MAX_PENDING, Outbound,
    ServerKind, ServerProgram, StartedServer, start_server,
};
