//! Membership: a set of signed operations and the rule that reads it.
//!
//! The roster is the set of valid operations seen; membership is a pure
//! function of that set (`resolve`), so any two nodes holding the same
//! operations agree, whatever order they arrived in. The rule is in
//! `resolve`'s module doc and docs/design.md ("Membership").
//!
//! What keeps the roster small and fast when a member turns hostile:
//! - a signature is verified once, when an operation first arrives
//!   (`SignedOp::verify`), and never while resolving;
//! - superseded operations are not kept: one admission per (signer,
//!   member), at most `MAX_ENDORSEMENTS` per member besides the founder's,
//!   one revocation per (signer, target), one rekey per node (highest
//!   `seq`), nothing signed by a node the founder revoked or that no
//!   admission chain reaches;
//! - no signer owns more than a fair share: past `MAX_OPS` operations,
//!   signers are served by seniority, and within one level the signers
//!   with the most keep only their first operations up to a common level
//!   ("water-filling"; revocations first). That is a function of the set,
//!   so it converges. The founder's operations are exempt, sybils are
//!   always deeper than the member that minted them and share only what
//!   senior levels left, and a signer with few operations (an admin's
//!   revocation) is never cut, so a flood cannot refuse a revocation;
//! - resolving walks the set a bounded number of times (near-linear).
//!
//! Sans-IO: no clock, no sockets; times are arguments.

mod changes;
mod memo;
mod op;
mod orphans;
pub mod reconcile;
mod resolve;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::identity::{NodeId, NodeKey, Sig};

use changes::changed_members;
pub use memo::MergeMemo;
pub use op::{check_name, Member, MeshId, OpBody, OpId, Role, SignedOp, Verified};
pub use orphans::{ChainRefused, MAX_CHAIN};
use resolve::{resolve, Input, View};

/// Most operations kept (the founder's not counted); past it, the largest
/// signers are cut to a common level. Sized so a full roster fits one sync
/// response (`proto::Response::MAX`; a test checks it).
pub const MAX_OPS: usize = 32_768;
/// Admissions kept per member besides the founder's: enough to survive
/// the revocation of the members that vouched for it.
pub const MAX_ENDORSEMENTS: usize = 4;
/// Longest revocation reason, in bytes. With names bounded too, this
/// bounds every op, so a full roster still fits one sync response.
pub const MAX_REASON: usize = 200;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RosterError {
    #[error("operation signature does not verify (forged or corrupted)")]
    BadSignature,
    #[error("the admission of {0} does not carry that node's own signature over its record (forged record)")]
    BadClaim(NodeId),
    #[error("operation is for mesh {got}, this node is in mesh {ours}")]
    OtherMesh { ours: MeshId, got: MeshId },
    #[error("operation signed by {0}, who was never admitted to this mesh (or was revoked by the founder)")]
    UnknownSigner(NodeId),
    #[error("operation names {0}, who was never admitted to this mesh")]
    UnknownNode(NodeId),
    #[error("this node has no mesh yet; run `keyward init` or `keyward join`")]
    NoMesh,
    #[error("a second founding operation for mesh {0}")]
    SecondFounding(MeshId),
    #[error("the founder {0} is the mesh's root of trust and cannot be revoked")]
    FounderRevoke(NodeId),
    #[error("{0} was revoked by the founder; revocation is final")]
    Revoked(NodeId),
    #[error("not authorised: {0}")]
    NotAuthorised(String),
    #[error("invalid member: {0}")]
    BadMember(String),
}

/// The outcome of merging one operation.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    New,
    /// Already held, or superseded by an operation held (a lower-id
    /// duplicate, a higher rekey): nothing changed.
    Known,
}

/// What a merge changed, for the driver to persist.
#[derive(Clone, Debug, Default)]
pub struct MergeReport {
    /// Operations now held that were not before.
    pub new: Vec<SignedOp>,
    /// Operations no longer held (superseded or compacted away).
    pub dropped: Vec<OpId>,
    /// Why the others were refused.
    pub errors: Vec<RosterError>,
    /// Members active now that were not before, in id order.
    pub joined: Vec<NodeId>,
    /// Members no longer active, in id order.
    pub left: Vec<NodeId>,
}

