//! Pumping a child's stdout and stderr into an [`OutputSink`] line by line, under one
//! shared byte cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::run::{Limit, OutputSink, Stream};

/// Longest line passed on whole; longer lines are split.
pub const MAX_LINE: usize = 64 * 1024;

/// Counts bytes across both streams and says when the cap is passed.
#[derive(Clone)]
pub struct Budget {
    used: Arc<AtomicU64>,
    cap: u64,
    exceeded: Arc<tokio::sync::Notify>,
}

impl Budget {
    pub fn new(cap: u64) -> Budget {
        Budget {
            used: Arc::new(AtomicU64::new(0)),
            cap,
            exceeded: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Takes up to `n` bytes; returns how many fit.
    fn take(&self, n: usize) -> usize {
        let before = self.used.fetch_add(n as u64, Ordering::SeqCst);
        if before + n as u64 > self.cap {
            self.exceeded.notify_one();
            self.cap.saturating_sub(before) as usize
        } else {
            n
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst).min(self.cap)
    }

    pub fn is_exceeded(&self) -> bool {
        self.used.load(Ordering::SeqCst) > self.cap
    }

    /// Resolves once the cap has been passed.
    pub async fn exceeded(&self) {
        if self.is_exceeded() {
            return;
        }
        self.exceeded.notified().await;
    }
}

/// Reads `reader` to its end, passing complete lines to `sink` as they arrive.
pub async fn pump(
    mut reader: impl AsyncRead + Unpin,
    stream: Stream,
    sink: Arc<dyn OutputSink>,
    budget: Budget,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let allowed = budget.take(n);
        pending.extend_from_slice(&buf[..allowed]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            emit(&sink, stream, &line[..line.len() - 1]);
        }
        while pending.len() >= MAX_LINE {
            let chunk: Vec<u8> = pending.drain(..MAX_LINE).collect();
            emit(&sink, stream, &chunk);
        }
        if allowed < n {
            // Over the cap: keep draining so the child never blocks on a full pipe,
            // but pass nothing more on.
            while let Ok(k) = reader.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                budget.take(k);
            }
            break;
        }
    }
    if !pending.is_empty() {
        emit(&sink, stream, &pending);
    }
}

fn emit(sink: &Arc<dyn OutputSink>, stream: Stream, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    sink.line(stream, text.strip_suffix('\r').unwrap_or(&text));
}

/// Passes lines on and keeps the last few KiB of stderr, to explain a failure.
pub struct StderrTail {
    inner: Arc<dyn OutputSink>,
    stderr: std::sync::Mutex<String>,
}

impl StderrTail {
    pub fn new(inner: Arc<dyn OutputSink>) -> StderrTail {
        StderrTail {
            inner,
            stderr: std::sync::Mutex::new(String::new()),
        }
    }

    pub fn text(&self) -> String {
        self.stderr.lock().expect("tail lock").clone()
    }
}

impl OutputSink for StderrTail {
    fn line(&self, stream: Stream, line: &str) {
        if stream == Stream::Stderr {
            let mut t = self.stderr.lock().expect("tail lock");
            t.push_str(line);
            t.push('\n');
            if t.len() > 8192 {
                let cut = t.len() - 4096;
                let cut = (cut..t.len())
                    .find(|i| t.is_char_boundary(*i))
                    .unwrap_or(t.len());
                t.drain(..cut);
            }
        }
        self.inner.line(stream, line);
    }
}

/// The limit a Python traceback's last line points at, if any.
pub fn limit_from_stderr(stderr: &str) -> Option<Limit> {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    if last.contains("MemoryError") || last.contains("Cannot allocate memory") {
        Some(Limit::Memory)
    } else if last.contains("BlockingIOError") || last.contains("Resource temporarily unavailable")
    {
        Some(Limit::Processes)
    } else if last.contains("File too large") {
        Some(Limit::FileSize)
    } else if last.contains("No space left on device") || last.contains("Disk quota exceeded") {
        // A size- or inode-bounded tmpfs /tmp that is full.
        Some(Limit::Disk)
    } else {
        None
    }
}
