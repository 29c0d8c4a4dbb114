//! Orchestration overhead of run-all: a pass over 100 trivial published scripts in 10
//! groups through the server (HTTP, RunScheduler, GroupExecutor, SQLite records, event
//! logs), against running the same sandboxed processes directly in the same groups
//! with the same worker bound and no server. Target: ≤ 5 ms added per script.
//!
//! `cargo bench --bench runs` (or `make bench`).

// The binary and the test and bench targets use the library; the package's other
// dependencies are the library's (rustc checks each target against all of them).
#![allow(unused_crate_dependencies)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use scriptorium::server::App;

#[path = "support.rs"]
mod support;
use scriptorium_sandbox::linux::{LinuxBackend, LinuxConfig};
use scriptorium_sandbox::{Backend, Collect, Registry, RunSpec};

const GROUPS: usize = 10;
const PER_GROUP: usize = 10;
const WORKERS: usize = 4;
const REPEAT: usize = 3;
const SCRIPT: &str = "import sys\nprint(open(sys.argv[1]).read().strip())\n";

async fn call(app: &App, cookie: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    support::call(app, cookie, method, path, body).await.1
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (app, config) = support::start(dir.path(), |c| c.runs.workers = WORKERS).await;
    let cookie = support::login(&app).await;
    for g in 1..=GROUPS {
        for k in 0..PER_GROUP {
            let s = call(
                &app,
                &cookie,
                Method::POST,
                "/api/scripts",
                Some(json!({ "content": SCRIPT, "ordering": format!("{g}.{k}") })),
            )
            .await;
            let id = s["id"].as_i64().unwrap();
            let req = Request::builder()
                .method(Method::PUT)
                .uri(format!("/api/scripts/{id}/test-data"))
                .header(header::COOKIE, &cookie)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::from("x"))
                .unwrap();
            app.router.clone().oneshot(req).await.unwrap();
            call(
                &app,
                &cookie,
                Method::POST,
                &format!("/api/scripts/{id}/publish"),
                None,
            )
            .await;
        }
    }

    // The same processes without the server: same interpreter, backend, groups, workers.
    let registry = Registry::load(&config.interpreters).unwrap();
    let interp = registry.native_default().unwrap().clone();
    let backend = Arc::new(LinuxBackend::new(LinuxConfig::default()));
    let work = dir.path().join("direct");
    std::fs::create_dir_all(&work).unwrap();
    let script = work.join("script.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let input = work.join("input");
    std::fs::write(&input, "x").unwrap();
    let direct = || async {
        let sem = Arc::new(Semaphore::new(WORKERS));
        let t = Instant::now();
        let mut n = 0;
        for g in 0..GROUPS {
            let mut tasks = Vec::new();
            for k in 0..PER_GROUP {
                n += 1;
                let run_dir = work.join(format!("run-{g}-{k}-{}", t.elapsed().as_nanos()));
                std::fs::create_dir_all(&run_dir).unwrap();
                let spec = RunSpec {
                    interpreter: interp.clone(),
                    script: script.clone(),
                    input: Some(input.clone()),
                    args: vec![],
                    workdir: run_dir,
                    limits: interp.limits.clone(),
                };
                let (b, s) = (backend.clone(), sem.clone());
                tasks.push(tokio::spawn(async move {
                    let _p = s.acquire().await.unwrap();
                    let r = b
                        .run(spec, Arc::new(Collect::default()), CancellationToken::new())
                        .await
                        .unwrap();
                    assert!(r.outcome.success());
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
        assert_eq!(n, GROUPS * PER_GROUP);
        t.elapsed()
    };
    let server = || async {
        let t = Instant::now();
        let p = call(&app, &cookie, Method::POST, "/api/passes", None).await;
        let id = p["pass_id"].as_i64().expect("pass started");
        support::wait_complete(&app, &cookie, &format!("/api/passes/{id}/events")).await;
        let took = t.elapsed();
        let pass = call(
            &app,
            &cookie,
            Method::GET,
            &format!("/api/passes/{id}"),
            None,
        )
        .await;
        assert_eq!(pass["status"], "succeeded", "{pass}");
        took
    };
    direct().await;
    server().await;
    let (mut d, mut s) = (Vec::new(), Vec::new());
    for _ in 0..REPEAT {
        d.push(direct().await);
        s.push(server().await);
    }
    let (d, s) = (median(d), median(s));
    let n = (GROUPS * PER_GROUP) as f64;
    let added = (s.as_secs_f64() - d.as_secs_f64()) * 1e3 / n;
    println!(
        "| measurement ({} scripts, {GROUPS} groups, {WORKERS} workers) | median total | per script |",
        GROUPS * PER_GROUP
    );
    println!("|---|---|---|");
    println!(
        "| sandboxed processes run directly in groups (baseline) | {:.0} ms | {:.1} ms |",
        d.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3 / n
    );
    println!(
        "| run-all pass through the server | {:.0} ms | {:.1} ms |",
        s.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e3 / n
    );
    println!();
    println!(
        "orchestration overhead: {added:.2} ms per script (target ≤ 5 ms); ratio {:.3}×",
        s.as_secs_f64() / d.as_secs_f64()
    );
    app.stop().await;
}
