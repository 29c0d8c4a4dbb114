//! Configuration: built-in defaults, then `scriptorium.toml` (in the data directory or
//! the working directory), then `SCRIPTORIUM_*` environment variables, then command-line
//! flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::Role;
use crate::connections::ServerConfig;
use scriptorium_actors::LlmConfig;
use scriptorium_actors::LspConfig;
use scriptorium_sandbox::SandboxConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// An argon2 PHC string (`scriptorium hash-password` makes one). Never the password.
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub email: Option<String>,
    /// Set by `scriptorium users disable`: the user cannot sign in; their branch stays.
    #[serde(default)]
    pub disabled: bool,
}

/// The file as written; every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    interpreters: Option<PathBuf>,
    frontend_dir: Option<PathBuf>,
    session_hours: Option<u64>,
    seed_examples: Option<bool>,
    #[serde(default)]
    users: Vec<UserConfig>,
    #[serde(default)]
    sandbox: SandboxConfig,
    #[serde(default)]
    runs: RunsConfig,
    #[serde(default)]
    lsp: LspConfig,
    #[serde(default)]
    llm: LlmConfig,
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    uv: UvSection,
}

/// `[uv]`: how script dependencies (PEP 723) are resolved and installed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UvSection {
    /// The uv executable; default `build/tools/bin/uv` (installed by set-up), else `uv`.
    pub path: Option<PathBuf>,
    /// The package index; default PyPI.
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    /// Use only uv's cache (`--offline`).
    pub offline: bool,
    /// How long one resolution (during a save) may take; default 25, at most 28 (the
    /// save itself is given 30 s).
    pub timeout_secs: Option<u64>,
}

/// `[runs]`: how much runs at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunsConfig {
    /// Sandboxed processes at once, single runs and pass runs together.
    pub workers: usize,
    /// Run-all passes at once.
    pub max_passes: usize,
}

impl Default for RunsConfig {
    fn default() -> Self {
        RunsConfig {
            workers: 4,
            max_passes: 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Path of `interpreters.toml`.
    pub interpreters: PathBuf,
    /// The built frontend (`frontend/dist`); a placeholder page is served without it.
    pub frontend_dir: PathBuf,
    pub session_hours: u64,
    pub seed_examples: bool,
    pub users: Vec<UserConfig>,
    /// `[sandbox]`: how runs are isolated (e.g. the uid scripts run as).
    pub sandbox: SandboxConfig,
    /// `[runs]`: worker and pass limits.
    pub runs: RunsConfig,
    /// `[lsp]`: the language server and its limits.
    pub lsp: LspConfig,
    /// `[llm]`: the provider (OpenRouter, or offline without a key) and guardrails.
    pub llm: LlmConfig,
    /// `[server]`: allowed origins, connection limits and timeouts.
    pub server: ServerConfig,
    /// `[uv]`: dependency resolution (`SCRIPTORIUM_UV_OFFLINE=1` sets `offline`).
    pub uv: UvSection,
    /// The file the configuration was read from, if any.
    pub source: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}=`{value}` is not valid: {message}")]
    Env {
        name: String,
        value: String,
        message: String,
    },
    #[error("user `{username}` in {path}: {message}")]
    User {
        username: String,
        path: String,
        message: String,
    },
}

/// The default users of Phase 1. Their passwords (`1editor`, `2viewer`) exist only as
/// these argon2id hashes.
pub const DEFAULT_USERS: &str = r#"
[[users]]
username = "ed1"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$v97iCT2MBmg1eRX8H2q8lA$gUl2XDOt19/yEwrCcvtylIFgbPhx6m8MHYA3axBQz+A"
roles = ["viewer", "editor"]
email = "ed1@scriptorium.local"

[[users]]
username = "mo1"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$AS3jaNaJ2Li9p5e+q3NlyA$dh98NujR6pgTAfCAg2TJ/vRjnjmjRG/qU2y9mV9u8tY"
roles = ["viewer"]
email = "mo1@scriptorium.local"
"#;

/// What the command line gave (it wins over everything else).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
}

