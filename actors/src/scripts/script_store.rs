//! The write side of the script repository: git commits plus SQLite metadata.
//!
//! One order for every change ([`ScriptStore::apply`]):
//! 1. take SQLite's write lock (`BEGIN IMMEDIATE`, waiting out other writers), so
//!    recording cannot then fail for contention;
//! 2. make the git commit, whose message trailers describe the change completely (a
//!    [`Change`]);
//! 3. record the same `Change` in SQLite with [`record`] and commit the transaction.
//!
//! If step 3 fails, the commit is undone (the branch points back at its parent; the
//! commit is kept under `refs/scriptorium/undone/`) and the request fails with nothing
//! changed. If the process dies between 2 and 3, start-up repair finds the commits
//! that SQLite does not know and records them with the very same function, so git and
//! SQLite agree again and no acknowledged save is ever lost. An unknown commit with
//! recorded history on top of it that changes the same script (an orphan of a failed
//! request, made by older versions) is marked `orphan`, never recorded as a second
//! change. Script ids are never handed out twice: the next id is past every id that
//! SQLite, any commit or any undone commit has used.

use std::path::PathBuf;
use std::sync::Arc;

use git2::{ObjectType, Oid};
use rusqlite::{Connection, OptionalExtension, params};

use crate::data_dir::DataDir;
use crate::db;
use crate::deps;
use crate::domain::ordering::Ordering;
use crate::domain::version::Version;
use crate::error::{RepoError, Result};
use crate::scripts::gitlock;
use crate::scripts::gitstore::{Edit, GitStore, PROD, stem, validate_filename};
use crate::scripts::health::WriteHealth;
use crate::scripts::python::{Checked, PythonChecker};

mod archive;
mod change;
mod lock;
mod numbering;
mod repair;
mod template;

use change::record;
pub(crate) use change::{Action, Change};
use lock::LockEdit;
pub(crate) use repair::RepairReport;

mod team;
mod test_data;
pub use archive::MAX_PUBLISH_NOTE;
pub use team::{ForkOrderings, MergedFrom};
pub use test_data::{TestDataMerged, TestDataSaved, empty_etag as empty_test_data_etag};

/// The largest script accepted.
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
/// The largest test data accepted.
pub const MAX_TEST_DATA_BYTES: usize = 8 * 1024 * 1024;

/// Who makes a change.
#[derive(Debug, Clone)]
pub struct Committer {
    pub username: String,
    pub email: String,
    /// The branch the change is committed on (an editor's own; `prod` only by publishing).
    pub branch: String,
}

impl Committer {
    /// The identity of changes Scriptorium makes itself (the first-start examples), on
    /// the first editor's branch.
    pub fn system(branch: &str) -> Committer {
        Committer {
            username: "scriptorium".into(),
            email: "scriptorium@localhost".into(),
            branch: branch.into(),
        }
    }
}

/// What opening the store needs.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// The interpreter used to check syntax.
    pub python: crate::scripts::python::PythonCommand,
    /// Editors; each gets a branch.
    pub editors: Vec<String>,
    /// Lines for the new-script template naming the available interpreters.
    pub interpreters_note: Vec<String>,
    /// Seed the example scripts into an empty repository.
    pub seed_examples: bool,
    /// Where failed and successful writes are reported (for `/api/health`).
    pub health: Arc<WriteHealth>,
    /// How declared dependencies are resolved (off the actor) and each script's state.
    pub deps: Arc<deps::resolutions::Resolutions>,
}

impl StoreConfig {
    pub fn repo_path(&self) -> PathBuf {
        DataDir::new(&self.data_dir).repo()
    }
    pub fn db_path(&self) -> PathBuf {
        DataDir::new(&self.data_dir).database()
    }
}

