//! Notices: what the team does, for `GET /api/events` (issue 16). Saves, publishes,
//! forks, runs, passes and presence (who has a script open) are kept in a bounded ring
//! with increasing ids, so a client that reconnects with `Last-Event-ID` gets what it
//! missed; a client that fell further behind than the ring is told to reload.
//!
//! Presence belongs to one event connection, a browser tab: each `/api/events` stream
//! is a numbered tab, `POST /api/presence {tab, script_id, state}` says which script
//! that tab has open and whether it has unsaved edits (`editing`) or not (`viewing`),
//! and closing the stream removes only that tab's presence. A user has at most
//! [`Notices::max_streams_per_user`] streams open at once.
//!
//! Presence is the editors' coordination: its notices (and the `hello` snapshot) go to
//! editors only; every other notice names only what a viewer may read anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

/// Notices kept for replay.
pub const RING: usize = 1024;
/// Event streams one user may have open at once, unless configured otherwise.
pub const DEFAULT_STREAMS_PER_USER: usize = 16;

/// Who may receive a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    Editors,
}

#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub id: u64,
    /// `saved`, `published`, `forked`, `created`, `test_data_saved`, `presence`,
    /// `run_started`, `run_finished`, `pass_started`, `pass_ended`.
    pub kind: String,
    /// Who did it.
    pub user: String,
    /// 0.01 s precision, as everywhere.
    pub at: String,
    /// The rest, by kind: `script_id`, `version`, `merged`, `open`, `run_id`, `status` ….
    #[serde(flatten)]
    pub data: Value,
    #[serde(skip)]
    pub audience: Audience,
}

impl Notice {
    /// Whether a user (an editor or not) may receive this notice.
    pub fn for_user(&self, editor: bool) -> bool {
        editor || self.audience == Audience::Everyone
    }
}

/// Whether a tab has unsaved edits of the script it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum PresenceState {
    #[default]
    Viewing,
    Editing,
}

/// One open event stream (a tab) and the script it shows.
struct Tab {
    user: String,
    script: Option<(i64, PresenceState)>,
}

#[derive(Default)]
struct Inner {
    ring: VecDeque<Notice>,
    last_id: u64,
    /// Open event streams by tab number.
    tabs: HashMap<u64, Tab>,
    next_tab: u64,
}

pub struct Notices {
    inner: Mutex<Inner>,
    /// The last id pushed; event streams wait on it.
    latest: watch::Sender<u64>,
    max_streams_per_user: usize,
}

impl Default for Notices {
    fn default() -> Self {
        Notices::new(DEFAULT_STREAMS_PER_USER)
    }
}

/// One tab's event stream; dropping it (the connection closed) removes that tab's
/// presence, and only that.
pub struct Connection {
    notices: Arc<Notices>,
    tab: u64,
}

impl Connection {
    /// The tab number, for `POST /api/presence`.
    pub fn tab(&self) -> u64 {
        self.tab
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let gone = self.notices.lock().tabs.remove(&self.tab);
        if let Some(Tab {
            user,
            script: Some((script, _)),
        }) = gone
        {
            self.notices.push_presence(&user, self.tab, script, None);
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

/// Why a stream or a presence report was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PresenceError {
    #[error(
        "you have {open} event streams open, the most allowed per user; close a tab (or an idle `/api/events` client) and try again"
    )]
    TooManyStreams { open: usize },
    #[error(
        "tab {0} is not one of your open event streams; open GET /api/events first and send the `tab` its `hello` gave"
    )]
    NoSuchTab(u64),
}

impl Notices {
    pub fn new(max_streams_per_user: usize) -> Notices {
        Notices {
            inner: Mutex::new(Inner::default()),
            latest: watch::channel(0).0,
            max_streams_per_user: max_streams_per_user.max(1),
        }
    }

