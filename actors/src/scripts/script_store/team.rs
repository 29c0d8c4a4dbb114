//! What a team of editors needs from the write side (issue 16): a save based on an
//! older version is merged three-way instead of refused; a publish names the version
//! the editor looked at; `prod` never holds two scripts with the same executable code;
//! a fork's ordering is chosen, with a default next to its parent.

use git2::Oid;
use rusqlite::{OptionalExtension, params};

use super::{Current, ScriptStore, parse_oid};
use crate::domain::ordering::{MAX_FRACTION_DIGITS, Ordering};
use crate::domain::team::{DuplicateOf, MergeConflict};
use crate::domain::version::Version;
use crate::error::{RepoError, Result};
use crate::scripts::gitstore::PROD;
use crate::scripts::merge::{self, Merged};
use crate::scripts::python::Checked;

/// The normalisation the stored hashes were made with (see `python.rs`'s worker).
const HASH_SCHEME: i64 = 1;

/// The two versions a merged save combined: the one the edit started from and the
/// one it was merged onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
pub struct MergedFrom {
    pub base: Version,
    pub theirs: Version,
}

/// Where a fork may go: next to its parent, or a group of its own.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
pub struct ForkOrderings {
    pub parent: Ordering,
    /// The next free number in the parent's group (2.2 after 2.1), if one is left.
    pub same_group: Option<Ordering>,
    /// The next free whole number.
    pub new_group: Ordering,
}

