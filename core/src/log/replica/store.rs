//! The replica side: other origins' logs, kept as their origins signed
//! them, in each origin's own Merkle log layout.
//!
//! [`ReplicaStore::accept`] takes a [`Push`] from its authenticated sender
//! whole or refuses it whole ([`Refusal`]). A push is taken only if:
//! - the sender is the origin it names (nobody pushes another's log);
//! - its checkpoint is the origin's signed note and covers the segments;
//! - it starts at or before the next index this replica needs (a push
//!   starting past it is a [`Refusal::Gap`]: the replica asks for the
//!   missing range with [`Ask`]);
//! - every segment decodes, its body hash and the origin's signature
//!   verify, and it names the origin;
//! - an index already held gets the same segment again (a no-op) and never
//!   another one: two segments both signed by the origin at one index are
//!   equivocation evidence;
//! - the tree the segments build has the root of every signed checkpoint
//!   of the origin it reaches the size of (the push's, and earlier ones
//!   that were ahead of the log when they came): otherwise the origin
//!   showed this replica a different history than it signed;
//! - the origin's quota has room for it.
//!
//! A source's sequence that skips or repeats a number is reported
//! ([`Finding::Sequence`]) but taken: it is the origin's signed log (an
//! honest origin skips a number when a journal was damaged), and the
//! replica's job is to keep that log as it is.
//!
//! Every [`Write`] of an accepted push must be durable before its
//! [`Held`] is sent (see [`Write`]). On restart, [`ReplicaStore::load`]
//! rebuilds each origin from its files and refuses files that were
//! tampered with.

use std::collections::BTreeMap;

use super::super::checkpoint::{self, CheckpointError};
use super::super::merkle::{self, Hash, MerkleError, MerkleLog, TileStore};
use super::super::segment::{Segment, SegmentHeader};
use super::usage::{self, Account, Limits, Notice, SegInfo};
use super::wire::{Ask, Held, Push, Refused, RefusedCode};
use super::{checkpoint_path, segment_path, tile_path, Finding, Write};
use crate::guardian::Millis;
use crate::identity::NodeId;

/// Most signed checkpoints kept per origin that are ahead of its log (the
/// log is checked against each as it reaches its size). An honest origin
/// has one or two in flight.
const MAX_PENDING: usize = 8;

/// Why a push was not taken. Nothing of it was written.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the replica of {origin} is full ({used} of {quota} bytes): it takes no more of this origin's segments until retention frees room or the quota is raised")]
    Full {
        origin: NodeId,
        used: u64,
        quota: u64,
    },
    #[error("the push of {origin}'s log starts at index {from_index} but this replica holds only {held} leaves: push from {held}")]
    Gap {
        origin: NodeId,
        held: u64,
        from_index: u64,
    },
    #[error("invalid push of {origin}'s log: {why}")]
    Invalid { origin: NodeId, why: String },
    #[error("push refused with evidence: {0}")]
    Evidence(Box<Finding>),
}

/// A refusal with evidence.
fn evidence(f: Finding) -> Refusal {
    Refusal::Evidence(Box::new(f))
}

impl Refusal {
    /// The evidence against the origin, if that is why.
    pub fn finding(&self) -> Option<&Finding> {
        match self {
            Refusal::Evidence(f) => Some(f),
            _ => None,
        }
    }

    /// The catch-up request a gap calls for.
    pub fn ask(&self) -> Option<Ask> {
        match self {
            Refusal::Gap { origin, held, .. } => Some(Ask {
                origin: *origin,
                from_index: *held,
            }),
            _ => None,
        }
    }
}

/// A push taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// Perform, and make durable, before sending `held`.
    pub writes: Vec<Write>,
    pub held: Held,
    /// Reported, the segments kept ([`Finding::Sequence`]).
    pub findings: Vec<Finding>,
    pub notices: Vec<Notice>,
}

