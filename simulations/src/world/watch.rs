//! The invariants that are not judged at a release or an unlock:
//!
//! - `unlock.reboot-with-quorum`, evaluated every [`TICK`] of world
//!   time: for each machine whose initramfs asks for shares, the shares
//!   its current attempt holds plus the guardians that would release now
//!   (keywardd running, reachable across any partition, owner and
//!   guardian active in that guardian's roster, no lockdown there, the
//!   epoch's envelope held, the owner not up there, and the oracle's
//!   record of what was delivered grounds a release: liveness within
//!   timeout, an approval by an active guardian, or the extended
//!   timeout). Once that reaches T at every look for longer than
//!   [`QUORUM_BOUND`] (+ `approval_delay`) and the machine is still
//!   locked, the check fails.
//! - The membership checks, judged on every replica state a node writes
//!   (each distinct roster digest once): `roster.bounded`,
//!   `revocation.takes-effect`, `roster.revoked-stays-out` and, in the
//!   hostile scenario, `hostile.minted-never-active` and
//!   `hostile.out-after-revocation` (see `hostile`).

use keyward_core::roster::OpId;

use super::*;

/// How often the quorum watch looks.
pub const TICK: Millis = 10 * SEC;
/// A node with a quorum that would release must be unlocked within this:
/// generous against the keyscript's 60-s attempts and 5-s pauses, the
/// client's retry cap, latency and the daemon's own delays.
pub const QUORUM_BOUND: Millis = 3 * MIN;

/// A revocation seen in some replica's write.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub id: OpId,
    pub node: NodeId,
}

#[derive(Default)]
pub struct Watch {
    /// Per locked machine: (its boot's start, since when a quorum held
    /// at every look).
    quorate: BTreeMap<u32, (Millis, Millis)>,
    /// Machines whose roster was written during this event.
    pub dirty: BTreeSet<u32>,
    /// When some replica last changed (world time).
    pub changed_at: Millis,
    judged: BTreeSet<[u8; 32]>,
    /// Every operation any node wrote, rekeys aside, and the nodes that
    /// signed rekeys: a replica holds at most one rekey per node.
    ops: BTreeSet<OpId>,
    rekeyers: BTreeSet<NodeId>,
    /// Revocations signed by the founder (the admin's), by op id.
    pub revocations: Vec<Revocation>,
    revocation_ids: BTreeSet<OpId>,
    /// Most operations any replica held.
    pub max_ops: usize,
}

impl Watch {
    /// Notes operations written to some disk (or issued at the start).
    pub fn issued(&mut self, ops: &[SignedOp]) {
        for op in ops {
            match &op.body {
                OpBody::Rekey { node, .. } => {
                    self.rekeyers.insert(*node);
                }
                _ => {
                    self.ops.insert(op.id());
                }
            }
        }
    }

    /// Records the founder's revocations among `ops` not seen before;
    /// returns the nodes they revoke.
    pub fn revocations_in(&mut self, founder: NodeId, ops: &[SignedOp]) -> Vec<NodeId> {
        let mut new = vec![];
        for op in ops {
            if let OpBody::Revoke { node, by, .. } = &op.body {
                let id = op.id();
                if *by == founder && self.revocation_ids.insert(id) {
                    self.revocations.push(Revocation { id, node: *node });
                    new.push(*node);
                }
            }
        }
        new
    }

    pub fn bound(&self) -> usize {
        self.ops.len() + self.rekeyers.len()
    }
}

impl World {
    /// After every event: judge the replicas it changed.
    pub(super) fn after_event(&mut self) {
        if self.watch.dirty.is_empty() {
            return;
        }
        for m in std::mem::take(&mut self.watch.dirty) {
            self.check_membership(m);
        }
    }

    /// `unlock.reboot-with-quorum`, `roster.converge` and
    /// `hostile.revocation-reaches-members`, every `TICK`.
    pub(super) fn watch_tick(&mut self) {
        let now = self.now();
        self.check_converged(now);
        self.check_hostile_reached(now);
        let bound = QUORUM_BOUND + self.cfg.policy.approval_delay;
        let mut ok = 0;
        for o in 0..self.machines.len() as u32 {
            let m = &self.machines[o as usize];
            let (Some(boot), Some(t)) = (m.asking_since, m.token.as_ref()) else {
                self.watch.quorate.remove(&o);
                continue;
            };
            if m.phase != Phase::Unlocking {
                self.watch.quorate.remove(&o);
                continue;
            }
            let have = m.got.len();
            let need = t.threshold;
            let (epoch, gs) = (t.epoch, t.guardians.clone());
            let got = m.got.clone();
            let would = gs
                .iter()
                .filter(|g| !got.contains(&g.0) && self.would_release(g.0, o, epoch))
                .count();
            if have + would < need {
                self.watch.quorate.remove(&o);
                continue;
            }
            let since = match self.watch.quorate.get(&o) {
                Some((b, s)) if *b == boot => *s,
                _ => now,
            };
            self.watch.quorate.insert(o, (boot, since));
            if now - since <= bound {
                ok += 1;
            } else {
                self.checks.check(inv::UNLOCK_QUORUM, false, &[o], || {
                    format!(
                        "n{o} has been booting with a quorum of guardians that would release since {} and is still locked",
                        crate::trace::clock(since)
                    )
                });
                return;
            }
        }
        self.checks.passed(inv::UNLOCK_QUORUM, ok);
    }

