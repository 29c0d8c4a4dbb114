//! The servers' side of the pipes: `Content-Length` framing (byte lengths), a pump per
//! server that hands each message to the session, and stderr kept flowing.

use ractor::ActorRef;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

use super::{LspSessionMessage, MAX_HEADER_LINE, MAX_MESSAGE, Outbound};

/// Writes one framed message.
pub(super) async fn write_frame(stdin: &mut ChildStdin, body: &str) -> std::io::Result<()> {
    let header = format!("Content-Length: {}\r\n\r\n", body.len());
    stdin.write_all(header.as_bytes()).await?;
    stdin.write_all(body.as_bytes()).await?;
    stdin.flush().await
}

/// Reads framed messages from server `index` until EOF and hands them to the session
/// (which answers some requests itself, rewrites ids and merges answers).
pub(super) async fn pump_server(
    stdout: tokio::process::ChildStdout,
    out: mpsc::Sender<Outbound>,
    session: ActorRef<LspSessionMessage>,
    index: usize,
    id: String,
) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut length: Option<usize> = None;
        loop {
            let mut line = String::new();
            match (&mut reader)
                .take(MAX_HEADER_LINE)
                .read_line(&mut line)
                .await
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !line.ends_with('\n') {
                tracing::warn!(session = %id, "language server header line too long; ending the session");
                let _ = out
                    .send(Outbound::Close(
                        1011,
                        "the language server sent a malformed header".into(),
                    ))
                    .await;
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line
                .split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v)
            {
                length = v.trim().parse().ok();
            }
        }
        let Some(n) = length else { continue };
        if n > MAX_MESSAGE {
            tracing::warn!(session = %id, bytes = n, "language server message too large; ending the session");
            let _ = out
                .send(Outbound::Close(
                    1009,
                    "the language server sent a message over 4 MiB".into(),
                ))
                .await;
            return;
        }
        let mut body = vec![0u8; n];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        if session
            .cast(LspSessionMessage::FromServer(index, text))
            .is_err()
        {
            return;
        }
    }
}

/// Keeps the server's stderr flowing (a full pipe would stall it); logs it at debug.
pub(super) async fn drain_stderr(stderr: tokio::process::ChildStderr, id: String) {
    let mut reader = BufReader::new(stderr);
    loop {
        let mut line = String::new();
        match (&mut reader).take(4096).read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                tracing::debug!(session = %id, line = %line.trim_end(), "language server stderr")
            }
        }
    }
}

/// Words for a raw wait status.
#[cfg(unix)]
pub(super) fn describe_status(raw: i32) -> String {
    if libc::WIFSIGNALED(raw) {
        match libc::WTERMSIG(raw) {
            libc::SIGXCPU => "its CPU time limit ([lsp.limits] cpu_seconds) was reached".into(),
            sig => format!("killed by signal {sig}"),
        }
    } else {
        format!("exit status {}", libc::WEXITSTATUS(raw))
    }
}

/// Words for an exit status (no language server runs off Linux: see `linux::spawn`).
#[cfg(not(unix))]
pub(super) fn describe_status(raw: i32) -> String {
    format!("exit status {raw}")
}
