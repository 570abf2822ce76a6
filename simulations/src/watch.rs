//! The checks run after every event (`Sim::run` calls `after_event` once
//! per dispatched event), kept cheap by incremental state.
//!
//! Most invariants are checked exactly where they can break, inside the
//! event that could break them: the `release.*` and `strict.*` checks at
//! every release, `unlock.key-correct`, `seizure.stays-locked` and
//! `outage.no-self-unlock` at every unlock, `roster.revoked-stays-out` at
//! every roster change. An event that changes none of those cannot break
//! them, so that is "after every event" at no extra cost.
//!
//! Two are about time passing, and are evaluated here after every event:
//! - `unlock.reboot-with-quorum`: for each node asking for shares the sim
//!   keeps whether a quorum of its guardians would release and until when
//!   that holds with no further event (`Oracle::ground_until`). After an
//!   event, only asking nodes that the event touched, or whose guardians
//!   it touched, are re-evaluated (every state `would_release` reads is
//!   changed only by an event that records the guardian or the owner; a
//!   partition, heal or outage re-evaluates all). Then every quorate node
//!   is checked against the bound, one check each. A quorum can also
//!   appear by time alone (an owner's `up_window` running out); that is
//!   caught at the next event touching the node (its next request, within
//!   `unlock::RETRY_CAP`) or at the latest at the 5-s `Tick`, which
//!   re-evaluates every asking node. Guardians whose refusal was final for
//!   the boot (`Boot::gone`: revoked, no share, ...) are not counted: the
//!   client asks them no more. Under the roster rule a revocation can be
//!   voided later (its signer revoked by the founder), so a boot can give
//!   up on guardians that would release again; the admin then types the
//!   passphrase at its next review (`Sim::review`). An approval counts
//!   here only while its issuer may still approve and the owner has not
//!   proved liveness since (`Oracle::ground_until`).
//! - `roster.converge` is intrinsically eventual. It applies while the
//!   network has been whole for 30 min and no replica has changed for
//!   10 min (`QUIET`). When such a quiet period begins, all nodes are
//!   scanned; after every later event of the period, each node the event
//!   touched that has been running for 30 min is compared with the
//!   roster digest found by the scan (a full scan again if it differs).
//!   Every running node is touched at least once per ping interval by its
//!   own heartbeat, so none goes unchecked for longer than that.

use std::collections::BTreeMap;

use keyward_core::guardian::Millis;

use crate::invariants as inv;
use crate::scenario::MIN;
use crate::sim::Sim;

/// A node with a quorum that would release must be unlocked within this:
/// generous against the client's retry cap (`unlock::RETRY_CAP`, 5 s),
/// message latency, a lost request or two and the daemon's own delays.
pub const QUORUM_BOUND: Millis = 3 * MIN;
/// Convergence: how long the network must have been whole, and a node
/// running, before all must agree.
pub const SETTLE: Millis = 30 * MIN;
/// Convergence: how long no replica may have changed.
pub const QUIET: Millis = 10 * MIN;

/// A quorum believed to hold: since when, and until when it holds if no
/// event changes anything.
#[derive(Clone, Copy, Debug)]
pub struct Quorum {
    pub since: Millis,
    pub until: Millis,
}

#[derive(Default)]
pub struct Watch {
    /// Nodes touched by the event being run (from its trace records).
    pub touched: Vec<u32>,
    /// The event touched everything (partition, heal, outage, tick).
    pub global: bool,
    /// Nodes asking for shares, with the guardians of their token.
    pub asking: BTreeMap<u32, Vec<u32>>,
    /// Per node: how many asking owners have it as a guardian.
    pub watched: Vec<u32>,
    /// Asking nodes with a quorum that would release.
    pub quorate: BTreeMap<u32, Quorum>,
    /// In a quiet period (see module doc); the digest all must hold,
    /// once a node running long enough has been seen.
    pub quiet: bool,
    pub reference: Option<[u8; 32]>,
}

