//! Disk accounting of the spool: what every file costs, the quota, the
//! warning threshold, retention, and which segments may go.
//!
//! The rules (docs/design.md, Logs, "Quota"):
//! - a batch is admitted only if the spool can still hold it twice (its
//!   journal frames now, its sealed segment later, before the journal is
//!   deleted) on top of what is on disk and what the open segments will
//!   become when sealed; otherwise it is refused whole, never half-taken;
//! - `when_full = "refuse"` refuses; `"drop-oldest-replicated"` first
//!   deletes the oldest sealed segments that peers hold (none until logs
//!   part 2 replicates), then refuses. An unreplicated line is never
//!   dropped to make room;
//! - retention deletes a source's sealed, checkpointed segments older than
//!   its `retention_days`, except the source's newest segment, which
//!   carries its sequence number across restarts;
//! - a warning when the use crosses `warn_percent` of the quota, and again
//!   (relieved) when it falls back under.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::super::journal::JournalWrite;
use super::super::line::Line;
use super::super::merkle::TileWrite;
use super::super::segment::{Sealed, SegmentHeader};
use super::{SpoolConfig, Warning};
use crate::guardian::Millis;

/// What happens when the spool reaches its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    Refuse,
    DropOldestReplicated,
}

/// Disk use against the quota (`keyward status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub used_bytes: u64,
    pub quota_bytes: u64,
    pub warn_percent: u8,
    /// Over `warn_percent` of the quota.
    pub warning: bool,
    /// Lines refused because the spool was full, since start.
    pub refused_lines: u64,
    /// Sealed segments on disk.
    pub segments: u64,
    /// Leaves in the Merkle log.
    pub logged: u64,
}

/// Bytes a frame record and a segment add over their lines, rounded up.
const FRAME_OVERHEAD: u64 = 128;

/// What a batch will cost on disk, once as journal frames.
pub(crate) fn batch_bytes(lines: &[Line]) -> u64 {
    lines
        .iter()
        .map(|l| l.encoded_len() as u64)
        .sum::<u64>()
        .saturating_add(FRAME_OVERHEAD)
}

#[derive(Clone, Debug)]
struct SegInfo {
    /// Empty for a file that does not decode (kept: it is evidence).
    source: String,
    sealed: Millis,
    len: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Disk {
    segments: BTreeMap<u64, SegInfo>,
    newest: BTreeMap<String, u64>,
    journals: BTreeMap<(String, u64), u64>,
    /// Plaintext bytes in each source's open segment: what it will add
    /// when sealed.
    open: BTreeMap<String, u64>,
    tiles: BTreeMap<String, u64>,
    checkpoint: u64,
    replicated: BTreeSet<u64>,
    warned: bool,
    /// The sums of `segments`, `journals` and `tiles`, kept as they
    /// change: every batch asks whether it fits, and summing a log of a
    /// few thousand segments each time slowed ingest down as the log grew
    /// (3 % of a replicated 8-million-line run, 2026-12-04).
    sums: Sums,
}

#[derive(Debug, Default)]
struct Sums {
    segments: u64,
    journals: u64,
    tiles: u64,
}

/// `total` with `old` (if any) replaced by `new`.
fn replace(total: &mut u64, old: Option<u64>, new: u64) {
    *total = total.saturating_sub(old.unwrap_or(0)).saturating_add(new);
}

impl Disk {
    pub(crate) fn used(&self) -> u64 {
        self.sums
            .segments
            .saturating_add(self.sums.journals)
            .saturating_add(self.sums.tiles)
            .saturating_add(self.checkpoint)
    }

    /// Whether `need` more journal bytes fit, with room left to seal them
    /// and every open segment.
    pub(crate) fn fits(&self, cfg: &SpoolConfig, need: u64) -> bool {
        let open: u64 = self.open.values().sum();
        self.used()
            .saturating_add(open)
            .saturating_add(need.saturating_mul(2))
            <= cfg.quota_bytes
    }

    pub(crate) fn usage(&self, cfg: &SpoolConfig, refused: u64) -> Usage {
        let used = self.used();
        Usage {
            used_bytes: used,
            quota_bytes: cfg.quota_bytes,
            warn_percent: cfg.warn_percent,
            warning: over(used, cfg),
            refused_lines: refused,
            segments: self.segments.len() as u64,
            logged: 0,
        }
    }

