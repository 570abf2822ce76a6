//! From power-on to a running daemon: the initramfs asks the token's
//! guardians for shares (signed with the boot key), retries with backoff,
//! and opens the disk once `shares::combine` gives the key back.

use std::collections::BTreeSet;

use keyward_node::guardian::{Millis, ShareRequest};
use keyward_node::shares::{combine, Expect, ShareEnvelope};

use crate::invariants as inv;
use crate::node::{Boot, Phase, Unlock};
use crate::scenario::{MIN, SEC};
use crate::sim::{Msg, Sim, Timer};
use crate::trace::Kind;

/// First retry delay of the initramfs; doubles up to `RETRY_CAP`.
const RETRY_FIRST: Millis = 2 * SEC;
const RETRY_CAP: Millis = 30 * SEC;
/// A node with a quorum that would release must be unlocked within this:
/// four retry rounds at the cap with jitter, latency and tick slack.
const QUORUM_BOUND: Millis = 3 * MIN;

impl Sim {
    /// Goes down at once, without a goodbye; powers on after `downtime`.
    pub(crate) fn crash(&mut self, i: u32, downtime: Option<Millis>) {
        for g in self.nodes[i as usize].ping_targets() {
            self.conn_alive(i, g);
        }
        let now = self.now();
        let n = &mut self.nodes[i as usize];
        if n.phase == Phase::Down {
            return;
        }
        n.phase = Phase::Down;
        n.inc += 1;
        n.boot = None;
        n.down_since = now;
        if let Some(d) = downtime {
            self.timer(i, d, Timer::PowerOn);
        }
    }

    /// A clean reboot: the daemon says goodbye to its guardians first.
    pub(crate) fn shutdown(&mut self, i: u32, downtime: Millis) {
        if !self.nodes[i as usize].running() {
            return;
        }
        for g in self.nodes[i as usize].ping_targets() {
            self.send(i, g, Msg::Bye);
        }
        self.crash(i, Some(downtime));
    }

    pub(crate) fn power_on(&mut self, i: u32) {
        let now = self.now();
        let n = &mut self.nodes[i as usize];
        if n.phase != Phase::Down {
            return;
        }
        n.phase = Phase::Booting;
        n.inc += 1;
        n.powered_on = now;
        self.rec(Kind::PowerOn, i, Sim::none(), 0);
        let d = self.uniform(15 * SEC, 45 * SEC);
        self.timer(i, d, Timer::Initramfs);
    }

    pub(crate) fn initramfs(&mut self, i: u32) {
        self.sessions += 1;
        let now = self.now();
        self.rec(Kind::Initramfs, i, Sim::none(), self.sessions as u64);
        let n = &mut self.nodes[i as usize];
        n.boot = Some(Boot {
            session: self.sessions,
            since: now,
            shares: Vec::new(),
            from: BTreeSet::new(),
            tries: 0,
            quorum_since: None,
            approved: false,
        });
        self.stats.boots += 1;
        if !n.revoked && !n.seized && !n.stolen {
            self.stats.legit_boots += 1;
        }
        if n.token.is_none() {
            self.stats.unbound_boots += 1;
            return;
        }
        self.boot_try(i);
    }

    pub(crate) fn boot_try(&mut self, i: u32) {
        let n = &self.nodes[i as usize];
        let (Some(b), Some(t)) = (&n.boot, &n.token) else {
            return;
        };
        let (session, epoch, tries) = (b.session, t.epoch, b.tries);
        let ask: Vec<u32> = t
            .guardians
            .iter()
            .copied()
            .filter(|g| !b.from.contains(g))
            .collect();
        self.rec(Kind::BootTry, i, Sim::none(), tries as u64);
        for g in ask {
            // The request goes over a connection: a guardian that is down or
            // cut off never gets one (the dial fails), nothing is signed.
            if !self.nodes[g as usize].running() || !self.net.connected(i, g) {
                self.stats.dials_failed += 1;
                continue;
            }
            let n = &self.nodes[i as usize];
            let req = ShareRequest::new(n.id, self.nodes[g as usize].id, epoch, &n.boot_key);
            self.send(
                i,
                g,
                Msg::Request {
                    session,
                    req: Box::new(req),
                },
            );
        }
        let b = self.nodes[i as usize].boot.as_mut().expect("asking");
        b.tries += 1;
        let base = (RETRY_FIRST << tries.min(10)).min(RETRY_CAP);
        let d = self.uniform(base * 8 / 10, base * 12 / 10);
        self.timer(i, d, Timer::BootTry);
    }

