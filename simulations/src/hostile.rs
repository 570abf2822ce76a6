//! The hostile scenario: members that turn against the mesh (issue 20).
//!
//! Besides churn and a seizure, two members the founder admitted are
//! hostile from the start: H1, an auditor (the last node), and H2, a
//! guardian (the one before). They run like any node (ping, sync, serve as
//! guardian, never crash) and, every few minutes at seeded times, make one
//! move, published through the sim's normal paths (their own replica takes
//! what the roster rules accept; they push every operation, accepted or
//! not, to a few peers by gossip; sync spreads the rest):
//! - `AuditorMints`: H1 admits a fresh "guardian" (whose own claim is
//!   signed, as a real admission needs), which admits another; H1 also
//!   claims the guardian role for itself and H2 admits that record;
//! - `Sybils`: H2 or one of its sybils admits one to three fresh sybils
//!   (chains of admissions), sybils endorse each other, and a sybil
//!   re-admits H2 (which must not bring H2 back once the founder revoked
//!   it);
//! - `Flood`: a hostile member signs 20 to 120 rekeys of itself at once;
//! - `RevokeHonest`: a hostile member revokes one to three honest members
//!   (the founder too, which the roster refuses);
//! - `Approve`: a hostile member, or one it minted, sends `keyward approve`
//!   of a seized server (else of any node) to that server's guardians.
//!
//! Right after the seizure every seized server is approved this way
//! (`HostileBurst`), and between 2 min and timeout + 5 min after it an
//! admin on the founder revokes H1 and H2 (`RevokeHostile`), without
//! re-endorsing anything they admitted. The thief boots the seized servers
//! after timeout + 10 min at the earliest, so hostile approvals are armed at
//! the guardians when the revocation reaches them.
//!
//! What must hold (checked per event: releases at every release, the rest
//! at every roster change, once per distinct replica state):
//! - `release.honest-approval` (see `invariants`): a hostile approval
//!   counts at a guardian only until that guardian's roster holds the
//!   founder's revocation of the member that made the approver (a
//!   compromised guardian can approve, as any admin can; that is the loss
//!   the revocation bounds). A seized server opened that way is the
//!   accepted loss, and only that relaxes `seizure.stays-locked`.
//! - `revocation.takes-effect`, `hostile.minted-never-active`,
//!   `hostile.out-after-revocation`, `roster.bounded`; and
//!   `roster.revoked-stays-out` for a revocation not signed by the founder
//!   only once the founder's revocations of H1 and H2 are held (before,
//!   a hostile member's revocation of that admin voids it: a standoff).
//!
//! "Forging alerts" is not modelled: the sim does not gossip alerts
//! (`Action::Alert` is counted where it is raised).

use std::collections::BTreeMap;

use keyward_core::guardian::Millis;
use keyward_core::identity::{BootKey, NodeId, NodeKey, Sig};
use keyward_core::roster::{Member, OpBody, OpId, Role, Roster, SignedOp};
use rand::Rng;
use serde::Serialize;

use crate::invariants as inv;
use crate::scenario::{HOUR, MIN, SEC};
use crate::sim::{Act, Ev, Msg, Revocation, Sim};
use crate::trace::Kind;

/// A founder, two honest members, the hostile auditor and guardian.
pub const MIN_NODES: usize = 5;
/// Most sybils H2's side mints (its chains included).
const MAX_SYBILS: usize = 40;
/// Most members H1 mints.
const MAX_FAKES: usize = 12;

/// A hostile move; its number is the `x` of its trace record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    AuditorMints = 0,
    Sybils = 1,
    Flood = 2,
    RevokeHonest = 3,
    Approve = 4,
    Burst = 5,
}

/// Whose key signs: a node's, or one a hostile member minted.
#[derive(Clone, Copy, Debug)]
enum Who {
    Node(u32),
    Minted(usize),
}

/// A member a hostile member minted: it holds the key.
struct Minted {
    key: NodeKey,
    member: Member,
    /// The hostile node whose machine holds the key (H1 or H2).
    root: u32,
}

