//! Logs part 2 in the node: replicating this node's own log to its
//! replica peers and having them witness it (the origin side), and keeping
//! and witnessing other members' logs (the replica side). The sans-IO
//! cores are `log::replica` and `log::witness`; this is what drives them
//! from the node's inputs, requests and timers.
//!
//! - `origin`: this node's own log. The driver says when a checkpoint of
//!   it is durable ([`super::Input::LogCheckpointed`]); the replicas are
//!   chosen from the roster (`replica::placement`) and chosen again when it
//!   changes; the [`ReplicationTracker`] says what to push to each, the
//!   driver reads the segments ([`super::Output::ReadLog`]) so the node
//!   never holds the log, and the replicated size goes back to the driver
//!   ([`super::Output::Replicated`]). Every witness interval the
//!   checkpoint goes to each replica with a consistency proof from the
//!   size it last cosigned.
//! - `keep`: pushes and add-checkpoint requests from other origins,
//!   answered only once what they change is durable.
//! - `gossip`: witnesses of the same origin tell each other what they
//!   cosigned, so an origin that showed them different histories is
//!   found out (the C2SP tlog-witness gossip the issue asks for).
//! - `peers`: whom the logs keep connections to (the overlay's log
//!   peers): this node's replicas, the origins it keeps, their other
//!   replicas.
//! - `findings`: what a replica or witness finds against an origin,
//!   as an alert (`keyward status`, the journal) with its evidence kept.
//! - `silence`: an origin that is up but whose log stopped growing.
//! - `audit`: serving auditor members the logs this node holds (its own
//!   and its replicas) for `keyward audit fetch`, and this node's side
//!   of a fetch when it is the auditor's.

mod audit;
mod findings;
pub mod gossip;
mod keep;
mod origin;
mod peers;
pub mod reads;
mod silence;

pub use silence::SILENCE_AFTER;

use std::collections::{BTreeMap, BTreeSet};

use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::log::merkle::Hash;
use crate::log::replica::store::ReplicaStore;
use crate::log::replica::tracker::ReplicationTracker;
use crate::log::witness::Witness;

use super::io::ReadId;

/// How often an origin asks its witnesses to cosign (default).
pub const WITNESS_INTERVAL: Millis = 60_000;
/// A push or an add-checkpoint that got no answer is tried again after
/// this long.
pub const RETRY_AFTER: Millis = 5_000;
/// A replica whose quota is full, or that refused, is tried again after
/// this long.
pub const RETRY_FULL: Millis = 60_000;
/// Conflicts answered in a row before an origin stops retrying a witness
/// until the next interval.
const MAX_CONFLICTS: u8 = 2;

/// How the driver sets the node's logs up ([`super::Node::set_logs`]).
pub struct LogsSetup {
    /// This node keeps a log of its own (its spool is on): replicate it
    /// to this many peers (0: not at all).
    pub replicas: usize,
    /// How often its witnesses are asked to cosign.
    pub witness_interval: Millis,
    /// Other origins' logs this node keeps, as loaded from its files
    /// (None: it keeps none, and refuses pushes).
    pub store: Option<ReplicaStore>,
    /// The witness, as loaded from its state files (None: it cosigns
    /// nothing). A driver that finds no state where the node already had
    /// some must not hand a fresh one (see `log::witness::state`).
    pub witness: Option<Witness>,
    /// An origin kept here that is up but whose log has not grown for
    /// this long is reported silent (0: never).
    pub silence_after: Millis,
    /// Why the driver could not turn a part on (a replica or the
    /// witness state that does not verify): alerts in `keyward status`.
    pub problems: Vec<String>,
}

/// One replica's witness exchange, as the origin sees it.
#[derive(Debug, Default, Clone)]
pub(crate) struct WitnessPeer {
    /// The size it last cosigned (or said it did, in a conflict).
    pub last: Option<u64>,
    /// The note it last cosigned, with its cosignature line, and when
    /// this node got it.
    pub note: Vec<u8>,
    pub cosigned_at: Option<Millis>,
    pub in_flight: bool,
    pub conflicts: u8,
}

/// This node's own log, replicated and witnessed.
pub(crate) struct OriginSide {
    pub tracker: ReplicationTracker,
    /// The latest durable checkpoint: size, root, note.
    pub checkpoint: Option<(u64, Hash, Vec<u8>)>,
    pub witnesses: BTreeMap<NodeId, WitnessPeer>,
    /// Replicas not to push to before this time (no answer, full).
    pub backoff: BTreeMap<NodeId, Millis>,
    pub interval: Millis,
    pub next_witness: Millis,
    /// The replicated size last told to the driver.
    pub reported: u64,
}

