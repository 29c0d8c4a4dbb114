//! Per-script dependencies (PEP 723) with real packages from the index: the lock in
//! git, environments built once and shared, runs in the linux sandbox.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::TestApp;

async fn app() -> TestApp {
    TestApp::start_with(|c| c.seed_examples = false).await
}

const TABLE: &str = "\"\"\"Table\"\"\"\n# /// script\n# requires-python = \">=3.9\"\n# dependencies = [\"tabulate==0.9.0\"]\n# ///\nfrom tabulate import tabulate\nprint(tabulate([[\"a\", 1], [\"b\", 22]], headers=[\"name\", \"n\"]))\n";

async fn create(app: &TestApp, cookie: &str, content: &str) -> (StatusCode, Value) {
    let r = app
        .json(
            Method::POST,
            "/api/scripts",
            Some(cookie),
            Some(json!({ "content": content })),
        )
        .await;
    (r.status, r.json())
}

/// Runs the current version of `id` under linux; its log lines and its run record.
async fn run(app: &TestApp, cookie: &str, id: i64) -> (Vec<String>, Value) {
    let run_id = app
        .start_run(cookie, json!({ "script_id": id, "backend": "linux" }))
        .await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), cookie, None, 1000)
        .await;
    let lines = events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data["line"].as_str().unwrap_or_default().to_string())
        .collect();
    let record = app.get(&format!("/api/runs/{run_id}"), cookie).await.json();
    (lines, record)
}

fn envs(app: &TestApp) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(app.data().join("envs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn a_script_declaring_tabulate_is_locked_in_git_and_prints_a_table() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let (status, body) = create(&app, &ed1, TABLE).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let file = format!("script_{id:04}.py");
    // The lock is committed beside the script, in the same commit.
    let lock = app.git(&["show", &format!("ed1:scripts/{file}.lock")]);
    assert!(lock.contains("tabulate==0.9.0"), "{lock}");
    assert!(lock.contains("--hash=sha256:"), "{lock}");
    let changed = app.git(&["show", "--name-only", "--format=", "ed1"]);
    assert_eq!(
        changed.lines().collect::<Vec<_>>(),
        [format!("scripts/{file}"), format!("scripts/{file}.lock")]
    );
    // The script's detail lists what it declares and what the lock pins.
    let detail = app.get(&format!("/api/scripts/{id}"), &ed1).await.json();
    let deps = &detail["dependencies"];
    assert_eq!(deps["declared"], json!(["tabulate==0.9.0"]), "{deps}");
    assert_eq!(deps["locked"], json!(["tabulate==0.9.0"]), "{deps}");
    assert_eq!(deps["lock_hash"], sha256(&lock), "{deps}");
    let (lines, record) = run(&app, &ed1, id).await;
    assert_eq!(record["status"], "succeeded", "{record} {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("name")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("----")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("b") && l.ends_with("22")),
        "{lines:?}"
    );
    // The run record names the lock it ran with.
    let text = app.git(&["show", &format!("ed1:scripts/{file}.lock")]);
    assert_eq!(record["lock_hash"], sha256(&text), "{record}");
}

#[tokio::test]
async fn a_second_script_with_the_same_lock_reuses_the_environment() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let (_, a) = create(&app, &ed1, TABLE).await;
    let (_, b) = create(&app, &ed1, &TABLE.replace("Table", "Another table")).await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let (lines, ra) = run(&app, &ed1, a).await;
    assert_eq!(ra["status"], "succeeded", "{ra} {lines:?}");
    assert!(lines.iter().any(|l| l.contains("built")), "{lines:?}");
    let built = envs(&app);
    assert_eq!(built.len(), 1, "{built:?}");
    let marker = app
        .data()
        .join("envs")
        .join(&built[0])
        .join("site-packages");
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&marker).unwrap());
    let (lines, rb) = run(&app, &ed1, b).await;
    assert_eq!(rb["status"], "succeeded", "{rb} {lines:?}");
    assert!(lines.iter().any(|l| l.contains("reused")), "{lines:?}");
    assert_eq!(ra["lock_hash"], rb["lock_hash"]);
    // No second build: the same single entry, the very same directory.
    assert_eq!(envs(&app), built);
    let again = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&marker).unwrap());
    assert_eq!(inode, again);
}

