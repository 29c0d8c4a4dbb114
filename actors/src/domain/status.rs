//! The states of a run and of a pass, as stored and as the API shows them.

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";
pub const CANCELLED: &str = "cancelled";
/// The sandbox could not run the script at all.
pub const ERROR: &str = "error";
/// The server stopped while the run was queued or running.
pub const INTERRUPTED: &str = "interrupted";
/// A pass stopped after a failure before reaching this script.
pub const SKIPPED: &str = "skipped";
