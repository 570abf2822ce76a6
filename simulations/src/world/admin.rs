//! The admin, as a person at a terminal: `keyward approve`, `revoke`,
//! `lockdown`/`lift` on a running member's control socket, the
//! passphrase typed at a locked server's prompt; and the scenario events
//! an admin reacts to (seizures, thefts, the whole-mesh outage).

use keyward_core::control::CtlRequest;

use super::*;

/// The periodic review looks at nodes locked at least this long.
const REVIEW_AGE: Millis = 20 * MIN;

impl World {
    pub(super) fn admin_act(&mut self, a: Act) {
        let now = self.now();
        let p = self.cfg.policy;
        match a {
            Act::SeizeSome => {
                for _ in 0..self.cfg.seize {
                    let settled = p.extended_timeout;
                    let cand = self.pick_seizable(settled);
                    if let Some(m) = cand {
                        self.act(Act::Seize(m));
                    }
                }
            }
            Act::Theft => {
                if let Some(m) = self.pick(|m| m.running() && m.legit() && m.token.is_some()) {
                    if m != 0 {
                        self.stats.thefts += 1;
                        self.machines[m as usize].stolen = true;
                        // The thief boots it somewhere after a while.
                        let u: f64 = self.rng.gen();
                        let d = (-(1.0 - u).ln() * (20 * MIN) as f64) as Millis + MIN;
                        self.rec(Kind::Theft, m as u64, d);
                        self.crash(m, Some(d));
                        // An hour later the admin notices and revokes it.
                        self.q.after(HOUR, Ev::Act(Act::RevokeNode(m)));
                    }
                }
                self.next_churn(Act::Theft);
            }
            Act::RevokeNode(v) if !self.machines[v as usize].revoked => self.revoke_node(v),
            Act::Outage => {
                self.rec(Kind::Outage, 0, 0);
                for m in 0..self.machines.len() as u32 {
                    self.crash(m, None);
                }
                self.outage = Some(now);
                self.outage_waiting = true;
                let d = p.timeout.max(p.extended_timeout) + self.uniform(15 * MIN, 60 * MIN);
                self.q.after(d, Ev::Act(Act::PowerBack));
            }
            Act::PowerBack => {
                for m in 0..self.machines.len() as u32 {
                    let d = self.uniform(0, 60 * SEC);
                    self.q.after(d, Ev::PowerOn { m });
                }
                self.q.after(10 * MIN, Ev::Act(Act::AdminOutage));
            }
            Act::AdminOutage => self.admin_outage(),
            Act::ApproveLoop => self.approve_loop(),
            Act::AdminLock(on) => {
                let Some(admin) = self.admin_node() else {
                    self.q.after(MIN, Ev::Act(a));
                    return;
                };
                self.lockdown = on;
                self.rec(Kind::Lock, admin as u64, on as u64);
                let req = if on {
                    CtlRequest::Lockdown
                } else {
                    CtlRequest::Lift
                };
                self.lock_issued(admin, on);
                self.control(admin, req, Ctl::Admin);
                if on {
                    self.q.after(HOUR, Ev::Act(Act::AdminLock(false)));
                } else {
                    self.q
                        .after(2 * MIN, Ev::Act(Act::Review { periodic: false }));
                }
            }
            Act::Review { periodic } => {
                self.review(if periodic { REVIEW_AGE } else { 0 });
                if periodic && self.cfg.admin_review > 0 {
                    self.q.after(self.cfg.admin_review, Ev::Act(a));
                }
            }
            _ => {}
        }
    }

    /// A running, legitimate server that has run long enough to be
    /// settled (not the founder, whose node the admin works on).
    fn pick_seizable(&mut self, settled: Millis) -> Option<u32> {
        let now = self.now();
        self.pick(|m| {
            m.running()
                && m.legit()
                && m.token.is_some()
                && m.running_since + settled <= now
                && m.me.name != "n0"
        })
    }

    /// The machine the admin types commands on: the founder if its
    /// keywardd runs, else a running legitimate member.
    pub(super) fn admin_node(&mut self) -> Option<u32> {
        let f = &self.machines[0];
        if f.running() && !f.leaving && f.legit() {
            return Some(0);
        }
        self.pick(|m| m.running() && !m.leaving && m.legit() && m.me.role == Role::Guardian)
    }