/// What the hostile members did, for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostileStats {
    pub moves: u64,
    /// Members the auditor H1 tried to mint.
    pub auditor_mints: u64,
    pub sybils_minted: u64,
    /// Endorsements between sybils, re-admissions of H2, role escalations.
    pub endorsements: u64,
    pub rekeys: u64,
    pub revocations_of_honest: u64,
    /// Approval messages sent by hostile members.
    pub approvals_sent: u64,
    /// When the founder's revocation of H1 and H2 was signed.
    pub revoked_at: Option<Millis>,
    /// First releases to a seized server grounded only on a hostile
    /// approval the guardian could not know was revoked.
    pub seized_releases_on_hostile_approval: u64,
    /// Seized servers opened that way.
    pub seized_opened: usize,
    /// Most operations any replica held, and the bound it was held to.
    pub max_roster_ops: usize,
    pub roster_bound: usize,
}

pub struct Hostile {
    /// H1, an auditor.
    pub auditor: u32,
    /// H2, a guardian.
    pub guardian: u32,
    minted: Vec<Minted>,
    /// Every hostile id (H1, H2 and all they minted) and its root.
    pub taint: BTreeMap<NodeId, u32>,
    /// What H1 minted: never active anywhere.
    pub auditor_mints: Vec<NodeId>,
    /// The founder's revocations of H1 and H2, once signed.
    pub revoked: Vec<(u32, OpId)>,
    /// Next rekey `seq` per hostile signer.
    seq: BTreeMap<NodeId, u64>,
    pub stats: HostileStats,
}

impl Hostile {
    pub(crate) fn new(sim: &mut Sim) -> Hostile {
        let n = sim.nodes.len() as u32;
        let (auditor, guardian) = (n - 1, n - 2);
        let mut taint = BTreeMap::new();
        for h in [auditor, guardian] {
            sim.nodes[h as usize].hostile = true;
            taint.insert(sim.nodes[h as usize].id, h);
        }
        Hostile {
            auditor,
            guardian,
            minted: Vec::new(),
            taint,
            auditor_mints: Vec::new(),
            revoked: Vec::new(),
            seq: BTreeMap::new(),
            stats: HostileStats::default(),
        }
    }

    /// H2's side: its minted members (guardians only if `guardians`).
    fn sybils(&self, guardians: bool) -> Vec<usize> {
        (0..self.minted.len())
            .filter(|&k| {
                let m = &self.minted[k];
                m.root == self.guardian && (!guardians || m.member.role == Role::Guardian)
            })
            .collect()
    }
}

/// Schedules the seizure, the first move, the approval burst and the
/// founder's revocation.
pub(crate) fn plan(sim: &mut Sim) {
    let end = sim.cfg.end();
    let seize = (4 * HOUR).min(end / 4);
    sim.q.at(seize, Ev::Act(Act::Seize));
    let d = sim.uniform(MIN, 5 * MIN);
    sim.q.at(d, Ev::Act(Act::Hostile));
    let b = sim.uniform(30 * SEC, 2 * MIN);
    sim.q.at(seize + b, Ev::Act(Act::HostileBurst));
    let r = sim.uniform(2 * MIN, sim.cfg.policy.timeout + 5 * MIN);
    sim.q.at(seize + r, Ev::Act(Act::RevokeHostile));
}

impl Sim {
    fn fresh_member(&mut self, name: String, role: Role) -> (NodeKey, Member) {
        let key = NodeKey::from_seed(self.rng.gen());
        let boot = BootKey::from_seed(self.rng.gen()).public();
        let member = Member {
            id: key.id(),
            boot,
            name,
            role,
        };
        (key, member)
    }

    fn key_of(&self, w: Who) -> &NodeKey {
        match w {
            Who::Node(i) => &self.nodes[i as usize].key,
            Who::Minted(k) => &self.hostile.as_ref().expect("hostile").minted[k].key,
        }
    }

    /// An admission of `member` (whose own `claim` it carries) by `by`; a
    /// first admission consumes an invite, an endorsement none.
    fn admit_op(&mut self, by: Who, member: Member, claim: Sig, first: bool) -> SignedOp {
        let invite = first.then(|| serde_bytes::ByteArray::new(self.rng.gen()));
        let key = self.key_of(by);
        SignedOp::sign(
            OpBody::Admit {
                mesh: self.mesh,
                claim,
                member,
                invite,
                by: key.id(),
                at: self.now(),
            },
            key,
        )
    }

