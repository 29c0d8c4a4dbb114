//! The `wasi` backend: CPython 3.14 for WASI (a `wasi:cli/command` component built by
//! componentize-py at set-up, see `scripts/build-wasi.sh`) inside wasmtime.
//!
//! The guest sees only the run directory (preopened read-write at `/run`) and has no
//! sockets. Memory is bounded by `StoreLimits`; time by epoch interruption (the guest
//! yields every tick, so dropping its future stops it) under an outer wall-clock
//! timeout that also covers blocking host calls. stdout/stderr stream through pipes
//! into the same line pump and byte cap as the native backend.
//!
//! The component is compiled once per engine configuration and component file
//! (`Engine::precompile_component`, cached as `.cwasm`, loaded with `deserialize_file`);
//! each runs reuses one `InstancePre`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::AsyncStdoutStream;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use crate::interpreters::InterpreterKind;
use crate::output::{Budget, StderrTail, limit_from_stderr, pump};
use crate::run::{Limit, Outcome, OutputSink, Protections, RunReport, RunSpec, SandboxError, Stream, secs};
use crate::{Backend, BackendKind, BoxFuture};

/// Where the guest finds the run directory.
const GUEST_RUN: &str = "/run";
/// The runner's files inside the run directory (removed after the run).
const SIDE_DIR: &str = ".scriptorium";
/// How often the guest yields to the host.
const TICK: Duration = Duration::from_millis(10);

struct Guest {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for Guest {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

/// The backend; cheap to share (the engine and cache live behind an `Arc`).
pub struct WasiBackend {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<Guest>,
    /// Component path → (file stamp, pre-instantiated command).
    prepared: Mutex<HashMap<PathBuf, (u64, CommandPre<Guest>)>>,
    stop_ticker: Arc<AtomicBool>,
}

/// Only one thread compiles a component at a time; the others then load its cache.
static COMPILING: Mutex<()> = Mutex::new(());

impl WasiBackend {
    pub fn new() -> Result<WasiBackend, SandboxError> {
        let mut config = Config::new();
        config.epoch_interruption(true).wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| SandboxError::Setup(format!("wasmtime engine: {e}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| SandboxError::Setup(format!("WASI linker: {e}")))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (e, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("wasi-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    e.increment_epoch();
                }
            })
            .map_err(SandboxError::Io)?;
        Ok(WasiBackend { inner: Arc::new(Inner { engine, linker, prepared: Mutex::new(HashMap::new()), stop_ticker }) })
    }

    /// Compiles (or loads) `component` ahead of the first run.
    pub async fn prepare(&self, component: &Path) -> Result<(), SandboxError> {
        let inner = self.inner.clone();
        let component = component.to_path_buf();
        tokio::task::spawn_blocking(move || inner.prepare(&component).map(|_| ()))
            .await
            .map_err(|e| SandboxError::Setup(format!("compiling the component: {e}")))?
    }
}

impl Inner {
    /// Compiles (or loads the cached compilation of) `component` and pre-instantiates it.
    fn prepare(&self, component: &Path) -> Result<CommandPre<Guest>, SandboxError> {
        let meta = std::fs::metadata(component).map_err(|e| {
            SandboxError::Setup(format!("the WASI component {} is missing ({e}); run `make wasi`", component.display()))
        })?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
        let stamp = h.finish();
        if let Some((s, pre)) = self.prepared.lock().expect("prepared lock").get(component)
            && *s == stamp
        {
            return Ok(pre.clone());
        }
        let cwasm = component.with_extension(format!("{stamp:016x}.cwasm"));
        let setup = |what: &str, e: wasmtime::Error| SandboxError::Setup(format!("{what} {}: {e}", component.display()));
        let loaded = {
            let _one = COMPILING.lock().unwrap_or_else(|p| p.into_inner());
            if !cwasm.is_file() {
                let started = Instant::now();
                let bytes = std::fs::read(component)?;
                let compiled = self.engine.precompile_component(&bytes).map_err(|e| setup("cannot compile", e))?;
                let tmp = cwasm.with_extension("cwasm.tmp");
                std::fs::write(&tmp, compiled)?;
                std::fs::rename(&tmp, &cwasm)?;
                remove_stale_compilations(component, &cwasm);
                tracing::info!(component = %component.display(), secs = started.elapsed().as_secs_f64(), "compiled the WASI component");
            }
            // SAFETY: the file was written by `precompile_component` of an engine with the
            // same compatibility hash (it is in the file name), in our own build directory.
            unsafe { Component::deserialize_file(&self.engine, &cwasm) }.map_err(|e| setup("cannot load the compiled", e))?
        };
        let pre = self.linker.instantiate_pre(&loaded).map_err(|e| setup("cannot link", e))?;
        let pre = CommandPre::new(pre).map_err(|e| setup("is not a wasi:cli/command component:", e))?;
        self.prepared.lock().expect("prepared lock").insert(component.to_path_buf(), (stamp, pre.clone()));
        Ok(pre)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Backend for WasiBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Wasi
    }

    fn run<'a>(&'a self, spec: RunSpec, sink: Arc<dyn OutputSink>, cancel: CancellationToken) -> BoxFuture<'a, Result<RunReport, SandboxError>> {
        Box::pin(self.run_inner(spec, sink, cancel))
    }
}

