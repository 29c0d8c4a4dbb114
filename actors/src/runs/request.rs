//! What a run or a pass is asked for, and what the scheduler and the pass driver both
//! need to start one: the mode, what to do on failure, the interpreter choice, the
//! input data.

use std::sync::Arc;

use scriptorium_sandbox::{BackendKind, Interpreter, Registry};

use crate::domain::version::Version;
use crate::error::{RepoError, Result};
use crate::runs::run_store;
use crate::runs::runner::Runner;
use crate::scripts::catalog::{Catalog, RunSource};
use crate::scripts::python::interpreter_directive;

/// Which data a run gets as its input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Test,
    Production,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Production => "production",
        }
    }
}

/// What happens after a script of a pass fails.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, ts_rs::TS,
)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The failing group finishes; later groups are skipped. The default.
    #[default]
    Stop,
    /// Every group runs regardless.
    Continue,
}

impl OnFailure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OnFailure::Stop => "stop",
            OnFailure::Continue => "continue",
        }
    }
}

pub struct RunRequest {
    pub script_id: i64,
    pub version: Option<Version>,
    pub interpreter: Option<String>,
    pub backend: Option<BackendKind>,
    pub mode: Mode,
    pub user: String,
}

pub struct RunSchedulerArgs {
    pub runner: Arc<Runner>,
    pub registry: Arc<Registry>,
    pub catalog: Arc<Catalog>,
    /// Passes allowed at once.
    pub max_passes: usize,
}

/// The interpreter for a run: asked for, else named in the script, else the default.
pub(crate) fn choose(
    registry: &Registry,
    asked: Option<&str>,
    content: &str,
    backend: Option<BackendKind>,
) -> Result<(Interpreter, BackendKind)> {
    let id = asked.or_else(|| interpreter_directive(content));
    let interp = registry
        .get(id)
        .map_err(|e| RepoError::BadInput(e.to_string()))?;
    let backend = interp
        .backend(backend)
        .map_err(|e| RepoError::BadInput(e.to_string()))?;
    Ok((interp.clone(), backend))
}

/// The input file of a run: the script's test data, or its production data.
pub(crate) async fn input_for(
    args: &RunSchedulerArgs,
    source: &RunSource,
    mode: Mode,
) -> Result<Vec<u8>> {
    match mode {
        Mode::Test => Ok(source.test_data.clone()),
        Mode::Production => {
            let id = source.id;
            Ok(args
                .runner
                .db(move |c| run_store::production_data(c, id))
                .await?
                .unwrap_or_default())
        }
    }
}
