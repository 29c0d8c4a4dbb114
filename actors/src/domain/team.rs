//! What a team of editors runs into: a save (of a script or its test data) whose edit
//! overlaps someone else's (three sides per hunk), and a script whose executable code
//! is already on `prod`.

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

/// Why a test-data write based on older data could not be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Unmergeable {
    /// Both changed the same lines.
    Overlap,
    /// One of the three is not UTF-8 text: there are no lines to merge.
    Binary,
    /// All three are JSON, but merging their lines is not.
    Json,
}

impl std::fmt::Display for Unmergeable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unmergeable::Overlap => "your edit changes the same lines",
            Unmergeable::Binary => "it is not text, so the changes cannot be merged line by line",
            Unmergeable::Json => "merging the changed lines would not be valid JSON",
        })
    }
}

/// A test-data write that could not be merged: the ETags (blob ids) of the data the
/// edit started from and of the current data, the three texts (`None` where not UTF-8
/// text) and the overlapping hunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
pub struct TestDataConflict {
    pub script: i64,
    pub base: String,
    pub theirs: String,
    pub reason: Unmergeable,
    pub base_content: Option<String>,
    pub theirs_content: Option<String>,
    pub ours_content: Option<String>,
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
