//! What ran before: a script's run history and the list of past passes, paged, and the
//! pass that is running now (found again by a browser that left the page).

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::util::TestApp;

async fn app() -> TestApp {
    TestApp::start_with(|c| c.seed_examples = false).await
}

async fn run_to_end(app: &TestApp, cookie: &str, script_id: i64) -> i64 {
    let run_id = app
        .start_run(cookie, json!({ "script_id": script_id }))
        .await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), cookie, None, 10_000)
        .await;
    assert_eq!(events.last().unwrap().event, "complete", "{events:?}");
    run_id
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &axum::http::HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().unwrap();
    let url = link.strip_prefix('<')?.split_once(">; rel=\"next\"")?.0;
    Some(url.to_string())
}

#[tokio::test]
async fn a_scripts_run_history_is_newest_first_paged_and_readable_by_a_viewer() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let mo1 = app.mo1().await;
    let id = app.create(&ed1, "print('one')\n").await;
    let other = app.create(&ed1, "print('other')\n").await;
    let first = run_to_end(&app, &ed1, id).await;
    app.save(&ed1, id, "import sys\nsys.exit(3)\n", "0.1").await;
    let second = run_to_end(&app, &ed1, id).await;
    run_to_end(&app, &ed1, other).await;
    let third = run_to_end(&app, &ed1, id).await;

    // A viewer reads the history: who, version, interpreter, status, duration.
    let page = app
        .get(&format!("/api/runs?script_id={id}&limit=2"), &mo1)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let runs = page.json();
    assert_eq!(ids(&runs), [third, second]);
    let newest = &runs[0];
    assert_eq!(newest["requested_by"], "ed1");
    assert_eq!(newest["version"], "0.2");
    assert_eq!(newest["interpreter"], "cpython");
    assert_eq!(newest["status"], "failed");
    assert_eq!(newest["exit_code"], 3);
    assert!(newest["duration"].as_f64().unwrap() > 0.0, "{newest}");
    // The next page follows the `Link` header and ends the history.
    let next = next_link(&page.headers).expect("a Link to the next page");
    let rest = app.get(&next, &mo1).await;
    assert_eq!(ids(&rest.json()), [first]);
    assert_eq!(rest.json()[0]["version"], "0.1");
    assert_eq!(
        next_link(&rest.headers),
        None,
        "the last page links nowhere"
    );

    // Bad paging gets a 400 that says what to send.
    for bad in [
        "limit=0",
        "limit=5000",
        "before=x",
        "page=2",
        "script_id=abc",
    ] {
        let r = app.get(&format!("/api/runs?{bad}"), &mo1).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert!(!r.error().is_empty(), "{bad}");
    }
}

#[tokio::test]
async fn the_running_pass_is_found_again_and_past_passes_are_listed_with_their_outcome() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let mo1 = app.mo1().await;
    app.published(&ed1, "1.0", "print('quick')\n", "").await;
    app.published(&ed1, "2.0", "import time\ntime.sleep(3)\n", "")
        .await;

    // Nothing runs yet: 404 with what to do.
    let none = app.get("/api/passes/current", &mo1).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert!(
        none.error().contains("POST /api/passes"),
        "{}",
        none.error()
    );
    assert_eq!(app.get("/api/passes", &mo1).await.json(), json!([]));

    let start = |on_failure: &'static str| {
        let app = &app;
        let ed1 = &ed1;
        async move {
            app.json(
                Method::POST,
                "/api/passes",
                Some(ed1),
                Some(json!({ "on_failure": on_failure })),
            )
            .await
            .json()["pass_id"]
                .as_i64()
                .unwrap()
        }
    };
    let first = start("stop").await;
    // A browser that comes back finds the running pass, with its groups so far.
    let current = app.get("/api/passes/current", &mo1).await;
    assert_eq!(current.status, StatusCode::OK, "{}", current.text());
    assert_eq!(current.json()["id"], first);
    assert_eq!(current.json()["status"], "running");
    let listed = app.get("/api/passes", &mo1).await.json();
    assert_eq!(listed[0]["id"], first);
    assert_eq!(listed[0]["status"], "running");
    app.sse(&format!("/api/passes/{first}/events"), &ed1, None, 10_000)
        .await;
    assert_eq!(
        app.get("/api/passes/current", &mo1).await.status,
        StatusCode::NOT_FOUND
    );

    let second = start("continue").await;
    app.json(
        Method::POST,
        &format!("/api/passes/{second}/cancel"),
        Some(&ed1),
        None,
    )
    .await;
    app.sse(&format!("/api/passes/{second}/events"), &ed1, None, 10_000)
        .await;

    // Newest first, each with its outcome and a count of its runs by status.
    let page = app.get("/api/passes?limit=1", &mo1).await;
    let list = page.json();
    assert_eq!(ids(&list), [second]);
    assert_eq!(list[0]["status"], "cancelled");
    assert_eq!(list[0]["on_failure"], "continue");
    assert_eq!(list[0]["requested_by"], "ed1");
    let next = next_link(&page.headers).expect("a Link to the next page");
    let older = app.get(&next, &mo1).await.json();
    assert_eq!(ids(&older), [first]);
    assert_eq!(older[0]["status"], "succeeded");
    assert_eq!(older[0]["runs"], json!({ "total": 2, "succeeded": 2 }));
    assert!(older[0]["duration"].as_f64().unwrap() >= 3.0, "{older}");
    // The latest *full* pass stays the first: the cancelled one did not run to its end.
    assert_eq!(
        app.get("/api/passes/latest", &mo1).await.json()["id"],
        first
    );
    let r = app.get("/api/passes?limit=-1", &mo1).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
}
