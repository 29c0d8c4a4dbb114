//! Presence per tab, the bound on event streams, and what a viewer hears (issue 16).

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{LiveSse, TestApp, next_event};

/// Opens an events stream and returns it with its tab number.
async fn tab(app: &TestApp, cookie: &str) -> (LiveSse, u64) {
    let mut s = app.sse_live("/api/events", cookie, None).await;
    let hello = next_event(&mut s, "hello", Duration::from_secs(5))
        .await
        .expect("hello");
    (s, hello.data["tab"].as_u64().expect("hello names the tab"))
}

async fn present(app: &TestApp, cookie: &str, body: Value) -> crate::util::Reply {
    app.json(Method::POST, "/api/presence", Some(cookie), Some(body))
        .await
}

#[tokio::test]
async fn two_tabs_of_one_user_are_two_presences_and_closing_one_keeps_the_other() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let id = app.create(&ed1, "x = 1\n").await;
    let (mut watch, _) = tab(&app, &ed1).await;
    let (first, t1) = tab(&app, &ed2).await;
    let (_second, t2) = tab(&app, &ed2).await;
    assert_ne!(t1, t2);

    let r = present(&app, &ed2, json!({ "tab": t1, "script_id": id })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = present(
        &app,
        &ed2,
        json!({ "tab": t2, "script_id": id, "state": "editing" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let list = r.json()["presence"].clone();
    assert_eq!(
        list,
        json!([
            { "user": "ed2", "tab": t1, "script_id": id, "state": "viewing" },
            { "user": "ed2", "tab": t2, "script_id": id, "state": "editing" },
        ])
    );
    let n = next_event(&mut watch, "presence", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        (n.data["tab"].as_u64(), n.data["state"].as_str()),
        (Some(t1), Some("viewing"))
    );
    let n = next_event(&mut watch, "presence", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        (n.data["tab"].as_u64(), n.data["state"].as_str()),
        (Some(t2), Some("editing"))
    );

    // The first tab closes: only its presence ends.
    drop(first);
    let n = next_event(&mut watch, "presence", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        (n.data["tab"].as_u64(), n.data["open"].as_bool()),
        (Some(t1), Some(false))
    );
    let (_fresh, _) = tab(&app, &ed1).await;
    let r = present(
        &app,
        &ed2,
        json!({ "tab": t2, "script_id": id, "state": "editing" }),
    )
    .await;
    assert_eq!(
        r.json()["presence"],
        json!([{ "user": "ed2", "tab": t2, "script_id": id, "state": "editing" }]),
        "the other tab is still there"
    );
    // Nobody sets presence on a tab that is not theirs, or on a closed one.
    for body in [json!({ "tab": t1, "script_id": id }), json!({ "tab": t2 })] {
        let r = present(&app, &ed1, body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        assert!(
            r.error().contains("not one of your open event streams"),
            "{}",
            r.error()
        );
    }
    let r = present(
        &app,
        &ed2,
        json!({ "tab": t2, "script_id": id, "state": "typing" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
}

#[tokio::test]
async fn a_user_opening_many_event_streams_is_refused_past_the_bound() {
    let app = TestApp::start_with(|c| {
        crate::util::add_team(c);
        c.server.max_event_streams_per_user = 4;
    })
    .await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(tab(&app, &ed1).await);
    }
    for _ in 0..20 {
        let r = app.get("/api/events", &ed1).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(r.error().contains("close a tab"), "{}", r.error());
    }
    // Another user is not affected, and a closed stream frees its place.
    let _other = tab(&app, &ed2).await;
    open.pop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _again = tab(&app, &ed1).await;
}

#[tokio::test]
async fn a_viewer_hears_no_presence_but_what_viewers_may_read() {
    let app = TestApp::team().await;
    let ed1 = app.as_user("ed1").await;
    let ed2 = app.as_user("ed2").await;
    let mo1 = app.as_user("mo1").await;
    let id = app.create(&ed1, "\"\"\"Open\"\"\"\nx = 1\n").await;
    let (_ed2_tab, t) = tab(&app, &ed2).await;
    let r = present(
        &app,
        &ed2,
        json!({ "tab": t, "script_id": id, "state": "editing" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    let mut viewer = app.sse_live("/api/events", &mo1, Some(0)).await;
    let hello = next_event(&mut viewer, "hello", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(hello.data["presence"], json!([]), "{:?}", hello.data);
    let mut editor = app.sse_live("/api/events", &ed1, Some(0)).await;
    let hello = next_event(&mut editor, "hello", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(hello.data["presence"].as_array().unwrap().len(), 1);

    assert_eq!(
        app.save(&ed2, id, "\"\"\"Open\"\"\"\nx = 2\n", "0.1")
            .await
            .status,
        StatusCode::OK
    );
    // The replay from 0 and the live notices: the viewer gets the save, never presence.
    let mut kinds = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), viewer.rx.recv()).await
    {
        kinds.push(e.event.clone());
    }
    assert!(kinds.contains(&"saved".to_string()), "{kinds:?}");
    assert!(!kinds.contains(&"presence".to_string()), "{kinds:?}");
    let p = next_event(&mut editor, "presence", Duration::from_secs(1)).await;
    assert_eq!(p.expect("editors hear presence").data["state"], "editing");
    // A viewer does not announce presence.
    let (_mo1_tab, mt) = tab(&app, &mo1).await;
    let r = present(&app, &mo1, json!({ "tab": mt, "script_id": id })).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