/// A roster: a cheap handle on its state, shared until one side changes
/// it. keywardd holds one; the simulator's 5,000 nodes hold the same few
/// states between them (see [`MergeMemo`]) instead of 5,000 copies.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    s: Arc<RosterState>,
}

impl std::ops::Deref for Roster {
    type Target = RosterState;
    fn deref(&self) -> &RosterState {
        &self.s
    }
}

/// What a [`Roster`] holds; read through the roster (it derefs to this).
#[derive(Clone, Debug, Default)]
pub struct RosterState {
    found: Option<SignedOp>,
    ops: BTreeMap<OpId, SignedOp>,
    admits_by: BTreeMap<NodeId, BTreeSet<OpId>>,
    admits_of: BTreeMap<NodeId, BTreeSet<OpId>>,
    revokes_by: BTreeMap<NodeId, BTreeMap<NodeId, OpId>>,
    rekeys: BTreeMap<NodeId, OpId>,
    view: View,
    /// [`Roster::digest`], computed once per change: every sync and
    /// anti-entropy round asks for it, and hashing every op id each time
    /// costs a 5,000-member mesh 5,000 hashes per round.
    digest: std::sync::OnceLock<[u8; 32]>,
    /// The anti-entropy trie's sixteen top digests
    /// ([`Roster::children`] of the root), likewise: every round whose
    /// roster digests differ asks for them on both sides, and each is a
    /// pass over every op id.
    top: std::sync::OnceLock<Box<[[u8; 32]; reconcile::FANOUT]>>,
    /// The active members' ids, built once per change and shared (the
    /// transport's member set, the overlay's rings).
    ids: std::sync::OnceLock<Arc<BTreeSet<NodeId>>>,
    /// Their boot keys' ids, likewise.
    boots: std::sync::OnceLock<Arc<BTreeSet<NodeId>>>,
    /// Their ids in the gossip rings' orders, likewise.
    rings: std::sync::OnceLock<Arc<crate::node::overlay::RingOrder>>,
    /// Their ids and boot keys as `keyward status` prints them, likewise
    /// (base58 for 5,000 members is most of a status answer's cost).
    texts: std::sync::OnceLock<Arc<Vec<(String, String)>>>,
}

