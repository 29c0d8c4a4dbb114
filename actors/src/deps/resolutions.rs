//! Resolutions outside the script store's actor.
//!
//! uv may take many seconds to resolve (a slow or unreachable index: up to the
//! configured timeout). The store's actor serialises every write, so it never waits on
//! uv: when a save needs a resolution the store answers [`RepoError::Unresolved`]
//! without writing anything; the actor hands the resolution to a task on the blocking
//! pool and takes the next message; when the lock is ready the task sends the save
//! back to the actor, and the store finds the lock here ([`Resolutions::take`]).
//!
//! While that happens the script's dependency state is `resolving`; a failed
//! resolution leaves `failed` with uv's reason (the save gets a 422 and nothing is
//! saved; the editor keeps its text).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::deps::lock::{self, Lock};
use crate::deps::pep723::Metadata;
use crate::deps::{Resolver, python_version};
use crate::error::RepoError;

/// A script's dependency resolution in progress or failed (none when its lock is
/// current).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Resolution {
    Resolving,
    Failed { error: String },
}

/// The shared resolver state: uv's settings, finished locks waiting for their save,
/// and each script's resolution state.
#[derive(Debug)]
pub struct Resolutions {
    resolver: Option<Resolver>,
    /// uv processes resolving at once (each may take up to its timeout): editors
    /// saving many blocks cannot start unbounded numbers of them.
    pub(crate) permits: std::sync::Arc<tokio::sync::Semaphore>,
    ready: Mutex<Vec<(String, Lock)>>,
    states: Mutex<HashMap<i64, Resolution>>,
}

/// At most this many finished locks wait for their saves (a save that timed out
/// leaves one behind).
const MAX_READY: usize = 32;

/// Resolutions running at once.
const MAX_RUNNING: usize = 2;

impl Default for Resolutions {
    fn default() -> Self {
        Resolutions::new(None)
    }
}

impl Resolutions {
    pub fn new(resolver: Option<Resolver>) -> Resolutions {
        Resolutions {
            resolver,
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING)),
            ready: Mutex::default(),
            states: Mutex::default(),
        }
    }

    /// Refuses, before uv runs, a block whose `requires-python` excludes the
    /// interpreter locks are made for.
    pub(crate) fn check_python(&self, meta: &Metadata) -> Result<(), RepoError> {
        let (Some(spec), Some(r)) = (&meta.requires_python, &self.resolver) else {
            return Ok(());
        };
        if r.python_version.is_empty() {
            return Ok(());
        }
        check_requires_python(spec, &r.python_version, "the default interpreter")
            .map_err(RepoError::Dependencies)
    }

    /// The lock resolved for `meta`, if a resolution finished for it (taken: a later
    /// change of the block resolves again).
    pub(crate) fn take(&self, meta: &Metadata) -> Option<Lock> {
        let key = meta.requirements();
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        let i = ready.iter().position(|(k, _)| *k == key)?;
        Some(ready.remove(i).1)
    }

    /// Resolves `meta` with uv and keeps the lock for [`take`](Self::take). Blocking:
    /// call it on the blocking pool, never inside the store's actor.
    pub(crate) fn resolve(&self, meta: &Metadata) -> Result<(), RepoError> {
        let Some(r) = &self.resolver else {
            return Err(RepoError::Dependencies(
                "this server resolves no dependencies (no [uv] configured); remove the `dependencies` of the `# /// script` block".into(),
            ));
        };
        let lock = lock::resolve(&r.uv, &r.python, meta)
            .map_err(|e| RepoError::Dependencies(e.to_string()))?;
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if ready.len() >= MAX_READY {
            ready.remove(0);
        }
        ready.push((meta.requirements(), lock));
        Ok(())
    }

    /// The resolution state of script `id` (`None`: nothing pending or failed).
    pub fn state(&self, id: i64) -> Option<Resolution> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub(crate) fn set_state(&self, id: i64, state: Option<Resolution>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match state {
            Some(s) => states.insert(id, s),
            None => states.remove(&id),
        };
    }
}

/// Checks `requires-python = spec` against the interpreter of `version`.
pub(crate) fn check_requires_python(spec: &str, version: &str, which: &str) -> Result<(), String> {
    match python_version::satisfies(version, spec) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "the script requires Python {spec} (`requires-python` of its `# /// script` block), but {which} is Python {version}; change `requires-python` or choose an interpreter that satisfies it"
        )),
        Err(e) => Err(e),
    }
}
