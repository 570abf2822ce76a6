//! Scenario actions: churn processes, partitions, seizure, outage,
//! lockdown, probes by attackers, and the admin who reacts to them.

use keyward_core::guardian::{LockState, Millis, ShareRequest};
use keyward_core::identity::{BootKey, NodeKey};
use keyward_core::roster::{Member, OpBody, Role, SignedOp};
use rand::Rng;

use crate::net::ATTACKER;
use crate::node::{Node, Phase, Unlock};
use crate::scenario::{Scenario, DAY, HOUR, MIN, SEC};
use crate::sim::{Act, Ev, Msg, Revocation, Sim};
use crate::trace::Kind;

/// Schedules the scenario's first actions.
pub fn plan(sim: &mut Sim) {
    for a in [
        Act::Reboot,
        Act::Crash,
        Act::Join,
        Act::Revoke,
        Act::Stranger,
        Act::Copy,
        Act::Theft,
    ] {
        sim.next(a);
    }
    let end = sim.cfg.end();
    let p = sim.cfg.policy;
    match sim.cfg.scenario {
        Scenario::Partitions => {
            let d = sim.uniform(10 * MIN, 30 * MIN);
            sim.q.at(d, Ev::Act(Act::Partition));
        }
        Scenario::Seizure => sim.q.at((4 * HOUR).min(end / 4), Ev::Act(Act::Seize)),
        Scenario::Outage => sim
            .q
            .at((end / 4).max(p.up_window + MIN), Ev::Act(Act::Outage)),
        Scenario::Lockdown => sim.q.at(end / 3, Ev::Act(Act::Lockdown)),
        Scenario::Hostile => crate::hostile::plan(sim),
        Scenario::Steady | Scenario::Churn => {}
    }
    if sim.cfg.admin_review > 0 {
        sim.q.at(
            sim.cfg.admin_review,
            Ev::Act(Act::Review { periodic: true }),
        );
    }
}

/// Downtime after a crash: mostly minutes, sometimes hours.
fn crash_downtime(sim: &mut Sim) -> Millis {
    let r: f64 = sim.rng.gen();
    if r < 0.7 {
        sim.uniform(30 * SEC, 3 * MIN)
    } else if r < 0.93 {
        sim.uniform(3 * MIN, 20 * MIN)
    } else {
        sim.uniform(20 * MIN, 3 * HOUR)
    }
}

/// An honest node the admin vouches for: not revoked, seized, stolen or
/// hostile.
pub(crate) fn legit(n: &Node) -> bool {
    !n.revoked && !n.seized && !n.stolen && !n.hostile
}

impl Sim {
    /// Schedules the next occurrence of a Poisson churn process.
    fn next(&mut self, a: Act) {
        let r = &self.cfg.rates;
        let n = self.nodes.len() as f64;
        let per_day = match a {
            Act::Reboot => r.reboots * n,
            Act::Crash => r.crashes * n,
            Act::Join => r.joins,
            Act::Revoke => r.revocations,
            Act::Stranger => r.strangers,
            Act::Copy => r.copies,
            Act::Theft => r.thefts,
            _ => 0.0,
        };
        if per_day <= 0.0 {
            return;
        }
        let u: f64 = self.rng.gen();
        let d = (-(1.0 - u).ln() / per_day * DAY as f64) as Millis;
        self.q.after(d.max(1), Ev::Act(a));
    }

