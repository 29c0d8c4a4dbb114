//! Sandbox overhead, as ratios against baselines measured in the same run:
//! - `linux` sandboxed `pass` (minimal root, seccomp, every protection) vs the same
//!   interpreter run bare with the same arguments (target ≤ 1.15×), forked by the
//!   zygote (as the server does) and, for comparison, by the process itself;
//! - the ms each setup phase of a sandbox takes (the child marks each phase; every
//!   protection stays on);
//! - `wasi` `pass` end-to-end (the host process started in the linux sandbox, the
//!   component precompiled) vs bare native CPython start-up (target ≤ 1.0×);
//! - a CPU-bound loop under `wasi` vs native (target ≤ 3×).
//!
//! `cargo bench -p scriptorium-sandbox --bench sandbox` (or `make bench`).

// A test, bench or helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scriptorium_sandbox::RunSpec;
use scriptorium_sandbox::linux::{LinuxBackend, LinuxConfig};
use scriptorium_sandbox::wasi::WasiBackend;
use scriptorium_sandbox::{Backend, Collect, Limits, Registry, SandboxConfig};
use tokio_util::sync::CancellationToken;

const RUNS: usize = 40;
const LOOP: &str = "n = 0\nfor i in range(3_000_000):\n    n += i % 7\nprint(n)\n";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The interpreter run bare, with the arguments the sandbox gives it (`-I -u`, the
/// interpreter's wrapper if any, the script, its input).
fn bare(spec: &RunSpec) -> Duration {
    let t = Instant::now();
    let out = Command::new(&spec.interpreter.path)
        .args(spec.python_args())
        .current_dir(&spec.workdir)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    t.elapsed()
}

async fn sandboxed(backend: &dyn Backend, spec: &RunSpec) -> Duration {
    let t = Instant::now();
    let r = backend
        .run(
            spec.clone(),
            Arc::new(Collect::default()),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(r.outcome.success(), "{:?}", r.outcome);
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let registry = Registry::load(&root.join("interpreters.toml")).unwrap();
    let natives: Vec<_> = registry
        .available()
        .filter(|i| i.kind == scriptorium_sandbox::InterpreterKind::Native)
        .cloned()
        .collect();
    let native = registry.native_default().unwrap().clone();
    let wasi = registry
        .get(Some("wasi-cpython-3.14"))
        .expect("build the component with `make wasi`")
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("pass.py");
    std::fs::write(&script, "pass\n").unwrap();
    let cpu = dir.path().join("loop.py");
    std::fs::write(&cpu, LOOP).unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "x\n").unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let limits = Limits::default();
    let spec = |interp: &scriptorium_sandbox::Interpreter, s: &Path| RunSpec {
        interpreter: interp.clone(),
        script: s.to_path_buf(),
        input: Some(input.clone()),
        args: vec![],
        workdir: run_dir.clone(),
        limits: limits.clone(),
    };

    let zygote = LinuxBackend::with_zygote(
        LinuxConfig::default(),
        Path::new(env!("CARGO_BIN_EXE_scriptorium-sandbox-zygote")),
    );
    let direct = LinuxBackend::new(LinuxConfig::default());
    let wasm = WasiBackend::new(
        env!("CARGO_BIN_EXE_scriptorium-wasi-host"),
        &SandboxConfig::default(),
    )
    .unwrap();
    wasm.prepare(&wasi.path).await.unwrap();
    // Warm every path (page cache, the zygote, the engine's first instantiation).
    for _ in 0..3 {
        for n in &natives {
            bare(&spec(n, &script));
            sandboxed(&zygote, &spec(n, &script)).await;
            sandboxed(&direct, &spec(n, &script)).await;
        }
        sandboxed(&wasm, &spec(&wasi, &script)).await;
    }
    // Interleaved, so drift on the machine hits every side alike.
    let mut b = vec![Vec::new(); natives.len()];
    let mut z = vec![Vec::new(); natives.len()];
    let mut l = vec![Vec::new(); natives.len()];
    let mut w = Vec::new();
    for _ in 0..RUNS {
        for (k, n) in natives.iter().enumerate() {
            b[k].push(bare(&spec(n, &script)));
            z[k].push(sandboxed(&zygote, &spec(n, &script)).await);
            l[k].push(sandboxed(&direct, &spec(n, &script)).await);
        }
        w.push(sandboxed(&wasm, &spec(&wasi, &script)).await);
    }
    let b: Vec<Duration> = b.into_iter().map(median).collect();
    let z: Vec<Duration> = z.into_iter().map(median).collect();
    let l: Vec<Duration> = l.into_iter().map(median).collect();
    let w = median(w);
    // The default interpreter's bare start-up is the baseline for WASI, and Debian's
    // fast one where there is one.
    let d = natives
        .iter()
        .position(|n| n.path == native.path)
        .unwrap_or(0);
    let fast = natives
        .iter()
        .position(|n| n.path.starts_with("/usr/bin"))
        .unwrap_or(d);
    let (mut cn, mut cw) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        cn.push(bare(&spec(&native, &cpu)));
        cw.push(sandboxed(&wasm, &spec(&wasi, &cpu)).await);
    }
    let (cn, cw) = (median(cn), median(cw));

    println!("load average before the table: {}", load());
    println!("| measurement | median | ratio | target |");
    println!("|---|---|---|---|");
    for (k, n) in natives.iter().enumerate() {
        let name = format!("{} {} ({})", n.implementation, n.version, n.path.display());
        println!(
            "| bare `pass`, {name} (baseline) | {:.1} ms | 1.00× | |",
            ms(b[k])
        );
        println!(
            "| linux sandbox `pass` (zygote), {name} | {:.1} ms | {:.2}× | ≤ 1.15× |",
            ms(z[k]),
            ms(z[k]) / ms(b[k])
        );
        println!(
            "| linux sandbox `pass` (forked by the process itself), {name} | {:.1} ms | {:.2}× | |",
            ms(l[k]),
            ms(l[k]) / ms(b[k])
        );
    }
    for (base, what) in [(d, "default"), (fast, "fast")] {
        println!(
            "| wasi `pass` end-to-end (sandboxed host process), {} {} vs bare {} ({what}) | {:.1} ms | {:.2}× | ≤ 1.0× |",
            wasi.implementation,
            wasi.version,
            natives[base].path.display(),
            ms(w),
            ms(w) / ms(b[base])
        );
    }
    println!(
        "| native CPU loop (3M iterations, baseline) | {:.0} ms | 1.00× | |",
        ms(cn)
    );
    println!(
        "| wasi CPU loop | {:.0} ms | {:.2}× | ≤ 3× |",
        ms(cw),
        ms(cw) / ms(cn)
    );
    phases(&zygote, &direct, &spec(&natives[fast], &script), b[fast]).await;
    // The venv with many packages, whose sandboxed start costs more than the rest.
    if let Some(v) = natives.iter().position(|n| n.id == "build123d") {
        phases(&zygote, &direct, &spec(&natives[v], &script), b[v]).await;
    }
    println!("load average after: {}", load());
}

