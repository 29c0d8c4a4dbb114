//! The scripts API: create, save, versions, bump, fork, test data, publish, bad input.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::util::TestApp;

#[tokio::test]
async fn create_from_template_takes_the_next_whole_ordering_number() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    app.json(
        Method::PUT,
        "/api/scripts/3/ordering",
        Some(&ed1),
        Some(json!({ "ordering": "3.07" })),
    )
    .await;
    let r = app
        .json(Method::POST, "/api/scripts", Some(&ed1), None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let s = r.json();
    // Seeds are 1.0, 2.0, 2.1→3.07: after 3.xx comes 4.0.
    assert_eq!(s["ordering"], "4.0");
    assert_eq!(s["version"], "0.1");
    assert_eq!(s["name"], "New script");
    let content = s["content"].as_str().unwrap();
    assert!(
        content.contains("sys.argv") && content.contains("argv[1]"),
        "{content}"
    );
    assert!(
        content.contains("Available interpreters") && content.contains("cpython"),
        "{content}"
    );
    // The list shows it with 0.01 s timestamps.
    let list = app.get("/api/scripts", &ed1).await.json();
    let last = list.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["id"], s["id"]);
    let ts = last["last_modified"].as_str().unwrap();
    assert_eq!(ts.len(), "2026-11-21T05:25:57.42Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
}

#[tokio::test]
async fn minor_goes_past_nine_and_bump_resets_it() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "\"\"\"Counter\"\"\"\nn = 1\n").await;
    for i in 2..=10 {
        let base = format!("0.{}", i - 1);
        let r = app
            .save(&ed1, id, &format!("\"\"\"Counter\"\"\"\nn = {i}\n"), &base)
            .await;
        assert_eq!(
            r.json()["version"],
            format!("0.{i}"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let s = app.get(&format!("/api/scripts/{id}"), &ed1).await.json();
    assert_eq!(s["version"], "0.10");
    // 0.1 and 0.10 are different versions with their own content.
    let v1 = app
        .get(&format!("/api/scripts/{id}/versions/0.1"), &ed1)
        .await
        .json();
    let v10 = app
        .get(&format!("/api/scripts/{id}/versions/0.10"), &ed1)
        .await
        .json();
    assert_eq!(v1["content"], "\"\"\"Counter\"\"\"\nn = 1\n");
    assert_eq!(v10["content"], "\"\"\"Counter\"\"\"\nn = 10\n");
    let r = app
        .json(
            Method::POST,
            &format!("/api/scripts/{id}/bump-major"),
            Some(&ed1),
            None,
        )
        .await;
    assert_eq!(r.json()["version"], "1.0");
    let r = app
        .save(&ed1, id, "\"\"\"Counter\"\"\"\nn = 11\n", "1.0")
        .await;
    assert_eq!(r.json()["version"], "1.1");
    let history = app
        .get(&format!("/api/scripts/{id}/versions"), &ed1)
        .await
        .json();
    let versions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions[..4], ["1.1", "1.0", "0.10", "0.9"]);
    assert_eq!(versions.len(), 12);
    assert_eq!(history[1]["kind"], "bump");
    // An unchanged save makes no version.
    let r = app
        .save(&ed1, id, "\"\"\"Counter\"\"\"\nn = 11\n", "1.1")
        .await
        .json();
    assert_eq!(
        (r["version"].as_str(), r["changed"].as_bool()),
        (Some("1.1"), Some(false))
    );
}

#[tokio::test]
async fn an_overlapping_stale_save_is_refused_with_the_current_version() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "x = 1\n").await;
    assert_eq!(
        app.save(&ed1, id, "x = 2\n", "0.1").await.status,
        StatusCode::OK
    );
    let before = app.git(&["rev-parse", "ed1"]);
    let r = app.save(&ed1, id, "x = 3\n", "0.1").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["current_version"], "0.2");
    assert!(r.error().contains("moved from 0.1 to 0.2"), "{}", r.error());
    assert_eq!(
        app.git(&["rev-parse", "ed1"]),
        before,
        "no commit for a stale save"
    );
    let s = app.get(&format!("/api/scripts/{id}"), &ed1).await.json();
    assert_eq!(s["content"], "x = 2\n");
}

