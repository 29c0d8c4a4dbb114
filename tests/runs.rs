//! Runs and run-all passes through the HTTP API, against the real sandbox.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::util::{ServerProcess, TestApp, http_client, parse_sse};

pub async fn app() -> TestApp {
    TestApp::start_with(|c| c.seed_examples = false).await
}

#[tokio::test]
async fn a_run_gets_its_input_streams_while_running_and_keeps_artifacts() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let script = "\"\"\"Greeter\"\"\"\nimport sys, time\nprint('got:', open(sys.argv[1]).read().strip())\ntime.sleep(1)\nopen('result.txt', 'w').write('done\\n')\nopen('model.stl', 'w').write('solid x\\nendsolid x\\n')\nprint('finished')\n";
    let id = app.published(&ed1, "1.0", script, "hello").await;
    let run_id = app.start_run(&ed1, json!({ "script_id": id })).await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), &ed1, None, 1000)
        .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        ["status", "status", "log", "log", "complete"],
        "{events:?}"
    );
    let first = events.iter().find(|e| e.event == "log").unwrap();
    assert_eq!(
        first.data,
        json!({ "stream": "stdout", "line": "got: hello" })
    );
    let complete = events.last().unwrap();
    assert!(
        complete.at.duration_since(first.at) >= Duration::from_millis(800),
        "the line came only at the end"
    );
    assert_eq!(complete.data["status"], "succeeded");
    assert_eq!(complete.data["exit_code"], 0);
    let names: Vec<&str> = complete.data["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["model.stl", "result.txt"]);
    // Ids are contiguous from 1.
    assert!(events.iter().enumerate().all(|(i, e)| e.id == i as u64 + 1));

    let stl = app
        .get(&format!("/api/runs/{run_id}/artifacts/model.stl"), &ed1)
        .await;
    assert_eq!(stl.status, StatusCode::OK);
    assert_eq!(stl.headers["content-type"], "model/stl");
    assert_eq!(stl.body, b"solid x\nendsolid x\n");
    for bad in ["..%2F..%2Fscriptorium.db", "input", "nothing.txt"] {
        let r = app
            .get(&format!("/api/runs/{run_id}/artifacts/{bad}"), &ed1)
            .await;
        assert!(
            r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST,
            "{bad}: {}",
            r.status
        );
    }

    let run = app.get(&format!("/api/runs/{run_id}"), &ed1).await.json();
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["requested_by"], "ed1");
    assert_eq!(run["version"], "0.1");
    assert_eq!(run["backend"], "linux");
    assert_eq!(
        run["interpreter_version"]
            .as_str()
            .unwrap()
            .split('.')
            .count(),
        3
    );
    let namespaces = run["protections"]["namespaces"].as_array().unwrap();
    for ns in ["user", "pid", "mount", "net", "ipc", "uts", "cgroup"] {
        assert!(
            namespaces.contains(&json!(ns)),
            "{ns} missing from {namespaces:?}"
        );
    }
    assert!(run["duration"].as_f64().unwrap() >= 1.0);
    // The list shows the last run; the last successful output is kept.
    let list = app.get("/api/scripts", &ed1).await.json();
    assert_eq!(list[0]["last_run"]["status"], "succeeded");
    let last = app
        .get(&format!("/api/scripts/{id}/last-success"), &ed1)
        .await
        .json();
    assert_eq!(last["run"]["id"], run_id);
    assert_eq!(last["output"][1]["line"], "finished");
}