#[tokio::test]
async fn an_unknown_package_is_a_422_naming_it_and_nothing_is_committed() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let (status, body) = create(&app, &ed1, "\"\"\"Plain\"\"\"\nprint(1)\n").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let before = app.git(&["rev-parse", "ed1"]);
    let bad = "\"\"\"Plain\"\"\"\n# /// script\n# dependencies = [\"scriptorium-no-such-package-zzq\"]\n# ///\nprint(1)\n";
    let r = app.save(&ed1, id, bad, "0.1").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let e = r.error();
    assert!(e.contains("scriptorium-no-such-package-zzq"), "{e}");
    assert!(e.contains("could not be resolved"), "{e}");
    assert_eq!(app.git(&["rev-parse", "ed1"]), before);
    let detail = app.get(&format!("/api/scripts/{id}"), &ed1).await.json();
    assert_eq!(detail["version"], "0.1");
}

#[tokio::test]
async fn a_malformed_block_is_a_422_naming_its_line() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let bad = "\"\"\"Bad\"\"\"\n# /// script\n# dependencies = [\"tabulate\"\n# ///\nprint(1)\n";
    let (status, body) = create(&app, &ed1, bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(e.contains("line 3") || e.contains("line 2"), "{e}");
}

#[tokio::test]
async fn a_run_cannot_write_into_the_shared_environment() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let attack = "\"\"\"Attack\"\"\"\n# /// script\n# dependencies = [\"tabulate==0.9.0\"]\n# ///\nimport os, tabulate\nd = os.path.dirname(tabulate.__file__)\ntry:\n    open(os.path.join(d, 'planted.py'), 'w').write('x')\n    print('WROTE file')\nexcept OSError as e:\n    print('denied file', type(e).__name__)\ntry:\n    open(tabulate.__file__, 'a').write('# x')\n    print('WROTE module')\nexcept OSError as e:\n    print('denied module', type(e).__name__)\n";
    let (status, body) = create(&app, &ed1, attack).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (lines, record) = run(&app, &ed1, body["id"].as_i64().unwrap()).await;
    assert_eq!(record["status"], "succeeded", "{record} {lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("denied file")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("denied module")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("WROTE")), "{lines:?}");
    let env = &envs(&app)[0];
    let site = app.data().join("envs").join(env).join("site-packages");
    assert!(!site.join("tabulate/planted.py").exists());
    assert!(!site.join("planted.py").exists());
}

#[tokio::test]
async fn publishing_carries_the_lock_to_prod_and_run_all_uses_it() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let id = app.published(&ed1, "1.0", TABLE, "").await;
    let file = format!("script_{id:04}.py");
    let on_prod = app.git(&["show", &format!("prod:scripts/{file}.lock")]);
    assert_eq!(
        on_prod,
        app.git(&["show", &format!("ed1:scripts/{file}.lock")])
    );
    let r = app
        .json(Method::POST, "/api/passes", Some(&ed1), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let pass_id = r.json()["pass_id"].as_i64().unwrap();
    let events = app
        .sse(&format!("/api/passes/{pass_id}/events"), &ed1, None, 10_000)
        .await;
    let lines: Vec<String> = events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data["line"].as_str().unwrap_or_default().to_string())
        .collect();
    let pass = app
        .get(&format!("/api/passes/{pass_id}"), &ed1)
        .await
        .json();
    assert_eq!(pass["status"], "succeeded", "{pass} {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("----")), "{lines:?}");
    let run = &pass["groups"][0]["runs"][0];
    assert_eq!(run["lock_hash"], sha256(&on_prod), "{run}");
}

/// Runs the current version of `id` under wasi; its log lines and last event's data.
async fn run_wasi(app: &TestApp, cookie: &str, id: i64) -> (Vec<String>, Value) {
    let r = app
        .json(
            Method::POST,
            "/api/runs",
            Some(cookie),
            Some(json!({ "script_id": id, "interpreter": "wasi-cpython-3.14", "backend": "wasi" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let run_id = r.json()["run_id"].as_i64().unwrap();
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), cookie, None, 1000)
        .await;
    let lines = events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data["line"].as_str().unwrap_or_default().to_string())
        .collect();
    (lines, events.last().unwrap().data.clone())
}

#[tokio::test]
async fn tabulate_prints_a_table_under_wasi_from_a_read_only_environment() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let content = format!(
        "{TABLE}import sys\ntry:\n    open(sys.path[-1] + '/planted.py', 'w').write('x')\n    print('wrote into', sys.path[-1])\nexcept OSError as e:\n    print('read-only:', type(e).__name__)\n"
    );
    let (_, body) = create(&app, &ed1, &content).await;
    let id = body["id"].as_i64().unwrap();
    let (lines, complete) = run_wasi(&app, &ed1, id).await;
    assert_eq!(complete["status"], "succeeded", "{complete} {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("name")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("b ") && l.ends_with("22")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("read-only:")),
        "{lines:?}"
    );
    for e in envs(&app) {
        let planted = app
            .data()
            .join("envs")
            .join(e)
            .join("site-packages/planted.py");
        assert!(!planted.exists());
    }
}

