//! The daemon's replies, one type per request (see [`CtlReply`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::status::Status;
use crate::roster::Role;

/// What the daemon answers to a request that succeeded. Which variant
/// answers which request:
///
/// | request                              | reply                   |
/// |--------------------------------------|-------------------------|
/// | `Status`                             | `Status`                |
/// | `Invite`                             | `Invited`               |
/// | `Join`                               | `Joined`                |
/// | `Revoke`                             | `Revoked`               |
/// | `Approve`, `Deny`, `Lockdown`, `Lift`| `Admin`                 |
/// | `Rekey`                              | `Rekeyed`               |
/// | `Deposit`, `Drop`, `Held`            | `Guardians`             |
/// | `LogHolding`                         | `LogHolding`            |
/// | `LogFetch`                           | `LogPiece`              |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlReply {
    Status(Box<Status>),
    Invited(Invited),
    Joined(Joined),
    Revoked(Revoked),
    Admin(AdminSent),
    Rekeyed,
    Guardians(GuardianResults),
    LogHolding(Vec<HeldLog>),
    LogPiece(LogPiece),
}

impl CtlReply {
    /// The reply's name on the wire, for messages about it.
    pub fn name(&self) -> &'static str {
        match self {
            CtlReply::Status(_) => "status",
            CtlReply::Invited(_) => "invited",
            CtlReply::Joined(_) => "joined",
            CtlReply::Revoked(_) => "revoked",
            CtlReply::Admin(_) => "admin",
            CtlReply::Rekeyed => "rekeyed",
            CtlReply::Guardians(_) => "guardians",
            CtlReply::LogHolding(_) => "log_holding",
            CtlReply::LogPiece(_) => "log_piece",
        }
    }
}

/// A one-time invite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invited {
    /// What `keyward join` takes.
    pub token: String,
    pub expires_unix: u64,
    #[serde(with = "super::role_name")]
    pub role: Role,
}

/// The mesh this node just joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub mesh: Option<String>,
    pub mesh_name: Option<String>,
    /// Active members, this node included.
    pub members: usize,
}

/// What a revocation did besides revoking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// The revoked node's id.
    pub revoked: String,
    /// Names of the nodes the revoked one had admitted that this node
    /// admitted again, so they stay in.
    pub re_endorsed: Vec<String>,
    /// Names of the nodes that leave with it (`--cascade`, or this node).
    pub dropped: Vec<String>,
    /// Ids of the nodes the revoked one had revoked, revoked again from
    /// here so they stay out (its revocations count for nothing now).
    pub revocations_kept: Vec<String>,
}

/// A signed admin message (approve, deny, lockdown, lift) was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSent {
    /// Approve only: how many distinct admins must approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_needed: Option<u32>,
    /// Approve only: why this approval will not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// One guardian's answer to a request fanned out to several (deposit,
/// drop, held).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardianAnswer {
    /// Done and durable: the envelope is stored, or the epochs dropped.
    Ok,
    /// Held: the epochs of this node's envelopes the guardian holds.
    Held { epochs: Vec<u64> },
    /// The guardian said no, and why.
    Refused { reason: String },
    /// The guardian answered something else than the request calls for.
    Unexpected,
    /// No answer reached this node.
    Unreachable { reason: String },
}

impl fmt::Display for GuardianAnswer {
    /// As the CLI has always printed a guardian's result.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardianAnswer::Ok => f.write_str("ok"),
            GuardianAnswer::Held { epochs } => write!(f, "holds epochs {epochs:?}"),
            GuardianAnswer::Refused { reason } => write!(f, "refused: {reason}"),
            GuardianAnswer::Unexpected => f.write_str("unexpected answer"),
            GuardianAnswer::Unreachable { reason } => write!(f, "unreachable: {reason}"),
        }
    }
}

/// Every asked guardian's answer, by guardian id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardianResults {
    pub results: BTreeMap<String, GuardianAnswer>,
}

impl GuardianResults {
    /// Whether `guardian` acknowledged (stored, or dropped).
    pub fn acked(&self, guardian: &str) -> bool {
        matches!(self.results.get(guardian), Some(GuardianAnswer::Ok))
    }

    /// Why `guardian` did not acknowledge, as the CLI prints it: its
    /// refusal or failure, or "no answer" (not asked, or an answer that
    /// does not fit an acknowledgement).
    pub fn why_not(&self, guardian: &str) -> String {
        match self.results.get(guardian) {
            None | Some(GuardianAnswer::Held { .. }) => "no answer".into(),
            Some(a) => a.to_string(),
        }
    }
}

/// One origin whose log a member holds (`keyward audit fetch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLog {
    /// The origin's node id.
    pub origin: String,
    /// Leaves held: `0..size`.
    pub size: u64,
}

/// One piece of an origin's log, as a member sent it: nothing in it is
/// trusted before `keyward audit verify` checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogPiece {
    /// Bytes of a file from the asked offset (base64), and the file's
    /// whole length.
    File { data: String, total: u64 },
    /// Notes with witness cosignatures (base64 each).
    Notes { notes: Vec<String> },
}
