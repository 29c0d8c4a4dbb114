//! Unit tests of loading the configuration: defaults, the file, the environment.

use super::*;

#[test]
fn defaults_have_ed1_and_mo1_with_hashes_only() {
    let c = Config::load_with(
        &Overrides {
            data_dir: Some("/nonexistent".into()),
            ..Default::default()
        },
        |_| None,
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    let names: Vec<_> = c.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["ed1", "mo1"]);
    assert!(
        c.users
            .iter()
            .all(|u| u.password_hash.starts_with("$argon2id$"))
    );
    assert_eq!(c.editors(), ["ed1"]);
}

#[test]
fn environment_overrides_and_bad_values_are_named() {
    let env = |k: &str| (k == "SCRIPTORIUM_LISTEN").then(|| "127.0.0.1:9999".to_string());
    let c = Config::load_with(
        &Overrides {
            data_dir: Some("/nonexistent".into()),
            ..Default::default()
        },
        env,
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9999);
    let env = |k: &str| (k == "SCRIPTORIUM_LISTEN").then(|| "nine".to_string());
    let err = Config::load_with(
        &Overrides {
            data_dir: Some("/nonexistent".into()),
            ..Default::default()
        },
        env,
    )
    .unwrap_err();
    assert!(err.to_string().contains("SCRIPTORIUM_LISTEN"), "{err}");
}

#[test]
fn allowed_origins_come_from_the_file_or_the_environment_and_must_be_origins() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("scriptorium.toml");
    std::fs::write(
        &p,
        "[server]\nallowed_origins = [\"https://scriptorium.example.org\"]\n",
    )
    .unwrap();
    let c = Config::load_with(
        &Overrides {
            config: Some(p.clone()),
            ..Default::default()
        },
        |_| None,
    )
    .unwrap();
    assert_eq!(
        c.server.allowed_origins,
        ["https://scriptorium.example.org"]
    );
    let env = |k: &str| {
        (k == "SCRIPTORIUM_ALLOWED_ORIGINS")
            .then(|| "https://a.example, http://b.example:8080".to_string())
    };
    let c = Config::load_with(
        &Overrides {
            config: Some(p.clone()),
            ..Default::default()
        },
        env,
    )
    .unwrap();
    assert_eq!(
        c.server.allowed_origins,
        ["https://a.example", "http://b.example:8080"]
    );
    let env = |k: &str| {
        (k == "SCRIPTORIUM_ALLOWED_ORIGINS").then(|| "scriptorium.example.org/app".to_string())
    };
    let err = Config::load_with(
        &Overrides {
            config: Some(p),
            ..Default::default()
        },
        env,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("SCRIPTORIUM_ALLOWED_ORIGINS")
            && err.to_string().contains("scheme://host"),
        "{err}"
    );
}

#[test]
fn server_limits_come_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("scriptorium.toml");
    std::fs::write(
        &p,
        "[server]\nmax_connections = 50\nheader_read_timeout_secs = 2.5\n",
    )
    .unwrap();
    let env = |k: &str| (k == "SCRIPTORIUM_BODY_TIMEOUT_SECS").then(|| "7".to_string());
    let c = Config::load_with(
        &Overrides {
            config: Some(p.clone()),
            ..Default::default()
        },
        env,
    )
    .unwrap();
    assert_eq!(
        (
            c.server.max_connections,
            c.server.header_read_timeout_secs,
            c.server.body_timeout_secs
        ),
        (50, 2.5, 7.0)
    );
    let env = |k: &str| (k == "SCRIPTORIUM_MAX_CONNECTIONS").then(|| "0".to_string());
    let err = Config::load_with(
        &Overrides {
            config: Some(p),
            ..Default::default()
        },
        env,
    )
    .unwrap_err();
    assert!(err.to_string().contains("max_connections"), "{err}");
}

#[test]
fn a_plaintext_password_in_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("scriptorium.toml");
    std::fs::write(
        &p,
        "[[users]]\nusername = \"ed2\"\npassword_hash = \"secret\"\nroles = [\"editor\"]\n",
    )
    .unwrap();
    let err = Config::load_with(
        &Overrides {
            config: Some(p),
            ..Default::default()
        },
        |_| None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("hash-password"), "{err}");
}
