//! Scripts: the git repository and the script metadata, written only by the
//! `ScriptRepo` actor, and read by everyone through the [`catalog::Catalog`].
//!
//! - [`script_repo`]: the `ScriptRepo` actor and its handle.
//! - [`script_store`]: what `ScriptRepo` does (a git commit plus its SQLite record,
//!   start-up repair).
//! - [`catalog`]: the read side (list, details, history, a run's source).
//! - [`gitstore`]: git2; [`gitlock`]: stale git lock files; [`health`]: whether a
//!   write can succeed now.
//! - [`python`]: the syntax checker and the `# interpreter:` directive.
//! - [`examples`]: the example scripts shipped with the app.

pub(crate) mod catalog;
pub mod examples;
pub(crate) mod gitlock;
pub(crate) mod gitstore;
pub(crate) mod health;
pub(crate) mod merge;
pub(crate) mod python;
pub(crate) mod script_repo;
pub(crate) mod script_store;
