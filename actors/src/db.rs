//! Opening the SQLite database and applying `migrations/` in order.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

/// The migrations, in the order they apply. `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_scripts.sql",
        include_str!("../../migrations/0001_scripts.sql"),
    ),
    (
        "0002_runs.sql",
        include_str!("../../migrations/0002_runs.sql"),
    ),
    (
        "0003_llm.sql",
        include_str!("../../migrations/0003_llm.sql"),
    ),
    (
        "0004_tokens.sql",
        include_str!("../../migrations/0004_tokens.sql"),
    ),
    (
        "0005_warm_start.sql",
        include_str!("../../migrations/0005_warm_start.sql"),
    ),
    (
        "0006_code_hashes.sql",
        include_str!("../../migrations/0006_code_hashes.sql"),
    ),
    (
        "0007_deps.sql",
        include_str!("../../migrations/0007_deps.sql"),
    ),
    (
        "0008_exchange_rejected.sql",
        include_str!("../../migrations/0008_exchange_rejected.sql"),
    ),
    (
        "0011_archive.sql",
        include_str!("../../migrations/0011_archive.sql"),
    ),
];

/// How long a statement waits for another connection's write lock before it gives up
/// with "database is locked".
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `f` inside a write transaction that takes SQLite's write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`), and commits it if `f` succeeds.
///
/// Every transaction that reads and then writes must start this way. A deferred
/// transaction (rusqlite's default) that has read first cannot upgrade to a writer
/// when another connection wrote in between: in WAL mode that fails at once with
/// "database is locked" and ignores the busy timeout. `BEGIN IMMEDIATE` waits for the
/// lock (up to [`BUSY_TIMEOUT`]) before anything is read.
pub(crate) fn write<T, E: From<rusqlite::Error>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(v) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A write transaction on a connection owned mutably (see [`write`] for why IMMEDIATE).
pub(crate) fn immediate(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// Opens (creating if needed) the database in WAL mode and brings its schema up to date.
pub(crate) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = open_existing(path)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// A connection for logs (runs, events, LLM exchanges): `synchronous = NORMAL`. In WAL
/// mode that survives a killed process; a power cut may lose the last transactions of
/// a log, never a saved script (script saves use [`open`]'s `FULL`).
pub fn open_for_logs(path: &Path) -> rusqlite::Result<Connection> {
    let conn = open_existing(path)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Opens a further connection (readers) without migrating.
pub fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a save acknowledged to the user survives a power cut, not only a kill.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = immediate(conn)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(migration = name, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(super::open(&path).unwrap());
        let conn = super::open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, super::MIGRATIONS.len());
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// A transaction that reads, then writes, while another connection commits in
    /// between: deferred, it fails at once with "database is locked"; `write` waits.
    #[test]
    fn a_read_then_write_transaction_survives_a_concurrent_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let a = super::open(&path).unwrap();
        let b = super::open_existing(&path).unwrap();
        a.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        // The deferred way: a read snapshot, a commit elsewhere, then the upgrade fails.
        a.execute_batch("BEGIN").unwrap();
        let _: i64 = a
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        b.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let err = a.execute("INSERT INTO t VALUES (2)", []).unwrap_err();
        assert!(
            err.to_string().contains("locked") || err.to_string().contains("busy"),
            "{err}"
        );
        a.execute_batch("ROLLBACK").unwrap();
        // The IMMEDIATE way: the other writer waits for us instead, and both succeed.
        let mut other = None;
        let n = super::write(&a, |c| -> rusqlite::Result<i64> {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?;
            other = Some(std::thread::spawn(move || {
                b.execute("INSERT INTO t VALUES (3)", []).map(|_| ())
            }));
            std::thread::sleep(std::time::Duration::from_millis(50));
            c.execute("INSERT INTO t VALUES (?1)", [n + 10])?;
            Ok(n)
        })
        .unwrap();
        other.unwrap().join().unwrap().unwrap();
        assert_eq!(n, 1);
        let total: i64 = a
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(total, 3);
    }
}
