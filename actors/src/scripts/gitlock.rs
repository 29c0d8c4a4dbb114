//! Stale git lock files: `refs/heads/ed1.lock`, `packed-refs.lock`, `index.lock`, …
//!
//! git (and libgit2) take a lock by creating `NAME.lock` exclusively, write the new
//! content into it and rename it over `NAME`. A process killed in between leaves the
//! lock behind, and every later update of `NAME` fails ("failed to lock file … for
//! writing") until someone removes it. A lock is *stale* when no live process has it
//! open: the writer holds the file descriptor from creation to rename, so a lock that
//! no process has open belongs to a writer that died. Only stale locks are removed.
//!
//! On Linux the holders are found in `/proc/*/fd`. Where `/proc` cannot be read, no
//! lock counts as held; the server is then the only writer of its repository (the
//! script repository is written by one actor only), which is what start-up relies on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A lock file found in the repository.
#[derive(Debug, Clone, PartialEq)]
pub struct LockFile {
    pub path: PathBuf,
    /// Some live process has it open (a writer at work): it must not be removed.
    pub held: bool,
    /// How long ago it was last modified.
    pub age: Duration,
}

/// Every `*.lock` file of the bare repository at `repo`: at its top level (`HEAD.lock`,
/// `config.lock`, `packed-refs.lock`, `index.lock`, …) and under `refs/` and `logs/`.
pub fn find(repo: &Path) -> Vec<LockFile> {
    // `/proc/PID/fd` links name canonical paths.
    let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
    let repo = repo.as_path();
    let mut paths = Vec::new();
    collect(repo, false, &mut paths);
    collect(&repo.join("refs"), true, &mut paths);
    collect(&repo.join("logs"), true, &mut paths);
    if paths.is_empty() {
        return Vec::new();
    }
    let open = open_files();
    let now = SystemTime::now();
    paths
        .into_iter()
        .filter_map(|path| {
            // Never follow a link: a lock file is a plain file git made.
            let meta = std::fs::symlink_metadata(&path).ok()?;
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            let held = open.contains(&path);
            Some(LockFile { path, held, age })
        })
        .collect()
}

/// Removes the lock files that no live process holds and returns them. Each removal is
/// logged.
pub fn clear_stale(repo: &Path) -> Vec<PathBuf> {
    let mut cleared = Vec::new();
    for lock in find(repo) {
        if lock.held {
            tracing::warn!(path = %lock.path.display(), "git lock file is held by a running process; left in place");
            continue;
        }
        match std::fs::remove_file(&lock.path) {
            Ok(()) => {
                tracing::warn!(path = %lock.path.display(), age_secs = lock.age.as_secs(),
                    "removed a stale git lock file left by a process that died");
                cleared.push(lock.path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(path = %lock.path.display(), error = %e, "cannot remove a stale git lock file")
            }
        }
    }
    cleared
}

fn collect(dir: &Path, recurse: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() && recurse {
            collect(&path, true, out);
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "lock") {
            out.push(path);
        }
    }
}

/// The files some process has open, as `/proc/PID/fd/N` links name them.
fn open_files() -> HashSet<PathBuf> {
    let mut open = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return open;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && target.extension().is_some_and(|e| e == "lock")
            {
                open.insert(target);
            }
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_nobody_holds_is_removed_and_a_held_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(repo.join("refs/heads")).unwrap();
        std::fs::write(repo.join("refs/heads/ed1.lock"), b"").unwrap();
        std::fs::write(repo.join("packed-refs.lock"), b"").unwrap();
        // A live writer: this process holds the file open.
        let held_path = repo.join("refs/heads/ed2.lock");
        let _held = std::fs::File::create(&held_path).unwrap();
        // Not a lock: left alone.
        std::fs::write(repo.join("refs/heads/prod"), b"").unwrap();

        let found = find(&repo);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().any(|l| l.path == held_path && l.held));

        let mut cleared = clear_stale(&repo);
        cleared.sort();
        assert_eq!(
            cleared,
            [
                repo.join("packed-refs.lock"),
                repo.join("refs/heads/ed1.lock")
            ]
        );
        assert!(held_path.exists());
        assert!(repo.join("refs/heads/prod").exists());
    }
}