    /// A signer on the hostile side: `root` itself or one of `minted`.
    fn who(&mut self, root: u32, minted: &[usize]) -> Who {
        if minted.is_empty() || self.rng.gen_bool(0.5) {
            Who::Node(root)
        } else {
            Who::Minted(minted[self.rng.gen_range(0..minted.len())])
        }
    }

    /// Publishes operations from hostile node `from`: its own replica
    /// takes what the rules accept, and it pushes all of them to a few
    /// peers itself.
    fn hostile_push(&mut self, from: u32, ops: Vec<SignedOp>) {
        if ops.is_empty() {
            return;
        }
        let idx: Vec<u32> = ops.into_iter().map(|o| self.rosters.add_op(o)).collect();
        self.learn(from, &idx);
        for _ in 0..self.cfg.fanout {
            if let Some(j) = self.peer(from) {
                self.send(from, j, Msg::Gossip(idx.clone()));
            }
        }
    }

    pub(crate) fn hostile_move(&mut self) {
        let Some(h) = &self.hostile else { return };
        let first = h.stats.moves == 0;
        let mv = if first {
            Move::Sybils
        } else {
            match self.rng.gen_range(0..10) {
                0 | 1 => Move::AuditorMints,
                2 | 3 => Move::Sybils,
                4 | 5 => Move::Flood,
                6 | 7 => Move::RevokeHonest,
                _ => Move::Approve,
            }
        };
        let h = self.hostile.as_mut().expect("checked");
        h.stats.moves += 1;
        let (h1, h2) = (h.auditor, h.guardian);
        self.rec(
            Kind::Hostile,
            if mv == Move::AuditorMints { h1 } else { h2 },
            Sim::none(),
            mv as u64,
        );
        match mv {
            Move::AuditorMints => self.auditor_mints(),
            Move::Sybils => self.mint_sybils(),
            Move::Flood => self.flood(),
            Move::RevokeHonest => self.revoke_honest(),
            Move::Approve | Move::Burst => {
                let seized: Vec<u32> = self.seizures.keys().copied().collect();
                let o = if !seized.is_empty() && self.rng.gen_bool(0.7) {
                    Some(seized[self.rng.gen_range(0..seized.len())])
                } else {
                    self.pick(|n, _| n.token.is_some() && !n.hostile)
                };
                if let Some(o) = o {
                    let by = self.hostile_approver();
                    self.hostile_approve(o, by);
                }
            }
        }
        let d = self.uniform(2 * MIN, 8 * MIN);
        self.q.after(d, Ev::Act(Act::Hostile));
    }

    /// (a) The auditor mints a guardian, which mints another; and it
    /// claims the guardian role, which H2 endorses.
    fn auditor_mints(&mut self) {
        let h = self.hostile.as_ref().expect("hostile");
        let (h1, h2) = (h.auditor, h.guardian);
        if h.auditor_mints.len() >= MAX_FAKES {
            return;
        }
        let k = h.minted.len();
        let mut ops = Vec::new();
        let (fake, fm) = self.fresh_member(format!("fake{k}"), Role::Guardian);
        let claim = fm.claim(self.mesh, &fake);
        ops.push(self.admit_op(Who::Node(h1), fm.clone(), claim, true));
        let mut new = vec![(fake, fm)];
        if self.rng.gen_bool(0.5) {
            let (fake2, fm2) = self.fresh_member(format!("fake{}", k + 1), Role::Guardian);
            let claim = fm2.claim(self.mesh, &fake2);
            // Signed by the first fake's key, which H1 holds.
            let invite = Some(serde_bytes::ByteArray::new(self.rng.gen()));
            ops.push(SignedOp::sign(
                OpBody::Admit {
                    mesh: self.mesh,
                    claim,
                    member: fm2.clone(),
                    invite,
                    by: new[0].0.id(),
                    at: self.now(),
                },
                &new[0].0,
            ));
            new.push((fake2, fm2));
        }
        let h1id = self.id(h1);
        let me = self.nodes[h1 as usize].roster.roster.member(&h1id).cloned();
        let escalate = me.filter(|_| self.rng.gen_bool(0.3)).map(|mut m| {
            // H1's own record, claiming guardian, endorsed by guardian H2.
            m.role = Role::Guardian;
            let claim = m.claim(self.mesh, &self.nodes[h1 as usize].key);
            self.admit_op(Who::Node(h2), m, claim, false)
        });
        let h = self.hostile.as_mut().expect("hostile");
        h.stats.auditor_mints += new.len() as u64;
        h.stats.endorsements += escalate.is_some() as u64;
        for (key, member) in new {
            h.taint.insert(member.id, h1);
            h.auditor_mints.push(member.id);
            h.minted.push(Minted {
                key,
                member,
                root: h1,
            });
        }
        self.hostile_push(h1, ops);
        if let Some(op) = escalate {
            self.hostile_push(h2, vec![op]);
        }
    }

