//! A team of four editors (ed1…ed4) and a viewer on one queue (issue 16): merged
//! saves, publishing what was looked at, the duplicate-code rule on prod, notices,
//! fork orderings.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{TestApp, next_event};

const FIVE: &str = "\"\"\"Five lines\"\"\"\na = 1\nb = 2\nc = 3\nd = 4\ne = 5\n";

async fn content(app: &TestApp, cookie: &str, id: i64) -> (String, String) {
    let s = app.get(&format!("/api/scripts/{id}"), cookie).await.json();
    (
        s["content"].as_str().unwrap().to_string(),
        s["version"].as_str().unwrap().to_string(),
    )
}

async fn publish(
    app: &TestApp,
    cookie: &str,
    id: i64,
    version: Option<&str>,
) -> crate::util::Reply {
    let body = version.map(|v| json!({ "version": v }));
    app.json(
        Method::POST,
        &format!("/api/scripts/{id}/publish"),
        Some(cookie),
        body,
    )
    .await
}

#[tokio::test]
async fn non_overlapping_edits_of_four_editors_merge_with_nothing_lost() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let id = app.create(&ed1, FIVE).await;
    // ed2, ed3 and ed4 all open 0.1 and each edit a different line.
    let (ed2, ed3, ed4) = (
        app.as_user("ed2").await,
        app.as_user("ed3").await,
        app.as_user("ed4").await,
    );
    let r = app
        .save(&ed2, id, &FIVE.replace("a = 1", "a = 10"), "0.1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["merged"], Value::Null);

    let r = app
        .save(&ed3, id, &FIVE.replace("e = 5", "e = 50"), "0.1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["version"], "0.3");
    assert_eq!(j["merged"], json!({ "base": "0.1", "theirs": "0.2" }));

    let r = app
        .save(&ed4, id, &FIVE.replace("c = 3", "c = 30"), "0.1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["merged"],
        json!({ "base": "0.1", "theirs": "0.3" })
    );

    let (text, version) = content(&app, &ed1, id).await;
    assert_eq!(version, "0.4", "one new version per save");
    assert_eq!(
        text, "\"\"\"Five lines\"\"\"\na = 10\nb = 2\nc = 30\nd = 4\ne = 50\n",
        "every editor's change is in"
    );
    let versions = app
        .get(&format!("/api/scripts/{id}/versions"), &ed1)
        .await
        .json();
    assert_eq!(versions.as_array().unwrap().len(), 4);
    // git tells who merged what, on their own branch.
    let log = app.git(&["log", "ed3", "--format=%an %s", "-1"]);
    assert!(
        log.starts_with("ed3 Save") && log.contains("an edit of 0.1 merged with 0.2"),
        "{log}"
    );
}

#[tokio::test]
async fn overlapping_edits_are_409_with_the_hunks_and_nothing_is_saved() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let id = app.create(&ed1, FIVE).await;
    let (ed2, ed3) = (app.as_user("ed2").await, app.as_user("ed3").await);
    assert_eq!(
        app.save(&ed2, id, &FIVE.replace("c = 3", "c = 30"), "0.1")
            .await
            .status,
        StatusCode::OK
    );
    let tip = app.git(&["rev-parse", "ed3"]);
    let ours = FIVE.replace("c = 3", "c = 300");
    let r = app.save(&ed3, id, &ours, "0.1").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let j = r.json();
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("moved from 0.1 to 0.2"),
        "{j}"
    );
    let c = &j["conflict"];
    assert_eq!(
        (c["base"].as_str(), c["theirs"].as_str()),
        (Some("0.1"), Some("0.2"))
    );
    assert_eq!(
        c["hunks"],
        json!([{ "line": 4, "base": "c = 3\n", "theirs": "c = 30\n", "ours": "c = 300\n" }])
    );
    assert_eq!(
        c["ours_content"], ours,
        "the edit comes back whole: nothing is lost"
    );
    assert_eq!(c["base_content"], FIVE);
    assert_eq!(app.git(&["rev-parse", "ed3"]), tip, "no commit");
    // An oversized edit of an old version is refused before any merging.
    let big = format!("{FIVE}# {}\n", "x".repeat(2 * 1024 * 1024));
    assert_eq!(
        app.save(&ed3, id, &big, "0.1").await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(content(&app, &ed1, id).await.1, "0.2");
    // Resolved against 0.2, it saves.
    let r = app
        .save(&ed3, id, &FIVE.replace("c = 3", "c = 330"), "0.2")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["version"], "0.3");
}