impl Roster {
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
        if self.knows(&op.id()) {
            return Ok(Merged::Known);
        }
        let mut r = self.merge_verified(vec![op.verify()?]);
        match r.errors.pop() {
            Some(e) => Err(e),
            None if r.new.is_empty() => Ok(Merged::Known),
            None => Ok(Merged::New),
        }
    }

    /// Verifies and merges a batch in any order (roster sync).
    pub fn merge_all(&mut self, ops: Vec<SignedOp>) -> MergeReport {
        self.merge_checked(ops, vec![])
    }

    /// Merges `ops` (verified here) and `verified` (checked by the
    /// caller) as one batch, in any order.
    pub fn merge_checked(
        &mut self,
        ops: Vec<SignedOp>,
        mut verified: Vec<Verified>,
    ) -> MergeReport {
        let mut errors = vec![];
        for op in ops {
            if self.knows(&op.id()) {
                continue;
            }
            match op.verify() {
                Ok(v) => verified.push(v),
                Err(e) => errors.push(e),
            }
        }
        let mut r = self.merge_verified(verified);
        errors.append(&mut r.errors);
        r.errors = errors;
        r
    }

    /// Merges operations whose signatures were already checked, in any
    /// order: admissions are taken breadth-first from the signers already
    /// known, so a chain arriving in reverse order costs one pass.
    pub fn merge_verified(&mut self, batch: Vec<Verified>) -> MergeReport {
        if batch.iter().all(|v| self.knows(&v.id)) {
            return MergeReport::default();
        }
        Arc::make_mut(&mut self.s).merge_verified(batch)
    }

    /// [`Roster::merge_checked`], taking the result from `memo` when a
    /// roster in the same state merged the same batch before (and
    /// leaving it there otherwise). Merging is a function of the held
    /// set and the batch, so the answer is the same either way.
    pub fn merge_shared(
        &mut self,
        ops: Vec<SignedOp>,
        verified: Vec<Verified>,
        memo: &MergeMemo,
    ) -> MergeReport {
        let ops: Vec<(OpId, SignedOp)> = ops
            .into_iter()
            .map(|o| (o.id(), o))
            .filter(|(id, _)| !self.knows(id))
            .collect();
        let verified: Vec<Verified> = verified
            .into_iter()
            .filter(|v| !self.knows(&v.id))
            .collect();
        if ops.is_empty() && verified.is_empty() {
            return MergeReport::default();
        }
        let ids = ops
            .iter()
            .map(|(id, _)| *id)
            .chain(verified.iter().map(|v| v.id));
        let key = MergeMemo::key(self.digest(), ids);
        if let Some((s, rep)) = memo.get(&key) {
            self.s = s;
            return rep;
        }
        if let Some((s, rep)) = self.merge_into_held(&ops, &verified, memo) {
            self.s = s;
            memo.put(key, self.s.clone(), rep.clone());
            return rep;
        }
        let rep = self.merge_checked(ops.into_iter().map(|(_, o)| o).collect(), verified);
        if let Some(same) = memo.intern(&self.s) {
            self.s = same;
        }
        memo.put(key, self.s.clone(), rep.clone());
        rep
    }

    /// The state a merge of this batch (none of it held) would end in,
    /// when another roster already holds exactly our operations and the
    /// batch's: a node back from a reboot catches up to where the mesh
    /// is by its own batches, unlike any other node's, and each of them
    /// missed the memo and recomputed the whole roster (30 ms at 5,000
    /// members). Merges converge, so the state holding a set of
    /// operations is the one any order of merging them ends in; that
    /// state took every operation of the batch (their ids are hashes of
    /// the signed bytes, so they are the operations it checked) and
    /// dropped none of ours. A node starting from its disk (the founding
    /// in the batch) finds its state the same way.
    fn merge_into_held(
        &self,
        ops: &[(OpId, SignedOp)],
        verified: &[Verified],
        memo: &MergeMemo,
    ) -> Option<(Arc<RosterState>, MergeReport)> {
        let batch = ops
            .iter()
            .map(|(id, o)| (*id, o))
            .chain(verified.iter().map(|v| (v.id, &v.op)));
        let mut new: BTreeMap<OpId, &SignedOp> = BTreeMap::new();
        let mut found = self.found.as_ref().map(SignedOp::id);
        for (id, op) in batch {
            // A node loading its roster from disk: the founding comes
            // with the rest. A second one is for the merge to refuse.
            if matches!(op.body, OpBody::Found { .. }) && found.replace(id).is_some_and(|f| f != id)
            {
                return None;
            }
            new.insert(id, op);
        }
        // The batch's ids in order, the founding apart (ours is held, so
        // never in the batch).
        let rest: Vec<OpId> = new
            .keys()
            .copied()
            .filter(|id| Some(*id) != found)
            .collect();
        let state = memo.state(&self.digest_with(found, &rest))?;
        let (joined, left) = changed_members(&self.view.active, &state.view.active);
        let rep = MergeReport {
            new: new.into_values().cloned().collect(),
            joined,
            left,
            ..MergeReport::default()
        };
        Some((state, rep))
    }

    /// The active members' boot key ids (shared, built once per change).
    pub fn member_boots(&self) -> Arc<BTreeSet<NodeId>> {
        self.s
            .boots
            .get_or_init(|| Arc::new(self.s.members().map(|m| m.boot.as_node_id()).collect()))
            .clone()
    }

    /// Each active member's id and boot key as text (base58, hex), in
    /// [`RosterState::members`] order (shared, built once per change).
    pub fn member_texts(&self) -> Arc<Vec<(String, String)>> {
        self.s
            .texts
            .get_or_init(|| {
                Arc::new(
                    self.s
                        .members()
                        .map(|m| (m.id.to_string(), hex::encode(m.boot.sign)))
                        .collect(),
                )
            })
            .clone()
    }

    /// The active members in the gossip rings' orders (shared, built once
    /// per change).
    pub fn member_rings(&self) -> Arc<crate::node::overlay::RingOrder> {
        self.s
            .rings
            .get_or_init(|| {
                Arc::new(crate::node::overlay::RingOrder::new(
                    self.member_ids().iter(),
                ))
            })
            .clone()
    }

    /// The active members' ids (shared, built once per change).
    pub fn member_ids(&self) -> Arc<BTreeSet<NodeId>> {
        self.s
            .ids
            .get_or_init(|| Arc::new(self.s.members().map(|m| m.id).collect()))
            .clone()
    }
}

