//! Whether a write can succeed now: the write path of `/api/health`.
//!
//! A save needs the git repository (no lock file in the way, its directories
//! writable), the SQLite database (its file and directory writable, the last write not
//! failed) and disk space. [`WriteHealth::check`] looks at each and names what is in
//! the way; the script store reports each failed and each successful write here, so a
//! fault the checks cannot see is still shown until a write succeeds again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::scripts::gitlock;

/// Below this much free space a save is refused by health (SQLite and git need room
/// for their journals and objects).
pub const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// A lock file younger than this may belong to a write in progress.
const LOCK_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct WriteHealth {
    data_dir: PathBuf,
    last_failure: Mutex<Option<String>>,
}

/// One part of the write path.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Part {
    pub ok: bool,
    /// What is wrong and what to do, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Disk {
    pub ok: bool,
    pub free_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub git: Part,
    pub db: Part,
    pub disk: Disk,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.git.ok && self.db.ok && self.disk.ok
    }

    /// The problems, one sentence each.
    pub fn reasons(&self) -> Vec<String> {
        [&self.git.problem, &self.db.problem, &self.disk.problem]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl WriteHealth {
    pub fn new(data_dir: &Path) -> WriteHealth {
        WriteHealth {
            data_dir: data_dir.to_path_buf(),
            last_failure: Mutex::new(None),
        }
    }

    /// A write failed for `reason` (shown by health until a write succeeds).
    pub fn write_failed(&self, reason: String) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    pub fn write_succeeded(&self) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Checks the write path (blocking: file-system calls).
    pub fn check(&self) -> Report {
        let repo = self.data_dir.join("repo");
        let git = match self.git_problem(&repo) {
            None => Part {
                ok: true,
                problem: None,
            },
            Some(p) => Part {
                ok: false,
                problem: Some(p),
            },
        };
        let mut db_problem = writable(&self.data_dir.join("scriptorium.db"), "the database file")
            .or_else(|| writable(&self.data_dir, "the data directory"));
        if db_problem.is_none() {
            db_problem = self
                .last_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                // Health is open to anyone: the details stay in the server's log.
                .map(|_| "the last save failed (the details are in the server's log); the next successful save clears this".to_string());
        }
        let db = Part {
            ok: db_problem.is_none(),
            problem: db_problem,
        };
        let free = free_bytes(&self.data_dir);
        let disk_problem = match free {
            Some(f) if f < MIN_FREE_BYTES => Some(format!(
                "only {} MiB free on the data directory's disk; free space (at least {} MiB) so saves can be written",
                f / (1024 * 1024),
                MIN_FREE_BYTES / (1024 * 1024)
            )),
            _ => None,
        };
        let disk = Disk {
            ok: disk_problem.is_none(),
            free_bytes: free,
            problem: disk_problem,
        };
        Report { git, db, disk }
    }

    fn git_problem(&self, repo: &Path) -> Option<String> {
        for lock in gitlock::find(repo) {
            if lock.age < LOCK_GRACE {
                continue;
            }
            // Which kind of lock, not its name: health is open to anyone, and branch
            // names are user names. The log has the full path.
            let rel = lock.path.strip_prefix(repo).unwrap_or(&lock.path);
            let name = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(dir) => format!("{}/….lock", dir.display()),
                None => rel.display().to_string(),
            };
            tracing::warn!(path = %lock.path.display(), held = lock.held, age_secs = lock.age.as_secs(), "health: git lock file present");
            return Some(if lock.held {
                format!(
                    "git lock file {name} has been held for {} s by a running process; saves on that branch wait for it",
                    lock.age.as_secs()
                )
            } else {
                format!(
                    "git lock file {name} is left by a process that died; the next save removes it, or restart the server"
                )
            });
        }
        writable(&repo.join("objects"), "the git object directory")
            .or_else(|| writable(&repo.join("refs/heads"), "the git branch directory"))
    }
}

/// `None` if `path` exists and is not read-only; else the problem (without the path:
/// health is open to anyone; the log has it).
fn writable(path: &Path, what: &str) -> Option<String> {
    match std::fs::symlink_metadata(path) {
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "health: {what} cannot be read");
            Some(format!(
                "{what} cannot be read ({}); check the data directory",
                e.kind()
            ))
        }
        Ok(m) if m.permissions().readonly() => Some(format!(
            "{what} is read-only; make it writable by the server's user"
        )),
        Ok(_) => None,
    }
}

#[cfg(unix)]
fn free_bytes(path: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

#[cfg(not(unix))]
fn free_bytes(_path: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_stale_lock_and_a_failed_write_make_health_degraded() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        std::fs::create_dir_all(data.join("repo/refs/heads")).unwrap();
        std::fs::create_dir_all(data.join("repo/objects")).unwrap();
        std::fs::write(data.join("scriptorium.db"), b"").unwrap();
        let h = WriteHealth::new(data);
        assert!(h.check().ok(), "{:?}", h.check());
        assert!(h.check().disk.free_bytes.unwrap() > 0);

        let lock = data.join("repo/refs/heads/ed1.lock");
        let f = std::fs::File::create(&lock).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let r = h.check();
        assert!(!r.ok());
        let problem = r.git.problem.as_deref().unwrap();
        assert!(
            problem.contains("refs/heads/….lock") && !problem.contains("ed1"),
            "{r:?}"
        );
        drop(f);
        std::fs::remove_file(&lock).unwrap();

        h.write_failed("database is locked".into());
        let r = h.check();
        assert!(!r.db.ok);
        assert!(r.reasons()[0].starts_with("the last save failed"), "{r:?}");
        assert!(
            !r.reasons()[0].contains("locked"),
            "details stay in the log: {r:?}"
        );
        h.write_succeeded();
        assert!(h.check().ok());
    }
}
