//! The jobs in flight — single runs, the runs of a pass, and passes — with their
//! cancellation tokens: one table, one way to add, cancel and retire a job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// A job by kind and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Job {
    Run(i64),
    Pass(i64),
}

/// The jobs in flight. Cloning shares the table.
#[derive(Clone, Default)]
pub(crate) struct Jobs(Arc<Mutex<HashMap<Job, CancellationToken>>>);

/// A tracked job: it leaves the table when this is dropped, however its task ends.
pub(crate) struct Tracked {
    jobs: Jobs,
    job: Job,
}

impl Jobs {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Job, CancellationToken>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tracks `job`, cancellable through `token`, until the guard is dropped.
    pub(crate) fn track(&self, job: Job, token: CancellationToken) -> Tracked {
        self.table().insert(job, token);
        Tracked {
            jobs: self.clone(),
            job,
        }
    }

    /// Cancels `job` if it is in flight; false when it is not (ended, or never was).
    pub(crate) fn cancel(&self, job: Job) -> bool {
        match self.table().get(&job) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The passes in flight.
    pub(crate) fn passes(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .table()
            .keys()
            .filter_map(|j| match j {
                Job::Pass(id) => Some(*id),
                Job::Run(_) => None,
            })
            .collect();
        ids.sort_unstable();
        ids
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.jobs.table().remove(&self.job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_cancellable_while_tracked_and_gone_after() {
        let jobs = Jobs::default();
        let token = CancellationToken::new();
        let tracked = jobs.track(Job::Run(7), token.clone());
        let _pass = jobs.track(Job::Pass(7), CancellationToken::new());
        assert_eq!(jobs.passes(), [7]);
        assert!(jobs.cancel(Job::Run(7)));
        assert!(token.is_cancelled());
        drop(tracked);
        assert!(
            !jobs.cancel(Job::Run(7)),
            "an ended run is no longer in flight"
        );
        assert!(!jobs.cancel(Job::Run(8)));
    }
}
