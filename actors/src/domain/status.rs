//! The states of a run and of a pass, as stored and as the API shows them (the same
//! lowercase words in SQLite, in JSON and in SSE events).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The sandbox could not run the script at all.
    Error,
    /// The server stopped while the run was queued or running.
    Interrupted,
    /// A pass stopped after a failure before reaching this script.
    Skipped,
}

impl RunStatus {
    const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Error,
        RunStatus::Interrupted,
        RunStatus::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Error => "error",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a pass counts this run as failed (a cancelled run is not a failure).
    pub fn is_failure(self) -> bool {
        !matches!(self, RunStatus::Succeeded | RunStatus::Cancelled)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql for RunStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RunStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        RunStatus::parse(s)
            .ok_or_else(|| FromSqlError::Other(format!("unknown run status `{s}`").into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_reads_back_as_written_in_sql_and_json() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for st in RunStatus::ALL {
            let back: RunStatus = c.query_row("SELECT ?1", [st], |r| r.get(0)).unwrap();
            assert_eq!(back, st);
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        let bad: rusqlite::Result<RunStatus> = c.query_row("SELECT 'done'", [], |r| r.get(0));
        assert!(bad.is_err());
    }
}
