//! Walking a directory tree that a script wrote, on Windows (`scriptorium_sandbox::fswalk`
//! there), with the API of the Unix walk: the same [`Kind`], [`Entry`], [`Flow`],
//! [`Walked`] and [`Options`].
//!
//! An entry's kind comes from its own metadata (`FindFirstFile` data through
//! `DirEntry::file_type`, which does not follow reparse points): symbolic links and
//! junctions are reported as links and never entered; only real directories are
//! listed, nothing is opened. Unlike the Unix walk, steps are by path, not relative to
//! an open directory: the walk is safe against a swap only once every process of the
//! run is gone, which the windows backend ensures (the job is terminated and waited for
//! before the runner lists artifacts).

use std::path::{Path, PathBuf};

use super::{Entry, Flow, Kind, Options, Walked};

impl Kind {
    fn of(t: std::fs::FileType) -> Kind {
        if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else {
            // Nothing else is found in a directory listing on Windows; never an artifact.
            Kind::CharDevice
        }
    }
}

/// Walks everything below `root` (not `root` itself). `root` must be a real directory:
/// a link there is an error.
pub fn walk(
    root: &Path,
    options: Options,
    mut visit: impl FnMut(&Entry) -> Flow,
) -> std::io::Result<Walked> {
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.is_dir() || meta.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut walked = Walked::default();
    let mut rel = PathBuf::new();
    walk_dir(root, &mut rel, 1, options, &mut visit, &mut walked);
    Ok(walked)
}

/// Returns false when the walk is to stop.
fn walk_dir(
    root: &Path,
    rel: &mut PathBuf,
    depth: usize,
    options: Options,
    visit: &mut impl FnMut(&Entry) -> Flow,
    walked: &mut Walked,
) -> bool {
    let Ok(list) = std::fs::read_dir(root.join(&*rel)) else {
        walked.unreadable += 1;
        return true;
    };
    let mut entries: Vec<(std::ffi::OsString, Kind, u64)> = list
        .flatten()
        .filter_map(|e| {
            let t = e.file_type().ok()?;
            // `DirEntry::metadata` on Windows is the directory listing's own data.
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            Some((e.file_name(), Kind::of(t), len))
        })
        .collect();
    if options.sorted {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
    }
    for (name, kind, len) in entries {
        rel.push(&name);
        let entry = Entry {
            path: rel.clone(),
            kind,
            len: if kind == Kind::File { len } else { 0 },
            allocated: if kind == Kind::File { len } else { 0 },
            inode: 0,
            links: 1,
        };
        let go_on = match visit(&entry) {
            Flow::Stop => {
                walked.stopped = true;
                false
            }
            Flow::Skip => true,
            Flow::Continue if kind == Kind::Dir => {
                if depth >= options.max_depth {
                    walked.too_deep = true;
                    true
                } else {
                    walk_dir(root, rel, depth + 1, options, visit, walked)
                }
            }
            Flow::Continue => true,
        };
        rel.pop();
        if !go_on {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_dirs_and_depth() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f.txt"), "hello").unwrap();
        std::fs::write(d.path().join("top"), "x").unwrap();
        let mut seen = Vec::new();
        let w = walk(
            d.path(),
            Options {
                sorted: true,
                ..Default::default()
            },
            |e| {
                seen.push((e.path.to_string_lossy().replace('\\', "/"), e.kind, e.len));
                Flow::Continue
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                ("a".to_string(), Kind::Dir, 0),
                ("a/b".into(), Kind::Dir, 0),
                ("a/b/f.txt".into(), Kind::File, 5),
                ("top".into(), Kind::File, 1),
            ]
        );
        assert!(!w.too_deep && !w.stopped);
    }
}