/// The current state of one script, as the write side needs it.
#[derive(Debug, Clone)]
struct Current {
    filename: String,
    version: Version,
    blob: Oid,
    test_data: Option<Oid>,
    published: Option<Version>,
    lock: Option<(Oid, String)>,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub version: Version,
    /// False when the content equalled the current version: nothing was committed.
    pub changed: bool,
    /// Set when the edit was based on an older version and merged onto the current one.
    pub merged: Option<MergedFrom>,
    /// Another script on `prod` with the same executable code: a warning, since
    /// publishing this version would be refused.
    pub duplicate_of: Option<crate::domain::team::DuplicateOf>,
    /// The sha256 of the new version's dependency lock, if it has one.
    pub lock_hash: Option<String>,
    /// True when this save resolved a new lock (the block changed).
    pub relocked: bool,
}

pub(crate) struct ScriptStore {
    conn: Connection,
    git: GitStore,
    checker: PythonChecker,
    interpreters_note: Vec<String>,
    editors: Vec<String>,
    health: Arc<WriteHealth>,
    /// The highest script id of an undone commit (ids are never handed out twice).
    undone_max_id: i64,
    deps: Arc<deps::resolutions::Resolutions>,
    /// Test hook: abort the process between the git commit and the SQLite record,
    /// as a crash would (`SCRIPTORIUM_FAULT=after-git-commit`).
    crash_after_commit: bool,
    /// Test hook: recording fails after the git commit, as a full disk would.
    fail_record: bool,
}