impl ScriptStore {
    /// The content to save: `content` itself when it was based on the current version,
    /// else `content` merged with what changed since `base`.
    pub(super) fn rebase_edit(
        &mut self,
        id: i64,
        cur: &Current,
        base: Version,
        content: &str,
    ) -> Result<(String, Option<MergedFrom>)> {
        if cur.version == base {
            return Ok((content.to_string(), None));
        }
        let base_blob: Option<String> = self
            .conn
            .query_row(
                "SELECT blob_id FROM versions WHERE script_id = ?1 AND major = ?2 AND minor = ?3",
                params![id, base.major, base.minor],
                |r| r.get(0),
            )
            .optional()?;
        let Some(base_blob) = base_blob else {
            return Err(RepoError::BadInput(format!(
                "`base_version` {base} is not a version of script {id}; send the version your edit started from (see /api/scripts/{id}/versions)"
            )));
        };
        let base_blob = parse_oid(&base_blob)?;
        let ours = self.git.write_blob(content.as_bytes())?;
        let path = format!("scripts/{}", cur.filename);
        match merge::merge3(self.git.repo(), &path, base_blob, cur.blob, ours)? {
            Merged::Clean(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    RepoError::BadInput("the merged script is not UTF-8 text".into())
                })?;
                tracing::info!(script = id, %base, theirs = %cur.version, "merged an edit based on an older version");
                Ok((
                    text,
                    Some(MergedFrom {
                        base,
                        theirs: cur.version,
                    }),
                ))
            }
            Merged::Conflict { hunks, .. } => {
                let text = |s: &Self, b: Oid| -> Result<String> {
                    Ok(String::from_utf8_lossy(&s.git.read_blob(b)?).into_owned())
                };
                Err(RepoError::MergeConflict(Box::new(MergeConflict {
                    script: id,
                    base,
                    theirs: cur.version,
                    base_content: text(self, base_blob)?,
                    theirs_content: text(self, cur.blob)?,
                    ours_content: content.to_string(),
                    hunks,
                })))
            }
        }
    }

    /// Keeps the executable-code hash of a blob just checked.
    pub(super) fn remember_hash(&self, blob: Oid, hash: &str) {
        if hash.is_empty() {
            return;
        }
        if let Err(e) = self.conn.execute(
            "INSERT OR REPLACE INTO code_hashes (blob_id, code_hash, scheme) VALUES (?1, ?2, ?3)",
            params![blob.to_string(), hash, HASH_SCHEME],
        ) {
            // Only a cache of what the checker computes: it is computed again when needed.
            tracing::warn!(%blob, error = %e, "could not store a code hash");
        }
    }

    /// The executable-code hash of a blob: stored, or computed now (and stored). `None`
    /// for a blob that is not valid Python (nothing to compare).
    pub(super) fn code_hash_of(&mut self, blob: Oid) -> Result<Option<String>> {
        let stored: Option<String> = self
            .conn
            .query_row(
                "SELECT code_hash FROM code_hashes WHERE blob_id = ?1 AND scheme = ?2",
                params![blob.to_string(), HASH_SCHEME],
                |r| r.get(0),
            )
            .optional()?;
        if stored.is_some() {
            return Ok(stored);
        }
        let bytes = self.git.read_blob(blob)?;
        match self.checker.check(&String::from_utf8_lossy(&bytes))? {
            Checked::Valid { code_hash, .. } if !code_hash.is_empty() => {
                self.remember_hash(blob, &code_hash);
                Ok(Some(code_hash))
            }
            _ => Ok(None),
        }
    }

    /// Names a file on `prod`: the script that owns it and its published version.
    fn describe_prod_file(&self, filename: &str) -> Result<DuplicateOf> {
        let row: Option<(i64, Option<u32>, Option<u32>)> = self
            .conn
            .query_row(
                "SELECT id, published_major, published_minor FROM scripts WHERE filename = ?1",
                [filename],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(DuplicateOf {
            script_id: row.map(|r| r.0),
            filename: filename.to_string(),
            version: row.and_then(|r| Some(Version::new(r.1?, r.2?))),
        })
    }

    /// Another script on `prod` (any file but `own_file`) whose executable code hashes
    /// to `hash`.
    pub(super) fn duplicate_on_prod(
        &mut self,
        own_file: &str,
        hash: &str,
    ) -> Result<Option<DuplicateOf>> {
        for (name, blob) in self.git.files_under(PROD, "scripts")? {
            if name == own_file {
                continue;
            }
            if self.code_hash_of(blob)?.as_deref() == Some(hash) {
                return Ok(Some(self.describe_prod_file(&name)?));
            }
        }
        Ok(None)
    }

    /// Refuses to publish `cur` when its executable code is on `prod` as another script.
    pub(super) fn refuse_duplicate(&mut self, id: i64, cur: &Current) -> Result<()> {
        let Some(hash) = self.code_hash_of(cur.blob)? else {
            return Ok(());
        };
        match self.duplicate_on_prod(&cur.filename, &hash)? {
            Some(other) => Err(RepoError::Duplicate {
                script: id,
                version: cur.version,
                other: Box::new(other),
            }),
            None => Ok(()),
        }
    }

    /// Every set of two or more files on `prod` with the same executable code (from
    /// before the rule, or committed with the git CLI).
    pub(crate) fn prod_duplicates(&mut self) -> Result<Vec<Vec<DuplicateOf>>> {
        let mut by_hash: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (name, blob) in self.git.files_under(PROD, "scripts")? {
            if let Some(h) = self.code_hash_of(blob)? {
                by_hash.entry(h).or_default().push(name);
            }
        }
        let mut out = Vec::new();
        for names in by_hash.into_values().filter(|n| n.len() > 1) {
            out.push(
                names
                    .iter()
                    .map(|n| self.describe_prod_file(n))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        Ok(out)
    }

    /// Where a fork of `id` may go.
    pub(crate) fn fork_orderings(&self, id: i64) -> Result<ForkOrderings> {
        let parent: Ordering = self
            .conn
            .query_row(
                "SELECT ordering_group, ordering_frac FROM scripts WHERE id = ?1",
                [id],
                |r| {
                    Ok(Ordering::from_parts(
                        r.get::<_, i64>(0)? as u64,
                        &r.get::<_, String>(1)?,
                    ))
                },
            )
            .optional()?
            .ok_or(RepoError::NotFound(id))?;
        let same_group = next_in_group(&parent, |o| Ok(self.ordering_taken(o)?.is_some()))?;
        Ok(ForkOrderings {
            parent,
            same_group,
            new_group: self.next_ordering()?,
        })
    }
}

/// The next free number after `parent` in its group at the parent's precision (2.2
/// after 2.1, 3.02 after 3.01, 4.1 after 4.0), one digit finer when that precision is
/// used up (2.91 after 2.9); `None` past [`MAX_FRACTION_DIGITS`].
pub(crate) fn next_in_group(
    parent: &Ordering,
    taken: impl Fn(&Ordering) -> Result<bool>,
) -> Result<Option<Ordering>> {
    let mut digits = if parent.fraction().is_empty() {
        "0".to_string()
    } else {
        parent.fraction().to_string()
    };
    while digits.len() <= MAX_FRACTION_DIGITS {
        let width = digits.len();
        let start: u64 = digits.parse().unwrap_or(0);
        for n in start + 1..10u64.pow(width as u32) {
            let candidate = Ordering::from_parts(parent.group(), &format!("{n:0width$}"));
            if !taken(&candidate)? {
                return Ok(Some(candidate));
            }
        }
        digits.push('0');
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(parent: &str, taken: &[&str]) -> Option<String> {
        let taken: Vec<Ordering> = taken.iter().map(|t| t.parse().unwrap()).collect();
        next_in_group(&parent.parse().unwrap(), |o| Ok(taken.contains(o)))
            .unwrap()
            .map(|o| o.to_string())
    }

    #[test]
    fn a_fork_goes_next_to_its_parent() {
        assert_eq!(next("2.1", &["2.1"]).as_deref(), Some("2.2"));
        assert_eq!(next("2.1", &["2.1", "2.2", "2.3"]).as_deref(), Some("2.4"));
        assert_eq!(next("3.01", &["3.01"]).as_deref(), Some("3.02"));
        assert_eq!(next("4", &["4"]).as_deref(), Some("4.1"));
        assert_eq!(next("2.9", &["2.9"]).as_deref(), Some("2.91"));
        let digits = "9".repeat(MAX_FRACTION_DIGITS);
        assert_eq!(next(&format!("5.{digits}"), &[]), None);
    }
}