impl Config {
    pub fn load(cli: &Overrides) -> Result<Config, ConfigError> {
        Self::load_with(cli, |k| std::env::var(k).ok())
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_with(
        cli: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env_data = env("SCRIPTORIUM_DATA_DIR").map(PathBuf::from);
        let early_data = cli
            .data_dir
            .clone()
            .or(env_data.clone())
            .unwrap_or_else(|| PathBuf::from("data"));
        let path = match cli
            .config
            .clone()
            .or_else(|| env("SCRIPTORIUM_CONFIG").map(PathBuf::from))
        {
            Some(p) => Some(p),
            None => [
                early_data.join("scriptorium.toml"),
                PathBuf::from("scriptorium.toml"),
            ]
            .into_iter()
            .find(|p| p.is_file()),
        };
        let file = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: p.clone(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let parse_env = |name: &str| -> Result<Option<String>, ConfigError> { Ok(env(name)) };
        let env_err = |name: &str, value: &str, message: String| ConfigError::Env {
            name: name.into(),
            value: value.into(),
            message,
        };
        let listen = match (cli.listen, parse_env("SCRIPTORIUM_LISTEN")?) {
            (Some(l), _) => l,
            (None, Some(v)) => v
                .parse()
                .map_err(|e| env_err("SCRIPTORIUM_LISTEN", &v, format!("{e}; use host:port")))?,
            (None, None) => file
                .listen
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("default address")),
        };
        let data_dir = cli
            .data_dir
            .clone()
            .or(env_data)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let interpreters = env("SCRIPTORIUM_INTERPRETERS")
            .map(PathBuf::from)
            .or(file.interpreters)
            .unwrap_or_else(|| PathBuf::from("interpreters.toml"));
        let frontend_dir = env("SCRIPTORIUM_FRONTEND_DIR")
            .map(PathBuf::from)
            .or(file.frontend_dir)
            .unwrap_or_else(|| PathBuf::from("frontend/dist"));
        let session_hours = match env("SCRIPTORIUM_SESSION_HOURS") {
            Some(v) => v.parse().map_err(|e| {
                env_err(
                    "SCRIPTORIUM_SESSION_HOURS",
                    &v,
                    format!("{e}; give whole hours"),
                )
            })?,
            None => file.session_hours.unwrap_or(12),
        };
        let seed_examples = match env("SCRIPTORIUM_SEED_EXAMPLES") {
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => {
                    return Err(env_err(
                        "SCRIPTORIUM_SEED_EXAMPLES",
                        &v,
                        "use true or false".into(),
                    ));
                }
            },
            None => file.seed_examples.unwrap_or(true),
        };
        let users = if file.users.is_empty() {
            #[derive(Deserialize)]
            struct Users {
                users: Vec<UserConfig>,
            }
            toml::from_str::<Users>(DEFAULT_USERS)
                .expect("default users parse")
                .users
        } else {
            file.users
        };
        let where_ = path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the defaults".into());
        validate_users(&users, &where_)?;
        let mut sandbox = file.sandbox;
        if let Some(v) = env("SCRIPTORIUM_SANDBOX_ALLOW_DEGRADED") {
            sandbox.linux.allow_degraded = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = env("SCRIPTORIUM_SANDBOX_WARM") {
            sandbox.linux.warm = v
                .parse()
                .map_err(|e: String| env_err("SCRIPTORIUM_SANDBOX_WARM", &v, e))?;
        }
        let mut llm = file.llm;
        if let Some(v) = env("SCRIPTORIUM_LLM_BASE_URL") {
            llm.base_url = v;
        }
        if let Some(v) = env("SCRIPTORIUM_LLM_MODEL") {
            llm.model = v;
        }
        if let Some(v) = env("OPENROUTER_API_KEY").filter(|k| !k.trim().is_empty()) {
            llm.api_key = Some(v);
        }
        let mut runs = file.runs;
        if let Some(v) = env("SCRIPTORIUM_WORKERS") {
            runs.workers = v.parse().map_err(|e| {
                env_err(
                    "SCRIPTORIUM_WORKERS",
                    &v,
                    format!("{e}; give a whole number"),
                )
            })?;
        }
        if runs.workers == 0 || runs.max_passes == 0 {
            return Err(ConfigError::Parse {
                path: path.clone().unwrap_or_default(),
                message: "[runs] workers and max_passes must be at least 1".into(),
            });
        }
        let mut uv = file.uv;
        if let Some(v) = env("SCRIPTORIUM_UV_OFFLINE") {
            uv.offline = matches!(v.as_str(), "1" | "true" | "yes");
        }
        let mut server = file.server;
        let not_origin = |o: &str| {
            format!(
                "`{o}` is not an origin; write scheme://host[:port], e.g. https://scriptorium.example.org"
            )
        };
        for o in &server.allowed_origins {
            crate::origin::parse_origin(o).ok_or_else(|| ConfigError::Parse {
                path: path.clone().unwrap_or_default(),
                message: format!("[server] allowed_origins: {}", not_origin(o)),
            })?;
        }
        if let Some(v) = env("SCRIPTORIUM_ALLOWED_ORIGINS") {
            server.allowed_origins = v
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(String::from)
                .collect();
            if let Some(bad) = server
                .allowed_origins
                .iter()
                .find(|o| crate::origin::parse_origin(o).is_none())
            {
                return Err(env_err(
                    "SCRIPTORIUM_ALLOWED_ORIGINS",
                    &v,
                    format!("{} (the same as [server] allowed_origins)", not_origin(bad)),
                ));
            }
        }
        let secs = |name: &str, v: &str| -> Result<f64, ConfigError> {
            v.parse()
                .map_err(|e| env_err(name, v, format!("{e}; give seconds, e.g. 10")))
        };
        let count = |name: &str, v: &str| -> Result<usize, ConfigError> {
            v.parse()
                .map_err(|e| env_err(name, v, format!("{e}; give a whole number")))
        };
        if let Some(v) = env("SCRIPTORIUM_MAX_CONNECTIONS") {
            server.max_connections = count("SCRIPTORIUM_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = env("SCRIPTORIUM_MAX_CONNECTIONS_PER_CLIENT") {
            server.max_connections_per_client =
                count("SCRIPTORIUM_MAX_CONNECTIONS_PER_CLIENT", &v)?;
        }
        if let Some(v) = env("SCRIPTORIUM_HEADER_READ_TIMEOUT_SECS") {
            server.header_read_timeout_secs = secs("SCRIPTORIUM_HEADER_READ_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = env("SCRIPTORIUM_BODY_TIMEOUT_SECS") {
            server.body_timeout_secs = secs("SCRIPTORIUM_BODY_TIMEOUT_SECS", &v)?;
        }
        server.validate().map_err(|message| ConfigError::Parse {
            path: path.clone().unwrap_or_default(),
            message,
        })?;
        Ok(Config {
            listen,
            data_dir,
            interpreters,
            frontend_dir,
            session_hours,
            seed_examples,
            users,
            sandbox,
            runs,
            lsp: file.lsp,
            llm,
            server,
            uv,
            source: path,
        })
    }

    pub fn editors(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|u| u.roles.contains(&Role::Editor))
            .map(|u| u.username.clone())
            .collect()
    }

    /// Makes relative paths absolute against the working directory.
    pub fn absolutize(mut self) -> Config {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                cwd.join(p)
            }
        };
        self.data_dir = abs(&self.data_dir);
        self.interpreters = abs(&self.interpreters);
        self.frontend_dir = abs(&self.frontend_dir);
        self
    }
}

