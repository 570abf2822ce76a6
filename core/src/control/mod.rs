//! The control API's types: what an admin asks a node and what it
//! answers. keywardd carries them as JSON lines over its control socket;
//! the node's decisions ([`crate::node::Node`]) take and give them, so the
//! daemon, the CLI and the simulator share one typed API and a reply is
//! read by field, never by a string key: a [`CtlRequest`] goes in, a
//! [`CtlResponse`] (a [`CtlReply`] or a [`CtlError`]) comes back.

mod error;
mod reply;
mod status;

pub use error::CtlError;
pub use reply::{
    AdminSent, CtlReply, GuardianAnswer, GuardianResults, HeldLog, Invited, Joined, LogPiece,
    Revoked,
};
pub use status::{
    AlertStatus, ClockStatus, DecisionStatus, KeptLogStatus, LockdownStatus, LogsStatus,
    MemberStatus, MeshStatus, NodeStatus, ReplicaStatus, ReplicationStatus, Status,
    StrangersStatus,
};

use serde::{Deserialize, Serialize};

use crate::log::fetch::FetchItem;
use crate::roster::Role;

/// Longest request or response line.
pub const MAX_LINE: usize = 8 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum CtlRequest {
    Status,
    Invite {
        role: Role,
        expires_secs: u64,
    },
    Join {
        token: String,
    },
    Revoke {
        who: String,
        cascade: bool,
        reason: String,
    },
    Approve {
        who: String,
    },
    Deny {
        who: String,
    },
    Lockdown,
    Lift,
    /// Deliver envelopes (base64 of their codec frames) to their guardians
    /// and wait for durable acknowledgements.
    Deposit {
        envelopes: Vec<String>,
    },
    /// Replace this node's boot key in the roster (signed by the node key).
    Rekey {
        sign: String,
        seal: String,
    },
    /// Tell guardians to forget this node's envelopes of these epochs.
    Drop {
        epochs: Vec<u64>,
        guardians: Vec<String>,
    },
    /// Ask every active guardian which epochs of this node's envelopes it
    /// holds; each answers with its epochs or why not.
    Held,
    /// `keyward audit fetch`: ask member `from` (a node id) which origins'
    /// logs it holds. Only an auditor member is answered.
    LogHolding {
        from: String,
    },
    /// `keyward audit fetch`: ask member `from` for one piece of
    /// `origin`'s log (both node ids).
    LogFetch {
        from: String,
        origin: String,
        item: FetchItem,
    },
}

impl CtlRequest {
    /// The request's name on the wire, for messages about it.
    pub fn name(&self) -> &'static str {
        match self {
            CtlRequest::Status => "status",
            CtlRequest::Invite { .. } => "invite",
            CtlRequest::Join { .. } => "join",
            CtlRequest::Revoke { .. } => "revoke",
            CtlRequest::Approve { .. } => "approve",
            CtlRequest::Deny { .. } => "deny",
            CtlRequest::Lockdown => "lockdown",
            CtlRequest::Lift => "lift",
            CtlRequest::Deposit { .. } => "deposit",
            CtlRequest::Rekey { .. } => "rekey",
            CtlRequest::Drop { .. } => "drop",
            CtlRequest::Held => "held",
            CtlRequest::LogHolding { .. } => "log_holding",
            CtlRequest::LogFetch { .. } => "log_fetch",
        }
    }
}

/// One answer line: the request's reply, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtlResponse {
    Ok(CtlReply),
    Err(CtlError),
}

impl From<Result<CtlReply, CtlError>> for CtlResponse {
    fn from(r: Result<CtlReply, CtlError>) -> Self {
        match r {
            Ok(v) => CtlResponse::Ok(v),
            Err(e) => CtlResponse::Err(e),
        }
    }
}

impl From<CtlError> for CtlResponse {
    fn from(e: CtlError) -> Self {
        CtlResponse::Err(e)
    }
}

/// Roles travel as the names the CLI shows (`guardian`, `auditor`), as
/// they did before these types existed, so `keyward status --json` keeps
/// its shape.
pub(crate) mod role_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::roster::Role;

    pub fn serialize<S: Serializer>(r: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(r)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
