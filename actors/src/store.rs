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

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use git2::{ObjectType, Oid};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::clock::{self, Centis};
use crate::db;
use crate::gitlock;
use crate::gitstore::{Author, Edit, GitStore, PROD, trailers};
use crate::health::WriteHealth;
use crate::ordering::Ordering;
use crate::python::{Checked, CheckerError, PythonChecker, SyntaxProblem, name_from_docstring};
use crate::version::Version;

/// The largest script accepted.
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
/// The largest test data accepted.
pub const MAX_TEST_DATA_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("script {0} does not exist")]
    NotFound(i64),
    #[error("version {version} of script {script} does not exist")]
    NoSuchVersion { script: i64, version: Version },
    #[error(
        "script {script} is at version {current}, but this change was based on {base}; reload it, merge your edits and save again"
    )]
    Stale {
        script: i64,
        base: Version,
        current: Version,
    },
    #[error("the script is not valid Python: {0}")]
    InvalidPython(SyntaxProblem),
    #[error("{what} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("{0}")]
    BadInput(String),
    /// Something other than a script does not exist (a run, a pass, an artifact).
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Conflict(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Checker(#[from] CheckerError),
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

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
    /// The Python used to check syntax.
    pub python: crate::python::PythonCommand,
    /// Editors; each gets a branch.
    pub editors: Vec<String>,
    /// Lines for the new-script template naming the available interpreters.
    pub interpreters_note: Vec<String>,
    /// Seed the example scripts into an empty repository.
    pub seed_examples: bool,
    /// Where failed and successful writes are reported (for `/api/health`).
    pub health: Arc<WriteHealth>,
}

impl StoreConfig {
    pub fn repo_path(&self) -> PathBuf {
        self.data_dir.join("repo")
    }
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("scriptorium.db")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Fork,
    Save,
    Bump,
    TestData,
    Publish,
}

impl Action {
    fn as_str(self) -> &'static str {
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
pub struct Change {
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
}

impl Change {
    fn new(action: Action, script: i64, who: &Committer) -> Change {
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
        }
    }

    fn message(&self, subject: &str) -> String {
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
        add("User", self.user.clone());
        add("Time", self.at.to_string());
        m
    }

    /// Reads a change back from a commit message; `None` if it is not one of ours.
    pub fn from_message(message: &str) -> Option<Change> {
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
        })
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
}

/// What a save did.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub version: Version,
    /// False when the content equalled the current version: nothing was committed.
    pub changed: bool,
}

/// What start-up repair did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepairReport {
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

pub struct ScriptStore {
    conn: Connection,
    git: GitStore,
    checker: PythonChecker,
    interpreters_note: Vec<String>,
    editors: Vec<String>,
    health: Arc<WriteHealth>,
    /// The highest script id of an undone commit (ids are never handed out twice).
    undone_max_id: i64,
    /// Test hook: abort the process between the git commit and the SQLite record,
    /// as a crash would (`SCRIPTORIUM_FAULT=after-git-commit`).
    crash_after_commit: bool,
    /// Test hook: recording fails after the git commit, as a full disk would.
    fail_record: bool,
}

