//! The read side of the script repository: list, details, history and contents.
//!
//! Readers do not go through the `ScriptRepo` actor: SQLite in WAL mode lets them read
//! a consistent snapshot while the actor writes, and git objects never change. Each
//! call is blocking; the server calls it from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use git2::{Oid, Repository};
use rusqlite::{Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

use crate::data_dir::DataDir;
use crate::db;
use crate::domain::clock::{self, Centis};
use crate::domain::ordering::Ordering;
use crate::domain::version::Version;
use crate::error::{RepoError, Result};

/// One row of the script list.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ScriptSummary {
    pub id: i64,
    pub ordering: Ordering,
    pub name: String,
    pub filename: String,
    pub version: Version,
    pub published_version: Option<Version>,
    /// RFC 3339 with 0.01 s precision.
    pub last_modified: String,
    /// The full docstring.
    pub description: String,
    pub parent: Option<Parent>,
    pub has_test_data: bool,
    /// Archived: out of the queue and of every run-all pass (history kept).
    pub archived: bool,
    /// The latest run of the script, once runs exist.
    #[ts(
        type = "{ run_id: number, status: string, started_at: string | null, ended_at: string | null } | null"
    )]
    pub last_run: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Serialize, ts_rs::TS)]
pub struct Parent {
    pub id: i64,
    pub version: Version,
}

/// A script with its current content.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ScriptDetail {
    #[serde(flatten)]
    pub summary: ScriptSummary,
    pub content: String,
    pub created_by: String,
    pub created_at: String,
    pub published_at: Option<String>,
    pub published_by: Option<String>,
    /// What the current version declares (PEP 723) and what its lock pins.
    pub dependencies: crate::deps::Dependencies,
}

/// One entry of a script's history.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct VersionInfo {
    pub version: Version,
    /// `create`, `save`, `bump` or `fork`.
    pub kind: String,
    pub committer: String,
    pub created_at: String,
    pub commit: String,
    pub branch: String,
    pub published: bool,
}

/// A script version ready to run.
#[derive(Debug, Clone)]
pub struct RunSource {
    pub id: i64,
    pub filename: String,
    pub ordering: Ordering,
    pub version: Version,
    pub content: String,
    pub test_data: Vec<u8>,
    /// The dependency lock committed with this version, if it declares any.
    pub lock: Option<crate::deps::lock::Lock>,
}

