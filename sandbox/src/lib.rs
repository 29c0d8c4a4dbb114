//! Runs one Python script in a sandbox and reports what happened.
//!
//! - [`interpreters`]: `interpreters.toml` and detection of the interpreters on the machine.
//! - [`limits`]: the resource bounds of a run.
//!
//! The crate does not depend on the server; the server depends on it.

pub mod interpreters;
pub mod limits;

pub use interpreters::{BackendKind, Interpreter, InterpreterError, InterpreterKind, Registry};
pub use limits::Limits;