impl ScriptStore {
    /// Opens the repository and database, repairs any disagreement, and seeds the
    /// examples on first start.
    pub fn open(cfg: &StoreConfig) -> Result<(ScriptStore, RepairReport)> {
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
                "SELECT s.filename, s.major, s.minor, v.blob_id, s.test_data_blob, s.published_major, s.published_minor
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
        })
    }

    fn check(&mut self, content: &str) -> Result<Option<String>> {
        if content.len() > MAX_CONTENT_BYTES {
            return Err(RepoError::TooLarge {
                what: "the script",
                size: content.len(),
                limit: MAX_CONTENT_BYTES,
            });
        }
        match self.checker.check(content)? {
            Checked::Valid { docstring } => Ok(docstring),
            Checked::Invalid(p) => Err(RepoError::InvalidPython(p)),
        }
    }

    /// Past every id used by a script, any recorded commit (orphans too) and any
    /// undone commit, so no id or file name is ever handed out twice.
    fn next_id(&self) -> Result<i64> {
        let used: i64 = self.conn.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM scripts), 0), COALESCE((SELECT MAX(script_id) FROM commits), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok(used.max(self.undone_max_id) + 1)
    }

    /// The next free whole number: after `3.xx` comes `4.0`.
    fn next_ordering(&self) -> Result<Ordering> {
        let g: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(ordering_group), 0) + 1 FROM scripts",
            [],
            |r| r.get(0),
        )?;
        Ok(Ordering::whole(g as u64))
    }

    fn ordering_taken(&self, o: &Ordering) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM scripts WHERE ordering_group = ?1 AND ordering_frac = ?2",
                params![o.group() as i64, o.fraction()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The template of a new script: docstring, `argv[1]` handling, and the interpreters.
    pub fn template(&self) -> String {
        let mut t = String::from(
            "\"\"\"New script\n\nDescribe what this script does. The first line above is its name in the list.\n\"\"\"\n",
        );
        t.push_str(
            "# Input: the runner writes this script's test data (or the production data) to a\n",
        );
        t.push_str(
            "# file and passes its path as the first argument, sys.argv[1]. Files written to\n",
        );
        t.push_str("# the working directory are kept as the run's artifacts.\n#\n");
        t.push_str("# Available interpreters (choose one when running):\n");
        if self.interpreters_note.is_empty() {
            t.push_str("#   (none detected; see interpreters.toml)\n");
        }
        for line in &self.interpreters_note {
            t.push_str(&format!("#   {line}\n"));
        }
        t.push_str(concat!(
            "import sys\n\n\n",
            "def main(argv: list[str]) -> int:\n",
            "    if len(argv) < 2:\n",
            "        print(\"usage: script INPUT_FILE\", file=sys.stderr)\n",
            "        return 2\n",
            "    with open(argv[1], encoding=\"utf-8\") as f:\n",
            "        data = f.read()\n",
            "    print(f\"read {len(data)} characters from {argv[1]}\")\n",
            "    return 0\n\n\n",
            "if __name__ == \"__main__\":\n",
            "    sys.exit(main(sys.argv))\n",
        ));
        t
    }

    /// Creates a script (the first save: version 0.1, a commit on the editor's branch).
    pub fn create(
        &mut self,
        who: &Committer,
        content: Option<String>,
        filename: Option<String>,
        ordering: Option<Ordering>,
    ) -> Result<i64> {
        let content = content.unwrap_or_else(|| self.template());
        let doc = self.check(&content)?;
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
        let blob = self.git.write_blob(content.as_bytes())?;
        let mut change = Change::new(Action::Create, id, who);
        change.version = Some(Version::FIRST);
        change.blob = Some(blob);
        change.file = Some(file.clone());
        change.ordering = Some(ordering);
        self.apply(
            &change,
            &[Edit::Put {
                path: &format!("scripts/{file}"),
                blob,
            }],
            &who.email,
            &format!("Create {file} (0.1)"),
            doc.as_deref(),
        )?;
        Ok(id)
    }

    /// Saves new content: Minor + 1, unless `base` is stale (→ [`RepoError::Stale`]).
    pub fn save(
        &mut self,
        who: &Committer,
        id: i64,
        content: &str,
        base: Version,
    ) -> Result<Saved> {
        let cur = self.current(id)?;
        if cur.version != base {
            return Err(RepoError::Stale {
                script: id,
                base,
                current: cur.version,
            });
        }
        let doc = self.check(content)?;
        if Oid::hash_object(ObjectType::Blob, content.as_bytes())? == cur.blob {
            return Ok(Saved {
                version: cur.version,
                changed: false,
            });
        }
        let blob = self.git.write_blob(content.as_bytes())?;
        let version = cur.version.next_minor();
        let mut change = Change::new(Action::Save, id, who);
        change.version = Some(version);
        change.blob = Some(blob);
        let path = format!("scripts/{}", cur.filename);
        self.apply(
            &change,
            &[Edit::Put { path: &path, blob }],
            &who.email,
            &format!("Save {} as {version}", cur.filename),
            doc.as_deref(),
        )?;
        Ok(Saved {
            version,
            changed: true,
        })
    }

    /// Major + 1, Minor 0 (0.7 → 1.0): a commit of its own with the same content.
    pub fn bump_major(&mut self, who: &Committer, id: i64) -> Result<Version> {
        let cur = self.current(id)?;
        let version = cur.version.next_major();
        let mut change = Change::new(Action::Bump, id, who);
        change.version = Some(version);
        change.blob = Some(cur.blob);
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

    /// A new script on the editor's branch with the current content and test data of `id`.
    pub fn fork(&mut self, who: &Committer, id: i64) -> Result<i64> {
        let cur = self.current(id)?;
        let new_id = self.next_id()?;
        let file = format!("script_{new_id:04}.py");
        let mut change = Change::new(Action::Fork, new_id, who);
        change.version = Some(Version::FIRST);
        change.blob = Some(cur.blob);
        change.file = Some(file.clone());
        change.ordering = Some(self.next_ordering()?);
        change.parent = Some((id, cur.version));
        change.test_data = cur.test_data;
        let script_path = format!("scripts/{file}");
        let data_path = format!("testdata/{}", stem(&file));
        let mut edits = vec![Edit::Put {
            path: &script_path,
            blob: cur.blob,
        }];
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

    /// Replaces the test data (a commit on the editor's branch).
    pub fn put_test_data(&mut self, who: &Committer, id: i64, data: &[u8]) -> Result<bool> {
        if data.len() > MAX_TEST_DATA_BYTES {
            return Err(RepoError::TooLarge {
                what: "the test data",
                size: data.len(),
                limit: MAX_TEST_DATA_BYTES,
            });
        }
        let cur = self.current(id)?;
        if cur.test_data == Some(Oid::hash_object(ObjectType::Blob, data)?) {
            return Ok(false);
        }
        let blob = self.git.write_blob(data)?;
        let mut change = Change::new(Action::TestData, id, who);
        change.blob = Some(blob);
        let path = format!("testdata/{}", stem(&cur.filename));
        self.apply(
            &change,
            &[Edit::Put { path: &path, blob }],
            &who.email,
            &format!("Update test data of {}", cur.filename),
            None,
        )?;
        Ok(true)
    }

    /// Puts the current version (and test data) on `prod`. Returns false if it was there.
    pub fn publish(&mut self, who: &Committer, id: i64) -> Result<(Version, bool)> {
        let cur = self.current(id)?;
        let script_path = format!("scripts/{}", cur.filename);
        let data_path = format!("testdata/{}", stem(&cur.filename));
        let on_prod = self.git.blob_at(PROD, &script_path)?;
        let data_on_prod = self.git.blob_at(PROD, &data_path)?;
        if cur.published == Some(cur.version)
            && on_prod == Some(cur.blob)
            && data_on_prod == cur.test_data
        {
            return Ok((cur.version, false));
        }
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
        self.apply(
            &change,
            &edits,
            &who.email,
            &format!("Publish {} {}", cur.filename, cur.version),
            None,
        )?;
        Ok((cur.version, true))
    }

    /// Moves a script to another ordering number (metadata only).
    pub fn set_ordering(&mut self, id: i64, ordering: &Ordering) -> Result<()> {
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
            Checked::Valid { docstring } => docstring,
            Checked::Invalid(_) => None,
        })
    }

    /// Takes the write lock, commits `change` to git, records it in SQLite (see the
    /// module comment for why in this order). On failure nothing is left changed.
    fn apply(
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

    /// Records commits that SQLite does not know about, oldest first. An unknown commit
    /// below a recorded one that changes the same script is an orphan of a failed
    /// request (history went on without it): it is marked, not applied.
    pub fn repair(&mut self) -> Result<RepairReport> {
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
                                            Checked::Valid { docstring } => docstring,
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

    fn seed_examples(&mut self) -> Result<()> {
        let who = Committer::system(self.editors.first().map(String::as_str).unwrap_or(PROD));
        let seeded: Vec<_> = crate::examples::EXAMPLES
            .iter()
            .filter_map(|e| e.seeded_at.map(|o| (o, e)))
            .collect();
        for (ordering, e) in &seeded {
            let id = self.create(
                &who,
                Some(e.content.to_string()),
                Some(e.filename.to_string()),
                Some(ordering.parse().expect("example ordering")),
            )?;
            self.put_test_data(&who, id, e.test_data.as_bytes())?;
            self.publish(&who, id)?;
        }
        tracing::info!(count = seeded.len(), "seeded example scripts on prod");
        Ok(())
    }
}

/// Writes one change's metadata. Used by the normal path and by repair alike.
fn record(
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
        "INSERT INTO versions (script_id, major, minor, kind, commit_id, blob_id, branch, committer, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![c.script, v.major, v.minor, kind, commit.to_string(), blob.to_string(), branch, c.user, c.at],
    )?;
    Ok(())
}

fn parse_oid(s: &str) -> Result<Oid> {
    Ok(Oid::from_str(s)?)
}

/// A script's file name without `.py`: the name of its test-data file.
pub fn stem(filename: &str) -> &str {
    filename.strip_suffix(".py").unwrap_or(filename)
}

/// A file name is one path component: letters, digits, `_`, `-`, ending in `.py`.
pub fn validate_filename(name: &str) -> Result<()> {
    if name.contains('/') || name.contains('\\') {
        return Err(RepoError::BadInput(format!(
            "file name `{name}` contains a path separator; give a plain name such as `load_sales.py`"
        )));
    }
    let stem = name
        .strip_suffix(".py")
        .ok_or_else(|| RepoError::BadInput(format!("file name `{name}` must end in `.py`")))?;
    let ok = !stem.is_empty()
        && stem.len() <= 64
        && stem
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(RepoError::BadInput(format!(
            "file name `{name}` is not allowed; use 1–64 letters, digits, `_` or `-` (starting with a letter or digit) and `.py`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> StoreConfig {
        StoreConfig {
            data_dir: dir.to_path_buf(),
            python: crate::python::PythonCommand::Native(PathBuf::from("/usr/bin/python3")),
            editors: vec!["ed1".into()],
            interpreters_note: Vec::new(),
            seed_examples: false,
            health: Arc::new(WriteHealth::new(dir)),
        }
    }

    fn ed1() -> Committer {
        Committer {
            username: "ed1".into(),
            email: "ed1@x".into(),
            branch: "ed1".into(),
        }
    }

    fn git_cli(dir: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir.join("repo"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

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
