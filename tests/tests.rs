//! Whole-server tests: the real app (git, SQLite, Python) driven over HTTP.

mod util;

mod access;
mod build123d;
mod client_routes;
mod durability;
mod exec;
mod history;
mod llm;
mod lsp;
mod reliability;
mod run_limits;
mod runs;
mod scripts;
mod soak;
mod tokens;
mod web_boundary;
