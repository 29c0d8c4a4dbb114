//! A change as its commit describes it (the `Scriptorium-*` trailers), and recording a
//! change in SQLite: one function for the normal write path and start-up repair alike,
//! so git and SQLite cannot come to disagree on what a change means.

use git2::Oid;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Committer, ScriptStore};
use crate::db;
use crate::domain::clock::{self, Centis};
use crate::domain::ordering::Ordering;
use crate::domain::version::Version;
use crate::error::{RepoError, Result};
use crate::scripts::gitlock;
use crate::scripts::gitstore::{Author, Edit, GitStore};
use crate::scripts::gitstore::{PROD, trailers};
use crate::scripts::python::name_from_docstring;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    Fork,
    Save,
    Bump,
    TestData,
    Publish,
}

impl Action {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Fork => "fork",
            Action::Save => "save",
            Action::Bump => "bump",
            Action::TestData => "test-data",
            Action::Publish => "publish",
        }
    }
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "create" => Action::Create,
            "fork" => Action::Fork,
            "save" => Action::Save,
            "bump" => Action::Bump,
            "test-data" => Action::TestData,
            "publish" => Action::Publish,
            _ => return None,
        })
    }
}

/// One change, as written in a commit's trailers.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub action: Action,
    pub script: i64,
    pub user: String,
    pub branch: String,
    pub at: Centis,
    /// The script's version after the change (the published version for `publish`).
    pub version: Option<Version>,
    /// The script blob (or the test-data blob for `test-data`; `None` there clears it).
    pub blob: Option<Oid>,
    pub file: Option<String>,
    pub ordering: Option<Ordering>,
    pub parent: Option<(i64, Version)>,
    /// Test data carried along (fork, publish).
    pub test_data: Option<Oid>,
    /// The version's dependency lock: its blob and the sha256 of its text.
    pub lock: Option<(Oid, String)>,
}

impl Change {
    pub(super) fn new(action: Action, script: i64, who: &Committer) -> Change {
        Change {
            action,
            script,
            user: who.username.clone(),
            branch: if action == Action::Publish {
                PROD.to_string()
            } else {
                who.branch.clone()
            },
            at: clock::now(),
            version: None,
            blob: None,
            file: None,
            ordering: None,
            parent: None,
            test_data: None,
            lock: None,
        }
    }

    pub(super) fn message(&self, subject: &str) -> String {
        let mut m = format!(
            "{subject}\n\nScriptorium-Action: {}\nScriptorium-Script: {}\n",
            self.action.as_str(),
            self.script
        );
        let mut add = |k: &str, v: String| m.push_str(&format!("Scriptorium-{k}: {v}\n"));
        if let Some(v) = self.version {
            add("Version", v.to_string());
        }
        if let Some(b) = self.blob {
            add("Blob", b.to_string());
        }
        if let Some(f) = &self.file {
            add("File", f.clone());
        }
        if let Some(o) = &self.ordering {
            add("Ordering", o.to_string());
        }
        if let Some((id, v)) = self.parent {
            add("Parent", format!("{id}@{v}"));
        }
        if let Some(t) = self.test_data {
            add("Test-Data", t.to_string());
        }
        if let Some((blob, hash)) = &self.lock {
            add("Lock", format!("{blob} {hash}"));
        }
        add("User", self.user.clone());
        add("Time", self.at.to_string());
        m
    }

    /// Reads a change back from a commit message; `None` if it is not one of ours.
    pub(crate) fn from_message(message: &str) -> Option<Change> {
        let t = trailers(message);
        let get = |k: &str| t.get(&format!("Scriptorium-{k}"));
        let oid = |k: &str| get(k).and_then(|v| Oid::from_str(v).ok());
        Some(Change {
            action: Action::parse(get("Action")?)?,
            script: get("Script")?.parse().ok()?,
            user: get("User")?.clone(),
            branch: String::new(),
            at: get("Time")?.parse().ok()?,
            version: get("Version").and_then(|v| v.parse().ok()),
            blob: oid("Blob"),
            file: get("File").cloned(),
            ordering: get("Ordering").and_then(|v| v.parse().ok()),
            parent: get("Parent").and_then(|p| {
                let (id, v) = p.split_once('@')?;
                Some((id.parse().ok()?, v.parse().ok()?))
            }),
            test_data: oid("Test-Data"),
            lock: get("Lock").and_then(|l| {
                let (b, h) = l.split_once(' ')?;
                Some((Oid::from_str(b).ok()?, h.to_string()))
            }),
        })
    }
}

