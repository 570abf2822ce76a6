//! What goes into a [`super::Node`] and what comes out: the whole
//! contract between the node's decisions and a driver (keywardd over
//! libp2p and sled, or the simulator over its virtual network and disk).
//!
//! Peers are named by [`NodeId`]: a member's node key, or the boot key an
//! initramfs connects with. Requests, responses, control requests and
//! writes carry small ids the driver maps to its own handles.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::control::{CtlRequest, CtlResponse};
use crate::guardian::{Millis, OwnerState};
use crate::identity::NodeId;
use crate::log::merkle::Hash;
use crate::log::replica::Write as ReplicaWrite;
use crate::log::witness::{PrefixProof, WitnessWrite};
use crate::proto::{AdminMsg, Gossip, InviteRecord, Request, Response};
use crate::roster::{MeshId, OpId, SignedOp, Verified};

use super::notes::Note;

/// A peer's request the node must answer ([`Output::Respond`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InId(pub u64);

/// A request this node sent ([`Output::Send`]); its answer comes back as
/// [`Input::Response`] with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutId(pub u64);

/// A control request from the admin ([`Output::Reply`] answers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CtlId(pub u64);

/// A write the node waits for ([`Input::Written`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// A gossip message the driver holds until the node says whether to pass
/// it on ([`Output::Verdict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GossipId(pub u64);

/// A read of this node's own log the node waits for
/// ([`Output::ReadLog`], answered by [`Input::LogRead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// What the driver reads from this node's own log (its spool's files),
/// so the node never holds the log in memory.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRead {
    /// The encoded segments at leaf indices `from..to`, in order, as many
    /// as fit `max_bytes` (at least the first, whatever its size).
    Segments {
        from: u64,
        to: u64,
        max_bytes: usize,
    },
    /// The consistency proof from size `old` to the tree of `size` with
    /// `root` (`merkle::prove_consistency` over the spool's tiles).
    Proof { old: u64, size: u64, root: Hash },
    /// Not this node's own log but its replica of `origin`'s: the root of
    /// the first `from` leaves of the tree of `size` with `root`, and the
    /// consistency proof from it (`merkle::prove_prefix` over the
    /// replica's tiles). What a witness answers a fellow witness's
    /// checkpoint with (`Witness::observe_with_proof`).
    Prefix {
        origin: NodeId,
        from: u64,
        size: u64,
        root: Hash,
    },
}

/// What a [`LogRead`] read.
#[derive(Debug, Clone, PartialEq)]
pub enum LogData {
    Segments(Vec<Vec<u8>>),
    Proof(Vec<Hash>),
    Prefix(PrefixProof),
}

/// An event for the node. Every one is handled at a `now` the driver
/// passes with it.
#[derive(Debug)]
pub enum Input {
    /// The node listens on these addresses (as shown to others, with the
    /// peer id): what invites carry and status shows.
    Listening(Vec<String>),
    /// A connection to `peer` is up (the first one, or another).
    Connected { peer: NodeId },
    /// The last connection to `peer` closed.
    Closed { peer: NodeId },
    /// [`Output::Dial`] `peer` did not happen: the driver knows no
    /// address of it yet. Not a sign that it is unreachable (its record
    /// comes with a sync answer, or it dials us), so that dial does not
    /// count towards skipping it as a gossip neighbour.
    NoAddress { peer: NodeId },
    /// `peer` answered a ping on a connection (pings run only to the
    /// peers of the last [`Output::Liveness`]).
    Pinged { peer: NodeId },
    /// `peer` asks something; answer with [`Output::Respond`] `id`.
    Request {
        id: InId,
        from: NodeId,
        req: Request,
    },
    /// The answer to [`Output::Send`] `id` (`Err`: why there is none).
    Response {
        id: OutId,
        from: NodeId,
        result: Result<Response, String>,
    },
    /// A gossip message relayed by `via`, signed by `author`.
    Gossip {
        id: GossipId,
        via: NodeId,
        author: Option<NodeId>,
        msg: Result<Gossip, String>,
    },
    /// `peer` sent something that did not check out at the transport
    /// (a frame that did not decode, a peer record that did not verify).
    Misbehaved { peer: NodeId, what: String },
    /// The transport refused a connection (the gate, connection limits):
    /// `from` and `cause` as the driver words them.
    ConnectionRefused { from: String, cause: String },
    /// Roster operations the driver verified off its event loop
    /// ([`Output::Verify`]).
    Verified(Vec<Verified>),
    /// The admin asks something; answer with [`Output::Reply`] `id`.
    Control { id: CtlId, req: CtlRequest },
    /// [`Output::Write`] `id` is durable (or failed, and why).
    Written {
        id: WriteId,
        result: Result<(), String>,
    },
    /// This node's own log has a durable checkpoint of `size` leaves: the
    /// signed note, as the spool wrote it (after its barrier 2, so every
    /// segment under it is on disk). Its segments may now be replicated.
    LogCheckpointed { size: u64, checkpoint: Vec<u8> },
    /// The answer to [`Output::ReadLog`] `id`.
    LogRead {
        id: ReadId,
        result: Result<LogData, String>,
    },
}