impl RosterState {
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

    fn founder_member(&self) -> Option<&Member> {
        match self.found.as_ref().map(|f| &f.body) {
            Some(OpBody::Found { founder, .. }) => Some(founder),
            _ => None,
        }
    }

    /// Whether the operation with this id is held (cheap; lets a driver
    /// skip verifying what it already has).
    pub fn knows(&self, id: &OpId) -> bool {
        self.ops.contains_key(id) || self.found.as_ref().map(|f| f.id()) == Some(*id)
    }

    fn merge_verified(&mut self, batch: Vec<Verified>) -> MergeReport {
        let mut rep = MergeReport::default();
        // The view before the first change, for who joined and who left.
        let mut before: Option<View> = None;
        let mut rest = Vec::with_capacity(batch.len());
        for v in batch {
            if self.knows(&v.id) {
                continue;
            }
            if let OpBody::Found { founder, .. } = &v.op.body {
                if let Err(e) = check_name(&founder.name) {
                    rep.errors.push(RosterError::BadMember(e));
                } else if let Some(m) = self.mesh() {
                    rep.errors.push(RosterError::SecondFounding(m));
                } else {
                    rep.new.push(v.op.clone());
                    self.found = Some(v.op);
                    self.changed();
                    let old = self.recompute();
                    before.get_or_insert(old);
                }
            } else {
                rest.push(v);
            }
        }
        if rest.is_empty() && rep.new.is_empty() {
            return rep;
        }
        let Some(ours) = self.mesh() else {
            rep.errors.extend(rest.iter().map(|_| RosterError::NoMesh));
            return rep;
        };
        self.merge_rest(rest, ours, &mut rep, &mut before);
        if let Some(b) = before {
            (rep.joined, rep.left) = changed_members(&b.active, &self.view.active);
        }
        rep
    }

    /// [`RosterState::merge_verified`] past the founding: admissions
    /// breadth-first, then the other operations, then one recompute.
    fn merge_rest(
        &mut self,
        rest: Vec<Verified>,
        ours: MeshId,
        rep: &mut MergeReport,
        before: &mut Option<View>,
    ) {
        let mut admits: BTreeMap<NodeId, Vec<Verified>> = BTreeMap::new();
        let mut others = vec![];
        for v in rest {
            if v.op.body.mesh() != ours {
                rep.errors.push(RosterError::OtherMesh {
                    ours,
                    got: v.op.body.mesh(),
                });
            } else if matches!(v.op.body, OpBody::Admit { .. }) {
                admits.entry(v.op.body.signer()).or_default().push(v);
            } else {
                others.push(v);
            }
        }
        // Who may sign, growing as the batch's admissions are taken.
        let mut reach: BTreeMap<NodeId, Role> =
            self.view.ever.iter().map(|(id, m)| (*id, m.role)).collect();
        let mut queue: Vec<NodeId> = admits
            .keys()
            .filter(|s| reach.contains_key(s))
            .copied()
            .collect();
        while let Some(s) = queue.pop() {
            for v in admits.remove(&s).unwrap_or_default() {
                let OpBody::Admit { member, .. } = &v.op.body else {
                    continue;
                };
                let (id, role) = (member.id, member.role);
                match self.insert_admit(v, reach[&s], rep) {
                    Ok(()) => {
                        if reach.insert(id, role).is_none() && admits.contains_key(&id) {
                            queue.push(id);
                        }
                    }
                    Err(e) => rep.errors.push(e),
                }
            }
        }
        for (s, vs) in admits {
            rep.errors
                .extend(vs.iter().map(|_| RosterError::UnknownSigner(s)));
        }
        for v in others {
            let s = v.op.body.signer();
            if !reach.contains_key(&s) {
                rep.errors.push(RosterError::UnknownSigner(s));
                continue;
            }
            if let Err(e) = self.insert_other(v, &reach, rep) {
                rep.errors.push(e);
            }
        }
        if !rep.new.is_empty() {
            let old = self.recompute();
            before.get_or_insert(old);
            self.compact(rep);
        }
        // An op dropped in the same merge that added it was never held.
        if !rep.dropped.is_empty() {
            let gone: BTreeSet<OpId> = rep.dropped.iter().copied().collect();
            rep.new.retain(|o| !gone.contains(&o.id()));
        }
    }

