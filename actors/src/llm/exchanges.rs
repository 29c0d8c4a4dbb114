//! The LLM log: every exchange of a script (prompt, answer, model, tokens, cost,
//! latency, the version it produced), and its read side for the server.

use std::sync::Arc;

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::clock;
use crate::domain::version::Version;
use crate::error::Result;
use crate::llm::provider::Usage;
use crate::scripts::catalog::Catalog;

/// One row of a script's LLM log.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ExchangeRecord {
    pub id: i64,
    pub user: String,
    pub created_at: String,
    pub provider: String,
    pub model: String,
    pub instruction: String,
    pub status: String,
    pub error: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub latency_ms: u64,
    pub pseudonymisation: String,
    pub tool_calls: Value,
    pub produced_version: Option<Version>,
    /// `accepted` (saved: `produced_version`), `rejected`, `proposed`, or the status.
    pub outcome: String,
    pub rejected_by: Option<String>,
    pub rejected_at: Option<String>,
    /// What left the machine (after filtering and pseudonymisation).
    pub prompt_sent: Value,
}

pub(crate) fn exchanges(c: &Connection, script_id: i64) -> rusqlite::Result<Vec<ExchangeRecord>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, username, created_at, provider, model, instruction, status, error, prompt_tokens, completion_tokens, cost,
            latency_ms, pseudonymisation, tool_calls, produced_major, produced_minor, prompt_sent,
            rejected_by, rejected_at
         FROM exchanges WHERE script_id = ?1 ORDER BY id DESC",
    )?;
    let rows = stmt.query_map([script_id], |r| {
        let produced_version = r
            .get::<_, Option<u32>>(14)?
            .zip(r.get::<_, Option<u32>>(15)?)
            .map(|(a, b)| Version::new(a, b));
        let rejected_by: Option<String> = r.get(17)?;
        let status: String = r.get(6)?;
        Ok(ExchangeRecord {
            outcome: crate::llm::verdict::outcome(
                &status,
                produced_version.is_some(),
                rejected_by.is_some(),
            ),
            rejected_by,
            rejected_at: r.get::<_, Option<clock::Centis>>(18)?.map(clock::format),
            id: r.get(0)?,
            user: r.get(1)?,
            created_at: clock::format(r.get(2)?),
            provider: r.get(3)?,
            model: r.get(4)?,
            instruction: r.get(5)?,
            status,
            error: r.get(7)?,
            prompt_tokens: r.get::<_, i64>(8)? as u64,
            completion_tokens: r.get::<_, i64>(9)? as u64,
            cost: r.get(10)?,
            latency_ms: r.get::<_, i64>(11)? as u64,
            pseudonymisation: r.get(12)?,
            tool_calls: serde_json::from_str(&r.get::<_, String>(13)?).unwrap_or(Value::Null),
            produced_version,
            prompt_sent: serde_json::from_str(&r.get::<_, String>(16)?).unwrap_or(Value::Null),
        })
    })?;
    rows.collect()
}

/// Who asked what of which model: the start of every log row.
#[derive(Debug, Clone)]
pub(crate) struct NewExchange {
    pub script_id: i64,
    pub user: String,
    pub provider: String,
    pub model: String,
    pub instruction: String,
}

/// What went back and forth during an exchange, as logged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transcript {
    pub usage: Usage,
    /// The provider's raw answers.
    pub raws: Vec<Value>,
    /// The tool calls with their results.
    pub calls: Vec<Value>,
}

/// A prompt refused by the stop-word filter: logged, never sent.
pub(crate) fn insert_blocked(c: &Connection, e: &NewExchange, word: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO exchanges (script_id, username, created_at, provider, model, instruction, prompt_sent, pseudonymisation, status, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', 'none', 'blocked', ?7)",
        params![e.script_id, e.user, clock::now(), e.provider, e.model, e.instruction, format!("stop word `{word}`")],
    )?;
    Ok(())
}

/// The exchange as it is about to be sent (logged before it leaves the machine).
pub(crate) fn insert_pending(
    c: &Connection,
    e: &NewExchange,
    sent: &str,
    pseudonymisation: &str,
) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO exchanges (script_id, username, created_at, provider, model, instruction, prompt_sent, pseudonymisation, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending')",
        params![e.script_id, e.user, clock::now(), e.provider, e.model, e.instruction, sent, pseudonymisation],
    )?;
    Ok(c.last_insert_rowid())
}

/// The end of a failed exchange: the error and everything sent and received.
pub(crate) fn finish_failed(
    c: &Connection,
    id: i64,
    error: &str,
    sent: &str,
    t: &Transcript,
    latency_ms: u64,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE exchanges SET status = 'error', error = ?2, prompt_sent = ?3, raw_response = ?4, tool_calls = ?5,
            prompt_tokens = ?6, completion_tokens = ?7, cost = ?8, latency_ms = ?9 WHERE id = ?1",
        params![id, error, sent, json!(t.raws).to_string(), json!(t.calls).to_string(), t.usage.prompt_tokens as i64,
            t.usage.completion_tokens as i64, t.usage.cost, latency_ms as i64],
    )?;
    Ok(())
}

/// An answer without a code block.
pub(crate) fn finish_without_code(
    c: &Connection,
    id: i64,
    error: &str,
    t: &Transcript,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE exchanges SET status = 'error', error = ?2, raw_response = ?3 WHERE id = ?1",
        params![id, error, json!(t.raws).to_string()],
    )?;
    Ok(())
}

/// The end of a successful exchange, with the code it proposed.
pub(crate) fn finish_ok(
    c: &Connection,
    id: i64,
    model: &str,
    sent: &str,
    t: &Transcript,
    latency_ms: u64,
    proposed: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE exchanges SET status = 'ok', model = ?2, prompt_sent = ?3, raw_response = ?4, tool_calls = ?5, prompt_tokens = ?6,
            completion_tokens = ?7, cost = ?8, latency_ms = ?9, proposed_code = ?10 WHERE id = ?1",
        params![id, model, sent, json!(t.raws).to_string(), json!(t.calls).to_string(), t.usage.prompt_tokens as i64,
            t.usage.completion_tokens as i64, t.usage.cost, latency_ms as i64, proposed],
    )?;
    Ok(())
}

/// The user saved a proposal: the version it produced. False when there is no such
/// successful exchange of that script.
pub(crate) fn link(
    c: &Connection,
    id: i64,
    script_id: i64,
    version: Version,
) -> rusqlite::Result<bool> {
    Ok(c.execute(
        "UPDATE exchanges SET produced_major = ?3, produced_minor = ?4 WHERE id = ?1 AND script_id = ?2 AND status = 'ok'",
        params![id, script_id, version.major, version.minor],
    )? == 1)
}

/// The read side of the LLM log, for the server: reads run on the blocking pool.
#[derive(Clone)]
pub struct ExchangeReader {
    catalog: Arc<Catalog>,
}

impl ExchangeReader {
    pub fn new(catalog: Arc<Catalog>) -> ExchangeReader {
        ExchangeReader { catalog }
    }

    /// A script's exchanges, newest first.
    pub async fn of_script(&self, script_id: i64) -> Result<Vec<ExchangeRecord>> {
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || catalog.with_conn(|c| Ok(exchanges(c, script_id)?)))
            .await?
    }
}