#[tokio::test]
async fn invalid_python_is_422_with_the_line_and_commits_nothing() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "x = 1\n").await;
    let before = app.git(&["rev-list", "--all", "--count"]);
    let r = app
        .save(&ed1, id, "x = 1\n\ndef f(:\n    pass\n", "0.1")
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["line"], 3);
    assert!(r.error().contains("line 3"), "{}", r.error());
    // Errors only the compiler sees count as well.
    let r = app.save(&ed1, id, "x = 1\nreturn x\n", "0.1").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["line"], 2);
    let r = app
        .json(
            Method::POST,
            "/api/scripts",
            Some(&ed1),
            Some(json!({ "content": "if True\n" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.git(&["rev-list", "--all", "--count"]), before);
    assert_eq!(
        app.get(&format!("/api/scripts/{id}"), &ed1).await.json()["version"],
        "0.1"
    );
    assert_eq!(
        app.get("/api/scripts", &ed1)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "x = 1\n").await;
    let before = app.git(&["rev-list", "--all", "--count"]);
    let path = format!("/api/scripts/{id}");
    // (method, path, body, content type, expected status, words the error must contain)
    type Case<'a> = (Method, String, Body, Option<&'a str>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (Method::PUT, path.clone(), "{not json".into(), Some("application/json"), StatusCode::BAD_REQUEST, "JSON"),
        (Method::PUT, path.clone(), json!({"content": "x"}).to_string().into(), Some("application/json"), StatusCode::BAD_REQUEST, "base_version"),
        (Method::PUT, path.clone(), json!({"content": "x", "base_version": "0.1"}).to_string().into(), None, StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        (Method::PUT, path.clone(), json!({"content": "x=1", "base_version": "zero"}).to_string().into(), Some("application/json"), StatusCode::BAD_REQUEST, "Major.Minor"),
        (Method::PUT, path.clone(), json!({"content": "x=1", "base_version": "0.1", "extra": 1}).to_string().into(), Some("application/json"), StatusCode::BAD_REQUEST, "extra"),
        (Method::PUT, path.clone(), b"{\"content\": \"\xff\xfe\", \"base_version\": \"0.1\"}".to_vec().into(), Some("application/json"), StatusCode::BAD_REQUEST, "JSON"),
        (Method::PUT, path.clone(), json!({"content": format!("x = 1\n#{}\n", "a".repeat(1024 * 1024)), "base_version": "0.1"}).to_string().into(), Some("application/json"), StatusCode::PAYLOAD_TOO_LARGE, "limit"),
        (Method::PUT, "/api/scripts/9999".into(), json!({"content": "x=1", "base_version": "0.1"}).to_string().into(), Some("application/json"), StatusCode::NOT_FOUND, "script 9999 does not exist"),
        (Method::GET, "/api/scripts/abc".into(), Body::empty(), None, StatusCode::BAD_REQUEST, "`abc`"),
        (Method::GET, format!("{path}/versions/7.7"), Body::empty(), None, StatusCode::NOT_FOUND, "version 7.7"),
        (Method::POST, "/api/scripts".into(), json!({"content": "x=1", "filename": "../evil.py"}).to_string().into(), Some("application/json"), StatusCode::BAD_REQUEST, "path separator"),
        (Method::POST, "/api/scripts".into(), json!({"content": "x=1", "filename": "a\\b.py"}).to_string().into(), Some("application/json"), StatusCode::BAD_REQUEST, "path separator"),
        (Method::POST, "/api/scripts".into(), json!({"content": "x=1", "ordering": "2.1"}).to_string().into(), Some("application/json"), StatusCode::CONFLICT, "taken"),
        (Method::POST, "/api/scripts".into(), json!({"content": "x=1", "ordering": "1e3"}).to_string().into(), Some("application/json"), StatusCode::BAD_REQUEST, "ordering"),
        (Method::PUT, format!("{path}/test-data"), vec![b'x'; 9 * 1024 * 1024].into(), Some("application/octet-stream"), StatusCode::PAYLOAD_TOO_LARGE, "limit"),
        (Method::POST, "/api/scripts/424242/publish".into(), Body::empty(), Some("application/json"), StatusCode::NOT_FOUND, "424242"),
    ];
    for (method, uri, body, ctype, status, needle) in cases {
        let r = app
            .call(method.clone(), &uri, Some(&ed1), body, ctype)
            .await;
        assert_eq!(
            r.status,
            status,
            "{method} {uri}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            r.error().contains(needle),
            "{method} {uri}: `{}` lacks `{needle}`",
            r.error()
        );
    }
    assert_eq!(
        app.git(&["rev-list", "--all", "--count"]),
        before,
        "bad input wrote to git"
    );
    assert_eq!(
        app.get("/api/scripts", &ed1)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        4,
        "bad input created a script"
    );
    assert_eq!(app.get(&path, &ed1).await.json()["version"], "0.1");
}

#[tokio::test]
async fn fork_records_its_origin_and_copies_test_data() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "\"\"\"Original\"\"\"\nx = 1\n").await;
    app.save(&ed1, id, "\"\"\"Original\"\"\"\nx = 2\n", "0.1")
        .await;
    let put = app
        .put_raw(
            &format!("/api/scripts/{id}/test-data"),
            Some(&ed1),
            "a,b\n1,2\n",
        )
        .await;
    assert_eq!(put.json()["changed"], true);
    let r = app
        .json(
            Method::POST,
            &format!("/api/scripts/{id}/fork"),
            Some(&ed1),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let fork = r.json();
    assert_eq!(fork["parent"], json!({ "id": id, "version": "0.2" }));
    assert_eq!(fork["version"], "0.1");
    assert_eq!(fork["content"], "\"\"\"Original\"\"\"\nx = 2\n");
    assert_ne!(fork["id"], json!(id));
    let fid = fork["id"].as_i64().unwrap();
    let data = app
        .get(&format!("/api/scripts/{fid}/test-data"), &ed1)
        .await;
    assert_eq!(data.body, b"a,b\n1,2\n");
    // The fork lives on the editor's branch, not on prod.
    let file = fork["filename"].as_str().unwrap();
    assert!(
        app.git(&["ls-tree", "--name-only", "ed1", "scripts/"])
            .contains(file)
    );
    assert!(
        !app.git(&["ls-tree", "--name-only", "prod", "scripts/"])
            .contains(file)
    );
}

#[tokio::test]
async fn git_history_is_readable_with_the_git_cli() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "\"\"\"Report\"\"\"\nprint('v1')\n").await;
    app.save(&ed1, id, "\"\"\"Report\"\"\"\nprint('v2')\n", "0.1")
        .await;
    app.put_raw(
        &format!("/api/scripts/{id}/test-data"),
        Some(&ed1),
        "input\n",
    )
    .await;
    let r = app
        .json(
            Method::POST,
            &format!("/api/scripts/{id}/publish"),
            Some(&ed1),
            None,
        )
        .await;
    assert_eq!(
        r.json(),
        json!({ "published_version": "0.2", "changed": true })
    );
    let again = app
        .json(
            Method::POST,
            &format!("/api/scripts/{id}/publish"),
            Some(&ed1),
            None,
        )
        .await;
    assert_eq!(again.json()["changed"], false);

    let file = format!("script_{id:04}.py");
    // Each save is a commit on ed1's branch authored by ed1.
    let log = app.git(&[
        "log",
        "ed1",
        "--format=%an <%ae>|%s",
        "--",
        &format!("scripts/{file}"),
    ]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            format!("ed1 <ed1@scriptorium.local>|Save {file} as 0.2"),
            format!("ed1 <ed1@scriptorium.local>|Create {file} (0.1)")
        ]
    );
    // prod holds the published content and test data, by ed1.
    let prod = app.git(&["log", "prod", "-1", "--format=%an|%s"]);
    assert_eq!(prod.trim(), format!("ed1|Publish {file} 0.2"));
    assert_eq!(
        app.git(&["show", &format!("prod:scripts/{file}")]),
        "\"\"\"Report\"\"\"\nprint('v2')\n"
    );
    assert_eq!(
        app.git(&["show", &format!("prod:testdata/script_{id:04}")]),
        "input\n"
    );
    // The trailers say what each commit was.
    let msg = app.git(&[
        "log",
        "ed1",
        "-1",
        "--format=%B",
        "--",
        &format!("scripts/{file}"),
    ]);
    assert!(
        msg.contains("Scriptorium-Action: save") && msg.contains("Scriptorium-Version: 0.2"),
        "{msg}"
    );
    // The list reports the published version.
    let list = app.get("/api/scripts", &ed1).await.json();
    let s = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(s["published_version"], "0.2");
    assert_eq!(s["name"], "Report");
}

