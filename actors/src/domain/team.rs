//! What a team of editors runs into: a save whose edit overlaps someone else's (three
//! sides per hunk), and a script whose executable code is already on `prod`.

use serde::Serialize;

use crate::domain::version::Version;

/// One overlapping change: the lines of each side, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
pub struct Hunk {
    /// 1-based line in the merged text (with diff3 conflict markers) where it starts.
    pub line: usize,
    pub base: String,
    pub theirs: String,
    pub ours: String,
}

/// A save that could not be merged: the versions and the whole texts of the three
/// sides (for a diff view), and the overlapping hunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
pub struct MergeConflict {
    pub script: i64,
    /// The version the edit started from.
    pub base: Version,
    /// The script's current version.
    pub theirs: Version,
    pub base_content: String,
    pub theirs_content: String,
    pub ours_content: String,
    pub hunks: Vec<Hunk>,
}

/// Another script on `prod` with the same executable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
pub struct DuplicateOf {
    /// `None` for a file on `prod` that Scriptorium does not know (put there with git).
    pub script_id: Option<i64>,
    pub filename: String,
    /// Its published version, when known.
    pub version: Option<Version>,
}

impl std::fmt::Display for DuplicateOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.script_id, self.version) {
            (Some(id), Some(v)) => write!(f, "script {id} (`{}`) version {v}", self.filename),
            (Some(id), None) => write!(f, "script {id} (`{}`)", self.filename),
            _ => write!(f, "the file `scripts/{}`", self.filename),
        }
    }
}
