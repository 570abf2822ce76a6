//! Who is a member: a pure function of the stored operations.
//!
//! The rule (docs/design.md, "Membership"):
//! - Authority flows from the founder through admissions. A member's
//!   *level* is its distance from the founder in that graph (the founder is
//!   level 0). Only guardians admit; auditors admit nobody.
//! - Levels are settled in order, founder first. Revocations signed by the
//!   members of one level are applied before the next level is computed: a
//!   revocation counts against members of the signer's level or deeper,
//!   never against a more senior member, so a member cannot undo the member
//!   that revoked it by revoking it back.
//! - Within one level, revocations between members are resolved as an
//!   argumentation graph (grounded semantics): a revocation signed by a
//!   member that another counting revocation removes counts for nothing; a
//!   standoff (two members revoking each other) removes both, because a
//!   revocation only ever withholds keys. A more senior member resolves a
//!   standoff by revoking the culprit, which voids every operation the
//!   culprit signed.
//! - A revoked member's operations count for nothing: its admissions (so
//!   members only it vouched for drop out, unless re-endorsed), its
//!   revocations and its rekeys.
//! - A member's record is the one it signed itself (its claim); only the
//!   member's own `Rekey` changes its boot key, highest `seq` winning.
//!
//! Every step walks each stored operation a bounded number of times, so
//! resolving is near-linear in the roster's size.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::op::{Member, OpBody, OpId, SignedOp};
use crate::identity::NodeId;

/// The stored operations, indexed the way resolving reads them.
pub(super) struct Input<'a> {
    pub founder: &'a Member,
    pub ops: &'a BTreeMap<OpId, SignedOp>,
    /// Admissions by signer.
    pub admits_by: &'a BTreeMap<NodeId, BTreeSet<OpId>>,
    /// Revocations by signer, then target.
    pub revokes_by: &'a BTreeMap<NodeId, BTreeMap<NodeId, OpId>>,
    /// The winning rekey of each node.
    pub rekeys: &'a BTreeMap<NodeId, OpId>,
}

/// Membership derived from the operations.
#[derive(Clone, Debug, Default)]
pub(super) struct View {
    /// Nodes whose operations may be stored: reachable from the founder
    /// through admissions by guardians, ignoring every revocation but the
    /// founder's (which no later operation can undo). The role is the one
    /// the node claimed.
    pub ever: BTreeMap<NodeId, Member>,
    /// Revoked by the founder: final whatever else arrives.
    pub founder_revoked: BTreeSet<NodeId>,
    pub active: BTreeMap<NodeId, Member>,
    /// Seniority of each active member (the founder is 0).
    pub level: BTreeMap<NodeId, u32>,
    /// Nodes that a counting revocation removed.
    pub revoked: BTreeSet<NodeId>,
}

fn admitted<'a>(ops: &'a BTreeMap<OpId, SignedOp>, id: &OpId) -> Option<&'a Member> {
    match ops.get(id).map(|o| &o.body) {
        Some(OpBody::Admit { member, .. }) => Some(member),
        _ => None,
    }
}

