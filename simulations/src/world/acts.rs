//! The scenario's acts and the admin's: churn, joins, revocations,
//! partitions, seizures, lockdowns, approvals, attackers.

use super::*;

impl World {
    pub(super) fn next_churn(&mut self, a: Act) {
        let n = self.machines.len() as f64;
        let per_day = match a {
            Act::Reboot => self.cfg.reboots * n,
            Act::Crash => self.cfg.crashes * n,
            Act::Join => self.cfg.joins,
            Act::Revoke => self.cfg.revocations,
            Act::Copy => self.cfg.copies,
            Act::Theft => self.cfg.thefts,
            Act::Stranger => self.cfg.strangers,
            _ => 0.0,
        };
        if per_day <= 0.0 {
            return;
        }
        let u: f64 = self.rng.gen();
        let d = (-(1.0 - u).ln() / per_day * DAY as f64) as Millis;
        self.q.after(d.max(1), Ev::Act(a));
    }

    pub(super) fn pick(&mut self, ok: impl Fn(&Machine) -> bool) -> Option<u32> {
        let n = self.machines.len() as u32;
        for _ in 0..64 {
            let i = self.rng.gen_range(0..n);
            if ok(&self.machines[i as usize]) {
                return Some(i);
            }
        }
        None
    }

    pub(super) fn act(&mut self, a: Act) {
        match a {
            Act::Reboot => {
                if let Some(m) = self.pick(|m| m.running() && !m.leaving && !m.hostile) {
                    self.stats.reboots += 1;
                    let d = self.uniform(10 * SEC, 60 * SEC);
                    self.rec(Kind::Reboot, m as u64, d);
                    self.shutdown(m, d);
                }
                self.next_churn(Act::Reboot);
            }
            Act::Crash => {
                if let Some(m) =
                    self.pick(|m| m.phase != Phase::Down && !m.seized && !m.stolen && !m.hostile)
                {
                    self.stats.crashes += 1;
                    let d = self.crash_downtime();
                    self.rec(Kind::Crash, m as u64, d);
                    self.crash(m, Some(d));
                }
                self.next_churn(Act::Crash);
            }
            Act::Join => {
                self.join();
                self.next_churn(Act::Join);
            }
            Act::Revoke => {
                let n = self.machines.len() as u32;
                let v = self.rng.gen_range(1..n.max(2));
                let mv = &self.machines[v as usize];
                if v < n && !mv.revoked && !mv.hostile {
                    self.revoke_node(v);
                }
                self.next_churn(Act::Revoke);
            }
            Act::CrashNode(m, d) => {
                self.stats.crashes += 1;
                self.rec(Kind::Crash, m as u64, d);
                self.crash(m, Some(d));
            }
            Act::Seize(m) => {
                if self.machines[m as usize].running() {
                    self.stats.seized += 1;
                    self.machines[m as usize].seized = true;
                    let now = self.now();
                    self.seizures.insert(m, now);
                    let t = self.cfg.policy.timeout;
                    let d = self.uniform(t + 10 * MIN, t + 3 * HOUR);
                    self.rec(Kind::Seize, m as u64, d);
                    self.crash(m, Some(d));
                }
            }
            Act::Bind(m) => self.bind(m),
            Act::AdminLock(_)
            | Act::SeizeSome
            | Act::Theft
            | Act::Outage
            | Act::PowerBack
            | Act::AdminOutage
            | Act::ApproveLoop
            | Act::Review { .. }
            | Act::RevokeNode(_) => self.admin_act(a),
            Act::Hostile | Act::HostileBurst | Act::RevokeHostile => self.hostile_act(a),
            Act::RestoreLog => {
                let running: Vec<u32> = (0..self.machines.len() as u32)
                    .filter(|&m| {
                        self.machines[m as usize].running() && self.machines[m as usize].legit()
                    })
                    .collect();
                if !running.is_empty() {
                    let i = self.uniform(0, running.len() as Millis - 1) as usize;
                    self.restore_from_backup(running[i]);
                }
            }
            Act::Copy => {
                self.copy_attack();
                self.next_churn(Act::Copy);
            }
            Act::Stranger => {
                if let Some(g) = self.pick(|m| m.running()) {
                    self.stats.strangers += 1;
                    let req = Input::ConnectionRefused {
                        from: "/sim/stranger".into(),
                        cause: "not a member of the mesh".into(),
                    };
                    self.input(g, req);
                }
                self.next_churn(Act::Stranger);
            }
            Act::Partition => {
                let n = self.machines.len() as u32;
                let share = if self.rng.gen_bool(0.5) {
                    self.rng.gen_range(0.1..0.3)
                } else {
                    0.5
                };
                let minority: Vec<u32> = (0..n).filter(|_| self.rng.gen_bool(share)).collect();
                self.stats.partitions += 1;
                self.rec(Kind::Partition, minority.len() as u64, 0);
                self.net.split(minority);
                for (a, b) in self.net.crossing() {
                    self.close(a, b);
                }
                let d = self.uniform(10 * MIN, 30 * MIN);
                self.q.after(d, Ev::Act(Act::Heal));
            }
            Act::Heal => {
                self.net.heal(self.now());
                self.rec(Kind::Heal, 0, 0);
                let d = self.uniform(20 * MIN, 60 * MIN);
                self.q.after(d, Ev::Act(Act::Partition));
            }
            Act::Lockdown(m) => {
                self.control(m, keyward_core::control::CtlRequest::Lockdown, Ctl::Admin)
            }
            Act::Lift(m) => self.control(m, keyward_core::control::CtlRequest::Lift, Ctl::Admin),
            Act::Approve { admin, owner } => self.approve(admin, owner),
            Act::Passphrase(m) => {
                let p = self.machines[m as usize].phase;
                if matches!(p, Phase::Prompt | Phase::Unlocking) {
                    self.stats.passphrase += 1;
                    self.rec(Kind::Passphrase, m as u64, 0);
                    let mm = &mut self.machines[m as usize];
                    mm.client = None;
                    mm.client_at = None;
                    self.close_all(m);
                    self.opened(m);
                }
            }
        }
    }