#[tokio::test]
async fn publishing_a_script_that_moved_is_409_naming_the_newer_version() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let id = app.create(&ed1, "\"\"\"Moves\"\"\"\nvalue = 'ed1'\n").await;
    assert_eq!(
        app.save(&ed2, id, "\"\"\"Moves\"\"\"\nvalue = 'ed2'\n", "0.1")
            .await
            .status,
        StatusCode::OK
    );
    let prod = app.git(&["rev-parse", "prod"]);
    let r = publish(&app, &ed1, id, Some("0.1")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.json()["current_version"], "0.2");
    assert!(r.error().contains("at version 0.2"), "{}", r.error());
    assert_eq!(app.git(&["rev-parse", "prod"]), prod, "nothing published");

    let r = publish(&app, &ed1, id, Some("0.2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["published_version"], "0.2");
    // Whose branch each version lives on, with plain git.
    assert!(
        app.git(&["log", "ed2", "--format=%an %s"])
            .contains("ed2 Save script_"),
        "ed2's save is on ed2"
    );
    assert!(
        app.git(&["log", "prod", "--format=%an %s", "-1"])
            .starts_with("ed1 Publish script_"),
    );
    // A bad version is a 400 that says what to send.
    let r = publish(&app, &ed1, id, Some("zero")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("`version`"), "{}", r.error());
}

#[tokio::test]
async fn duplicate_executable_code_is_refused_on_publish_but_comment_and_docstring_changes_are_not()
{
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let a = app
        .create(
            &ed1,
            "\"\"\"Doubles\"\"\"\ndef f(x):\n    return x * 2\n\nprint(f(21))\n",
        )
        .await;
    assert_eq!(
        publish(&app, &ed1, a, Some("0.1")).await.status,
        StatusCode::OK
    );

    // ed2 writes the same code with other docs, comments and spacing.
    let b = app.create(&ed2, "x = 0\n").await;
    let same = "\"\"\"Twice\n\nSomething else.\"\"\"\n# mine\ndef f( x ):\n    \"\"\"double it\"\"\"\n    return (x * 2)  # times two\n\n\nprint(f(21))\n";
    let r = app.save(&ed2, b, same, "0.1").await;
    assert_eq!(r.status, StatusCode::OK);
    // The save warns early ...
    assert_eq!(r.json()["duplicate_of"]["script_id"], a, "{}", r.text());
    // ... and the publish refuses, naming the script and its version.
    let prod = app.git(&["rev-parse", "prod"]);
    let r = publish(&app, &ed2, b, Some("0.2")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let j = r.json();
    assert_eq!(j["duplicate_of"]["script_id"], a);
    assert_eq!(j["duplicate_of"]["version"], "0.1");
    assert!(
        r.error().contains(&format!("script {a} ")) && r.error().contains("version 0.1"),
        "{}",
        r.error()
    );
    assert_eq!(app.git(&["rev-parse", "prod"]), prod);

    // The same script with only new comments and docstrings publishes again.
    let r = app
        .save(
            &ed1,
            a,
            "\"\"\"Doubles, documented\"\"\"\n# why: the report wants it\ndef f(x):\n    \"\"\"x twice\"\"\"\n    return x * 2\n\nprint(f(21))\n",
            "0.1",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["duplicate_of"],
        Value::Null,
        "its own file does not count"
    );
    assert_eq!(
        publish(&app, &ed1, a, Some("0.2")).await.status,
        StatusCode::OK
    );

    // ed2's with different code is fine.
    let r = app
        .save(&ed2, b, &same.replace("x * 2", "x * 3"), "0.2")
        .await;
    assert_eq!(r.json()["duplicate_of"], Value::Null);
    assert_eq!(
        publish(&app, &ed2, b, Some("0.3")).await.status,
        StatusCode::OK
    );
    let audit = app.get("/api/audit/duplicates", &ed1).await.json();
    assert_eq!(audit["ok"], true, "{audit}");
}

#[tokio::test]
async fn the_audit_lists_a_duplicate_planted_with_the_git_cli() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let a = app
        .create(&ed1, "\"\"\"Original\"\"\"\nprint(sum(range(10)))\n")
        .await;
    assert_eq!(publish(&app, &ed1, a, None).await.status, StatusCode::OK);
    let file = app.get(&format!("/api/scripts/{a}"), &ed1).await.json()["filename"]
        .as_str()
        .unwrap()
        .to_string();

    // Someone commits a copy with another docstring straight onto prod.
    let work = tempfile::tempdir().unwrap();
    let repo = app.data().join("repo");
    let git = |args: &[&str]| crate::util::git(work.path(), args);
    crate::util::git(
        app.data(),
        &[
            "clone",
            "-q",
            "-b",
            "prod",
            repo.to_str().unwrap(),
            work.path().to_str().unwrap(),
        ],
    );
    std::fs::write(
        work.path().join("scripts/planted.py"),
        "\"\"\"A copy\"\"\"\n# planted\nprint(sum(range(10)))\n",
    )
    .unwrap();
    git(&["add", "scripts/planted.py"]);
    git(&[
        "-c",
        "user.name=cli",
        "-c",
        "user.email=cli@x",
        "commit",
        "-q",
        "-m",
        "plant a copy",
    ]);
    git(&["push", "-q", "origin", "prod"]);

    let audit = app.get("/api/audit/duplicates", &ed1).await.json();
    assert_eq!(audit["ok"], false, "{audit}");
    let sets = audit["duplicates"].as_array().unwrap();
    assert_eq!(sets.len(), 1, "{audit}");
    let mut names: Vec<&str> = sets[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["filename"].as_str().unwrap())
        .collect();
    names.sort();
    let mut want = vec![file.as_str(), "planted.py"];
    want.sort();
    assert_eq!(names, want);
    let known = sets[0]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["filename"] == file.as_str())
        .unwrap();
    assert_eq!(known["script_id"], a);
    assert_eq!(known["version"], "0.1");
}

