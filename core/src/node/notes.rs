//! What the node tells its journal, as typed events: the driver picks the
//! level and the words (keywardd: `tracing`; the simulator: its trace), so
//! the decision of *whether* to say something (throttles, first sightings)
//! stays here and the wording stays with the journal.

use crate::guardian::{Decision, Millis};
use crate::identity::NodeId;
use crate::proto::AdminKind;
use crate::roster::Role;

use super::admin::{AdminRefusal, RecordedAlert};
use super::decisions::Logged;

#[derive(Debug, Clone)]
pub enum Note {
    /// The clock is behind the newest time this guardian wrote down (or
    /// its build date): releases are refused until it is right.
    ClockBehind {
        by: Millis,
    },
    /// A stored roster operation did not merge at start.
    StoredOpIgnored(String),
    /// A peer sent something bad (`strikes` so far); with `banned`, it is
    /// disconnected and refused for a while.
    Strike {
        peer: NodeId,
        strikes: u32,
        what: String,
        banned: bool,
    },
    /// A banned peer connected again and was sent away.
    RefusedBanned(NodeId),
    /// Connections refused: this one, and `more` since the last note.
    ConnectionRefused {
        from: String,
        cause: String,
        more: u64,
    },
    /// A gossip message from or via a non-member was ignored.
    GossipFromStranger {
        via: NodeId,
        author: Option<NodeId>,
    },
    /// A roster operation that did not merge.
    OpNotMerged(String),
    /// New members in the roster.
    MemberAdmitted {
        id: NodeId,
        name: String,
        role: Role,
    },
    /// A member left the roster; `me` when it is this node.
    MemberRevoked {
        id: NodeId,
        me: bool,
    },
    /// A sync answer brought `received` operations.
    Synced {
        peer: NodeId,
        received: usize,
    },
    SyncFailed {
        peer: NodeId,
        why: String,
    },
    /// An admin message refused (`loud`: from the future, worth a warning).
    AdminRefused {
        why: AdminRefusal,
        loud: bool,
    },
    Lockdown {
        on: bool,
        by: NodeId,
    },
    AdminDecision {
        kind: AdminKind,
        by: NodeId,
    },
    Alert(RecordedAlert),
    /// A share deposited with this guardian is held (durably).
    Holding {
        owner: NodeId,
        epoch: u64,
    },
    DepositRefused {
        from: NodeId,
        reason: String,
    },
    Dropping {
        owner: NodeId,
        epochs: Vec<u64>,
    },
    /// A share decision, with how the journal throttle logged it.
    Decision {
        decision: Decision,
        owner_name: String,
        requester: NodeId,
        logged: Logged,
    },
    JoinRefused {
        peer: NodeId,
        why: String,
    },
    AdmittedByInvite {
        id: NodeId,
        name: String,
    },
    InviteIssued {
        role: Role,
        expires_in_s: u64,
    },
    BootKeyReplaced,
    PeerGoingDown(NodeId),
    /// Something about logs replication or witnessing the admin should
    /// know (a replica full or refusing, a witness refusing).
    LogProblem(String),
    /// A replica's quota warning or retention.
    Replica(crate::log::replica::usage::Notice),
    /// A finding against an origin's log, recorded as an alert (its
    /// evidence goes out as `Output::Evidence`).
    LogAlert {
        text: String,
    },
    /// A write the node asked for failed.
    WriteFailed {
        what: &'static str,
        why: String,
    },
}
