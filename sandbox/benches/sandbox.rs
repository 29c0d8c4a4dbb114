//! Sandbox overhead, as ratios against baselines measured in the same run:
//! - `linux` sandboxed `pass` (minimal root, seccomp, every protection) vs the same
//!   interpreter run bare (target ≤ 1.15×);
//! - `wasi` `pass` end-to-end (the host process started in the linux sandbox, the
//!   component precompiled) vs bare native CPython start-up (target ≤ 1.0×);
//! - a CPU-bound loop under `wasi` vs native (target ≤ 3×).
//!
//! `cargo bench -p scriptorium-sandbox --bench sandbox` (or `make bench`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scriptorium_sandbox::linux::{LinuxBackend, LinuxConfig};
use scriptorium_sandbox::wasi::WasiBackend;
use scriptorium_sandbox::{Backend, Collect, Limits, Registry, RunSpec, SandboxConfig};
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

fn bare(python: &Path, script: &Path, input: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(python)
        .args(["-I", "-u"])
        .arg(script)
        .arg(input)
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

    let linux = LinuxBackend::new(LinuxConfig::default());
    let wasm = WasiBackend::new(
        env!("CARGO_BIN_EXE_scriptorium-wasi-host"),
        &SandboxConfig::default(),
    )
    .unwrap();
    wasm.prepare(&wasi.path).await.unwrap();
    // Warm every path (page cache, the engine's first instantiation).
    for _ in 0..3 {
        for n in &natives {
            bare(&n.path, &script, &input);
            sandboxed(&linux, &spec(n, &script)).await;
        }
        sandboxed(&wasm, &spec(&wasi, &script)).await;
    }
    // Interleaved, so drift on the machine hits every side alike.
    let mut b = vec![Vec::new(); natives.len()];
    let mut l = vec![Vec::new(); natives.len()];
    let mut w = Vec::new();
    for _ in 0..RUNS {
        for (k, n) in natives.iter().enumerate() {
            b[k].push(bare(&n.path, &script, &input));
            l[k].push(sandboxed(&linux, &spec(n, &script)).await);
        }
        w.push(sandboxed(&wasm, &spec(&wasi, &script)).await);
    }
    let b: Vec<Duration> = b.into_iter().map(median).collect();
    let l: Vec<Duration> = l.into_iter().map(median).collect();
    let w = median(w);
    // The default interpreter's bare start-up is the baseline for WASI.
    let d = natives
        .iter()
        .position(|n| n.path == native.path)
        .unwrap_or(0);
    let (mut cn, mut cw) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        cn.push(bare(&native.path, &cpu, &input));
        cw.push(sandboxed(&wasm, &spec(&wasi, &cpu)).await);
    }
    let (cn, cw) = (median(cn), median(cw));

    println!("| measurement | median | ratio | target |");
    println!("|---|---|---|---|");
    for (k, n) in natives.iter().enumerate() {
        let name = format!("{} {} ({})", n.implementation, n.version, n.path.display());
        println!(
            "| bare `pass`, {name} (baseline) | {:.1} ms | 1.00× | |",
            ms(b[k])
        );
        println!(
            "| linux sandbox `pass`, {name} | {:.1} ms | {:.2}× | ≤ 1.15× |",
            ms(l[k]),
            ms(l[k]) / ms(b[k])
        );
    }
    println!(
        "| wasi `pass` end-to-end (sandboxed host process), {} {} vs bare {} | {:.1} ms | {:.2}× | ≤ 1.0× |",
        wasi.implementation,
        wasi.version,
        native.version,
        ms(w),
        ms(w) / ms(b[d])
    );
    println!(
        "| native CPU loop (3M iterations, baseline) | {:.0} ms | 1.00× | |",
        ms(cn)
    );
    println!(
        "| wasi CPU loop | {:.0} ms | {:.2}× | ≤ 3× |",
        ms(cw),
        ms(cw) / ms(cn)
    );
}
