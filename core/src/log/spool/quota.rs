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
}

impl Disk {
    pub(crate) fn used(&self) -> u64 {
        let segs: u64 = self.segments.values().map(|s| s.len).sum();
        let journals: u64 = self.journals.values().sum();
        let tiles: u64 = self.tiles.values().sum();
        segs.saturating_add(journals)
            .saturating_add(tiles)
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
        if w.create {
            *e = 0;
        }
        *e += w.bytes.len() as u64;
    }

    /// A journal file found at start.
    pub(crate) fn journal_found(&mut self, source: &str, seq: u64, len: u64) {
        self.journals.insert((source.to_string(), seq), len);
    }

    /// Forgets a journal; whether it was there to delete.
    pub(crate) fn journal_deleted(&mut self, source: &str, seq: u64) -> bool {
        self.journals.remove(&(source.to_string(), seq)).is_some()
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
        self.segments.insert(
            index,
            SegInfo {
                source,
                sealed,
                len,
            },
        );
    }

    pub(crate) fn segment_deleted(&mut self, index: u64) {
        self.segments.remove(&index);
        self.replicated.remove(&index);
    }

    pub(crate) fn tile_written(&mut self, t: &TileWrite) {
        self.tiles.insert(t.path.clone(), t.bytes.len() as u64);
    }

    /// Tiles found at start (their total size).
    pub(crate) fn tiles_found(&mut self, bytes: u64) {
        self.tiles.insert(String::new(), bytes);
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

    /// When the next segment's retention ends.
    pub(crate) fn next_expiry(&self, cfg: &SpoolConfig, checkpointed: u64) -> Option<Millis> {
        self.segments
            .iter()
            .filter(|(i, s)| self.deletable(**i, s, checkpointed))
            .filter_map(|(_, s)| {
                let r = Self::retention_of(cfg, &s.source);
                (r > 0).then(|| s.sealed.saturating_add(r))
            })
            .min()
    }
}

fn over(used: u64, cfg: &SpoolConfig) -> bool {
    (used as u128) * 100 >= (cfg.quota_bytes as u128) * cfg.warn_percent as u128
}