    /// (b) Sybils and chains of admissions under H2.
    fn mint_sybils(&mut self) {
        let h = self.hostile.as_ref().expect("hostile");
        let h2 = h.guardian;
        let parents = h.sybils(true);
        let all = h.sybils(false);
        let mut ops = Vec::new();
        let mut new = Vec::new();
        if all.len() < MAX_SYBILS {
            // H2 itself or one of its guardian sybils: chains grow.
            let parent = self.who(h2, &parents);
            for _ in 0..self.rng.gen_range(1..=3) {
                let role = if self.rng.gen_bool(0.25) {
                    Role::Auditor
                } else {
                    Role::Guardian
                };
                let k = all.len() + new.len();
                let (key, m) = self.fresh_member(format!("sybil{k}"), role);
                let claim = m.claim(self.mesh, &key);
                ops.push(self.admit_op(parent, m.clone(), claim, true));
                new.push((key, m));
            }
        }
        let mut endorse = 0;
        if !all.is_empty() && self.rng.gen_bool(0.5) {
            // One of them endorses a sybil (cycles, several parents).
            let by = self.who(h2, &parents);
            let of = all[self.rng.gen_range(0..all.len())];
            let m = &self.hostile.as_ref().expect("hostile").minted[of];
            let (member, claim) = (m.member.clone(), m.member.claim(self.mesh, &m.key));
            ops.push(self.admit_op(by, member, claim, false));
            endorse += 1;
        }
        if !parents.is_empty() && self.rng.gen_bool(0.3) {
            // A sybil re-admits H2, with H2's own claim.
            let by = Who::Minted(parents[self.rng.gen_range(0..parents.len())]);
            let m = Member {
                id: self.id(h2),
                boot: self.nodes[h2 as usize].boot_key.public(),
                name: format!("n{h2}"),
                role: Role::Guardian,
            };
            let claim = m.claim(self.mesh, &self.nodes[h2 as usize].key);
            ops.push(self.admit_op(by, m, claim, false));
            endorse += 1;
        }
        let h = self.hostile.as_mut().expect("hostile");
        h.stats.sybils_minted += new.len() as u64;
        h.stats.endorsements += endorse;
        for (key, member) in new {
            h.taint.insert(member.id, h2);
            h.minted.push(Minted {
                key,
                member,
                root: h2,
            });
        }
        self.hostile_push(h2, ops);
    }

    /// (c) A flood of rekeys by one hostile signer, in either order.
    fn flood(&mut self) {
        let h = self.hostile.as_ref().expect("hostile");
        let (h1, h2) = (h.auditor, h.guardian);
        let sybils = h.sybils(false);
        let (who, root) = if self.rng.gen_bool(0.25) {
            (Who::Node(h1), h1)
        } else {
            (self.who(h2, &sybils), h2)
        };
        let id = self.key_of(who).id();
        let n = self.rng.gen_range(20..=120u64);
        let h = self.hostile.as_ref().expect("hostile");
        let start = h.seq.get(&id).copied().unwrap_or(1);
        let boots: Vec<_> = (0..n)
            .map(|_| BootKey::from_seed(self.rng.gen()).public())
            .collect();
        let mut ops: Vec<SignedOp> = boots
            .into_iter()
            .zip(start..)
            .map(|(boot, seq)| {
                SignedOp::sign(
                    OpBody::Rekey {
                        mesh: self.mesh,
                        node: id,
                        boot,
                        seq,
                    },
                    self.key_of(who),
                )
            })
            .collect();
        if self.rng.gen_bool(0.5) {
            ops.reverse();
        }
        let h = self.hostile.as_mut().expect("hostile");
        h.seq.insert(id, start + n);
        h.stats.rekeys += n;
        self.hostile_push(root, ops);
    }

