//! Membership: a CRDT of signed operations.
//!
//! The roster is the set of every valid operation seen; membership is a pure
//! function of that set, so any two nodes holding the same operations agree,
//! whatever order they arrived in. Rules:
//! - `Found` names the mesh and its founder; the founder's key is the root of
//!   trust and cannot be revoked (retiring it means a new mesh).
//! - `Admit` is signed by a member. A node is *active* when some admission of
//!   it was signed by the founder or by an active member, and it is not
//!   revoked. Revoking a member therefore also drops whoever only it
//!   admitted; `keyward revoke` re-endorses them first unless told not to.
//! - `Revoke` signed by anyone ever admitted counts, and revocation always
//!   wins. A compromised member can thus revoke others: that only withholds
//!   keys (like `lockdown`), it can never release one.
//!
//! Sans-IO: no clock, no sockets; times are arguments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{self, Wire};
use crate::identity::{BootPublic, NodeId, NodeKey, Sig};

const SIG_DOMAIN: &str = "roster op";
/// Upper bound on operations kept, so a peer cannot grow our roster forever.
pub const MAX_OPS: usize = 20_000;
/// Longest revocation reason, in bytes. With names bounded too, this
/// bounds every op, so a full roster still fits one sync response.
pub const MAX_REASON: usize = 200;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Holds shares of others and has its own disk bound.
    Guardian,
    /// Reads logs; holds no shares.
    Auditor,
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
    Admit {
        mesh: MeshId,
        member: Member,
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
    /// the highest `seq` wins.
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

    fn verify(&self) -> bool {
        self.body
            .signer()
            .verify(SIG_DOMAIN, &codec::signing_bytes(&self.body), &self.sig)
            .is_ok()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RosterError {
    #[error("operation signature does not verify (forged or corrupted)")]
    BadSignature,
    #[error("operation is for mesh {got}, this node is in mesh {ours}")]
    OtherMesh { ours: MeshId, got: MeshId },
    #[error("operation signed by {0}, who was never admitted to this mesh")]
    UnknownSigner(NodeId),
    #[error("this node has no mesh yet; run `keyward init` or `keyward join`")]
    NoMesh,
    #[error("a second founding operation for mesh {0}")]
    SecondFounding(MeshId),
    #[error("the founder {0} is the mesh's root of trust and cannot be revoked")]
    FounderRevoke(NodeId),
    #[error("roster is full ({MAX_OPS} operations)")]
    Full,
    #[error("invalid member: {0}")]
    BadMember(String),
}

/// The outcome of merging one operation.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    New,
    Known,
}

#[derive(Clone, Debug, Default)]
pub struct Roster {
    found: Option<SignedOp>,
    ops: BTreeMap<OpId, SignedOp>,
    /// Derived: every node with a valid admission chain, ignoring revocations.
    ever: BTreeSet<NodeId>,
    revoked: BTreeSet<NodeId>,
    active: BTreeMap<NodeId, Member>,
}

impl Roster {
    pub fn mesh(&self) -> Option<MeshId> {
        self.found.as_ref().map(|f| f.body.mesh())
    }

    pub fn mesh_name(&self) -> Option<&str> {
        match self.found.as_ref().map(|f| &f.body) {
            Some(OpBody::Found { name, .. }) => Some(name),
            _ => None,
        }
    }

    pub fn founder(&self) -> Option<NodeId> {
        self.found.as_ref().map(|f| f.body.signer())
    }

    /// Starts a new mesh with `me` as founder.
    pub fn found(name: &str, mesh: MeshId, me: Member, key: &NodeKey) -> (Roster, SignedOp) {
        let op = SignedOp::sign(
            OpBody::Found {
                mesh,
                name: name.into(),
                founder: me,
            },
            key,
        );
        let mut r = Roster::default();
        r.merge(op.clone()).expect("own founding op is valid");
        (r, op)
    }

    /// Merges one operation; idempotent and order-independent once all
    /// operations are present.
    pub fn merge(&mut self, op: SignedOp) -> Result<Merged, RosterError> {
        let id = op.id();
        if self.ops.contains_key(&id) || self.found.as_ref().map(|f| f.id()) == Some(id) {
            return Ok(Merged::Known);
        }
        if !op.verify() {
            return Err(RosterError::BadSignature);
        }
        if let OpBody::Found { founder, .. } = &op.body {
            check_name(&founder.name).map_err(RosterError::BadMember)?;
            return match self.mesh() {
                None => {
                    self.found = Some(op);
                    self.recompute();
                    Ok(Merged::New)
                }
                Some(m) => Err(RosterError::SecondFounding(m)),
            };
        }
        let ours = self.mesh().ok_or(RosterError::NoMesh)?;
        if op.body.mesh() != ours {
            return Err(RosterError::OtherMesh {
                ours,
                got: op.body.mesh(),
            });
        }
        // Only ops by someone with an admission chain are kept, which
        // bounds what a stranger can make us store.
        if !self.ever.contains(&op.body.signer()) {
            return Err(RosterError::UnknownSigner(op.body.signer()));
        }
        match &op.body {
            OpBody::Revoke { node, .. } if Some(*node) == self.founder() => {
                return Err(RosterError::FounderRevoke(*node))
            }
            OpBody::Admit { member, .. } => {
                check_name(&member.name).map_err(RosterError::BadMember)?;
            }
            OpBody::Revoke { reason, .. } if reason.len() > MAX_REASON => {
                return Err(RosterError::BadMember(format!(
                    "revocation reason longer than {MAX_REASON} bytes"
                )))
            }
            _ => {}
        }
        if self.ops.len() >= MAX_OPS {
            return Err(RosterError::Full);
        }
        self.ops.insert(id, op);
        self.recompute();
        Ok(Merged::New)
    }

    /// Merges a batch in any order (roster sync); returns the operations
    /// that were new and the errors of those that stayed invalid.
    pub fn merge_all(&mut self, ops: Vec<SignedOp>) -> (Vec<SignedOp>, Vec<RosterError>) {
        let mut pending = ops;
        let mut new = Vec::new();
        loop {
            let mut progress = false;
            let mut rest = Vec::new();
            let mut errs = Vec::new();
            for op in pending {
                match self.merge(op.clone()) {
                    Ok(Merged::New) => {
                        new.push(op);
                        progress = true
                    }
                    Ok(Merged::Known) => {}
                    Err(e @ (RosterError::UnknownSigner(_) | RosterError::NoMesh)) => {
                        errs.push(e);
                        rest.push(op)
                    }
                    Err(e) => errs.push(e),
                }
            }
            if !progress || rest.is_empty() {
                return (new, errs);
            }
            pending = rest;
        }
    }

    fn recompute(&mut self) {
        let Some(OpBody::Found { founder, .. }) = self.found.as_ref().map(|f| &f.body) else {
            return;
        };
        let admits: Vec<(&Member, NodeId)> = self
            .ops
            .values()
            .filter_map(|o| match &o.body {
                OpBody::Admit { member, by, .. } => Some((member, *by)),
                _ => None,
            })
            .collect();
        // Closure ignoring revocations: who may sign ops at all.
        let mut ever = BTreeSet::from([founder.id]);
        loop {
            let before = ever.len();
            for (m, by) in &admits {
                if ever.contains(by) {
                    ever.insert(m.id);
                }
            }
            if ever.len() == before {
                break;
            }
        }
        let revoked: BTreeSet<NodeId> = self
            .ops
            .values()
            .filter_map(|o| match &o.body {
                OpBody::Revoke { node, by, .. } if ever.contains(by) && *node != founder.id => {
                    Some(*node)
                }
                _ => None,
            })
            .collect();
        // Closure through non-revoked signers only. The lowest-op-id
        // admission wins for the member's record, so all nodes agree.
        let mut active: BTreeMap<NodeId, Member> = BTreeMap::from([(founder.id, founder.clone())]);
        loop {
            let before = active.len();
            for (m, by) in &admits {
                if active.contains_key(by) && !revoked.contains(&m.id) {
                    active.entry(m.id).or_insert_with(|| (*m).clone());
                }
            }
            if active.len() == before {
                break;
            }
        }
        // The latest boot key of each member (ties: lowest op id, as ops
        // iterate in id order).
        let mut best: BTreeMap<NodeId, u64> = BTreeMap::new();
        for o in self.ops.values() {
            if let OpBody::Rekey {
                node, boot, seq, ..
            } = &o.body
            {
                if let Some(m) = active.get_mut(node) {
                    if best.get(node).is_none_or(|b| seq > b) {
                        best.insert(*node, *seq);
                        m.boot = boot.clone();
                    }
                }
            }
        }
        self.ever = ever;
        self.revoked = revoked;
        self.active = active;
    }

    pub fn is_active(&self, id: &NodeId) -> bool {
        self.active.contains_key(id)
    }

    pub fn is_revoked(&self, id: &NodeId) -> bool {
        self.revoked.contains(id)
    }

    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.active.get(id)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.active.values()
    }

    pub fn guardians(&self) -> impl Iterator<Item = &Member> {
        self.active.values().filter(|m| m.role == Role::Guardian)
    }

    pub fn revoked(&self) -> impl Iterator<Item = &NodeId> {
        self.revoked.iter()
    }

    /// Every operation, founding first: what roster sync sends.
    pub fn ops(&self) -> Vec<SignedOp> {
        self.found
            .iter()
            .chain(self.ops.values())
            .cloned()
            .collect()
    }

    pub fn len_ops(&self) -> usize {
        self.ops.len() + usize::from(self.found.is_some())
    }

    /// A digest of the op set: equal digests mean equal rosters.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        if let Some(f) = &self.found {
            h.update(f.id());
        }
        for id in self.ops.keys() {
            h.update(id);
        }
        h.finalize().into()
    }

    /// Who would lose membership if `node` were revoked: members whose only
    /// admission chains pass through it.
    pub fn dependents_of(&self, node: &NodeId) -> Vec<NodeId> {
        let mut r = self.clone();
        r.revoked.insert(*node);
        let Some(founder) = r.founder() else {
            return vec![];
        };
        let mut active = BTreeSet::from([founder]);
        loop {
            let before = active.len();
            for o in r.ops.values() {
                if let OpBody::Admit { member, by, .. } = &o.body {
                    if active.contains(by) && !r.revoked.contains(&member.id) {
                        active.insert(member.id);
                    }
                }
            }
            if active.len() == before {
                break;
            }
        }
        self.active
            .keys()
            .filter(|id| *id != node && !active.contains(*id))
            .copied()
            .collect()
    }

    /// Looks an active member up by node id or name, for the CLI. A name
    /// borne by several active members resolves to none of them: the
    /// error lists them by id (see `lookup`).
    pub fn find(&self, who: &str) -> Result<NodeId, crate::lookup::FindError> {
        let cand = |m: &Member| crate::lookup::Candidate {
            id: m.id,
            name: m.name.clone(),
            role: m.role,
            active: true,
            revoked: false,
        };
        if let Ok(id) = who.parse::<NodeId>() {
            return crate::lookup::one(who, self.active.get(&id).map(cand).into_iter().collect());
        }
        crate::lookup::one(
            who,
            self.active
                .values()
                .filter(|m| m.name == who)
                .map(cand)
                .collect(),
        )
    }

    /// Finds a node that was admitted once, active or revoked, by node id
    /// or by any name it was admitted under. Several nodes under one name
    /// resolve to none of them, as in `find`.
    pub fn find_any(&self, who: &str) -> Result<NodeId, crate::lookup::FindError> {
        let cand = |id: NodeId, m: &Member| {
            let now = self.active.get(&id).unwrap_or(m);
            crate::lookup::Candidate {
                id,
                name: now.name.clone(),
                role: now.role,
                active: self.active.contains_key(&id),
                revoked: self.revoked.contains(&id),
            }
        };
        let founder = match self.found.as_ref().map(|f| &f.body) {
            Some(OpBody::Found { founder, .. }) => Some(founder),
            _ => None,
        };
        let admitted = founder
            .into_iter()
            .chain(self.ops.values().filter_map(|o| match &o.body {
                OpBody::Admit { member, .. } if self.ever.contains(&member.id) => Some(member),
                _ => None,
            }));
        if let Ok(id) = who.parse::<NodeId>() {
            return crate::lookup::one(
                who,
                admitted
                    .filter(|m| m.id == id)
                    .map(|m| cand(m.id, m))
                    .collect(),
            );
        }
        crate::lookup::one(
            who,
            admitted
                .filter(|m| m.name == who)
                .map(|m| cand(m.id, m))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::BootKey;

    fn member(k: &NodeKey, name: &str) -> Member {
        Member {
            id: k.id(),
            boot: BootKey::generate().public(),
            name: name.into(),
            role: Role::Guardian,
        }
    }

    fn admit(mesh: MeshId, by: &NodeKey, m: Member) -> SignedOp {
        SignedOp::sign(
            OpBody::Admit {
                mesh,
                member: m,
                invite: Some(serde_bytes::ByteArray::new([1; 32])),
                by: by.id(),
                at: 0,
            },
            by,
        )
    }

    fn revoke(mesh: MeshId, by: &NodeKey, node: NodeId) -> SignedOp {
        SignedOp::sign(
            OpBody::Revoke {
                mesh,
                node,
                by: by.id(),
                reason: "test".into(),
                at: 0,
            },
            by,
        )
    }

    #[test]
    fn admissions_chain_and_order_does_not_matter() {
        let (a, b, c) = (
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
        );
        let mesh = MeshId([3; 16]);
        let (mut r, found) = Roster::found("m", mesh, member(&a, "a"), &a);
        let ab = admit(mesh, &a, member(&b, "b"));
        let bc = admit(mesh, &b, member(&c, "c"));
        assert_eq!(r.merge(bc.clone()), Err(RosterError::UnknownSigner(b.id())));
        r.merge(ab.clone()).unwrap();
        r.merge(bc.clone()).unwrap();
        assert!(r.is_active(&c.id()));
        let mut r2 = Roster::default();
        let (new, _) = r2.merge_all(vec![bc, ab, found]);
        assert_eq!(new.len(), 3);
        assert_eq!(r.digest(), r2.digest());
        assert_eq!(r2.find("c").unwrap(), c.id());
    }

    #[test]
    fn rekey_replaces_the_boot_key_and_only_the_node_can_do_it() {
        let (a, b) = (NodeKey::generate(), NodeKey::generate());
        let mesh = MeshId([3; 16]);
        let (mut r, _) = Roster::found("m", mesh, member(&a, "a"), &a);
        r.merge(admit(mesh, &a, member(&b, "b"))).unwrap();
        let k1 = BootKey::generate().public();
        let k2 = BootKey::generate().public();
        let rekey = |seq, boot: &BootPublic| {
            SignedOp::sign(
                OpBody::Rekey {
                    mesh,
                    node: b.id(),
                    boot: boot.clone(),
                    seq,
                },
                &b,
            )
        };
        r.merge(rekey(2, &k2)).unwrap();
        r.merge(rekey(1, &k1)).unwrap();
        assert_eq!(
            r.member(&b.id()).unwrap().boot,
            k2,
            "highest seq wins whatever the order"
        );
        // someone else cannot rekey b: the signer is always the node itself
        let mut forged = rekey(3, &k1);
        forged.sig = a.sign("roster op", &codec::signing_bytes(&forged.body));
        assert_eq!(r.merge(forged), Err(RosterError::BadSignature));
        assert_eq!(r.member(&b.id()).unwrap().boot, k2);
    }

    #[test]
    fn forged_and_foreign_ops_are_refused() {
        let (a, x, y) = (
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
        );
        let mesh = MeshId([3; 16]);
        let (mut r, _) = Roster::found("m", mesh, member(&a, "a"), &a);
        // signed by a stranger
        assert!(matches!(
            r.merge(admit(mesh, &x, member(&y, "y"))),
            Err(RosterError::UnknownSigner(_))
        ));
        // claims the founder signed but x did
        let mut forged = admit(mesh, &x, member(&y, "y"));
        if let OpBody::Admit { by, .. } = &mut forged.body {
            *by = a.id();
        }
        assert_eq!(r.merge(forged), Err(RosterError::BadSignature));
        // another mesh
        assert!(matches!(
            r.merge(admit(MeshId([4; 16]), &a, member(&y, "y"))),
            Err(RosterError::OtherMesh { .. })
        ));
        assert!(!r.is_active(&y.id()));
    }

    #[test]
    fn revocation_wins_and_cascades_unless_re_endorsed() {
        let (a, b, c, d) = (
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
            NodeKey::generate(),
        );
        let mesh = MeshId([3; 16]);
        let (mut r, _) = Roster::found("m", mesh, member(&a, "a"), &a);
        r.merge(admit(mesh, &a, member(&b, "b"))).unwrap();
        r.merge(admit(mesh, &b, member(&c, "c"))).unwrap();
        r.merge(admit(mesh, &a, member(&d, "d"))).unwrap();
        assert_eq!(r.dependents_of(&b.id()), vec![c.id()]);
        // c re-endorsed by a before b goes
        r.merge(SignedOp::sign(
            OpBody::Admit {
                mesh,
                member: member(&c, "c"),
                invite: None,
                by: a.id(),
                at: 1,
            },
            &a,
        ))
        .unwrap();
        r.merge(revoke(mesh, &d, b.id())).unwrap();
        assert!(!r.is_active(&b.id()) && r.is_revoked(&b.id()));
        assert!(r.is_active(&c.id()));
        // re-admitting a revoked node does not bring it back
        r.merge(admit(mesh, &a, member(&b, "b2"))).unwrap();
        assert!(!r.is_active(&b.id()));
        // a revoked node's later admissions count for nothing
        let e = NodeKey::generate();
        r.merge(admit(mesh, &b, member(&e, "e"))).unwrap();
        assert!(!r.is_active(&e.id()));
        // the founder cannot be revoked
        assert_eq!(
            r.merge(revoke(mesh, &d, a.id())),
            Err(RosterError::FounderRevoke(a.id()))
        );
    }
}
