//! Starting and stopping the whole server: actors, state, router, listener.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use axum::Router;
use ractor::ActorRef;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::api::{self, AppState, LspSessions};
use crate::auth::Auth;
use crate::config::Config;
use crate::frontend;
use scriptorium_actors::Envs;
use scriptorium_actors::LiveLogs;
use scriptorium_actors::PythonCommand;
use scriptorium_actors::Runner;
use scriptorium_actors::WriteHealth;
use scriptorium_actors::{
    Catalog, DataDir, ExchangeReader, RunReader, ScriptRepoHandle, StoreConfig,
};
use scriptorium_actors::{LlmBrokerArgs, LlmBrokerHandle};
use scriptorium_actors::{RunSchedulerArgs, RunSchedulerHandle};
use scriptorium_actors::{SupervisorArgs, SupervisorMessage, start_supervisor};
use scriptorium_sandbox::linux::LinuxBackend;
use scriptorium_sandbox::{Backends, Registry};
use tokio::sync::Semaphore;

/// A started application: its router and the actors behind it.
pub struct App {
    pub router: Router,
    pub state: AppState,
    supervisor: ActorRef<SupervisorMessage>,
    supervisor_done: tokio::task::JoinHandle<()>,
}

/// The Python that checks syntax: the native default interpreter, or else (a machine
/// without one, e.g. Windows without CPython) the WASI CPython through its host.
async fn syntax_checker(config: &Config, interpreters: &Registry) -> anyhow::Result<PythonCommand> {
    if let Some(native) = interpreters.native_default() {
        return Ok(PythonCommand::Native(native.path.clone()));
    }
    let no_python = "no native Python interpreter found and no WASI CPython to check syntax with; install python3 (on Windows: CPython from python.org) or run `make wasi`, or fix interpreters.toml";
    let component = interpreters
        .available()
        .find(|i| i.kind == scriptorium_sandbox::InterpreterKind::Wasi)
        .ok_or_else(|| anyhow::anyhow!(no_python))?
        .path
        .clone();
    let host = match &config.sandbox.wasi_host {
        Some(h) => h.clone(),
        None => std::env::current_exe()?,
    };
    let wasi = scriptorium_sandbox::wasi::WasiBackend::new(host, &config.sandbox)?;
    let (program, cwasm) = tokio::task::spawn_blocking(move || wasi.compiled(&component)).await??;
    tracing::warn!(
        "no native Python: syntax is checked with CPython for WASI (the LLM's helper needs a native Python)"
    );
    Ok(PythonCommand::Wasi {
        program,
        args: vec![
            scriptorium_sandbox::wasi::host::SUBCOMMAND.into(),
            cwasm.into(),
            (256u64 << 20).to_string().into(),
            "python".into(),
        ],
        dir: config.data_dir.join("checker"),
    })
}