#[tokio::test]
async fn the_shipped_examples_can_be_added_with_their_test_data() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let list = app.get("/api/examples", &ed1).await.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "word_count",
            "csv_totals",
            "json_summary",
            "bracket",
            "assembly"
        ]
    );
    let bracket = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "bracket")
        .unwrap();
    assert_eq!(bracket["name"], "Bracket with a hole");
    assert_eq!(bracket["interpreter"], "build123d");
    assert!(
        bracket["summary"]
            .as_str()
            .unwrap()
            .contains("mounting hole"),
        "{bracket}"
    );

    let r = app
        .json(Method::POST, "/api/examples/bracket", Some(&ed1), None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.text());
    let s = r.json();
    assert_eq!(
        (
            s["filename"].as_str(),
            s["name"].as_str(),
            s["version"].as_str()
        ),
        (Some("bracket.py"), Some("Bracket with a hole"), Some("0.1"))
    );
    let id = s["id"].as_i64().unwrap();
    let data = app.get(&format!("/api/scripts/{id}/test-data"), &ed1).await;
    assert_eq!(data.text(), include_str!("../examples/bracket.json"));
    // Again: the file name is taken, so it gets the next free one; the example is the same.
    let again = app
        .json(Method::POST, "/api/examples/bracket", Some(&ed1), None)
        .await
        .json();
    assert_ne!(again["filename"], "bracket.py");
    assert_eq!(again["content"], s["content"]);

    let before = app
        .get("/api/scripts", &ed1)
        .await
        .json()
        .as_array()
        .unwrap()
        .len();
    let r = app
        .json(Method::POST, "/api/examples/rocket", Some(&ed1), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.text().contains("no example `rocket`") && r.text().contains("bracket, assembly"),
        "{}",
        r.text()
    );
    assert_eq!(
        app.get("/api/scripts", &ed1)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        before,
        "nothing was created"
    );
}

