//! The Scriptorium server: a thin layer of HTTP over the actors.
//!
//! - [`config`]: defaults, `scriptorium.toml`, `SCRIPTORIUM_*` variables.
//! - [`auth`]: users, sessions, and the one policy that says who may call what.
//! - [`api`]: the JSON routes under `/api`; [`error`]: their one error type.
//! - [`frontend`]: the built browser UI; [`headers`]: the security headers on every response.
//! - [`origin`]: which requests may change something (CSRF: content type and origin).
//! - [`throttle`]: login throttling and the bound on concurrent password checks.
//! - [`server`]: starting the actors and serving until shutdown; [`connections`]:
//!   accepting connections within limits and timeouts.
//! - [`exec`]: `scriptorium exec`, one sandboxed run from the terminal.
//! - [`memory`]: allocator settings so memory returns after a burst.

// Used only by the binary (`main.rs`) and, in tests, by the integration tests: named
// here so that `unused_crate_dependencies` checks the library's own dependencies.
use clap as _;
use tracing_subscriber as _;
#[cfg(test)]
use {http_body_util as _, reqwest as _, tempfile as _, tokio_tungstenite as _};

pub mod api;
pub mod auth;
pub mod config;
pub mod connections;
pub mod error;
pub mod exec;
pub mod frontend;
pub mod headers;
pub mod memory;
pub mod notices;
pub mod origin;
pub mod server;
pub mod throttle;
pub mod users;