    pub(crate) fn act(&mut self, a: Act) {
        let now = self.now();
        let p = self.cfg.policy;
        match a {
            Act::Reboot => {
                if let Some(i) = self.pick(|n, _| n.running() && legit(n)) {
                    self.stats.reboots += 1;
                    self.rec(Kind::Reboot, i, Sim::none(), 0);
                    let d = self.uniform(10 * SEC, 60 * SEC);
                    self.shutdown(i, d);
                }
                self.next(a);
            }
            Act::Crash => {
                if let Some(i) = self.pick(|n, _| n.phase != Phase::Down && legit(n)) {
                    self.stats.crashes += 1;
                    let d = crash_downtime(self);
                    self.rec(Kind::Crash, i, Sim::none(), d);
                    self.crash(i, Some(d));
                }
                self.next(a);
            }
            Act::Join => {
                self.join();
                self.next(a);
            }
            Act::Revoke => {
                self.revoke();
                self.next(a);
            }
            Act::Stranger => {
                self.stranger();
                self.next(a);
            }
            Act::Copy => {
                self.copy_attack();
                self.next(a);
            }
            Act::Theft => {
                if let Some(i) = self.pick(|n, i| i != 0 && n.running() && legit(n)) {
                    self.stats.thefts += 1;
                    self.rec(Kind::Seize, i, Sim::none(), 0);
                    self.nodes[i as usize].stolen = true;
                    // The thief boots it somewhere after a while.
                    let u: f64 = self.rng.gen();
                    let d = (-(1.0 - u).ln() * (20 * MIN) as f64) as Millis + MIN;
                    self.crash(i, Some(d));
                    // An hour later the admin notices and revokes it.
                    self.q.after(HOUR, Ev::Act(Act::RevokeNode(i)));
                }
                self.next(a);
            }
            Act::Readmit(v) => self.readmit(v),
            Act::RevokeNode(v) => self.revoke_node(v, false),
            Act::CrashNode(v, d) => {
                self.rec(Kind::Crash, v, Sim::none(), d);
                self.crash(v, Some(d));
            }
            Act::Partition => {
                let n = self.nodes.len();
                let minority: bool = self.rng.gen();
                let share = if minority {
                    self.rng.gen_range(0.1..0.3)
                } else {
                    0.5
                };
                let groups: Vec<u16> = (0..n).map(|_| self.rng.gen_bool(share) as u16).collect();
                let x = groups.iter().filter(|g| **g == 1).count() as u64;
                for o in 0..n as u32 {
                    for g in self.nodes[o as usize].ping_targets() {
                        if groups[o as usize] != groups[g as usize] {
                            self.conn_alive(o, g);
                        }
                    }
                }
                self.net.partition(groups);
                self.stats.partitions += 1;
                self.rec(Kind::Partition, Sim::none(), Sim::none(), x);
                let d = self.uniform(10 * MIN, 30 * MIN);
                self.q.after(d, Ev::Act(Act::Heal));
            }
            Act::Heal => {
                self.net.heal();
                self.healed_at = now;
                self.rec(Kind::Heal, Sim::none(), Sim::none(), 0);
                let d = self.uniform(20 * MIN, 60 * MIN);
                self.q.after(d, Ev::Act(Act::Partition));
            }
            Act::Seize => {
                let k = self.cfg.seize;
                for _ in 0..k {
                    let settled = p.extended_timeout;
                    let pick = self.pick(|n, i| {
                        i != 0 && n.running() && legit(n) && n.running_since + settled <= now
                    });
                    let Some(i) = pick else { continue };
                    self.stats.seized += 1;
                    self.nodes[i as usize].seized = true;
                    self.seizures.insert(i, now);
                    self.rec(Kind::Seize, i, Sim::none(), 0);
                    let d = self.uniform(p.timeout + 10 * MIN, p.timeout + 3 * HOUR);
                    self.crash(i, Some(d));
                }
            }
            Act::Outage => {
                self.rec(Kind::Outage, Sim::none(), Sim::none(), 0);
                for i in 0..self.nodes.len() as u32 {
                    self.crash(i, None);
                }
                self.outage = Some(crate::sim::Outage {
                    admin_started: false,
                    last_progress: now,
                });
                let d = p.timeout.max(p.extended_timeout) + self.uniform(15 * MIN, 60 * MIN);
                self.q.after(d, Ev::Act(Act::PowerBack));
            }
            Act::PowerBack => {
                self.rec(Kind::PowerBack, Sim::none(), Sim::none(), 0);
                for i in 0..self.nodes.len() as u32 {
                    let d = self.uniform(0, 60 * SEC);
                    self.timer(i, d, crate::sim::Timer::PowerOn);
                }
                self.q.after(10 * MIN, Ev::Act(Act::AdminOutage));
            }
            Act::AdminOutage => self.admin_outage(),
            Act::ApproveLoop => self.approve_loop(),
            Act::Lockdown | Act::Lift => {
                let on = matches!(a, Act::Lockdown);
                let Some(admin) = self.admin_node() else {
                    self.q.after(MIN, Ev::Act(a));
                    return;
                };
                self.lockdown = on;
                let l = LockState {
                    by: self.id(admin),
                    at: now,
                    on,
                };
                self.rec(
                    if on { Kind::Lockdown } else { Kind::Lift },
                    admin,
                    Sim::none(),
                    0,
                );
                self.apply_lock(admin, l);
                for j in 0..self.nodes.len() as u32 {
                    if j != admin {
                        self.send(admin, j, Msg::Lock(Box::new(l)));
                    }
                }
                if on {
                    self.q.after(HOUR, Ev::Act(Act::Lift));
                } else {
                    self.q
                        .after(2 * MIN, Ev::Act(Act::Review { periodic: false }));
                }
            }
            Act::Hostile => self.hostile_move(),
            Act::HostileBurst => self.hostile_burst(),
            Act::RevokeHostile => self.revoke_hostile(),
            Act::Review { periodic } => {
                self.review(if periodic { 20 * MIN } else { 0 });
                if periodic {
                    self.q.after(self.cfg.admin_review, Ev::Act(a));
                }
            }
        }
    }

