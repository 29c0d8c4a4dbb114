//! Three-way merge of one file with git's own merge machinery (libgit2's
//! `git_merge_file_from_index`): base = the version an editor started from, theirs =
//! the script's current version, ours = the editor's edit. Non-overlapping changes
//! merge cleanly; overlapping ones come back as hunks, each with the three sides.

use git2::{IndexEntry, IndexTime, MergeFileOptions, Oid, Repository};

pub(crate) use crate::domain::team::Hunk;

/// What a three-way merge gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Merged {
    Clean(Vec<u8>),
    Conflict {
        hunks: Vec<Hunk>,
        /// The merged text with diff3-style conflict markers.
        marked: String,
    },
}

const OURS: &str = "ours";
const BASE: &str = "base";
const THEIRS: &str = "theirs";

fn entry(blob: Oid, path: &str) -> IndexEntry {
    let zero = IndexTime::new(0, 0);
    IndexEntry {
        ctime: zero,
        mtime: zero,
        dev: 0,
        ino: 0,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        file_size: 0,
        id: blob,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// Merges the blobs `ours` and `theirs` (both in `repo`) over their common `base`.
pub(crate) fn merge3(
    repo: &Repository,
    path: &str,
    base: Oid,
    theirs: Oid,
    ours: Oid,
) -> Result<Merged, git2::Error> {
    let mut opts = MergeFileOptions::new();
    opts.style_diff3(true)
        .ancestor_label(BASE)
        .our_label(OURS)
        .their_label(THEIRS);
    let result = repo.merge_file_from_index(
        &entry(base, path),
        &entry(ours, path),
        &entry(theirs, path),
        Some(&mut opts),
    )?;
    if result.is_automergeable() {
        return Ok(Merged::Clean(result.content().to_vec()));
    }
    let marked = String::from_utf8_lossy(result.content()).into_owned();
    Ok(Merged::Conflict {
        hunks: hunks(&marked),
        marked,
    })
}

/// Reads the diff3 conflict blocks out of a merged text.
pub(crate) fn hunks(marked: &str) -> Vec<Hunk> {
    enum Side {
        Outside,
        Ours,
        Base,
        Theirs,
    }
    let (open, base, mid, close) = (
        format!("<<<<<<< {OURS}"),
        format!("||||||| {BASE}"),
        "=======".to_string(),
        format!(">>>>>>> {THEIRS}"),
    );
    let mut out = Vec::new();
    let mut side = Side::Outside;
    let mut cur = Hunk {
        line: 0,
        base: String::new(),
        theirs: String::new(),
        ours: String::new(),
    };
    for (i, line) in marked.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        side = match side {
            Side::Outside if bare == open => {
                cur = Hunk {
                    line: i + 1,
                    base: String::new(),
                    theirs: String::new(),
                    ours: String::new(),
                };
                Side::Ours
            }
            Side::Outside => Side::Outside,
            Side::Ours if bare == base => Side::Base,
            Side::Ours | Side::Base if bare == mid => Side::Theirs,
            Side::Theirs if bare == close => {
                out.push(cur.clone());
                Side::Outside
            }
            Side::Ours => {
                cur.ours.push_str(line);
                Side::Ours
            }
            Side::Base => {
                cur.base.push_str(line);
                Side::Base
            }
            Side::Theirs => {
                cur.theirs.push_str(line);
                Side::Theirs
            }
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        (dir, repo)
    }

    const BASE_TEXT: &str = "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\n";

    #[test]
    fn edits_of_different_lines_merge_with_both_changes() {
        let (_d, repo) = repo();
        let base = repo.blob(BASE_TEXT.as_bytes()).unwrap();
        let theirs = repo.blob(b"a = 10\nb = 2\nc = 3\nd = 4\ne = 5\n").unwrap();
        let ours = repo.blob(b"a = 1\nb = 2\nc = 3\nd = 4\ne = 50\n").unwrap();
        let got = merge3(&repo, "scripts/x.py", base, theirs, ours).unwrap();
        assert_eq!(
            got,
            Merged::Clean(b"a = 10\nb = 2\nc = 3\nd = 4\ne = 50\n".to_vec())
        );
    }

    #[test]
    fn edits_of_the_same_line_give_a_hunk_with_all_three_sides() {
        let (_d, repo) = repo();
        let base = repo.blob(BASE_TEXT.as_bytes()).unwrap();
        let theirs = repo.blob(b"a = 1\nb = 2\nc = 30\nd = 4\ne = 5\n").unwrap();
        let ours = repo.blob(b"a = 1\nb = 2\nc = 300\nd = 4\ne = 5\n").unwrap();
        let Merged::Conflict { hunks, marked } =
            merge3(&repo, "scripts/x.py", base, theirs, ours).unwrap()
        else {
            panic!("expected a conflict")
        };
        assert_eq!(
            hunks,
            [Hunk {
                line: 3,
                base: "c = 3\n".into(),
                theirs: "c = 30\n".into(),
                ours: "c = 300\n".into(),
            }],
            "{marked}"
        );
    }
}
