//! The run-wide CPU limit: the CPU time of all a run's processes together, as its
//! cgroup counts it (v2 `cpu.stat` `usage_usec`, v1 `cpuacct.usage` in ns).
//!
//! RLIMIT_CPU bounds each process on its own, so N processes could use N × `cpu_seconds`.
//! No kernel knob ends a cgroup at a total of CPU seconds (`cpu.max` and the v1 CFS
//! quota bound a *rate*, cores per period, not a total), so the server reads the
//! cgroup's counter every [`INTERVAL`] and ends the run once it passes `cpu_seconds`
//! (`limit: "cpu_time"`). A run may overrun by what its processes use in one interval;
//! each single process is still held to RLIMIT_CPU by the kernel.

use std::path::PathBuf;
use std::time::Duration;

use super::RunCgroup;

/// How often a running script's CPU time is read.
pub(in crate::linux) const INTERVAL: Duration = Duration::from_millis(250);

/// The file that counts a run's CPU time.
#[derive(Debug, Clone)]
pub(in crate::linux) enum Usage {
    /// `cpu.stat`, key `usage_usec`.
    V2(PathBuf),
    /// `cpuacct.usage`, ns.
    V1(PathBuf),
}

impl Usage {
    /// The text of the counter file as a duration.
    fn parse(&self, text: &str) -> Option<Duration> {
        match self {
            Usage::V2(_) => text.lines().find_map(|l| {
                let us = l.strip_prefix("usage_usec ")?.trim().parse().ok()?;
                Some(Duration::from_micros(us))
            }),
            Usage::V1(_) => Some(Duration::from_nanos(text.trim().parse().ok()?)),
        }
    }

    fn path(&self) -> &PathBuf {
        match self {
            Usage::V2(p) | Usage::V1(p) => p,
        }
    }
}

impl RunCgroup {
    /// The CPU time all the run's processes have used so far (`None`: not counted).
    pub(in crate::linux) async fn cpu_used(&self) -> Option<Duration> {
        let usage = self.cpu.as_ref()?;
        let text = tokio::fs::read_to_string(usage.path()).await.ok()?;
        usage.parse(&text)
    }

    /// Resolves once the run's processes together have used `budget` of CPU time beyond
    /// `base` (what they had used when the script's run began); never without a counter.
    pub(in crate::linux) async fn cpu_exceeded(&self, base: Duration, budget: Duration) {
        if self.cpu.is_none() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(INTERVAL).await;
            if let Some(used) = self.cpu_used().await
                && used.saturating_sub(base) > budget
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_counters_parse() {
        let v2 = Usage::V2(PathBuf::new());
        assert_eq!(
            v2.parse("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(v2.parse("user_usec 1\n"), None);
        let v1 = Usage::V1(PathBuf::new());
        assert_eq!(v1.parse("3000000000\n"), Some(Duration::from_secs(3)));
        assert_eq!(v1.parse("garbage"), None);
    }
}