    fn insert_admit(
        &mut self,
        v: Verified,
        signer_role: Role,
        rep: &mut MergeReport,
    ) -> Result<(), RosterError> {
        let OpBody::Admit { member, by, .. } = &v.op.body else {
            unreachable!("only admissions are passed here");
        };
        let (member_id, by) = (member.id, *by);
        check_name(&member.name).map_err(RosterError::BadMember)?;
        if member_id == by {
            return Err(RosterError::NotAuthorised(format!(
                "{by} tried to admit itself"
            )));
        }
        if Some(member_id) == self.founder() {
            return Err(RosterError::NotAuthorised(
                "the founder is not admitted by anyone".into(),
            ));
        }
        if !signer_role.may_admit() {
            return Err(RosterError::NotAuthorised(format!(
                "{by} is an {signer_role} and auditors admit nobody"
            )));
        }
        if self.view.founder_revoked.contains(&member_id) {
            return Err(RosterError::Revoked(member_id));
        }
        // One admission per (signer, member): the lowest id.
        if let Some(old) = self.admits_of.get(&member_id).and_then(|ids| {
            ids.iter()
                .find(|id| self.ops.get(*id).map(|o| o.body.signer()) == Some(by))
                .copied()
        }) {
            if old < v.id {
                return Ok(());
            }
            self.remove(&old);
            rep.dropped.push(old);
        }
        rep.new.push(v.op.clone());
        self.insert(v);
        self.trim_endorsements(member_id, rep);
        Ok(())
    }

    /// Keeps the founder's admission of `member` and its `MAX_ENDORSEMENTS`
    /// lowest-id others.
    fn trim_endorsements(&mut self, member: NodeId, rep: &mut MergeReport) {
        let founder = self.founder();
        let Some(ids) = self.admits_of.get(&member) else {
            return;
        };
        let extra: Vec<OpId> = ids
            .iter()
            .filter(|id| self.ops.get(*id).map(|o| o.body.signer()) != founder)
            .skip(MAX_ENDORSEMENTS)
            .copied()
            .collect();
        for id in extra {
            self.remove(&id);
            rep.dropped.push(id);
        }
    }

    fn insert_other(
        &mut self,
        v: Verified,
        reach: &BTreeMap<NodeId, Role>,
        rep: &mut MergeReport,
    ) -> Result<(), RosterError> {
        match &v.op.body {
            OpBody::Revoke {
                node, by, reason, ..
            } => {
                let (node, by) = (*node, *by);
                if Some(node) == self.founder() {
                    return Err(RosterError::FounderRevoke(node));
                }
                if reason.len() > MAX_REASON {
                    return Err(RosterError::BadMember(format!(
                        "revocation reason longer than {MAX_REASON} bytes"
                    )));
                }
                // The founder's revocations are kept for good (they are what
                // compacts the revoked node's admissions away), so they are
                // taken even by a node that never saw the admission.
                if !reach.contains_key(&node) && Some(by) != self.founder() {
                    return Err(RosterError::UnknownNode(node));
                }
                if let Some(old) = self.revokes_by.get(&by).and_then(|m| m.get(&node)).copied() {
                    if old < v.id {
                        return Ok(());
                    }
                    self.remove(&old);
                    rep.dropped.push(old);
                }
            }
            OpBody::Rekey { node, seq, .. } => {
                if let Some(old) = self.rekeys.get(node).copied() {
                    let old_seq = match self.ops.get(&old).map(|o| &o.body) {
                        Some(OpBody::Rekey { seq, .. }) => *seq,
                        _ => 0,
                    };
                    if (old_seq, std::cmp::Reverse(old)) > (*seq, std::cmp::Reverse(v.id)) {
                        return Ok(());
                    }
                    self.remove(&old);
                    rep.dropped.push(old);
                }
            }
            OpBody::Found { .. } | OpBody::Admit { .. } => {
                unreachable!("foundings and admissions are merged apart")
            }
        }
        rep.new.push(v.op.clone());
        self.insert(v);
        Ok(())
    }