/// Opening a shipped example and saving it untouched makes no version: the editor formats
/// on save with the language server's ruff (line length 100, as `LspConfig` sets), so
/// the examples must already be in that form.
#[test]
fn the_shipped_examples_are_formatted_as_the_editor_formats_them() {
    let root = crate::util::repo_root();
    let ruff = root.join("build/lsp/bin/ruff");
    assert!(
        ruff.exists(),
        "run `make lsp` first: {} is missing",
        ruff.display()
    );
    let out = std::process::Command::new(&ruff)
        .args([
            "format",
            "--check",
            "--diff",
            "--line-length",
            "100",
            "--no-cache",
        ])
        .arg(root.join("examples"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "examples/ is not formatted (run `build/lsp/bin/ruff format --line-length 100 examples`):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A machine without a native Python (Windows without CPython): the server starts, and
/// saves are checked by CPython for WASI — the docstring names the script, invalid
/// Python is refused with its position, and the example seeding works.
#[tokio::test]
async fn without_a_native_python_syntax_is_checked_with_wasi_cpython() {
    let component = crate::util::repo_root().join("build/wasi/cpython.wasm");
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("interpreters.toml");
    std::fs::write(
        &toml,
        format!(
            "default = \"wasi\"\n[detect]\nenabled = false\n[[interpreter]]\nid = \"wasi\"\nkind = \"wasi\"\ncomponent = '{}'\nbackends = [\"wasi\"]\n",
            component.display()
        ),
    )
    .unwrap();
    let app = TestApp::start_in(dir, |c| c.interpreters = toml).await;
    let ed1 = app.ed1().await;
    // Seeded through the same checker.
    let list = app.get("/api/scripts", &ed1).await.json();
    assert!(!list.as_array().unwrap().is_empty(), "{list}");
    let id = app
        .create(&ed1, "\"\"\"Checked in WASI\n\nMore.\"\"\"\nx = 1\n")
        .await;
    let script = app.get(&format!("/api/scripts/{id}"), &ed1).await.json();
    assert_eq!(script["name"], "Checked in WASI");
    let version = script["version"].as_str().unwrap().to_string();
    let r = app
        .save(&ed1, id, "x = 1\ndef f(:\n    pass\n", &version)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.error().contains("line 2"), "{}", r.error());
    let r = app.save(&ed1, id, "\"\"\"Renamed\"\"\"\n", &version).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The checker's worker sees only its own directory.
    assert!(app.data().join("checker/checker.py").is_file());
}