    /// A new machine (fresh keys, empty disk) starts keywardd; a running
    /// member invites it; it joins with the token.
    pub(super) fn join(&mut self) {
        let Some(inviter) = self.pick(|m| m.running() && !m.leaving && !m.revoked) else {
            return;
        };
        let k = self.machines.len() as u32;
        let key = NodeKey::from_seed(self.rng.gen());
        let boot = BootKey::from_seed(self.rng.gen());
        let me = Member {
            id: key.id(),
            boot: boot.public(),
            name: format!("n{k}"),
            role: Role::Guardian,
        };
        let skew = self
            .rng
            .gen_range(-(self.cfg.skew as i64)..=self.cfg.skew as i64);
        let m = Machine::new(key, boot, me, skew, Disk::default());
        self.ids.insert(m.id, k);
        self.boots.insert(m.boot_id, k);
        self.machines.push(m);
        self.oracle.add_node();
        self.daemon_up(k);
        let req = keyward_core::control::CtlRequest::Invite {
            role: Role::Guardian,
            expires_secs: 3600,
        };
        self.control(inviter, req, Ctl::Invite(k));
    }

    /// Threat 7: a copy of running owner o's boot key asks each of its
    /// guardians that it can reach (from anywhere on the network; the
    /// gate lets a member's boot key connect).
    pub(super) fn copy_attack(&mut self) {
        let Some(o) = self.pick(|m| m.running() && m.token.is_some() && m.legit()) else {
            return;
        };
        self.stats.copy_attacks += 1;
        self.rec(Kind::CopyAttack, o as u64, 0);
        let t = self.machines[o as usize].token.clone().expect("picked");
        let (oid, boot_id) = (
            self.machines[o as usize].id,
            self.machines[o as usize].boot_id,
        );
        for (g, gid, _) in t.guardians {
            if !self.machines[g as usize].running() {
                continue;
            }
            let nonce: [u8; 16] = self.rng.gen();
            let req = keyward_core::guardian::ShareRequest::with_nonce(
                oid,
                gid,
                t.epoch,
                nonce,
                &self.machines[o as usize].boot_key,
            );
            let rid = self.fresh();
            self.reqs.insert(
                rid,
                PendingReq {
                    from: ATTACKER,
                    to: g,
                    conn: 0,
                    reply: Reply::Client(gid),
                },
            );
            // What the guardian knows of o so far, then the connection and
            // the request.
            self.feed_pings(g, o);
            self.net.traffic.dials += 1;
            self.net.traffic.requests += 1;
            self.input(g, Input::Connected { peer: boot_id });
            self.attacker_at = Some(g);
            self.input(
                g,
                Input::Request {
                    id: InId(rid),
                    from: boot_id,
                    req: Request::Share(req),
                },
            );
            self.attacker_at = None;
            self.input(g, Input::Closed { peer: boot_id });
        }
    }

    /// Downtime after a crash: mostly minutes, sometimes hours.
    pub(super) fn crash_downtime(&mut self) -> Millis {
        let r: f64 = self.rng.gen();
        if r < 0.7 {
            self.uniform(30 * SEC, 3 * MIN)
        } else if r < 0.93 {
            self.uniform(3 * MIN, 20 * MIN)
        } else {
            self.uniform(20 * MIN, 3 * HOUR)
        }
    }
}