    /// Whether guardian g would release o's share of `epoch` now, by the
    /// world's record of what g was told (see the module doc).
    fn would_release(&self, g: u32, o: u32, epoch: u64) -> bool {
        let gm = &self.machines[g as usize];
        let Some(node) = gm.node.as_ref() else {
            return false;
        };
        if !gm.running() || gm.leaving || !self.net.same_side(g, o) {
            return false;
        }
        let oid = self.machines[o as usize].id;
        let r = node.roster();
        let ok = r.is_active(&gm.id)
            && r.is_active(&oid)
            && !r.is_revoked(&oid)
            && node.guardian().lockdown().is_none()
            && node
                .guardian()
                .owner(&oid)
                .is_some_and(|s| s.envelopes.contains_key(&epoch));
        if !ok {
            return false;
        }
        let p = self.cfg.policy;
        let now = self.local(g);
        if self.oracle.up(g, o, now, &p) {
            return false;
        }
        let may_approve = |by: &NodeId| r.member(by).is_some_and(|m| m.role == Role::Guardian);
        self.oracle
            .ground_until(g, o, now, &p, p.timeout, may_approve)
            .is_some()
    }

    /// The membership invariants on machine i's replica, once per
    /// distinct replica state.
    fn check_membership(&mut self, i: u32) {
        let Some(node) = self.machines[i as usize].node.as_ref() else {
            return;
        };
        let r = node.roster();
        let digest = r.digest();
        self.machines[i as usize].digest = digest;
        let Some(node) = self.machines[i as usize].node.as_ref() else {
            return;
        };
        let r = node.roster();
        if !self.watch.judged.insert(digest) {
            return;
        }
        let (len, bound) = (r.len_ops(), self.watch.bound());
        self.watch.max_ops = self.watch.max_ops.max(len);
        let mut checks = std::mem::take(&mut self.checks);
        checks.check(inv::ROSTER_BOUNDED, len <= bound, &[i], || {
            format!("n{i}'s roster holds {len} operations, more than the {bound} issued (rekeys counted once per node)")
        });
        let name = |id: &NodeId| match self.ids.get(id) {
            Some(j) => format!("n{j}"),
            None => id.short(),
        };
        let held: Vec<&Revocation> = self
            .watch
            .revocations
            .iter()
            .filter(|rv| r.knows(&rv.id))
            .collect();
        let mut bad = None;
        for rv in &held {
            if r.is_active(&rv.node) {
                bad = Some(format!(
                    "n{i}'s roster holds the founder's revocation of {} but counts it as active",
                    name(&rv.node)
                ));
                break;
            }
        }
        match bad {
            None => checks.passed(inv::REVOCATION_TAKES_EFFECT, held.len() as u64),
            Some(b) => checks.check(inv::REVOCATION_TAKES_EFFECT, false, &[i], || b),
        }
        // Nobody the revoked node admitted after its revocation counts,
        // unless someone else admitted it too.
        let revoked: BTreeSet<NodeId> = held.iter().map(|rv| rv.node).collect();
        let mut stays = None;
        if !revoked.is_empty() {
            let ops = r.ops();
            let mut admitted_by: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
            for op in &ops {
                if let OpBody::Admit { member, by, .. } = &op.body {
                    admitted_by.entry(member.id).or_default().push(*by);
                }
            }
            for (m, bys) in &admitted_by {
                let only_revoked = bys.iter().all(|b| revoked.contains(b));
                if only_revoked && r.is_active(m) {
                    stays = Some(format!(
                        "n{i}'s roster counts {} as active, admitted only by revoked members",
                        name(m)
                    ));
                    break;
                }
            }
            let still = revoked.iter().find(|v| r.is_active(v));
            if let Some(v) = still {
                stays = Some(format!(
                    "n{i}'s roster holds a revocation of {} but counts it as active",
                    name(v)
                ));
            }
        }
        checks.check(inv::REVOKED_OUT, stays.is_none(), &[i], || {
            stays.clone().unwrap_or_default()
        });
        self.checks = checks;
        self.check_hostile_membership(i);
    }
}