pub(super) fn resolve(inp: &Input<'_>) -> View {
    let founder = inp.founder.id;
    let founder_revoked: BTreeSet<NodeId> = inp
        .revokes_by
        .get(&founder)
        .map(|m| m.keys().copied().filter(|t| *t != founder).collect())
        .unwrap_or_default();

    // Who may sign at all: breadth-first from the founder.
    let mut ever: BTreeMap<NodeId, Member> = BTreeMap::from([(founder, inp.founder.clone())]);
    let mut queue = VecDeque::from([founder]);
    while let Some(s) = queue.pop_front() {
        if !ever[&s].role.may_admit() {
            continue;
        }
        for id in inp.admits_by.get(&s).into_iter().flatten() {
            let Some(m) = admitted(inp.ops, id) else {
                continue;
            };
            if !founder_revoked.contains(&m.id) && !ever.contains_key(&m.id) {
                ever.insert(m.id, m.clone());
                queue.push_back(m.id);
            }
        }
    }

    // Levels, most senior first.
    let mut level: BTreeMap<NodeId, u32> = BTreeMap::new();
    let mut active: BTreeMap<NodeId, Member> = BTreeMap::new();
    let mut revoked: BTreeSet<NodeId> = BTreeSet::new();
    // Revoked by a settled (more senior) level before being reached.
    let mut revoked_early: BTreeSet<NodeId> = BTreeSet::new();
    let mut current: BTreeMap<NodeId, Member> = BTreeMap::from([(founder, inp.founder.clone())]);
    let mut k = 0u32;
    while !current.is_empty() {
        for id in current.keys() {
            level.insert(*id, k);
        }
        let out = standoff(&current, inp.revokes_by, founder);
        let survivors: Vec<(NodeId, Member)> = current
            .into_iter()
            .filter(|(id, _)| !out.contains(id))
            .collect();
        revoked.extend(out.iter().copied());
        for id in &out {
            level.remove(id);
        }
        for (s, _) in &survivors {
            for t in inp.revokes_by.get(s).into_iter().flat_map(|m| m.keys()) {
                // Settled levels are out of reach; this level was handled
                // by `standoff`.
                if !level.contains_key(t) && *t != founder {
                    revoked_early.insert(*t);
                }
            }
        }
        let mut next: BTreeMap<NodeId, (OpId, Member)> = BTreeMap::new();
        for (s, m) in &survivors {
            if !m.role.may_admit() {
                continue;
            }
            for id in inp.admits_by.get(s).into_iter().flatten() {
                let Some(n) = admitted(inp.ops, id) else {
                    continue;
                };
                if level.contains_key(&n.id)
                    || revoked.contains(&n.id)
                    || revoked_early.contains(&n.id)
                {
                    continue;
                }
                let e = next.entry(n.id).or_insert((*id, n.clone()));
                if *id < e.0 {
                    *e = (*id, n.clone());
                }
            }
        }
        active.extend(survivors);
        current = next.into_iter().map(|(id, (_, m))| (id, m)).collect();
        k += 1;
    }
    revoked.extend(revoked_early.into_iter().filter(|t| ever.contains_key(t)));
    revoked.extend(founder_revoked.iter().copied());

    for (node, id) in inp.rekeys {
        if let (Some(m), Some(OpBody::Rekey { boot, .. })) =
            (active.get_mut(node), inp.ops.get(id).map(|o| &o.body))
        {
            m.boot = boot.clone();
        }
    }
    View {
        ever,
        founder_revoked,
        active,
        level,
        revoked,
    }
}

/// Which members of one level the revocations among them remove, by
/// grounded semantics: a revocation counts unless its signer is removed by
/// a revocation that counts; revocations caught in a cycle all count.
fn standoff(
    members: &BTreeMap<NodeId, Member>,
    revokes_by: &BTreeMap<NodeId, BTreeMap<NodeId, OpId>>,
    founder: NodeId,
) -> BTreeSet<NodeId> {
    #[derive(Clone, Copy, PartialEq)]
    enum L {
        Undecided,
        Counts,
        Void,
    }
    let mut edges: Vec<(NodeId, NodeId)> = vec![];
    for s in members.keys() {
        for t in revokes_by.get(s).into_iter().flat_map(|m| m.keys()) {
            if *t != founder && *t != *s && members.contains_key(t) {
                edges.push((*s, *t));
            }
        }
    }
    if edges.is_empty() {
        return BTreeSet::new();
    }
    let mut signed_by: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
    let mut aimed_at: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (i, (s, t)) in edges.iter().enumerate() {
        signed_by.entry(*s).or_default().push(i);
        *aimed_at.entry(*t).or_default() += 1;
    }
    // An edge's attackers are the edges aimed at its signer.
    let mut open: Vec<usize> = edges
        .iter()
        .map(|(s, _)| aimed_at.get(s).copied().unwrap_or(0))
        .collect();
    let mut label = vec![L::Undecided; edges.len()];
    let mut work: VecDeque<usize> = (0..edges.len()).filter(|i| open[*i] == 0).collect();
    for i in &work {
        label[*i] = L::Counts;
    }
    while let Some(i) = work.pop_front() {
        // Edge i counts: every revocation its target signed is void.
        let target = edges[i].1;
        for &j in signed_by.get(&target).into_iter().flatten() {
            if label[j] != L::Undecided {
                continue;
            }
            label[j] = L::Void;
            // j no longer attacks the edges its target signed.
            let jt = edges[j].1;
            for &g in signed_by.get(&jt).into_iter().flatten() {
                open[g] -= 1;
                if open[g] == 0 && label[g] == L::Undecided {
                    label[g] = L::Counts;
                    work.push_back(g);
                }
            }
        }
    }
    edges
        .iter()
        .zip(label)
        .filter(|(_, l)| *l != L::Void)
        .map(|((_, t), _)| *t)
        .collect()
}