/// The users a configuration file's text gives (the defaults when it has none),
/// validated as the server would at start-up. `scriptorium users` checks an edit with it
/// before writing.
pub fn users_of_file(text: &str, path: &Path) -> Result<(Vec<UserConfig>, bool), ConfigError> {
    let file = toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let own = !file.users.is_empty();
    let users = if own {
        file.users
    } else {
        #[derive(Deserialize)]
        struct Users {
            users: Vec<UserConfig>,
        }
        toml::from_str::<Users>(DEFAULT_USERS)
            .expect("default users parse")
            .users
    };
    validate_users(&users, &path.display().to_string())?;
    Ok((users, own))
}

fn validate_users(users: &[UserConfig], path: &str) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for u in users {
        let fail = |message: &str| ConfigError::User {
            username: u.username.clone(),
            path: path.into(),
            message: message.into(),
        };
        // The user name is also a git branch name.
        let ok = !u.username.is_empty()
            && u.username.len() <= 32
            && u.username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && u.username != "prod";
        if !ok {
            return Err(fail(
                "a user name is 1–32 letters, digits, `_` or `-`, and not `prod`",
            ));
        }
        if !seen.insert(&u.username) {
            return Err(fail("this user appears twice"));
        }
        if argon2::PasswordHash::new(&u.password_hash).is_err() {
            return Err(fail(
                "`password_hash` is not an argon2 hash; make one with `scriptorium hash-password`",
            ));
        }
        if u.roles.is_empty() {
            return Err(fail("give at least one role: viewer, editor"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