/// Writes one change's metadata. Used by the normal path and by repair alike.
pub(super) fn record(
    tx: &Transaction<'_>,
    commit: Oid,
    branch: &str,
    c: &Change,
    doc: Option<&str>,
) -> Result<()> {
    let missing =
        |what: &str| RepoError::BadInput(format!("commit {commit} lacks its {what} trailer"));
    let name = name_from_docstring(doc);
    let description = doc.unwrap_or("");
    match c.action {
        Action::Create | Action::Fork => {
            let v = c.version.ok_or_else(|| missing("Version"))?;
            let file = c.file.as_deref().ok_or_else(|| missing("File"))?;
            let mut ordering = c.ordering.clone().ok_or_else(|| missing("Ordering"))?;
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT id FROM scripts WHERE ordering_group = ?1 AND ordering_frac = ?2",
                    params![ordering.group() as i64, ordering.fraction()],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some_and(|t| t != c.script) {
                let g: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(ordering_group), 0) + 1 FROM scripts",
                    [],
                    |r| r.get(0),
                )?;
                ordering = Ordering::whole(g as u64);
            }
            tx.execute(
                "INSERT INTO scripts (id, filename, ordering_group, ordering_frac, name, description, major, minor,
                    last_modified, created_by, created_at, parent_id, parent_major, parent_minor, test_data_blob)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?9, ?11, ?12, ?13, ?14)",
                params![
                    c.script,
                    file,
                    ordering.group() as i64,
                    ordering.fraction(),
                    name,
                    description,
                    v.major,
                    v.minor,
                    c.at,
                    c.user,
                    c.parent.map(|p| p.0),
                    c.parent.map(|p| p.1.major),
                    c.parent.map(|p| p.1.minor),
                    c.test_data.map(|t| t.to_string()),
                ],
            )?;
            insert_version(tx, commit, branch, c, v)?;
            // A fork's test data is its first: a base a later edit may name (If-Match).
            if let Some(t) = c.test_data {
                tx.execute(
                    "INSERT INTO test_data_changes (script_id, blob_id, commit_id, changed_by, changed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![c.script, t.to_string(), commit.to_string(), c.user, c.at],
                )?;
            }
        }
        Action::Save | Action::Bump => {
            let v = c.version.ok_or_else(|| missing("Version"))?;
            insert_version(tx, commit, branch, c, v)?;
            tx.execute(
                "UPDATE scripts SET major = ?2, minor = ?3, name = ?4, description = ?5, last_modified = ?6 WHERE id = ?1",
                params![c.script, v.major, v.minor, name, description, c.at],
            )?;
        }
        Action::TestData => {
            let blob = c.blob.map(|b| b.to_string());
            tx.execute(
                "UPDATE scripts SET test_data_blob = ?2 WHERE id = ?1",
                params![c.script, blob],
            )?;
            tx.execute(
                "INSERT INTO test_data_changes (script_id, blob_id, commit_id, changed_by, changed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.script, blob.unwrap_or_default(), commit.to_string(), c.user, c.at],
            )?;
        }
        Action::Publish => {
            let v = c.version.ok_or_else(|| missing("Version"))?;
            tx.execute(
                "UPDATE scripts SET published_major = ?2, published_minor = ?3, published_at = ?4, published_by = ?5 WHERE id = ?1",
                params![c.script, v.major, v.minor, c.at, c.user],
            )?;
            tx.execute(
                "INSERT INTO publications (script_id, major, minor, commit_id, published_by, published_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![c.script, v.major, v.minor, commit.to_string(), c.user, c.at],
            )?;
        }
    }
    tx.execute(
        "INSERT INTO commits (commit_id, branch, action, script_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![commit.to_string(), branch, c.action.as_str(), c.script, c.at],
    )?;
    Ok(())
}

fn insert_version(
    tx: &Transaction<'_>,
    commit: Oid,
    branch: &str,
    c: &Change,
    v: Version,
) -> Result<()> {
    let kind = match c.action {
        Action::Create => "create",
        Action::Fork => "fork",
        Action::Bump => "bump",
        _ => "save",
    };
    let blob = c
        .blob
        .ok_or_else(|| RepoError::BadInput(format!("commit {commit} lacks its Blob trailer")))?;
    tx.execute(
        "INSERT INTO versions (script_id, major, minor, kind, commit_id, blob_id, branch, committer, created_at, lock_blob, lock_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            c.script, v.major, v.minor, kind, commit.to_string(), blob.to_string(), branch, c.user, c.at,
            c.lock.as_ref().map(|l| l.0.to_string()),
            c.lock.as_ref().map(|l| l.1.as_str()),
        ],
    )?;
    Ok(())
}

