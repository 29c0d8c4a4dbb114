//! A run's disk quota and its artifacts through the API: a run over the quota ends with
//! `limit: "disk"` and keeps none of it; listings are bounded and paged; links, FIFOs
//! and sockets a script leaves behind are never followed or opened by the server.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::util::TestApp;

async fn app() -> TestApp {
    TestApp::start_with(|c| c.seed_examples = false).await
}

/// Runs `script` to its end and returns the run record.
async fn run_to_end(app: &TestApp, cookie: &str, ordering: &str, script: &str) -> Value {
    let id = app.published(cookie, ordering, script, "").await;
    let run_id = app.start_run(cookie, json!({ "script_id": id })).await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), cookie, None, 100_000)
        .await;
    let complete = events.last().expect("events");
    assert_eq!(complete.event, "complete", "{events:?}");
    assert!(
        complete.data.to_string().len() < 32 * 1024,
        "the complete event is {} bytes",
        complete.data.to_string().len()
    );
    app.get(&format!("/api/runs/{run_id}"), cookie).await.json()
}

#[tokio::test]
async fn twenty_thousand_empty_files_end_the_run_at_the_file_quota_and_listings_stay_small() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let script = "\"\"\"Many files\"\"\"\nimport os, time\nos.mkdir('many')\nfor i in range(20000):\n    open(f'many/{i}', 'w').close()\nprint('made them all', flush=True)\ntime.sleep(2)\n";
    let run = run_to_end(&app, &ed1, "1.0", script).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["limit"], "disk", "{run}");
    assert!(
        run["message"].as_str().unwrap().contains("10000 files"),
        "{run}"
    );
    let run_id = run["id"].as_i64().unwrap();
    // Nothing of an over-quota run is kept on disk.
    let dir = app.data().join("runs").join(run_id.to_string());
    let left = std::fs::read_dir(&dir).unwrap().count();
    assert!(left <= 2, "{left} entries left in the run directory");
    let list = app.get("/api/runs", &ed1).await;
    assert!(
        list.body.len() < 16 * 1024,
        "GET /api/runs is {} bytes",
        list.body.len()
    );
}

#[tokio::test]
async fn a_run_with_thousands_of_artifacts_lists_a_first_page_and_pages_through_the_rest() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let script = "\"\"\"Tiles\"\"\"\nimport os\nos.mkdir('tiles')\nfor i in range(2500):\n    open(f'tiles/{i:05}.txt', 'w').write(str(i))\n";
    let run = run_to_end(&app, &ed1, "1.0", script).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run_id = run["id"].as_i64().unwrap();
    assert_eq!(run["artifact_count"], 2500, "{run}");
    let first = run["artifacts"].as_array().unwrap();
    assert_eq!(first.len(), 100);
    assert_eq!(first[0]["name"], "tiles/00000.txt");
    let record = app.get(&format!("/api/runs/{run_id}"), &ed1).await;
    assert!(
        record.body.len() < 16 * 1024,
        "the run JSON is {} bytes",
        record.body.len()
    );

    // Page through all of it.
    let mut names = Vec::new();
    let mut next = Some(format!("/api/runs/{run_id}/artifacts?limit=1000"));
    let mut pages = 0;
    while let Some(url) = next {
        let page = app.get(&url, &ed1).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let page = page.json();
        assert_eq!(page["total"], 2500);
        names.extend(
            page["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string()),
        );
        next = page["next"].as_str().map(String::from);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 2500);
    assert_eq!(names[2499], "tiles/02499.txt");
    // An artifact beyond the first page is served.
    let late = app
        .get(
            &format!("/api/runs/{run_id}/artifacts/tiles/02400.txt"),
            &ed1,
        )
        .await;
    assert_eq!(late.status, StatusCode::OK);
    assert_eq!(late.body, b"2400");
    // Bad paging is a clear 400.
    for bad in ["limit=0", "limit=5000", "offset=-1", "limit=abc"] {
        let r = app
            .get(&format!("/api/runs/{run_id}/artifacts?{bad}"), &ed1)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert!(
            r.error().contains("limit") || r.error().contains("offset"),
            "{bad}: {}",
            r.error()
        );
    }
}

#[tokio::test]
async fn links_fifos_and_sockets_left_in_the_run_directory_are_listed_as_skipped_and_never_opened()
{
    let app = app().await;
    let ed1 = app.ed1().await;
    let script = r#""""Traps"""
import os, socket
os.symlink("/etc/shadow", "shadow")
os.symlink("/etc/passwd", "passwd.txt")
os.mkfifo("pipe.txt")
s = socket.socket(socket.AF_UNIX)
s.bind("sock")
os.mkdir("sub")
os.symlink("/", "sub/root")
open("real.txt", "w").write("real")
"#;
    let run = run_to_end(&app, &ed1, "1.0", script).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let run_id = run["id"].as_i64().unwrap();
    let names: Vec<&str> = run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["real.txt"]);
    let skipped: Vec<(String, String)> = run["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("{run}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("passwd.txt".to_string(), "symbolic link".to_string()),
            ("pipe.txt".to_string(), "FIFO".to_string()),
            ("shadow".to_string(), "symbolic link".to_string()),
            ("sock".to_string(), "socket".to_string()),
            ("sub/root".to_string(), "symbolic link".to_string()),
        ]
    );
    // None of them is served; a FIFO is not opened (the request would hang).
    for name in [
        "shadow",
        "passwd.txt",
        "pipe.txt",
        "sock",
        "sub/root/etc/shadow",
    ] {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            app.get(&format!("/api/runs/{run_id}/artifacts/{name}"), &ed1),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: the server blocked"));
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{name}: {}", r.text());
        assert!(!r.text().contains("root:"), "{name}");
    }
    let page = app
        .get(&format!("/api/runs/{run_id}/artifacts"), &ed1)
        .await
        .json();
    assert_eq!(page["skipped"].as_array().unwrap().len(), 5, "{page}");
}
