//! The environment cache: `DATA/envs/<interpreter-key>-<lock-hash>/site-packages`,
//! built by uv from a lock, once, shared by every script with that lock.
//!
//! A build installs the lock's exact wheels (`--require-hashes --no-deps`, wheels only)
//! into a temporary directory beside the cache entry and renames it into place, so an
//! entry either is complete or does not exist. Builds of one key are serialised; a
//! second run with the same lock finds the entry and builds nothing.
//!
//! A sandboxed run gets the entry's `site-packages` as an extra read-only path (the
//! linux backend bind-mounts read paths read-only) and a bootstrap that appends it to
//! `sys.path` before running the script; the interpreter still runs with `-I`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use scriptorium_sandbox::Interpreter;

use crate::deps::lock::{self, Lock, RunError, UvConfig};
use crate::deps::pep723;
use crate::deps::resolutions::check_requires_python;

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(
        "the environment for lock {lock} could not be built for interpreter `{interpreter}`: {reason}"
    )]
    Build {
        lock: String,
        interpreter: String,
        reason: String,
    },
    #[error("the dependency lock {lock} was refused: {reason}")]
    Refused { lock: String, reason: String },
    #[error("{reason}")]
    Python { reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A built environment.
#[derive(Debug, Clone)]
pub struct Env {
    pub dir: PathBuf,
    pub site_packages: PathBuf,
    /// True when this call built it; false when it was in the cache.
    pub built: bool,
}

pub struct Envs {
    root: PathBuf,
    uv: UvConfig,
    /// The native interpreter that installs environments for WASI runs (the one locks
    /// are made for); `None`: dependencies cannot run under wasi.
    native: Option<Interpreter>,
    building: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    builds: AtomicU64,
}

/// The part of an environment's key that names the interpreter: its id and a digest of
/// its executable and exact version (a rebuilt interpreter gets new environments).
pub(crate) fn interpreter_key(i: &Interpreter) -> String {
    let id: String =
        i.id.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
    let d = Sha256::digest(format!("{}\0{}", i.path.display(), i.version).as_bytes());
    format!("{id}-{}", &hex::encode(d)[..12])
}

impl Envs {
    pub fn new(data_dir: &Path, uv: UvConfig) -> Envs {
        Envs {
            root: data_dir.join("envs"),
            uv,
            native: None,
            building: Mutex::new(HashMap::new()),
            builds: AtomicU64::new(0),
        }
    }

    /// With `native` as the interpreter that installs environments for WASI runs.
    pub fn with_native(mut self, native: Option<Interpreter>) -> Envs {
        self.native = native;
        self
    }

    /// The interpreter a run of `backend` with `interp` uses once `lock`'s environment
    /// is in place (built now if missing), and that environment. Blocking. Under linux
    /// the environment is bind-mounted read-only; under wasi it must hold only
    /// pure-Python wheels and is preopened read-only; other backends are refused.
    pub(crate) fn for_run(
        &self,
        interp: &Interpreter,
        backend: scriptorium_sandbox::BackendKind,
        lock: &Lock,
        script: &str,
        side: &Path,
    ) -> Result<(Interpreter, Env), EnvError> {
        use scriptorium_sandbox::BackendKind;
        match backend {
            BackendKind::Linux => {
                let env = self.ensure(interp, lock, script)?;
                Ok((with_env(interp, &env, side)?, env))
            }
            BackendKind::Wasi => {
                let Some(native) = &self.native else {
                    return Err(EnvError::Python {
                        reason: "this server has no native interpreter to install dependencies for WASI runs with; run the script with backend linux".into(),
                    });
                };
                if let Some(spec) = pep723::parse(script)
                    .ok()
                    .flatten()
                    .and_then(|m| m.requires_python)
                {
                    check_requires_python(
                        &spec,
                        &interp.version,
                        &format!("interpreter `{}`", interp.id),
                    )
                    .map_err(|reason| EnvError::Python { reason })?;
                }
                let env = self.ensure(native, lock, script)?;
                crate::deps::wasi::pure_python(&env.site_packages)
                    .map_err(|reason| EnvError::Python { reason })?;
                Ok((
                    crate::deps::wasi::with_env(interp, &env.site_packages, side)?,
                    env,
                ))
            }
            other => Err(EnvError::Python {
                reason: format!(
                    "this script declares dependencies (PEP 723), which run under the `linux` and `wasi` backends, not `{}`; run it with backend linux",
                    other.as_str()
                ),
            }),
        }
    }

    pub fn uv(&self) -> &UvConfig {
        &self.uv
    }

    /// How many environments this process has built.
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    pub fn dir_for(&self, interp: &Interpreter, lock: &Lock) -> PathBuf {
        self.root
            .join(format!("{}-{}", interpreter_key(interp), lock.hash))
    }

    /// The environment for `lock` under `interp`, built if missing, for a script whose
    /// content is `script`. Blocking. Nothing is installed (or reused) unless the lock
    /// passes [`lock::check`] against the script's block and the block's
    /// `requires-python` admits the interpreter: a lock that reached git without this
    /// server resolving it is refused with the way out (save the script again).
    pub fn ensure(&self, interp: &Interpreter, lock: &Lock, script: &str) -> Result<Env, EnvError> {
        let refuse = |reason: String| EnvError::Refused {
            lock: lock.hash[..12].to_string(),
            reason,
        };
        let meta = pep723::parse(script)
            .map_err(|e| refuse(e.to_string()))?
            .unwrap_or_default();
        if let Some(spec) = &meta.requires_python {
            check_requires_python(
                spec,
                &interp.version,
                &format!("interpreter `{}`", interp.id),
            )
            .map_err(|reason| EnvError::Python { reason })?;
        }
        lock::check(lock, &meta).map_err(|e| {
            refuse(format!(
                "{e}; it is not a lock this server made for the script's `# /// script` block (was it edited outside Scriptorium?), so nothing was installed from it. Save the script with its block again to resolve a new lock"
            ))
        })?;
        let dir = self.dir_for(interp, lock);
        let site = dir.join("site-packages");
        let key = dir.to_string_lossy().into_owned();
        let gate = self
            .building
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let _held = gate.lock().unwrap_or_else(|p| p.into_inner());
        if site.is_dir() {
            return Ok(Env {
                dir,
                site_packages: site,
                built: false,
            });
        }
        std::fs::create_dir_all(&self.root)?;
        std::fs::create_dir_all(&self.uv.cache_dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".build-")
            .tempdir_in(&self.root)?;
        std::fs::write(tmp.path().join("requirements.lock"), &lock.text)?;
        let fail = |reason: String| EnvError::Build {
            lock: lock.hash[..12].to_string(),
            interpreter: interp.id.clone(),
            reason,
        };
        let mut cmd = self.uv.command(&["pip", "install"]);
        cmd.args([
            "--require-hashes",
            "--no-deps",
            "--compile-bytecode",
            "--python",
        ])
        .arg(&interp.path)
        .arg("--target")
        .arg(tmp.path().join("site-packages"))
        .arg("-r")
        .arg(tmp.path().join("requirements.lock"));
        match lock::run(cmd, b"", self.uv.build_timeout) {
            Ok(o) if o.success => {}
            Ok(o) => return Err(fail(lock::uv_reason(&o.stderr))),
            Err(RunError::Start(m)) => return Err(fail(format!("uv could not be started: {m}"))),
            Err(RunError::Timeout) => {
                return Err(fail(format!(
                    "uv took longer than {:?}",
                    self.uv.build_timeout
                )));
            }
        }
        std::fs::create_dir_all(tmp.path().join("site-packages"))?;
        // The temporary directory is private (0700); the sandbox's uid must read it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
        }
        let tmp = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !site.is_dir() {
                return Err(e.into());
            }
        } else {
            self.builds.fetch_add(1, Ordering::Relaxed);
            tracing::info!(env = %dir.display(), "built a dependency environment");
        }
        Ok(Env {
            dir,
            site_packages: site,
            built: true,
        })
    }
}

