//! The load and fault suite: the real `scriptorium` binary on loopback, driven hard,
//! killed with SIGKILL mid-write, restarted and checked. It prints a table of figures.
//!
//! Size: the short form runs with every `cargo test`; `SCRIPTORIUM_SOAK=full` (what
//! `make soak` sets) runs the long one whose figures are in docs/benchmarks.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::util::{ServerProcess, git, http_client, parse_sse};

mod load;

use load::{Ack, check_acks, create, integrity, run_status, writers};

struct Size {
    name: &'static str,
    /// Saves per client in the concurrent-writers phase.
    saves: usize,
    logins: usize,
    runs: usize,
    watchers: usize,
    lines: usize,
    idle: usize,
    kills: usize,
    /// The slowest `/api/health` allowed with the idle connections open (the short
    /// form runs beside the other tests, on a busier machine).
    health_limit: Duration,
}

fn size() -> Size {
    if std::env::var("SCRIPTORIUM_SOAK").as_deref() == Ok("full") {
        Size {
            name: "full",
            saves: 40,
            logins: 32,
            runs: 200,
            watchers: 100,
            lines: 300,
            idle: 2000,
            kills: 10,
            health_limit: Duration::from_millis(100),
        }
    } else {
        Size {
            name: "short",
            saves: 6,
            logins: 8,
            runs: 20,
            watchers: 10,
            lines: 40,
            idle: 200,
            kills: 2,
            health_limit: Duration::from_millis(500),
        }
    }
}

/// Seconds the server waits for a request head (and keeps an idle connection).
const HEADER_TIMEOUT: &str = "2";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SCRIPTORIUM_SEED_EXAMPLES", "false"),
        ("SCRIPTORIUM_HEADER_READ_TIMEOUT_SECS", HEADER_TIMEOUT),
    ]
}

/// The figures, printed as a table at the end.
#[derive(Default)]
struct Table(Vec<(String, String)>);