    /// A new node is invited by a running member, joins with a copy of its
    /// roster and binds its disk.
    fn join(&mut self) {
        let Some(r) = self.pick(|n, _| n.running() && legit(n)) else {
            return;
        };
        let k = self.nodes.len() as u32;
        let key = NodeKey::from_seed(self.rng.gen());
        let boot_key = BootKey::from_seed(self.rng.gen());
        let member = Member {
            id: key.id(),
            boot: boot_key.public(),
            name: format!("n{k}"),
            role: Role::Guardian,
        };
        let op = SignedOp::sign(
            OpBody::Admit {
                mesh: self.mesh,
                claim: member.claim(self.mesh, &key),
                member,
                invite: Some(serde_bytes::ByteArray::new(self.rng.gen())),
                by: self.id(r),
                at: self.now(),
            },
            &self.nodes[r as usize].key,
        );
        let idx = self.rosters.add_op(op);
        let new = self.learn(r, &[idx]);
        if new.is_empty() {
            return; // the inviter is no longer a member itself
        }
        self.stats.joins += 1;
        self.rec(Kind::Join, r, k, 0);
        let id = key.id();
        let now = self.now();
        self.ids.insert(id, k);
        self.net.add_node();
        self.oracle.add_node();
        let roster = self.rosters.replica(&self.nodes[r as usize].roster);
        self.nodes.push(Node {
            id,
            key,
            boot_key,
            phase: Phase::Running,
            inc: 0,
            roster,
            guardian: keyward_core::guardian::Guardian::new(id, self.cfg.policy),
            token: None,
            bind: None,
            boot: None,
            role: Role::Guardian,
            hostile: false,
            revoked: false,
            seized: false,
            stolen: false,
            running_since: now,
            down_since: 0,
            powered_on: now,
            pinged_at: now,
        });
        self.gossip(r, new);
        self.start_bind(k);
        let d = self.jitter(self.cfg.policy.interval);
        self.timer(k, d, crate::sim::Timer::Ping);
        let d = self.jitter(self.cfg.sync_interval);
        self.timer(k, d, crate::sim::Timer::Sync);
    }

    /// `keyward revoke`: re-endorse whoever only the victim admitted, then
    /// revoke it. The victim is soon rebooted and keeps asking, forever.
    fn revoke(&mut self) {
        if let Some(v) = self.pick(|n, i| i != 0 && legit(n)) {
            self.revoke_node(v, true);
        }
    }

    /// Revokes node v from the admin's node. A `churn` revocation is then
    /// followed by the revoked node's own attempts to come back.
    fn revoke_node(&mut self, v: u32, churn: bool) {
        if self.nodes[v as usize].revoked {
            return;
        }
        let vid = self.id(v);
        // As `keyward revoke`, which refuses on a node the victim is more
        // senior than: the admin uses a node whose revocation counts.
        let Some(r) = self.admin_node_for(&vid).filter(|&r| r != v) else {
            if !churn {
                self.q.after(MIN, Ev::Act(Act::RevokeNode(v)));
            }
            return;
        };
        let entry = self.nodes[r as usize].roster.clone();
        if !entry.roster.is_active(&vid) {
            return;
        }
        let now = self.now();
        let mut ops = Vec::new();
        for d in entry.roster.dependents_of(&vid) {
            let (member, claim) = entry.roster.claim(&d).expect("dependent was admitted");
            let op = SignedOp::sign(
                OpBody::Admit {
                    mesh: self.mesh,
                    member,
                    claim,
                    invite: None,
                    by: self.id(r),
                    at: now,
                },
                &self.nodes[r as usize].key,
            );
            ops.push(self.rosters.add_op(op));
        }
        let op = SignedOp::sign(
            OpBody::Revoke {
                mesh: self.mesh,
                node: vid,
                by: self.id(r),
                reason: "simulated revocation".into(),
                at: now,
            },
            &self.nodes[r as usize].key,
        );
        let rop = self.rosters.add_op(op);
        ops.push(rop);
        self.revocations.push(Revocation {
            node: v,
            op: rop,
            sybils: Vec::new(),
        });
        self.nodes[v as usize].revoked = true;
        self.stats.revocations += 1;
        self.rec(Kind::Revoke, r, v, ops.len() as u64);
        let new = self.learn(r, &ops);
        self.gossip(r, new);
        if !churn {
            return;
        }
        if self.rng.gen_bool(0.5) {
            let d = self.uniform(SEC, MIN);
            self.q.after(d, Ev::Act(Act::Readmit(v)));
        }
        let d = self.uniform(MIN, 30 * MIN);
        let down = self.uniform(MIN, 3 * MIN);
        self.q.after(d, Ev::Act(Act::CrashNode(v, down)));
    }