    /// `keyward revoke <v>` on the founder.
    pub(super) fn revoke_node(&mut self, v: u32) {
        let who = self.machines[v as usize].id.to_string();
        let req = CtlRequest::Revoke {
            who,
            cascade: false,
            reason: "simulated revocation".into(),
        };
        self.revoke_issued(v);
        self.control(0, req, Ctl::Revoke(v));
    }

    /// `keyward approve <owner>` on machine `admin`.
    pub(super) fn approve(&mut self, admin: u32, owner: u32) {
        if !self.machines[admin as usize].running() {
            return;
        }
        self.stats.approvals += 1;
        self.machines[owner as usize].approved = true;
        self.rec(Kind::Approve, admin as u64, owner as u64);
        // The admin's own node takes the approval as it signs it (the
        // others by gossip, recorded as it is delivered).
        let (by, at) = (self.machines[admin as usize].id, self.local(admin));
        self.oracle.approve(admin, owner, by, at);
        let who = self.machines[owner as usize].me.name.clone();
        self.control(admin, CtlRequest::Approve { who }, Ctl::Admin);
    }

    /// Locked servers the admin vouches for, locked at least `min_age`.
    fn locked_legit(&self, min_age: Millis) -> Vec<u32> {
        let now = self.now();
        (0..self.machines.len() as u32)
            .filter(|&i| {
                let m = &self.machines[i as usize];
                m.locked() && m.legit() && m.asking_since.is_some_and(|s| s + min_age <= now)
            })
            .collect()
    }

    /// The admin approves legitimate locked nodes, and types the
    /// passphrase where the keyscript gave up (or the disk was never
    /// bound). Not during a lockdown it ordered.
    fn review(&mut self, min_age: Millis) {
        if self.lockdown {
            return;
        }
        let Some(admin) = self.admin_node() else {
            return;
        };
        for i in self.locked_legit(min_age) {
            let m = &self.machines[i as usize];
            if m.token.is_none() || m.phase == Phase::Prompt {
                self.act(Act::Passphrase(i));
            } else {
                self.approve(admin, i);
            }
        }
    }

    /// After a whole-mesh outage: type the passphrase on T guardians of
    /// one owner, then approve everyone still locked, again and again.
    fn admin_outage(&mut self) {
        self.outage = Some(self.now());
        self.outage_waiting = false;
        let owner = (0..self.machines.len() as u32).find(|&i| {
            let m = &self.machines[i as usize];
            m.legit() && m.token.is_some()
        });
        if let Some(o) = owner {
            let t = self.machines[o as usize].token.clone().expect("found");
            let seeds: Vec<u32> = t
                .guardians
                .iter()
                .map(|g| g.0)
                .filter(|g| self.machines[*g as usize].legit())
                .take(t.threshold)
                .collect();
            for g in seeds {
                self.act(Act::Passphrase(g));
            }
        }
        self.q.after(MIN, Ev::Act(Act::ApproveLoop));
    }

    /// The locked nodes whose passphrase helps most: those that would
    /// complete the most other owners' quorums (then: raise them most).
    fn most_useful(&self, locked: &[u32], k: usize) -> Vec<u32> {
        let running = |o: u32| {
            self.machines[o as usize].token.as_ref().map_or(0, |t| {
                t.guardians
                    .iter()
                    .filter(|g| self.machines[g.0 as usize].running())
                    .count()
            })
        };
        let mut score: BTreeMap<u32, (usize, usize)> =
            locked.iter().map(|&i| (i, (0, 0))).collect();
        for &o in locked {
            let Some(t) = &self.machines[o as usize].token else {
                continue;
            };
            let up = running(o);
            for g in &t.guardians {
                if let Some(s) = score.get_mut(&g.0) {
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
        let stalled = self.outage.is_some_and(|t| now >= t + 5 * MIN);
        let admin = self.admin_node();
        if stalled || admin.is_none() {
            let batch = (locked.len() / 10).max(1);
            for i in self.most_useful(&locked, batch) {
                self.act(Act::Passphrase(i));
            }
            self.outage = Some(now);
        }
        if let Some(admin) = self.admin_node() {
            for i in locked {
                let m = &self.machines[i as usize];
                if m.phase == Phase::Prompt || m.token.is_none() {
                    self.act(Act::Passphrase(i));
                } else if m.phase == Phase::Unlocking {
                    self.approve(admin, i);
                }
            }
        }
        self.q.after(2 * MIN, Ev::Act(Act::ApproveLoop));
    }
}
