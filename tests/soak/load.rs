//! The load the soak drives and what it checks afterwards: editors saving at once, the
//! saves the server acknowledged, and the integrity of git and SQLite.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::ServerProcess;

/// A save acknowledged with 200: it must survive anything after.
#[derive(Debug, Clone)]
pub(super) struct Ack {
    pub(super) id: i64,
    pub(super) version: String,
    pub(super) content: String,
}

pub(super) struct WriterResult {
    pub(super) save_latencies: Vec<Duration>,
    pub(super) server_errors: Vec<String>,
    pub(super) acks: Vec<Ack>,
}

/// `clients` editors at once, each creating its own script, then saving it `saves`
/// times (a fork every fifth), until done or until the server goes away.
pub(super) async fn writers(
    base: String,
    clients: usize,
    saves: usize,
    acks: Arc<Mutex<Vec<Ack>>>,
) -> WriterResult {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let base = base.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = Vec::new();
            let client = reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap();
            let login = client
                .post(format!("{base}/api/login"))
                .json(&json!({ "username": "ed1", "password": "1editor" }))
                .send()
                .await;
            if !login.is_ok_and(|r| r.status() == 200) {
                return (lat, errors);
            }
            let content = |i: usize| format!("\"\"\"Writer {c}\"\"\"\nstep = {i}\n");
            let r = match client
                .post(format!("{base}/api/scripts"))
                .json(&json!({ "content": content(0) }))
                .send()
                .await
            {
                Ok(r) => r,
                Err(_) => return (lat, errors),
            };
            if r.status().is_server_error() {
                errors.push(format!(
                    "create: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ));
                return (lat, errors);
            }
            let Ok(created) = r.json::<Value>().await else {
                return (lat, errors);
            };
            let id = created["id"].as_i64().unwrap();
            acks.lock().unwrap().push(Ack {
                id,
                version: "0.1".into(),
                content: content(0),
            });
            let mut version = "0.1".to_string();
            for i in 1..=saves {
                let start = Instant::now();
                let r = client
                    .put(format!("{base}/api/scripts/{id}"))
                    .json(&json!({ "content": content(i), "base_version": version }))
                    .send()
                    .await;
                let Ok(r) = r else { break };
                let status = r.status();
                if status.is_server_error() {
                    errors.push(format!(
                        "save: {status} {}",
                        r.text().await.unwrap_or_default()
                    ));
                    continue;
                }
                let Ok(v) = r.json::<Value>().await else {
                    break;
                };
                lat.push(start.elapsed());
                version = v["version"]
                    .as_str()
                    .unwrap_or_else(|| panic!("save answered {status}: {v}"))
                    .to_string();
                acks.lock().unwrap().push(Ack {
                    id,
                    version: version.clone(),
                    content: content(i),
                });
                if i % 5 == 0 {
                    match client
                        .post(format!("{base}/api/scripts/{id}/fork"))
                        .header("content-type", "application/json")
                        .send()
                        .await
                    {
                        Ok(f) if f.status() != 201 => errors.push(format!("fork: {}", f.status())),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut out = WriterResult {
        save_latencies: Vec::new(),
        server_errors: Vec::new(),
        acks: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        out.save_latencies.extend(lat);
        out.server_errors.extend(errors);
    }
    out.save_latencies.sort();
    out.acks = acks.lock().unwrap().clone();
    out
}

pub(super) async fn create(client: &reqwest::Client, server: &ServerProcess, content: &str) -> i64 {
    let r: Value = client
        .post(server.url("/api/scripts"))
        .json(&json!({ "content": content }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["id"].as_i64().unwrap_or_else(|| panic!("create: {r}"))
}

pub(super) async fn run_status(
    client: &reqwest::Client,
    server: &ServerProcess,
    id: i64,
) -> String {
    let r: Value = client
        .get(server.url(&format!("/api/runs/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["status"].as_str().unwrap_or("?").to_string()
}

/// Every acknowledged save is in SQLite (the API's history) and git (its content).
pub(super) async fn check_acks(
    client: &reqwest::Client,
    server: &ServerProcess,
    acks: &[Ack],
) -> usize {
    let mut missing = Vec::new();
    for a in acks {
        let r = client
            .get(server.url(&format!("/api/scripts/{}/versions/{}", a.id, a.version)))
            .send()
            .await
            .unwrap();
        let ok = r.status() == 200
            && r.json::<Value>()
                .await
                .map(|v| v["content"] == a.content.as_str())
                .unwrap_or(false);
        if !ok {
            missing.push(a.clone());
        }
    }
    assert!(missing.is_empty(), "acknowledged saves lost: {missing:?}");
    acks.len()
}

pub(super) fn integrity(data: &Path) {
    let fsck = std::process::Command::new("git")
        .arg("-C")
        .arg(data.join("repo"))
        .args(["fsck", "--no-dangling", "--strict"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    let db = rusqlite::Connection::open(data.join("scriptorium.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