/// The ms each setup phase of a sandbox takes, medians of interleaved traced runs.
async fn phases(zygote: &LinuxBackend, direct: &LinuxBackend, spec: &RunSpec, bare: Duration) {
    let mut by: Vec<Vec<Vec<Duration>>> = vec![Vec::new(), Vec::new()];
    let mut names: Vec<&'static str> = Vec::new();
    for _ in 0..RUNS {
        for (k, backend) in [zygote, direct].into_iter().enumerate() {
            let (report, phases) = backend.run_traced(spec.clone()).await.unwrap();
            assert!(report.outcome.success(), "{:?}", report.outcome);
            names = phases.iter().map(|(n, _)| *n).collect();
            let cols = &mut by[k];
            cols.resize(phases.len(), Vec::new());
            for (i, (_, d)) in phases.into_iter().enumerate() {
                cols[i].push(d);
            }
        }
    }
    println!();
    println!(
        "Setup phases of one sandbox, {} (medians of {RUNS}; bare start {:.1} ms):",
        spec.interpreter.path.display(),
        ms(bare)
    );
    println!("| phase | zygote | forked by the process |");
    println!("|---|---|---|");
    let med: Vec<Vec<Duration>> = by
        .into_iter()
        .map(|cols| cols.into_iter().map(median).collect())
        .collect();
    for (i, name) in names.iter().enumerate() {
        println!(
            "| {name} | {:.2} ms | {:.2} ms |",
            ms(med[0][i]),
            ms(med[1][i])
        );
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
