//! Per-script dependencies, continued: resolution off the store's actor (a slow index
//! delays no other save), `requires-python`, and locks planted in git outside the app.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::TestApp;

const PLAIN: &str = "\"\"\"Plain\"\"\"\nprint('plain')\n";

/// A loopback "index" that accepts connections and counts them; it holds each one
/// open without answering when `hold`, else closes it at once. Stops by itself.
fn index(hold: bool) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("http://{}/simple", l.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let end = Instant::now() + Duration::from_secs(90);
        while Instant::now() < end {
            match l.accept() {
                Ok((s, _)) => {
                    count.fetch_add(1, Ordering::SeqCst);
                    if hold {
                        held.push(s);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (url, seen)
}

fn with_deps(name: &str, deps: &str) -> String {
    format!("\"\"\"{name}\"\"\"\n# /// script\n# dependencies = [{deps}]\n# ///\nprint('{name}')\n")
}

async fn detail(app: &TestApp, cookie: &str, id: i64) -> Value {
    app.get(&format!("/api/scripts/{id}"), cookie).await.json()
}

#[tokio::test]
async fn a_slow_resolution_does_not_delay_another_scripts_save() {
    let (url, seen) = index(true);
    let app = TestApp::start_with(|c| {
        c.seed_examples = false;
        c.uv.index_url = Some(url);
        c.uv.timeout_secs = Some(6);
    })
    .await;
    let ed1 = app.ed1().await;
    let a = app.create(&ed1, PLAIN).await;
    let b = app.create(&ed1, &PLAIN.replace("plain", "other")).await;
    let heads_before = app.git(&["rev-parse", "ed1"]);
    let slow = with_deps("Slow", "\"tabulate\"");
    let started = Instant::now();
    let (slow_save, (during, other_save, other_took)) =
        tokio::join!(app.save(&ed1, a, &slow, "0.1"), async {
            // uv is waiting on the index that never answers.
            let until = Instant::now() + Duration::from_secs(5);
            while seen.load(Ordering::SeqCst) == 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let during = detail(&app, &ed1, a).await;
            let t = Instant::now();
            let r = app
                .save(&ed1, b, &PLAIN.replace("plain", "other, edited"), "0.1")
                .await;
            (during, r, t.elapsed())
        });
    assert!(seen.load(Ordering::SeqCst) > 0, "uv never asked the index");
    assert_eq!(during["dependencies"]["state"], "resolving", "{during}");
    assert_eq!(other_save.status, StatusCode::OK, "{}", other_save.text());
    assert_eq!(other_save.json()["version"], "0.2");
    assert!(
        other_took < Duration::from_secs(3),
        "the other script's save waited {other_took:?} on the resolution"
    );
    // The slow save fails when uv's time is up, with the reason, and saves nothing.
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(
        slow_save.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        slow_save.text()
    );
    assert!(
        slow_save.error().contains("longer than"),
        "{}",
        slow_save.error()
    );
    let after = detail(&app, &ed1, a).await;
    assert_eq!(after["version"], "0.1", "{after}");
    assert_eq!(after["content"], PLAIN);
    assert_eq!(after["dependencies"]["state"], "failed", "{after}");
    assert!(
        after["dependencies"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("longer than"),
        "{after}"
    );
    // The one commit since is the other script's save.
    let log = app.git(&[
        "log",
        "--format=%s",
        &format!("{}..ed1", heads_before.trim()),
    ]);
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains(&format!("script_{b:04}.py")), "{log}");
}

#[tokio::test]
async fn a_requires_python_the_interpreter_does_not_meet_is_a_422_before_uv_runs() {
    let (url, seen) = index(false);
    let app = TestApp::start_with(|c| {
        c.seed_examples = false;
        c.uv.index_url = Some(url);
    })
    .await;
    let ed1 = app.ed1().await;
    let content = "\"\"\"Future\"\"\"\n# /// script\n# requires-python = \">=3.99\"\n# dependencies = [\"tabulate\"]\n# ///\nprint(1)\n";
    let r = app
        .json(
            Method::POST,
            "/api/scripts",
            Some(&ed1),
            Some(json!({ "content": content })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let e = r.error();
    assert!(
        e.contains("requires Python >=3.99") && e.contains("requires-python"),
        "{e}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0, "uv ran");
    let bad = content.replace(">=3.99", "python3");
    let r = app
        .json(
            Method::POST,
            "/api/scripts",
            Some(&ed1),
            Some(json!({ "content": bad })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(
        r.error().contains("not a version specifier"),
        "{}",
        r.error()
    );
    assert_eq!(
        app.get("/api/scripts", &ed1)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

/// Runs `git` in `repo` with `env`, feeding nothing; its trimmed stdout.
fn git_env(repo: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn a_lock_planted_in_git_is_refused_before_anything_is_installed() {
    let app = TestApp::start_with(|c| c.seed_examples = false).await;
    let ed1 = app.ed1().await;
    let content = with_deps("Planted", "\"tabulate==0.9.0\"");
    let id = app.create(&ed1, &content).await;
    let file = format!("script_{id:04}.py");
    let lock = app.git(&["show", &format!("ed1:scripts/{file}.lock")]);
    let script_blob = app.git(&["rev-parse", &format!("ed1:scripts/{file}")]);
    let time = app.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Scriptorium-Time,valueonly)",
        "ed1",
    ]);
    let dir = app.stop().await;
    let repo = dir.path().join("repo");

    // Someone with access to the repository commits a lock of their own, dressed as a
    // save: the same pins and hashes, plus an index of theirs.
    let (planted_index, contacted) = index(false);
    let planted = format!("--index-url {planted_index}\n{lock}");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("lock"), &planted).unwrap();
    let blob = git_env(
        &repo,
        &[],
        &[
            "hash-object",
            "-w",
            tmp.path().join("lock").to_str().unwrap(),
        ],
    );
    let index_file = tmp.path().join("index");
    let env = [("GIT_INDEX_FILE", index_file.to_str().unwrap())];
    git_env(&repo, &env, &["read-tree", "ed1"]);
    let cacheinfo = format!("100644,{blob},scripts/{file}.lock");
    git_env(
        &repo,
        &env,
        &["update-index", "--add", "--cacheinfo", &cacheinfo],
    );
    let tree = git_env(&repo, &env, &["write-tree"]);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(planted.as_bytes()))
    };
    let t: i64 = time.trim().parse::<i64>().unwrap() + 1;
    let message = format!(
        "Save {file} as 0.2\n\nScriptorium-Action: save\nScriptorium-Script: {id}\nScriptorium-Version: 0.2\nScriptorium-Blob: {}\nScriptorium-Lock: {blob} {sha}\nScriptorium-User: ed1\nScriptorium-Time: {t}\n",
        script_blob.trim()
    );
    let ident = [
        ("GIT_AUTHOR_NAME", "x"),
        ("GIT_AUTHOR_EMAIL", "x@x"),
        ("GIT_COMMITTER_NAME", "x"),
        ("GIT_COMMITTER_EMAIL", "x@x"),
    ];
    let commit = git_env(
        &repo,
        &ident,
        &["commit-tree", &tree, "-p", "ed1", "-m", &message],
    );
    git_env(&repo, &[], &["update-ref", "refs/heads/ed1", &commit]);

    // Start-up repair records it as version 0.2 with that lock.
    let app = TestApp::start_in(dir, |c| c.seed_examples = false).await;
    let ed1 = app.ed1().await;
    let d = detail(&app, &ed1, id).await;
    assert_eq!(d["version"], "0.2", "{d}");
    assert_eq!(d["dependencies"]["lock_hash"], sha.as_str(), "{d}");

    let run_id = app
        .start_run(&ed1, json!({ "script_id": id, "backend": "linux" }))
        .await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), &ed1, None, 1000)
        .await;
    let complete = &events.last().unwrap().data;
    assert_ne!(complete["status"], "succeeded", "{complete}");
    let m = complete["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("refused") && m.contains("--index-url") && m.contains("Save the script"),
        "{m}"
    );
    assert_eq!(
        contacted.load(Ordering::SeqCst),
        0,
        "uv reached the planted index"
    );
    let envs = std::fs::read_dir(app.data().join("envs"))
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(envs, 0, "an environment was built from the planted lock");

    // Re-locking (editors only) resolves the block again into a new version.
    let mo1 = app.mo1().await;
    let r = app
        .json(
            Method::POST,
            &format!("/api/scripts/{id}/relock"),
            Some(&mo1),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = app
        .json(
            Method::POST,
            &format!("/api/scripts/{id}/relock"),
            Some(&ed1),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(body["version"], "0.3", "{body}");
    assert_eq!(body["changed"], true, "{body}");
    let relocked = app.git(&["show", &format!("ed1:scripts/{file}.lock")]);
    assert_eq!(relocked, lock);
    let subject = app.git(&["log", "-1", "--format=%s", "ed1"]);
    assert!(subject.starts_with("Re-lock the dependencies"), "{subject}");
    let run_id = app
        .start_run(&ed1, json!({ "script_id": id, "backend": "linux" }))
        .await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), &ed1, None, 1000)
        .await;
    let complete = &events.last().unwrap().data;
    assert_eq!(complete["status"], "succeeded", "{complete}");
    assert_eq!(contacted.load(Ordering::SeqCst), 0);
    // Nothing new to lock: the same lock, no new version.
    let r = app
        .json(
            Method::POST,
            &format!("/api/scripts/{id}/relock"),
            Some(&ed1),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["changed"], false);
    assert_eq!(r.json()["version"], "0.3");
}

#[tokio::test]
async fn the_editors_type_server_sees_the_scripts_declared_packages_and_flags_others() {
    use crate::lsp::{Lsp, serve};
    let app = TestApp::start_with(|c| c.seed_examples = false).await;
    let addr = serve(&app).await;
    let ed1 = app.ed1().await;
    let id = app
        .create(&ed1, &with_deps("Declared", "\"tabulate==0.9.0\""))
        .await;
    let missing_on = |line: u64| {
        move |d: &[Value]| {
            d.iter()
                .any(|x| x["code"] == "missing-import" && x["range"]["start"]["line"] == line)
        }
    };
    let text = "import tabulate\nimport not_declared_anywhere\ntabulate.tab";
    // The session of the script: its package completes, the undeclared import is flagged.
    let session = format!("cpython&script={id}");
    let mut lsp = Lsp::open(addr, &ed1, Some(&session)).await;
    let uri = lsp.open_doc("a.py", text).await;
    let labels = lsp.completion_labels(&uri, 2, 12).await;
    assert!(labels.iter().any(|l| l == "tabulate_formats"), "{labels:?}");
    let d = lsp.diagnostics_until(&uri, missing_on(1)).await;
    assert!(
        !missing_on(0)(&d),
        "the declared package is unresolved: {d:?}"
    );
    // A session without the script: the interpreter alone has no tabulate.
    let mut plain = Lsp::open(addr, &ed1, Some("cpython")).await;
    let uri = plain.open_doc("a.py", text).await;
    plain.diagnostics_until(&uri, missing_on(0)).await;
}
