//! Personal API tokens, used the way an agent or a CI job would: with `curl`.

use serde_json::{Value, json};

use crate::util::{ServerProcess, http_client, parse_sse};

fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[tokio::test]
async fn a_token_runs_a_script_with_curl_until_it_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    let ed1 = http_client(&server, "ed1", "1editor").await;
    let mo1 = http_client(&server, "mo1", "2viewer").await;
    let made: Value = ed1
        .post(server.url("/api/tokens"))
        .json(&json!({ "name": "ci-nightly" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("scr_") && token.len() > 40, "{made}");
    let auth = format!("Authorization: Bearer {token}");

    // The listing never shows the token itself.
    let listed = ed1
        .get(server.url("/api/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("ci-nightly") && !listed.contains(&token),
        "{listed}"
    );

    // Create and save a script, start a run, follow its stream, fetch an artifact.
    let (code, body) = curl(&[
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"content":"print('from a token')\nopen('out.txt','w').write('ok')\n"}"#,
        &server.url("/api/scripts"),
    ]);
    assert_eq!(code, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let git_author = std::process::Command::new("git")
        .args(["-C"])
        .arg(dir.path().join("data/repo"))
        .args(["log", "ed1", "-1", "--format=%an"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&git_author.stdout).trim(),
        "ed1",
        "the token acts as its user"
    );
    let (code, body) = curl(&[
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        &json!({ "script_id": id }).to_string(),
        &server.url("/api/runs"),
    ]);
    assert_eq!(code, 202, "{body}");
    let run_id = serde_json::from_str::<Value>(&body).unwrap()["run_id"]
        .as_i64()
        .unwrap();
    let (code, stream) = curl(&[
        "-N",
        "-H",
        &auth,
        &server.url(&format!("/api/runs/{run_id}/events")),
    ]);
    assert_eq!(code, 200);
    let (mut buf, mut events) = (stream, Vec::new());
    parse_sse(&mut buf, &mut events);
    assert!(
        events.iter().any(|e| e.data["line"] == "from a token"),
        "{events:?}"
    );
    assert_eq!(events.last().unwrap().data["status"], "succeeded");
    let (code, body) = curl(&[
        "-H",
        &auth,
        &server.url(&format!("/api/runs/{run_id}/artifacts/out.txt")),
    ]);
    assert_eq!((code, body.as_str()), (200, "ok"));

    // A token cannot mint more tokens.
    let (code, body) = curl(&[
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name":"x"}"#,
        &server.url("/api/tokens"),
    ]);
    assert_eq!(code, 403, "{body}");

    // Revoked: 401 from then on.
    let tid = made["id"].as_i64().unwrap();
    let r = ed1
        .delete(server.url(&format!("/api/tokens/{tid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (code, body) = curl(&["-H", &auth, &server.url("/api/scripts")]);
    assert_eq!(code, 401);
    assert!(body.contains("revoked"), "{body}");

    // A viewer's token carries the viewer role: it reads, but cannot start a run.
    let viewer: Value = mo1
        .post(server.url("/api/tokens"))
        .json(&json!({ "name": "dashboard" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vauth = format!(
        "Authorization: Bearer {}",
        viewer["token"].as_str().unwrap()
    );
    assert_eq!(curl(&["-H", &vauth, &server.url("/api/scripts")]).0, 200);
    let (code, body) = curl(&[
        "-H",
        &vauth,
        "-H",
        "content-type: application/json",
        "-d",
        &json!({ "script_id": id }).to_string(),
        &server.url("/api/runs"),
    ]);
    assert_eq!(code, 403, "{body}");
    // And mo1 cannot revoke ed1's tokens.
    assert_eq!(
        mo1.delete(server.url(&format!("/api/tokens/{tid}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // A garbage token is refused like a revoked one.
    assert_eq!(
        curl(&[
            "-H",
            "Authorization: Bearer scr_nonsense",
            &server.url("/api/scripts")
        ])
        .0,
        401
    );
    server.terminate();
}
