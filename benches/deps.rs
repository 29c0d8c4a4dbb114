//! Per-script dependencies (PEP 723): what a declared dependency costs a run. Measured
//! in one process, on one machine, in the same run:
//! - the baseline: a run of a script without dependencies (POST /api/runs → complete);
//! - cached: the same script with a block declaring `tabulate==0.9.0`, its environment
//!   already built, not importing it (what the environment itself costs every run but
//!   the first: the read-only mount and the bootstrap), and one that imports and uses
//!   it (that adds tabulate's own import time);
//! - cold: a new lock: the save that resolves it (uv pip compile) plus the first run
//!   (uv pip install into the environment cache, then the run), each on a fresh server
//!   that shares uv's download cache (as a server that has seen the wheels before);
//! - bare uv: `uv pip install --target` of the same lock with the same cache, the
//!   floor for building the environment.
//!
//! Linux runs with warm starts off, so both sides start the interpreter the same way.
//! Needs the network to PyPI once (the first resolution fills uv's cache).
//!
//! `cargo bench --bench deps` (or `make bench`).

// The binary and the test and bench targets use the library; the package's other
// dependencies are the library's (rustc checks each target against all of them).
#![allow(unused_crate_dependencies)]

use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::json;

use scriptorium::server::App;
use scriptorium_sandbox::linux::WarmMode;

#[path = "support.rs"]
mod support;

const REPEAT: usize = 15;
const COLD_REPEAT: usize = 3;

const PLAIN: &str = "\"\"\"Plain\"\"\"\nprint('name    n')\n";

/// [`PLAIN`] with a block declaring tabulate, which it does not import.
const DECLARED: &str = "\"\"\"Plain\"\"\"\n# /// script\n# dependencies = [\"tabulate==0.9.0\"]\n# ///\nprint('name    n')\n";