    fn insert(&mut self, v: Verified) {
        let id = v.id;
        match &v.op.body {
            OpBody::Admit { member, by, .. } => {
                self.admits_by.entry(*by).or_default().insert(id);
                self.admits_of.entry(member.id).or_default().insert(id);
            }
            OpBody::Revoke { node, by, .. } => {
                self.revokes_by.entry(*by).or_default().insert(*node, id);
            }
            OpBody::Rekey { node, .. } => {
                self.rekeys.insert(*node, id);
            }
            OpBody::Found { .. } => unreachable!("the founding op is kept apart"),
        }
        self.ops.insert(id, v.op);
        self.changed();
    }

    fn remove(&mut self, id: &OpId) {
        self.changed();
        let Some(op) = self.ops.remove(id) else {
            return;
        };
        match &op.body {
            OpBody::Admit { member, by, .. } => {
                if let Some(s) = self.admits_by.get_mut(by) {
                    s.remove(id);
                    if s.is_empty() {
                        self.admits_by.remove(by);
                    }
                }
                if let Some(s) = self.admits_of.get_mut(&member.id) {
                    s.remove(id);
                    if s.is_empty() {
                        self.admits_of.remove(&member.id);
                    }
                }
            }
            OpBody::Revoke { node, by, .. } => {
                if let Some(m) = self.revokes_by.get_mut(by) {
                    m.remove(node);
                    if m.is_empty() {
                        self.revokes_by.remove(by);
                    }
                }
            }
            OpBody::Rekey { node, .. } => {
                if self.rekeys.get(node) == Some(id) {
                    self.rekeys.remove(node);
                }
            }
            OpBody::Found { .. } => {}
        }
    }

    /// The op set changed: the caches go.
    fn changed(&mut self) {
        self.digest = Default::default();
        self.top = Default::default();
        self.ids = Default::default();
        self.boots = Default::default();
        self.rings = Default::default();
        self.texts = Default::default();
    }

    /// Resolves the view afresh from the operations held; returns the
    /// view it replaced.
    fn recompute(&mut self) -> View {
        self.ids = Default::default();
        self.boots = Default::default();
        self.rings = Default::default();
        self.texts = Default::default();
        let Some(founder) = self.founder_member() else {
            return View::default();
        };
        let view = resolve(&Input {
            founder,
            ops: &self.ops,
            admits_by: &self.admits_by,
            revokes_by: &self.revokes_by,
            rekeys: &self.rekeys,
        });
        std::mem::replace(&mut self.view, view)
    }

    /// Drops what can never count again, then cuts the largest signers if
    /// the roster is over `MAX_OPS`. Both are functions of the held set,
    /// so nodes that hold the same operations drop the same ones.
    fn compact(&mut self, rep: &mut MergeReport) {
        loop {
            let founder = self.founder();
            let ever = &self.view.ever;
            let gone = &self.view.founder_revoked;
            let mut drop: Vec<OpId> = vec![];
            for (id, op) in &self.ops {
                let useless = match &op.body {
                    _ if !ever.contains_key(&op.body.signer()) => true,
                    OpBody::Admit { member, .. } => gone.contains(&member.id),
                    // The founder's revocations are what makes the rest
                    // useless, so they stay; others of the same node are
                    // superseded by them.
                    OpBody::Revoke { node, by, .. } if gone.contains(node) => Some(*by) != founder,
                    OpBody::Revoke { node, .. } => !ever.contains_key(node),
                    _ => false,
                };
                if useless {
                    drop.push(*id);
                }
            }
            drop.extend(self.over_fair_share());
            if drop.is_empty() {
                return;
            }
            for id in &drop {
                self.remove(id);
            }
            rep.dropped.extend(drop);
            self.recompute();
        }
    }

