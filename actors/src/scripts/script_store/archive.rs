//! Archiving: a script leaves the queue (no run-all pass runs it, the list shows it
//! apart) and can be restored. Metadata only, like its ordering number: its versions,
//! runs and git history are never touched, so nothing is lost.

use rusqlite::{OptionalExtension, params};

use super::{Committer, ScriptStore};
use crate::domain::clock;
use crate::domain::version::Version;
use crate::error::{RepoError, Result};

impl ScriptStore {
    /// Archives (`archived`) or restores script `id`; returns whether anything changed.
    pub(crate) fn set_archived(
        &mut self,
        who: &Committer,
        id: i64,
        archived: bool,
    ) -> Result<bool> {
        let now_archived = self.is_archived(id)?;
        if now_archived == archived {
            return Ok(false);
        }
        let (at, by) = if archived {
            (Some(clock::now()), Some(who.username.as_str()))
        } else {
            (None, None)
        };
        self.conn.execute(
            "UPDATE scripts SET archived_at = ?1, archived_by = ?2 WHERE id = ?3",
            params![at, by, id],
        )?;
        Ok(true)
    }

    /// An archived script is not published: restore it first.
    pub(super) fn refuse_archived(&self, id: i64) -> Result<()> {
        if self.is_archived(id)? {
            return Err(RepoError::Conflict(format!(
                "script {id} is archived; restore it (POST /api/scripts/{id}/unarchive) before publishing"
            )));
        }
        Ok(())
    }

    fn is_archived(&self, id: i64) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT archived_at IS NOT NULL FROM scripts WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(RepoError::NotFound(id))
    }
}

/// The longest publish note taken (characters).
pub const MAX_PUBLISH_NOTE: usize = 2000;

/// A publish commit's subject, with the publisher's note (if any) as its own paragraph.
/// The note's blank-line runs are kept as single blank lines; the trailers always follow
/// as the last paragraph, so nothing in a note can pass for one.
pub(super) fn publish_subject(filename: &str, version: Version, note: Option<&str>) -> String {
    let subject = format!("Publish {filename} {version}");
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        None => subject,
        Some(n) => format!("{subject}\n\n{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ScriptStore;
    use super::super::tests::{config, ed1};

    #[test]
    fn archiving_changes_once_and_restoring_undoes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = ScriptStore::open(&config(dir.path())).unwrap();
        let who = ed1();
        let id = s.create(&who, None, None, None).unwrap();
        assert!(s.set_archived(&who, id, true).unwrap());
        assert!(
            !s.set_archived(&who, id, true).unwrap(),
            "a second archive changes nothing"
        );
        assert!(
            s.publish(&who, id, None).is_err(),
            "an archived script is not published"
        );
        assert!(s.set_archived(&who, id, false).unwrap());
        assert!(s.publish(&who, id, None).is_ok());
        assert!(
            s.set_archived(&who, 999, true).is_err(),
            "an unknown script is an error"
        );
    }
}
