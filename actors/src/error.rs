//! The error every capability returns: [`RepoError`] names what was wrong and what to do;
//! the server maps each variant to an HTTP status.

use crate::domain::syntax::SyntaxProblem;
use crate::domain::team::{DuplicateOf, MergeConflict, TestDataConflict};
use crate::domain::version::Version;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("script {0} does not exist")]
    NotFound(i64),
    #[error("version {version} of script {script} does not exist")]
    NoSuchVersion { script: i64, version: Version },
    #[error(
        "script {script} is at version {current}, but this change was based on {base}; reload it, merge your edits and save again"
    )]
    Stale {
        script: i64,
        base: Version,
        current: Version,
    },
    #[error(
        "script {} moved from {} to {} while you edited it, and your edit overlaps that change in {} place(s); resolve each hunk (base, theirs, ours) and save again with base_version {}",
        .0.script, .0.base, .0.theirs, .0.hunks.len(), .0.theirs
    )]
    MergeConflict(Box<MergeConflict>),
    #[error(
        "the test data of script {} changed since you loaded it, and {}; nothing was saved: resolve it and save again with `If-Match: \"{}\"`",
        .0.script, .0.reason, .0.theirs
    )]
    TestDataConflict(Box<TestDataConflict>),
    /// `If-Match` names data this script's test data never was.
    #[error(
        "`If-Match` names test data \"{base}\" that script {script} never had; load it again (GET /api/scripts/{script}/test-data, ETag \"{current}\"), redo your edit and save with that ETag"
    )]
    UnknownTestDataBase {
        script: i64,
        base: String,
        current: String,
    },
    #[error(
        "script {script} is at version {current}, but you asked to publish {seen}; look at {current} and publish it with `version` {current} if it is what should run"
    )]
    Moved {
        script: i64,
        seen: Version,
        current: Version,
    },
    #[error(
        "the executable code of script {script} version {version} is the same as that of {other} on prod (comments and docstrings aside); prod must not hold two scripts with the same code: change this one, or update that one instead"
    )]
    Duplicate {
        script: i64,
        version: Version,
        other: Box<DuplicateOf>,
    },
    #[error("the script is not valid Python: {0}")]
    InvalidPython(SyntaxProblem),
    #[error("{what} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("{0}")]
    BadInput(String),
    /// The script's declared dependencies cannot be used (a malformed `# /// script`
    /// block, or uv cannot resolve them): 422, nothing saved.
    #[error("{0}")]
    Dependencies(String),
    /// Inside the write side only: the change needs a resolution of these declared
    /// dependencies first, which the actor runs off its own thread and then retries.
    #[error("the declared dependencies are not resolved yet; try again")]
    Unresolved {
        requires_python: Option<String>,
        dependencies: Vec<String>,
    },
    /// Something other than a script does not exist (a run, a pass, an artifact).
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Conflict(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Checker(#[from] CheckerError),
    /// A background task panicked or was cancelled: the server's fault, not the input's.
    #[error("a background task of the server failed ({0}); nothing was changed, try again")]
    Background(#[from] tokio::task::JoinError),
    /// An actor the request needed could not be started.
    #[error("{0}")]
    Internal(String),
}

pub(crate) type Result<T, E = RepoError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[error("the Python syntax checker ({python}) failed: {message}")]
pub struct CheckerError {
    pub python: String,
    pub message: String,
}
