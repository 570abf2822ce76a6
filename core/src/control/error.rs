//! Why a control request got no reply: the daemon's refusals, and the
//! client's own failures to reach it, in one type the CLI matches on.

use serde::{Deserialize, Serialize};

use crate::lookup::FindError;
use crate::node::members::{InviteError, RevokeError};

/// A control request that failed. The daemon's variants travel over the
/// socket; the client's (`Daemon*`, `Garbled`, `TooLong`, `WrongReply`,
/// `Io`) are made on the CLI's side. Each message is what the admin reads,
/// so the variants keep the wording the daemon always used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum CtlError {
    // --- the way to the daemon ---
    #[error("cannot reach keywardd at {socket}: {reason}; is it running? (systemctl status keywardd, or start it with `keywardd --config ...`)")]
    DaemonDown { socket: String, reason: String },
    #[error("keywardd did not answer within {secs} s: {reason}")]
    DaemonSilent { secs: u64, reason: String },
    /// The daemon took the request but its event loop gave no answer.
    #[error("keywardd gave no answer in time")]
    DaemonBusy,
    #[error("garbled answer from keywardd: {0}")]
    Garbled(String),
    #[error("keywardd's answer is longer than {max} bytes; it was not read")]
    TooLong { max: usize },
    /// A reply of another kind than the request calls for.
    #[error("keywardd answered a {request} request with a {reply} reply")]
    WrongReply { request: String, reply: String },
    #[error("{0}")]
    Io(String),
    /// The daemon could not parse the request line.
    #[error("bad control request: {0}")]
    BadRequest(String),

    // --- this node's place in the mesh ---
    #[error("not in a mesh")]
    NotInMesh,
    /// Why no invite was issued.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// Why the revocation was not made.
    #[error(transparent)]
    Revoke(#[from] RevokeError),
    #[error("this node is not an active guardian: auditors can deny and lock down, but approving and lifting a lockdown are done on a guardian")]
    NotGuardian,

    // --- the request's arguments ---
    #[error("{0}")]
    BadToken(String),
    #[error("the invite names an invalid inviter")]
    InvalidInviter,
    #[error("boot public keys must be 64 hex digits")]
    BadBootKey,
    #[error("bad envelope: {0}")]
    BadEnvelope(String),
    #[error("envelope not made by this node")]
    ForeignEnvelope,

    // --- naming a node ---
    #[error("no member named `{who}` (see `keyward peers`)")]
    UnknownNode { who: String },
    #[error("no active member named `{who}` (see `keyward peers`)")]
    NoActiveMember { who: String },
    /// `candidates` as the lookup lists them, one per line.
    #[error("`{who}` names {} nodes; nothing was done. Repeat the command with the id of the one you mean:\n  {}", .candidates.len(), .candidates.join("\n  "))]
    Ambiguous {
        who: String,
        candidates: Vec<String>,
    },

    // --- joining ---
    #[error("{}", if *.same { "this node is already in that mesh" } else { "this node is already in another mesh" })]
    AlreadyInMesh { same: bool },
    #[error("this invite has expired; ask for a new one: keyward invite")]
    InviteExpired,
    #[error("join refused by the inviter: {reason}")]
    JoinRefused { reason: String },
    #[error("could not reach the inviter ({peer}): {reason}")]
    InviterUnreachable { peer: String, reason: String },
    #[error("the inviter answered for another mesh than the token names")]
    InviterWrongMesh,
    #[error("the inviter answered but this node is not in its roster")]
    NotAdmitted,
    #[error("unexpected answer from the inviter")]
    InviterConfused,

    // --- asking one member (audit fetch) ---
    #[error("could not reach {peer}: {reason}")]
    PeerUnreachable { peer: String, reason: String },
    #[error("{peer} refused: {reason}")]
    PeerRefused { peer: String, reason: String },
    #[error("{peer} answered with something else than was asked")]
    PeerConfused { peer: String },

    // --- revoking ---
    /// The daemon's database failed.
    #[error("{0}")]
    Store(String),
}

impl From<FindError> for CtlError {
    fn from(e: FindError) -> Self {
        match e {
            FindError::NotFound(who) => CtlError::UnknownNode { who },
            FindError::Ambiguous { who, candidates } => CtlError::Ambiguous {
                who,
                candidates: candidates
                    .iter()
                    .map(|c| c.to_string().trim_end().to_string())
                    .collect(),
            },
        }
    }
}