/// Why an origin's replica cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the replica of {origin}: its checkpoint does not verify ({why}): the files were tampered with or belong to another origin")]
    Checkpoint {
        origin: NodeId,
        why: CheckpointError,
    },
    #[error("the replica of {origin}: its tiles do not match its checkpoint ({why}): the Merkle log was damaged or tampered with")]
    Tiles { origin: NodeId, why: MerkleError },
    #[error("the replica of {origin}: segment {index} is not the one its log holds ({why}): it was damaged or tampered with")]
    Segment {
        origin: NodeId,
        index: u64,
        why: String,
    },
    #[error("the replica of {origin} was loaded twice")]
    Twice { origin: NodeId },
}

/// Replica limits that make no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("replica warn_percent {0} must be 1 to 100")]
    WarnPercent(u8),
    #[error("the replica quota must be more than 0 bytes (no replicas at all: set replicas = 0 on the origins instead)")]
    NoQuota,
}

/// What loading an origin's files returns besides the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Repairs: tiles of segments beyond the checkpoint appended again,
    /// leftovers deleted. Perform them before sending any `Held`.
    pub writes: Vec<Write>,
    pub notices: Vec<Notice>,
}

/// One origin's replica.
#[derive(Clone, Debug)]
struct OriginLog {
    origin: NodeId,
    /// The right edge of the origin's Merkle log as held.
    log: MerkleLog,
    /// The stored checkpoint: its size and root (verified against the
    /// leaves held).
    verified: (u64, Hash),
    /// Its note (empty before the first).
    verified_note: Vec<u8>,
    /// Signed checkpoints ahead of the log, by size: (root, note).
    pending: BTreeMap<u64, (Hash, Vec<u8>)>,
    /// Each source's next sequence number.
    next_seq: BTreeMap<String, u64>,
    /// Segments held, with each one's leaf hash.
    segments: BTreeMap<u64, SegInfo>,
    acct: Account,
}

impl OriginLog {
    fn new(origin: NodeId) -> Self {
        OriginLog {
            origin,
            log: MerkleLog::new(origin),
            verified: (0, tlog_tiles::EMPTY_HASH),
            verified_note: Vec::new(),
            pending: BTreeMap::new(),
            next_seq: BTreeMap::new(),
            segments: BTreeMap::new(),
            acct: Account::default(),
        }
    }

    /// Counts a held segment at `index`: its source's next sequence, the
    /// bytes it takes, its leaf hash.
    fn hold(&mut self, index: u64, header: SegmentHeader, len: u64, leaf: Hash) {
        let n = self.next_seq.entry(header.source.clone()).or_default();
        *n = (*n).max(header.seq.saturating_add(1));
        self.acct.segment_added(len);
        self.segments.insert(
            index,
            SegInfo {
                source: header.source,
                sealed: header.sealed,
                len,
                leaf,
            },
        );
    }
}

/// A segment of a push, checked.
struct NewSeg {
    index: u64,
    bytes: Vec<u8>,
    leaf: Vec<u8>,
    info: SegInfo,
}

/// A push's effect, computed before anything changes.
struct Plan {
    log: MerkleLog,
    new: Vec<NewSeg>,
    tiles: Vec<merkle::TileWrite>,
    next_seq: BTreeMap<String, u64>,
    /// The largest checkpoint the log now matches: (size, root, note).
    verified: Option<(u64, Hash, Vec<u8>)>,
    pending: BTreeMap<u64, (Hash, Vec<u8>)>,
    findings: Vec<Finding>,
}

/// The replicas this node keeps.
pub struct ReplicaStore {
    limits: Limits,
    origins: BTreeMap<NodeId, OriginLog>,
}

fn fork(
    origin: NodeId,
    size: u64,
    note: &[u8],
    computed: Hash,
    first: u64,
    leaves: &[Hash],
) -> Refusal {
    evidence(Finding::Fork {
        origin,
        size,
        checkpoint: note.to_vec(),
        computed_root: computed,
        first,
        leaves: leaves.to_vec(),
    })
}

