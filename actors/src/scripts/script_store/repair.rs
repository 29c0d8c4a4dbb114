//! Start-up repair: commits that SQLite does not know (the process died between the
//! git commit and its record) are recorded with the same function as a normal write,
//! oldest first; orphans of failed requests are marked, foreign commits left alone.

use std::collections::HashSet;
use std::path::PathBuf;

use git2::Oid;
use rusqlite::params;

use super::{Action, Change, ScriptStore, parse_oid, record};
use crate::db;
use crate::domain::clock;
use crate::error::Result;
use crate::scripts::gitstore::{PROD, trailers};
use crate::scripts::python::Checked;

/// What start-up repair did.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RepairReport {
    /// Commits whose metadata was missing and has been recorded.
    pub recovered: Vec<String>,
    /// Commits not made by Scriptorium (e.g. with the git CLI), left alone.
    pub foreign: Vec<String>,
    /// Unrecorded commits of failed requests with later changes of the same script on
    /// top: marked `orphan` in `commits`, not applied.
    pub orphans: Vec<String>,
    /// Stale git lock files removed.
    pub cleared_locks: Vec<PathBuf>,
}

impl ScriptStore {
    /// Records commits that SQLite does not know about, oldest first. An unknown commit
    /// below a recorded one that changes the same script is an orphan of a failed
    /// request (history went on without it): it is marked, not applied.
    pub(crate) fn repair(&mut self) -> Result<RepairReport> {
        let mut report = RepairReport::default();
        // `prod` last: a publish refers to versions made on editor branches.
        let mut branches = self.git.branches()?;
        branches.sort_by_key(|b| b == PROD);
        let mut known = self.known_commits()?;
        for branch in branches {
            for (commit, message, orphan) in self.unknown_commits(&branch, &known)? {
                // Branches share history: a commit is recorded once, on the first
                // branch that shows it.
                if !known.insert(commit) {
                    continue;
                }
                let tx = db::immediate(&mut self.conn)?;
                match Change::from_message(&message) {
                    Some(change) if orphan => {
                        tx.execute(
                            "INSERT OR IGNORE INTO commits (commit_id, branch, action, script_id, created_at) VALUES (?1, ?2, 'orphan', ?3, ?4)",
                            params![commit.to_string(), branch, change.script, change.at],
                        )?;
                        tracing::warn!(%commit, branch, action = change.action.as_str(), script = change.script,
                            "repair: a commit of a failed request, superseded by later changes of its script; marked orphan");
                        report.orphans.push(commit.to_string());
                    }
                    Some(change) => {
                        let doc = match change.action {
                            Action::Create | Action::Fork | Action::Save | Action::Bump => {
                                match change.blob {
                                    Some(b) => {
                                        let bytes = self.git.read_blob(b)?;
                                        match self
                                            .checker
                                            .check(&String::from_utf8_lossy(&bytes))?
                                        {
                                            Checked::Valid { docstring, .. } => docstring,
                                            Checked::Invalid(_) => None,
                                        }
                                    }
                                    None => None,
                                }
                            }
                            _ => None,
                        };
                        record(&tx, commit, &branch, &change, doc.as_deref())?;
                        tracing::warn!(%commit, branch, action = change.action.as_str(), script = change.script,
                            "repair: recorded a commit whose metadata was missing");
                        report.recovered.push(commit.to_string());
                    }
                    None => {
                        let init = trailers(&message)
                            .get("Scriptorium-Action")
                            .map(String::as_str)
                            == Some("init");
                        tx.execute(
                            "INSERT OR IGNORE INTO commits (commit_id, branch, action, script_id, created_at) VALUES (?1, ?2, ?3, NULL, ?4)",
                            params![commit.to_string(), branch, if init { "init" } else { "foreign" }, clock::now()],
                        )?;
                        if !init {
                            tracing::warn!(%commit, branch, "repair: commit not made by Scriptorium; left as it is");
                            report.foreign.push(commit.to_string());
                        }
                    }
                }
                tx.commit()?;
            }
        }
        if !report.recovered.is_empty() {
            tracing::warn!(
                count = report.recovered.len(),
                "start-up repair recovered metadata from git"
            );
        }
        Ok(report)
    }

