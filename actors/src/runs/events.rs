//! Event logs of runs and passes: numbered events (`log`, `status`, `complete`, …)
//! kept in memory while live, written to SQLite, and replayable from any point so an
//! SSE client that connects late or reconnects (`Last-Event-ID`) misses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

/// One event. `seq` starts at 1 and has no gaps.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    pub kind: String,
    pub data: Value,
}

struct State {
    events: Vec<Event>,
    /// Events up to here are in SQLite.
    flushed: usize,
    done: bool,
}

/// The live log of one run or pass.
pub struct EventLog {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            state: Mutex::new(State {
                events: Vec::new(),
                flushed: 0,
                done: false,
            }),
            changed: watch::channel(0).0,
        }
    }
}

impl EventLog {
    pub fn push(&self, kind: &str, data: Value) -> u64 {
        let seq = {
            let mut s = self.state.lock().expect("event log lock");
            let seq = s.events.len() as u64 + 1;
            s.events.push(Event {
                seq,
                kind: kind.to_string(),
                data,
            });
            seq
        };
        self.changed.send_replace(seq);
        seq
    }

    /// Marks the log complete: no more events will come.
    pub fn finish(&self) {
        let n = {
            let mut s = self.state.lock().expect("event log lock");
            s.done = true;
            s.events.len() as u64
        };
        // Wake waiters even if no event was added.
        self.changed.send_modify(|v| *v = n);
    }

    /// Events after `after`, and whether the log is complete.
    pub fn since(&self, after: u64) -> (Vec<Event>, bool) {
        let s = self.state.lock().expect("event log lock");
        let from = (after as usize).min(s.events.len());
        (s.events[from..].to_vec(), s.done)
    }

    /// Waits until there is an event after `after` or the log completes.
    pub async fn wait(&self, after: u64) {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = self.state.lock().expect("event log lock");
                if s.events.len() as u64 > after || s.done {
                    return;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Takes the events not yet written to SQLite.
    pub fn unflushed(&self) -> Vec<Event> {
        let mut s = self.state.lock().expect("event log lock");
        let out = s.events[s.flushed..].to_vec();
        s.flushed = s.events.len();
        out
    }
}

/// Which logs are live, by id.
#[derive(Default)]
pub struct LiveLogs {
    runs: Mutex<HashMap<i64, Arc<EventLog>>>,
    passes: Mutex<HashMap<i64, Arc<EventLog>>>,
}

impl LiveLogs {
    pub fn run(&self, id: i64) -> Option<Arc<EventLog>> {
        self.runs.lock().expect("live lock").get(&id).cloned()
    }
    pub fn pass(&self, id: i64) -> Option<Arc<EventLog>> {
        self.passes.lock().expect("live lock").get(&id).cloned()
    }
    pub fn add_run(&self, id: i64) -> Arc<EventLog> {
        self.runs
            .lock()
            .expect("live lock")
            .entry(id)
            .or_default()
            .clone()
    }
    pub fn add_pass(&self, id: i64) -> Arc<EventLog> {
        self.passes
            .lock()
            .expect("live lock")
            .entry(id)
            .or_default()
            .clone()
    }
    pub fn remove_run(&self, id: i64) {
        self.runs.lock().expect("live lock").remove(&id);
    }
    pub fn remove_pass(&self, id: i64) {
        self.passes.lock().expect("live lock").remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replays_from_any_point_and_wakes_waiters() {
        let log = Arc::new(EventLog::default());
        log.push("log", serde_json::json!({"line": "a"}));
        log.push("log", serde_json::json!({"line": "b"}));
        let (after1, done) = log.since(1);
        assert_eq!(after1.len(), 1);
        assert_eq!(after1[0].seq, 2);
        assert!(!done);
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move { log.wait(2).await })
        };
        log.push("complete", serde_json::json!({}));
        waiter.await.unwrap();
        log.finish();
        assert!(log.since(3).1);
        assert_eq!(log.unflushed().len(), 3);
        assert!(log.unflushed().is_empty());
    }
}