pub struct Catalog {
    db_path: PathBuf,
    repo_path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

const SUMMARY_COLUMNS: &str = "s.id, s.ordering_group, s.ordering_frac, s.name, s.filename, s.major, s.minor,
    s.published_major, s.published_minor, s.last_modified, s.description, s.parent_id, s.parent_major,
    s.parent_minor, s.test_data_blob IS NOT NULL, s.archived_at IS NOT NULL";

fn summary(r: &Row<'_>) -> rusqlite::Result<ScriptSummary> {
    let pair = |a: Option<u32>, b: Option<u32>| a.zip(b).map(|(a, b)| Version::new(a, b));
    Ok(ScriptSummary {
        id: r.get(0)?,
        ordering: Ordering::from_parts(r.get::<_, i64>(1)? as u64, &r.get::<_, String>(2)?),
        name: r.get(3)?,
        filename: r.get(4)?,
        version: Version::new(r.get(5)?, r.get(6)?),
        published_version: pair(r.get(7)?, r.get(8)?),
        last_modified: clock::format(r.get(9)?),
        description: r.get(10)?,
        parent: match (r.get::<_, Option<i64>>(11)?, pair(r.get(12)?, r.get(13)?)) {
            (Some(id), Some(version)) => Some(Parent { id, version }),
            _ => None,
        },
        has_test_data: r.get(14)?,
        archived: r.get(15)?,
        last_run: None,
    })
}

impl Catalog {
    pub fn new(data_dir: &Path) -> Catalog {
        Catalog {
            db_path: DataDir::new(data_dir).database(),
            repo_path: DataDir::new(data_dir).repo(),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a pooled read connection.
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.pool.lock().expect("pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => db::open_existing(&self.db_path)?,
        };
        let out = f(&conn);
        let mut pool = self.pool.lock().expect("pool lock");
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }

    fn repo(&self) -> Result<Repository> {
        Ok(Repository::open_bare(&self.repo_path)?)
    }

    /// All scripts in ordering order, each with its latest run.
    pub fn list(&self) -> Result<Vec<ScriptSummary>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM scripts s ORDER BY s.ordering_group, s.ordering_frac"
            ))?;
            let mut rows = stmt
                .query_map([], summary)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut latest = latest_runs(c)?;
            for r in &mut rows {
                r.last_run = latest.remove(&r.id);
            }
            Ok(rows)
        })
    }

    /// What a single run of a script needs: the content of `version` (default: the
    /// current one) and the current test data.
    pub fn run_source(&self, id: i64, version: Option<Version>) -> Result<RunSource> {
        let summary = self.summary(id)?;
        let version = version.unwrap_or(summary.version);
        let content = self.version_content(id, version)?;
        let test_data = self.test_data(id)?;
        let lock = self.version_lock(id, version)?;
        Ok(RunSource {
            id,
            filename: summary.filename,
            ordering: summary.ordering,
            version,
            content,
            test_data,
            lock,
        })
    }

    /// The scripts published on `prod`, in ordering order, with their published
    /// content and the test data published with them.
    pub fn published(&self) -> Result<Vec<RunSource>> {
        let rows: Vec<(i64, String, u64, String, u32, u32, String)> = self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.id, s.filename, s.ordering_group, s.ordering_frac, s.published_major, s.published_minor, v.blob_id
                 FROM scripts s JOIN versions v
                   ON v.script_id = s.id AND v.major = s.published_major AND v.minor = s.published_minor
                 WHERE s.published_major IS NOT NULL AND s.archived_at IS NULL
                 ORDER BY s.ordering_group, s.ordering_frac",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        let repo = self.repo()?;
        let prod = repo
            .find_branch(crate::scripts::gitstore::PROD, git2::BranchType::Local)?
            .get()
            .peel_to_tree()?;
        rows.into_iter()
            .map(|(id, filename, group, frac, major, minor, blob)| {
                let test_data = match prod.get_path(std::path::Path::new(&format!(
                    "testdata/{}",
                    crate::scripts::gitstore::stem(&filename)
                ))) {
                    Ok(entry) => repo.find_blob(entry.id())?.content().to_vec(),
                    Err(_) => Vec::new(),
                };
                Ok(RunSource {
                    id,
                    filename,
                    ordering: Ordering::from_parts(group, &frac),
                    version: Version::new(major, minor),
                    content: self.blob_text(&blob)?,
                    test_data,
                    lock: self.version_lock(id, Version::new(major, minor))?,
                })
            })
            .collect()
    }

    pub fn summary(&self, id: i64) -> Result<ScriptSummary> {
        self.with_conn(|c| {
            c.query_row(
                &format!("SELECT {SUMMARY_COLUMNS} FROM scripts s WHERE s.id = ?1"),
                [id],
                summary,
            )
            .optional()?
            .ok_or(RepoError::NotFound(id))
        })
    }

    /// A script's metadata and the content of its current version.
    pub fn detail(&self, id: i64) -> Result<ScriptDetail> {
        let (summary, blob, created_by, created_at, published_at, published_by) = self.with_conn(|c| {
            c.query_row(
                &format!(
                    "SELECT {SUMMARY_COLUMNS}, v.blob_id, s.created_by, s.created_at, s.published_at, s.published_by
                     FROM scripts s JOIN versions v ON v.script_id = s.id AND v.major = s.major AND v.minor = s.minor
                     WHERE s.id = ?1"
                ),
                [id],
                |r| {
                    Ok((
                        summary(r)?,
                        r.get::<_, String>(16)?,
                        r.get::<_, String>(17)?,
                        r.get::<_, i64>(18)?,
                        r.get::<_, Option<i64>>(19)?,
                        r.get::<_, Option<String>>(20)?,
                    ))
                },
            )
            .optional()?
            .ok_or(RepoError::NotFound(id))
        })?;
        let content = self.blob_text(&blob)?;
        let lock = self.version_lock(id, summary.version)?;
        let dependencies = crate::deps::Dependencies::of(&content, lock.as_ref());
        Ok(ScriptDetail {
            summary,
            dependencies,
            content,
            created_by,
            created_at: clock::format(created_at),
            published_at: published_at.map(clock::format),
            published_by,
        })
    }

    /// The history of a script, newest first.
    pub fn versions(&self, id: i64) -> Result<Vec<VersionInfo>> {
        self.with_conn(|c| {
            let published: Option<(Option<u32>, Option<u32>)> = c
                .query_row(
                    "SELECT published_major, published_minor FROM scripts WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some(published) = published else {
                return Err(RepoError::NotFound(id));
            };
            let mut stmt = c.prepare_cached(
                "SELECT major, minor, kind, committer, created_at, commit_id, branch FROM versions
                 WHERE script_id = ?1 ORDER BY major DESC, minor DESC",
            )?;
            let rows = stmt
                .query_map([id], |r| {
                    let version = Version::new(r.get(0)?, r.get(1)?);
                    Ok(VersionInfo {
                        version,
                        kind: r.get(2)?,
                        committer: r.get(3)?,
                        created_at: clock::format(r.get(4)?),
                        commit: r.get(5)?,
                        branch: r.get(6)?,
                        published: published == (Some(version.major), Some(version.minor)),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// The content of one version.
    pub fn version_content(&self, id: i64, version: Version) -> Result<String> {
        let blob: String =
            self.with_conn(|c| {
                if c.query_row("SELECT 1 FROM scripts WHERE id = ?1", [id], |_| Ok(()))
                    .optional()?
                    .is_none()
                {
                    return Err(RepoError::NotFound(id));
                }
                c.query_row(
                "SELECT blob_id FROM versions WHERE script_id = ?1 AND major = ?2 AND minor = ?3",
                rusqlite::params![id, version.major, version.minor],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(RepoError::NoSuchVersion { script: id, version })
            })?;
        self.blob_text(&blob)
    }

    /// The current test data (empty when none was set).
    pub fn test_data(&self, id: i64) -> Result<Vec<u8>> {
        let blob: Option<String> = self.with_conn(|c| {
            c.query_row(
                "SELECT test_data_blob FROM scripts WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(RepoError::NotFound(id))
        })?;
        match blob {
            Some(b) => Ok(self
                .repo()?
                .find_blob(Oid::from_str(&b)?)?
                .content()
                .to_vec()),
            None => Ok(Vec::new()),
        }
    }

    /// The lock committed with a version (`None` when it declares no dependencies).
    pub fn version_lock(
        &self,
        id: i64,
        version: Version,
    ) -> Result<Option<crate::deps::lock::Lock>> {
        let blob: Option<String> = self.with_conn(|c| {
            Ok(c.query_row(
                "SELECT lock_blob FROM versions WHERE script_id = ?1 AND major = ?2 AND minor = ?3",
                rusqlite::params![id, version.major, version.minor],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
        })?;
        blob.map(|b| Ok(crate::deps::lock::Lock::new(self.blob_text(&b)?)))
            .transpose()
    }

    fn blob_text(&self, blob: &str) -> Result<String> {
        let repo = self.repo()?;
        let b = repo.find_blob(Oid::from_str(blob)?)?;
        // Saved content was checked to be UTF-8 text.
        Ok(String::from_utf8_lossy(b.content()).into_owned())
    }
}

/// The latest run of each script: for the script list.
pub(crate) fn latest_runs(c: &Connection) -> Result<std::collections::HashMap<i64, Value>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.script_id, r.id, r.status, r.ended_at, r.started_at FROM runs r
         JOIN (SELECT script_id, MAX(id) AS id FROM runs GROUP BY script_id) m ON m.id = r.id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            let ended: Option<Centis> = r.get(3)?;
            let started: Option<Centis> = r.get(4)?;
            Ok((
                r.get::<_, i64>(0)?,
                serde_json::json!({
                    "run_id": r.get::<_, i64>(1)?,
                    "status": r.get::<_, String>(2)?,
                    "started_at": started.map(clock::format),
                    "ended_at": ended.map(clock::format),
                }),
            ))
        })?
        .collect::<rusqlite::Result<std::collections::HashMap<_, _>>>()?;
    Ok(rows)
}