    /// The commits of `branch` that SQLite does not know, oldest first, each with
    /// whether it is an orphan (a recorded commit above it changes the same script).
    fn unknown_commits(
        &self,
        branch: &str,
        known: &HashSet<Oid>,
    ) -> Result<Vec<(Oid, String, bool)>> {
        let history = self.git.history(branch)?;
        // The usual case, cheaply: every commit is known.
        if history.iter().all(|c| known.contains(c)) {
            return Ok(Vec::new());
        }
        // Scripts changed by recorded commits newer than the one at hand.
        let mut changed_later: HashSet<i64> = HashSet::new();
        let mut out = Vec::new();
        for commit in history {
            let message = self.git.message(commit)?;
            let script = Change::from_message(&message).map(|c| c.script);
            if known.contains(&commit) {
                changed_later.extend(script);
                continue;
            }
            let orphan = script.is_some_and(|s| changed_later.contains(&s));
            out.push((commit, message, orphan));
        }
        out.reverse();
        Ok(out)
    }

    /// Every commit SQLite has recorded.
    fn known_commits(&self) -> Result<HashSet<Oid>> {
        let mut stmt = self.conn.prepare("SELECT commit_id FROM commits")?;
        let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut known = HashSet::new();
        for id in ids {
            known.insert(parse_oid(&id?)?);
        }
        Ok(known)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, ed1};
    use super::super::*;
    use crate::scripts::gitstore::Author;

    /// What older versions left: a create whose record failed (an orphan commit), then
    /// a second create of the same id on top. Repair marks the orphan, records nothing
    /// twice, and the next id is past both.
    #[test]
    fn repair_marks_an_orphan_under_later_history_and_skips_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = ScriptStore::open(&config(dir.path())).unwrap();
        store
            .create(&ed1(), Some("x = 1\n".into()), None, None)
            .unwrap();
        // The orphan: a commit for script 2 that SQLite never heard of.
        let mut change = Change::new(Action::Create, 2, &ed1());
        let blob = store.git.write_blob(b"lost = 1\n").unwrap();
        change.version = Some(Version::FIRST);
        change.blob = Some(blob);
        change.file = Some("script_0002.py".into());
        change.ordering = Some(Ordering::whole(2));
        let author = Author {
            name: "ed1",
            email: "ed1@x",
            at: change.at,
        };
        let orphan = store
            .git
            .commit(
                "ed1",
                &[Edit::Put {
                    path: "scripts/script_0002.py",
                    blob,
                }],
                &author,
                &change.message("Create script_0002.py (0.1)"),
            )
            .unwrap();
        // History goes on over it, with the same id (what the old next_id did).
        let mut again = change.clone();
        let blob2 = store.git.write_blob(b"kept = 2\n").unwrap();
        again.blob = Some(blob2);
        store
            .apply(
                &again,
                &[Edit::Put {
                    path: "scripts/script_0002.py",
                    blob: blob2,
                }],
                "ed1@x",
                "Create script_0002.py (0.1)",
                None,
            )
            .unwrap();
        drop(store);

        let (mut store, report) = ScriptStore::open(&config(dir.path())).unwrap();
        assert_eq!(report.orphans, [orphan.to_string()]);
        assert!(report.recovered.is_empty(), "{report:?}");
        assert_eq!(
            store.current(2).unwrap().blob,
            blob2,
            "the recorded create stays"
        );
        assert_eq!(
            store
                .create(&ed1(), Some("x = 3\n".into()), None, None)
                .unwrap(),
            3
        );
        let (_, again) = ScriptStore::open(&config(dir.path())).unwrap();
        assert!(again.orphans.is_empty(), "marked once: {again:?}");
    }

    /// A publish the server died before recording, then a start with a new editor,
    /// whose branch is made from `prod` and so shows that commit too: recorded once.
    #[test]
    fn an_unrecorded_commit_on_two_branches_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = ScriptStore::open(&config(dir.path())).unwrap();
        let id = store
            .create(&ed1(), Some("x = 1\n".into()), None, None)
            .unwrap();
        let cur = store.current(id).unwrap();
        let mut change = Change::new(Action::Publish, id, &ed1());
        change.version = Some(cur.version);
        change.blob = Some(cur.blob);
        let author = Author {
            name: "ed1",
            email: "ed1@x",
            at: change.at,
        };
        let path = format!("scripts/{}", cur.filename);
        let commit = store
            .git
            .commit(
                PROD,
                &[Edit::Put {
                    path: &path,
                    blob: cur.blob,
                }],
                &author,
                &change.message("Publish"),
            )
            .unwrap();
        drop(store);

        let mut cfg = config(dir.path());
        cfg.editors.push("ed2".into());
        let (store, report) = ScriptStore::open(&cfg).unwrap();
        assert_eq!(report.recovered, [commit.to_string()]);
        assert_eq!(store.current(id).unwrap().published, Some(Version::FIRST));
    }
}