/// Plants a copy of `scripts/{file}` (another docstring) on prod with the git CLI.
fn plant_copy(repo: &std::path::Path, file: &str) {
    let work = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| crate::util::git(work.path(), args);
    crate::util::git(
        repo,
        &[
            "clone",
            "-q",
            "-b",
            "prod",
            repo.to_str().unwrap(),
            work.path().to_str().unwrap(),
        ],
    );
    let original = std::fs::read_to_string(work.path().join("scripts").join(file)).unwrap();
    std::fs::write(
        work.path().join("scripts/planted.py"),
        format!(
            "# planted\n{}",
            original.replacen("\"\"\"", "\"\"\"A copy. ", 1)
        ),
    )
    .unwrap();
    git(&["add", "scripts/planted.py"]);
    git(&[
        "-c",
        "user.name=cli",
        "-c",
        "user.email=cli@x",
        "commit",
        "-q",
        "-m",
        "plant a copy",
    ]);
    git(&["push", "-q", "origin", "prod"]);
}

#[tokio::test]
async fn the_start_up_check_logs_duplicates_on_prod() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = crate::util::ServerProcess::start(&data, &[]);
    let client = crate::util::http_client(&server, "ed1", "1editor").await;
    let list: Vec<Value> = client
        .get(server.url("/api/scripts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seeded = list[0]["filename"].as_str().unwrap().to_string();
    let log = server.terminate();
    assert!(
        !log.contains("same executable code"),
        "no duplicates yet: {log}"
    );
    plant_copy(&data.join("repo"), &seeded);
    let server = crate::util::ServerProcess::start(&data, &[]);
    let log = server.terminate();
    let line = log
        .lines()
        .find(|l| l.contains("prod holds scripts with the same executable code"))
        .unwrap_or_else(|| panic!("the start-up check names the duplicates: {log}"));
    assert!(
        line.contains(&seeded) && line.contains("planted.py"),
        "{line}"
    );
}

#[tokio::test]
async fn events_deliver_a_save_by_ed2_to_ed1_within_a_second_and_replay_with_last_event_id() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let mo1 = app.as_user("mo1").await;
    let id = app.create(&ed1, FIVE).await;

    let mut ed1_events = app.sse_live("/api/events", &ed1, None).await;
    let hello = next_event(&mut ed1_events, "hello", Duration::from_secs(5))
        .await
        .expect("hello");
    let before = hello.data["last_id"].as_u64().unwrap();

    // ed2 opens the script: ed1 sees who is there.
    let mut ed2_events = app.sse_live("/api/events", &ed2, None).await;
    let ed2_tab = next_event(&mut ed2_events, "hello", Duration::from_secs(5))
        .await
        .expect("hello")
        .data["tab"]
        .clone();
    let r = app
        .json(
            Method::POST,
            "/api/presence",
            Some(&ed2),
            Some(json!({ "tab": ed2_tab, "script_id": id })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let p = next_event(&mut ed1_events, "presence", Duration::from_secs(1))
        .await
        .expect("presence within 1 s");
    assert_eq!(
        (
            p.data["user"].as_str(),
            p.data["script_id"].as_i64(),
            p.data["open"].as_bool()
        ),
        (Some("ed2"), Some(id), Some(true))
    );

    // ed1's own save is not news to ed1; ed2's is, within a second.
    assert_eq!(
        app.save(&ed1, id, &FIVE.replace("a = 1", "a = 2"), "0.1")
            .await
            .status,
        StatusCode::OK
    );
    let sent = std::time::Instant::now();
    assert_eq!(
        app.save(&ed2, id, &FIVE.replace("e = 5", "e = 6"), "0.1")
            .await
            .status,
        StatusCode::OK
    );
    let saved = next_event(&mut ed1_events, "saved", Duration::from_secs(1))
        .await
        .expect("ed2's save reaches ed1 within 1 s");
    assert!(saved.at.duration_since(sent) < Duration::from_secs(1));
    assert_eq!(saved.data["user"], "ed2");
    assert_eq!(saved.data["script_id"], id);
    assert_eq!(saved.data["version"], "0.3");
    assert_eq!(
        saved.data["merged"],
        json!({ "base": "0.1", "theirs": "0.2" })
    );
    assert!(saved.id > before);

    // A reconnect from before the save replays what was missed, in order.
    drop(ed1_events);
    let mut again = app.sse_live("/api/events", &ed1, Some(before)).await;
    let replayed = next_event(&mut again, "saved", Duration::from_secs(2))
        .await
        .expect("replayed");
    assert_eq!(replayed.id, saved.id);
    assert_eq!(replayed.data["version"], "0.3");

    // ed2 closes their stream: presence ends.
    drop(ed2_events);
    // The replay shows the earlier `open` first, then the end.
    let mut gone = next_event(&mut again, "presence", Duration::from_secs(2)).await;
    if gone.as_ref().is_some_and(|e| e.data["open"] == true) {
        gone = next_event(&mut again, "presence", Duration::from_secs(2)).await;
    }
    let gone = gone.expect("presence ends with the connection");
    assert_eq!(gone.data["open"], false);

    // A viewer listens but does not announce editing.
    let mut mo1_events = app.sse_live("/api/events", &mo1, None).await;
    assert!(
        next_event(&mut mo1_events, "hello", Duration::from_secs(5))
            .await
            .is_some()
    );
    let r = app
        .json(
            Method::POST,
            "/api/presence",
            Some(&mo1),
            Some(json!({ "tab": 1, "script_id": id })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_fork_goes_next_to_its_parent_unless_the_editor_chooses() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let r = app
        .json(
            Method::POST,
            "/api/scripts",
            Some(&ed1),
            Some(json!({ "content": "x = 1\n", "ordering": "7.1" })),
        )
        .await;
    let id = r.json()["id"].as_i64().unwrap();
    let o = app
        .get(&format!("/api/scripts/{id}/fork-ordering"), &ed2)
        .await
        .json();
    assert_eq!(o["same_group"], "7.2", "{o}");
    assert_eq!(o["default"], "7.2");
    assert_eq!(o["new_group"], "8.0");
    let fork = |body: Option<Value>| {
        let ed2 = ed2.clone();
        let app = &app;
        async move {
            app.json(
                Method::POST,
                &format!("/api/scripts/{id}/fork"),
                Some(&ed2),
                body,
            )
            .await
        }
    };
    let r = fork(None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["ordering"], "7.2");
    assert_eq!(r.json()["parent"]["id"], id);
    let r = fork(Some(json!({ "ordering": "12.5" }))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["ordering"], "12.5");
    let r = fork(Some(json!({ "ordering": "7.2" }))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("7.2 is taken"), "{}", r.error());
    let o = app
        .get(&format!("/api/scripts/{id}/fork-ordering"), &ed2)
        .await
        .json();
    assert_eq!(o["same_group"], "7.3");
}

#[tokio::test]
async fn a_disabled_user_cannot_sign_in() {
    let app = TestApp::start_with(|c| {
        crate::util::add_team(c);
        c.users.last_mut().unwrap().disabled = true;
    })
    .await;
    let r = app
        .json(
            Method::POST,
            "/api/login",
            None,
            Some(json!({ "username": "ed4", "password": "pw-ed4" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    app.as_user("ed3").await;
}

/// A client sends the largest `Last-Event-ID` there is (or one from a server that ran
/// longer): it is told to reload with a `reset`, and its stream then carries what others
/// do, rather than ending silently.
#[tokio::test]
async fn the_largest_last_event_id_gets_a_reset_and_then_live_notices() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let id = app.create(&ed2, FIVE).await;
    let mut events = app.sse_live("/api/events", &ed1, Some(u64::MAX)).await;
    let reset = next_event(&mut events, "reset", Duration::from_secs(5))
        .await
        .expect("a reset for an id this server never gave");
    assert!(reset.data["error"].as_str().unwrap().contains("reload"));
    let r = app
        .save(&ed2, id, &FIVE.replace("a = 1", "a = 10"), "0.1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let saved = next_event(&mut events, "saved", Duration::from_secs(2))
        .await
        .expect("the stream goes on after the reset");
    assert_eq!(saved.data["script_id"], id);
}
