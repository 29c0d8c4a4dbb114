//! Watching a started run: its output, limits, cancellation, and naming the limit behind
//! its end.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::launch::Started;
use super::{cgroup, quota};
use crate::output::{Budget, StderrTail, limit_from_stderr, pump};
use crate::run::{Limit, Outcome, OutputSink, RunReport, SandboxError, Stream, secs};

/// Streams a started sandbox's output to `sink` and waits until it ends, a limit is hit
/// or `cancel` fires. The wall-time limit counts from here.
pub(super) async fn supervise(
    started: Started,
    limits: &crate::Limits,
    quota: quota::Quota,
    sink: Arc<dyn OutputSink>,
    cancel: CancellationToken,
    warm_start: bool,
) -> Result<RunReport, SandboxError> {
    let Started {
        mut child,
        stdin,
        stdout,
        stderr,
        status_r,
        report_r,
        mut protections,
        _lease,
        cgroup,
        trace: _,
        cpu_note,
    } = started;
    protections.disk_quota = true;
    protections.missing.extend(cpu_note);
    drop(stdin);
    // A warm spare's import is not the script's: its CPU budget counts from here.
    let cpu_base = match &cgroup {
        Some(c) => c.cpu_used().await.unwrap_or_default(),
        None => Default::default(),
    };
    let cpu_budget = std::time::Duration::from_secs(limits.cpu_seconds);
    let cpu_exceeded = async {
        match &cgroup {
            Some(c) => c.cpu_exceeded(cpu_base, cpu_budget).await,
            None => std::future::pending().await,
        }
    };
    let started = Instant::now();
    let budget = Budget::new(limits.output_bytes);
    let tail = Arc::new(StderrTail::new(sink));
    let mut out = tokio::spawn(pump(stdout, Stream::Stdout, tail.clone(), budget.clone()));
    let mut err = tokio::spawn(pump(stderr, Stream::Stderr, tail.clone(), budget.clone()));

    // The run is over when init has reported the script's wait status and both output
    // pipes have ended: only the sandbox's processes held them, so every one of them
    // is gone. The namespaces' teardown then goes on without the server waiting.
    let mut status_rx = tokio::net::unix::pipe::Receiver::from_owned_fd(status_r)?;
    let finished = async {
        let mut raw = [0u8; 4];
        let status = status_rx
            .read_exact(&mut raw)
            .await
            .ok()
            .map(|_| i32::from_ne_bytes(raw));
        let _ = (&mut out).await;
        let _ = (&mut err).await;
        status
    };
    enum Stop {
        Exited(Option<i32>),
        Cancelled,
        WallTime,
        Output,
        Disk,
        Cpu,
    }
    let stop = tokio::select! {
        status = finished => Stop::Exited(status),
        _ = cancel.cancelled() => Stop::Cancelled,
        _ = tokio::time::sleep(secs(limits.wall_seconds)) => Stop::WallTime,
        _ = budget.exceeded() => Stop::Output,
        _ = quota.exceeded() => Stop::Disk,
        _ = cpu_exceeded => Stop::Cpu,
    };
    let duration = started.elapsed();
    // `finished` already drained the output when the script ended by itself.
    let drained = matches!(stop, Stop::Exited(_));
    let mut launcher_lost = false;
    let status: Option<(Option<i32>, Option<i32>)> = match stop {
        Stop::Exited(Some(raw)) => {
            // Reap the intermediate in the background.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            Some(if libc::WIFSIGNALED(raw) {
                (None, Some(libc::WTERMSIG(raw)))
            } else {
                (Some(libc::WEXITSTATUS(raw)), None)
            })
        }
        Stop::Exited(None) => {
            // No status from init (its setup failed, or the zygote that forked the
            // sandbox died and took it along): the intermediate's exit says why.
            let status = child.wait().await?;
            launcher_lost = child.launcher_lost();
            Some(status)
        }
        _ => {
            // SIGKILL to the intermediate; init follows (PDEATHSIG) and takes the
            // whole pid namespace with it.
            child.kill().await;
            None
        }
    };
    if !drained {
        // The pipes close when the last process of the namespace is gone.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let _ = out.await;
            let _ = err.await;
        })
        .await;
    }
    let mut report = String::new();
    let mut report_file = tokio::fs::File::from_std(std::fs::File::from(report_r));
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        report_file.read_to_string(&mut report),
    )
    .await;

    let evidence = Evidence {
        output_over: budget.is_exceeded(),
        oom_kills: cgroup.as_ref().map_or(0, cgroup::RunCgroup::oom_kills),
        pids_refused: cgroup.as_ref().map_or(0, cgroup::RunCgroup::pids_refused),
        // Measured once more at the end: a script may fill the disk and exit between two
        // measurements.
        disk_over: matches!(stop, Stop::Disk)
            || (matches!(stop, Stop::Exited(_)) && quota.is_over(&quota.measure_async().await)),
    };
    drop(cgroup);
    // What the cgroup did is on the record even when the run went on and succeeded.
    if let Some(c) = &mut protections.cgroup {
        c.oom_kills = evidence.oom_kills;
        c.pids_refused = evidence.pids_refused;
    }
    let outcome = match (stop, status) {
        (Stop::Cancelled, _) => Outcome::Cancelled,
        (Stop::WallTime, _) => Outcome::limit(Limit::WallTime, limits),
        (Stop::Output, _) => Outcome::limit(Limit::Output, limits),
        (Stop::Disk, _) => Outcome::limit(Limit::Disk, limits),
        (Stop::Cpu, _) => Outcome::limit(Limit::CpuTime, limits),
        (Stop::Exited(_), Some(_)) if launcher_lost => Outcome::Crashed {
            message: "the sandbox zygote that started this run ended during it, and the run \
                      with it; run the script again (the next run restarts the zygote)"
                .into(),
        },
        (Stop::Exited(_), Some((code, signal))) => {
            if !report.trim().is_empty() {
                return Err(SandboxError::Setup(report.trim().to_string()));
            }
            let stderr = tail.text();
            classify(code, signal, &stderr, limits, &evidence)
        }
        (Stop::Exited(_), None) => unreachable!("an exited run has a status"),
    };
    Ok(RunReport {
        outcome,
        protections,
        duration,
        output_bytes: budget.used(),
        warm_start,
    })
}

