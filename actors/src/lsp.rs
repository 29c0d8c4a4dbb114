//! The language server: [`lsp_session`], one `LspSession` actor per editor WebSocket,
//! and its policy (what the browser may send and see).

pub mod lsp_session;
