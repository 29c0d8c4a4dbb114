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

pub mod catalog;
pub mod examples;
pub mod gitlock;
pub mod gitstore;
pub mod health;
pub mod python;
pub mod script_repo;
pub mod script_store;