    /// (d) Revocations of honest members (the founder among them at times).
    fn revoke_honest(&mut self) {
        let h = self.hostile.as_ref().expect("hostile");
        let (h1, h2) = (h.auditor, h.guardian);
        let sybils = h.sybils(false);
        let (who, root) = if self.rng.gen_bool(0.3) {
            (Who::Node(h1), h1)
        } else {
            (self.who(h2, &sybils), h2)
        };
        let mut targets = Vec::new();
        for _ in 0..self.rng.gen_range(1..=3) {
            let t = if self.rng.gen_bool(0.1) {
                Some(0)
            } else {
                self.pick(|n, _| !n.hostile)
            };
            targets.extend(t);
        }
        let now = self.now();
        let ops: Vec<SignedOp> = targets
            .into_iter()
            .map(|t| {
                let key = self.key_of(who);
                SignedOp::sign(
                    OpBody::Revoke {
                        mesh: self.mesh,
                        node: self.id(t),
                        by: key.id(),
                        reason: "hostile".into(),
                        at: now,
                    },
                    key,
                )
            })
            .collect();
        let h = self.hostile.as_mut().expect("hostile");
        h.stats.revocations_of_honest += ops.len() as u64;
        self.hostile_push(root, ops);
    }

    /// A hostile approver: H2, one of its sybils, something H1 minted, or
    /// H1 itself.
    fn hostile_approver(&mut self) -> NodeId {
        let h = self.hostile.as_ref().expect("hostile");
        let mut ids: Vec<NodeId> = h.taint.keys().copied().collect();
        // H2's guardian sybils are the ones that work: weigh them up.
        ids.extend(h.sybils(true).iter().map(|&k| h.minted[k].member.id));
        ids[self.rng.gen_range(0..ids.len())]
    }

    /// (e) `keyward approve` of `o` by hostile id `by`, sent from the
    /// hostile machine that holds its key to o's guardians.
    fn hostile_approve(&mut self, o: u32, by: NodeId) {
        let h = self.hostile.as_ref().expect("hostile");
        let from = h.taint.get(&by).copied().unwrap_or(h.guardian);
        let Some(t) = &self.nodes[o as usize].token else {
            return;
        };
        let gs: Vec<u32> = t.guardians.iter().copied().filter(|&g| g != from).collect();
        self.hostile.as_mut().expect("hostile").stats.approvals_sent += gs.len() as u64;
        for g in gs {
            self.send(from, g, Msg::Approve { owner: o, by });
        }
    }

    /// Right after the seizure: every seized server is approved by a
    /// hostile guardian (a sybil of H2 if there is one).
    pub(crate) fn hostile_burst(&mut self) {
        let Some(h) = &self.hostile else { return };
        let h2 = h.guardian;
        let sybils = h.sybils(true);
        let by = if sybils.is_empty() {
            self.id(h2)
        } else {
            let k = sybils[self.rng.gen_range(0..sybils.len())];
            self.hostile.as_ref().expect("hostile").minted[k].member.id
        };
        self.rec(Kind::Hostile, h2, Sim::none(), Move::Burst as u64);
        let seized: Vec<u32> = self.seizures.keys().copied().collect();
        for o in seized {
            self.hostile_approve(o, by);
        }
    }