    /// The fair-share cut. Signers are taken by seniority (level; members
    /// that are not active last), and each level shares what the more
    /// senior ones left: within a level, water-filling finds the largest
    /// `l` such that every signer keeping `min(count, l)` fits, and the
    /// levels below get only what remains. A hostile member's sybils are
    /// always deeper than it, so however many there are they only ever
    /// share the leftovers, never an honest admin's share at a senior
    /// level. Within a signer, revocations are kept first (they only ever
    /// withhold), then rekeys, then admissions, each by lowest id.
    /// Returns what lies above the cut.
    fn over_fair_share(&self) -> Vec<OpId> {
        let founder = self.founder();
        if self.ops.len() <= MAX_OPS {
            return vec![];
        }
        let mut by: BTreeMap<(u32, NodeId), Vec<(u8, OpId)>> = BTreeMap::new();
        for (id, op) in &self.ops {
            let s = op.body.signer();
            if Some(s) == founder {
                continue;
            }
            let rank = self.view.level.get(&s).copied().unwrap_or(u32::MAX);
            let kind = match op.body {
                OpBody::Revoke { .. } => 0,
                OpBody::Rekey { .. } => 1,
                _ => 2,
            };
            by.entry((rank, s)).or_default().push((kind, *id));
        }
        let mut budget = MAX_OPS;
        let mut cut = vec![];
        let mut levels: BTreeMap<u32, Vec<Vec<(u8, OpId)>>> = BTreeMap::new();
        for ((rank, _), mut ops) in by {
            ops.sort_unstable();
            levels.entry(rank).or_default().push(ops);
        }
        for signers in levels.into_values() {
            let counts: Vec<usize> = signers.iter().map(Vec::len).collect();
            let (mut lo, mut hi) = (0usize, counts.iter().copied().max().unwrap_or(0));
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                let used: usize = counts.iter().map(|c| (*c).min(mid)).sum();
                if used <= budget {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            for ops in signers {
                budget -= ops.len().min(lo);
                cut.extend(ops.into_iter().skip(lo).map(|(_, id)| id));
            }
        }
        cut
    }

    pub fn is_active(&self, id: &NodeId) -> bool {
        self.view.active.contains_key(id)
    }

    pub fn is_revoked(&self, id: &NodeId) -> bool {
        self.view.revoked.contains(id)
    }

    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.view.active.get(id)
    }

    /// Seniority of an active member: 0 for the founder, one more per
    /// admission step. A member can revoke members of its own level or
    /// deeper, never a more senior one.
    pub fn level(&self, id: &NodeId) -> Option<u32> {
        self.view.level.get(id).copied()
    }

    /// Whether a revocation of `target` signed by `by` would count now.
    pub fn may_revoke(&self, by: &NodeId, target: &NodeId) -> bool {
        Some(*target) != self.founder()
            && match (self.level(by), self.level(target)) {
                (Some(b), Some(t)) => b <= t,
                (Some(_), None) => self.view.ever.contains_key(target),
                _ => false,
            }
    }

    /// The member's own signature over its record, which a re-endorsement
    /// must carry.
    pub fn claim(&self, id: &NodeId) -> Option<(Member, Sig)> {
        self.admits_of
            .get(id)?
            .iter()
            .find_map(|op| match self.ops.get(op).map(|o| &o.body) {
                Some(OpBody::Admit { member, claim, .. }) => Some((member.clone(), *claim)),
                _ => None,
            })
    }

    /// The `seq` a new rekey of `id` must carry to win: one more than the
    /// highest held, whatever the clocks say.
    pub fn next_rekey_seq(&self, id: &NodeId) -> u64 {
        match self
            .rekeys
            .get(id)
            .and_then(|o| self.ops.get(o))
            .map(|o| &o.body)
        {
            Some(OpBody::Rekey { seq, .. }) => seq.saturating_add(1),
            _ => 1,
        }
    }