    pub fn max_streams_per_user(&self) -> usize {
        self.max_streams_per_user
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A notice for everyone.
    pub fn push(&self, kind: &str, user: &str, data: Value) -> u64 {
        self.push_to(Audience::Everyone, kind, user, data)
    }

    pub fn push_to(&self, audience: Audience, kind: &str, user: &str, data: Value) -> u64 {
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
                audience,
            });
            while inner.ring.len() > RING {
                inner.ring.pop_front();
            }
            id
        };
        self.latest.send_replace(id);
        id
    }

    /// `open`: the state the tab now shows `script` in; `None`: it closed it.
    fn push_presence(&self, user: &str, tab: u64, script: i64, open: Option<PresenceState>) {
        let data = match open {
            Some(state) => json!({ "script_id": script, "tab": tab, "open": true, "state": state }),
            None => json!({ "script_id": script, "tab": tab, "open": false }),
        };
        self.push_to(Audience::Editors, "presence", user, data);
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

    /// A new event stream (a tab) of `user`, unless they have the most allowed open.
    pub fn connect(self: &Arc<Self>, user: &str) -> Result<Connection, PresenceError> {
        let mut inner = self.lock();
        let open = inner.tabs.values().filter(|t| t.user == user).count();
        if open >= self.max_streams_per_user {
            return Err(PresenceError::TooManyStreams { open });
        }
        inner.next_tab += 1;
        let tab = inner.next_tab;
        inner.tabs.insert(
            tab,
            Tab {
                user: user.to_string(),
                script: None,
            },
        );
        Ok(Connection {
            notices: self.clone(),
            tab,
        })
    }

    /// Which tab has which script open now, and in what state, tab by tab.
    pub fn presence(&self) -> Vec<Value> {
        let inner = self.lock();
        let mut out: Vec<(&String, u64, i64, PresenceState)> = inner
            .tabs
            .iter()
            .filter_map(|(tab, t)| t.script.map(|(s, st)| (&t.user, *tab, s, st)))
            .collect();
        out.sort_by_key(|(u, tab, ..)| ((*u).clone(), *tab));
        out.into_iter()
            .map(|(user, tab, script, state)| {
                json!({ "user": user, "tab": tab, "script_id": script, "state": state })
            })
            .collect()
    }

    /// `user`'s tab `tab` shows `script` now in `state` (or no script). Refused when the
    /// tab is not an open stream of `user`.
    pub fn set_presence(
        &self,
        user: &str,
        tab: u64,
        script: Option<i64>,
        state: PresenceState,
    ) -> Result<(), PresenceError> {
        let was = {
            let mut inner = self.lock();
            match inner.tabs.get_mut(&tab) {
                Some(t) if t.user == user => {
                    std::mem::replace(&mut t.script, script.map(|s| (s, state)))
                }
                _ => return Err(PresenceError::NoSuchTab(tab)),
            }
        };
        let now = script.map(|s| (s, state));
        if was == now {
            return Ok(());
        }
        if let Some((old, _)) = was.filter(|(old, _)| Some(*old) != script) {
            self.push_presence(user, tab, old, None);
        }
        if let Some((new, state)) = now {
            self.push_presence(user, tab, new, Some(state));
        }
        Ok(())
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
    fn each_tab_has_its_own_presence_and_closing_one_removes_only_its_own() {
        let n = Arc::new(Notices::default());
        let a = n.connect("ed1").unwrap();
        let b = n.connect("ed1").unwrap();
        assert_eq!(
            n.set_presence("ed1", 999, Some(3), PresenceState::Viewing),
            Err(PresenceError::NoSuchTab(999))
        );
        assert_eq!(
            n.set_presence("ed2", a.tab(), Some(3), PresenceState::Viewing),
            Err(PresenceError::NoSuchTab(a.tab())),
            "another user's tab is not yours to set"
        );
        n.set_presence("ed1", a.tab(), Some(3), PresenceState::Viewing)
            .unwrap();
        n.set_presence("ed1", b.tab(), Some(3), PresenceState::Editing)
            .unwrap();
        assert_eq!(n.presence().len(), 2, "one entry per tab");
        drop(a);
        let left = n.presence();
        assert_eq!(left.len(), 1, "the other tab is still there");
        assert_eq!(left[0]["state"], "editing");
        drop(b);
        assert!(n.presence().is_empty());
        let Since::Notices(all) = n.since(0) else {
            panic!()
        };
        let opens: Vec<_> = all.iter().map(|x| x.data["open"].clone()).collect();
        assert_eq!(opens, [true, true, false, false].map(Value::Bool));
        assert!(all.iter().all(|x| !x.for_user(false)), "editors only");
    }

    #[test]
    fn a_user_has_at_most_the_configured_streams() {
        let n = Arc::new(Notices::new(2));
        let a = n.connect("ed1").unwrap();
        let _b = n.connect("ed1").unwrap();
        assert_eq!(
            n.connect("ed1").err(),
            Some(PresenceError::TooManyStreams { open: 2 })
        );
        let _other = n.connect("ed2").expect("another user is not counted");
        drop(a);
        assert!(n.connect("ed1").is_ok(), "a closed stream frees its place");
    }
}
