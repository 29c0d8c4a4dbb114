//! Reliability: no 5xx under ordinary concurrency, stale git locks cleared, bounded
//! connections. One regression test per finding of issue 13; the long form is the
//! soak suite (`tests/soak.rs`, `make soak`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::util::{TestApp, git, test_config};

/// Another writer of the database (as run logs and logins are), committing every
/// 2 ms until stopped.
fn busy_writer(db: std::path::PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let c = rusqlite::Connection::open(db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.execute_batch("CREATE TABLE IF NOT EXISTS noise (x INTEGER)")
            .unwrap();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            c.execute_batch("BEGIN IMMEDIATE; INSERT INTO noise VALUES (1); COMMIT")
                .unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    })
}

/// The files that more than one `Create`/`Fork` commit on `branch` made.
fn duplicate_creates(app: &TestApp, branch: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for subject in app.git(&["log", branch, "--format=%s"]).lines() {
        // "Create script_0005.py (0.1)" / "Fork script_0002.py 0.1 as script_0007.py"
        let words: Vec<&str> = subject.split_whitespace().collect();
        let file = match words.first() {
            Some(&"Create") => words[1],
            Some(&"Fork") => words[words.len() - 1],
            _ => continue,
        };
        *seen.entry(file.to_string()).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(f, n)| format!("{f} ×{n}"))
        .collect()
}

/// Finding 1: creates, saves and forks from 8 clients while other connections write
/// the database: no 5xx ("database is locked"), and no file created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_saves_and_forks_get_no_5xx_and_no_duplicate_create() {
    let app = Arc::new(TestApp::start().await);
    let cookie = app.ed1().await;
    let examples = app
        .get("/api/scripts", &cookie)
        .await
        .json()
        .as_array()
        .unwrap()
        .len();
    let stop = Arc::new(AtomicBool::new(false));
    let noise = busy_writer(app.data().join("scriptorium.db"), stop.clone());
    let mut clients = Vec::new();
    for c in 0..8 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let cookie = app.ed1().await;
            let mut statuses = Vec::new();
            for i in 0..6 {
                let r = app
                    .json(
                        Method::POST,
                        "/api/scripts",
                        Some(&cookie),
                        Some(json!({ "content": format!("\"\"\"c{c} s{i}\"\"\"\nx = {i}\n") })),
                    )
                    .await;
                statuses.push(("create", r.status, r.text()));
                if r.status != StatusCode::CREATED {
                    continue;
                }
                let id = r.json()["id"].as_i64().unwrap();
                let s = app
                    .save(
                        &cookie,
                        id,
                        &format!("\"\"\"c{c} s{i}\"\"\"\nx = {}\n", i + 100),
                        "0.1",
                    )
                    .await;
                statuses.push(("save", s.status, s.text()));
                if i % 3 == 0 {
                    let f = app
                        .json(
                            Method::POST,
                            &format!("/api/scripts/{id}/fork"),
                            Some(&cookie),
                            None,
                        )
                        .await;
                    statuses.push(("fork", f.status, f.text()));
                }
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let noise_commits = noise.join().unwrap();
    let failed: Vec<_> = all.iter().filter(|(_, s, _)| s.is_server_error()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        all.len()
    );
    assert!(
        noise_commits > 10,
        "the other writer did write ({noise_commits})"
    );
    let dups = duplicate_creates(&app, "ed1");
    assert!(dups.is_empty(), "files created twice in git: {dups:?}");
    // Every acknowledged create and fork is a script, each with one Create/Fork commit.
    let made = all
        .iter()
        .filter(|(k, s, _)| (*k == "create" || *k == "fork") && *s == StatusCode::CREATED)
        .count();
    let cookie = app.ed1().await;
    let list = app.get("/api/scripts", &cookie).await.json();
    assert_eq!(list.as_array().unwrap().len(), made + examples);
}

/// Finding 2: a `refs/heads/ed1.lock` left by a killed server stopped every save on
/// `ed1` (500) while health said ok. Start-up now removes it (nobody holds it).
#[tokio::test]
async fn a_stale_branch_lock_is_cleared_at_start_up_and_saves_work() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "x = 1\n").await;
    let dir = app.stop().await;
    let lock = dir.path().join("repo/refs/heads/ed1.lock");
    std::fs::write(&lock, b"").unwrap();

    let config = test_config(dir.path());
    let app = TestApp {
        app: Some(
            scriptorium::server::App::start(&config)
                .await
                .expect("starts"),
        ),
        dir,
    };
    assert!(!lock.exists(), "the stale lock is removed at start-up");
    let ed1 = app.ed1().await;
    let r = app.save(&ed1, id, "x = 2\n", "0.1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(app.create(&ed1, "y = 1\n").await, id + 1);
    let health = app
        .json(Method::GET, "/api/health", None, None)
        .await
        .json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["write_path"]["git"]["ok"], true);
    git(&app.data().join("repo"), &["fsck", "--no-dangling"]);
}

/// A lock that appears while the server runs: removed by the failed write itself when
/// nobody holds it; left (health `degraded`, 503 naming it) while a live process does.
#[tokio::test]
async fn a_lock_held_by_a_live_process_is_left_and_health_says_degraded() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "x = 1\n").await;
    let lock = app.data().join("repo/refs/heads/ed1.lock");

    // Nobody holds it: the save clears it and succeeds.
    std::fs::write(&lock, b"").unwrap();
    assert_eq!(
        app.save(&ed1, id, "x = 2\n", "0.1").await.status,
        StatusCode::OK
    );
    assert!(!lock.exists());

    // This process holds it open (as a running git would), for a while already.
    let held = std::fs::File::create(&lock).unwrap();
    held.set_modified(std::time::SystemTime::now() - Duration::from_secs(30))
        .unwrap();
    let health = app
        .json(Method::GET, "/api/health", None, None)
        .await
        .json();
    assert_eq!(health["status"], "degraded", "{health}");
    let reason = health["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("refs/heads/") && reason.contains("running process"),
        "{reason}"
    );
    let r = app.save(&ed1, id, "x = 3\n", "0.2").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.error().contains("try again"), "{}", r.error());
    assert!(lock.exists(), "a held lock is never removed");
    // Nothing changed: same version, no dangling branch move.
    assert_eq!(
        app.get(&format!("/api/scripts/{id}"), &ed1).await.json()["version"],
        "0.2"
    );

    drop(held);
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(
        app.save(&ed1, id, "x = 3\n", "0.2").await.status,
        StatusCode::OK
    );
    let health = app
        .json(Method::GET, "/api/health", None, None)
        .await
        .json();
    assert_eq!(
        health["status"], "ok",
        "a successful write clears the failure: {health}"
    );
}