    /// An admin on the founder revokes H1 and H2, re-endorsing nothing.
    pub(crate) fn revoke_hostile(&mut self) {
        let Some(h) = &self.hostile else { return };
        if !h.revoked.is_empty() {
            return;
        }
        if !self.nodes[0].running() {
            self.q.after(MIN, Ev::Act(Act::RevokeHostile));
            return;
        }
        let roots = [h.auditor, h.guardian];
        let now = self.now();
        let mut idx = Vec::new();
        for root in roots {
            let op = SignedOp::sign(
                OpBody::Revoke {
                    mesh: self.mesh,
                    node: self.id(root),
                    by: self.id(0),
                    reason: "hostile member".into(),
                    at: now,
                },
                &self.nodes[0].key,
            );
            let i = self.rosters.add_op(op);
            let id = self.rosters.id(i);
            self.hostile
                .as_mut()
                .expect("hostile")
                .revoked
                .push((root, id));
            self.revocations.push(Revocation {
                node: root,
                op: i,
                sybils: Vec::new(),
            });
            self.nodes[root as usize].revoked = true;
            idx.push(i);
        }
        self.hostile.as_mut().expect("hostile").stats.revoked_at = Some(now);
        self.rec(Kind::HostileRevoke, 0, Sim::none(), idx.len() as u64);
        let new = self.learn(0, &idx);
        self.gossip(0, new);
    }

    /// Whether this replica holds the founder's revocations of the hostile
    /// members (always true outside the hostile scenario).
    pub(crate) fn hostile_revoked_in(&self, r: &Roster) -> bool {
        match &self.hostile {
            None => true,
            Some(h) => h.revoked.len() == 2 && h.revoked.iter().all(|(_, id)| r.knows(id)),
        }
    }

    /// `release.honest-approval`, at a release by guardian g to owner o.
    pub(crate) fn check_honest_approval(&mut self, g: u32, o: u32, epoch: u64) {
        let Some(&seized_at) = self.seizures.get(&o) else {
            return;
        };
        if self.nodes[g as usize].hostile || !self.seized_released.insert((g, o, epoch)) {
            return;
        }
        let now = self.now();
        let window = self.cfg.policy.approval_window;
        let roster = self.nodes[g as usize].roster.clone();
        let approvals = self
            .oracle
            .seen(g, o)
            .map(|s| s.approvals.clone())
            .unwrap_or_default();
        let (mut honest, mut hostile_ok) = (false, false);
        let mut seen = Vec::new();
        for (t, by) in approvals {
            let fresh = t >= seized_at && now.saturating_sub(t) <= window;
            let root = self
                .hostile
                .as_ref()
                .and_then(|h| h.taint.get(&by).copied());
            let known = root.is_some_and(|root| {
                self.hostile.as_ref().is_some_and(|h| {
                    h.revoked
                        .iter()
                        .any(|(r, id)| *r == root && roster.roster.knows(id))
                })
            });
            seen.push(format!(
                "{} at {}{}{}",
                by.short(),
                crate::trace::clock(t),
                match root {
                    None => String::new(),
                    Some(r) => format!(
                        " (hostile, of n{r}{})",
                        if known { ", revocation held" } else { "" }
                    ),
                },
                if fresh { "" } else { " (not for this boot)" }
            ));
            if !fresh {
                continue;
            }
            match root {
                None => honest = true,
                Some(_) if !known => hostile_ok = true,
                Some(_) => {}
            }
        }
        self.checks
            .check(inv::RELEASE_HONEST_APPROVAL, honest || hostile_ok, &[g, o], || {
                format!(
                    "guardian n{g} released a share of n{o} (epoch {epoch}), seized at {}, with no honest approval; approvals it was sent: {}",
                    crate::trace::clock(seized_at),
                    if seen.is_empty() { "none".into() } else { seen.join(", ") }
                )
            });
        if hostile_ok && !honest {
            self.hostile_opened.insert(o);
            if let Some(h) = &mut self.hostile {
                h.stats.seized_releases_on_hostile_approval += 1;
            }
        }
    }

