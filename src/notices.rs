//! Notices: what the team does, for `GET /api/events` (issue 16). Saves, publishes,
//! forks, runs, passes and presence (who has a script open) are kept in a bounded ring
//! with increasing ids, so a client that reconnects with `Last-Event-ID` gets what it
//! missed; a client that fell further behind than the ring is told to reload.
//!
//! Presence belongs to a user's event connections: it is set with `POST
//! /api/presence` and dropped when the user's last `/api/events` connection closes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

/// Notices kept for replay.
pub const RING: usize = 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub id: u64,
    /// `saved`, `published`, `forked`, `created`, `presence`, `run_started`,
    /// `run_finished`, `pass_started`, `pass_ended`.
    pub kind: String,
    /// Who did it.
    pub user: String,
    /// 0.01 s precision, as everywhere.
    pub at: String,
    /// The rest, by kind: `script_id`, `version`, `merged`, `open`, `run_id`, `status` ….
    #[serde(flatten)]
    pub data: Value,
}

#[derive(Default)]
struct Inner {
    ring: VecDeque<Notice>,
    last_id: u64,
    /// user → (open event connections, the script they have open).
    presence: HashMap<String, (usize, Option<i64>)>,
}

pub struct Notices {
    inner: Mutex<Inner>,
    /// The last id pushed; event streams wait on it.
    latest: watch::Sender<u64>,
}

impl Default for Notices {
    fn default() -> Self {
        Notices {
            inner: Mutex::new(Inner::default()),
            latest: watch::channel(0).0,
        }
    }
}

/// One user's place in presence while an event stream is open; dropping it (the
/// connection closed) removes the user's presence when it was their last.
pub struct Connection {
    notices: Arc<Notices>,
    user: String,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let left = {
            let mut inner = self.notices.lock();
            match inner.presence.get_mut(&self.user) {
                Some((n, script)) => {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        let was = script.take();
                        inner.presence.remove(&self.user);
                        was
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        if let Some(script) = left {
            self.notices.push(
                "presence",
                &self.user,
                serde_json::json!({ "script_id": script, "open": false }),
            );
        }
    }
}

/// What a stream asking from `after` gets.
pub enum Since {
    Notices(Vec<Notice>),
    /// `after` is older than the ring: some notices are lost to this client.
    Gap {
        oldest: u64,
    },
}

impl Notices {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, kind: &str, user: &str, data: Value) -> u64 {
        let id = {
            let mut inner = self.lock();
            inner.last_id += 1;
            let id = inner.last_id;
            inner.ring.push_back(Notice {
                id,
                kind: kind.to_string(),
                user: user.to_string(),
                at: scriptorium_actors::clock::format(scriptorium_actors::clock::now()),
                data,
            });
            while inner.ring.len() > RING {
                inner.ring.pop_front();
            }
            id
        };
        self.latest.send_replace(id);
        id
    }

    pub fn last_id(&self) -> u64 {
        self.lock().last_id
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The notices after `after`, or a gap when the ring no longer holds them all.
    pub fn since(&self, after: u64) -> Since {
        let inner = self.lock();
        let oldest = inner
            .ring
            .front()
            .map(|n| n.id)
            .unwrap_or(inner.last_id + 1);
        // Past the last id: an id of an earlier server process (ids restart with it).
        if (after.saturating_add(1) < oldest && after < inner.last_id) || after > inner.last_id {
            return Since::Gap { oldest };
        }
        Since::Notices(
            inner
                .ring
                .iter()
                .filter(|n| n.id > after)
                .cloned()
                .collect(),
        )
    }

    /// A new event connection of `user`.
    pub fn connect(self: &Arc<Self>, user: &str) -> Connection {
        self.lock().presence.entry(user.to_string()).or_default().0 += 1;
        Connection {
            notices: self.clone(),
            user: user.to_string(),
        }
    }

    /// Who has which script open now.
    pub fn presence(&self) -> Vec<Value> {
        let inner = self.lock();
        let mut out: Vec<(String, i64)> = inner
            .presence
            .iter()
            .filter_map(|(u, (_, s))| s.map(|s| (u.clone(), s)))
            .collect();
        out.sort();
        out.into_iter()
            .map(|(user, script)| serde_json::json!({ "user": user, "script_id": script }))
            .collect()
    }

    /// `user` has `script` open now (or none). False when the user has no event
    /// connection: presence lives only as long as one.
    pub fn set_presence(&self, user: &str, script: Option<i64>) -> bool {
        let (was, connected) = {
            let mut inner = self.lock();
            match inner.presence.get_mut(user) {
                Some((n, s)) if *n > 0 => (std::mem::replace(s, script), true),
                _ => (None, false),
            }
        };
        if !connected {
            return false;
        }
        if was != script {
            if let Some(old) = was {
                self.push(
                    "presence",
                    user,
                    serde_json::json!({ "script_id": old, "open": false }),
                );
            }
            if let Some(new) = script {
                self.push(
                    "presence",
                    user,
                    serde_json::json!({ "script_id": new, "open": true }),
                );
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_replays_what_was_missed_and_reports_a_gap_past_it() {
        let n = Notices::default();
        for i in 0..RING + 10 {
            n.push("saved", "ed2", serde_json::json!({ "script_id": i }));
        }
        let Since::Notices(got) = n.since((RING + 5) as u64) else {
            panic!("inside the ring")
        };
        assert_eq!(
            got.iter().map(|x| x.id).collect::<Vec<_>>(),
            (RING as u64 + 6..=RING as u64 + 10).collect::<Vec<_>>()
        );
        assert!(matches!(n.since(3), Since::Gap { oldest: 11 }));
        assert!(
            matches!(n.since(RING as u64 + 500), Since::Gap { .. }),
            "an id from before a restart is a gap, not silence"
        );
        let Since::Notices(none) = n.since(n.last_id()) else {
            panic!()
        };
        assert!(none.is_empty());
    }

    #[test]
    fn presence_ends_with_the_last_connection() {
        let n = Arc::new(Notices::default());
        assert!(
            !n.set_presence("ed1", Some(3)),
            "no presence without a connection"
        );
        let a = n.connect("ed1");
        let b = n.connect("ed1");
        assert!(n.set_presence("ed1", Some(3)));
        assert_eq!(n.presence().len(), 1);
        drop(a);
        assert_eq!(n.presence().len(), 1, "one connection is still open");
        drop(b);
        assert!(n.presence().is_empty());
        let Since::Notices(all) = n.since(0) else {
            panic!()
        };
        let kinds: Vec<_> = all.iter().map(|x| x.data["open"].clone()).collect();
        assert_eq!(kinds, [Value::Bool(true), Value::Bool(false)]);
    }
}
