//! Per-origin disk accounting on a replica: the quota, its warnings, and
//! retention.
//!
//! Rules (mirroring the spool's, docs/design.md "Logs"):
//! - everything an origin's replica holds counts against that origin's
//!   quota: segments, tiles, the checkpoint. One origin filling its quota
//!   never takes another's room;
//! - a push that would go over the quota is refused whole
//!   ([`super::store::Refusal::Full`]), never half-taken, and nothing held
//!   is deleted to make room: a replica's copy may be the only one left;
//! - crossing `warn_percent` of the quota is a [`Notice`] once each way;
//! - retention deletes segments sealed more than `retention_ms` ago, only
//!   under the verified checkpoint, and never a source's newest segment
//!   (it carries the source's sequence number across restarts). Their
//!   leaves stay in the tiles, so the log still verifies.

use std::collections::BTreeMap;

use super::super::merkle::Hash;
use crate::guardian::Millis;
use crate::identity::NodeId;

/// Quota and retention of each origin's replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one origin's replica may use.
    pub quota_bytes: u64,
    /// Percentage of the quota at which a warning is given (1..=100).
    pub warn_percent: u8,
    /// Segments sealed longer ago than this are deleted; 0 keeps them.
    pub retention_ms: Millis,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            quota_bytes: 1 << 30,
            warn_percent: 80,
            retention_ms: 0,
        }
    }
}

/// What the operator should hear about a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The origin's replica went over `percent` of its quota.
    Nearing {
        origin: NodeId,
        used: u64,
        quota: u64,
        percent: u8,
    },
    /// Back under the warning threshold.
    Relieved {
        origin: NodeId,
        used: u64,
        quota: u64,
    },
    /// A segment was deleted by retention.
    Deleted {
        origin: NodeId,
        index: u64,
        source: String,
    },
    /// A segment file beyond the verified checkpoint that could not join
    /// the log at load (torn, damaged, or after a hole) was deleted: the
    /// origin pushes it again.
    Discarded {
        origin: NodeId,
        index: u64,
        why: String,
    },
}

/// One held segment, as the store remembers it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SegInfo {
    pub source: String,
    pub sealed: Millis,
    /// File size.
    pub len: u64,
    /// Its Merkle leaf hash: a segment pushed again at this index must
    /// have the same.
    pub leaf: Hash,
}

/// Bytes held for one origin.
#[derive(Clone, Debug, Default)]
pub(crate) struct Account {
    segments: u64,
    tiles: BTreeMap<String, u64>,
    checkpoint: u64,
    warned: bool,
}

impl Account {
    pub fn used(&self) -> u64 {
        self.segments
            .saturating_add(self.tiles.values().sum::<u64>())
            .saturating_add(self.checkpoint)
    }

    /// Bytes a tile write adds (a tile written again has the same bytes).
    pub fn tile_cost(&self, path: &str, len: u64) -> u64 {
        if self.tiles.contains_key(path) {
            0
        } else {
            len
        }
    }

    pub fn segment_added(&mut self, len: u64) {
        self.segments = self.segments.saturating_add(len);
    }

    pub fn segment_removed(&mut self, len: u64) {
        self.segments = self.segments.saturating_sub(len);
    }

    pub fn tile_added(&mut self, path: &str, len: u64) {
        self.tiles.insert(path.to_string(), len);
    }

    pub fn checkpoint_written(&mut self, len: u64) {
        self.checkpoint = len;
    }

    /// A notice when the use crossed the threshold either way since the
    /// last call.
    pub fn warning(&mut self, origin: NodeId, limits: &Limits) -> Option<Notice> {
        let used = self.used();
        let over =
            (used as u128) * 100 >= (limits.quota_bytes as u128) * limits.warn_percent as u128;
        if over == self.warned {
            return None;
        }
        self.warned = over;
        Some(if over {
            Notice::Nearing {
                origin,
                used,
                quota: limits.quota_bytes,
                percent: limits.warn_percent,
            }
        } else {
            Notice::Relieved {
                origin,
                used,
                quota: limits.quota_bytes,
            }
        })
    }
}

/// The newest index of each source among `segments`.
pub(crate) fn newest(segments: &BTreeMap<u64, SegInfo>) -> BTreeMap<&str, u64> {
    let mut n = BTreeMap::new();
    for (i, s) in segments {
        n.insert(s.source.as_str(), *i);
    }
    n
}

/// Segments retention deletes now: under `verified`, sealed at least
/// `retention_ms` ago, not their source's newest.
pub(crate) fn expired(
    segments: &BTreeMap<u64, SegInfo>,
    verified: u64,
    limits: &Limits,
    now: Millis,
) -> Vec<u64> {
    if limits.retention_ms == 0 {
        return Vec::new();
    }
    let newest = newest(segments);
    segments
        .range(..verified)
        .filter(|(i, s)| newest.get(s.source.as_str()) != Some(i))
        .filter(|(_, s)| s.sealed.saturating_add(limits.retention_ms) <= now)
        .map(|(i, _)| *i)
        .collect()
}

/// When the next segment's retention ends, if any may.
pub(crate) fn next_expiry(
    segments: &BTreeMap<u64, SegInfo>,
    verified: u64,
    limits: &Limits,
) -> Option<Millis> {
    if limits.retention_ms == 0 {
        return None;
    }
    let newest = newest(segments);
    segments
        .range(..verified)
        .filter(|(i, s)| newest.get(s.source.as_str()) != Some(i))
        .map(|(_, s)| s.sealed.saturating_add(limits.retention_ms))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(source: &str, sealed: Millis) -> SegInfo {
        SegInfo {
            source: source.into(),
            sealed,
            len: 10,
            leaf: Hash([0; 32]),
        }
    }

    #[test]
    fn retention_keeps_the_newest_per_source_and_the_unverified() {
        let segs: BTreeMap<u64, SegInfo> = [
            (0, seg("a", 0)),
            (1, seg("b", 0)),
            (2, seg("a", 10)),
            (3, seg("a", 20)),
        ]
        .into_iter()
        .collect();
        let l = Limits {
            retention_ms: 100,
            ..Limits::default()
        };
        assert_eq!(expired(&segs, 4, &l, 50), Vec::<u64>::new());
        assert_eq!(next_expiry(&segs, 4, &l), Some(100));
        // b's only segment and a's newest stay
        assert_eq!(expired(&segs, 4, &l, 1000), vec![0, 2]);
        // above the verified checkpoint nothing goes
        assert_eq!(expired(&segs, 1, &l, 1000), vec![0]);
        let keep = Limits::default();
        assert!(expired(&segs, 4, &keep, u64::MAX).is_empty());
        assert_eq!(next_expiry(&segs, 4, &keep), None);
    }

    #[test]
    fn warnings_once_each_way() {
        let o = NodeId([1; 32]);
        let l = Limits {
            quota_bytes: 100,
            warn_percent: 50,
            retention_ms: 0,
        };
        let mut a = Account::default();
        a.segment_added(40);
        assert_eq!(a.warning(o, &l), None);
        a.segment_added(10);
        assert!(matches!(
            a.warning(o, &l),
            Some(Notice::Nearing { used: 50, .. })
        ));
        a.tile_added("t", 5);
        assert_eq!(a.warning(o, &l), None);
        assert_eq!(a.tile_cost("t", 5), 0);
        a.segment_removed(30);
        assert!(matches!(
            a.warning(o, &l),
            Some(Notice::Relieved { used: 25, .. })
        ));
        assert_eq!(a.warning(o, &l), None);
    }
}
