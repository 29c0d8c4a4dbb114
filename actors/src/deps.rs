//! Per-script dependencies (PEP 723): a script declares what it needs in a
//! `# /// script` block; a save resolves it with uv into a lock stored in git beside
//! the script (`scripts/<file>.lock`); runs get an environment built from that lock.
//!
//! - [`pep723`]: finding and parsing the block.
//! - [`lock`]: resolving a block into a lock with `uv pip compile` (outside the sandbox,
//!   wheels only, with a timeout).
//! - [`resolutions`]: resolutions off the store's actor, and each script's state.
//! - [`python_version`]: `requires-python` against an interpreter's version.
//! - [`wasi`]: pure-Python environments for the wasi backend.
//! - [`envs`]: the content-addressed cache of environments built from locks, and the
//!   bootstrap that puts one on a sandboxed script's `sys.path`.

pub(crate) mod envs;
pub(crate) mod lock;
pub(crate) mod pep723;
mod python_version;
pub(crate) mod resolutions;
pub(crate) mod wasi;

/// The path of a script's lock in the repository (uv's own naming: `<script>.lock`).
pub(crate) fn lock_path(filename: &str) -> String {
    format!("scripts/{filename}.lock")
}

use std::path::PathBuf;

use crate::deps::lock::{Lock, UvConfig};
use crate::deps::resolutions::Resolutions;
use crate::error::RepoError;

/// What a save resolves against: uv and the interpreter locks are made for (the
/// default native interpreter).
#[derive(Debug, Clone)]
pub struct Resolver {
    pub uv: UvConfig,
    pub python: PathBuf,
    /// Its exact version, which `requires-python` must admit.
    pub python_version: String,
}

/// What a save does to the script's lock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LockChange {
    /// The block did not change (or declares nothing and there is no lock).
    Keep,
    /// A new lock, resolved now.
    Set(Lock),
    /// The block declares nothing any more: the lock goes.
    Clear,
}

/// Decides the lock for `new` content replacing `old` content (`None` for a new
/// script) whose lock exists when `has_lock`. Never runs uv: a block that needs a
/// resolution not yet made is [`RepoError::Unresolved`] (see [`resolutions`]).
pub(crate) fn plan(
    resolutions: &Resolutions,
    new: &str,
    old: Option<&str>,
    has_lock: bool,
) -> Result<LockChange, RepoError> {
    let meta = pep723::parse(new).map_err(|e| RepoError::Dependencies(e.to_string()))?;
    let meta = match meta {
        Some(m) if !m.dependencies.is_empty() => m,
        _ if has_lock => return Ok(LockChange::Clear),
        _ => return Ok(LockChange::Keep),
    };
    let before = old.and_then(|o| pep723::parse(o).ok().flatten());
    if has_lock && before.as_ref() == Some(&meta) {
        return Ok(LockChange::Keep);
    }
    resolutions.check_python(&meta)?;
    match resolutions.take(&meta) {
        Some(lock) => Ok(LockChange::Set(lock)),
        None => Err(RepoError::Unresolved {
            requires_python: meta.requires_python,
            dependencies: meta.dependencies,
        }),
    }
}

/// A script version's dependencies as the API shows them (the editor's panel, the LLM).
#[derive(Debug, Clone, Default, serde::Serialize, ts_rs::TS)]
pub struct Dependencies {
    /// `requires-python` of the `# /// script` block.
    pub requires_python: Option<String>,
    /// The block's `dependencies`, as written.
    pub declared: Vec<String>,
    /// The pinned packages of the version's lock (`name==version`).
    pub locked: Vec<String>,
    /// The sha256 of the lock (`scripts/<file>.lock`), if the version has one.
    pub lock_hash: Option<String>,
    /// Why the block cannot be read, if it cannot.
    pub problem: Option<String>,
    /// Where the dependencies stand.
    pub state: DependencyState,
    /// uv's reason when the last resolution failed (`state` is `failed`).
    pub error: Option<String>,
}

/// Where a script's dependencies stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum DependencyState {
    /// The script declares none.
    #[default]
    None,
    /// The current version has a lock.
    Locked,
    /// A save is resolving a changed block (the current version keeps its lock).
    Resolving,
    /// The last resolution failed (nothing was saved); see `error`.
    Failed,
}

impl Dependencies {
    pub fn of(content: &str, lock: Option<&Lock>) -> Dependencies {
        let (meta, problem) = match pep723::parse(content) {
            Ok(m) => (m.unwrap_or_default(), None),
            Err(e) => (pep723::Metadata::default(), Some(e.to_string())),
        };
        Dependencies {
            requires_python: meta.requires_python,
            declared: meta.dependencies,
            locked: lock.map(Lock::pins).unwrap_or_default(),
            lock_hash: lock.map(|l| l.hash.clone()),
            state: if lock.is_some() {
                DependencyState::Locked
            } else {
                DependencyState::None
            },
            error: None,
            problem,
        }
    }

    /// With the state of a resolution in progress or failed, if there is one.
    pub fn with_resolution(mut self, r: Option<resolutions::Resolution>) -> Dependencies {
        match r {
            Some(resolutions::Resolution::Resolving) => self.state = DependencyState::Resolving,
            Some(resolutions::Resolution::Failed { error }) => {
                self.state = DependencyState::Failed;
                self.error = Some(error);
            }
            None => {}
        }
        self
    }
}
