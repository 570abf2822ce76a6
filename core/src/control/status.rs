//! `keyward status`: what the daemon knows of this node, its mesh and
//! every member. The JSON field names are those `keyward status --json`
//! has always printed; fields are declared in alphabetical order, the
//! order that output always had.

use serde::{Deserialize, Serialize};

use crate::guardian::Policy;
use crate::roster::Role;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Newest last.
    pub alerts: Vec<AlertStatus>,
    pub clock: ClockStatus,
    /// The last release decisions of this node as a guardian, newest first.
    pub decisions: Vec<DecisionStatus>,
    /// This node's listen addresses, each ending in /p2p/ID.
    pub listen: Vec<String>,
    pub lockdown: Option<LockdownStatus>,
    /// The log spool's disk use; absent when logging is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsStatus>,
    /// Active members, this node included.
    pub members: Vec<MemberStatus>,
    pub mesh: Option<MeshStatus>,
    pub node: NodeStatus,
    pub policy: Policy,
    /// Logs part 2: this node's own log as its replicas hold and witness
    /// it, and the other origins' logs kept here; absent when this node
    /// neither logs nor keeps replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationStatus>,
    /// Ids of the revoked nodes.
    pub revoked: Vec<String>,
    pub strangers: StrangersStatus,
}

impl Status {
    /// The active member with this id.
    pub fn member(&self, id: &str) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The active member with this name (the first, if several share it).
    pub fn member_named(&self, name: &str) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertStatus {
    pub at_ms: u64,
    pub text: String,
}

/// Whether the wall clock is behind what this node has already seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStatus {
    pub behind_ms: u64,
    pub sane: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionStatus {
    pub at_ms: u64,
    /// The owner's name, or its id if it is no member.
    pub owner: String,
    pub reason: String,
    pub released: bool,
    pub rule: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockdownStatus {
    /// Id of the member that set it.
    pub by: String,
    pub by_name: Option<String>,
    pub since_ms_ago: u64,
}

/// Logs part 2 as this node sees it (`Status::replication`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Leaves in this node's own log (its latest durable checkpoint), and
    /// how many of them R replicas hold (what `ack = "replicated"` waits
    /// for).
    pub size: u64,
    pub replicated: u64,
    /// This node's replicas (which are also its witnesses).
    pub replicas: Vec<ReplicaStatus>,
    /// Other origins' logs this node keeps or witnesses.
    pub kept: Vec<KeptLogStatus>,
}

/// One replica of this node's own log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: String,
    pub name: Option<String>,
    /// Leaves it said it holds (None: not heard from yet).
    pub held: Option<u64>,
    /// The size of the checkpoint it last cosigned, and how long ago.
    pub cosigned: Option<u64>,
    pub cosigned_ms_ago: Option<u64>,
}

/// Another origin's log kept or witnessed here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptLogStatus {
    pub origin: String,
    pub name: Option<String>,
    /// Leaves held here (0: witnessed only).
    pub held: u64,
    /// The size of its checkpoint this node last cosigned.
    pub witnessed: Option<u64>,
}

/// The log spool against its quota (keywardd fills it in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsStatus {
    pub quota_bytes: u64,
    /// Lines refused because the spool was full, since keywardd started.
    pub refused_lines: u64,
    /// Segments in the spool, and leaves in its Merkle log.
    pub segments: u64,
    pub logged: u64,
    pub used_bytes: u64,
    /// Set when the use is over `warn_percent` of the quota.
    pub warning: Option<String>,
    pub warn_percent: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Addresses this node reached it at.
    pub addrs: Vec<String>,
    /// Hex of its boot key's signing half.
    pub boot: String,
    /// Connected to this node now (always true for this node itself).
    pub connected: bool,
    /// Holds shares of this node (it said so).
    #[serde(default)]
    pub guards_me: bool,
    /// One of this node's gossip neighbours (it keeps a connection to it).
    #[serde(default)]
    pub gossip: bool,
    /// This node tried to reach it as a gossip neighbour and could not.
    #[serde(default)]
    pub unreachable: bool,
    /// Epochs of its envelopes this node holds as its guardian.
    pub holds_shares_epochs: Vec<u64>,
    pub id: String,
    pub last_seen_ms_ago: Option<u64>,
    /// This is the node answering.
    pub me: bool,
    pub name: String,
    #[serde(with = "super::role_name")]
    pub role: Role,
    /// Proved liveness within the up window (its boot key must not be
    /// in use).
    pub up: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// Hex of the roster digest; equal digests mean equal rosters.
    pub digest: String,
    pub founder: Option<String>,
    pub id: String,
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub active: bool,
    pub id: String,
    pub name: String,
    pub revoked: bool,
}

/// Requests and connections from non-members this node refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrangersStatus {
    /// Stranger connections held open now.
    pub connections: usize,
    /// The owner the last refused request named, as decisions name it.
    pub last_owner: Option<String>,
    pub last_refused_ms_ago: Option<u64>,
    pub last_rule: Option<String>,
    pub refused_connections: u64,
    pub refused_requests: u64,
}

/// As one line of JSON: for logs and failed assertions.
impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| std::fmt::Error)?)
    }
}

/// As one line of JSON: for logs and failed assertions.
impl std::fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| std::fmt::Error)?)
    }
}