impl ScriptStore {
    /// Opens the repository and database, repairs any disagreement, and seeds the
    /// examples on first start.
    pub(crate) fn open(cfg: &StoreConfig) -> Result<(ScriptStore, RepairReport)> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            RepoError::BadInput(format!(
                "cannot create data directory {}: {e}",
                cfg.data_dir.display()
            ))
        })?;
        // Before anything writes to git: a lock left by a killed process would stop
        // every later update of its branch.
        let cleared_locks = gitlock::clear_stale(&cfg.repo_path());
        let editors: Vec<&str> = cfg.editors.iter().map(String::as_str).collect();
        let git = GitStore::open_or_init(&cfg.repo_path(), &editors)?;
        let conn = db::open(&cfg.db_path())?;
        let mut store = ScriptStore {
            conn,
            git,
            checker: PythonChecker::with_command(cfg.python.clone()),
            interpreters_note: cfg.interpreters_note.clone(),
            editors: cfg.editors.clone(),
            health: cfg.health.clone(),
            undone_max_id: 0,
            deps: cfg.deps.clone(),
            crash_after_commit: std::env::var("SCRIPTORIUM_FAULT").as_deref()
                == Ok("after-git-commit"),
            fail_record: false,
        };
        store.undone_max_id = store
            .git
            .undone()?
            .iter()
            .filter_map(|m| Change::from_message(m))
            .map(|c| c.script)
            .max()
            .unwrap_or(0);
        let mut report = store.repair()?;
        report.cleared_locks = cleared_locks;
        if cfg.seed_examples && store.is_empty()? {
            store.seed_examples()?;
        }
        Ok((store, report))
    }

    fn is_empty(&self) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM scripts", [], |r| r.get::<_, i64>(0))?
            == 0)
    }

    fn current(&self, id: i64) -> Result<Current> {
        let row = self
            .conn
            .query_row(
                "SELECT s.filename, s.major, s.minor, v.blob_id, s.test_data_blob, s.published_major, s.published_minor,
                        v.lock_blob, v.lock_hash
                 FROM scripts s JOIN versions v ON v.script_id = s.id AND v.major = s.major AND v.minor = s.minor
                 WHERE s.id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Version::new(r.get(1)?, r.get(2)?),
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<u32>>(5)?,
                        r.get::<_, Option<u32>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                },
            )
            .optional()?
            .ok_or(RepoError::NotFound(id))?;
        Ok(Current {
            filename: row.0,
            version: row.1,
            blob: parse_oid(&row.2)?,
            test_data: row.3.as_deref().map(parse_oid).transpose()?,
            published: match (row.4, row.5) {
                (Some(a), Some(b)) => Some(Version::new(a, b)),
                _ => None,
            },
            lock: match (row.6, row.7) {
                (Some(b), Some(h)) => Some((parse_oid(&b)?, h)),
                _ => None,
            },
        })
    }

    /// Validates `content`: its docstring and its executable-code hash.
    fn check(&mut self, content: &str) -> Result<(Option<String>, String)> {
        if content.len() > MAX_CONTENT_BYTES {
            return Err(RepoError::TooLarge {
                what: "the script",
                size: content.len(),
                limit: MAX_CONTENT_BYTES,
            });
        }
        match self.checker.check(content)? {
            Checked::Valid {
                docstring,
                code_hash,
            } => Ok((docstring, code_hash)),
            Checked::Invalid(p) => Err(RepoError::InvalidPython(p)),
        }
    }

    /// Creates a script (the first save: version 0.1, a commit on the editor's branch).
    pub(crate) fn create(
        &mut self,
        who: &Committer,
        content: Option<String>,
        filename: Option<String>,
        ordering: Option<Ordering>,
    ) -> Result<i64> {
        let content = content.unwrap_or_else(|| self.template());
        let (doc, hash) = self.check(&content)?;
        let id = self.next_id()?;
        let file = match filename {
            Some(f) => {
                validate_filename(&f)?;
                f
            }
            None => format!("script_{id:04}.py"),
        };
        if self
            .conn
            .query_row("SELECT 1 FROM scripts WHERE filename = ?1", [&file], |_| {
                Ok(())
            })
            .optional()?
            .is_some()
        {
            return Err(RepoError::Conflict(format!(
                "a script named `{file}` already exists; choose another file name"
            )));
        }
        let ordering = match ordering {
            Some(o) => {
                if let Some(other) = self.ordering_taken(&o)? {
                    return Err(RepoError::Conflict(format!(
                        "ordering number {o} is taken by script {other}; choose another or leave it out to get the next free one"
                    )));
                }
                o
            }
            None => self.next_ordering()?,
        };
        let (lock, lock_edit) = self.lock_for(&content, None, None)?;
        let blob = self.git.write_blob(content.as_bytes())?;
        let mut change = Change::new(Action::Create, id, who);
        change.version = Some(Version::FIRST);
        change.blob = Some(blob);
        change.file = Some(file.clone());
        change.ordering = Some(ordering);
        change.lock = lock;
        let lock_path = deps::lock_path(&file);
        let script_path = format!("scripts/{file}");
        let mut edits = vec![Edit::Put {
            path: &script_path,
            blob,
        }];
        edits.extend(lock_edit.map(|e| e.edit(&lock_path)));
        self.apply(
            &change,
            &edits,
            &who.email,
            &format!("Create {file} (0.1)"),
            doc.as_deref(),
        )?;
        self.remember_hash(blob, &hash);
        Ok(id)
    }

    /// Saves new content: Minor + 1. An edit based on an older version `base` is merged
    /// three-way onto the current one; overlapping edits are refused with the hunks
    /// ([`RepoError::MergeConflict`]) and nothing is saved.
    pub(crate) fn save(
        &mut self,
        who: &Committer,
        id: i64,
        content: &str,
        base: Version,
    ) -> Result<Saved> {
        let cur = self.current(id)?;
        // Before any merging work: an oversized edit is refused as it is.
        if content.len() > MAX_CONTENT_BYTES {
            return Err(RepoError::TooLarge {
                what: "the script",
                size: content.len(),
                limit: MAX_CONTENT_BYTES,
            });
        }
        let (content, merged) = self.rebase_edit(id, &cur, base, content)?;
        let content = content.as_str();
        let (doc, hash) = self.check(content)?;
        if Oid::hash_object(ObjectType::Blob, content.as_bytes())? == cur.blob {
            return Ok(Saved {
                version: cur.version,
                changed: false,
                merged,
                duplicate_of: None,
                lock_hash: cur.lock.map(|l| l.1),
                relocked: false,
            });
        }
        let old = String::from_utf8_lossy(&self.git.read_blob(cur.blob)?).into_owned();
        let (lock, lock_edit) = self.lock_for(content, Some(&old), cur.lock.as_ref())?;
        let blob = self.git.write_blob(content.as_bytes())?;
        let version = cur.version.next_minor();
        let mut change = Change::new(Action::Save, id, who);
        change.version = Some(version);
        change.blob = Some(blob);
        let relocked = matches!(lock_edit, Some(LockEdit::Put(_)));
        let lock_hash = lock.as_ref().map(|l| l.1.clone());
        change.lock = lock;
        let path = format!("scripts/{}", cur.filename);
        let lock_path = deps::lock_path(&cur.filename);
        let mut edits = vec![Edit::Put { path: &path, blob }];
        edits.extend(lock_edit.map(|e| e.edit(&lock_path)));
        let subject = match merged {
            Some(m) => format!(
                "Save {} as {version}, an edit of {} merged with {}",
                cur.filename, m.base, m.theirs
            ),
            None => format!("Save {} as {version}", cur.filename),
        };
        self.apply(&change, &edits, &who.email, &subject, doc.as_deref())?;
        self.remember_hash(blob, &hash);
        let duplicate_of = self.duplicate_on_prod(&cur.filename, &hash)?;
        Ok(Saved {
            version,
            changed: true,
            merged,
            duplicate_of,
            lock_hash,
            relocked,
        })
    }

    /// Major + 1, Minor 0 (0.7 → 1.0): a commit of its own with the same content.
    pub(crate) fn bump_major(&mut self, who: &Committer, id: i64) -> Result<Version> {
        let cur = self.current(id)?;
        let version = cur.version.next_major();
        let mut change = Change::new(Action::Bump, id, who);
        change.version = Some(version);
        change.blob = Some(cur.blob);
        change.lock = cur.lock.clone();
        let doc = self.docstring_of(cur.blob)?;
        let path = format!("scripts/{}", cur.filename);
        self.apply(
            &change,
            &[Edit::Put {
                path: &path,
                blob: cur.blob,
            }],
            &who.email,
            &format!("Bump {} to {version}", cur.filename),
            doc.as_deref(),
        )?;
        Ok(version)
    }

    /// A new script on the editor's branch with the current content and test data of
    /// `id`, at `ordering` (default: the next free number in the parent's group, else
    /// the next whole number).
    pub(crate) fn fork(
        &mut self,
        who: &Committer,
        id: i64,
        ordering: Option<Ordering>,
    ) -> Result<i64> {
        let cur = self.current(id)?;
        let ordering = match ordering {
            Some(o) => {
                if let Some(other) = self.ordering_taken(&o)? {
                    return Err(RepoError::Conflict(format!(
                        "ordering number {o} is taken by script {other}; choose another (see /api/scripts/{id}/fork-ordering)"
                    )));
                }
                o
            }
            None => {
                let options = self.fork_orderings(id)?;
                options.same_group.unwrap_or(options.new_group)
            }
        };
        let new_id = self.next_id()?;
        let file = format!("script_{new_id:04}.py");
        let mut change = Change::new(Action::Fork, new_id, who);
        change.version = Some(Version::FIRST);
        change.blob = Some(cur.blob);
        change.file = Some(file.clone());
        change.ordering = Some(ordering);
        change.parent = Some((id, cur.version));
        change.test_data = cur.test_data;
        change.lock = cur.lock.clone();
        let script_path = format!("scripts/{file}");
        let data_path = format!("testdata/{}", stem(&file));
        let lock_path = deps::lock_path(&file);
        let mut edits = vec![Edit::Put {
            path: &script_path,
            blob: cur.blob,
        }];
        if let Some((blob, _)) = cur.lock {
            edits.push(LockEdit::Put(blob).edit(&lock_path));
        }
        if let Some(t) = cur.test_data {
            edits.push(Edit::Put {
                path: &data_path,
                blob: t,
            });
        }
        let doc = self.docstring_of(cur.blob)?;
        let subject = format!("Fork {} {} as {file}", cur.filename, cur.version);
        self.apply(&change, &edits, &who.email, &subject, doc.as_deref())?;
        Ok(new_id)
    }

    /// Puts the current version (and test data) on `prod`. Returns false if it was there.
    /// `seen`: the version the editor looked at; if the script moved since, nothing is
    /// published ([`RepoError::Moved`]). Code already on `prod` as another script is
    /// refused ([`RepoError::Duplicate`]).
    pub(crate) fn publish(
        &mut self,
        who: &Committer,
        id: i64,
        seen: Option<Version>,
    ) -> Result<(Version, bool)> {
        self.publish_with_note(who, id, seen, None)
    }

    /// Publishes; `note` (the publisher's words) becomes a paragraph of the commit
    /// message, before the trailers (which are always the last paragraph).
    pub(crate) fn publish_with_note(
        &mut self,
        who: &Committer,
        id: i64,
        seen: Option<Version>,
        note: Option<&str>,
    ) -> Result<(Version, bool)> {
        let cur = self.current(id)?;
        self.refuse_archived(id)?;
        if let Some(seen) = seen.filter(|s| *s != cur.version) {
            return Err(RepoError::Moved {
                script: id,
                seen,
                current: cur.version,
            });
        }
        let script_path = format!("scripts/{}", cur.filename);
        let data_path = format!("testdata/{}", stem(&cur.filename));
        let lock_path = deps::lock_path(&cur.filename);
        let on_prod = self.git.blob_at(PROD, &script_path)?;
        let data_on_prod = self.git.blob_at(PROD, &data_path)?;
        let lock_on_prod = self.git.blob_at(PROD, &lock_path)?;
        let lock_blob = cur.lock.as_ref().map(|l| l.0);
        if cur.published == Some(cur.version)
            && on_prod == Some(cur.blob)
            && data_on_prod == cur.test_data
            && lock_on_prod == lock_blob
        {
            return Ok((cur.version, false));
        }
        self.refuse_duplicate(id, &cur)?;
        let mut change = Change::new(Action::Publish, id, who);
        change.version = Some(cur.version);
        change.blob = Some(cur.blob);
        change.test_data = cur.test_data;
        let mut edits = vec![Edit::Put {
            path: &script_path,
            blob: cur.blob,
        }];
        edits.push(match cur.test_data {
            Some(blob) => Edit::Put {
                path: &data_path,
                blob,
            },
            None => Edit::Remove { path: &data_path },
        });
        edits.push(
            match lock_blob {
                Some(b) => LockEdit::Put(b),
                None => LockEdit::Remove,
            }
            .edit(&lock_path),
        );
        self.apply(
            &change,
            &edits,
            &who.email,
            &archive::publish_subject(&cur.filename, cur.version, note),
            None,
        )?;
        Ok((cur.version, true))
    }

    /// Moves a script to another ordering number (metadata only).
    pub(crate) fn set_ordering(&mut self, id: i64, ordering: &Ordering) -> Result<()> {
        self.current(id)?;
        match self.ordering_taken(ordering)? {
            Some(other) if other != id => Err(RepoError::Conflict(format!(
                "ordering number {ordering} is taken by script {other}"
            ))),
            _ => {
                self.conn.execute(
                    "UPDATE scripts SET ordering_group = ?1, ordering_frac = ?2 WHERE id = ?3",
                    params![ordering.group() as i64, ordering.fraction(), id],
                )?;
                Ok(())
            }
        }
    }

    fn docstring_of(&mut self, blob: Oid) -> Result<Option<String>> {
        let bytes = self.git.read_blob(blob)?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(match self.checker.check(&text)? {
            Checked::Valid { docstring, .. } => docstring,
            Checked::Invalid(_) => None,
        })
    }
}

pub(super) fn parse_oid(s: &str) -> Result<Oid> {
    Ok(Oid::from_str(s)?)
}

#[cfg(test)]
mod tests;
