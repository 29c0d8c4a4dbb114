//! Run-all passes through the HTTP API, against the real sandbox: groups overlap
//! inside and run in order, stop or continue on failure, and cancelling a run or a
//! pass stops its processes.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::runs::app;
use crate::util::TestApp;

fn iso(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .to_string()
}

async fn pass_record(app: &TestApp, cookie: &str, id: i64) -> Value {
    let events = app
        .sse(&format!("/api/passes/{id}/events"), cookie, None, 10_000)
        .await;
    assert_eq!(events.last().unwrap().event, "complete", "{events:?}");
    app.get(&format!("/api/passes/{id}"), cookie).await.json()
}

fn runs_by_ordering(pass: &Value) -> std::collections::BTreeMap<String, Value> {
    pass["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["runs"].as_array().unwrap().clone())
        .map(|r| (r["ordering"].as_str().unwrap().to_string(), r))
        .collect()
}

#[tokio::test]
async fn run_all_overlaps_a_group_and_runs_groups_in_order() {
    let app = app().await;
    let ed1 = app.ed1().await;
    // Two sleeps of 2 s: in sequence they take at least 4 s, together about 2 s plus
    // the starts, so the bound below has room for a loaded machine's starts.
    let sleepy = "import time\ntime.sleep(2)\nprint('slept')\n";
    app.published(&ed1, "1.0", "print('one')\n", "").await;
    app.published(&ed1, "2.0", sleepy, "").await;
    // Two scripts on prod may not share their code (the duplicate rule).
    app.published(&ed1, "2.1", &sleepy.replace("slept", "slept too"), "")
        .await;
    app.published(&ed1, "3.0", "print('three')\n", "").await;
    let r = app
        .json(Method::POST, "/api/passes", Some(&ed1), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let pass_id = r.json()["pass_id"].as_i64().unwrap();
    let pass = pass_record(&app, &ed1, pass_id).await;
    assert_eq!(pass["status"], "succeeded", "{pass}");
    let groups: Vec<u64> = pass["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_u64().unwrap())
        .collect();
    assert_eq!(groups, [1, 2, 3]);
    let runs = runs_by_ordering(&pass);
    let (a, b, c, d) = (&runs["1.0"], &runs["2.0"], &runs["2.1"], &runs["3.0"]);
    // Timestamps are RFC 3339 with the same width: they compare as strings.
    assert!(
        iso(&b["started_at"]) >= iso(&a["ended_at"]),
        "group 2 after group 1"
    );
    assert!(
        iso(&c["started_at"]) < iso(&b["ended_at"]) && iso(&b["started_at"]) < iso(&c["ended_at"]),
        "2.0 and 2.1 overlap: {b} {c}"
    );
    assert!(
        iso(&d["started_at"]) >= iso(&b["ended_at"])
            && iso(&d["started_at"]) >= iso(&c["ended_at"]),
        "3.0 after both"
    );
    assert!(
        pass["duration"].as_f64().unwrap() < 3.9,
        "the group of two ran concurrently: {}",
        pass["duration"]
    );
    let latest = app.get("/api/passes/latest", &ed1).await.json();
    assert_eq!(latest["id"], pass_id);
}

#[tokio::test]
async fn stop_and_continue_on_failure_behave_as_documented() {
    let app = app().await;
    let ed1 = app.ed1().await;
    app.published(&ed1, "1.0", "print('ok')\n", "").await;
    app.published(&ed1, "2.0", "import sys\nsys.exit(4)\n", "")
        .await;
    app.published(
        &ed1,
        "2.1",
        "import time\ntime.sleep(0.3)\nprint('ok')\n",
        "",
    )
    .await;
    app.published(&ed1, "3.0", "print('later')\n", "").await;

    // Default: stop. The failing group finishes; later groups are skipped.
    let id = app
        .json(Method::POST, "/api/passes", Some(&ed1), None)
        .await
        .json()["pass_id"]
        .as_i64()
        .unwrap();
    let pass = pass_record(&app, &ed1, id).await;
    assert_eq!(pass["on_failure"], "stop");
    assert_eq!(pass["status"], "failed");
    let runs = runs_by_ordering(&pass);
    assert_eq!(runs["2.0"]["status"], "failed");
    assert_eq!(runs["2.0"]["exit_code"], 4);
    assert_eq!(runs["2.1"]["status"], "succeeded");
    assert_eq!(runs["3.0"]["status"], "skipped");
    assert!(
        runs["3.0"]["message"]
            .as_str()
            .unwrap()
            .contains("stops on failure")
    );

    let body = json!({ "on_failure": "continue" });
    let id = app
        .json(Method::POST, "/api/passes", Some(&ed1), Some(body))
        .await
        .json()["pass_id"]
        .as_i64()
        .unwrap();
    let pass = pass_record(&app, &ed1, id).await;
    assert_eq!(pass["status"], "failed");
    let runs = runs_by_ordering(&pass);
    assert_eq!(runs["3.0"]["status"], "succeeded");
    let bad = app
        .json(
            Method::POST,
            "/api/passes",
            Some(&ed1),
            Some(json!({ "on_failure": "retry" })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

const HEARTBEAT: &str = "import time\nprint('beating', flush=True)\nwhile True:\n    open('beat', 'a').write('.')\n    time.sleep(0.05)\n";

fn beats(app: &TestApp, run_id: i64) -> usize {
    std::fs::read_to_string(app.data().join(format!("runs/{run_id}/beat")))
        .map(|s| s.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn cancelling_a_run_and_a_pass_stops_their_processes() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let id = app.published(&ed1, "1.0", HEARTBEAT, "").await;
    app.published(&ed1, "2.0", "print('never')\n", "").await;

    let run_id = app.start_run(&ed1, json!({ "script_id": id })).await;
    let seen = app
        .sse(&format!("/api/runs/{run_id}/events"), &ed1, None, 3)
        .await;
    assert_eq!(seen[2].data["line"], "beating");
    let asked = Instant::now();
    let r = app
        .json(
            Method::POST,
            &format!("/api/runs/{run_id}/cancel"),
            Some(&ed1),
            None,
        )
        .await;
    assert_eq!(r.json()["cancelled"], true);
    let rest = app
        .sse(&format!("/api/runs/{run_id}/events"), &ed1, Some(3), 1000)
        .await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(rest.last().unwrap().data["status"], "cancelled");
    let b = beats(&app, run_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(beats(&app, run_id), b, "the script still runs");

    let pass_id = app
        .json(Method::POST, "/api/passes", Some(&ed1), None)
        .await
        .json()["pass_id"]
        .as_i64()
        .unwrap();
    // Wait until the heartbeat script of group 1 runs.
    let mut running = None;
    for _ in 0..100 {
        let pass = app
            .get(&format!("/api/passes/{pass_id}"), &ed1)
            .await
            .json();
        let runs = runs_by_ordering(&pass);
        if runs["1.0"]["status"] == "running" {
            running = runs["1.0"]["id"].as_i64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = running.expect("group 1 started");
    let r = app
        .json(
            Method::POST,
            &format!("/api/passes/{pass_id}/cancel"),
            Some(&ed1),
            None,
        )
        .await;
    assert_eq!(r.json()["cancelled"], true);
    let pass = pass_record(&app, &ed1, pass_id).await;
    assert_eq!(pass["status"], "cancelled");
    let runs = runs_by_ordering(&pass);
    assert_eq!(runs["1.0"]["status"], "cancelled");
    assert_eq!(runs["2.0"]["status"], "cancelled");
    let b = beats(&app, running);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(beats(&app, running), b);
}
