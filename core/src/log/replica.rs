//! Replicas of other nodes' logs (logs part 2), sans IO.
//!
//! An origin pushes each sealed, checkpointed segment to R peers
//! ([`placement`]); each peer keeps what the origin's node key signed, in
//! the origin's own Merkle log layout, never overwrites it, and says what
//! it holds ([`wire::Held`]) only once the driver made it durable. The
//! origin tracks what every replica holds ([`tracker`]): that is what an
//! `ack = "replicated"` waits for, and what catch-up starts from (by
//! index, never by resending everything).
//!
//! - [`placement`]: which peers hold an origin's log (rendezvous hashing
//!   over the roster's guardians).
//! - [`wire`]: the bounded messages between origin and replica.
//! - [`store`]: the replica side, [`store::ReplicaStore`]: what it accepts,
//!   what it refuses with evidence ([`Finding`]), and restarting from its
//!   files.
//! - [`usage`]: per-origin disk accounting, quota, warnings and retention.
//! - [`tracker`]: the origin side, [`tracker::ReplicationTracker`].
//!
//! Nothing here touches a file, a socket or a clock: `now` is an argument
//! and every file change is a [`Write`] the driver performs.

pub mod placement;
pub mod store;
pub mod tracker;
pub mod usage;
pub mod wire;

#[cfg(test)]
mod tests;

use super::merkle::Hash;
use crate::identity::NodeId;

/// The directory of one origin's replica, relative to the logs directory.
pub fn origin_dir(origin: &NodeId) -> String {
    format!("replicas/{origin}")
}

/// Path of a held segment: the same `segments/<index, 20 digits>` name the
/// origin's spool uses, under the origin's directory.
pub fn segment_path(origin: &NodeId, index: u64) -> String {
    format!("{}/segments/{index:020}", origin_dir(origin))
}

/// Path of a hash tile; `tile` is its C2SP path ([`super::merkle::c2sp_path`]).
pub fn tile_path(origin: &NodeId, tile: &str) -> String {
    format!("{}/{tile}", origin_dir(origin))
}

/// Path of the origin's latest checkpoint this replica verified.
pub fn checkpoint_path(origin: &NodeId) -> String {
    format!("{}/checkpoint", origin_dir(origin))
}

/// A file change for the driver, performed in order. Every write of one
/// [`store::ReplicaStore::accept`] must be durable before the
/// [`wire::Held`] it returned is sent: `Held` is what lets the origin
/// acknowledge a line as "replicated", so it must never run ahead of the
/// disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A new segment file (tmp + rename). Never replaces a different file:
    /// the store only emits it for an index it did not hold.
    Segment { path: String, bytes: Vec<u8> },
    /// A hash tile (tmp + rename); if it exists it has the same bytes.
    Tile { path: String, bytes: Vec<u8> },
    /// Make every write above durable: fsync each file written and each
    /// directory whose entries changed. It comes before a checkpoint is
    /// replaced, so a checkpoint never names a leaf whose segment or tile
    /// could still vanish in a crash (a restart would then take the
    /// replica for tampered with), and at the end of a push.
    Sync,
    /// Replace the checkpoint (tmp + fsync + rename + directory fsync).
    Checkpoint { path: String, note: Vec<u8> },
    /// Delete a segment file (retention, or a leftover found at load).
    Delete { path: String },
}

/// What a replica reports about an origin, with the evidence it holds.
/// Each one that names a signature is transferable: anyone with the
/// origin's node id can check it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Finding {
    /// The authenticated sender pushed in another node's name.
    #[error(
        "{sender} pushed segments in the name of {claimed}: only an origin pushes its own log"
    )]
    NotSender { sender: NodeId, claimed: NodeId },
    /// A segment's header names another origin than the log it was pushed
    /// into (signed by `named`, if the signature verified).
    #[error("segment at index {index} of {origin}'s log names {named} as its origin")]
    ForeignSegment {
        origin: NodeId,
        index: u64,
        named: NodeId,
    },
    /// A segment that does not decode, or whose body hash or signature
    /// fails. `sha256` names the bytes received.
    #[error("segment at index {index} of {origin}'s log is not genuine: {why}")]
    BadSegment {
        origin: NodeId,
        index: u64,
        why: String,
        sha256: [u8; 32],
    },
    /// Two different segments, both signed by the origin, at one index:
    /// the held one (its file, and its leaf hash here) and `pushed`.
    #[error("{origin} signed two different segments at index {index}: equivocation")]
    Equivocation {
        origin: NodeId,
        index: u64,
        held_leaf: Hash,
        pushed: Vec<u8>,
    },
    /// The origin's signed checkpoint names another tree than the
    /// segments it pushed build: it showed this replica a different
    /// history. `leaves` are the leaf hashes from `first` on, up to the
    /// checkpoint's size, as this replica holds and was pushed them.
    #[error("{origin}'s checkpoint of size {size} does not match the segments it pushed: a forked history")]
    Fork {
        origin: NodeId,
        size: u64,
        checkpoint: Vec<u8>,
        computed_root: Hash,
        first: u64,
        leaves: Vec<Hash>,
    },
    /// Two checkpoints of one size with different roots, both signed by
    /// the origin.
    #[error(
        "{origin} signed two checkpoints of size {size} with different roots: a forked history"
    )]
    TwoCheckpoints {
        origin: NodeId,
        size: u64,
        first: Vec<u8>,
        second: Vec<u8>,
    },
    /// A source's sequence skips or repeats a number: lines the origin
    /// lost (a damaged journal is one honest cause) or logged twice. The
    /// segment is kept: it is part of the origin's signed log.
    #[error(
        "{origin}, source {source_name}: segment #{got} at index {index} where #{expected} was due"
    )]
    Sequence {
        origin: NodeId,
        index: u64,
        source_name: String,
        expected: u64,
        got: u64,
    },
}

impl Finding {
    /// The log it is about: for a push in another's name, the node named.
    pub fn origin(&self) -> NodeId {
        match self {
            Finding::NotSender { claimed, .. } => *claimed,
            _ => self.against(),
        }
    }

    /// Whom it is evidence against: for a push in another's name, the
    /// sender that pushed it; otherwise the origin that signed.
    pub fn against(&self) -> NodeId {
        match self {
            Finding::NotSender { sender, .. } => *sender,
            Finding::ForeignSegment { origin, .. }
            | Finding::BadSegment { origin, .. }
            | Finding::Equivocation { origin, .. }
            | Finding::Fork { origin, .. }
            | Finding::TwoCheckpoints { origin, .. }
            | Finding::Sequence { origin, .. } => *origin,
        }
    }
}