    /// A revoked node, still running, signs its own re-admission and
    /// admits a newcomer: neither may count where the revocation is known.
    fn readmit(&mut self, v: u32) {
        if !self.nodes[v as usize].running() {
            return;
        }
        let now = self.now();
        let sybil = NodeKey::from_seed(self.rng.gen());
        let me = &self.nodes[v as usize];
        let members = [
            Member {
                id: me.id,
                boot: me.boot_key.public(),
                name: format!("n{v}"),
                role: Role::Guardian,
            },
            Member {
                id: sybil.id(),
                boot: BootKey::from_seed(self.rng.gen()).public(),
                name: format!("sybil{v}"),
                role: Role::Guardian,
            },
        ];
        // Each record signed by its own key, as a real admission needs.
        let claims = [
            members[0].claim(self.mesh, &me.key),
            members[1].claim(self.mesh, &sybil),
        ];
        let mut ops = Vec::new();
        for (member, claim) in members.into_iter().zip(claims) {
            let op = SignedOp::sign(
                OpBody::Admit {
                    mesh: self.mesh,
                    member,
                    claim,
                    invite: None,
                    by: self.id(v),
                    at: now,
                },
                &self.nodes[v as usize].key,
            );
            ops.push(self.rosters.add_op(op));
        }
        if let Some(r) = self.revocations.iter_mut().find(|r| r.node == v) {
            r.sybils.push(sybil.id());
        }
        self.rec(Kind::Readmit, v, Sim::none(), 0);
        let new = self.learn(v, &ops);
        self.gossip(v, new);
    }

    /// A node that was never a member asks a guardian for a share.
    fn stranger(&mut self) {
        let Some(g) = self.pick(|n, _| n.running()) else {
            return;
        };
        let key = NodeKey::from_seed(self.rng.gen());
        let boot = BootKey::from_seed(self.rng.gen());
        let nonce = self.nonce();
        let req = ShareRequest::with_nonce(key.id(), self.id(g), 1, nonce, &boot);
        self.stats.stranger_requests += 1;
        self.rec(Kind::Stranger, ATTACKER, g, 0);
        self.sessions += 1;
        let session = self.sessions;
        self.send(
            ATTACKER,
            g,
            Msg::Request {
                session,
                req: Box::new(req),
            },
        );
    }

    /// Someone copied a running node's boot key and asks its guardians.
    fn copy_attack(&mut self) {
        let Some(o) = self.pick(|n, _| n.running() && n.token.is_some() && legit(n)) else {
            return;
        };
        let n = &self.nodes[o as usize];
        let t = n.token.clone().expect("picked");
        self.stats.copy_attacks += 1;
        self.rec(Kind::CopyAttack, ATTACKER, o, 0);
        self.sessions += 1;
        let session = self.sessions;
        for g in t.guardians {
            let nonce = self.nonce();
            let n = &self.nodes[o as usize];
            let req = ShareRequest::with_nonce(
                n.id,
                self.nodes[g as usize].id,
                t.epoch,
                nonce,
                &n.boot_key,
            );
            self.send(
                ATTACKER,
                g,
                Msg::Request {
                    session,
                    req: Box::new(req),
                },
            );
        }
    }

    /// Nodes still locked that an admin would vouch for.
    fn locked_legit(&self, min_age: Millis) -> Vec<u32> {
        let now = self.now();
        (0..self.nodes.len() as u32)
            .filter(|&i| {
                let n = &self.nodes[i as usize];
                n.asking() && legit(n) && n.boot.as_ref().is_some_and(|b| b.since + min_age <= now)
            })
            .collect()
    }