impl ReplicaStore {
    /// An empty store (first start), or one to [`ReplicaStore::load`] into.
    pub fn new(limits: Limits) -> Result<Self, LimitsError> {
        if limits.warn_percent == 0 || limits.warn_percent > 100 {
            return Err(LimitsError::WarnPercent(limits.warn_percent));
        }
        if limits.quota_bytes == 0 {
            return Err(LimitsError::NoQuota);
        }
        Ok(ReplicaStore {
            limits,
            origins: BTreeMap::new(),
        })
    }

    /// What this replica holds of `origin`'s log (size 0 if nothing).
    pub fn held(&self, origin: &NodeId) -> Held {
        Held {
            origin: *origin,
            size: self.origins.get(origin).map_or(0, |o| o.log.size()),
            matches: 0,
        }
    }

    /// The origins held.
    pub fn origins(&self) -> impl Iterator<Item = &NodeId> {
        self.origins.keys()
    }

    /// Bytes held for `origin`, and the quota.
    pub fn usage(&self, origin: &NodeId) -> (u64, u64) {
        (
            self.origins.get(origin).map_or(0, |o| o.acct.used()),
            self.limits.quota_bytes,
        )
    }

    /// Size and root of the latest checkpoint of `origin` this replica
    /// verified and stored.
    pub fn verified(&self, origin: &NodeId) -> Option<(u64, Hash)> {
        self.origins.get(origin).map(|o| o.verified)
    }

    /// The message that tells the origin about a refusal.
    pub fn refused(&self, r: &Refusal) -> Refused {
        let (origin, code) = match r {
            Refusal::Full {
                origin,
                used,
                quota,
            } => (
                *origin,
                RefusedCode::Full {
                    used: *used,
                    quota: *quota,
                },
            ),
            Refusal::Gap { origin, .. } => (*origin, RefusedCode::Gap),
            Refusal::Invalid { origin, .. } => (*origin, RefusedCode::Invalid),
            Refusal::Evidence(f) => (f.origin(), RefusedCode::Evidence),
        };
        Refused::new(origin, self.held(&origin).size, code, &r.to_string())
    }

    /// Takes a push from `sender` (the peer the transport authenticated)
    /// whole, or refuses it whole. See the module doc for the rules.
    /// `now` decides nothing yet (retention runs in
    /// [`ReplicaStore::expire`]); it is taken so that time-based rules can
    /// be added without changing every caller.
    pub fn accept(
        &mut self,
        now: Millis,
        sender: NodeId,
        push: &Push,
    ) -> Result<Accepted, Refusal> {
        let _ = now;
        let origin = push.origin;
        if sender != origin {
            return Err(evidence(Finding::NotSender {
                sender,
                claimed: origin,
            }));
        }
        let invalid = |why: String| Refusal::Invalid { origin, why };
        push.check().map_err(|e| invalid(e.to_string()))?;
        let (cp_size, cp_root) = checkpoint::open(&push.checkpoint, &origin)
            .map_err(|e| invalid(format!("its checkpoint is not the origin's: {e}")))?;
        let end = push.end().map_err(|e| invalid(e.to_string()))?;
        if cp_size < end {
            return Err(invalid(format!(
                "its checkpoint (size {cp_size}) does not cover the segments it carries (up to {end})"
            )));
        }
        let fresh;
        let st = match self.origins.get(&origin) {
            Some(s) => s,
            None => {
                fresh = OriginLog::new(origin);
                &fresh
            }
        };
        let plan = Self::plan(st, push, (cp_size, cp_root))?;
        let used = st.acct.used();
        let need: u64 = plan
            .new
            .iter()
            .map(|s| s.bytes.len() as u64)
            .chain(
                plan.tiles
                    .iter()
                    .map(|t| st.acct.tile_cost(&t.path, t.bytes.len() as u64)),
            )
            .chain(plan.verified.iter().map(|v| v.2.len() as u64))
            .sum();
        if !plan.new.is_empty() && used.saturating_add(need) > self.limits.quota_bytes {
            return Err(Refusal::Full {
                origin,
                used,
                quota: self.limits.quota_bytes,
            });
        }
        let limits = self.limits;
        let st = self
            .origins
            .entry(origin)
            .or_insert_with(|| OriginLog::new(origin));
        let mut writes = Vec::new();
        for s in plan.new {
            st.acct.segment_added(s.bytes.len() as u64);
            st.segments.insert(s.index, s.info);
            writes.push(Write::Segment {
                path: segment_path(&origin, s.index),
                bytes: s.bytes,
            });
        }
        for t in plan.tiles {
            st.acct.tile_added(&t.path, t.bytes.len() as u64);
            writes.push(Write::Tile {
                path: tile_path(&origin, &t.path),
                bytes: t.bytes,
            });
        }
        if !writes.is_empty() {
            writes.push(Write::Sync);
        }
        if let Some((size, root, note)) = plan.verified {
            st.acct.checkpoint_written(note.len() as u64);
            st.verified = (size, root);
            st.verified_note = note.clone();
            writes.push(Write::Checkpoint {
                path: checkpoint_path(&origin),
                note,
            });
            writes.push(Write::Sync);
        }
        st.log = plan.log;
        st.next_seq = plan.next_seq;
        st.pending = plan.pending;
        let notices = st.acct.warning(origin, &limits).into_iter().collect();
        Ok(Accepted {
            writes,
            held: Held {
                origin,
                size: st.log.size(),
                matches: if st.verified == (cp_size, cp_root) {
                    cp_size
                } else {
                    0
                },
            },
            findings: plan.findings,
            notices,
        })
    }

