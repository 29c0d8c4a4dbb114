//! The browser's TypeScript types for the API, generated from the Rust types the API
//! returns and accepts (ts-rs) into `frontend/src/generated/`, where they are committed.
//! The test below fails when the committed files differ from what the Rust types give;
//! `make ts-types` rewrites them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ts_rs::{Config, TS};

use scriptorium_actors::{
    ExchangeRecord, LlmEvent, Mode, OnFailure, PassRecord, PassSummary, Proposal, RunRecord,
    ScriptDetail, ScriptSummary, VersionInfo,
};

/// Set to rewrite the committed files instead of comparing with them.
const WRITE_VAR: &str = "SCRIPTORIUM_WRITE_TS";

fn committed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend/src/generated")
}

/// Writes every API type (and the types they use) into `dir`, plus an `index.ts`.
fn generate(dir: &Path) -> Result<(), ts_rs::ExportError> {
    // Ids and sizes are JSON numbers well inside 2^53, not bigints.
    let cfg = Config::new().with_large_int("number").with_out_dir(dir);
    // Responses.
    crate::auth::CurrentUser::export_all(&cfg)?;
    crate::auth::ApiToken::export_all(&cfg)?;
    ScriptSummary::export_all(&cfg)?;
    ScriptDetail::export_all(&cfg)?;
    VersionInfo::export_all(&cfg)?;
    RunRecord::export_all(&cfg)?;
    PassRecord::export_all(&cfg)?;
    PassSummary::export_all(&cfg)?;
    Proposal::export_all(&cfg)?;
    ExchangeRecord::export_all(&cfg)?;
    LlmEvent::export_all(&cfg)?;
    scriptorium_actors::MergeConflict::export_all(&cfg)?;
    scriptorium_actors::DuplicateOf::export_all(&cfg)?;
    scriptorium_actors::MergedFrom::export_all(&cfg)?;
    scriptorium_actors::ForkOrderings::export_all(&cfg)?;
    scriptorium_actors::TestDataConflict::export_all(&cfg)?;
    scriptorium_actors::TestDataSaved::export_all(&cfg)?;
    super::scripts::ExampleInfo::export_all(&cfg)?;
    // Requests.
    super::session::LoginBody::export_all(&cfg)?;
    super::tokens::CreateBody::export_all(&cfg)?;
    super::scripts::CreateBody::export_all(&cfg)?;
    super::scripts::SaveBody::export_all(&cfg)?;
    super::scripts::OrderingBody::export_all(&cfg)?;
    super::scripts::PublishBody::export_all(&cfg)?;
    super::scripts::ForkBody::export_all(&cfg)?;
    super::events::PresenceBody::export_all(&cfg)?;
    super::runs::StartRunBody::export_all(&cfg)?;
    super::runs::StartPassBody::export_all(&cfg)?;
    super::llm::PromptBody::export_all(&cfg)?;
    Mode::export_all(&cfg)?;
    OnFailure::export_all(&cfg)?;
    let mut index = String::from("// Generated with the files beside it (src/api/bindings.rs).\n");
    for name in read_dir(dir).keys() {
        if let Some(stem) = name.strip_suffix(".ts").filter(|s| *s != "index") {
            index.push_str(&format!("export type * from \"./{stem}\";\n"));
        }
    }
    std::fs::write(dir.join("index.ts"), index)?;
    Ok(())
}

/// Path (relative, `/`-separated) → content of the `.ts` files under `dir`, subfolders
/// included (none when it does not exist).
fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "ts") {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(name, std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    files
}

#[test]
fn generated_typescript_matches_the_rust_types() {
    if std::env::var_os(WRITE_VAR).is_some() {
        let dir = committed_dir();
        let _ = std::fs::remove_dir_all(&dir);
        generate(&dir).expect("write frontend/src/generated");
        return;
    }
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path()).expect("generate the TypeScript types");
    let want = read_dir(fresh.path());
    let have = read_dir(&committed_dir());
    let stale: Vec<&String> = want
        .iter()
        .filter(|(name, text)| have.get(*name) != Some(text))
        .map(|(name, _)| name)
        .chain(have.keys().filter(|name| !want.contains_key(*name)))
        .collect();
    assert!(
        stale.is_empty(),
        "frontend/src/generated is out of date with the Rust API types ({stale:?} differ); \
         run `make ts-types` and commit the result"
    );
}
