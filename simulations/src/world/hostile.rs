//! The hostile scenario: members that turn against the mesh.
//!
//! Two members the founder admitted are hostile from the start: H1, an
//! auditor (the last machine), and H2, a guardian (the one before). Their
//! keywardd is the real node like everyone's; besides it, the machine
//! holds their keys (and the keys of members they mint) and publishes,
//! every 2-8 minutes, operations and admin messages of its own making,
//! signed with those keys, as gossip authored by that machine (what a
//! modified daemon could send). The honest nodes' real code must reject
//! what the roster rules refuse:
//! - `AuditorMints`: H1 admits a fresh "guardian", which admits another
//!   (an auditor admits nobody); H2 endorses H1's own record claiming the
//!   guardian role;
//! - `Sybils`: H2 or one of its sybils admits one to three fresh sybils
//!   (chains), sybils endorse each other, a sybil re-admits H2;
//! - `Flood`: 20-120 rekeys of one hostile signer at once;
//! - `RevokeHonest`: revocations of one to three honest members (the
//!   founder too, which the roster refuses);
//! - `Approve`: an approval of a seized server (else of any node) signed
//!   by a hostile member or one it minted.
//!
//! Right after the seizure every seized server is approved that way, and
//! between 2 min and timeout + 5 min after it an admin on the founder
//! revokes H1 and H2 through the control API (`keyward revoke
//! --cascade`: nothing they admitted is re-endorsed). The checks are in
//! `hostile_checks`.

use keyward_core::control::CtlRequest;
use keyward_core::identity::{NodeKey, Sig};
use keyward_core::proto::{AdminBody, AdminKind, AdminMsg};
use keyward_core::roster::{Member, OpBody, Role, SignedOp};

use super::*;

/// A founder, two honest members, the hostile auditor and guardian.
pub const MIN_NODES: usize = 5;
const MAX_SYBILS: usize = 40;
const MAX_FAKES: usize = 12;

/// A hostile move; its number is the `b` of its trace record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    AuditorMints = 0,
    Sybils = 1,
    Flood = 2,
    RevokeHonest = 3,
    Approve = 4,
    Burst = 5,
}

/// Whose key signs: a machine's, or one a hostile member minted.
#[derive(Clone, Copy, Debug)]
enum Who {
    Node(u32),
    Minted(usize),
}

struct Minted {
    key: NodeKey,
    member: Member,
    /// The hostile machine that holds the key (H1 or H2).
    root: u32,
}

/// What the hostile members did, for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostileStats {
    pub moves: u64,
    pub auditor_mints: u64,
    pub sybils_minted: u64,
    pub endorsements: u64,
    pub rekeys: u64,
    pub revocations_of_honest: u64,
    /// Honest members a hostile one revoked, revoked again by the
    /// founder's `keyward revoke` of it (`revocations_kept`).
    pub honest_revocations_kept: u64,
    /// Honest machines admitted only through a hostile member (a join
    /// it answered), out with it by the founder's `keyward revoke
    /// --cascade`.
    pub honest_dropped_by_cascade: u64,
    pub approvals_sent: u64,
    /// When the founder's revocation of H1 and H2 was ordered.
    pub revoked_at: Option<Millis>,
    pub seized_releases_on_hostile_approval: u64,
    pub seized_opened: usize,
    pub max_roster_ops: usize,
    pub roster_bound: usize,
}

pub struct Hostile {
    pub auditor: u32,
    pub guardian: u32,
    minted: Vec<Minted>,
    /// Every hostile id (H1, H2 and all they minted) and its root.
    pub taint: BTreeMap<NodeId, u32>,
    pub auditor_mints: Vec<NodeId>,
    /// Next rekey `seq` per hostile signer.
    seq: BTreeMap<NodeId, u64>,
    /// Releases already judged: (guardian, owner, epoch).
    pub judged: BTreeSet<(u32, u32, u64)>,
    pub opened: BTreeSet<u32>,
    pub stats: HostileStats,
}