impl Watch {
    pub fn touch(&mut self, i: u32) {
        if !self.touched.contains(&i) {
            self.touched.push(i);
        }
    }
}

impl Sim {
    /// The per-event checks; see the module doc.
    pub(crate) fn after_event(&mut self) {
        self.watch_asking();
        self.check_quorums();
        self.watch_convergence();
        self.watch.touched.clear();
        self.watch.global = false;
    }

    /// Brings the asking set up to date and re-evaluates the quorums the
    /// event may have changed.
    fn watch_asking(&mut self) {
        let n = self.nodes.len();
        if self.watch.watched.len() < n {
            self.watch.watched.resize(n, 0);
        }
        let mut again: Vec<u32> = Vec::new();
        if self.watch.global {
            let all: Vec<u32> = (0..n as u32).collect();
            for i in all {
                self.watch_one(i);
            }
            again.extend(self.watch.asking.keys().copied());
        } else {
            let touched = std::mem::take(&mut self.watch.touched);
            for &i in &touched {
                self.watch_one(i);
            }
            for &x in &touched {
                if self.watch.asking.contains_key(&x) {
                    again.push(x);
                }
                if self.watch.watched[x as usize] > 0 {
                    for (o, gs) in &self.watch.asking {
                        if gs.contains(&x) {
                            again.push(*o);
                        }
                    }
                }
            }
            self.watch.touched = touched;
            again.sort_unstable();
            again.dedup();
        }
        for o in again {
            self.eval_quorum(o);
        }
    }

    /// Updates whether node i is in the asking set.
    fn watch_one(&mut self, i: u32) {
        let n = &self.nodes[i as usize];
        let asking = n.asking() && n.token.is_some();
        let w = &mut self.watch;
        match (asking, w.asking.contains_key(&i)) {
            (true, false) => {
                let gs = n
                    .token
                    .as_ref()
                    .map(|t| t.guardians.clone())
                    .unwrap_or_default();
                for &g in &gs {
                    w.watched[g as usize] += 1;
                }
                w.asking.insert(i, gs);
            }
            (false, true) => {
                for g in w.asking.remove(&i).unwrap_or_default() {
                    w.watched[g as usize] -= 1;
                }
                w.quorate.remove(&i);
            }
            _ => {}
        }
    }

    /// Re-evaluates node o's quorum now. A quorum that ran out before now
    /// (its `until` passed with nothing touching it) starts anew.
    fn eval_quorum(&mut self, o: u32) {
        let now = self.now();
        match self.quorum(o) {
            None => {
                self.watch.quorate.remove(&o);
            }
            Some(until) => {
                let since = match self.watch.quorate.get(&o) {
                    Some(q) if q.until >= now => q.since,
                    _ => now,
                };
                self.watch.quorate.insert(o, Quorum { since, until });
            }
        }
    }

    /// Liveness: no node asking for shares has had, for longer than the
    /// bound, a quorum of guardians that would release to it.
    fn check_quorums(&mut self) {
        let now = self.now();
        let bound = QUORUM_BOUND + self.cfg.policy.approval_delay;
        let lapsed: Vec<u32> = self
            .watch
            .quorate
            .iter()
            .filter(|(_, q)| q.until < now)
            .map(|(o, _)| *o)
            .collect();
        for o in lapsed {
            self.eval_quorum(o);
        }
        let mut ok = 0;
        let mut late = None;
        for (o, q) in &self.watch.quorate {
            if now - q.since <= bound {
                ok += 1;
            } else {
                late = Some((*o, q.since));
                break;
            }
        }
        self.checks.passed(inv::UNLOCK_QUORUM, ok);
        if let Some((i, since)) = late {
            self.checks.check(inv::UNLOCK_QUORUM, false, &[i], || {
                format!(
                    "n{i} has been rebooting with a quorum of guardians that would release since {} and is still locked",
                    crate::trace::clock(since)
                )
            });
        }
    }