#[tokio::test]
async fn reconnecting_with_last_event_id_loses_no_line() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let script = "import time\nfor i in range(60):\n    print('line', i, flush=True)\n    time.sleep(0.01)\n";
    let id = app.published(&ed1, "1.0", script, "").await;
    let run_id = app.start_run(&ed1, json!({ "script_id": id })).await;
    let path = format!("/api/runs/{run_id}/events");
    let first = app.sse(&path, &ed1, None, 12).await;
    let rest = app
        .sse(&path, &ed1, Some(first.last().unwrap().id), 10_000)
        .await;
    let all: Vec<_> = first.iter().chain(rest.iter()).collect();
    assert!(
        all.iter().enumerate().all(|(i, e)| e.id == i as u64 + 1),
        "ids have gaps"
    );
    let lines: Vec<String> = all
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data["line"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        lines,
        (0..60).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    // After the end, the stored log replays the same, from any point.
    let replay = app.sse(&path, &ed1, Some(30), 10_000).await;
    assert_eq!(replay.first().unwrap().id, 31);
    assert_eq!(
        replay.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        all[30..].iter().map(|e| e.data.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn viewers_watch_but_cannot_start_or_cancel() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let mo1 = app.mo1().await;
    let id = app.published(&ed1, "1.0", "print('hi')\n", "").await;
    let forbidden = [
        (
            Method::POST,
            "/api/runs".to_string(),
            Some(json!({ "script_id": id })),
        ),
        (Method::POST, "/api/passes".to_string(), None),
        (Method::POST, "/api/runs/1/cancel".to_string(), None),
        (Method::POST, "/api/passes/1/cancel".to_string(), None),
        (
            Method::GET,
            format!("/api/scripts/{id}/production-data"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/scripts/{id}/production-data"),
            None,
        ),
    ];
    for (m, p, b) in forbidden {
        assert_eq!(
            app.json(m.clone(), &p, Some(&mo1), b).await.status,
            StatusCode::FORBIDDEN,
            "{m} {p}"
        );
    }
    let run_id = app.start_run(&ed1, json!({ "script_id": id })).await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), &mo1, None, 100)
        .await;
    assert_eq!(events.last().unwrap().data["status"], "succeeded");
    assert_eq!(
        app.get(&format!("/api/runs/{run_id}"), &mo1).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/runs?script_id={id}"), &mo1)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn production_mode_hands_each_script_its_production_data() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let id = app
        .published(
            &ed1,
            "1.0",
            "import sys\nprint(open(sys.argv[1]).read())\n",
            "test rows",
        )
        .await;
    let put = app
        .put_raw(
            &format!("/api/scripts/{id}/production-data"),
            Some(&ed1),
            "real rows",
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let run_id = app
        .start_run(&ed1, json!({ "script_id": id, "mode": "production" }))
        .await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), &ed1, None, 100)
        .await;
    assert!(
        events.iter().any(|e| e.data["line"] == "real rows"),
        "{events:?}"
    );
    let run_id = app.start_run(&ed1, json!({ "script_id": id })).await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), &ed1, None, 100)
        .await;
    assert!(
        events.iter().any(|e| e.data["line"] == "test rows"),
        "{events:?}"
    );
    let pass_id = app
        .json(
            Method::POST,
            "/api/passes",
            Some(&ed1),
            Some(json!({ "mode": "production" })),
        )
        .await
        .json()["pass_id"]
        .as_i64()
        .unwrap();
    let events = app
        .sse(&format!("/api/passes/{pass_id}/events"), &ed1, None, 1000)
        .await;
    assert!(
        events
            .iter()
            .any(|e| e.event == "log" && e.data["line"] == "real rows"),
        "{events:?}"
    );
}

