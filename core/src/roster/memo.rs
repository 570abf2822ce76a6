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
use std::sync::{Arc, Mutex};

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
