//! The offline provider (no API key, no network): an answer for every template that
//! compiles, its helper wired into `main()`, and rejecting a proposal it made.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::llm::prompt;
use crate::util::TestApp;

#[tokio::test]
async fn the_offline_provider_answers_every_template_with_code_that_compiles() {
    let app = TestApp::start().await;
    let ed1 = app.ed1().await;
    let mo1 = app.mo1().await;
    let id = app
        .create(
            &ed1,
            "\"\"\"Report\"\"\"\nimport sys\nvalue = 42\nprint(value)\n",
        )
        .await;
    let cases = [
        ("add argument parsing of argv[1]", "sys.argv[1]"),
        ("read CSV input", "csv.DictReader"),
        ("read JSON input", "json.load"),
        ("add logging", "logging.basicConfig"),
        ("wrap in main", "def main() -> int:"),
        ("add a docstring explaining it", "\"\"\"Report\"\"\""),
        ("make it faster", "# TODO: make it faster"),
    ];
    for (instruction, marker) in cases {
        let r = prompt(&app, &ed1, id, json!({ "instruction": instruction })).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{instruction}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let p = r.json();
        assert_eq!(p["provider"], "offline");
        assert_eq!(p["valid"], true, "{instruction}: {}", p["code"]);
        assert!(
            p["code"].as_str().unwrap().contains(marker),
            "{instruction}: {}",
            p["code"]
        );
        // The proposal saves like any code.
        let current = app.get(&format!("/api/scripts/{id}"), &ed1).await.json();
        let save = app
            .save(
                &ed1,
                id,
                p["code"].as_str().unwrap(),
                current["version"].as_str().unwrap(),
            )
            .await;
        assert_eq!(save.status, StatusCode::OK, "{instruction}");
    }
    let docstring = app.create(&ed1, "print(1)\n").await;
    let p = prompt(
        &app,
        &ed1,
        docstring,
        json!({ "instruction": "add a docstring: sum the sales" }),
    )
    .await
    .json();
    assert!(
        p["code"]
            .as_str()
            .unwrap()
            .starts_with("\"\"\"Sum the sales"),
        "{}",
        p["code"]
    );
    // Viewers read the log but cannot prompt.
    assert_eq!(
        prompt(&app, &mo1, id, json!({ "instruction": "add logging" }))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&format!("/api/scripts/{id}/exchanges"), &mo1)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        7
    );
    let empty = prompt(&app, &ed1, id, json!({ "instruction": "  " })).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

/// The offline provider's CSV helper is called from `main()`, not left unused after
/// `sys.exit(main())`, and the proposal does what was asked when it runs.
#[tokio::test]
async fn the_offline_provider_wires_its_helper_into_main() {
    let app = TestApp::start_with(|c| c.seed_examples = false).await;
    let ed1 = app.ed1().await;
    let created = app
        .json(Method::POST, "/api/scripts", Some(&ed1), Some(json!({})))
        .await
        .json();
    let id = created["id"].as_i64().unwrap();
    let instruction = "read the CSV in argv[1] and print the number of rows";
    let p = prompt(&app, &ed1, id, json!({ "instruction": instruction }))
        .await
        .json();
    let code = p["code"].as_str().unwrap();
    let helper = code.find("def read_rows").expect(code);
    let main = code.find("def main").expect(code);
    assert!(helper < main, "the helper comes before main():\n{code}");
    let exit = code.find("sys.exit(main(").expect(code);
    assert_eq!(
        code[exit..].trim_end().lines().count(),
        1,
        "nothing after the exit:\n{code}"
    );
    let body = &code[main..exit];
    assert!(
        body.contains("read_rows("),
        "main() calls the helper:\n{code}"
    );
    assert!(
        p["explanation"].as_str().unwrap().contains("understands"),
        "{}",
        p["explanation"]
    );

    // Saved and run on a CSV of three rows, it prints the count.
    let save = app.save(&ed1, id, code, "0.1").await;
    assert_eq!(save.status, StatusCode::OK, "{}", save.text());
    app.put_raw(
        &format!("/api/scripts/{id}/test-data"),
        Some(&ed1),
        "region,amount\nnorth,1\nsouth,2\neast,3\n".to_string(),
    )
    .await;
    let run_id = app.start_run(&ed1, json!({ "script_id": id })).await;
    app.sse(&format!("/api/runs/{run_id}/events"), &ed1, None, 1000)
        .await;
    let run = app.get(&format!("/api/runs/{run_id}"), &ed1).await.json();
    let log = app
        .get(&format!("/api/runs/{run_id}/log"), &ed1)
        .await
        .json();
    assert_eq!(run["status"], "succeeded", "{run}\n{log}");
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"] == "3 rows"),
        "{log}"
    );
}

/// Rejecting a proposal is recorded (who, when) and shown in the log; a viewer cannot,
/// and a saved or unknown exchange cannot be rejected.
#[tokio::test]
async fn a_rejected_proposal_is_recorded() {
    let app = TestApp::start_with(|c| c.seed_examples = false).await;
    let ed1 = app.ed1().await;
    let mo1 = app.mo1().await;
    let id = app.create(&ed1, "print(1)\n").await;
    let ask = |instruction: &'static str| {
        let (app, ed1) = (&app, &ed1);
        async move {
            prompt(app, ed1, id, json!({ "instruction": instruction }))
                .await
                .json()
        }
    };
    let first = ask("add logging").await;
    let exchange = first["exchange_id"].as_i64().expect("an exchange id");
    let reject = |cookie: &str, x: i64| {
        let (app, cookie) = (&app, cookie.to_string());
        async move {
            app.json(
                Method::POST,
                &format!("/api/scripts/{id}/exchanges/{x}/reject"),
                Some(&cookie),
                Some(json!({})),
            )
            .await
        }
    };
    assert_eq!(reject(&mo1, exchange).await.status, StatusCode::FORBIDDEN);
    let r = reject(&ed1, exchange).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let log = app
        .get(&format!("/api/scripts/{id}/exchanges"), &mo1)
        .await
        .json();
    assert_eq!(log[0]["id"], exchange);
    assert_eq!(log[0]["outcome"], "rejected", "{}", log[0]);
    assert_eq!(log[0]["rejected_by"], "ed1");

    // A proposal that was saved stays accepted; an unknown one is a clear 404.
    let second = ask("add a docstring: counts").await;
    let x = second["exchange_id"].as_i64().unwrap();
    let save = app
        .json(
            Method::PUT,
            &format!("/api/scripts/{id}"),
            Some(&ed1),
            Some(json!({ "content": second["code"], "base_version": "0.1", "exchange_id": x })),
        )
        .await;
    assert_eq!(save.json()["linked_exchange"], true, "{}", save.text());
    let r = reject(&ed1, x).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert!(r.error().contains("saved"), "{}", r.error());
    let log = app
        .get(&format!("/api/scripts/{id}/exchanges"), &mo1)
        .await
        .json();
    assert_eq!(log[0]["outcome"], "accepted");
    assert_eq!(reject(&ed1, 999_999).await.status, StatusCode::NOT_FOUND);
}