impl ScriptStore {
    /// Takes the write lock, commits `change` to git, records it in SQLite (see the
    /// module comment for why in this order). On failure nothing is left changed.
    pub(super) fn apply(
        &mut self,
        change: &Change,
        edits: &[Edit<'_>],
        email: &str,
        subject: &str,
        doc: Option<&str>,
    ) -> Result<Oid> {
        let out = self.apply_once(change, edits, email, subject, doc);
        match &out {
            Ok(_) => self.health.write_succeeded(),
            Err(e) => {
                tracing::error!(action = change.action.as_str(), script = change.script, error = %e, "a change could not be made");
                self.health.write_failed(e.to_string());
            }
        }
        out
    }

    fn apply_once(
        &mut self,
        change: &Change,
        edits: &[Edit<'_>],
        email: &str,
        subject: &str,
        doc: Option<&str>,
    ) -> Result<Oid> {
        let branch = change.branch.as_str();
        let tx = db::immediate(&mut self.conn)?;
        let author = Author {
            name: &change.user,
            email,
            at: change.at,
        };
        let message = change.message(subject);
        let commit_on = |git: &GitStore| -> Result<(Oid, Oid), git2::Error> {
            git.ensure_branch(branch)?;
            let parent = git.tip(branch)?;
            Ok((git.commit(branch, edits, &author, &message)?, parent))
        };
        let (commit, parent) = match commit_on(&self.git) {
            Ok(c) => c,
            // A lock file left by a process that died stops every update of its ref:
            // remove it if nobody holds it, and try once more.
            Err(e) if !gitlock::clear_stale(self.git.path()).is_empty() => {
                tracing::warn!(error = %e, "git write failed on a stale lock file; removed it and trying again");
                commit_on(&self.git)?
            }
            Err(e) => return Err(e.into()),
        };
        if self.crash_after_commit {
            tracing::error!(%commit, "SCRIPTORIUM_FAULT=after-git-commit: aborting before the metadata is recorded");
            std::process::abort();
        }
        let recorded = if self.fail_record {
            Err(RepoError::Db(rusqlite::Error::InvalidQuery))
        } else {
            record(&tx, commit, branch, change, doc)
        };
        match recorded.and_then(|()| Ok(tx.commit()?)) {
            Ok(()) => {
                tracing::info!(action = change.action.as_str(), script = change.script, %commit, branch, "recorded change");
                Ok(commit)
            }
            Err(e) => {
                self.undone_max_id = self.undone_max_id.max(change.script);
                match self.git.undo(branch, commit, parent) {
                    Ok(()) => {
                        tracing::warn!(%commit, branch, error = %e, "the change could not be recorded; its commit is undone")
                    }
                    Err(u) => {
                        tracing::error!(%commit, branch, error = %e, undo = %u, "the change could not be recorded nor undone; repair records it");
                        if let Err(r) = self.repair() {
                            tracing::error!(error = %r, "repair after a failed write failed; it runs again at start-up");
                        }
                    }
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, ed1, git_cli};
    use super::super::*;

    #[test]
    fn a_change_that_cannot_be_recorded_is_undone_and_its_id_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = ScriptStore::open(&config(dir.path())).unwrap();
        let a = store
            .create(&ed1(), Some("x = 1\n".into()), None, None)
            .unwrap();
        let tip = store.git.tip("ed1").unwrap();

        store.fail_record = true;
        let err = store
            .create(&ed1(), Some("x = 2\n".into()), None, None)
            .unwrap_err();
        assert!(matches!(err, RepoError::Db(_)), "{err}");
        // The branch is back where it was; the commit is kept aside.
        assert_eq!(store.git.tip("ed1").unwrap(), tip);
        assert_eq!(
            git_cli(
                dir.path(),
                &[
                    "for-each-ref",
                    "--format=%(refname)",
                    "refs/scriptorium/undone/"
                ]
            )
            .lines()
            .count(),
            1
        );
        assert!(!store.health.check().ok(), "health shows the failed write");

        store.fail_record = false;
        let c = store
            .create(&ed1(), Some("x = 3\n".into()), None, None)
            .unwrap();
        assert_eq!(
            (a, c),
            (1, 3),
            "the undone create's id 2 is not handed out again"
        );
        assert!(store.health.check().ok());
        drop(store);
        let (mut store, report) = ScriptStore::open(&config(dir.path())).unwrap();
        assert!(
            report.recovered.is_empty() && report.orphans.is_empty(),
            "{report:?}"
        );
        assert_eq!(
            store
                .create(&ed1(), Some("x = 4\n".into()), None, None)
                .unwrap(),
            4,
            "not after a restart either"
        );
        let creates = git_cli(dir.path(), &["log", "ed1", "--format=%s", "--grep=^Create"]);
        assert_eq!(
            creates.lines().collect::<Vec<_>>(),
            [
                "Create script_0004.py (0.1)",
                "Create script_0003.py (0.1)",
                "Create script_0001.py (0.1)"
            ]
        );
    }
}