impl App {
    /// Starts the actors (opening, repairing and seeding the repository) and builds the router.
    pub async fn start(config: &Config) -> anyhow::Result<App> {
        let interp_path = config.interpreters.clone();
        let interpreters =
            tokio::task::spawn_blocking(move || Registry::load(&interp_path)).await??;
        for i in interpreters.all() {
            match &i.problem {
                None => {
                    tracing::info!(id = %i.id, version = %i.version, path = %i.path.display(), source = i.source, "interpreter")
                }
                Some(p) => tracing::warn!(id = %i.id, problem = %p, "interpreter unavailable"),
            }
        }
        let checker = syntax_checker(config, &interpreters).await?;
        // The LLM's helper (pseudonymisation) needs a native Python; without one a
        // prompt fails with the reason, everything else works.
        let python: std::path::PathBuf = match &checker {
            PythonCommand::Native(p) => p.clone(),
            PythonCommand::Wasi { .. } => "python".into(),
        };
        let note = interpreters
            .available()
            .map(|i| {
                let backends: Vec<&str> = i.backends.iter().map(|b| b.as_str()).collect();
                format!(
                    "{:<20} {} {} (backends: {})",
                    i.id,
                    i.implementation,
                    i.version,
                    backends.join(", ")
                )
            })
            .collect();
        let health = Arc::new(WriteHealth::new(&config.data_dir));
        let uv = uv_config(config);
        // Locks are made for the syntax checker's interpreter (the default native one).
        let deps = Arc::new(scriptorium_actors::Resolutions::new(Some(
            scriptorium_actors::Resolver {
                uv: uv.clone(),
                python: python.clone(),
                python_version: interpreters
                    .available()
                    .find(|i| i.path == python)
                    .map(|i| i.version.clone())
                    .unwrap_or_default(),
            },
        )));
        let store = StoreConfig {
            data_dir: config.data_dir.clone(),
            python: checker,
            editors: config.editors(),
            interpreters_note: note,
            seed_examples: config.seed_examples,
            health: health.clone(),
            deps: deps.clone(),
        };
        let db_path = store.db_path();
        tokio::fs::create_dir_all(&config.data_dir).await?;
        let layout = DataDir::new(&config.data_dir);
        let runs_dir = layout.runs();
        tokio::fs::create_dir_all(&runs_dir).await?;
        let live = Arc::new(LiveLogs::default());
        let interpreters = Arc::new(interpreters);
        let catalog = Arc::new(Catalog::new(&config.data_dir));
        let backends = Backends::for_this_machine(&config.sandbox);
        // Spare sandboxes with pre-imported modules, so the first run starts warm too.
        for interp in interpreters.available().filter(|i| !i.warm.is_empty()) {
            for kind in &interp.backends {
                if let Ok(b) = backends.get(*kind) {
                    b.prepare(interp, &runs_dir);
                }
            }
        }
        // The LLM's tool runs are few and short: no spares for them.
        let mut tool_sandbox = config.sandbox.clone();
        tool_sandbox.linux.warm = scriptorium_sandbox::linux::WarmMode::Off;
        // Language servers run in the same sandbox as scripts (uid, Landlock, namespaces).
        let lsp_sandbox = tool_sandbox.linux.clone();
        // WASI runs get environments installed for the native interpreter locks are
        // made for (pure-Python wheels only).
        let envs = Arc::new(
            Envs::new(&config.data_dir, uv.clone())
                .with_native(interpreters.available().find(|i| i.path == python).cloned()),
        );
        let runner = Arc::new(Runner {
            runs_dir: runs_dir.clone(),
            backends: backends.clone(),
            db: Arc::new(Mutex::new(scriptorium_actors::open_for_logs(&db_path)?)),
            live: live.clone(),
            workers: Arc::new(Semaphore::new(config.runs.workers)),
            envs: envs.clone(),
        });
        let llm = LlmBrokerArgs {
            config: config.llm.clone(),
            python: python.clone(),
            registry: interpreters.clone(),
            backends: Backends::for_this_machine(&tool_sandbox),
            scratch: layout.llm_scratch(),
            db: Arc::new(Mutex::new(scriptorium_actors::open_for_logs(&db_path)?)),
            catalog: catalog.clone(),
        };
        let runs = Arc::new(RunSchedulerArgs {
            runner,
            registry: interpreters.clone(),
            catalog: catalog.clone(),
            max_passes: config.runs.max_passes,
        });
        // Unique per process, so several servers (tests) can share one actor registry.
        static INSTANCES: AtomicUsize = AtomicUsize::new(0);
        let instance = format!(
            "scriptorium-{}",
            INSTANCES.fetch_add(1, AtomicOrdering::Relaxed)
        );
        let (supervisor, supervisor_done) = start_supervisor(SupervisorArgs {
            instance: instance.clone(),
            store,
            runs,
            llm,
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the script repository: {e}"))?;
        let auth = Arc::new(Auth::new(&config.users, &db_path, config.session_hours)?);
        let state = AppState {
            auth,
            run_reader: RunReader::new(catalog.clone()),
            exchanges: ExchangeReader::new(catalog.clone()),
            catalog,
            repo: ScriptRepoHandle::new(&instance),
            runs: RunSchedulerHandle::new(&instance),
            llm: LlmBrokerHandle::new(&instance),
            live,
            runs_dir,
            backends,
            interpreters,
            lsp: Arc::new(LspSessions::new(
                config.lsp.clone(),
                layout.lsp_sessions(),
                Arc::new(LinuxBackend::new(lsp_sandbox)),
            )),
            origins: Arc::new(crate::origin::Origins::new(
                &config.server.allowed_origins,
                config.listen,
            )),
            health,
            notices: Arc::new(crate::notices::Notices::new(
                config.server.max_event_streams_per_user,
            )),
            deps,
            envs,
        };
        let router = api::router(state.clone())
            .merge(frontend::router(&config.frontend_dir))
            .layer(axum::middleware::from_fn(crate::headers::security_headers))
            .layer(TraceLayer::new_for_http());
        Ok(App {
            router,
            state,
            supervisor,
            supervisor_done,
        })
    }

    /// Stops the actors and waits for them.
    pub async fn stop(self) {
        self.supervisor.stop(Some("server shutting down".into()));
        let _ = self.supervisor_done.await;
    }
}

/// Serves `config` on `listener` until `shutdown` completes, then stops gracefully.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::start(&config).await?;
    tracing::info!(addr = %listener.local_addr()?, data = %config.data_dir.display(), "Scriptorium is listening");
    crate::connections::serve(listener, app.router.clone(), &config.server, shutdown).await?;
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
}

/// How uv runs for script dependencies, from `[uv]`.
fn uv_config(config: &Config) -> scriptorium_actors::UvConfig {
    let mut uv = scriptorium_actors::UvConfig::for_data_dir(&config.data_dir);
    if let Some(p) = &config.uv.path {
        uv.uv = p.clone();
    }
    uv.index_url = config.uv.index_url.clone();
    uv.extra_index_urls = config.uv.extra_index_urls.clone();
    uv.offline = config.uv.offline;
    if let Some(t) = config.uv.timeout_secs {
        uv.timeout = std::time::Duration::from_secs(t.min(28));
    }
    uv
}
