//! The disk quota of a run: the bytes and the number of entries its run directory and
//! its private `/tmp` hold together.
//!
//! The run directory is a host directory (its files are the run's artifacts), so the
//! server measures it: every [`INTERVAL`] during the run and once at its end, with a walk
//! that never follows a link ([`crate::fswalk`]) and counts allocated blocks (a sparse
//! file counts the data it holds, not its length) and entries (files, directories,
//! links, FIFOs alike). The walk stops as soon as the quota is passed, so measuring a
//! run that made a million files costs no more than counting to the limit. A run over
//! the quota is killed and ends with `limit: "disk"`.
//!
//! Between two measurements a script can write faster than the quota: RLIMIT_FSIZE
//! bounds each file, and the run is stopped within an interval.

use std::path::PathBuf;
use std::time::Duration;

use crate::fswalk::{self, Flow};

/// How often a running script's disk use is measured.
pub(super) const INTERVAL: Duration = Duration::from_millis(250);
/// Directories nested deeper than this are not walked; a run that makes them is over
/// its quota (its files there could not be counted).
pub(super) const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
pub(super) struct Quota {
    pub dirs: Vec<PathBuf>,
    pub max_bytes: u64,
    pub max_files: u64,
}

/// What a measurement found (counting stops just past the quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Usage {
    pub bytes: u64,
    pub files: u64,
    /// Directories nested deeper than [`MAX_DEPTH`].
    pub too_deep: bool,
}

impl Quota {
    pub(super) fn new(dirs: Vec<PathBuf>, limits: &crate::Limits) -> Quota {
        Quota {
            dirs,
            max_bytes: limits.disk_mib.saturating_mul(1024 * 1024),
            max_files: limits.disk_files,
        }
    }

    pub(super) fn is_over(&self, u: &Usage) -> bool {
        u.bytes > self.max_bytes || u.files > self.max_files || u.too_deep
    }

    /// Walks the directories (blocking: call off the async executor).
    pub(super) fn measure(&self) -> Usage {
        let mut usage = Usage::default();
        for dir in &self.dirs {
            let options = fswalk::Options {
                max_depth: MAX_DEPTH,
                sorted: false,
            };
            let walked = fswalk::walk(dir, options, |e| {
                usage.files += 1;
                usage.bytes = usage.bytes.saturating_add(e.allocated);
                if usage.bytes > self.max_bytes || usage.files > self.max_files {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            });
            if let Ok(w) = walked {
                usage.too_deep |= w.too_deep;
            }
            if self.is_over(&usage) {
                break;
            }
        }
        usage
    }

    /// Measures off the executor.
    pub(super) async fn measure_async(&self) -> Usage {
        let q = self.clone();
        tokio::task::spawn_blocking(move || q.measure())
            .await
            .unwrap_or_default()
    }

    /// Resolves when a measurement finds the run over its quota.
    pub(super) async fn exceeded(&self) {
        loop {
            tokio::time::sleep(INTERVAL).await;
            if self.is_over(&self.measure_async().await) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(dirs: Vec<PathBuf>, mib: u64, files: u64) -> Quota {
        Quota::new(
            dirs,
            &crate::Limits {
                disk_mib: mib,
                disk_files: files,
                ..Default::default()
            },
        )
    }

    #[test]
    fn bytes_and_entries_of_both_directories_count_together() {
        let run = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(run.path().join("a"), vec![1u8; 600 * 1024]).unwrap();
        std::fs::write(tmp.path().join("b"), vec![1u8; 600 * 1024]).unwrap();
        let q = quota(vec![run.path().into(), tmp.path().into()], 1, 100);
        let u = q.measure();
        assert_eq!(u.files, 2);
        assert!(u.bytes >= 1200 * 1024, "{u:?}");
        assert!(q.is_over(&u));
        assert!(
            !quota(vec![run.path().into()], 1, 100)
                .is_over(&quota(vec![run.path().into()], 1, 100).measure())
        );
    }

    #[test]
    fn counting_stops_just_past_the_file_quota() {
        let run = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::write(run.path().join(i.to_string()), "").unwrap();
        }
        let q = quota(vec![run.path().into()], 1, 10);
        let u = q.measure();
        assert_eq!(u.files, 11);
        assert!(q.is_over(&u));
    }

    #[test]
    fn links_count_as_entries_and_are_not_followed() {
        let run = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/usr", run.path().join("usr")).unwrap();
        std::os::unix::fs::symlink(".", run.path().join("self")).unwrap();
        let u = quota(vec![run.path().into()], 1, 100).measure();
        assert_eq!(u.files, 2);
        assert!(u.bytes < 64 * 1024, "{u:?}");
    }

    #[test]
    fn nesting_past_the_depth_bound_is_over_the_quota() {
        let run = tempfile::tempdir().unwrap();
        let deep: PathBuf = (0..MAX_DEPTH + 2).map(|i| format!("{}", i % 10)).collect();
        std::fs::create_dir_all(run.path().join(deep)).unwrap();
        let q = quota(vec![run.path().into()], 1024, 100_000);
        assert!(q.is_over(&q.measure()));
    }
}