    /// A warning when the use crosses the threshold either way.
    pub(crate) fn warning(&mut self, cfg: &SpoolConfig) -> Option<Warning> {
        let used = self.used();
        let now_over = over(used, cfg);
        if now_over == self.warned {
            return None;
        }
        self.warned = now_over;
        Some(if now_over {
            Warning::Nearing {
                used,
                quota: cfg.quota_bytes,
                percent: cfg.warn_percent,
            }
        } else {
            Warning::Relieved {
                used,
                quota: cfg.quota_bytes,
            }
        })
    }

    pub(crate) fn line_in(&mut self, source: &str, l: &Line) {
        *self.open.entry(source.to_string()).or_default() += l.encoded_len() as u64;
    }

    pub(crate) fn sealed_one(&mut self, source: &str, _s: &Sealed) {
        self.open.insert(source.to_string(), 0);
    }

    pub(crate) fn journal_write(&mut self, w: &JournalWrite) {
        let e = self.journals.entry((w.source.clone(), w.seq)).or_default();
        let old = *e;
        if w.create {
            *e = 0;
        }
        *e += w.bytes.len() as u64;
        replace(&mut self.sums.journals, Some(old), *e);
    }

    /// A journal file found at start.
    pub(crate) fn journal_found(&mut self, source: &str, seq: u64, len: u64) {
        let old = self.journals.insert((source.to_string(), seq), len);
        replace(&mut self.sums.journals, old, len);
    }

    /// Forgets a journal; whether it was there to delete.
    pub(crate) fn journal_deleted(&mut self, source: &str, seq: u64) -> bool {
        let old = self.journals.remove(&(source.to_string(), seq));
        replace(&mut self.sums.journals, old, 0);
        old.is_some()
    }

    pub(crate) fn segment_written(&mut self, index: u64, h: &SegmentHeader, len: u64) {
        self.segment_found(index, Some(h), len);
    }

    pub(crate) fn segment_found(&mut self, index: u64, h: Option<&SegmentHeader>, len: u64) {
        let (source, sealed) = h.map_or((String::new(), 0), |h| (h.source.clone(), h.sealed));
        if !source.is_empty() {
            let n = self.newest.entry(source.clone()).or_insert(index);
            *n = (*n).max(index);
        }
        let old = self.segments.insert(
            index,
            SegInfo {
                source,
                sealed,
                len,
            },
        );
        replace(&mut self.sums.segments, old.map(|s| s.len), len);
    }

    pub(crate) fn segment_deleted(&mut self, index: u64) {
        let old = self.segments.remove(&index);
        replace(&mut self.sums.segments, old.map(|s| s.len), 0);
        self.replicated.remove(&index);
    }

    pub(crate) fn tile_written(&mut self, t: &TileWrite) {
        let len = t.bytes.len() as u64;
        let old = self.tiles.insert(t.path.clone(), len);
        replace(&mut self.sums.tiles, old, len);
    }

    /// Tiles found at start (their total size).
    pub(crate) fn tiles_found(&mut self, bytes: u64) {
        let old = self.tiles.insert(String::new(), bytes);
        replace(&mut self.sums.tiles, old, bytes);
    }

    pub(crate) fn checkpoint_written(&mut self, len: u64) {
        self.checkpoint = len;
    }

    pub(crate) fn mark_replicated(&mut self, index: u64) {
        if self.segments.contains_key(&index) {
            self.replicated.insert(index);
        }
    }

    /// A segment that rules may delete: logged (under the checkpoint),
    /// decodable, and not its source's newest.
    fn deletable(&self, index: u64, s: &SegInfo, checkpointed: u64) -> bool {
        index < checkpointed && !s.source.is_empty() && self.newest.get(&s.source) != Some(&index)
    }

    /// Replicated segments that may go to make room, oldest first.
    pub(crate) fn oldest_replicated(&self, checkpointed: u64) -> Vec<(u64, String)> {
        self.replicated
            .iter()
            .filter_map(|i| self.segments.get(i).map(|s| (*i, s)))
            .filter(|(i, s)| self.deletable(*i, s, checkpointed))
            .map(|(i, s)| (i, s.source.clone()))
            .collect()
    }

    fn retention_of(cfg: &SpoolConfig, source: &str) -> Millis {
        cfg.sources
            .iter()
            .find(|s| s.name == source)
            .map_or(0, |s| s.retention_ms)
    }

