//! Killed mid-save: after a restart git and SQLite agree and no saved version is lost.

use serde_json::{Value, json};

use crate::util::{ServerProcess, TestApp, git, http_client};

async fn save(
    client: &reqwest::Client,
    server: &ServerProcess,
    id: i64,
    content: &str,
    base: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .put(server.url(&format!("/api/scripts/{id}")))
        .json(&json!({ "content": content, "base_version": base }))
        .send()
        .await
}

#[tokio::test]
async fn a_crash_between_commit_and_metadata_is_repaired_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let repo = data.join("repo");

    // A normal server: create a script and save it once.
    let server = ServerProcess::start(&data, &[]);
    let client = http_client(&server, "ed1", "1editor").await;
    let created: Value = client
        .post(server.url("/api/scripts"))
        .json(&json!({ "content": "\"\"\"Ledger\"\"\"\nx = 1\n" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        save(&client, &server, id, "\"\"\"Ledger\"\"\"\nx = 2\n", "0.1")
            .await
            .unwrap()
            .status(),
        200
    );
    server.terminate();

    // A server that dies right after its git commit, before SQLite hears of it.
    let server = ServerProcess::start(&data, &[("SCRIPTORIUM_FAULT", "after-git-commit")]);
    let client = http_client(&server, "ed1", "1editor").await;
    let died = save(
        &client,
        &server,
        id,
        "\"\"\"Ledger v3\"\"\"\nx = 3\n",
        "0.2",
    )
    .await;
    assert!(
        died.is_err(),
        "the server should have died mid-save: {died:?}"
    );
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "aborted");
    let crash_log = server.log_text();
    assert!(
        crash_log.contains("aborting before the metadata is recorded"),
        "{crash_log}"
    );
    // git has the commit…
    let file = format!("scripts/script_{id:04}.py");
    assert_eq!(
        git(&repo, &["show", &format!("ed1:{file}")]),
        "\"\"\"Ledger v3\"\"\"\nx = 3\n"
    );

    // …and after a restart, so does the metadata.
    let server = ServerProcess::start(&data, &[]);
    let client = http_client(&server, "ed1", "1editor").await;
    let s: Value = client
        .get(server.url(&format!("/api/scripts/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["version"], "0.3");
    assert_eq!(s["name"], "Ledger v3");
    assert_eq!(s["content"], "\"\"\"Ledger v3\"\"\"\nx = 3\n");
    let history: Value = client
        .get(server.url(&format!("/api/scripts/{id}/versions")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["0.3", "0.2", "0.1"]);
    // Every version is one commit that touches the file, and the commit ids match.
    let commits = git(&repo, &["log", "ed1", "--format=%H", "--", &file]);
    let ids: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["commit"].as_str().unwrap())
        .collect();
    assert_eq!(commits.lines().collect::<Vec<_>>(), ids);
    // The next save continues from the recovered version.
    let r = save(
        &client,
        &server,
        id,
        "\"\"\"Ledger v4\"\"\"\nx = 4\n",
        "0.3",
    )
    .await
    .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["version"], "0.4");
    let log = server.terminate();
    assert!(
        log.contains("repair: recorded a commit whose metadata was missing"),
        "{log}"
    );
}

#[tokio::test]
async fn commits_made_outside_scriptorium_are_left_alone() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "x = 1\n").await;
    let dir = app.stop().await;
    let repo = dir.path().join("repo");
    // Someone commits on ed1 with the git CLI (plumbing: the repository is bare).
    let tree = git(&repo, &["rev-parse", "ed1^{tree}"]);
    let parent = git(&repo, &["rev-parse", "ed1"]);
    let commit = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args([
            "-c",
            "user.name=someone",
            "-c",
            "user.email=s@x",
            "commit-tree",
            tree.trim(),
            "-p",
            parent.trim(),
            "-m",
            "manual",
        ])
        .output()
        .unwrap();
    let commit = String::from_utf8(commit.stdout).unwrap();
    git(&repo, &["update-ref", "refs/heads/ed1", commit.trim()]);

    let mut config = crate::util::test_config(dir.path());
    config.seed_examples = true;
    let app2 = scriptorium::server::App::start(&config)
        .await
        .expect("starts despite a foreign commit");
    let app2 = TestApp {
        app: Some(app2),
        dir,
    };
    let ed1 = app2.ed1().await;
    assert_eq!(
        app2.get(&format!("/api/scripts/{id}"), &ed1).await.json()["version"],
        "0.1"
    );
    // And saving on top of it works.
    assert_eq!(
        app2.save(&ed1, id, "x = 2\n", "0.1").await.json()["version"],
        "0.2"
    );
}
