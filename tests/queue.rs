//! Queue management (issue 19): archiving a script takes it out of every run-all pass
//! and keeps its history; restoring brings it back; bad input and viewers change nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::runs::app;
use crate::util::TestApp;

async fn listed(app: &TestApp, cookie: &str, id: i64) -> Value {
    let list = app.get("/api/scripts", cookie).await.json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("script {id} is not listed: {list}"))
        .clone()
}

async fn post(app: &TestApp, cookie: &str, path: &str) -> crate::util::Reply {
    app.json(Method::POST, path, Some(cookie), None).await
}

#[tokio::test]
async fn an_archived_script_is_left_out_of_passes_and_keeps_its_history() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let kept = app.published(&ed1, "1.0", "print('kept')\n", "").await;
    let gone = app.published(&ed1, "2.0", "print('archived')\n", "").await;

    let r = post(&app, &ed1, &format!("/api/scripts/{gone}/archive")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["changed"], true);
    assert_eq!(r.json()["script"]["archived"], true);
    assert_eq!(listed(&app, &ed1, gone).await["archived"], true);
    assert_eq!(listed(&app, &ed1, kept).await["archived"], false);
    let again = post(&app, &ed1, &format!("/api/scripts/{gone}/archive")).await;
    assert_eq!(
        again.json()["changed"],
        false,
        "archiving twice changes nothing"
    );

    // A pass runs only what is not archived.
    let r = app
        .json(Method::POST, "/api/passes", Some(&ed1), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let pass_id = r.json()["pass_id"].as_i64().unwrap();
    let events = app
        .sse(&format!("/api/passes/{pass_id}/events"), &ed1, None, 10_000)
        .await;
    assert_eq!(events.last().unwrap().event, "complete", "{events:?}");
    let pass = app
        .get(&format!("/api/passes/{pass_id}"), &ed1)
        .await
        .json();
    let scripts: Vec<i64> = pass["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["runs"].as_array().unwrap().clone())
        .map(|r| r["script_id"].as_i64().unwrap())
        .collect();
    assert_eq!(scripts, [kept], "{pass}");

    // Not published while archived; its versions are all still there.
    let r = post(&app, &ed1, &format!("/api/scripts/{gone}/publish")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("unarchive"), "{}", r.error());
    let versions = app
        .get(&format!("/api/scripts/{gone}/versions"), &ed1)
        .await;
    assert_eq!(versions.status, StatusCode::OK);
    assert!(!versions.json().as_array().unwrap().is_empty());

    let r = post(&app, &ed1, &format!("/api/scripts/{gone}/unarchive")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["script"]["archived"], false);
    let r = post(&app, &ed1, &format!("/api/scripts/{gone}/publish")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn queue_changes_with_bad_input_or_from_a_viewer_are_refused_and_change_nothing() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let mo1 = app.mo1().await;
    let a = app.create(&ed1, "print('a')\n").await;
    let b = app.create(&ed1, "print('b')\n").await;
    let before = app.get("/api/scripts", &ed1).await.json();

    let r = post(&app, &mo1, &format!("/api/scripts/{a}/archive")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.error().is_empty());
    let r = app
        .json(
            Method::PUT,
            &format!("/api/scripts/{a}/ordering"),
            Some(&mo1),
            Some(json!({ "ordering": "9.0" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = post(&app, &ed1, "/api/scripts/999999/archive").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().contains("999999"), "{}", r.error());
    let r = post(&app, &ed1, "/api/scripts/abc/unarchive").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.error().is_empty());

    let ordering = |o: &str| json!({ "ordering": o });
    let path = format!("/api/scripts/{a}/ordering");
    for bad in ["x.y", "-1", "1.2.3", ""] {
        let r = app
            .json(Method::PUT, &path, Some(&ed1), Some(ordering(bad)))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "ordering {bad:?}");
        assert!(!r.error().is_empty());
    }
    let taken = listed(&app, &ed1, b).await["ordering"].clone();
    let r = app
        .json(
            Method::PUT,
            &path,
            Some(&ed1),
            Some(json!({ "ordering": taken })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().contains("taken"), "{}", r.error());

    assert_eq!(
        app.get("/api/scripts", &ed1).await.json(),
        before,
        "nothing changed"
    );
}

#[tokio::test]
async fn a_publish_note_goes_into_the_prod_commit_and_bad_notes_are_refused() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let id = app.create(&ed1, "print('noted')\n").await;
    let path = format!("/api/scripts/{id}/publish");
    let publish = |message: String| {
        app.json(
            Method::POST,
            &path,
            Some(&ed1),
            Some(json!({ "message": message })),
        )
    };

    for (bad, says) in [
        ("x".repeat(2001), "longer than 2000"),
        ("a\u{1b}[31mred".into(), "control characters"),
    ] {
        let r = publish(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.error().contains(says), "{}", r.error());
    }
    assert!(
        app.get(&format!("/api/scripts/{id}"), &ed1).await.json()["published_version"].is_null(),
        "a refused publish changes nothing"
    );

    let r = publish("Figures for Q3.\n\nScriptorium-Script: 999".into()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let message = app.git(&["log", "-1", "--format=%B", "prod"]);
    assert!(message.starts_with("Publish script_"), "{message}");
    assert!(message.contains("Figures for Q3."), "{message}");
    // The note cannot pass for a trailer: the script's own id is the one recorded.
    assert!(
        message.contains(&format!("Scriptorium-Script: {id}\n")),
        "{message}"
    );
}
