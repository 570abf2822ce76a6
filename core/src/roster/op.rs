//! The signed operations a roster is made of, and the member records they
//! carry.
//!
//! A member's record (id, boot key, name, role) is signed by the member
//! itself (its *claim*) and then by whoever admits it. The claim is what
//! makes a record unforgeable by third parties: another member can endorse
//! a node, but never with a different boot key, name or role, because only
//! the node's own key can sign a record in its name.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{self, Wire};
use crate::identity::{BootPublic, NodeId, NodeKey, Sig};

const SIG_DOMAIN: &str = "roster op";
const CLAIM_DOMAIN: &str = "roster member claim";

/// A mesh's identity: 16 random bytes chosen by the founder.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MeshId(#[serde(with = "crate::identity::fixed")] pub [u8; 16]);

impl fmt::Display for MeshId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for MeshId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeshId({self})")
    }
}

/// What a member may do. Ordered by power: a member may admit others with
/// at most its own role, and auditors admit nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Holds shares of others and has its own disk bound.
    Guardian,
    /// Reads logs; holds no shares.
    Auditor,
}

impl Role {
    /// Whether a member of this role may admit others. A guardian may
    /// admit guardians and auditors (no role is above it); an auditor can
    /// only make releases stricter, so it admits nobody.
    pub fn may_admit(self) -> bool {
        self == Role::Guardian
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Guardian => "guardian",
            Role::Auditor => "auditor",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "guardian" => Ok(Role::Guardian),
            "auditor" => Ok(Role::Auditor),
            _ => Err(format!("unknown role `{s}` (use guardian or auditor)")),
        }
    }
}

/// What the roster records of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub boot: BootPublic,
    pub name: String,
    pub role: Role,
}

#[derive(Serialize)]
struct ClaimBody<'a> {
    mesh: MeshId,
    member: &'a Member,
}

impl Member {
    /// The member's own signature over its record in `mesh`, which every
    /// admission of it must carry.
    pub fn claim(&self, mesh: MeshId, key: &NodeKey) -> Sig {
        assert_eq!(self.id, key.id(), "a claim is signed by the member itself");
        key.sign(
            CLAIM_DOMAIN,
            &codec::signing_bytes(&ClaimBody { mesh, member: self }),
        )
    }

    pub fn verify_claim(&self, mesh: MeshId, sig: &Sig) -> bool {
        self.id
            .verify(
                CLAIM_DOMAIN,
                &codec::signing_bytes(&ClaimBody { mesh, member: self }),
                sig,
            )
            .is_ok()
    }
}

/// Names are shown to admins and used on the command line.
pub fn check_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "node name `{}` must be 1-63 characters of letters, digits, '-', '.', '_'",
            n.chars().take(70).collect::<String>()
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpBody {
    Found {
        mesh: MeshId,
        name: String,
        founder: Member,
    },
    /// `by` vouches for `member`. The first admission of a node consumes an
    /// invite; later ones (`invite: None`) re-endorse it, so it survives
    /// the revocation of whoever first admitted it.
    Admit {
        mesh: MeshId,
        member: Member,
        /// `member`'s own signature over its record (`Member::claim`).
        claim: Sig,
        /// The invite consumed, or None for a re-endorsement of a member.
        invite: Option<serde_bytes::ByteArray<32>>,
        by: NodeId,
        /// Wall-clock ms, informational only.
        at: u64,
    },
    Revoke {
        mesh: MeshId,
        node: NodeId,
        by: NodeId,
        reason: String,
        at: u64,
    },
    /// A node replaces its own boot key (after a copied-boot-key alert).
    /// Signed by the node key, which a thief with the old boot key lacks;
    /// the highest `seq` wins. `seq` counts the node's rekeys (one more
    /// than the highest the roster holds), never a clock.
    Rekey {
        mesh: MeshId,
        node: NodeId,
        boot: BootPublic,
        seq: u64,
    },
}

impl OpBody {
    pub fn signer(&self) -> NodeId {
        match self {
            OpBody::Found { founder, .. } => founder.id,
            OpBody::Admit { by, .. } | OpBody::Revoke { by, .. } => *by,
            OpBody::Rekey { node, .. } => *node,
        }
    }
    pub fn mesh(&self) -> MeshId {
        match self {
            OpBody::Found { mesh, .. }
            | OpBody::Admit { mesh, .. }
            | OpBody::Revoke { mesh, .. }
            | OpBody::Rekey { mesh, .. } => *mesh,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOp {
    pub body: OpBody,
    pub sig: Sig,
}

impl Wire for SignedOp {
    const KIND: &'static str = "roster-op";
    const MAX: usize = 2048;
}

pub type OpId = [u8; 32];

impl SignedOp {
    pub fn sign(body: OpBody, key: &NodeKey) -> SignedOp {
        assert_eq!(body.signer(), key.id(), "op signed by its named signer");
        let sig = key.sign(SIG_DOMAIN, &codec::signing_bytes(&body));
        SignedOp { body, sig }
    }

    pub fn id(&self) -> OpId {
        let mut h = Sha256::new();
        h.update(codec::signing_bytes(&self.body));
        h.update(self.sig.0);
        h.finalize().into()
    }

    /// Checks the signature (and an admission's claim) once, so merging
    /// can work on verified operations without checking them again. This
    /// is the expensive part of a merge; a driver may run it off its event
    /// loop and hand the result to `Roster::merge_verified`.
    pub fn verify(self) -> Result<Verified, super::RosterError> {
        let ok = self
            .body
            .signer()
            .verify(SIG_DOMAIN, &codec::signing_bytes(&self.body), &self.sig)
            .is_ok();
        if !ok {
            return Err(super::RosterError::BadSignature);
        }
        if let OpBody::Admit {
            mesh,
            member,
            claim,
            ..
        } = &self.body
        {
            if !member.verify_claim(*mesh, claim) {
                return Err(super::RosterError::BadClaim(member.id));
            }
        }
        let id = self.id();
        Ok(Verified { op: self, id })
    }
}

/// An operation whose signatures were checked, with its id computed.
#[derive(Clone, Debug)]
pub struct Verified {
    pub(super) op: SignedOp,
    pub(super) id: OpId,
}

impl Verified {
    pub fn id(&self) -> OpId {
        self.id
    }
    pub fn op(&self) -> &SignedOp {
        &self.op
    }
}