    pub(crate) fn on_response(
        &mut self,
        i: u32,
        g: u32,
        session: u32,
        env: Option<Box<ShareEnvelope>>,
        rule: u8,
    ) {
        let gid = self.id(g);
        let n = &mut self.nodes[i as usize];
        if n.boot.as_ref().is_none_or(|b| b.session != session) {
            return;
        }
        let Some(env) = env else {
            self.rec(Kind::Refused, g, i, rule as u64);
            return;
        };
        self.rec(Kind::Released, g, i, 0);
        let b = self.nodes[i as usize].boot.as_mut().expect("checked");
        if !b.from.insert(g) {
            return;
        }
        b.shares.push((gid, *env));
        let n = &self.nodes[i as usize];
        let (b, t) = (
            n.boot.as_ref().expect("checked"),
            n.token.as_ref().expect("asking"),
        );
        if b.from.len() < t.threshold {
            return;
        }
        let expect = Expect {
            owner: n.id,
            epoch: t.epoch,
            threshold: t.threshold,
        };
        let got = combine(&b.shares, &expect, &n.boot_key);
        let (ok, detail) = match &got {
            Ok(s) => (
                s.as_bytes() == &t.secret,
                "combine gave a key that is not the disk key".to_string(),
            ),
            Err(e) => (
                false,
                format!("combine failed with {} shares: {e}", b.shares.len()),
            ),
        };
        self.checks
            .check(inv::UNLOCK_KEY, ok, &[i], || format!("n{i}: {detail}"));
        if ok {
            self.unlocked(i, Unlock::Shares);
        }
    }

    /// The disk is open (by shares or by an admin's passphrase).
    pub(crate) fn unlocked(&mut self, i: u32, how: Unlock) {
        let now = self.now();
        let n = &mut self.nodes[i as usize];
        let Some(b) = n.boot.take() else { return };
        n.phase = Phase::Starting;
        let took = now - b.since;
        self.rec(Kind::Unlocked, i, Sim::none(), took);
        if let Some(o) = &mut self.outage {
            o.last_progress = now;
        }
        match how {
            Unlock::Passphrase => self.stats.passphrase += 1,
            Unlock::Shares => {
                self.stats.unlocked += 1;
                self.stats.unlock_ms.push(took);
                if b.approved {
                    self.stats.unlocked_approved += 1;
                }
                let n = &self.nodes[i as usize];
                if n.stolen {
                    self.stats.thefts_unlocked += 1;
                }
                self.checks.check(inv::SEIZED_LOCKED, !n.seized, &[i], || {
                    format!("n{i} was seized and unlocked with shares, without an admin's approval")
                });
                let early = self.outage.as_ref().is_some_and(|o| !o.admin_started);
                self.checks.check(inv::OUTAGE_NO_SELF, !early, &[i], || {
                    format!("n{i} unlocked by itself after a whole-mesh outage longer than timeout")
                });
                if !b.approved && !n.stolen && !n.seized && !n.revoked {
                    self.stats.unlocked_auto += 1;
                    self.stats.unlock_auto_ms.push(took);
                }
            }
        }
        let d = self.uniform(2 * SEC, 6 * SEC);
        self.timer(i, d, Timer::DaemonUp);
    }