impl Hostile {
    pub fn new(auditor: u32, guardian: u32, ids: [NodeId; 2]) -> Hostile {
        Hostile {
            auditor,
            guardian,
            minted: Vec::new(),
            taint: [(ids[0], auditor), (ids[1], guardian)]
                .into_iter()
                .collect(),
            auditor_mints: Vec::new(),
            seq: BTreeMap::new(),
            judged: BTreeSet::new(),
            opened: BTreeSet::new(),
            stats: HostileStats::default(),
        }
    }

    fn sybils(&self, guardians: bool) -> Vec<usize> {
        (0..self.minted.len())
            .filter(|&k| {
                let m = &self.minted[k];
                m.root == self.guardian && (!guardians || m.member.role == Role::Guardian)
            })
            .collect()
    }
}

impl World {
    fn h(&self) -> &Hostile {
        self.hostile.as_ref().expect("hostile scenario")
    }

    fn h_mut(&mut self) -> &mut Hostile {
        self.hostile.as_mut().expect("hostile scenario")
    }

    pub(super) fn hostile_act(&mut self, a: Act) {
        if self.hostile.is_none() {
            return;
        }
        match a {
            Act::Hostile => self.hostile_move(),
            Act::HostileBurst => self.hostile_burst(),
            Act::RevokeHostile => self.revoke_hostile(),
            _ => {}
        }
    }

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
            Who::Node(i) => &self.machines[i as usize].key,
            Who::Minted(k) => &self.h().minted[k].key,
        }
    }

    /// The signer's clock: the hostile machine's.
    fn hostile_now(&self) -> Millis {
        self.local(self.h().guardian)
    }

    fn admit_op(&mut self, by: Who, member: Member, claim: Sig, first: bool) -> SignedOp {
        let invite = first.then(|| serde_bytes::ByteArray::new(self.rng.gen()));
        let at = self.hostile_now();
        let key = self.key_of(by);
        SignedOp::sign(
            OpBody::Admit {
                mesh: self.mesh,
                claim,
                member,
                invite,
                by: key.id(),
                at,
            },
            key,
        )
    }

    fn who(&mut self, root: u32, minted: &[usize]) -> Who {
        if minted.is_empty() || self.rng.gen_bool(0.5) {
            Who::Node(root)
        } else {
            Who::Minted(minted[self.rng.gen_range(0..minted.len())])
        }
    }

    /// Publishes raw operations from hostile machine `from`, one gossip
    /// message each, if its keywardd runs (its transport carries them).
    fn hostile_push(&mut self, from: u32, ops: Vec<SignedOp>) {
        if !self.machines[from as usize].running() {
            return;
        }
        self.watch.issued(&ops);
        for op in ops {
            self.publish(from, Gossip::Op(op));
        }
    }

    fn hostile_move(&mut self) {
        let first = self.h().stats.moves == 0;
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
        self.h_mut().stats.moves += 1;
        let (h1, h2) = (self.h().auditor, self.h().guardian);
        let who = if mv == Move::AuditorMints { h1 } else { h2 };
        self.rec(Kind::Hostile, who as u64, mv as u64);
        match mv {
            Move::AuditorMints => self.auditor_mints(),
            Move::Sybils => self.mint_sybils(),
            Move::Flood => self.rekey_flood(),
            Move::RevokeHonest => self.revoke_honest(),
            Move::Approve | Move::Burst => {
                let seized: Vec<u32> = self.seizures.keys().copied().collect();
                let o = if !seized.is_empty() && self.rng.gen_bool(0.7) {
                    Some(seized[self.rng.gen_range(0..seized.len())])
                } else {
                    self.pick(|m| m.token.is_some() && !m.hostile)
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

    fn auditor_mints(&mut self) {
        let (h1, h2) = (self.h().auditor, self.h().guardian);
        if self.h().auditor_mints.len() >= MAX_FAKES {
            return;
        }
        let k = self.h().minted.len();
        let mut ops = Vec::new();
        let (fake, fm) = self.fresh_member(format!("fake{k}"), Role::Guardian);
        let claim = fm.claim(self.mesh, &fake);
        ops.push(self.admit_op(Who::Node(h1), fm.clone(), claim, true));
        let mut new = vec![(fake, fm)];
        if self.rng.gen_bool(0.5) {
            let (fake2, fm2) = self.fresh_member(format!("fake{}", k + 1), Role::Guardian);
            let claim = fm2.claim(self.mesh, &fake2);
            let invite = Some(serde_bytes::ByteArray::new(self.rng.gen()));
            let at = self.hostile_now();
            ops.push(SignedOp::sign(
                OpBody::Admit {
                    mesh: self.mesh,
                    claim,
                    member: fm2.clone(),
                    invite,
                    by: new[0].0.id(),
                    at,
                },
                &new[0].0,
            ));
            new.push((fake2, fm2));
        }
        let escalate = if self.rng.gen_bool(0.3) {
            // H1's own record, claiming guardian, endorsed by guardian H2.
            let mut m = self.machines[h1 as usize].me.clone();
            m.role = Role::Guardian;
            let claim = m.claim(self.mesh, &self.machines[h1 as usize].key);
            Some(self.admit_op(Who::Node(h2), m, claim, false))
        } else {
            None
        };
        let h = self.h_mut();
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

    fn mint_sybils(&mut self) {
        let h2 = self.h().guardian;
        let parents = self.h().sybils(true);
        let all = self.h().sybils(false);
        let mut ops = Vec::new();
        let mut new = Vec::new();
        if all.len() < MAX_SYBILS {
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
            let by = self.who(h2, &parents);
            let of = all[self.rng.gen_range(0..all.len())];
            let m = &self.h().minted[of];
            let (member, claim) = (m.member.clone(), m.member.claim(self.mesh, &m.key));
            ops.push(self.admit_op(by, member, claim, false));
            endorse += 1;
        }
        if !parents.is_empty() && self.rng.gen_bool(0.3) {
            // A sybil re-admits H2, with H2's own claim.
            let by = Who::Minted(parents[self.rng.gen_range(0..parents.len())]);
            let m = self.machines[h2 as usize].me.clone();
            let claim = m.claim(self.mesh, &self.machines[h2 as usize].key);
            ops.push(self.admit_op(by, m, claim, false));
            endorse += 1;
        }
        let h = self.h_mut();
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

    fn rekey_flood(&mut self) {
        let (h1, h2) = (self.h().auditor, self.h().guardian);
        let sybils = self.h().sybils(false);
        let (who, root) = if self.rng.gen_bool(0.25) {
            (Who::Node(h1), h1)
        } else {
            (self.who(h2, &sybils), h2)
        };
        let id = self.key_of(who).id();
        let n = self.rng.gen_range(20..=120u64);
        let start = self.h().seq.get(&id).copied().unwrap_or(1);
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
        let h = self.h_mut();
        h.seq.insert(id, start + n);
        h.stats.rekeys += n;
        self.hostile_push(root, ops);
    }

    fn revoke_honest(&mut self) {
        let (h1, h2) = (self.h().auditor, self.h().guardian);
        let sybils = self.h().sybils(false);
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
                self.pick(|m| !m.hostile)
            };
            targets.extend(t);
        }
        let at = self.hostile_now();
        let ops: Vec<SignedOp> = targets
            .into_iter()
            .map(|t| {
                let key = self.key_of(who);
                SignedOp::sign(
                    OpBody::Revoke {
                        mesh: self.mesh,
                        node: self.machines[t as usize].id,
                        by: key.id(),
                        reason: "hostile".into(),
                        at,
                    },
                    key,
                )
            })
            .collect();
        self.h_mut().stats.revocations_of_honest += ops.len() as u64;
        self.hostile_push(root, ops);
    }

    fn hostile_approver(&mut self) -> NodeId {
        let h = self.h();
        let mut ids: Vec<NodeId> = h.taint.keys().copied().collect();
        ids.extend(h.sybils(true).iter().map(|&k| h.minted[k].member.id));
        ids[self.rng.gen_range(0..ids.len())]
    }

    /// `keyward approve` of `o` signed by hostile id `by`, published from
    /// the hostile machine that holds its key.
    fn hostile_approve(&mut self, o: u32, by: NodeId) {
        let h = self.h();
        let from = h.taint.get(&by).copied().unwrap_or(h.guardian);
        if !self.machines[from as usize].running() {
            return;
        }
        let key = if self.machines[from as usize].id == by {
            NodeKey::from_secret(&self.machines[from as usize].key.secret())
        } else {
            match h.minted.iter().find(|m| m.member.id == by) {
                Some(m) => NodeKey::from_secret(&m.key.secret()),
                None => return,
            }
        };
        let body = AdminBody {
            mesh: self.mesh,
            kind: AdminKind::Approve {
                owner: self.machines[o as usize].id,
            },
            by,
            at: self.local(from),
        };
        self.h_mut().stats.approvals_sent += 1;
        self.publish(from, Gossip::Admin(AdminMsg::sign(body, &key)));
    }

    fn hostile_burst(&mut self) {
        let h2 = self.h().guardian;
        let sybils = self.h().sybils(true);
        let by = if sybils.is_empty() {
            self.machines[h2 as usize].id
        } else {
            let k = sybils[self.rng.gen_range(0..sybils.len())];
            self.h().minted[k].member.id
        };
        self.rec(Kind::Hostile, h2 as u64, Move::Burst as u64);
        let seized: Vec<u32> = self.seizures.keys().copied().collect();
        for o in seized {
            self.hostile_approve(o, by);
        }
    }

    /// An admin on the founder revokes H1 and H2 with `keyward revoke
    /// --cascade` (so the founder re-endorses nothing they admitted:
    /// without it, `keyward revoke` admits their dependents again), when
    /// the founder's keywardd runs.
    fn revoke_hostile(&mut self) {
        if self.h().stats.revoked_at.is_some() {
            return;
        }
        if !self.machines[0].running() || self.machines[0].leaving {
            self.q.after(MIN, Ev::Act(Act::RevokeHostile));
            return;
        }
        let now = self.now();
        self.h_mut().stats.revoked_at = Some(now);
        let roots = [self.h().auditor, self.h().guardian];
        self.rec(Kind::HostileRevoke, 0, 2);
        // `keyward revoke` keeps the revoked member's revocations: the
        // members it revoked that are out now are revoked again from the
        // founder ("kept: revoked before its revoker was",
        // `Revoked::revocations_kept`). So an honest member a hostile
        // one revoked stays out after the admin's revocation of the
        // hostile one, by the admin's own command, until an admin admits
        // it again. The old model's check ("no honest member that no
        // admin revoked counts as revoked") assumed the admin's
        // revocation cleared them; here they count as revoked by the
        // admin, and the summary counts them.
        let kept: Vec<u32> = {
            let r = self.machines[0].node.as_ref().expect("running").roster();
            let me = self.machines[0].id;
            roots
                .iter()
                .flat_map(|h| r.revoked_by(&self.machines[*h as usize].id))
                .filter(|t| *t != me && r.is_revoked(t) && r.may_revoke(&me, t))
                .filter_map(|t| self.ids.get(&t).copied())
                .collect()
        };
        // `--cascade` re-endorses nothing: honest machines whose only
        // admission chains pass through H1 or H2 (a join H2's keywardd
        // answered) leave with them, by the admin's own command. They
        // learn it at their next refused sync (`roster::orphans`;
        // `hostile.revocation-reaches-members` checks they do), and
        // until then hold an old roster, which `roster.converge` must
        // not take for a member's (seed 134 of the hostile seeds: n7,
        // invited by H2, with the founder down was one of the two
        // settled rosters).
        let dropped: Vec<u32> = {
            let r = self.machines[0].node.as_ref().expect("running").roster();
            roots
                .iter()
                .flat_map(|h| r.dependents_of(&self.machines[*h as usize].id))
                .filter_map(|t| self.ids.get(&t).copied())
                .filter(|&v| !roots.contains(&v))
                .collect()
        };
        for v in kept {
            if !self.machines[v as usize].revoked {
                self.machines[v as usize].revoked = true;
                self.h_mut().stats.honest_revocations_kept += 1;
            }
        }
        for v in dropped {
            if !self.machines[v as usize].revoked {
                self.machines[v as usize].revoked = true;
                self.h_mut().stats.honest_dropped_by_cascade += 1;
            }
        }
        for r in roots {
            self.machines[r as usize].revoked = true;
            let who = self.machines[r as usize].id.to_string();
            let req = CtlRequest::Revoke {
                who,
                cascade: true,
                reason: "hostile member".into(),
            };
            self.control(0, req, Ctl::Admin);
        }
    }
}