    /// Segments past their source's retention.
    pub(crate) fn expired(
        &self,
        cfg: &SpoolConfig,
        now: Millis,
        checkpointed: u64,
    ) -> Vec<(u64, String)> {
        self.segments
            .iter()
            .filter(|(i, s)| self.deletable(**i, s, checkpointed))
            .filter(|(_, s)| {
                let r = Self::retention_of(cfg, &s.source);
                r > 0 && s.sealed.saturating_add(r) <= now
            })
            .map(|(i, s)| (*i, s.source.clone()))
            .collect()
    }

    /// When the next segment's retention ends. Asked after every batch,
    /// so it does not walk the whole log: segments are sealed in index
    /// order, so each source's first deletable segment is its oldest and
    /// the walk stops once every source with a retention has one. (After
    /// the clock went back a later segment may be older: its retention
    /// then runs at the next wake-up, a little late, never early.)
    pub(crate) fn next_expiry(&self, cfg: &SpoolConfig, checkpointed: u64) -> Option<Millis> {
        let mut left: BTreeSet<&str> = cfg
            .sources
            .iter()
            .filter(|s| s.retention_ms > 0)
            .map(|s| s.name.as_str())
            .collect();
        let mut next: Option<Millis> = None;
        for (i, s) in &self.segments {
            if left.is_empty() {
                break;
            }
            if !left.contains(s.source.as_str()) || !self.deletable(*i, s, checkpointed) {
                continue;
            }
            left.remove(s.source.as_str());
            let at = s.sealed.saturating_add(Self::retention_of(cfg, &s.source));
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next
    }
}

fn over(used: u64, cfg: &SpoolConfig) -> bool {
    (used as u128) * 100 >= (cfg.quota_bytes as u128) * cfg.warn_percent as u128
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One change to the accounting.
    #[derive(Clone, Debug)]
    enum Op {
        Journal { seq: u64, create: bool, len: u16 },
        JournalFound { seq: u64, len: u16 },
        JournalDeleted { seq: u64 },
        Segment { index: u64, len: u16 },
        SegmentDeleted { index: u64 },
        Tile { n: u8, len: u16 },
        TilesFound { len: u16 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..4u64, any::<bool>(), any::<u16>()).prop_map(|(seq, create, len)| Op::Journal {
                seq,
                create,
                len
            }),
            (0..4u64, any::<u16>()).prop_map(|(seq, len)| Op::JournalFound { seq, len }),
            (0..4u64).prop_map(|seq| Op::JournalDeleted { seq }),
            (0..8u64, any::<u16>()).prop_map(|(index, len)| Op::Segment { index, len }),
            (0..8u64).prop_map(|index| Op::SegmentDeleted { index }),
            (0..4u8, any::<u16>()).prop_map(|(n, len)| Op::Tile { n, len }),
            any::<u16>().prop_map(|len| Op::TilesFound { len }),
        ]
    }

    proptest! {
        /// The running sums always equal the sums of the maps, whatever
        /// is replaced, deleted twice or never there.
        #[test]
        fn used_is_the_sum_of_every_file(ops in proptest::collection::vec(op(), 0..60)) {
            let mut d = Disk::default();
            for o in ops {
                match o {
                    Op::Journal { seq, create, len } => d.journal_write(&JournalWrite {
                        source: "s".into(),
                        seq,
                        create,
                        bytes: vec![0; len.into()],
                    }),
                    Op::JournalFound { seq, len } => d.journal_found("s", seq, len.into()),
                    Op::JournalDeleted { seq } => {
                        d.journal_deleted("s", seq);
                    }
                    Op::Segment { index, len } => d.segment_found(index, None, len.into()),
                    Op::SegmentDeleted { index } => d.segment_deleted(index),
                    Op::Tile { n, len } => d.tile_written(&TileWrite {
                        path: format!("tile/0/{n:03}"),
                        bytes: vec![0; len.into()],
                    }),
                    Op::TilesFound { len } => d.tiles_found(len.into()),
                }
                let brute = d.segments.values().map(|s| s.len).sum::<u64>()
                    + d.journals.values().sum::<u64>()
                    + d.tiles.values().sum::<u64>()
                    + d.checkpoint;
                prop_assert_eq!(d.used(), brute);
            }
        }
    }
}