    /// The nodes `by` has signed a revocation of (counting or not).
    pub fn revoked_by(&self, by: &NodeId) -> Vec<NodeId> {
        self.revokes_by
            .get(by)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The revocations of `id` held, counting or not: what a revoked
    /// node is answered when it asks to sync ([`crate::node`]'s serve).
    pub fn revocations_of(&self, id: &NodeId) -> Vec<SignedOp> {
        self.revokes_by
            .values()
            .filter_map(|m| m.get(id))
            .filter_map(|op| self.ops.get(op))
            .cloned()
            .collect()
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.view.active.values()
    }

    pub fn guardians(&self) -> impl Iterator<Item = &Member> {
        self.view
            .active
            .values()
            .filter(|m| m.role == Role::Guardian)
    }

    pub fn revoked(&self) -> impl Iterator<Item = &NodeId> {
        self.view.revoked.iter()
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
        *self
            .digest
            .get_or_init(|| digest_of(self.found.as_ref().map(|f| f.id()), self.ops.keys()))
    }

    /// The digest of a state founded by `found` holding this one's
    /// operations and also `more` (ids not held, sorted and without
    /// repeats, no founding): what a merge that took all of `more` and
    /// dropped nothing ends with.
    fn digest_with(&self, found: Option<OpId>, more: &[OpId]) -> [u8; 32] {
        let (mut held, mut more) = (self.ops.keys().peekable(), more.iter().peekable());
        let union = std::iter::from_fn(|| match (held.peek(), more.peek()) {
            (Some(h), Some(m)) if m < h => more.next(),
            (Some(_), _) => held.next(),
            (None, _) => more.next(),
        });
        digest_of(found, union)
    }

    /// Who would lose membership if `node` were revoked: members whose only
    /// admission chains pass through it.
    pub fn dependents_of(&self, node: &NodeId) -> Vec<NodeId> {
        let Some(founder) = self.founder_member() else {
            return vec![];
        };
        let mut revokes = self.revokes_by.clone();
        revokes
            .entry(founder.id)
            .or_default()
            .insert(*node, [0; 32]);
        let after = resolve(&Input {
            founder,
            ops: &self.ops,
            admits_by: &self.admits_by,
            revokes_by: &revokes,
            rekeys: &self.rekeys,
        });
        self.view
            .active
            .keys()
            .filter(|id| *id != node && !after.active.contains_key(*id))
            .copied()
            .collect()
    }

    /// Looks an active member up by node id or name, for the CLI. A name
    /// borne by several active members resolves to none of them: the
    /// error lists them by id (see `lookup`).
    pub fn find(&self, who: &str) -> Result<NodeId, crate::lookup::FindError> {
        let active = self.view.active.values();
        let hits: Vec<&Member> = match who.parse::<NodeId>() {
            Ok(id) => active.filter(|m| m.id == id).collect(),
            Err(_) => active.filter(|m| m.name == who).collect(),
        };
        crate::lookup::one(who, hits.into_iter().map(|m| self.candidate(m)).collect())
    }

    /// Finds a node that was admitted once, active or revoked, by node id
    /// or name. Several nodes under one name resolve to none of them, as
    /// in `find`. A node the founder revoked is found by id only (its
    /// record is compacted away).
    pub fn find_any(&self, who: &str) -> Result<NodeId, crate::lookup::FindError> {
        if let Ok(id) = who.parse::<NodeId>() {
            if self.view.founder_revoked.contains(&id) && !self.view.ever.contains_key(&id) {
                return Ok(id);
            }
        }
        let known = self.view.ever.values();
        let hits: Vec<&Member> = match who.parse::<NodeId>() {
            Ok(id) => known.filter(|m| m.id == id).collect(),
            Err(_) => known.filter(|m| m.name == who).collect(),
        };
        crate::lookup::one(who, hits.into_iter().map(|m| self.candidate(m)).collect())
    }

    fn candidate(&self, m: &Member) -> crate::lookup::Candidate {
        let now = self.view.active.get(&m.id).unwrap_or(m);
        crate::lookup::Candidate {
            id: m.id,
            name: now.name.clone(),
            role: now.role,
            active: self.view.active.contains_key(&m.id),
            revoked: self.view.revoked.contains(&m.id),
        }
    }
}

/// A roster state's digest: its founding op's id, then every other op id
/// held, in order.
fn digest_of<'a>(found: Option<OpId>, ops: impl Iterator<Item = &'a OpId>) -> [u8; 32] {
    let mut h = Sha256::new();
    if let Some(f) = found {
        h.update(f);
    }
    for id in ops {
        h.update(id);
    }
    h.finalize().into()
}
