//! Per-script dependencies (PEP 723): a script declares what it needs in a
//! `# /// script` block; a save resolves it with uv into a lock stored in git beside
//! the script (`scripts/<file>.lock`); runs get an environment built from that lock.
//!
//! - [`pep723`]: finding and parsing the block.
//! - [`lock`]: resolving a block into a lock with `uv pip compile` (outside the sandbox,
//!   wheels only, with a timeout).
//! - [`envs`]: the content-addressed cache of environments built from locks, and the
//!   bootstrap that puts one on a sandboxed script's `sys.path`.

pub(crate) mod envs;
pub(crate) mod lock;
pub(crate) mod pep723;

/// The path of a script's lock in the repository (uv's own naming: `<script>.lock`).
pub(crate) fn lock_path(filename: &str) -> String {
    format!("scripts/{filename}.lock")
}

use std::path::PathBuf;

use crate::deps::lock::{Lock, UvConfig};

/// What a save resolves against: uv and the interpreter locks are made for (the
/// default native interpreter).
#[derive(Debug, Clone)]
pub struct Resolver {
    pub uv: UvConfig,
    pub python: PathBuf,
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

/// Decides, and resolves when needed, the lock for `new` content replacing `old`
/// content (`None` for a new script) whose lock exists when `has_lock`. Blocking.
pub(crate) fn plan(
    resolver: Option<&Resolver>,
    new: &str,
    old: Option<&str>,
    has_lock: bool,
) -> Result<LockChange, crate::error::RepoError> {
    use crate::error::RepoError;
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
    let Some(r) = resolver else {
        return Err(RepoError::Dependencies(
            "this server resolves no dependencies (no [uv] configured); remove the `dependencies` of the `# /// script` block".into(),
        ));
    };
    lock::resolve(&r.uv, &r.python, &meta)
        .map(LockChange::Set)
        .map_err(|e| RepoError::Dependencies(e.to_string()))
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
            problem,
        }
    }
}