    /// The admin approves legitimate locked nodes (and types the passphrase
    /// on those that were never bound).
    fn review(&mut self, min_age: Millis) {
        if self.lockdown {
            return;
        }
        self.rec(Kind::Review, Sim::none(), Sim::none(), 0);
        for i in self.locked_legit(min_age) {
            // Never bound, or its boot gave up on the mesh (too few
            // guardians left that might answer; a refusal as revoked is
            // final for a boot, though the revocation may be voided later):
            // the keyscript waits at the passphrase prompt.
            let n = &self.nodes[i as usize];
            let gave_up = n
                .token
                .as_ref()
                .zip(n.boot.as_ref())
                .is_some_and(|(t, b)| t.guardians.len() - b.gone.len() < t.threshold);
            if n.token.is_none() || gave_up {
                self.passphrase(i);
            } else {
                self.approve(i);
            }
        }
    }

    /// `keyward approve`: the approval goes to the owner's guardians.
    fn approve(&mut self, o: u32) {
        let Some(admin) = self.admin_node() else {
            return;
        };
        let n = &mut self.nodes[o as usize];
        let (Some(t), Some(b)) = (&n.token, &mut n.boot) else {
            return;
        };
        b.approved = true;
        let guardians = t.guardians.clone();
        self.stats.approvals += 1;
        self.rec(Kind::AdminApprove, admin, o, 0);
        let by = self.id(admin);
        for g in guardians {
            if g == admin {
                self.on_message(admin, g, Msg::Approve { owner: o, by });
            } else {
                self.send(admin, g, Msg::Approve { owner: o, by });
            }
        }
    }

    fn passphrase(&mut self, i: u32) {
        if self.nodes[i as usize].asking() {
            self.rec(Kind::Passphrase, i, Sim::none(), 0);
            self.unlocked(i, Unlock::Passphrase);
        }
    }

    /// After a whole-mesh outage: type the passphrase on T guardians of one
    /// owner, then approve everyone still locked, again and again.
    fn admin_outage(&mut self) {
        let now = self.now();
        if let Some(o) = &mut self.outage {
            o.admin_started = true;
            o.last_progress = now;
        }
        let owner = (0..self.nodes.len() as u32).find(|&i| {
            let n = &self.nodes[i as usize];
            legit(n) && n.token.is_some()
        });
        if let Some(o) = owner {
            let t = self.nodes[o as usize].token.clone().expect("found");
            let seeds: Vec<u32> = t
                .guardians
                .iter()
                .copied()
                .filter(|g| legit(&self.nodes[*g as usize]))
                .take(t.threshold)
                .collect();
            for g in seeds {
                self.passphrase(g);
            }
        }
        self.q.after(MIN, Ev::Act(Act::ApproveLoop));
    }

    /// The locked nodes whose passphrase helps most: those that would
    /// complete the most other owners' quorums (then: raise them most).
    fn most_useful(&self, locked: &[u32], k: usize) -> Vec<u32> {
        let running = |o: u32| {
            self.nodes[o as usize].token.as_ref().map_or(0, |t| {
                t.guardians
                    .iter()
                    .filter(|g| self.nodes[**g as usize].running())
                    .count()
            })
        };
        let mut score: std::collections::BTreeMap<u32, (usize, usize)> =
            locked.iter().map(|&i| (i, (0, 0))).collect();
        for &o in locked {
            let Some(t) = &self.nodes[o as usize].token else {
                continue;
            };
            let up = running(o);
            for g in &t.guardians {
                if let Some(s) = score.get_mut(g) {
                    s.0 += usize::from(up + 1 >= t.threshold);
                    s.1 += up;
                }
            }
        }
        let mut v: Vec<(u32, (usize, usize))> = score.into_iter().collect();
        v.sort_by_key(|(i, s)| (std::cmp::Reverse(*s), *i));
        v.into_iter().take(k).map(|(i, _)| i).collect()
    }

    fn approve_loop(&mut self) {
        let now = self.now();
        let locked = self.locked_legit(0);
        if locked.is_empty() {
            self.outage = None;
            return;
        }
        let stalled = self
            .outage
            .as_ref()
            .is_some_and(|o| now >= o.last_progress + 5 * MIN);
        if stalled || self.admin_node().is_none() {
            let batch = (locked.len() / 50).max(1);
            for i in self.most_useful(&locked, batch) {
                self.passphrase(i);
            }
            if let Some(o) = &mut self.outage {
                o.last_progress = now;
            }
        }
        for i in locked {
            if self.nodes[i as usize].asking() {
                self.approve(i);
            }
        }
        self.q.after(2 * MIN, Ev::Act(Act::ApproveLoop));
    }
}
