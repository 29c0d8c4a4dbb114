//! Test data written by a team (issue 16): a write names the data it started from (its
//! ETag, the git blob id, sent as `If-Match`). If the data changed since, the write is
//! merged three-way like a script save (base = the data the edit started from, theirs =
//! the current data, ours = the edit); when it cannot be — overlapping lines, data that
//! is not text, or JSON whose merged lines are not JSON — nothing is saved and the
//! conflict carries the three sides.

use git2::{ObjectType, Oid};
use rusqlite::{OptionalExtension, params};

use super::{Committer, MAX_TEST_DATA_BYTES, ScriptStore};
use crate::domain::team::{TestDataConflict, Unmergeable};
use crate::error::{RepoError, Result};
use crate::scripts::gitstore::{Edit, stem};
use crate::scripts::merge::{self, Merged};

use super::change::{Action, Change};

/// The ETag of a script without test data: git's id of the empty blob.
pub fn empty_etag() -> Oid {
    Oid::hash_object(ObjectType::Blob, b"").expect("hashing the empty blob")
}

/// The two data a merged write combined (ETags).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
pub struct TestDataMerged {
    pub base: String,
    pub theirs: String,
}

/// What a test-data write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
pub struct TestDataSaved {
    /// False when the data equalled the current data: nothing was committed.
    pub changed: bool,
    /// The ETag of the test data now.
    pub etag: String,
    /// Set when the write was based on older data and merged onto the current data.
    pub merged: Option<TestDataMerged>,
}

impl ScriptStore {
    /// Replaces the test data (a commit on the editor's branch). `base`: the ETag of the
    /// data the edit started from (`None`: replace whatever is there); when the data
    /// changed since, the edit is merged onto it or refused with the three sides.
    pub(crate) fn put_test_data(
        &mut self,
        who: &Committer,
        id: i64,
        data: &[u8],
        base: Option<Oid>,
    ) -> Result<TestDataSaved> {
        if data.len() > MAX_TEST_DATA_BYTES {
            return Err(RepoError::TooLarge {
                what: "the test data",
                size: data.len(),
                limit: MAX_TEST_DATA_BYTES,
            });
        }
        let cur = self.current(id)?;
        let current = cur.test_data.unwrap_or_else(empty_etag);
        let (data, merged) = match base.filter(|b| *b != current) {
            None => (data.to_vec(), None),
            Some(base) => {
                let merged = self.merge_test_data(id, &cur.filename, base, current, data)?;
                let how = TestDataMerged {
                    base: base.to_string(),
                    theirs: current.to_string(),
                };
                (merged, Some(how))
            }
        };
        let blob = Oid::hash_object(ObjectType::Blob, &data)?;
        if blob == current {
            return Ok(TestDataSaved {
                changed: false,
                etag: blob.to_string(),
                merged,
            });
        }
        let blob = self.git.write_blob(&data)?;
        let mut change = Change::new(Action::TestData, id, who);
        change.blob = Some(blob);
        let path = format!("testdata/{}", stem(&cur.filename));
        let subject = match &merged {
            Some(m) => format!(
                "Update test data of {}, an edit of {} merged with {}",
                cur.filename,
                short(&m.base),
                short(&m.theirs)
            ),
            None => format!("Update test data of {}", cur.filename),
        };
        self.apply(
            &change,
            &[Edit::Put { path: &path, blob }],
            &who.email,
            &subject,
            None,
        )?;
        Ok(TestDataSaved {
            changed: true,
            etag: blob.to_string(),
            merged,
        })
    }

