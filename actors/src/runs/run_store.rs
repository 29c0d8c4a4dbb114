//! Runs, passes and their events in SQLite.
//!
//! Writes happen on the `RunScheduler`'s connection (its runs are the only writer of
//! these tables); the read functions take any connection, so the HTTP side reads
//! through the catalog's pool.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

use crate::domain::clock::{self, Centis};
use crate::domain::status::RunStatus;
use crate::domain::version::Version;
use crate::error::{RepoError, Result};
use crate::runs::events::{Event, EventKind};

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, ts_rs::TS)]
pub struct Artifact {
    /// Path relative to the run directory, with `/` separators.
    pub name: String,
    pub size: u64,
    pub content_type: String,
}

/// Something a run left in its directory that is not served: a symbolic link (never
/// followed), a FIFO, socket or device (never opened).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, ts_rs::TS)]
pub struct Skipped {
    pub name: String,
    /// `symbolic link`, `FIFO`, `socket`, `character device`, `block device`.
    pub kind: String,
}

/// Everything a run left, as stored with it (bounded when collected).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Collected {
    pub files: Vec<Artifact>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// The listing stopped at its bound: the run left more than is listed.
    #[serde(default)]
    pub truncated: bool,
}

impl Collected {
    /// The stored JSON: the current object, or the plain list older rows hold.
    fn parse(text: &str) -> Collected {
        serde_json::from_str(text)
            .or_else(|_| {
                serde_json::from_str::<Vec<Artifact>>(text).map(|files| Collected {
                    files,
                    ..Default::default()
                })
            })
            .unwrap_or_default()
    }
}

/// How many artifacts (and skipped entries) a run record carries; the rest are paged
/// through `GET /api/runs/{id}/artifacts?offset=&limit=`.
pub const ARTIFACT_PAGE: usize = 100;

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct RunRecord {
    pub id: i64,
    pub script_id: i64,
    pub version: Version,
    pub pass_id: Option<i64>,
    pub ordering: Option<String>,
    pub mode: String,
    pub requested_by: String,
    pub interpreter: String,
    pub interpreter_version: String,
    pub backend: String,
    pub protections: Option<Value>,
    pub status: RunStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Seconds, 0.01 s precision.
    pub duration: Option<f64>,
    pub exit_code: Option<i32>,
    /// The limit that ended the run (`wall_time`, `memory`, …).
    pub limit: Option<String>,
    pub message: Option<String>,
    pub output_bytes: u64,
    /// The first [`ARTIFACT_PAGE`] artifacts, in name order.
    pub artifacts: Vec<Artifact>,
    /// How many artifacts the run has in all.
    pub artifact_count: usize,
    /// The first entries that are not served (links, FIFOs, sockets, devices).
    pub skipped: Vec<Skipped>,
    pub skipped_count: usize,
    /// The run used a spare sandbox with its interpreter's modules imported already.
    pub warm_start: Option<bool>,
    /// The sha256 of the dependency lock the run's environment was built from.
    pub lock_hash: Option<String>,
}

const RUN_COLUMNS: &str = "id, script_id, major, minor, pass_id, ordering, mode, requested_by, interpreter,
    interpreter_version, backend, protections, status, created_at, started_at, ended_at, exit_code, limit_hit,
    message, output_bytes, artifacts, warm_start, lock_hash";

fn run_record(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let started: Option<Centis> = r.get(14)?;
    let ended: Option<Centis> = r.get(15)?;
    let protections: Option<String> = r.get(11)?;
    let collected = Collected::parse(&r.get::<_, String>(20)?);
    Ok(RunRecord {
        id: r.get(0)?,
        script_id: r.get(1)?,
        version: Version::new(r.get(2)?, r.get(3)?),
        pass_id: r.get(4)?,
        ordering: r.get(5)?,
        mode: r.get(6)?,
        requested_by: r.get(7)?,
        interpreter: r.get(8)?,
        interpreter_version: r.get(9)?,
        backend: r.get(10)?,
        protections: protections.and_then(|p| serde_json::from_str(&p).ok()),
        status: r.get(12)?,
        created_at: clock::format(r.get(13)?),
        started_at: started.map(clock::format),
        ended_at: ended.map(clock::format),
        duration: started.zip(ended).map(|(s, e)| (e - s) as f64 / 100.0),
        exit_code: r.get(16)?,
        limit: r.get(17)?,
        message: r.get(18)?,
        output_bytes: r.get::<_, i64>(19)? as u64,
        artifact_count: collected.files.len(),
        skipped_count: collected.skipped.len(),
        artifacts: collected.files.into_iter().take(ARTIFACT_PAGE).collect(),
        skipped: collected.skipped.into_iter().take(ARTIFACT_PAGE).collect(),
        warm_start: r.get(21)?,
        lock_hash: r.get(22)?,
    })
}

