//! `scriptorium exec`: one script in the sandbox from the terminal, for users debugging
//! a script and for tests. Output streams as it is written; the exit code is the
//! script's, and a limit or sandbox failure is named on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use scriptorium_sandbox::{Backends, Outcome, OutputSink, Registry, RunSpec, Stream};

pub struct ExecArgs {
    pub interpreter: Option<String>,
    pub backend: Option<String>,
    pub timeout: Option<f64>,
    pub memory: Option<u64>,
    pub output_limit: Option<u64>,
    pub interpreters: Option<PathBuf>,
    pub script: PathBuf,
    pub args: Vec<String>,
}

/// Prints each line at once to the matching terminal stream.
struct Terminal;

impl OutputSink for Terminal {
    fn line(&self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Stream::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }
}

/// Runs the script; returns the exit code for the process.
pub async fn run(config: &Config, a: ExecArgs) -> anyhow::Result<i32> {
    let path = a
        .interpreters
        .clone()
        .unwrap_or_else(|| config.interpreters.clone());
    let registry = tokio::task::spawn_blocking(move || Registry::load(&path)).await??;
    let interp = registry.get(a.interpreter.as_deref())?.clone();
    let kind = interp.backend(a.backend.as_deref().map(str::parse).transpose()?)?;
    let backends = Backends::for_this_machine(&config.sandbox);
    let backend = backends.get(kind)?;
    let script = std::fs::canonicalize(&a.script)
        .map_err(|e| anyhow::anyhow!("cannot read the script {}: {e}", a.script.display()))?;
    let mut args = a.args.into_iter();
    let input = match args.next() {
        Some(p) => Some(
            std::fs::canonicalize(&p)
                .map_err(|e| anyhow::anyhow!("cannot read the input file {p}: {e}"))?,
        ),
        None => None,
    };
    let workdir = tempdir_in(&std::env::temp_dir())?;
    let mut limits = interp.limits.clone();
    if let Some(t) = a.timeout {
        limits.wall_seconds = t;
        limits.cpu_seconds = limits.cpu_seconds.max(t.ceil() as u64);
    }
    if let Some(m) = a.memory {
        limits.memory_mib = m;
    }
    if let Some(o) = a.output_limit {
        limits.output_bytes = o;
    }
    let spec = RunSpec {
        interpreter: interp,
        script,
        input,
        args: args.collect(),
        workdir: workdir.clone(),
        limits,
    };
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_ctrl_c.cancel();
    });
    let report = backend.run(spec, Arc::new(Terminal), cancel).await?;
    match &report.outcome {
        Outcome::Exited { .. } => {}
        other => eprintln!("scriptorium: {}", other.message()),
    }
    eprintln!(
        "scriptorium: {} in {:.2} s; run directory {}",
        report.outcome.message(),
        report.duration.as_secs_f64(),
        workdir.display()
    );
    Ok(report.outcome.exit_code())
}

fn tempdir_in(base: &std::path::Path) -> anyhow::Result<PathBuf> {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    let dir = base.join(format!("scriptorium-exec-{n:016x}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
