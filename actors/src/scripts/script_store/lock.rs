//! A version's dependency lock on the write side: the lock a change gives the new
//! version (resolved with `deps::plan`) and the edit of the lock file it needs.

use git2::Oid;

use super::ScriptStore;
use crate::deps::{self, LockChange};
use crate::error::Result;
use crate::scripts::gitstore::Edit;

/// A version's dependency lock: its blob and the sha256 of its text.
pub(super) type VersionLock = (Oid, String);

/// How a change edits the script's lock file.
#[derive(Debug, Clone, Copy)]
pub(super) enum LockEdit {
    Put(Oid),
    Remove,
}

impl LockEdit {
    pub(super) fn edit(self, path: &str) -> Edit<'_> {
        match self {
            LockEdit::Put(blob) => Edit::Put { path, blob },
            LockEdit::Remove => Edit::Remove { path },
        }
    }
}

impl ScriptStore {
    /// Decides (from a finished resolution, see `deps::resolutions`) the lock for `content` (replacing `old`, with lock `lock`) and returns
    /// the lock the new version has, plus the edit of the lock file it needs.
    pub(super) fn lock_for(
        &mut self,
        content: &str,
        old: Option<&str>,
        lock: Option<&VersionLock>,
    ) -> Result<(Option<VersionLock>, Option<LockEdit>)> {
        Ok(
            match deps::plan(&self.deps, content, old, lock.is_some())? {
                LockChange::Keep => (lock.cloned(), None),
                LockChange::Clear => (None, Some(LockEdit::Remove)),
                LockChange::Set(l) => {
                    let blob = self.git.write_blob(l.text.as_bytes())?;
                    (Some((blob, l.hash)), Some(LockEdit::Put(blob)))
                }
            },
        )
    }
}