/// What a new run row holds.
pub(crate) struct NewRun<'a> {
    pub script_id: i64,
    pub version: Version,
    pub pass_id: Option<i64>,
    pub ordering: Option<&'a str>,
    pub mode: &'a str,
    pub requested_by: &'a str,
    pub interpreter: &'a str,
    pub interpreter_version: &'a str,
    pub backend: &'a str,
}

pub(crate) fn insert_run(c: &Connection, r: &NewRun<'_>) -> Result<i64> {
    c.execute(
        "INSERT INTO runs (script_id, major, minor, pass_id, ordering, mode, requested_by, interpreter,
            interpreter_version, backend, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11)",
        params![
            r.script_id,
            r.version.major,
            r.version.minor,
            r.pass_id,
            r.ordering,
            r.mode,
            r.requested_by,
            r.interpreter,
            r.interpreter_version,
            r.backend,
            clock::now()
        ],
    )?;
    Ok(c.last_insert_rowid())
}

pub(crate) fn mark_running(c: &Connection, id: i64, at: Centis) -> Result<()> {
    c.execute(
        "UPDATE runs SET status = 'running', started_at = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

/// How a run ended, for its row.
pub(crate) struct Finished<'a> {
    pub status: RunStatus,
    pub started_at: Option<Centis>,
    pub ended_at: Centis,
    pub exit_code: Option<i32>,
    pub limit: Option<&'a str>,
    pub message: &'a str,
    pub output_bytes: u64,
    pub artifacts: &'a Collected,
    pub protections: Option<&'a Value>,
    pub warm_start: Option<bool>,
}

pub(crate) fn finish_run(c: &Connection, id: i64, f: &Finished<'_>) -> Result<()> {
    c.execute(
        "UPDATE runs SET status = ?2, started_at = COALESCE(started_at, ?3), ended_at = ?4, exit_code = ?5,
            limit_hit = ?6, message = ?7, output_bytes = ?8, artifacts = ?9, protections = ?10,
            warm_start = ?11 WHERE id = ?1",
        params![
            id,
            f.status,
            f.started_at,
            f.ended_at,
            f.exit_code,
            f.limit,
            f.message,
            f.output_bytes as i64,
            serde_json::to_string(f.artifacts).expect("artifacts serialise"),
            f.protections.map(|p| p.to_string()),
            f.warm_start,
        ],
    )?;
    Ok(())
}

/// Which event table.
#[derive(Clone, Copy)]
pub enum Log {
    Run(i64),
    Pass(i64),
}

pub(crate) fn append_events(c: &Connection, log: Log, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let (sql, id) = match log {
        Log::Run(id) => (
            "INSERT OR IGNORE INTO run_events (run_id, seq, kind, data) VALUES (?1, ?2, ?3, ?4)",
            id,
        ),
        Log::Pass(id) => (
            "INSERT OR IGNORE INTO pass_events (pass_id, seq, kind, data) VALUES (?1, ?2, ?3, ?4)",
            id,
        ),
    };
    // One transaction for the batch: one commit instead of one per line.
    crate::db::write(c, |c| {
        let mut stmt = c.prepare_cached(sql)?;
        for e in events {
            stmt.execute(params![id, e.seq as i64, e.kind, e.data.to_string()])?;
        }
        Ok(())
    })
}

pub(crate) fn events(c: &Connection, log: Log, after: u64) -> Result<Vec<Event>> {
    let (sql, id) = match log {
        Log::Run(id) => (
            "SELECT seq, kind, data FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq",
            id,
        ),
        Log::Pass(id) => (
            "SELECT seq, kind, data FROM pass_events WHERE pass_id = ?1 AND seq > ?2 ORDER BY seq",
            id,
        ),
    };
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params![id, after as i64], |r| {
            Ok(Event {
                seq: r.get::<_, i64>(0)? as u64,
                kind: r.get(1)?,
                data: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or(Value::Null),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Everything run `id` left (`None`: no such run).
pub(crate) fn artifacts(c: &Connection, id: i64) -> Result<Option<Collected>> {
    let text: Option<String> = c
        .query_row("SELECT artifacts FROM runs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(text.map(|t| Collected::parse(&t)))
}

pub(crate) fn run(c: &Connection, id: i64) -> Result<Option<RunRecord>> {
    Ok(c.query_row(
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
        [id],
        run_record,
    )
    .optional()?)
}

/// Newest first, at most `limit`, older than run `before` when given (a page cursor).
pub(crate) fn runs(
    c: &Connection,
    script_id: Option<i64>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<RunRecord>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR script_id = ?1) AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(params![script_id, before, limit], run_record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The last successful run of a script, with its output lines.
pub(crate) fn last_success(c: &Connection, script_id: i64) -> Result<Option<RunRecord>> {
    Ok(c
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE script_id = ?1 AND status = 'succeeded' ORDER BY id DESC LIMIT 1"),
            [script_id],
            run_record,
        )
        .optional()?)
}

/// The output of a run as `(stream, line)` pairs.
pub(crate) fn output(c: &Connection, run_id: i64) -> Result<Vec<(String, String)>> {
    Ok(events(c, Log::Run(run_id), 0)?
        .into_iter()
        .filter(|e| e.kind == EventKind::Log)
        .map(|e| {
            (
                e.data["stream"].as_str().unwrap_or("stdout").to_string(),
                e.data["line"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// Marks what was in flight when the server stopped.
pub(crate) fn interrupt_unfinished(c: &Connection) -> Result<(usize, usize)> {
    let now = clock::now();
    let runs = c.execute(
        "UPDATE runs SET status = 'interrupted', ended_at = ?1,
            message = 'the server stopped while this run was ' || status WHERE status IN ('queued', 'running')",
        [now],
    )?;
    let passes = c.execute(
        "UPDATE passes SET status = 'interrupted', ended_at = ?1, message = 'the server stopped during this pass'
         WHERE status IN ('queued', 'running')",
        [now],
    )?;
    Ok((runs, passes))
}

// ---- passes ----

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct PassRecord {
    pub id: i64,
    pub mode: String,
    pub on_failure: String,
    pub requested_by: String,
    pub status: RunStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration: Option<f64>,
    pub message: Option<String>,
    /// Groups in order, each with its scripts' runs.
    pub groups: Vec<PassGroup>,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct PassGroup {
    pub group: u64,
    pub runs: Vec<RunRecord>,
}

pub(crate) fn insert_pass(c: &Connection, mode: &str, on_failure: &str, by: &str) -> Result<i64> {
    c.execute(
        "INSERT INTO passes (mode, on_failure, requested_by, status, created_at) VALUES (?1, ?2, ?3, 'running', ?4)",
        params![mode, on_failure, by, clock::now()],
    )?;
    let id = c.last_insert_rowid();
    c.execute(
        "UPDATE passes SET started_at = created_at WHERE id = ?1",
        [id],
    )?;
    Ok(id)
}

pub(crate) fn finish_pass(c: &Connection, id: i64, status: RunStatus, message: &str) -> Result<()> {
    c.execute(
        "UPDATE passes SET status = ?2, ended_at = ?3, message = ?4 WHERE id = ?1",
        params![id, status, clock::now(), message],
    )?;
    Ok(())
}

/// The columns [`pass_head`] reads, in its order.
const PASS_COLUMNS: &str =
    "id, mode, on_failure, requested_by, status, created_at, started_at, ended_at, message";

/// A pass's own row (its groups left empty), from [`PASS_COLUMNS`].
fn pass_head(r: &rusqlite::Row<'_>) -> rusqlite::Result<PassRecord> {
    let started: Option<Centis> = r.get(6)?;
    let ended: Option<Centis> = r.get(7)?;
    Ok(PassRecord {
        id: r.get(0)?,
        mode: r.get(1)?,
        on_failure: r.get(2)?,
        requested_by: r.get(3)?,
        status: r.get(4)?,
        created_at: clock::format(r.get(5)?),
        started_at: started.map(clock::format),
        ended_at: ended.map(clock::format),
        duration: started.zip(ended).map(|(s, e)| (e - s) as f64 / 100.0),
        message: r.get(8)?,
        groups: Vec::new(),
    })
}

pub(crate) fn pass(c: &Connection, id: i64) -> Result<Option<PassRecord>> {
    let head = c
        .query_row(
            &format!("SELECT {PASS_COLUMNS} FROM passes WHERE id = ?1"),
            [id],
            pass_head,
        )
        .optional()?;
    let Some(mut pass) = head else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE pass_id = ?1 ORDER BY id"
    ))?;
    let runs = stmt
        .query_map([id], run_record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for run in runs {
        let group = run
            .ordering
            .as_deref()
            .and_then(|o| o.split('.').next())
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        match pass.groups.last_mut() {
            Some(g) if g.group == group => g.runs.push(run),
            _ => pass.groups.push(PassGroup {
                group,
                runs: vec![run],
            }),
        }
    }
    Ok(Some(pass))
}

/// One line of the pass list: its outcome and how many of its runs ended how.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct PassSummary {
    pub id: i64,
    pub mode: String,
    pub on_failure: String,
    pub requested_by: String,
    pub status: RunStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration: Option<f64>,
    pub message: Option<String>,
    /// `total` and a count per run status (`succeeded`, `failed`, `skipped`, …).
    pub runs: std::collections::BTreeMap<String, u64>,
}

/// Passes newest first, at most `limit`, older than pass `before` when given.
pub(crate) fn passes(c: &Connection, before: Option<i64>, limit: u32) -> Result<Vec<PassSummary>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {PASS_COLUMNS} FROM passes WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2"
    ))?;
    let mut list = stmt
        .query_map(params![before, limit], |r| {
            let p = pass_head(r)?;
            Ok(PassSummary {
                id: p.id,
                mode: p.mode,
                on_failure: p.on_failure,
                requested_by: p.requested_by,
                status: p.status,
                created_at: p.created_at,
                started_at: p.started_at,
                ended_at: p.ended_at,
                duration: p.duration,
                message: p.message,
                runs: Default::default(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut count =
        c.prepare_cached("SELECT status, COUNT(*) FROM runs WHERE pass_id = ?1 GROUP BY status")?;
    for pass in &mut list {
        let rows = count
            .query_map([pass.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let total = rows.iter().map(|(_, n)| n).sum();
        pass.runs.extend(rows);
        pass.runs.insert("total".into(), total);
    }
    Ok(list)
}

/// The pass running now, if any (the newest, should several run).
pub(crate) fn current_pass(c: &Connection) -> Result<Option<PassRecord>> {
    let id: Option<i64> = c
        .query_row(
            "SELECT id FROM passes WHERE status IN ('queued', 'running') ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => pass(c, id),
        None => Ok(None),
    }
}

/// The latest pass that ran to its end (every script run, none cancelled).
pub(crate) fn latest_full_pass(c: &Connection) -> Result<Option<PassRecord>> {
    let id: Option<i64> = c
        .query_row("SELECT id FROM passes WHERE status IN ('succeeded', 'failed') ORDER BY id DESC LIMIT 1", [], |r| r.get(0))
        .optional()?;
    match id {
        Some(id) => pass(c, id),
        None => Ok(None),
    }
}

// ---- production data ----

pub(crate) fn production_data(c: &Connection, script_id: i64) -> Result<Option<Vec<u8>>> {
    Ok(c.query_row(
        "SELECT data FROM production_data WHERE script_id = ?1",
        [script_id],
        |r| r.get(0),
    )
    .optional()?)
}

pub(crate) fn put_production_data(
    c: &Connection,
    script_id: i64,
    data: &[u8],
    by: &str,
) -> Result<()> {
    if c.query_row("SELECT 1 FROM scripts WHERE id = ?1", [script_id], |_| {
        Ok(())
    })
    .optional()?
    .is_none()
    {
        return Err(RepoError::NotFound(script_id));
    }
    c.execute(
        "INSERT INTO production_data (script_id, data, updated_by, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (script_id) DO UPDATE SET data = excluded.data, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        params![script_id, data, by, clock::now()],
    )?;
    Ok(())
}
