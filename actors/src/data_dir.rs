//! The data directory's layout: the one place that knows where each part of it lives.
//!
//! ```text
//! DATA/
//!   repo/             the bare git repository (branches `prod` and one per editor)
//!   scriptorium.db    SQLite (WAL): scripts, versions, runs, passes, exchanges, users
//!   runs/<id>/        each run's working directory: its input file and artifacts
//!   llm-tools/        scratch directories of the LLM's sandboxed tool runs
//!   lsp/<session>/    each language-server session's workspace
//! ```

use std::path::{Path, PathBuf};

/// Where the parts of one data directory are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bare git repository.
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("scriptorium.db")
    }

    /// The parent of every run's working directory.
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Scratch space of the LLM's tool runs.
    pub fn llm_scratch(&self) -> PathBuf {
        self.root.join("llm-tools")
    }

    /// The parent of every language-server session's workspace.
    pub fn lsp_sessions(&self) -> PathBuf {
        self.root.join("lsp")
    }
}