    /// Checks a push against an origin's replica and computes its effect.
    fn plan(st: &OriginLog, push: &Push, (cp_size, cp_root): (u64, Hash)) -> Result<Plan, Refusal> {
        let origin = st.origin;
        let next = st.log.size();
        if push.from_index > next {
            return Err(Refusal::Gap {
                origin,
                held: next,
                from_index: push.from_index,
            });
        }
        // Signed checkpoints this push brings or that wait: two of one
        // size with different roots are a fork on their own.
        let mut pending = st.pending.clone();
        let two = |other: &[u8]| {
            evidence(Finding::TwoCheckpoints {
                origin,
                size: cp_size,
                first: other.to_vec(),
                second: push.checkpoint.clone(),
            })
        };
        if let Some((root, note)) = pending.get(&cp_size) {
            if *root != cp_root {
                return Err(two(note));
            }
        }
        if cp_size == st.verified.0 && cp_root != st.verified.1 && !st.verified_note.is_empty() {
            return Err(two(&st.verified_note));
        }
        if cp_size > next {
            pending.insert(cp_size, (cp_root, push.checkpoint.clone()));
        }
        let mut next_seq = st.next_seq.clone();
        let mut new: Vec<NewSeg> = Vec::new();
        let mut findings = Vec::new();
        for (k, bytes) in push.segments.iter().enumerate() {
            let index = push.from_index + k as u64;
            let seg = Segment::decode(bytes).map_err(|e| {
                use sha2::{Digest, Sha256};
                evidence(Finding::BadSegment {
                    origin,
                    index,
                    why: e.to_string(),
                    sha256: Sha256::digest(bytes).into(),
                })
            })?;
            if seg.header.origin != origin {
                return Err(evidence(Finding::ForeignSegment {
                    origin,
                    index,
                    named: seg.header.origin,
                }));
            }
            let leaf = seg.leaf();
            let leaf_hash = merkle::leaf_hash(&leaf);
            if index < next {
                if let Some(held) = st.segments.get(&index) {
                    if held.leaf != leaf_hash {
                        return Err(evidence(Finding::Equivocation {
                            origin,
                            index,
                            held_leaf: held.leaf,
                            pushed: bytes.to_vec(),
                        }));
                    }
                }
                // Held (or expired by retention: its leaf is in the
                // tiles, which a later checkpoint check covers).
                continue;
            }
            let h = seg.header;
            let expected = next_seq.get(&h.source).copied().unwrap_or(0);
            if h.seq != expected {
                findings.push(Finding::Sequence {
                    origin,
                    index,
                    source_name: h.source.clone(),
                    expected,
                    got: h.seq,
                });
            }
            next_seq.insert(h.source.clone(), h.seq.saturating_add(1).max(expected));
            new.push(NewSeg {
                index,
                bytes: bytes.to_vec(),
                leaf,
                info: SegInfo {
                    source: h.source.clone(),
                    sealed: h.sealed,
                    len: bytes.len() as u64,
                    leaf: leaf_hash,
                },
            });
        }
        // Append in chunks that end at each checkpoint size the new leaves
        // reach, and check the root there.
        let mut log = st.log.clone();
        let mut tiles: Vec<merkle::TileWrite> = Vec::new();
        let mut verified = None;
        let new_end = next + new.len() as u64;
        let stops: Vec<u64> = if new.is_empty() {
            Vec::new()
        } else {
            pending
                .range(next + 1..=new_end)
                .map(|(s, _)| *s)
                .chain(std::iter::once(new_end))
                .collect()
        };
        let leaf_hashes: Vec<Hash> = new.iter().map(|s| s.info.leaf).collect();
        let mut at = 0usize;
        for stop in stops {
            let upto = (stop - next) as usize;
            if upto > at {
                let refs: Vec<&[u8]> = new[at..upto].iter().map(|s| s.leaf.as_slice()).collect();
                let (_, w) = log.append_batch(&refs).map_err(|e| Refusal::Invalid {
                    origin,
                    why: format!("appending to the replica's Merkle log: {e}"),
                })?;
                // a later chunk may complete a tile an earlier one wrote
                // partially: both paths are kept (write once, as the spool)
                tiles.extend(w);
                at = upto;
            }
            if let Some((root, note)) = pending.get(&stop) {
                let got = log.root().map_err(|e| Refusal::Invalid {
                    origin,
                    why: e.to_string(),
                })?;
                if got != *root {
                    return Err(fork(origin, stop, note, got, next, &leaf_hashes[..upto]));
                }
                verified = Some((stop, *root, note.clone()));
            }
        }
        // A push of nothing new with the checkpoint of the size held: the
        // probe an origin sends, checked too.
        if cp_size == log.size() && verified.is_none() && cp_size != st.verified.0 {
            let got = log.root().map_err(|e| Refusal::Invalid {
                origin,
                why: e.to_string(),
            })?;
            if got != cp_root {
                return Err(fork(
                    origin,
                    cp_size,
                    &push.checkpoint,
                    got,
                    next,
                    &leaf_hashes,
                ));
            }
            verified = Some((cp_size, cp_root, push.checkpoint.clone()));
        }
        let size = log.size();
        pending.retain(|s, _| *s > size);
        while pending.len() > MAX_PENDING {
            pending.pop_last();
        }
        Ok(Plan {
            log,
            new,
            tiles,
            next_seq,
            verified,
            pending,
            findings,
        })
    }

