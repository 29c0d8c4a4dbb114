//! What a new script is handed: an id never used before, and an ordering.

use rusqlite::{OptionalExtension, params};

use super::ScriptStore;
use crate::domain::ordering::Ordering;
use crate::error::Result;

impl ScriptStore {
    /// Past every id used by a script, any recorded commit (orphans too) and any
    /// undone commit, so no id or file name is ever handed out twice.
    pub(super) fn next_id(&self) -> Result<i64> {
        let used: i64 = self.conn.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM scripts), 0), COALESCE((SELECT MAX(script_id) FROM commits), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok(used.max(self.undone_max_id) + 1)
    }

    /// The next free whole number: after `3.xx` comes `4.0`.
    pub(super) fn next_ordering(&self) -> Result<Ordering> {
        let g: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(ordering_group), 0) + 1 FROM scripts",
            [],
            |r| r.get(0),
        )?;
        Ok(Ordering::whole(g as u64))
    }

    pub(super) fn ordering_taken(&self, o: &Ordering) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM scripts WHERE ordering_group = ?1 AND ordering_frac = ?2",
                params![o.group() as i64, o.fraction()],
                |r| r.get(0),
            )
            .optional()?)
    }
}