    /// The membership invariants on node i's replica, once per distinct
    /// replica state (they are functions of it): `roster.bounded`,
    /// `revocation.takes-effect` and, with hostile members,
    /// `hostile.minted-never-active` and `hostile.out-after-revocation`.
    pub(crate) fn check_membership(&mut self, i: u32) {
        let e = self.nodes[i as usize].roster.clone();
        if !self.judged.insert(e.digest) {
            return;
        }
        let r = &e.roster;
        let (len, bound) = (r.len_ops(), self.rosters.bound());
        self.checks.check(inv::ROSTER_BOUNDED, len <= bound, &[i], || {
            format!("n{i}'s roster holds {len} operations, more than the {bound} issued (rekeys counted once per node)")
        });
        if let Some(h) = &mut self.hostile {
            h.stats.max_roster_ops = h.stats.max_roster_ops.max(len);
        }
        let founder = self.id(0);
        let name = |s: &Sim, id: &NodeId| match s.idx(id) {
            Some(j) => format!("n{j}"),
            None => id.short(),
        };
        let mut ok = 0;
        let mut bad: Option<String> = None;
        for rv in &self.rosters.revokes {
            if rv.by == founder && r.knows(&rv.id) {
                if r.is_active(&rv.node) {
                    bad = Some(format!(
                        "n{i}'s roster holds the founder's revocation of {} but counts it as active",
                        name(self, &rv.node)
                    ));
                    break;
                }
                ok += 1;
            }
        }
        let after = self.hostile_revoked_in(r);
        if after && bad.is_none() {
            for rv in &self.revocations {
                let (id, v) = (self.rosters.id(rv.op), self.nodes[rv.node as usize].id);
                if r.knows(&id) {
                    if r.is_active(&v) {
                        bad = Some(format!(
                            "n{i}'s roster holds an admin's revocation of n{} (and the founder's of the hostile members) but counts n{} as active",
                            rv.node, rv.node
                        ));
                        break;
                    }
                    ok += 1;
                }
            }
        }
        self.checks.passed(inv::REVOCATION_TAKES_EFFECT, ok);
        if let Some(b) = bad {
            self.checks
                .check(inv::REVOCATION_TAKES_EFFECT, false, &[i], || b);
        }
        let Some(h) = &self.hostile else { return };
        let h1 = self.nodes[h.auditor as usize].id;
        let minted_out = h.auditor_mints.iter().find(|m| r.is_active(m));
        let h1_guardian = r.member(&h1).is_some_and(|m| m.role != Role::Auditor);
        let detail = match (minted_out, h1_guardian) {
            (Some(m), _) => format!(
                "n{i}'s roster counts {}, minted by the auditor n{}, as active",
                m.short(),
                h.auditor
            ),
            (None, true) => format!(
                "n{i}'s roster counts the auditor n{} as a guardian",
                h.auditor
            ),
            _ => String::new(),
        };
        self.checks.check(
            inv::MINTED_NEVER_ACTIVE,
            minted_out.is_none() && !h1_guardian,
            &[i, h.auditor],
            || detail,
        );
        if !after {
            return;
        }
        let mut why = None;
        if let Some(id) = h.taint.keys().find(|id| r.is_active(id)) {
            why = Some(format!("counts hostile {} as active", name(self, id)));
        }
        if why.is_none() {
            if let Some(n) = self
                .nodes
                .iter()
                .find(|n| !n.hostile && !n.revoked && r.is_revoked(&n.id))
            {
                why = Some(format!(
                    "counts honest {} as revoked, which no admin did",
                    name(self, &n.id)
                ));
            }
        }
        if why.is_none() {
            for op in r.ops() {
                let signer = op.body.signer();
                let of = match &op.body {
                    OpBody::Admit { member, .. } => Some(member.id),
                    _ => None,
                };
                if h.taint.contains_key(&signer) || of.is_some_and(|m| h.taint.contains_key(&m)) {
                    why = Some(format!(
                        "still holds an operation signed by or admitting hostile {}",
                        name(
                            self,
                            of.as_ref()
                                .filter(|m| h.taint.contains_key(*m))
                                .unwrap_or(&signer)
                        )
                    ));
                    break;
                }
            }
        }
        let (h1, h2) = (h.auditor, h.guardian);
        self.checks
            .check(inv::HOSTILE_OUT, why.is_none(), &[i, h1, h2], || {
                format!(
                    "n{i}'s roster holds the founder's revocation of n{h1} and n{h2} but {}",
                    why.unwrap_or_default()
                )
            });
    }
}
