//! Opening the SQLite database and applying `migrations/` in order.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// The migrations, in the order they apply. `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_scripts.sql", include_str!("../../migrations/0001_scripts.sql")),
    ("0002_runs.sql", include_str!("../../migrations/0002_runs.sql")),
    ("0003_llm.sql", include_str!("../../migrations/0003_llm.sql")),
    ("0004_tokens.sql", include_str!("../../migrations/0004_tokens.sql")),
    ("0005_warm_start.sql", include_str!("../../migrations/0005_warm_start.sql")),
];

/// Opens (creating if needed) the database in WAL mode and brings its schema up to date.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
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
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a save acknowledged to the user survives a power cut, not only a kill.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
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
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v as usize, super::MIGRATIONS.len());
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }
}
