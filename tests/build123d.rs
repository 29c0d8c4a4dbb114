//! build123d scripts in the linux sandbox: the `result` convention (STL + GLB).
//! Needs `make build123d` (the test command runs it).

use serde_json::{Value, json};

use crate::util::TestApp;

async fn run_example(
    app: &TestApp,
    cookie: &str,
    script: &str,
    data: &str,
) -> (Value, Vec<crate::util::Sse>) {
    let id = app.create(cookie, script).await;
    app.put_raw(
        &format!("/api/scripts/{id}/test-data"),
        Some(cookie),
        data.to_string(),
    )
    .await;
    let run_id = app.start_run(cookie, json!({ "script_id": id })).await;
    let events = app
        .sse(&format!("/api/runs/{run_id}/events"), cookie, None, 10_000)
        .await;
    (
        app.get(&format!("/api/runs/{run_id}"), cookie).await.json(),
        events,
    )
}

/// The JSON chunk of a binary glTF.
fn glb_json(bytes: &[u8]) -> Value {
    assert_eq!(&bytes[..4], b"glTF");
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[20..20 + len]).unwrap()
}

#[tokio::test]
async fn the_bracket_and_the_assembly_export_stl_and_glb() {
    // Outside /tmp, so runs start warm: a spare imports build123d from start-up on.
    let app = TestApp::start_in(tempfile::tempdir_in("/var/tmp").unwrap(), |c| {
        c.seed_examples = false
    })
    .await;
    let ed1 = app.ed1().await;
    let root = crate::util::repo_root();
    let read = |f: &str| std::fs::read_to_string(root.join("examples").join(f)).unwrap();

    let (run, events) = run_example(&app, &ed1, &read("bracket.py"), &read("bracket.json")).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{events:?}");
    assert_eq!(
        run["interpreter"], "build123d",
        "the script's `# interpreter:` line chose it"
    );
    assert_eq!(run["backend"], "linux");
    let names: Vec<&str> = run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["result.glb", "result.stl"]);
    let id = run["id"].as_i64().unwrap();
    let stl = app
        .get(&format!("/api/runs/{id}/artifacts/result.stl"), &ed1)
        .await;
    assert_eq!(stl.headers["content-type"], "model/stl");
    // Binary STL: an 80-byte header, a triangle count, 50 bytes per triangle.
    let triangles = u32::from_le_bytes(stl.body[80..84].try_into().unwrap()) as usize;
    assert!(triangles > 12, "{triangles} triangles");
    assert_eq!(stl.body.len(), 84 + 50 * triangles);
    assert!(
        events.iter().any(|e| e.data["line"]
            .as_str()
            .is_some_and(|l| l.starts_with("bracket: 60 x 30 mm"))),
        "{events:?}"
    );

    let (run, _) = run_example(&app, &ed1, &read("assembly.py"), &read("assembly.json")).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["warm_start"], true,
        "the assembly ran in the spare made after the bracket: {run}"
    );
    let id = run["id"].as_i64().unwrap();
    let glb = app
        .get(&format!("/api/runs/{id}/artifacts/result.glb"), &ed1)
        .await;
    assert_eq!(glb.headers["content-type"], "model/gltf-binary");
    let gltf = glb_json(&glb.body);
    let nodes: Vec<&str> = gltf["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert!(
        nodes.contains(&"plate") && nodes.contains(&"pin"),
        "{nodes:?}"
    );
    assert_eq!(
        gltf["materials"].as_array().unwrap().len(),
        2,
        "each part keeps its colour"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_result_is_explained_without_a_runner_traceback() {
    let app = TestApp::start_with(|c| c.seed_examples = false).await;
    let ed1 = app.ed1().await;
    let (run, events) =
        run_example(&app, &ed1, "# interpreter: build123d\nresult = 42\n", "").await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["exit_code"], 3);
    let stderr: String = events
        .iter()
        .filter(|e| e.data["stream"] == "stderr")
        .map(|e| e.data["line"].as_str().unwrap().to_string() + "\n")
        .collect();
    assert!(
        stderr.contains("`result` must be a build123d Shape") && stderr.contains("got int"),
        "{stderr}"
    );
    assert!(!stderr.contains("Traceback"), "{stderr}");

    let (run, events) = run_example(
        &app,
        &ed1,
        "# interpreter: build123d\nopen('notes.txt', 'w').write('no shape')\n",
        "",
    )
    .await;
    assert_eq!(run["status"], "succeeded");
    assert!(events.iter().any(|e| {
        e.data["line"]
            .as_str()
            .is_some_and(|l| l.contains("no top-level `result`"))
    }));
    assert_eq!(run["artifacts"][0]["name"], "notes.txt");

    // The script's own errors point at the script, not at the runner.
    let (run, events) = run_example(
        &app,
        &ed1,
        "# interpreter: build123d\nraise ValueError('bad size')\n",
        "",
    )
    .await;
    assert_eq!(run["status"], "failed");
    let stderr: String = events
        .iter()
        .filter(|e| e.data["stream"] == "stderr")
        .map(|e| e.data["line"].as_str().unwrap().to_string() + "\n")
        .collect();
    assert!(
        stderr.contains("ValueError: bad size") && !stderr.contains("build123d_result.py"),
        "{stderr}"
    );
}

/// A build123d run that works prints nothing on stderr (no font-cache or joblib noise),
/// and the runner's own notice is on stdout, as information, not as an error.
#[tokio::test]
async fn a_working_build123d_run_is_quiet_on_stderr() {
    // Cold runs (under /tmp no spare is made): the noise came at import time.
    let app = TestApp::start_with(|c| c.seed_examples = false).await;
    let ed1 = app.ed1().await;
    let root = crate::util::repo_root();
    let read = |f: &str| std::fs::read_to_string(root.join("examples").join(f)).unwrap();
    // Text needs fonts: fontconfig has no configuration in the sandbox's minimal root.
    let text = "# interpreter: build123d\nfrom build123d import Text\nresult = Text('Hi', 10)\n";
    for (name, script, data) in [
        ("bracket", read("bracket.py"), read("bracket.json")),
        ("assembly", read("assembly.py"), read("assembly.json")),
        ("text", text.to_string(), String::new()),
    ] {
        let id = app.create(&ed1, &script).await;
        app.put_raw(&format!("/api/scripts/{id}/test-data"), Some(&ed1), data)
            .await;
        let run_id = app.start_run(&ed1, json!({ "script_id": id })).await;
        // A cold `import build123d` can take minutes on a loaded machine: poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let run = loop {
            let run = app.get(&format!("/api/runs/{run_id}"), &ed1).await.json();
            if !["queued", "running"].contains(&run["status"].as_str().unwrap()) {
                break run;
            }
            assert!(std::time::Instant::now() < deadline, "{run}");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        let log = app
            .get(&format!("/api/runs/{run_id}/log"), &ed1)
            .await
            .json();
        assert_eq!(run["status"], "succeeded", "{run}\n{log}");
        let lines = |stream: &str| -> Vec<String> {
            log.as_array()
                .unwrap()
                .iter()
                .filter(|l| l["stream"] == stream)
                .map(|l| l["line"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            lines("stderr"),
            Vec::<String>::new(),
            "{name} wrote to stderr"
        );
        assert!(
            lines("stdout")
                .iter()
                .any(|l| l == "scriptorium: exported result.stl and result.glb"),
            "{:?}",
            lines("stdout")
        );
    }
}