    /// Until when enough guardians have released or would release, if
    /// nothing else happens; None if not enough do now.
    fn quorum(&self, i: u32) -> Option<Millis> {
        let n = &self.nodes[i as usize];
        let (Some(b), Some(t)) = (&n.boot, &n.token) else {
            return None;
        };
        let need = t.threshold.saturating_sub(b.from.len());
        if need == 0 {
            return Some(Millis::MAX);
        }
        // Guardians whose refusal was final for this boot are asked no
        // more (the client gave up on them; see `Boot::gone`).
        let mut untils: Vec<Millis> = t
            .guardians
            .iter()
            .filter(|g| !b.from.contains(g) && !b.gone.contains(g))
            .filter_map(|&g| self.would_release(g, i, t.epoch))
            .collect();
        if untils.len() < need {
            return None;
        }
        untils.sort_unstable_by(|a, b| b.cmp(a));
        Some(untils[need - 1])
    }

    /// The oracle's view of whether guardian g would release o's share
    /// now, and until when (see `Oracle::ground_until`).
    fn would_release(&self, g: u32, o: u32, epoch: u64) -> Option<Millis> {
        let now = self.now();
        let p = &self.cfg.policy;
        let gn = &self.nodes[g as usize];
        let oid = self.nodes[o as usize].id;
        // A guardian that sees itself revoked (or not a member) answers
        // nothing (issue 20, L3).
        let ok = gn.running()
            && self.net.connected(o, g)
            && gn.roster.roster.is_active(&gn.id)
            && gn.roster.roster.is_active(&oid)
            && !self.oracle.locked(g)
            && gn
                .guardian
                .owner(&oid)
                .is_some_and(|s| s.envelopes.contains_key(&epoch))
            && !self.oracle.up(g, o, now, p);
        if !ok {
            return None;
        }
        let may_approve = |by: &keyward_core::identity::NodeId| {
            gn.roster
                .roster
                .member(by)
                .is_some_and(|m| m.role == keyward_core::roster::Role::Guardian)
        };
        self.oracle
            .ground_until(g, o, now, p, p.timeout, may_approve)
    }

    /// `roster.converge`, evaluated as the module doc says.
    fn watch_convergence(&mut self) {
        let now = self.now();
        let quiet = !self.net.is_split()
            && now >= self.healed_at + SETTLE
            && now >= self.last_change + QUIET;
        if !quiet {
            self.watch.quiet = false;
            self.watch.reference = None;
            return;
        }
        if !self.watch.quiet {
            self.watch.quiet = true;
            self.watch.reference = self.scan_convergence();
            return;
        }
        let mut ok = 0;
        let mut rescan = false;
        for &i in &self.watch.touched {
            let n = &self.nodes[i as usize];
            if !converges(n, now) {
                continue;
            }
            match self.watch.reference {
                None => {
                    self.watch.reference = Some(n.roster.digest);
                    ok += 1;
                }
                Some(d) if d == n.roster.digest => ok += 1,
                Some(_) => rescan = true,
            }
        }
        self.checks.passed(inv::CONVERGE, ok);
        if rescan {
            self.watch.reference = self.scan_convergence();
        }
    }

    /// Compares every member running for `SETTLE`; returns their digest.
    fn scan_convergence(&mut self) -> Option<[u8; 32]> {
        let now = self.now();
        let mut first: Option<(u32, [u8; 32])> = None;
        let mut odd = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if !converges(n, now) {
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
        first.map(|f| f.1)
    }
}

/// Whether `roster.converge` expects node `n` to hold the common roster:
/// running for `SETTLE`, and not revoked. A revoked node is out of the
/// mesh (members answer its syncs and gossip no more), so it may keep an
/// old roster for good; two revoked nodes still talking to each other can
/// hold different ones, which harms nobody.
fn converges(n: &crate::node::Node, now: Millis) -> bool {
    n.running() && n.running_since + SETTLE <= now && !n.revoked
}