/// Something the driver must do, in the order polled. A [`Output::Write`]
/// is committed before anything after it is acted on, with one allowance:
/// replica and witness writes, [`Output::ReadLog`] and [`Output::ServeLog`]
/// touch only log files, which nothing else reads or writes, so a driver
/// may do them on a queue of their own, in the order polled (keywardd's
/// `log_io` thread); the node acts on them only when [`Input::Written`] or
/// [`Input::LogRead`] comes back.
#[derive(Debug)]
pub enum Output {
    /// Connect to a member (by the addresses the driver knows for it).
    Dial(NodeId),
    /// Dial the configured bootstrap addresses.
    DialBootstrap,
    /// Close every connection to `peer`.
    Disconnect(NodeId),
    /// Send `req` to `to` (dialling first if not connected).
    Send { id: OutId, to: NodeId, req: Request },
    /// Answer request `id`.
    Respond { id: InId, response: Response },
    /// Publish on the mesh's gossip topic.
    Publish { mesh: MeshId, msg: Gossip },
    /// Whether to pass gossip message `id` on.
    Verdict { id: GossipId, accept: bool },
    /// Join the mesh's gossip topic (once the node knows its mesh).
    Subscribe(MeshId),
    /// The roster's members changed (or the node started): who the
    /// transport treats as members, and the boot keys it lets connect.
    /// Both sets are the roster's own, shared, not copies.
    Members {
        members: Arc<BTreeSet<NodeId>>,
        boots: Arc<BTreeSet<NodeId>>,
    },
    /// Ping these peers on every connection to them, now and whenever
    /// one connects, and no one else (answers come back as
    /// [`Input::Pinged`]). Sent when the set changes; until the first,
    /// nobody is pinged. Only guardians and wards need liveness, so a
    /// mesh's pings do not grow with its gossip connections.
    Liveness(Arc<BTreeSet<NodeId>>),
    /// Remember these addresses of `peer` for good (an invite's), and
    /// have them on disk before the next output.
    Pin { peer: NodeId, addrs: Vec<String> },
    /// Verify these roster operations' signatures off the event loop and
    /// hand them back as [`Input::Verified`] (a big sync answer would
    /// otherwise stall unlocks).
    Verify(Vec<SignedOp>),
    /// Commit `write` durably; with `id`, report [`Input::Written`].
    Write { id: Option<WriteId>, write: Write },
    /// Answer control request `id`.
    Reply { id: CtlId, response: CtlResponse },
    /// Tidy the transport's own state (strangers' addresses, address
    /// times on disk): the driver's share of the housekeeping timer.
    Housekeeping,
    /// Something the journal should say.
    Note(Note),
    /// Read from this node's own log and answer with [`Input::LogRead`].
    ReadLog { id: ReadId, read: LogRead },
    /// This many leaves of this node's own log are held durably by R
    /// replicas (it only grows while the replicas stay): what an `ack =
    /// "replicated"` waits for and what `drop-oldest-replicated` may drop.
    Replicated(u64),
    /// A witness cosigned this node's checkpoint: the note with its
    /// cosignature line, for the driver to keep (`cosigned/<witness>`).
    Cosigned {
        witness: NodeId,
        size: u64,
        note: Vec<u8>,
    },
    /// Answer peer request `id` (an auditor's fetch the node allowed)
    /// with a piece of a log file: `path` ([`FetchItem::path`]) under the
    /// own spool (`own`) or the origin's replica directory, at most
    /// `fetch::CHUNK` bytes from `offset`, as [`Response::LogFile`]; a
    /// file missing or unreadable is [`Response::Refused`] saying so.
    ///
    /// [`FetchItem::path`]: crate::log::fetch::FetchItem::path
    /// [`Response::LogFile`]: crate::proto::Response::LogFile
    /// [`Response::Refused`]: crate::proto::Response::Refused
    ServeLog {
        id: InId,
        origin: NodeId,
        own: bool,
        path: String,
        offset: u64,
    },
    /// Evidence against `origin`, to keep as a file (`evidence/<origin>/
    /// <at>-<what>`): `bytes` are self-contained (a `log-evidence` frame,
    /// or the push that carried the offence).
    Evidence {
        origin: NodeId,
        at: Millis,
        what: &'static str,
        bytes: Vec<u8>,
    },
}

/// Everything the node writes, in one place: the state directory's
/// schema. The store maps each to its tree.
#[derive(Debug, Clone)]
pub enum Write {
    /// Guardian state per owner (`guardian` tree, key: owner id).
    Owners(Vec<(NodeId, OwnerState)>),
    /// New roster operations and those compacted away (`roster` tree).
    Roster {
        put: Vec<SignedOp>,
        remove: Vec<OpId>,
    },
    /// The admin message that set the lock state (`approvals` tree, key
    /// `lock`).
    Lock(Box<AdminMsg>),
    /// An invite issued or spent (`invites` tree, key: invite id).
    Invite { id: [u8; 32], record: InviteRecord },
    /// Files of the replicas this node keeps, in order, with their
    /// barriers (`log::replica::Write`), under the logs directory.
    Replica(Vec<ReplicaWrite>),
    /// The witness's state files, in order (an origin's record before the
    /// index), each replaced durably (tmp, fsync, rename, directory
    /// fsync), under the logs directory's `witness/`.
    Witness(Vec<WitnessWrite>),
}

impl Write {
    /// What is written, for an error message.
    pub fn what(&self) -> &'static str {
        match self {
            Write::Owners(_) => "guardian state",
            Write::Roster { .. } => "roster operations",
            Write::Lock(_) => "lock state",
            Write::Invite { .. } => "invite",
            Write::Replica(_) => "replica files",
            Write::Witness(_) => "witness state",
        }
    }
}