impl OriginSide {
    /// No add-checkpoint to `peer` is under way any more (it was
    /// dropped before it went out): the next round asks again.
    pub fn witness_idle(&mut self, peer: &NodeId) {
        if let Some(w) = self.witnesses.get_mut(peer) {
            w.in_flight = false;
        }
    }
}

/// A read of the own log the node waits for, and what it is for.
#[derive(Debug, Clone)]
pub(crate) enum Read {
    Push {
        peer: NodeId,
        from: u64,
    },
    Proof {
        peer: NodeId,
        old: u64,
        size: u64,
    },
    /// A prefix proof from this node's replica of `origin`, to compare
    /// with the checkpoint `note` that `peer` said it cosigned.
    Prefix {
        origin: NodeId,
        peer: NodeId,
        note: Vec<u8>,
    },
}

/// A request sent for the logs, and what its answer is for.
#[derive(Debug, Clone)]
pub(crate) enum Sent {
    Push {
        peer: NodeId,
    },
    Witness {
        peer: NodeId,
        size: u64,
    },
    /// This witness told `peer` what it cosigned of `origin`.
    Seen {
        peer: NodeId,
        origin: NodeId,
    },
}

/// What a write of the logs' files is for, when durable.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kept {
    /// A replica of this origin's log.
    Replica(NodeId),
    /// A cosignature of this origin's checkpoint.
    Witness(NodeId),
}

/// The node's logs state.
#[derive(Default)]
pub(crate) struct Logs {
    /// The time of the input being handled (for work the roster's
    /// changes start, which is not handed the time).
    pub now: Millis,
    pub origin: Option<OriginSide>,
    /// The size of this node's own log at its latest durable checkpoint
    /// (whether or not it is replicated), for auditors' fetches.
    pub own_size: Option<u64>,
    pub store: Option<ReplicaStore>,
    pub witness: Option<Witness>,
    /// Why keeping replicas stopped (a write failed: memory is ahead of
    /// the disk until a restart reloads it).
    pub store_off: Option<String>,
    /// Why witnessing stopped (a state write failed).
    pub witness_off: Option<String>,
    pub reads: BTreeMap<ReadId, Read>,
    pub next_read: u64,
    /// Origins whose prefix proof (`Read::Prefix`) is being read: one at
    /// a time each, so a peer's gossip cannot queue up disk reads.
    pub proving: BTreeSet<NodeId>,
    /// When a prefix proof was last read for each origin (bounded by the
    /// origins this node witnesses).
    pub proved_at: BTreeMap<NodeId, Millis>,
    /// The log peers, as last computed (`peers`).
    pub peers: BTreeSet<NodeId>,
    /// Evidence already kept, by its hash, so each is reported once.
    pub reported: BTreeSet<[u8; 32]>,
    /// Origins kept here, watched for silence.
    pub silence: silence::Silence,
    /// How many replicas an origin has (this node's `[logs] replicas`,
    /// at least the default 2): whether this node is still one of an
    /// origin's replicas, for silence.
    pub origin_replicas: usize,
}

impl Logs {
    /// When the logs' timed work is next due.
    pub fn next_deadline(&self) -> Millis {
        let mut t = Millis::MAX;
        if let Some(o) = &self.origin {
            if o.checkpoint.is_some() && !o.tracker.replicas().is_empty() {
                t = t.min(o.next_witness);
            }
            if let Some(b) = o.backoff.values().min() {
                t = t.min(*b);
            }
        }
        if let Some(s) = &self.store {
            if let Some(e) = s.poll_timeout() {
                t = t.min(e);
            }
        }
        t.min(self.silence.next_deadline())
    }
}

/// What `keyward status` and tests read of the logs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogsView {
    /// This node's own log: the durable checkpoint's size, and what R
    /// replicas hold.
    pub size: u64,
    pub replicated: u64,
    /// Its replicas, each with what it said it holds and the size it last
    /// cosigned.
    pub replicas: Vec<(NodeId, Option<u64>, Option<u64>)>,
    /// Other origins' logs kept here: origin, leaves held.
    pub held: Vec<(NodeId, u64)>,
    /// Origins witnessed here: origin, size last cosigned.
    pub witnessed: Vec<(NodeId, u64)>,
    /// When each replica's last cosignature came in (this node's clock).
    pub cosigned_at: BTreeMap<NodeId, Millis>,
}
