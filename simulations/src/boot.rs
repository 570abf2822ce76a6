//! From power-on to a running daemon: the initramfs asks the token's
//! guardians for shares (signed with the boot key), retries with the real
//! client's backoff,
//! and opens the disk once `shares::combine` gives the key back.

use std::collections::BTreeSet;

use keyward_core::guardian::{Millis, ShareRequest};
use keyward_core::shares::{combine, Expect, ShareEnvelope};

use crate::invariants as inv;
use crate::node::{Boot, Phase, Unlock};
use crate::scenario::SEC;
use crate::sim::{Msg, Sim, Timer};
use crate::trace::Kind;

/// The real unlock client's backoff (`keyward_core::unlock`), in virtual
/// ms: 250 ms, doubling up to 5 s.
const RETRY_FIRST: Millis = keyward_core::unlock::RETRY_FIRST;
const RETRY_CAP: Millis = keyward_core::unlock::RETRY_CAP;
/// The client polls its retry times on a 100 ms tick.
const CLIENT_TICK: Millis = 100;

impl Sim {
    /// Goes down at once, without a goodbye; powers on after `downtime`.
    pub(crate) fn crash(&mut self, i: u32, downtime: Option<Millis>) {
        // Its boot ends and its guardians learn of it: the per-event checks
        // must look at it even if the caller records nothing.
        self.watch.touch(i);
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
            approved: false,
            gone: BTreeSet::new(),
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
        if t.guardians.len() - b.gone.len() < t.threshold {
            // As `keyward unlock` (exit 3) and the keyscript: this boot
            // will never get the key from the mesh; only a passphrase helps.
            return;
        }
        let ask: Vec<u32> = t
            .guardians
            .iter()
            .copied()
            .filter(|g| !b.from.contains(g) && !b.gone.contains(g))
            .collect();
        self.rec(Kind::BootTry, i, Sim::none(), tries as u64);
        for g in ask {
            // The request goes over a connection: a guardian that is down or
            // cut off never gets one (the dial fails), nothing is signed.
            if !self.nodes[g as usize].running() || !self.net.connected(i, g) {
                self.stats.dials_failed += 1;
                continue;
            }
            let nonce = self.nonce();
            let n = &self.nodes[i as usize];
            let req = ShareRequest::with_nonce(
                n.id,
                self.nodes[g as usize].id,
                epoch,
                nonce,
                &n.boot_key,
            );
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
        // The real client keeps one backoff per guardian and counts it from
        // that guardian's answer; here all unanswered guardians are asked
        // again together, one backoff after the round was sent (the answer
        // comes one round trip later, a few ms to ~120 ms here), plus the
        // client's polling tick. A `Waiting` refusal is retried on this
        // schedule too rather than after its `remaining` time, which delays
        // it by at most `RETRY_CAP`.
        let base = (RETRY_FIRST << tries.min(10)).min(RETRY_CAP);
        let d = base + self.uniform(0, CLIENT_TICK);
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
            let r = crate::report::RULES
                .get(rule as usize)
                .copied()
                .unwrap_or("");
            if keyward_core::guardian::permanent_rule(r) {
                if let Some(b) = self.nodes[i as usize].boot.as_mut() {
                    b.gone.insert(g);
                }
            }
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
        // The thief has it open: what follows is not a seizure any more.
        self.seizures.remove(&i);
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
                // Honest admins never approve a seized server; a hostile
                // member's approval before its revocation was known is the
                // accepted loss (`release.honest-approval` judged each share).
                let opened = self.hostile_opened.contains(&i);
                self.checks
                    .check(inv::SEIZED_LOCKED, !n.seized || opened, &[i], || {
                        format!(
                            "n{i} was seized and unlocked with shares, without an admin's approval"
                        )
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
}