impl Table {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        eprintln!("soak: {what}: {value}");
        self.0.push((what, value));
    }
    fn print(&self, size: &str) {
        let w = self.0.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        println!(
            "\n| figure ({size}) {:w$}| value |",
            "",
            w = w.saturating_sub(9 + size.len())
        );
        println!("|{}|-------|", "-".repeat(w + 2));
        for (k, v) in &self.0 {
            println!("| {k:w$} | {v} |");
        }
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The test process needs a file descriptor per idle connection.
fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write only the struct passed, which outlives the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak() {
    raise_open_files();
    let size = size();
    let mut table = Table::default();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &env());
    let pid = server.child.id();
    let at_start = rss_mib(pid);
    table.add("RSS after start", format!("{at_start:.0} MiB"));

    // Concurrent writers: 1 (the baseline), then 8.
    let acks = Arc::new(Mutex::new(Vec::new()));
    let one = writers(server.url(""), 1, size.saves * 4, acks.clone()).await;
    let eight = writers(server.url(""), 8, size.saves, acks.clone()).await;
    assert!(
        one.server_errors.is_empty() && eight.server_errors.is_empty(),
        "5xx: {:?} {:?}",
        one.server_errors,
        eight.server_errors
    );
    let (p50_1, p99_1) = (
        percentile(&one.save_latencies, 0.5),
        percentile(&one.save_latencies, 0.99),
    );
    let (p50_8, p99_8) = (
        percentile(&eight.save_latencies, 0.5),
        percentile(&eight.save_latencies, 0.99),
    );
    table.add(
        "saves by 8 concurrent writers (+ forks), 5xx",
        format!("{} saves, 0", eight.save_latencies.len()),
    );
    table.add(
        "save latency, 1 writer p50 / p99",
        format!("{} / {}", ms(p50_1), ms(p99_1)),
    );
    table.add(
        "save latency, 8 writers p50 / p99",
        format!("{} / {}", ms(p50_8), ms(p99_8)),
    );
    table.add(
        "8 writers ÷ 1 writer, p50 / p99",
        format!(
            "{:.2} / {:.2}",
            p50_8.as_secs_f64() / p50_1.as_secs_f64(),
            p99_8.as_secs_f64() / p99_1.as_secs_f64()
        ),
    );
    table.add("RSS after the writers", format!("{:.0} MiB", rss_mib(pid)));

    // A burst of logins (argon2: ~19 MiB each).
    let before = rss_mib(pid);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mib(pid));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        })
    };
    let logins = futures::future::join_all((0..size.logins).map(|_| {
        let url = server.url("/api/login");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({ "username": "ed1", "password": "1editor" }))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    }))
    .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    let ok = logins.iter().filter(|r| matches!(r, Ok(200))).count();
    assert!(
        logins
            .iter()
            .all(|r| matches!(r, Ok(200) | Ok(429) | Ok(503))),
        "{logins:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = rss_mib(pid);
    table.add(
        format!(
            "RSS {} concurrent logins ({ok} ok): before / peak / 3 s later",
            size.logins
        ),
        format!("{before:.0} / {peak:.0} / {settled:.0} MiB"),
    );
    table.add(
        "SCRIPTORIUM_MALLOC_TUNING",
        std::env::var("SCRIPTORIUM_MALLOC_TUNING").unwrap_or_else(|_| "on (default)".into()),
    );
    // Every login so far (one per writer, the burst) hashed with 19 MiB.
    assert!(
        settled < at_start + 64.0,
        "memory stays after the logins: {at_start:.0} at start, {settled:.0} MiB after"
    );

    let client = http_client(&server, "ed1", "1editor").await;

    // Queued runs drain.
    let quick = create(&client, &server, "print('ok')\n").await;
    let start = Instant::now();
    let mut run_ids = Vec::new();
    for _ in 0..size.runs {
        let r = client
            .post(server.url("/api/runs"))
            .json(&json!({ "script_id": quick }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        run_ids.push(r.json::<Value>().await.unwrap()["run_id"].as_i64().unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(30 + size.runs as u64);
    let mut left = run_ids.clone();
    while !left.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} runs still not done",
            left.len()
        );
        let mut still = Vec::new();
        for id in left {
            match run_status(&client, &server, id).await.as_str() {
                "succeeded" => {}
                "queued" | "running" => still.push(id),
                other => panic!("run {id} ended {other}"),
            }
        }
        left = still;
        if !left.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    table.add(
        format!("{} queued runs drained", size.runs),
        format!("{:.1} s, all succeeded", start.elapsed().as_secs_f64()),
    );

    // SSE watchers: every line once, in order.
    let chatty = create(&client, &server, &format!("import time\nfor i in range({}):\n    print(f'line {{i}}', flush=True)\n    time.sleep(0.01)\n", size.lines)).await;
    let r: Value = client
        .post(server.url("/api/runs"))
        .json(&json!({ "script_id": chatty }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = r["run_id"].as_i64().unwrap();
    let start = Instant::now();
    let watchers = futures::future::join_all((0..size.watchers).map(|_| {
        let client = client.clone();
        let url = server.url(&format!("/api/runs/{run_id}/events"));
        async move {
            let mut stream = client.get(url).send().await.unwrap().bytes_stream();
            let (mut buf, mut events) = (String::new(), Vec::new());
            while !events
                .iter()
                .any(|e: &crate::util::Sse| e.event == "complete")
            {
                match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        buf.push_str(&String::from_utf8_lossy(&chunk));
                        parse_sse(&mut buf, &mut events);
                    }
                    other => panic!("SSE stream ended early: {other:?}"),
                }
            }
            events
                .iter()
                .filter(|e| e.event == "log")
                .map(|e| e.data["line"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        }
    }))
    .await;
    let expected: Vec<String> = (0..size.lines).map(|i| format!("line {i}")).collect();
    for (i, lines) in watchers.iter().enumerate() {
        assert_eq!(lines, &expected, "watcher {i}");
    }
    table.add(
        format!("{} SSE watchers × {} lines", size.watchers, size.lines),
        format!(
            "every line once, in order; {:.1} s",
            start.elapsed().as_secs_f64()
        ),
    );

    // Idle connections: health still answers fast; they are closed after the timeout.
    let before = rss_mib(pid);
    let mut idle = Vec::with_capacity(size.idle);
    for _ in 0..size.idle {
        idle.push(TcpStream::connect(&server.addr).await.unwrap());
    }
    let with_idle = rss_mib(pid);
    let mut health = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let r = reqwest::Client::new()
            .get(server.url("/api/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        health.push(start.elapsed());
    }
    health.sort();
    let worst = *health.last().unwrap();
    table.add(
        format!(
            "/api/health with {} idle connections, worst of 10",
            size.idle
        ),
        ms(worst),
    );
    assert!(worst < size.health_limit, "health took {worst:?}");
    let start = Instant::now();
    let limit = Duration::from_secs(HEADER_TIMEOUT.parse::<u64>().unwrap() + 5);
    for (i, s) in idle.iter_mut().enumerate() {
        let mut b = [0u8; 512];
        loop {
            match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut b)).await
            {
                Err(_) => panic!("idle connection {i} still open after {:?}", start.elapsed()),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
            }
        }
    }
    let closed_after = start.elapsed();
    drop(idle);
    tokio::time::sleep(Duration::from_secs(2)).await;
    table.add(
        format!(
            "{} idle connections closed (header timeout {HEADER_TIMEOUT} s)",
            size.idle
        ),
        format!("all within {:.1} s", closed_after.as_secs_f64()),
    );
    table.add(
        "RSS idle connections: before / open / 2 s after closed",
        format!("{before:.0} / {with_idle:.0} / {:.0} MiB", rss_mib(pid)),
    );
    let log = server.terminate();
    assert!(
        !log.contains("Too many open files"),
        "accept ran out of descriptors"
    );

    // kill -9 during saves and during a pass, repeatedly; then restart and check.
    let mut restart_times = Vec::new();
    let mut planted = 0;
    let lock = data.join("repo/refs/heads/ed1.lock");
    let mut kill_acks: Vec<Ack> = Vec::new();
    for round in 0..size.kills {
        let started = Instant::now();
        let mut server = ServerProcess::start(&data, &env());
        restart_times.push(started.elapsed());
        assert!(!lock.exists(), "a stale ref lock is cleared at start-up");
        let client = http_client(&server, "ed1", "1editor").await;
        check_acks(&client, &server, &kill_acks).await;
        // No run of an earlier round is left queued or running.
        let runs: Vec<Value> = client
            .get(server.url("/api/runs?limit=1000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            runs.iter()
                .all(|r| r["status"] != "running" && r["status"] != "queued"),
            "{runs:?}"
        );
        if round % 2 == 1 {
            // A pass of slow scripts, killed midway.
            let slow = create(
                &client,
                &server,
                // One per round: prod may not hold two scripts with the same code.
                &format!("import time\nprint('slow', {round}, flush=True)\ntime.sleep(5)\n"),
            )
            .await;
            assert_eq!(
                client
                    .post(server.url(&format!("/api/scripts/{slow}/publish")))
                    .header("content-type", "application/json")
                    .send()
                    .await
                    .unwrap()
                    .status(),
                200
            );
            let p = client
                .post(server.url("/api/passes"))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(p.status(), 202, "{}", p.text().await.unwrap());
        }
        let acks = Arc::new(Mutex::new(Vec::new()));
        let load = tokio::spawn(writers(server.url(""), 4, 1000, acks.clone()));
        // Kill mid-stream: once saves are being acknowledged, after a varying delay.
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks.lock().unwrap().len() < 8 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * (round as u64 % 7))).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let load = load.await.unwrap();
        assert!(
            load.server_errors.is_empty(),
            "5xx before the kill: {:?}",
            load.server_errors
        );
        kill_acks.extend(load.acks);
        // A lock a killed process might have left, planted for the next start.
        std::fs::write(&lock, b"").unwrap();
        planted += 1;
    }
    let started = Instant::now();
    let server = ServerProcess::start(&data, &env());
    restart_times.push(started.elapsed());
    assert!(!lock.exists(), "the planted lock was cleared");
    let client = http_client(&server, "ed1", "1editor").await;
    let checked = check_acks(&client, &server, &kill_acks).await;
    let runs: Vec<Value> = client
        .get(server.url("/api/runs?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        runs.iter()
            .all(|r| r["status"] != "running" && r["status"] != "queued"),
        "{runs:?}"
    );
    let interrupted = runs.iter().filter(|r| r["status"] == "interrupted").count();
    if size.kills > 1 {
        assert!(
            interrupted > 0,
            "the passes killed midway left interrupted runs"
        );
    }
    // A save after all that works.
    let id = create(&client, &server, "x = 1\n").await;
    let r = client
        .put(server.url(&format!("/api/scripts/{id}")))
        .json(&json!({ "content": "x = 2\n", "base_version": "0.1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let health: Value = client
        .get(server.url("/api/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    let log = server.terminate();
    integrity(&data);
    restart_times.sort();
    table.add(
        format!(
            "kill -9 during saves ({} rounds, every 2nd during a pass)",
            size.kills
        ),
        format!("{checked} acknowledged saves all present; git fsck and integrity_check clean"),
    );
    table.add(
        "runs left interrupted by the kills",
        interrupted.to_string(),
    );
    assert!(
        log.contains("removed a stale git lock file"),
        "the clearing is logged"
    );
    table.add(
        "stale ref locks planted before a start / left after it",
        format!("{planted} / 0"),
    );
    table.add(
        "restart after kill -9, worst",
        ms(*restart_times.last().unwrap()),
    );
    let duplicates = {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for s in git(&data.join("repo"), &["log", "--all", "--format=%s"])
            .lines()
            .filter(|s| s.starts_with("Create "))
        {
            *seen.entry(s.to_string()).or_default() += 1;
        }
        seen.values().filter(|n| **n > 1).count()
    };
    assert_eq!(duplicates, 0, "a file was created twice");
    table.print(size.name);
}
