//! The error every capability returns: [`RepoError`] names what was wrong and what to do;
//! the server maps each variant to an HTTP status.

use crate::domain::syntax::SyntaxProblem;
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
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[error("the Python syntax checker ({python}) failed: {message}")]
pub struct CheckerError {
    pub python: String,
    pub message: String,
}