    /// Whether `blob` was ever this script's test data (so it may serve as a base).
    fn was_test_data(&self, id: i64, blob: Oid) -> Result<bool> {
        if blob == empty_etag() {
            return Ok(true);
        }
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM test_data_changes WHERE script_id = ?1 AND blob_id = ?2
                 UNION ALL SELECT 1 FROM scripts WHERE id = ?1 AND test_data_blob = ?2",
                params![id, blob.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// `ours` (based on `base`) merged onto `theirs`, the current data.
    fn merge_test_data(
        &mut self,
        id: i64,
        filename: &str,
        base: Oid,
        theirs: Oid,
        ours: &[u8],
    ) -> Result<Vec<u8>> {
        if !self.was_test_data(id, base)? {
            return Err(RepoError::UnknownTestDataBase {
                script: id,
                base: base.to_string(),
                current: theirs.to_string(),
            });
        }
        let read = |s: &Self, b: Oid| -> Result<Vec<u8>> {
            if b == empty_etag() {
                Ok(Vec::new())
            } else {
                Ok(s.git.read_blob(b)?)
            }
        };
        let (base_bytes, theirs_bytes) = (read(self, base)?, read(self, theirs)?);
        let conflict = |reason, hunks| {
            let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
            RepoError::TestDataConflict(Box::new(TestDataConflict {
                script: id,
                base: base.to_string(),
                theirs: theirs.to_string(),
                reason,
                base_content: text(&base_bytes),
                theirs_content: text(&theirs_bytes),
                ours_content: text(ours),
                hunks,
            }))
        };
        let texts = [&base_bytes[..], &theirs_bytes[..], ours];
        if texts.iter().any(|t| std::str::from_utf8(t).is_err()) {
            return Err(conflict(Unmergeable::Binary, Vec::new()));
        }
        // Blobs of the empty data are not in the repository: write all three.
        let (b, t, o) = (
            self.git.write_blob(&base_bytes)?,
            self.git.write_blob(&theirs_bytes)?,
            self.git.write_blob(ours)?,
        );
        let path = format!("testdata/{}", stem(filename));
        match merge::merge3(self.git.repo(), &path, b, t, o)? {
            Merged::Clean(bytes) => {
                let json = |t: &[u8]| serde_json::from_slice::<serde_json::Value>(t).is_ok();
                if texts.iter().all(|t| json(t)) && !json(&bytes) {
                    return Err(conflict(Unmergeable::Json, Vec::new()));
                }
                tracing::info!(script = id, %base, %theirs, "merged a test-data edit based on older data");
                Ok(bytes)
            }
            Merged::Conflict { hunks, .. } => Err(conflict(Unmergeable::Overlap, hunks)),
        }
    }
}

/// The first characters of an ETag, for a commit subject.
fn short(etag: &str) -> &str {
    &etag[..etag.len().min(10)]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, ed1};
    use super::*;

    fn store() -> (tempfile::TempDir, ScriptStore, i64) {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = ScriptStore::open(&config(dir.path())).unwrap();
        let id = store
            .create(&ed1(), Some("x = 1\n".into()), None, None)
            .unwrap();
        (dir, store, id)
    }

    fn put(s: &mut ScriptStore, id: i64, data: &str, base: Option<Oid>) -> Result<TestDataSaved> {
        s.put_test_data(&ed1(), id, data.as_bytes(), base)
    }

    fn oid(etag: &str) -> Oid {
        Oid::from_str(etag).unwrap()
    }

    #[test]
    fn an_edit_of_older_data_is_merged_and_overlaps_are_refused() {
        let (_d, mut s, id) = store();
        let first = put(&mut s, id, "a\nb\nc\nd\ne\n", Some(empty_etag())).unwrap();
        let base = oid(&first.etag);
        put(&mut s, id, "A\nb\nc\nd\ne\n", Some(base)).unwrap();
        let merged = put(&mut s, id, "a\nb\nc\nd\nE\n", Some(base)).unwrap();
        assert!(merged.changed && merged.merged.is_some());
        let now = s.git.read_blob(oid(&merged.etag)).unwrap();
        assert_eq!(now, b"A\nb\nc\nd\nE\n", "both changes are in");

        let Err(RepoError::TestDataConflict(c)) = put(&mut s, id, "a\nb\nc\nd\nX\n", Some(base))
        else {
            panic!("the last line was changed since")
        };
        assert_eq!(c.reason, Unmergeable::Overlap);
        assert_eq!(c.theirs, merged.etag);
        assert_eq!(c.theirs_content.as_deref(), Some("A\nb\nc\nd\nE\n"));
        assert_eq!(c.ours_content.as_deref(), Some("a\nb\nc\nd\nX\n"));
        assert_eq!(c.hunks.len(), 1);
    }

    #[test]
    fn json_whose_merged_lines_are_not_json_and_binary_data_are_refused() {
        let (_d, mut s, id) = store();
        // Each side is JSON and they change lines apart, but together they are not:
        // theirs nests the list, ours splits it into two keys.
        let base = "{\n  \"a\": [\n    0,\n    1,\n    2,\n    3\n  ],\n  \"b\": 0\n}\n";
        let theirs = base
            .replace("\"a\": [\n", "\"a\": [[\n")
            .replace("  ],", "  ]],");
        let ours = base.replace("    1,", "    1], \"c\": [");
        for json in [base, &theirs, &ours] {
            serde_json::from_str::<serde_json::Value>(json).unwrap();
        }
        let base = oid(&put(&mut s, id, base, None).unwrap().etag);
        put(&mut s, id, &theirs, Some(base)).unwrap();
        let Err(RepoError::TestDataConflict(c)) = put(&mut s, id, &ours, Some(base)) else {
            panic!("the merged lines are not JSON")
        };
        assert_eq!(c.reason, Unmergeable::Json);

        let bin = s
            .put_test_data(&ed1(), id, &[0xff, 0xfe, 0], None)
            .unwrap()
            .etag;
        s.put_test_data(&ed1(), id, &[0xff, 0xfe, 1], Some(oid(&bin)))
            .unwrap();
        let Err(RepoError::TestDataConflict(c)) =
            s.put_test_data(&ed1(), id, &[0xff, 0xfe, 2], Some(oid(&bin)))
        else {
            panic!("binary data cannot be merged")
        };
        assert_eq!(c.reason, Unmergeable::Binary);
        assert_eq!(c.ours_content, None);
    }

    #[test]
    fn a_base_that_was_never_this_scripts_data_is_refused() {
        let (_d, mut s, id) = store();
        put(&mut s, id, "mine\n", None).unwrap();
        let other = s.git.write_blob(b"someone else's secret\n").unwrap();
        let err = put(&mut s, id, "edit\n", Some(other)).unwrap_err();
        assert!(
            matches!(err, RepoError::UnknownTestDataBase { .. }),
            "{err}"
        );
    }
}