/// A guest path for a host file: inside the run directory as it is, else copied in.
fn place(workdir: &Path, side: &Path, file: &Path) -> Result<String, SandboxError> {
    if let Ok(rel) = file.strip_prefix(workdir) {
        return Ok(format!("{GUEST_RUN}/{}", rel.display()));
    }
    let name = file.file_name().ok_or_else(|| SandboxError::Setup(format!("{} has no file name", file.display())))?;
    std::fs::copy(file, side.join(name))?;
    Ok(format!("{GUEST_RUN}/{SIDE_DIR}/{}", name.to_string_lossy()))
}

impl WasiBackend {
    async fn run_inner(&self, spec: RunSpec, sink: Arc<dyn OutputSink>, cancel: CancellationToken) -> Result<RunReport, SandboxError> {
        if spec.interpreter.kind != InterpreterKind::Wasi {
            return Err(SandboxError::Setup(format!("interpreter `{}` is not a WASI component", spec.interpreter.id)));
        }
        let component = spec.interpreter.path.clone();
        // Compiling takes seconds the first time: not on the async executor.
        let inner = self.inner.clone();
        let pre = tokio::task::spawn_blocking(move || inner.prepare(&component))
            .await
            .map_err(|e| SandboxError::Setup(format!("compiling the component: {e}")))??;
        let limits = spec.limits.clone();
        let side = spec.workdir.join(SIDE_DIR);
        std::fs::create_dir_all(&side)?;
        let _cleanup = RemoveDir(side.clone());
        let script = place(&spec.workdir, &side, &spec.script)?;
        let mut argv = vec!["python".to_string(), script];
        if let Some(input) = &spec.input {
            argv.push(place(&spec.workdir, &side, input)?);
        }
        argv.extend(spec.args.iter().cloned());

        let budget = Budget::new(limits.output_bytes);
        let tail = Arc::new(StderrTail::new(sink));
        let (out_w, out_r) = tokio::io::duplex(64 * 1024);
        let (err_w, err_r) = tokio::io::duplex(64 * 1024);
        let pumps = (
            tokio::spawn(pump(out_r, Stream::Stdout, tail.clone(), budget.clone())),
            tokio::spawn(pump(err_r, Stream::Stderr, tail.clone(), budget.clone())),
        );

        let mut builder = WasiCtx::builder();
        builder
            .args(&argv)
            .env("HOME", GUEST_RUN)
            .env("LANG", "C.UTF-8")
            .env("PYTHONUNBUFFERED", "1")
            .stdout(AsyncStdoutStream::new(8192, out_w))
            .stderr(AsyncStdoutStream::new(8192, err_w))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        builder
            .preopened_dir(&spec.workdir, GUEST_RUN, FsPerms::ReadWrite)
            .map_err(|e| SandboxError::Setup(format!("cannot open the run directory for the guest: {e}")))?;
        let memory = usize::try_from(limits.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let guest = Guest {
            ctx: builder.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().memory_size(memory).instances(64).tables(256).memories(64).build(),
        };
        let mut store = Store::new(&self.inner.engine, guest);
        store.limiter(|g| &mut g.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);

        let started = Instant::now();
        enum Stop {
            Done(wasmtime::Result<Result<(), ()>>),
            Cancelled,
            WallTime,
            Output,
        }
        let stop = {
            let call = async {
                let command = pre.instantiate_async(&mut store).await?;
                command.wasi_cli_run().call_run(&mut store).await
            };
            tokio::select! {
                r = call => Stop::Done(r),
                _ = cancel.cancelled() => Stop::Cancelled,
                _ = tokio::time::sleep(secs(limits.wall_seconds)) => Stop::WallTime,
                _ = budget.exceeded() => Stop::Output,
            }
        };
        let duration = started.elapsed();
        // Dropping the store closes the guest's pipes, which ends the pumps.
        drop(store);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = pumps.0.await;
            let _ = pumps.1.await;
        })
        .await;
        let exit_code = std::fs::read_to_string(side.join("exit")).ok().and_then(|s| s.trim().parse::<i32>().ok());
        let outcome = match stop {
            Stop::Cancelled => Outcome::Cancelled,
            Stop::WallTime => Outcome::limit(Limit::WallTime, &limits),
            Stop::Output => Outcome::limit(Limit::Output, &limits),
            Stop::Done(_) if budget.is_exceeded() => Outcome::limit(Limit::Output, &limits),
            Stop::Done(result) => match (exit_code, result) {
                (Some(0), _) => Outcome::Exited { code: 0 },
                (Some(code), _) => match limit_from_stderr(&tail.text()) {
                    Some(l) => Outcome::limit(l, &limits),
                    None => Outcome::Exited { code },
                },
                (None, Err(trap)) => {
                    let message = format!("{trap:#}");
                    if message.contains("memory") && message.contains("grow") || tail.text().contains("MemoryError") {
                        Outcome::limit(Limit::Memory, &limits)
                    } else {
                        Outcome::Crashed { message: message.lines().next().unwrap_or("").to_string() }
                    }
                }
                (None, Ok(r)) => Outcome::Exited { code: if r.is_ok() { 0 } else { 1 } },
            },
        };
        let protections = Protections {
            backend: Some(BackendKind::Wasi),
            wasm_isolation: true,
            ..Default::default()
        };
        Ok(RunReport { outcome, protections, duration, output_bytes: budget.used(), warm_start: false })
    }
}

/// Deletes `<component>.<other stamp>.cwasm` files left by earlier builds.
fn remove_stale_compilations(component: &Path, keep: &Path) {
    let (Some(dir), Some(stem)) = (component.parent(), component.file_stem()) else { return };
    let prefix = format!("{}.", stem.to_string_lossy());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".cwasm") && e.path() != keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
