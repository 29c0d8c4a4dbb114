//! Warm start for build123d: the time from "Run" (POST /api/runs) to `result.glb` being
//! downloadable, for the shipped bracket example, on a server whose runs start cold
//! (`warm = "off"`: every run imports build123d) against one with warm starts (a spare
//! sandbox imported build123d beforehand). Both servers run in this process on the
//! same machine, alternating, each measured after its spare (if any) is ready, as for
//! a user who edits between runs. Needs `make build123d`.
//!
//! `cargo bench --bench build123d` (or `make bench`).

// The binary and the test and bench targets use the library; the package's other
// dependencies are the library's (rustc checks each target against all of them).
#![allow(unused_crate_dependencies)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use scriptorium::server::App;
use scriptorium_sandbox::linux::WarmMode;

#[path = "support.rs"]
mod support;

const REPEAT: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A server with the bracket saved, and its id.
async fn server(dir: &std::path::Path, warm: WarmMode) -> (App, String, i64) {
    let (app, _) = support::start(dir, |c| c.sandbox.linux.warm = warm).await;
    let cookie = support::login(&app).await;
    let root = env!("CARGO_MANIFEST_DIR");
    let script = std::fs::read_to_string(format!("{root}/examples/bracket.py")).unwrap();
    let data = std::fs::read_to_string(format!("{root}/examples/bracket.json")).unwrap();
    let (_, s) = support::call(
        &app,
        &cookie,
        Method::POST,
        "/api/scripts",
        Some(json!({ "content": script })),
    )
    .await;
    let id = s["id"].as_i64().expect("bracket saved");
    let req = Request::builder()
        .method(Method::PUT)
        .uri(format!("/api/scripts/{id}/test-data"))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from(data))
        .unwrap();
    app.router.clone().oneshot(req).await.unwrap();
    (app, cookie, id)
}

/// Waits until build123d's next run would start warm (or the server has no warm start).
async fn settle(app: &App, cookie: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, list) = support::call(app, cookie, Method::GET, "/api/interpreters", None).await;
        let b = list["interpreters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == "build123d")
            .expect("build123d is configured")
            .clone();
        assert_eq!(b["available"], true, "run `make build123d` first: {b}");
        match b["warm_state"]["state"].as_str() {
            None | Some("ready") => return,
            Some("failed") => panic!("the warm spare failed: {b}"),
            _ if Instant::now() > deadline => panic!("no warm spare after 120 s: {b}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One run of the bracket: from the POST to the GLB downloaded. Returns the time and
/// whether the run started warm.
async fn run_to_glb(app: &App, cookie: &str, id: i64) -> (Duration, bool) {
    settle(app, cookie).await;
    let t = Instant::now();
    let (_, r) = support::call(
        app,
        cookie,
        Method::POST,
        "/api/runs",
        Some(json!({ "script_id": id })),
    )
    .await;
    let run = r["run_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("run started: {r}"));
    support::wait_complete(app, cookie, &format!("/api/runs/{run}/events")).await;
    let req = Request::builder()
        .uri(format!("/api/runs/{run}/artifacts/result.glb"))
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200, "result.glb is there");
    let glb = res.into_body().collect().await.unwrap().to_bytes();
    let took = t.elapsed();
    assert_eq!(&glb[..4], b"glTF");
    let (_, rec) = support::call(app, cookie, Method::GET, &format!("/api/runs/{run}"), None).await;
    assert_eq!(rec["status"], "succeeded", "{rec}");
    (took, rec["warm_start"] == true)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Outside /tmp: below it runs start cold (see the linux backend's warm module).
    let (cold_dir, warm_dir) = (
        tempfile::tempdir_in("/var/tmp").unwrap(),
        tempfile::tempdir_in("/var/tmp").unwrap(),
    );
    let (cold_app, cold_cookie, cold_id) = server(cold_dir.path(), WarmMode::Off).await;
    let (warm_app, warm_cookie, warm_id) = server(warm_dir.path(), WarmMode::Eager).await;
    // One of each first: file caches, the server's first-run work.
    run_to_glb(&cold_app, &cold_cookie, cold_id).await;
    run_to_glb(&warm_app, &warm_cookie, warm_id).await;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..REPEAT {
        let (t, w) = run_to_glb(&cold_app, &cold_cookie, cold_id).await;
        assert!(!w, "warm = off starts cold");
        cold.push(t);
        let (t, w) = run_to_glb(&warm_app, &warm_cookie, warm_id).await;
        assert!(w, "the run used the ready spare");
        warm.push(t);
    }
    let (c, w) = (median(cold), median(warm));
    println!("| bracket: Run → result.glb downloadable (median of {REPEAT}) | time | ratio |");
    println!("|---|---|---|");
    println!(
        "| cold start (baseline: the run imports build123d) | {:.0} ms | 1.00× |",
        ms(c)
    );
    println!(
        "| warm start (a spare sandbox imported it beforehand) | {:.0} ms | {:.2}× |",
        ms(w),
        w.as_secs_f64() / c.as_secs_f64()
    );
    println!();
    println!(
        "warm start saves {:.0} ms per run ({:.1}× faster)",
        ms(c) - ms(w),
        c.as_secs_f64() / w.as_secs_f64()
    );
    cold_app.stop().await;
    warm_app.stop().await;
}