#[tokio::test]
async fn bad_run_requests_are_clear_and_start_nothing() {
    let app = app().await;
    let ed1 = app.ed1().await;
    let id = app.published(&ed1, "1.0", "print(1)\n", "").await;
    let cases = [
        (
            json!({ "script_id": 999 }),
            StatusCode::NOT_FOUND,
            "script 999",
        ),
        (
            json!({ "script_id": id, "interpreter": "graalpy-x" }),
            StatusCode::BAD_REQUEST,
            "`graalpy-x` is not known",
        ),
        (
            json!({ "script_id": id, "backend": "docker" }),
            StatusCode::BAD_REQUEST,
            "docker",
        ),
        (
            json!({ "script_id": id, "backend": "wasi" }),
            StatusCode::BAD_REQUEST,
            "cannot run under the `wasi` backend",
        ),
        (
            json!({ "script_id": id, "version": "9.9" }),
            StatusCode::NOT_FOUND,
            "version 9.9",
        ),
        (
            json!({ "script_id": id, "mode": "prod" }),
            StatusCode::BAD_REQUEST,
            "mode",
        ),
    ];
    for (body, status, needle) in cases {
        let r = app
            .json(Method::POST, "/api/runs", Some(&ed1), Some(body.clone()))
            .await;
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.error().contains(needle), "{body}: {}", r.error());
    }
    assert!(
        app.get("/api/runs", &ed1)
            .await
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.get("/api/runs/77", &ed1).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.json(Method::POST, "/api/runs/77/cancel", Some(&ed1), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The WASI interpreter runs the same script under the wasi backend.
    let run_id = app
        .start_run(
            &ed1,
            json!({ "script_id": id, "interpreter": "wasi-cpython-3.14" }),
        )
        .await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), &ed1, None, 100)
        .await;
    assert_eq!(
        events.last().unwrap().data["status"],
        "succeeded",
        "{events:?}"
    );
}

#[tokio::test]
async fn a_restart_mid_run_leaves_the_run_interrupted_and_curl_sees_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[("SCRIPTORIUM_SEED_EXAMPLES", "false")]);
    let client = http_client(&server, "ed1", "1editor").await;
    let created: Value = client
        .post(server.url("/api/scripts"))
        .json(&json!({ "content": "import time\nprint('started', flush=True)\ntime.sleep(30)\n" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run: Value = client
        .post(server.url("/api/runs"))
        .json(&json!({ "script_id": created["id"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = run["run_id"].as_i64().unwrap();

    // `curl -N` shows the stream as it happens (the README documents this).
    let cookie = format!("scriptorium_session={}", {
        let r = reqwest::Client::new()
            .post(server.url("/api/login"))
            .json(&json!({ "username": "mo1", "password": "2viewer" }))
            .send()
            .await
            .unwrap();
        let c = r.headers()["set-cookie"].to_str().unwrap().to_string();
        c.split(';')
            .next()
            .unwrap()
            .split('=')
            .nth(1)
            .unwrap()
            .to_string()
    });
    let mut curl = tokio::process::Command::new("curl")
        .args([
            "-sN",
            "-H",
            &format!("Cookie: {cookie}"),
            &server.url(&format!("/api/runs/{run_id}/events")),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl is installed");
    let mut out = curl.stdout.take().unwrap();
    let (mut buf, mut events) = (String::new(), Vec::new());
    let mut chunk = [0u8; 4096];
    while !events
        .iter()
        .any(|e: &crate::util::Sse| e.data["line"] == "started")
    {
        use tokio::io::AsyncReadExt;
        let n = tokio::time::timeout(Duration::from_secs(20), out.read(&mut chunk))
            .await
            .expect("curl saw nothing")
            .unwrap();
        assert!(n > 0, "curl's stream ended early");
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        parse_sse(&mut buf, &mut events);
    }
    assert_eq!(events[1].data["status"], "running");

    // Events reach SQLite every 250 ms; then the server dies mid-run, and its
    // sandbox goes with it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = curl.wait().await;
    let server = ServerProcess::start(&data, &[("SCRIPTORIUM_SEED_EXAMPLES", "false")]);
    let client = http_client(&server, "ed1", "1editor").await;
    let run: Value = client
        .get(server.url(&format!("/api/runs/{run_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["status"], "interrupted", "{run}");
    let text = client
        .get(server.url(&format!("/api/runs/{run_id}/events")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (mut buf, mut events) = (text, Vec::new());
    parse_sse(&mut buf, &mut events);
    assert_eq!(events.last().unwrap().event, "complete");
    assert_eq!(events.last().unwrap().data["status"], "interrupted");
    assert!(
        events.iter().any(|e| e.data["line"] == "started"),
        "the stored log kept the line"
    );
    let log = server.terminate();
    assert!(log.contains("interrupted"), "{log}");
}
