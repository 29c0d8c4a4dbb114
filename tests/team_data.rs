//! Test data edited by a team (issue 16): a write carries `If-Match` (the ETag its
//! editor loaded); an edit of older data is merged, an overlapping one is refused with
//! both versions, and nothing is ever overwritten silently.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::util::{Reply, TestApp, next_event};

const DATA: &str = "a\nb\nc\nd\ne\n";

async fn load(app: &TestApp, cookie: &str, id: i64) -> (String, String) {
    let r = app
        .get(&format!("/api/scripts/{id}/test-data"), cookie)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    (r.text(), etag)
}

async fn put(app: &TestApp, cookie: &str, id: i64, data: &str, if_match: Option<&str>) -> Reply {
    let extra: Vec<(&str, &str)> = if_match.map(|m| ("if-match", m)).into_iter().collect();
    app.call_with(
        Method::PUT,
        &format!("/api/scripts/{id}/test-data"),
        Some(cookie),
        Body::from(data.to_string()),
        Some("application/octet-stream"),
        &extra,
    )
    .await
}

/// A script with `DATA` as its test data, and the ETag of that data.
async fn script_with_data(app: &TestApp, ed1: &str) -> (i64, String) {
    let id = app.create(ed1, "\"\"\"Reads\"\"\"\nx = 1\n").await;
    let (empty, etag) = load(app, ed1, id).await;
    assert_eq!(empty, "");
    let r = put(app, ed1, id, DATA, Some(&etag)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", r.json()["etag"].as_str().unwrap()));
    (id, etag)
}

#[tokio::test]
async fn two_editors_racing_on_test_data_lose_nothing() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let (ed2, ed3) = (app.as_user("ed2").await, app.as_user("ed3").await);
    let (id, _) = script_with_data(&app, &ed1).await;
    let mut ed1_events = app.sse_live("/api/events", &ed1, None).await;
    next_event(&mut ed1_events, "hello", Duration::from_secs(5))
        .await
        .expect("hello");

    // Both load the same data, each edits another line, and both save at once.
    let ((_, tag2), (_, tag3)) = tokio::join!(load(&app, &ed2, id), load(&app, &ed3, id));
    let (first, last) = (DATA.replace("a\n", "A\n"), DATA.replace("e\n", "E\n"));
    let (two, three) = tokio::join!(
        put(&app, &ed2, id, &first, Some(&tag2)),
        put(&app, &ed3, id, &last, Some(&tag3)),
    );
    assert_eq!(two.status, StatusCode::OK, "{}", two.text());
    assert_eq!(three.status, StatusCode::OK, "{}", three.text());
    let merged = [&two, &three]
        .iter()
        .filter(|r| !r.json()["merged"].is_null())
        .count();
    assert_eq!(merged, 1, "the later write was merged onto the first");
    let (now, _) = load(&app, &ed1, id).await;
    assert_eq!(now, "A\nb\nc\nd\nE\n", "both edits are in");

    // ed1 hears of both.
    for _ in 0..2 {
        let n = next_event(&mut ed1_events, "test_data_saved", Duration::from_secs(2))
            .await
            .expect("a test_data_saved notice");
        assert_eq!(n.data["script_id"], id);
    }
    // git says who changed it, each on their own branch.
    for who in ["ed2", "ed3"] {
        let log = app.git(&["log", who, "--format=%an %s", "-1"]);
        assert!(log.starts_with(&format!("{who} Update test data")), "{log}");
    }
}

#[tokio::test]
async fn overlapping_test_data_edits_are_409_with_both_versions_and_nothing_changes() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let (ed2, ed3) = (app.as_user("ed2").await, app.as_user("ed3").await);
    let (id, loaded) = script_with_data(&app, &ed1).await;
    let r = put(&app, &ed2, id, &DATA.replace("c\n", "C2\n"), Some(&loaded)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let current = r.json()["etag"].as_str().unwrap().to_string();

    let tip = app.git(&["rev-parse", "ed3"]);
    let ours = DATA.replace("c\n", "C3\n");
    let r = put(&app, &ed3, id, &ours, Some(&loaded)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert!(r.error().contains("same lines"), "{}", r.error());
    assert!(
        r.error().contains(&current),
        "says which ETag to save on: {}",
        r.error()
    );
    let j = r.json();
    assert_eq!(j["etag"], current.as_str());
    let c = &j["conflict"];
    assert_eq!(c["reason"], "overlap");
    assert_eq!(c["base_content"], DATA);
    assert_eq!(c["theirs_content"], DATA.replace("c\n", "C2\n"));
    assert_eq!(c["ours_content"], ours, "the edit comes back whole");
    assert_eq!(c["hunks"][0]["theirs"], "C2\n");
    assert_eq!(c["hunks"][0]["ours"], "C3\n");
    assert_eq!(app.git(&["rev-parse", "ed3"]), tip, "no commit");
    assert_eq!(load(&app, &ed1, id).await.0, DATA.replace("c\n", "C2\n"));

    // Resolved on the current data, it saves.
    let r = put(
        &app,
        &ed3,
        id,
        &DATA.replace("c\n", "C2 C3\n"),
        Some(&format!("\"{current}\"")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["merged"], Value::Null);
}

#[tokio::test]
async fn if_match_must_name_data_this_script_had() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let (id, loaded) = script_with_data(&app, &ed1).await;
    let (other, other_tag) = script_with_data(&app, &ed1).await;
    let r = put(&app, &ed1, other, "secret of the other\n", Some(&other_tag)).await;
    assert_eq!(r.status, StatusCode::OK);
    let secret_tag = r.headers["etag"].to_str().unwrap().to_string();

    for bad in ["e69de29", "W/\"abc\"", "\"zz\"", "\"a\", \"b\""] {
        let r = put(&app, &ed2, id, "x\n", Some(bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert!(r.error().contains("If-Match"), "{}", r.error());
    }
    // Another script's data is no base for this one's: no merge, nothing of it sent back.
    let r = put(&app, &ed2, id, "x\n", Some(&secret_tag)).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text());
    assert!(!r.text().contains("secret"), "{}", r.text());
    assert_eq!(
        format!("\"{}\"", r.json()["etag"].as_str().unwrap()),
        loaded
    );
    assert_eq!(load(&app, &ed1, id).await.0, DATA, "nothing changed");

    // `*` (and no If-Match, for scripts that do not care) replace whatever is there.
    let r = put(&app, &ed2, id, "all new\n", Some("*")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(load(&app, &ed1, id).await.0, "all new\n");
}