#[tokio::test]
async fn a_platform_wheel_under_wasi_is_refused_naming_it() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let content = "\"\"\"Native\"\"\"\n# /// script\n# dependencies = [\"markupsafe==3.0.2\"]\n# ///\nimport markupsafe\nprint(markupsafe.escape('<a>'))\n";
    let (status, body) = create(&app, &ed1, content).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let (lines, complete) = run_wasi(&app, &ed1, id).await;
    assert_ne!(complete["status"], "succeeded", "{complete}");
    let m = complete["message"].as_str().unwrap_or_default();
    assert!(
        m.to_lowercase().contains("`markupsafe 3.0.2`")
            && m.contains("platform wheel")
            && m.contains("backend linux"),
        "{m}"
    );
    assert!(!lines.iter().any(|l| l.contains("&lt;")), "{lines:?}");
    // Under linux the same script runs.
    let (lines, record) = run(&app, &ed1, id).await;
    assert_eq!(record["status"], "succeeded", "{record} {lines:?}");
    assert!(lines.iter().any(|l| l == "&lt;a&gt;"), "{lines:?}");
}

#[tokio::test]
async fn removing_the_dependencies_removes_the_lock_and_an_unchanged_block_keeps_it() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let (_, body) = create(&app, &ed1, TABLE).await;
    let id = body["id"].as_i64().unwrap();
    let lock = format!("ed1:scripts/script_{id:04}.py.lock");
    let first = app.git(&["rev-parse", &lock]);
    // Only the code changed: the same lock blob, no second resolution.
    let r = app
        .save(&ed1, id, &format!("{TABLE}print('more')\n"), "0.1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(app.git(&["rev-parse", &lock]), first);
    let changed = app.git(&["show", "--name-only", "--format=", "ed1"]);
    assert_eq!(changed.trim(), format!("scripts/script_{id:04}.py"));
    // No dependencies any more: the lock goes in the same commit.
    let r = app
        .save(&ed1, id, "\"\"\"Plain\"\"\"\nprint(1)\n", "0.2")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let files = app.git(&["ls-tree", "--name-only", "ed1", "scripts/"]);
    assert!(!files.contains(".lock"), "{files}");
    let detail = app.get(&format!("/api/scripts/{id}"), &ed1).await.json();
    assert_eq!(detail["dependencies"]["lock_hash"], Value::Null);
}

/// A hostile author writes dependencies that uv would take as a URL or a host path
/// rather than a package name: a wheel on another host, a wheel or directory on the
/// server's disk, a git clone of the server's own repository. Each is refused with a 422
/// before uv starts, so uv (running with the server's privileges) reads no host file
/// and reaches no host but the configured index.
#[tokio::test]
async fn dependencies_that_are_urls_or_host_paths_are_refused_before_uv_runs() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let (status, body) = create(&app, &ed1, "\"\"\"Plain\"\"\"\nprint(1)\n").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    // Stands in for another host: it must never be contacted.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let port = other.local_addr().unwrap().port();
    let repo = app.data().join("repo");
    let hostile = [
        format!("http://127.0.0.1:{port}/x-1.0-py3-none-any.whl"),
        format!("git+http://127.0.0.1:{port}/x.git"),
        format!("git+file://{}", repo.display()),
        "file:///etc/passwd.whl".to_string(),
        "x-1.0-py3-none-any.whl".to_string(),
        "pkg.tar.gz".to_string(),
        "..".to_string(),
        "etc/x.whl".to_string(),
        "tabulate\t--hash=sha256:00".to_string(),
        "tabulate; python_version > \"${HOME}\"".to_string(),
    ];
    let before = app.git(&["rev-parse", "ed1"]);
    for dep in hostile {
        let dep_toml = dep
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\t', "\\t");
        let content = format!(
            "\"\"\"Plain\"\"\"\n# /// script\n# dependencies = [\"{dep_toml}\"]\n# ///\nprint(1)\n"
        );
        let r = app.save(&ed1, id, &content, "0.1").await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{dep}: {}",
            r.text()
        );
        let e = r.error();
        assert!(e.contains("is not a package requirement"), "{dep}: {e}");
        assert_eq!(app.git(&["rev-parse", "ed1"]), before, "{dep}");
    }
    assert!(other.accept().is_err(), "uv contacted another host");
    let git_cache = app.data().join("uv-cache").join("git-v2");
    assert!(!git_cache.exists(), "uv cloned a repository into its cache");
}
