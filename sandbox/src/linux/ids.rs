//! Host uids for sandboxes: each live sandbox of a root server holds one uid of
//! `[sandbox.linux] uid_range`, leased round-robin and returned when it is dropped.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::run::SandboxError;

/// The host uids of `uid_range` that live sandboxes hold.
#[derive(Default)]
pub(super) struct Ids {
    state: std::sync::Mutex<(BTreeSet<u32>, u32)>,
}

/// A host uid held by one sandbox until it is dropped.
pub(super) struct Lease {
    ids: Arc<Ids>,
    pub(super) uid: u32,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ids
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .remove(&self.uid);
    }
}

impl Ids {
    /// The next free uid of `[first, last]`, round-robin, so that a uid is reused as
    /// late as possible.
    pub(super) fn lease(self: &Arc<Self>, [first, last]: [u32; 2]) -> Result<Lease, SandboxError> {
        if first == 0 || last < first {
            return Err(SandboxError::Setup(format!(
                "[sandbox.linux] uid_range = [{first}, {last}] is not a range of non-root uids; use e.g. [100000, 165535]"
            )));
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (used, next) = &mut *state;
        let span = (last - first) as u64 + 1;
        for i in 0..span {
            let uid = first + ((next.saturating_sub(first) as u64 + i) % span) as u32;
            if used.insert(uid) {
                *next = if uid == last { first } else { uid + 1 };
                return Ok(Lease {
                    ids: self.clone(),
                    uid,
                });
            }
        }
        Err(SandboxError::Setup(format!(
            "all {span} uids of [sandbox.linux] uid_range are held by running sandboxes; widen the range"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_leased_round_robin_and_returned_on_drop() {
        let ids = Arc::new(Ids::default());
        let a = ids.lease([1000, 1002]).unwrap();
        let b = ids.lease([1000, 1002]).unwrap();
        assert_eq!((a.uid, b.uid), (1000, 1001));
        drop(a);
        // The freed 1000 comes back only after the rest of the range.
        let c = ids.lease([1000, 1002]).unwrap();
        assert_eq!(c.uid, 1002);
        let d = ids.lease([1000, 1002]).unwrap();
        assert_eq!(d.uid, 1000);
        let full = ids.lease([1000, 1002]).err().unwrap().to_string();
        assert!(
            full.contains("all 3 uids") && full.contains("widen the range"),
            "{full}"
        );
        drop(b);
        assert_eq!(ids.lease([1000, 1002]).unwrap().uid, 1001);
    }

    #[test]
    fn a_range_that_includes_root_or_is_reversed_is_refused() {
        let ids = Arc::new(Ids::default());
        for range in [[0, 10], [20, 10]] {
            let e = ids.lease(range).err().unwrap().to_string();
            assert!(
                e.contains("uid_range") && e.contains("[100000, 165535]"),
                "{e}"
            );
        }
    }
}
