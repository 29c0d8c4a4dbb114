//! Helpers for the write side's unit tests (in `change.rs`, `repair.rs` and `team.rs`).

use super::*;

pub(super) fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        python: crate::scripts::python::PythonCommand::Native(PathBuf::from("/usr/bin/python3")),
        editors: vec!["ed1".into()],
        interpreters_note: Vec::new(),
        seed_examples: false,
        health: Arc::new(WriteHealth::new(dir)),
        deps: Default::default(),
    }
}

pub(super) fn ed1() -> Committer {
    Committer {
        username: "ed1".into(),
        email: "ed1@x".into(),
        branch: "ed1".into(),
    }
}

pub(super) fn git_cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir.join("repo"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
