//! Accepting and serving HTTP connections within bounds (`[server]` in the config).
//!
//! - At most `max_connections` connections are open at once, WebSockets included (the
//!   permit travels with the socket into an upgrade). When all are taken, new
//!   connections wait in the listen backlog until one closes.
//! - At most `max_connections_per_client` from one IP address; one more gets an
//!   immediate `503` with a JSON error and is closed.
//! - A request head must arrive within `header_read_timeout_secs`. hyper runs that
//!   timer whenever the connection waits for a request head — before the first
//!   request and between keep-alive requests — so it is also the idle keep-alive
//!   timeout. It does not run while a response is being sent, so SSE streams (which
//!   send a comment every 15 s) and long requests are not cut.
//! - A request body must be read within `body_timeout_secs`.
//! - HTTP/1.1 only (with upgrades for WebSockets): no cleartext HTTP/2, whose
//!   connections the timers above would not cover.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceBuilder;

/// `[server]`: the web boundary's origins, connection limits and timeouts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Origins (`scheme://host[:port]`) besides the server's own whose pages may change
    /// things, e.g. the public address of a reverse proxy that rewrites `Host`.
    pub allowed_origins: Vec<String>,
    /// Open connections at most (WebSockets and SSE streams included).
    pub max_connections: usize,
    /// Open connections from one IP address at most.
    pub max_connections_per_client: usize,
    /// Seconds for a request head to arrive; also the idle keep-alive timeout.
    pub header_read_timeout_secs: f64,
    /// Seconds for a request body to arrive.
    pub body_timeout_secs: f64,
    /// Seconds that open connections get to finish at shutdown.
    pub shutdown_grace_secs: f64,
    /// `GET /api/events` streams one user may have open at once (one per tab).
    pub max_event_streams_per_user: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            allowed_origins: Vec::new(),
            max_connections: 4096,
            max_connections_per_client: 4096,
            header_read_timeout_secs: 10.0,
            body_timeout_secs: 60.0,
            shutdown_grace_secs: 10.0,
            max_event_streams_per_user: crate::notices::DEFAULT_STREAMS_PER_USER,
        }
    }
}

impl ServerConfig {
    /// Checks the values; the message names the key and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0
            || self.max_connections_per_client == 0
            || self.max_event_streams_per_user == 0
        {
            return Err(
                "[server] max_connections, max_connections_per_client and max_event_streams_per_user must be at least 1".into(),
            );
        }
        for (key, v) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("shutdown_grace_secs", self.shutdown_grace_secs),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return Err(format!(
                    "[server] {key} = {v} is not valid; give seconds between 0 and 86400, e.g. 10"
                ));
            }
        }
        Ok(())
    }

    fn secs(v: f64) -> Duration {
        Duration::from_secs_f64(v)
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    /// Counts one more connection from `ip`, unless it has `max` already.
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One counted connection of a client; uncounted when dropped.
struct ClientSlot {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A socket with its connection permit and client slot: both are released when the
/// socket is dropped, also after it was handed to a WebSocket by an upgrade.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    _slot: ClientSlot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// File descriptors kept for everything but connections (database, git, runs, LSP).
const RESERVED_FDS: u64 = 512;

/// Raises the soft open-file limit to the hard one, and returns how many connections
/// fit under it: `max_connections`, or fewer (with a warning) if the limit is lower.
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    let limit = raise_nofile();
    let fit = limit.saturating_sub(RESERVED_FDS).max(1);
    if (max_connections as u64) > fit {
        tracing::warn!(
            max_connections,
            open_file_limit = limit,
            using = fit,
            "[server] max_connections does not fit under the open-file limit; raise `ulimit -n` or lower it"
        );
        fit as usize
    } else {
        max_connections
    }
}

#[cfg(unix)]
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return u64::MAX;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur
}

#[cfg(not(unix))]
fn raise_nofile() -> u64 {
    u64::MAX
}

/// The most a connection buffers while reading a request head (hyper's minimum is 8 KiB);
/// a larger head is answered 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A request body that must arrive whole within a deadline from the end of its head.
/// (tower-http's body timeout restarts with every chunk, so a client dripping a byte at a
/// time could hold a connection for hours.)
struct DeadlineBody<B> {
    inner: B,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

/// The error a late body ends with (a 400 for the handler that reads it).
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive within {0:?}; send it at once, or raise [server] body_timeout_secs"
)]
struct BodyTooSlow(Duration);

impl<B> hyper::body::Body for DeadlineBody<B>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let std::task::Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return std::task::Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(Box::new(BodyTooSlow(this.limit)))));
        }
        std::task::Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a client over its connection limit, written before closing.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 92\r\n\r\n{\"error\":\"this client has too many open connections; close some and try again in a moment\"}\n";

/// Serves `router` on `listener` within `cfg`'s limits until `shutdown` completes, then
/// lets open connections finish for `shutdown_grace_secs`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = fit_open_file_limit(cfg.max_connections);
    let permits = Arc::new(Semaphore::new(max_connections));
    let clients = Arc::new(PerClient::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(ServerConfig::secs(cfg.header_read_timeout_secs))
        .keep_alive(true)
        // A request head is a few KiB; without a bound each connection may buffer ~400 KiB.
        .max_buf_size(MAX_HEAD_BYTES);
    let body_timeout = ServerConfig::secs(cfg.body_timeout_secs);
    tokio::pin!(shutdown);
    loop {
        // A permit first: at the limit, new connections wait in the kernel's backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::error!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = clients.enter(peer.ip(), cfg.max_connections_per_client) else {
            tracing::warn!(%peer, limit = cfg.max_connections_per_client, "client over its connection limit; refused with 503");
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Counted {
            stream,
            _permit: permit,
            _slot: slot,
        });
        let service = ServiceBuilder::new()
            .map_request(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req =
                    req.map(|body| axum::body::Body::new(DeadlineBody::new(body, body_timeout)));
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            })
            .service(router.clone());
        let conn = http
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = cfg.shutdown_grace_secs,
        "no longer accepting connections; letting open ones finish"
    );
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it closes: all back means all closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(
        ServerConfig::secs(cfg.shutdown_grace_secs),
        permits.acquire_many(all),
    )
    .await
    .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
    Ok(())
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(TOO_MANY)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(TOO_MANY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head} / {}",
            body.len()
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("too many"));
    }

    #[test]
    fn per_client_slots_are_counted_and_released() {
        let t = Arc::new(PerClient::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = t.enter(ip, 2).unwrap();
        let _b = t.enter(ip, 2).unwrap();
        assert!(t.enter(ip, 2).is_none());
        drop(a);
        assert!(t.enter(ip, 2).is_some());
        assert!(t.enter("10.0.0.1".parse().unwrap(), 2).is_some());
    }

    #[test]
    fn bad_values_name_the_key() {
        let c = ServerConfig {
            header_read_timeout_secs: 0.0,
            ..ServerConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .contains("header_read_timeout_secs")
        );
        assert!(ServerConfig::default().validate().is_ok());
    }
}