    pub(crate) fn daemon_up(&mut self, i: u32) {
        let now = self.now();
        let n = &mut self.nodes[i as usize];
        if n.phase != Phase::Starting {
            return;
        }
        if n.stolen {
            // The thief has what it wanted and takes the machine away.
            self.rec(Kind::DaemonUp, i, Sim::none(), 1);
            self.crash(i, None);
            return;
        }
        n.phase = Phase::Running;
        n.inc += 1;
        n.running_since = now;
        self.rec(Kind::DaemonUp, i, Sim::none(), 0);
        for g in self.nodes[i as usize].ping_targets() {
            self.send(i, g, Msg::Ping);
        }
        self.sync_with_peer(i);
        let d = self.jitter(self.cfg.policy.interval);
        self.timer(i, d, Timer::Ping);
        let d = self.jitter(self.cfg.sync_interval);
        self.timer(i, d, Timer::Sync);
        if self.nodes[i as usize].bind.is_some() {
            self.timer(i, SEC, Timer::DepositRetry);
        }
    }

    /// Liveness: every node asking for shares that has had, for longer
    /// than the bound, a quorum of guardians that would release to it.
    pub(crate) fn check_quorums(&mut self) {
        let now = self.now();
        let bound = QUORUM_BOUND + self.cfg.policy.approval_delay;
        for i in 0..self.nodes.len() as u32 {
            if !self.nodes[i as usize].asking() {
                continue;
            }
            let quorum = self.quorum(i);
            let b = self.nodes[i as usize].boot.as_mut().expect("asking");
            if !quorum {
                b.quorum_since = None;
                continue;
            }
            let since = *b.quorum_since.get_or_insert(now);
            self.checks.check(inv::UNLOCK_QUORUM, now - since <= bound, &[i], || {
                format!(
                    "n{i} has been rebooting with a quorum of guardians that would release since {} and is still locked",
                    crate::trace::clock(since)
                )
            });
        }
    }

    /// Whether enough guardians have released or would release now.
    fn quorum(&self, i: u32) -> bool {
        let n = &self.nodes[i as usize];
        let (Some(b), Some(t)) = (&n.boot, &n.token) else {
            return false;
        };
        let mut count = b.from.len();
        for &g in &t.guardians {
            if count >= t.threshold {
                break;
            }
            if !b.from.contains(&g) && self.would_release(g, i, t.epoch) {
                count += 1;
            }
        }
        count >= t.threshold
    }

    /// The oracle's view of whether guardian g would release o's share now.
    fn would_release(&self, g: u32, o: u32, epoch: u64) -> bool {
        let now = self.now();
        let p = &self.cfg.policy;
        let gn = &self.nodes[g as usize];
        let oid = self.nodes[o as usize].id;
        gn.running()
            && self.net.connected(o, g)
            && gn.roster.roster.is_active(&oid)
            && !self.oracle.locked(g)
            && gn
                .guardian
                .owner(&oid)
                .is_some_and(|s| s.envelopes.contains_key(&epoch))
            && self.oracle.ground(g, o, now, p, p.timeout).is_some()
            && !self.oracle.up(g, o, now, p)
    }

    /// Once the network has been whole for a while and the rosters have
    /// stopped changing, every node running for a while holds one roster.
    pub(crate) fn check_convergence(&mut self) {
        let now = self.now();
        let settle = 30 * MIN;
        if self.net.is_split() || now < self.healed_at + settle || now < self.last_change + 10 * MIN
        {
            return;
        }
        let mut first: Option<(u32, [u8; 32])> = None;
        let mut odd = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.running() || n.running_since + settle > now {
                continue;
            }
            match first {
                None => first = Some((i as u32, n.roster.digest)),
                Some((_, d)) if d != n.roster.digest => {
                    odd = Some(i as u32);
                    break;
                }
                _ => {}
            }
        }
        let a = first.map_or(0, |f| f.0);
        self.checks.check(inv::CONVERGE, odd.is_none(), &[a, odd.unwrap_or(a)], || {
            format!(
                "network whole since {} and no roster change since {}, yet n{a} and n{} hold different rosters",
                crate::trace::clock(self.healed_at),
                crate::trace::clock(self.last_change),
                odd.unwrap_or(a)
            )
        });
    }
}
