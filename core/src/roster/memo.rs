//! Merge results shared between rosters in the same state.
//!
//! A merge is a function of the operations held and the batch merged, so
//! two rosters holding the same operations (equal digests) that merge the
//! same batch end in the same state with the same report. A driver that
//! runs many nodes in one process (the simulator: 5,000 nodes, each
//! merging every roster operation as gossip brings it) hands them one
//! memo: the first node to merge a batch computes the new state, the
//! others take it, and they all share one copy of it. keywardd runs one
//! node and needs none.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use super::{MergeReport, OpId, RosterState};

/// Entries kept; the oldest go first. A batch spreads through a mesh in
/// well under a second of simulated time, while few other batches do;
/// and each entry keeps a whole roster state alive (5 MB at 5,000
/// members), so 512 of them held 2.5 GB no node used any more.
const KEEP: usize = 64;

/// (roster digest before, batch) -> the state after and the report.
#[derive(Default)]
pub struct MergeMemo {
    inner: Mutex<Entries>,
}

type Key = [u8; 32];

#[derive(Default)]
struct Entries {
    map: BTreeMap<Key, (Arc<RosterState>, MergeReport)>,
    order: VecDeque<Key>,
    /// Live states by their digest: nodes that reach the same operations
    /// by different batches (two joins in one merge here, in two there)
    /// share one state too. Without this, over a day of churn at 5,000
    /// nodes the paths diverged and most nodes held a copy of their own.
    states: BTreeMap<[u8; 32], Weak<RosterState>>,
    /// `states`' size after its last sweep of dead entries.
    swept: usize,
}

impl MergeMemo {
    /// The key of merging the operations `batch` (ids, in the order they
    /// are merged) into a roster whose digest is `digest`. An op id is a
    /// hash of the signed bytes, so equal ids mean equal operations, and
    /// equal signature checks.
    pub(super) fn key(digest: [u8; 32], batch: impl Iterator<Item = OpId>) -> Key {
        let mut h = Sha256::new();
        h.update(digest);
        for id in batch {
            h.update(id);
        }
        h.finalize().into()
    }

    pub(super) fn get(&self, key: &Key) -> Option<(Arc<RosterState>, MergeReport)> {
        let e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        e.map.get(key).cloned()
    }

    pub(super) fn put(&self, key: Key, state: Arc<RosterState>, report: MergeReport) {
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if e.map.insert(key, (state, report)).is_none() {
            e.order.push_back(key);
        }
        while e.order.len() > KEEP {
            if let Some(old) = e.order.pop_front() {
                e.map.remove(&old);
            }
        }
    }

    /// The live state whose digest is `state`'s, if another copy of it
    /// is held; otherwise `state` is remembered for the next one. The
    /// digest hashes every operation id held, and a state is a function
    /// of its operations (the memo's key relies on the same).
    pub(super) fn intern(&self, state: &Arc<RosterState>) -> Option<Arc<RosterState>> {
        let d = state.digest();
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(same) = e.states.get(&d).and_then(Weak::upgrade) {
            return (!Arc::ptr_eq(&same, state)).then_some(same);
        }
        e.states.insert(d, Arc::downgrade(state));
        if e.states.len() > 2 * e.swept + 1024 {
            e.states.retain(|_, w| w.strong_count() > 0);
            e.swept = e.states.len();
        }
        None
    }

    /// The live state whose digest is `digest`, if one is held.
    pub(super) fn state(&self, digest: &[u8; 32]) -> Option<Arc<RosterState>> {
        let e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        e.states.get(digest).and_then(Weak::upgrade)
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