/// What the server saw of a run besides its exit status.
#[derive(Debug, Default)]
struct Evidence {
    output_over: bool,
    /// Processes the run's memory cgroup killed.
    oom_kills: u64,
    /// Forks the run's pids cgroup refused.
    pids_refused: u64,
    disk_over: bool,
}

/// Names the limit behind a failure where the evidence allows.
fn classify(
    code: Option<i32>,
    signal: Option<i32>,
    stderr: &str,
    limits: &crate::Limits,
    evidence: &Evidence,
) -> Outcome {
    if evidence.output_over {
        return Outcome::limit(Limit::Output, limits);
    }
    if evidence.disk_over {
        return Outcome::limit(Limit::Disk, limits);
    }
    let failed = !matches!((code, signal), (Some(0), None));
    if failed && evidence.oom_kills > 0 {
        return Outcome::limit(Limit::Memory, limits);
    }
    if failed
        && evidence.pids_refused > 0
        && signal.is_none()
        && limit_from_stderr(stderr).is_none_or(|l| l == Limit::Processes)
    {
        return Outcome::limit(Limit::Processes, limits);
    }
    match (code, signal) {
        (_, Some(libc::SIGXCPU)) => Outcome::limit(Limit::CpuTime, limits),
        (_, Some(libc::SIGXFSZ)) => Outcome::limit(Limit::FileSize, limits),
        (_, Some(sig)) => Outcome::Signaled { signal: sig },
        (Some(0), None) => Outcome::Exited { code: 0 },
        (Some(code), None) => match limit_from_stderr(stderr) {
            Some(l) => Outcome::limit(l, limits),
            None => Outcome::Exited { code },
        },
        (None, None) => Outcome::Signaled { signal: 0 },
    }
}
