//! Save and list latency of the script repository, through the real HTTP router.
//!
//! Three repositories are built in one run:
//! - `1000 scripts / 10,000 versions`: the headline figures (targets: save ≤ 30 ms
//!   median, list ≤ 20 ms median);
//! - `100 scripts / 100 versions` and `100 scripts / 10,000 versions`: the same scripts
//!   with short and long histories; their ratio shows whether latency grows with
//!   history length (it should stay near 1.0).
//!
//! Run with `make bench` (or `cargo bench --bench repo`). `BENCH_QUICK=1` shrinks it.

// The binary and the test and bench targets use the library; the package's other
// dependencies are the library's (rustc checks each target against all of them).
#![allow(unused_crate_dependencies)]

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use scriptorium::server::App;

#[path = "support.rs"]
mod support;

struct Bench {
    app: App,
    cookie: String,
    _dir: tempfile::TempDir,
    /// Script id → current version.
    scripts: Vec<(i64, String)>,
}

impl Bench {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        support::call(&self.app, &self.cookie, method, path, body).await
    }

    async fn build(scripts: usize, versions_each: usize) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = support::start(dir.path(), |_| {}).await;
        let cookie = support::login(&app).await;
        let mut b = Bench {
            app,
            cookie,
            _dir: dir,
            scripts: Vec::new(),
        };
        for i in 0..scripts {
            let (s, v) = b
                .call(
                    Method::POST,
                    "/api/scripts",
                    Some(json!({ "content": body(i, 0) })),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            b.scripts.push((v["id"].as_i64().unwrap(), "0.1".into()));
        }
        for round in 1..versions_each {
            for i in 0..scripts {
                b.save(i, round).await;
            }
        }
        b
    }

    async fn save(&mut self, i: usize, round: usize) -> Duration {
        let (id, base) = self.scripts[i].clone();
        let start = Instant::now();
        let (s, v) = self
            .call(
                Method::PUT,
                &format!("/api/scripts/{id}"),
                Some(json!({ "content": body(i, round), "base_version": base })),
            )
            .await;
        let took = start.elapsed();
        assert_eq!(s, StatusCode::OK, "{v}");
        self.scripts[i].1 = v["version"].as_str().unwrap().to_string();
        took
    }

    /// Median of `n` saves spread over the scripts.
    async fn save_median(&mut self, n: usize) -> Duration {
        let mut times = Vec::with_capacity(n);
        for k in 0..n {
            let i = (k * 7919) % self.scripts.len();
            times.push(self.save(i, 100_000 + k).await);
        }
        median(times)
    }

    async fn list_median(&self, n: usize) -> Duration {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            let (s, v) = self.call(Method::GET, "/api/scripts", None).await;
            times.push(start.elapsed());
            assert_eq!(s, StatusCode::OK);
            assert_eq!(v.as_array().unwrap().len(), self.scripts.len());
        }
        median(times)
    }
}

fn body(i: usize, round: usize) -> String {
    format!(
        "\"\"\"Script {i}\n\nRevision {round}.\n\"\"\"\nimport sys\n\n\ndef main():\n    print({round})\n\n\nmain()\n"
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (big, deep) = if quick { (100, 10) } else { (1000, 10) };
    let samples = if quick { 30 } else { 200 };

    let t = Instant::now();
    let mut short = Bench::build(100, 1).await;
    let mut long = Bench::build(100, if quick { 10 } else { 100 }).await;
    let mut headline = Bench::build(big, deep).await;
    eprintln!(
        "built the three repositories in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let short_save = short.save_median(samples).await;
    let long_save = long.save_median(samples).await;
    let short_list = short.list_median(samples).await;
    let long_list = long.list_median(samples).await;
    let head_save = headline.save_median(samples).await;
    let head_list = headline.list_median(samples).await;

    let hist = if quick { "1,000" } else { "10,000" };
    println!("| measurement | median | target |");
    println!("|---|---|---|");
    println!(
        "| save, {big} scripts / {} versions | {:.2} ms | ≤ 30 ms |",
        big * deep,
        ms(head_save)
    );
    println!(
        "| list, {big} scripts / {} versions | {:.2} ms | ≤ 20 ms |",
        big * deep,
        ms(head_list)
    );
    println!(
        "| save, 100 scripts / 100 versions | {:.2} ms | |",
        ms(short_save)
    );
    println!(
        "| save, 100 scripts / {hist} versions | {:.2} ms | |",
        ms(long_save)
    );
    println!(
        "| list, 100 scripts / 100 versions | {:.2} ms | |",
        ms(short_list)
    );
    println!(
        "| list, 100 scripts / {hist} versions | {:.2} ms | |",
        ms(long_list)
    );
    println!();
    println!(
        "history-length ratio ({hist} vs 100 versions): save {:.2}×, list {:.2}× (1.00× = no growth)",
        ms(long_save) / ms(short_save),
        ms(long_list) / ms(short_list)
    );
    for b in [short, long, headline] {
        b.app.stop().await;
    }
}
