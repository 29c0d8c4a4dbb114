//! Whole-server tests: the real app (git, SQLite, Python) driven over HTTP.

// The binary and the test and bench targets use the library; the package's other
// dependencies are the library's (rustc checks each target against all of them).
#![allow(unused_crate_dependencies)]
// Helpers shared between the test modules of this one binary.
#![allow(unreachable_pub)]

mod util;

mod access;
mod build123d;
mod client_routes;
mod connections;
mod deps;
mod deps_locks;
mod durability;
mod exec;
mod history;
mod llm;
mod llm_offline;
mod lsp;
mod lsp_sandbox;
mod passes;
mod queue;
mod reliability;
mod run_limits;
mod runs;
mod scripts;
mod sign_in;
mod soak;
mod team;
mod team_data;
mod team_presence;
mod tokens;
mod web_boundary;