    /// Applies retention to every origin: the deletions to perform, and a
    /// notice for each.
    pub fn expire(&mut self, now: Millis) -> (Vec<Write>, Vec<Notice>) {
        let mut writes = Vec::new();
        let mut notices = Vec::new();
        let limits = self.limits;
        for (origin, st) in self.origins.iter_mut() {
            for index in usage::expired(&st.segments, st.verified.0, &limits, now) {
                if let Some(info) = st.segments.remove(&index) {
                    st.acct.segment_removed(info.len);
                    writes.push(Write::Delete {
                        path: segment_path(origin, index),
                    });
                    notices.push(Notice::Deleted {
                        origin: *origin,
                        index,
                        source: info.source,
                    });
                }
            }
            notices.extend(st.acct.warning(*origin, &limits));
        }
        (writes, notices)
    }

    /// When [`ReplicaStore::expire`] has work next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.origins
            .values()
            .filter_map(|st| usage::next_expiry(&st.segments, st.verified.0, &self.limits))
            .min()
    }

    /// Rebuilds `origin`'s replica from its files (the driver reads
    /// `replicas/<origin>/`): the checkpoint, the tiles by C2SP path
    /// (`tiles_bytes` their total size), and the segment files by index.
    ///
    /// The checkpoint must be the origin's, every tile must be the one the
    /// checkpoint's leaves imply ([`merkle::read_log`]), and every segment
    /// under it must be genuine and be its leaf: anything else is a
    /// [`LoadError`] (tampering; nothing is built on it). Segments beyond
    /// the checkpoint (written by a push whose checkpoint was still ahead)
    /// are appended again if they continue the log; the first that does
    /// not, and all after it, are deleted (the origin pushes them again).
    pub fn load<T: TileStore + ?Sized>(
        &mut self,
        origin: NodeId,
        checkpoint_note: Option<&[u8]>,
        tiles: &T,
        tiles_bytes: u64,
        segments: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<Loaded, LoadError> {
        if self.origins.contains_key(&origin) {
            return Err(LoadError::Twice { origin });
        }
        let mut st = OriginLog::new(origin);
        let mut out = Loaded::default();
        let (size, root) = match checkpoint_note {
            Some(note) => {
                let v = checkpoint::open(note, &origin)
                    .map_err(|why| LoadError::Checkpoint { origin, why })?;
                st.acct.checkpoint_written(note.len() as u64);
                v
            }
            None => (0, tlog_tiles::EMPTY_HASH),
        };
        let tiles_err = |why| LoadError::Tiles { origin, why };
        let leaves = merkle::read_log(size, root, tiles).map_err(tiles_err)?;
        st.log = MerkleLog::resume(origin, size, root, tiles).map_err(tiles_err)?;
        st.verified = (size, root);
        st.verified_note = checkpoint_note.map(<[u8]>::to_vec).unwrap_or_default();
        st.acct.tile_added("", tiles_bytes);
        let mut tail: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (index, bytes) in segments {
            if index >= size {
                tail.insert(index, bytes);
                continue;
            }
            let bad = |why: String| LoadError::Segment { origin, index, why };
            let seg = Segment::decode(&bytes).map_err(|e| bad(e.to_string()))?;
            if seg.header.origin != origin {
                return Err(bad(format!("it names {} as its origin", seg.header.origin)));
            }
            let leaf = merkle::leaf_hash(&seg.leaf());
            if Some(&leaf) != leaves.get(index as usize) {
                return Err(bad(
                    "its leaf hash is not the log's leaf at this index".into()
                ));
            }
            st.hold(index, seg.header, bytes.len() as u64, leaf);
        }
        // The tail: contiguous, genuine, the origin's.
        let mut again: Vec<(u64, Vec<u8>, Segment)> = Vec::new();
        let mut broken: Option<String> = None;
        for (index, bytes) in tail {
            let why = if broken.is_some() {
                broken.clone()
            } else if index != size + again.len() as u64 {
                Some(format!(
                    "after a hole (index {} was due)",
                    size + again.len() as u64
                ))
            } else {
                match Segment::decode(&bytes) {
                    Err(e) => Some(format!("does not decode: {e}")),
                    Ok(s) if s.header.origin != origin => {
                        Some(format!("names {} as its origin", s.header.origin))
                    }
                    Ok(s) => {
                        again.push((index, bytes, s));
                        None
                    }
                }
            };
            if let Some(why) = why {
                broken.get_or_insert_with(|| why.clone());
                out.writes.push(Write::Delete {
                    path: segment_path(&origin, index),
                });
                out.notices.push(Notice::Discarded { origin, index, why });
            }
        }
        if !again.is_empty() {
            let leaves: Vec<Vec<u8>> = again.iter().map(|(_, _, s)| s.leaf()).collect();
            let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
            let (_, w) = st.log.append_batch(&refs).map_err(tiles_err)?;
            for t in w {
                out.writes.push(Write::Tile {
                    path: tile_path(&origin, &t.path),
                    bytes: t.bytes,
                });
            }
            out.writes.push(Write::Sync);
            for ((index, bytes, s), leaf) in again.into_iter().zip(&leaves) {
                st.hold(index, s.header, bytes.len() as u64, merkle::leaf_hash(leaf));
            }
        }
        out.notices.extend(st.acct.warning(origin, &self.limits));
        self.origins.insert(origin, st);
        Ok(out)
    }
}
