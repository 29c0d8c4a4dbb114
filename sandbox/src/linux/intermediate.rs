//! The sandbox's outermost process as the server holds it: forked by the zygote or by
//! the server itself.

use super::zygote;

/// The sandbox's outermost process (the *intermediate* of [`super::child`]). Dropping it
/// kills it, and with it the whole sandbox.
pub(super) enum Intermediate {
    /// Forked by the server.
    Direct(tokio::process::Child),
    /// Forked by the zygote.
    Zygote(zygote::Forked),
}

impl Intermediate {
    pub(super) fn id(&self) -> Option<u32> {
        match self {
            Intermediate::Direct(c) => c.id(),
            Intermediate::Zygote(f) => Some(f.pid()),
        }
    }

    pub(super) fn start_kill(&mut self) {
        match self {
            Intermediate::Direct(c) => {
                let _ = c.start_kill();
            }
            Intermediate::Zygote(f) => f.kill(),
        }
    }

    /// Waits until it ends: (exit code, signal).
    pub(super) async fn wait(&mut self) -> std::io::Result<(Option<i32>, Option<i32>)> {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Intermediate::Direct(c) => c.wait().await.map(|s| (s.code(), s.signal())),
            Intermediate::Zygote(f) => f.wait().await,
        }
    }

    /// Kills it and waits until it has ended.
    pub(super) async fn kill(&mut self) {
        self.start_kill();
        let _ = self.wait().await;
    }

    /// Whether the zygote that forked it died before reporting how it ended (which
    /// ended it too: it dies with its parent).
    pub(super) fn launcher_lost(&self) -> bool {
        match self {
            Intermediate::Direct(_) => false,
            Intermediate::Zygote(f) => f.zygote_lost(),
        }
    }

    /// Whether it has ended already.
    pub(super) fn has_ended(&mut self) -> bool {
        match self {
            Intermediate::Direct(c) => !matches!(c.try_wait(), Ok(None)),
            Intermediate::Zygote(f) => f.has_ended(),
        }
    }
}
