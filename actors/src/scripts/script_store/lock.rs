//! A version's dependency lock on the write side: the lock a change gives the new
//! version (resolved with `deps::plan`) and the edit of the lock file it needs.

use git2::Oid;

use super::change::{Action, Change};
use super::{Committer, Saved, ScriptStore};
use crate::deps::{self, LockChange, pep723};
use crate::error::{RepoError, Result};
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

    /// Resolves the current version's block again (newer releases, a refused lock):
    /// a new version, Minor + 1, with the same content and the new lock, in one commit.
    /// Like a save, it needs the resolution made first ([`RepoError::Unresolved`]).
    pub(crate) fn relock(&mut self, who: &Committer, id: i64) -> Result<Saved> {
        let (cur, meta) = self.current_block(id)?;
        let Some(lock) = self.deps.take(&meta) else {
            return Err(RepoError::Unresolved {
                requires_python: meta.requires_python,
                dependencies: meta.dependencies,
            });
        };
        let unchanged = cur.lock.as_ref().is_some_and(|l| l.1 == lock.hash);
        if unchanged {
            return Ok(Saved {
                version: cur.version,
                changed: false,
                merged: None,
                duplicate_of: None,
                lock_hash: Some(lock.hash),
                relocked: false,
            });
        }
        let blob = self.git.write_blob(lock.text.as_bytes())?;
        let version = cur.version.next_minor();
        let mut change = Change::new(Action::Save, id, who);
        change.version = Some(version);
        change.blob = Some(cur.blob);
        change.lock = Some((blob, lock.hash.clone()));
        let path = format!("scripts/{}", cur.filename);
        let lock_path = deps::lock_path(&cur.filename);
        let edits = [
            Edit::Put {
                path: &path,
                blob: cur.blob,
            },
            LockEdit::Put(blob).edit(&lock_path),
        ];
        let doc = self.docstring_of(cur.blob)?;
        let subject = format!("Re-lock the dependencies of {} as {version}", cur.filename);
        self.apply(&change, &edits, &who.email, &subject, doc.as_deref())?;
        Ok(Saved {
            version,
            changed: true,
            merged: None,
            duplicate_of: None,
            lock_hash: Some(lock.hash),
            relocked: true,
        })
    }

    /// The current version's block, which must declare dependencies.
    fn current_block(&mut self, id: i64) -> Result<(super::Current, pep723::Metadata)> {
        let cur = self.current(id)?;
        let content = String::from_utf8_lossy(&self.git.read_blob(cur.blob)?).into_owned();
        let meta = pep723::parse(&content)
            .map_err(|e| RepoError::Dependencies(e.to_string()))?
            .filter(|m| !m.dependencies.is_empty())
            .ok_or_else(|| {
                RepoError::Dependencies(format!(
                    "script {id} declares no dependencies; there is nothing to lock"
                ))
            })?;
        self.deps.check_python(&meta)?;
        Ok((cur, meta))
    }

    /// The first step of a re-lock: always a fresh resolution of the current block.
    pub(crate) fn unresolved_block(&mut self, id: i64) -> Result<Saved> {
        let (_, meta) = self.current_block(id)?;
        Err(RepoError::Unresolved {
            requires_python: meta.requires_python,
            dependencies: meta.dependencies,
        })
    }
}
