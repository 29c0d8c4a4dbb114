//! What the user did with a proposal: saved it (the version it produced, see
//! `LlmBroker`'s link) or rejected it, recorded here.

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::clock;

/// The answer to a rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Recorded,
    /// The proposal was saved already: it produced a version.
    Saved,
    /// The exchange did not produce a proposal (blocked or failed).
    NoProposal(String),
    Unknown,
}

/// Marks exchange `exchange_id` of script `script_id` rejected by `user`.
pub(crate) fn reject(
    c: &Connection,
    script_id: i64,
    exchange_id: i64,
    user: &str,
) -> rusqlite::Result<Rejection> {
    let row: Option<(String, Option<i64>)> = c
        .query_row(
            "SELECT status, produced_major FROM exchanges WHERE id = ?1 AND script_id = ?2",
            params![exchange_id, script_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        None => Rejection::Unknown,
        Some((_, Some(_))) => Rejection::Saved,
        Some((status, None)) if status != "ok" => Rejection::NoProposal(status),
        Some(_) => {
            c.execute(
                "UPDATE exchanges SET rejected_by = ?2, rejected_at = ?3 WHERE id = ?1",
                params![exchange_id, user, clock::now()],
            )?;
            Rejection::Recorded
        }
    })
}

/// What became of an exchange, for the log: `accepted`, `rejected`, `proposed`, or its
/// status when it made no proposal (`blocked`, `error`, `pending`).
pub(crate) fn outcome(status: &str, saved: bool, rejected: bool) -> String {
    match (status, saved, rejected) {
        (_, true, _) => "accepted",
        (_, _, true) => "rejected",
        ("ok", _, _) => "proposed",
        (other, _, _) => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_names_what_the_user_did() {
        assert_eq!(outcome("ok", true, false), "accepted");
        assert_eq!(outcome("ok", false, true), "rejected");
        assert_eq!(outcome("ok", false, false), "proposed");
        assert_eq!(outcome("blocked", false, false), "blocked");
    }
}
