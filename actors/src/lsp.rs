//! The language server: [`lsp_session`], one `LspSession` actor per editor WebSocket,
//! and its policy (what the browser may send and see).

// The bridge is being rewritten (issue 15); its visibility is narrowed there.
#[allow(unreachable_pub, dead_code, clippy::wrong_self_convention)]
pub(crate) mod lsp_session;