/// The interpreter a run with `env` uses: the same, with the environment readable and
/// a bootstrap (written to `side_dir`) as its wrapper, which appends the environment to
/// `sys.path` and then runs the interpreter's own wrapper, or the script.
pub(crate) fn with_env(
    interp: &Interpreter,
    env: &Env,
    side_dir: &Path,
) -> std::io::Result<Interpreter> {
    let boot = side_dir.join("deps_bootstrap.py");
    let lit = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("a string");
    let wrapper = match &interp.wrapper {
        Some(w) => lit(w),
        None => "None".into(),
    };
    std::fs::write(
        &boot,
        format!(
            "import runpy, sys\n\
             sys.path.append({site})\n\
             _wrapper = {wrapper}\n\
             del sys.argv[0]\n\
             if _wrapper is None:\n\
             \x20   runpy.run_path(sys.argv[0], run_name=\"__main__\")\n\
             else:\n\
             \x20   sys.argv.insert(0, _wrapper)\n\
             \x20   runpy.run_path(_wrapper, run_name=\"__main__\")\n",
            site = lit(&env.site_packages),
        ),
    )?;
    let mut i = interp.clone();
    i.read_paths.push(env.site_packages.clone());
    if let Some(w) = &interp.wrapper {
        i.read_paths.push(w.clone());
    }
    i.wrapper = Some(boot);
    // A warm spare imported modules without the environment: not usable for this run.
    i.warm.clear();
    Ok(i)
}

/// Records on a run the hash of the lock its environment comes from.
pub(crate) fn record_run_lock(
    c: &rusqlite::Connection,
    run_id: i64,
    hash: &str,
) -> crate::error::Result<()> {
    c.execute(
        "UPDATE runs SET lock_hash = ?2 WHERE id = ?1",
        rusqlite::params![run_id, hash],
    )?;
    Ok(())
}