fn with_deps(tag: usize) -> String {
    format!(
        "\"\"\"Table {tag}\"\"\"\n# /// script\n# dependencies = [\"tabulate==0.9.0\"]\n# ///\nfrom tabulate import tabulate\nprint(tabulate([[\"a\", {tag}]]))\n"
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A server on `dir` whose uv cache is `cache` (shared between servers).
async fn server(dir: &std::path::Path, cache: &std::path::Path) -> (App, String) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::os::unix::fs::symlink(cache, dir.join("data/uv-cache")).unwrap();
    let (app, _) = support::start(dir, |c| c.sandbox.linux.warm = WarmMode::Off).await;
    let cookie = support::login(&app).await;
    (app, cookie)
}

async fn create(app: &App, cookie: &str, content: &str) -> i64 {
    let (s, body) = support::call(
        app,
        cookie,
        Method::POST,
        "/api/scripts",
        Some(json!({ "content": content })),
    )
    .await;
    assert!(s.is_success(), "{body}");
    body["id"].as_i64().unwrap()
}

/// One linux run of `id`, from the POST to its `complete` event.
async fn run(app: &App, cookie: &str, id: i64) -> Duration {
    let t = Instant::now();
    let (_, r) = support::call(
        app,
        cookie,
        Method::POST,
        "/api/runs",
        Some(json!({ "script_id": id, "backend": "linux" })),
    )
    .await;
    let run = r["run_id"].as_i64().unwrap_or_else(|| panic!("{r}"));
    support::wait_complete(app, cookie, &format!("/api/runs/{run}/events")).await;
    let took = t.elapsed();
    let (_, rec) = support::call(app, cookie, Method::GET, &format!("/api/runs/{run}"), None).await;
    assert_eq!(rec["status"], "succeeded", "{rec}");
    took
}

/// `uv pip install --target` of `lock` with `cache`, as the environment build runs it.
fn bare_uv(cache: &std::path::Path, lock: &str) -> Duration {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(dir.path().join("lock"), lock).unwrap();
    let uv = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/build/tools/bin/uv"))
        .unwrap_or_else(|_| "uv".into());
    let python = String::from_utf8(
        std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let t = Instant::now();
    let s = std::process::Command::new(uv)
        .args([
            "pip",
            "install",
            "--require-hashes",
            "--no-deps",
            "--compile-bytecode",
        ])
        .args([
            "--only-binary",
            ":all:",
            "--quiet",
            "--python",
            python.trim(),
        ])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--target")
        .arg(dir.path().join("site-packages"))
        .arg("-r")
        .arg(dir.path().join("lock"))
        .status()
        .unwrap();
    assert!(s.success());
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cache = tempfile::tempdir_in("/var/tmp").unwrap();
    let main_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (app, cookie) = server(main_dir.path(), cache.path()).await;
    let plain = create(&app, &cookie, PLAIN).await;
    // Fills uv's cache from the index (not measured).
    let table = create(&app, &cookie, &with_deps(0)).await;
    let lock = std::process::Command::new("git")
        .arg("-C")
        .arg(main_dir.path().join("data/repo"))
        .args(["show", &format!("ed1:scripts/script_{table:04}.py.lock")])
        .output()
        .unwrap()
        .stdout;
    let lock = String::from_utf8(lock).unwrap();
    let declared = create(&app, &cookie, DECLARED).await;
    run(&app, &cookie, table).await;
    run(&app, &cookie, declared).await;
    run(&app, &cookie, plain).await;
    let (mut base, mut cached, mut using) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPEAT {
        base.push(run(&app, &cookie, plain).await);
        cached.push(run(&app, &cookie, declared).await);
        using.push(run(&app, &cookie, table).await);
    }
    let mut bare = Vec::new();
    for _ in 0..REPEAT {
        bare.push(bare_uv(cache.path(), &lock));
    }
    app.stop().await;

    let (mut cold, mut resolve) = (Vec::new(), Vec::new());
    for i in 0..COLD_REPEAT {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let (app, cookie) = server(dir.path(), cache.path()).await;
        let t = Instant::now();
        let id = create(&app, &cookie, &with_deps(i + 1)).await;
        resolve.push(t.elapsed());
        run(&app, &cookie, id).await;
        cold.push(t.elapsed());
        app.stop().await;
    }

    let (b, c, t, k, r, u) = (
        median(base),
        median(cached),
        median(using),
        median(cold),
        median(resolve),
        median(bare),
    );
    let ratio = |x: Duration| x.as_secs_f64() / b.as_secs_f64();
    println!(
        "| a script declaring tabulate==0.9.0, linux, warm starts off | time (median) | ratio |"
    );
    println!("|---|---|---|");
    println!(
        "| baseline: a script without dependencies, one run (of {REPEAT}) | {:.1} ms | 1.00× |",
        ms(b)
    );
    println!(
        "| cached: the same script declaring tabulate (not importing it), environment built before (of {REPEAT}) | {:.1} ms | {:.2}× |",
        ms(c),
        ratio(c)
    );
    println!(
        "| cached, importing and using tabulate (of {REPEAT}) | {:.1} ms | {:.2}× |",
        ms(t),
        ratio(t)
    );
    println!(
        "| cold: new lock, save (resolve) + first run (build + run) (of {COLD_REPEAT}) | {:.0} ms | {:.1}× |",
        ms(k),
        ratio(k)
    );
    println!(
        "| … of which the save that resolves (of {COLD_REPEAT}) | {:.0} ms | {:.1}× |",
        ms(r),
        ratio(r)
    );
    println!(
        "| bare `uv pip install --target` of the same lock, same cache (of {REPEAT}) | {:.0} ms | {:.1}× |",
        ms(u),
        ratio(u)
    );
    println!();
    println!(
        "a cached environment adds {:+.1} ms per run over no dependencies; a new lock's first run takes {:.1}× a cached one",
        ms(c) - ms(b),
        k.as_secs_f64() / t.as_secs_f64()
    );
}
