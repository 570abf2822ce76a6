//! A running node: pings its guardians, serves as a guardian through
//! `Guardian::handle`, spreads roster operations (push gossip and periodic
//! push-pull anti-entropy) and binds its disk key.

use std::collections::BTreeSet;
use std::rc::Rc;

use keyward_core::guardian::{Action, Event, LockState};
use keyward_core::roster::Role;
use keyward_core::shares::ShareEnvelope;

use crate::invariants as inv;
use crate::net::ATTACKER;
use crate::node::{Bind, Token};
use crate::oracle::Ground;
use crate::report::rule_index;
use crate::rosters::{Entry, Outcome};
use crate::scenario::{MIN, SEC};
use crate::sim::{Msg, Sim, Timer};
use crate::trace::Kind;

/// How often deposits without an ack are sent again.
const DEPOSIT_RETRY: u64 = 30 * SEC;
/// A binding not acknowledged by all its guardians by then picks again.
const BIND_GIVE_UP: u64 = 20 * MIN;

impl Sim {
    pub(crate) fn ping_timer(&mut self, i: u32) {
        self.rec(Kind::PingTimer, i, Sim::none(), 0);
        self.count_conn_pings(i);
        for g in self.nodes[i as usize].ping_targets() {
            self.send(i, g, Msg::Ping);
        }
        let n = &self.nodes[i as usize];
        let stale = n.token.as_ref().is_some_and(|t| {
            t.guardians
                .iter()
                .any(|g| !n.roster.roster.is_active(&self.nodes[*g as usize].id))
        });
        if stale && n.bind.is_none() && !n.revoked {
            self.start_bind(i);
        }
        let d = self.jitter(self.cfg.policy.interval);
        self.timer(i, d, Timer::Ping);
    }

    pub(crate) fn sync_timer(&mut self, i: u32) {
        self.rec(Kind::SyncTimer, i, Sim::none(), 0);
        self.sync_with_peer(i);
        let d = self.jitter(self.cfg.sync_interval);
        self.timer(i, d, Timer::Sync);
    }

    pub(crate) fn sync_with_peer(&mut self, i: u32) {
        if let Some(j) = self.peer(i) {
            let n = &self.nodes[i as usize];
            let msg = Msg::Sync {
                reply: true,
                entry: n.roster.clone(),
                lock: n.guardian.lock_state().map(Box::new),
            };
            self.send(i, j, msg);
        }
    }

    pub(crate) fn on_message(&mut self, from: u32, to: u32, msg: Msg) {
        let now = self.now();
        match msg {
            Msg::Ping => self.alive(to, from),
            Msg::Bye => {
                self.alive(to, from);
                let owner = self.id(from);
                self.handle(
                    to,
                    Event::GoingDown {
                        node: owner,
                        at: now,
                    },
                );
                self.oracle.bye(to, from, now);
            }
            Msg::Request { session, req } => self.serve(from, to, session, *req),
            Msg::Deposit(env) => {
                let from_id = self.id(from);
                let epoch = env.body.epoch;
                let acts = self.handle(
                    to,
                    Event::Deposit {
                        from: from_id,
                        envelope: env,
                        at: now,
                    },
                );
                let ok = acts.iter().any(|a| matches!(a, Action::Store { .. }));
                if !ok {
                    self.stats.deposits_rejected += 1;
                }
                self.send(to, from, Msg::Ack { epoch, ok });
            }
            Msg::Ack { epoch, ok } => self.on_ack(to, from, epoch, ok),
            Msg::Drop { epochs } => {
                let from_id = self.id(from);
                self.handle(
                    to,
                    Event::Drop {
                        from: from_id,
                        epochs,
                        at: now,
                    },
                );
            }
            Msg::Gossip(ops) => {
                let new = self.learn(to, &ops);
                self.gossip(to, new);
            }
            Msg::Sync { reply, entry, lock } => self.on_sync(from, to, reply, entry, lock),
            Msg::Approve { owner, by } => {
                let o = self.id(owner);
                let r = &self.nodes[to as usize].roster.roster;
                // As the guardian: only an active guardian's approval counts.
                let may = r.member(&by).is_some_and(|m| m.role == Role::Guardian);
                if r.is_active(&o) && may {
                    self.oracle.approve(to, owner, by, now);
                }
                self.handle(
                    to,
                    Event::Approve {
                        owner: o,
                        by,
                        at: now,
                    },
                );
            }
            Msg::Lock(l) => self.apply_lock(to, *l),
            Msg::Response { .. } => unreachable!("routed to boot"),
        }
    }

    /// Feeds one event to node g's guardian, with g's own roster replica.
    pub(crate) fn handle(&mut self, g: u32, ev: Event) -> Vec<Action> {
        let node = &mut self.nodes[g as usize];
        let roster = node.roster.clone();
        node.guardian.handle(ev, &roster.roster)
    }

    /// The daemon pings every open connection every `up_window / 3` (at
    /// least 0.5 s, at most `interval`), and each answer is an
    /// `Event::Alive`. Simulating every such ping would cost ~36 events per
    /// heartbeat; instead the last answer on the o→g connection before now
    /// is fed to g when it matters: before g decides on a request for o,
    /// when o goes down, and when a partition cuts o from g. These pings
    /// are not subject to loss.
    pub(crate) fn conn_alive(&mut self, o: u32, g: u32) {
        let (on, gn) = (&self.nodes[o as usize], &self.nodes[g as usize]);
        if !on.running() || !gn.running() || !self.net.connected(o, g) {
            return;
        }
        let p = self.cfg.policy;
        let period = (p.up_window / 3).clamp(500, p.interval.max(500));
        let now = self.now();
        let tick = on.running_since + (now - on.running_since) / period * period;
        let open = on.running_since.max(gn.running_since).max(self.healed_at);
        if tick < open {
            return;
        }
        let owner = on.id;
        if gn.roster.roster.is_active(&owner) {
            self.oracle.alive(g, o, tick, now);
        }
        self.handle(
            g,
            Event::Alive {
                node: owner,
                at: tick,
            },
        );
    }

    /// Counts the connection pings `conn_alive` stands in for, so that
    /// "messages per node per hour" includes them: each open o->g
    /// connection carries a ping and its answer every period. Counted at
    /// each heartbeat of o for the connections open at that moment, over
    /// the time since o's previous heartbeat (or since the connection
    /// opened); a connection that closed in between is not counted.
    fn count_conn_pings(&mut self, o: u32) {
        let now = self.now();
        let p = self.cfg.policy;
        let period = (p.up_window / 3).clamp(500, p.interval.max(500));
        let on = &self.nodes[o as usize];
        let from = on.pinged_at.max(on.running_since).max(self.healed_at);
        let mut pings = 0;
        for g in on.ping_targets() {
            let gn = &self.nodes[g as usize];
            if gn.running() && self.net.connected(o, g) {
                pings += 2 * (now.saturating_sub(from.max(gn.running_since)) / period);
            }
        }
        self.net.stats.liveness_pings += pings;
        self.nodes[o as usize].pinged_at = now;
    }

    fn alive(&mut self, g: u32, o: u32) {
        let now = self.now();
        let owner = self.id(o);
        if self.nodes[g as usize].roster.roster.is_active(&owner) {
            self.oracle.alive(g, o, now, now);
        }
        self.handle(
            g,
            Event::Alive {
                node: owner,
                at: now,
            },
        );
    }

    /// Guardian g answers a share request.
    fn serve(
        &mut self,
        from: u32,
        g: u32,
        session: u32,
        req: keyward_core::guardian::ShareRequest,
    ) {
        let now = self.now();
        let attacker = from == ATTACKER;
        let owner = self.idx(&req.owner);
        if let Some(o) = owner {
            self.conn_alive(o, g);
            self.oracle.request(g, o, session, now);
        }
        let owner_id = req.owner;
        // Whoever asks holds the owner's boot key (the owner's own
        // initramfs, or an attacker with a copy) and connects with it.
        let conn = owner.map(|o| {
            keyward_core::identity::NodeId(
                self.nodes[o as usize]
                    .boot_key
                    .signing_key()
                    .verifying_key()
                    .to_bytes(),
            )
        });
        let acts = self.handle(
            g,
            Event::Request {
                id: session as u64,
                req,
                conn,
                at: now,
            },
        );
        let o = owner.unwrap_or(Sim::none());
        for a in acts {
            match a {
                Action::Release { envelope, .. } => {
                    self.rec(Kind::Release, g, o, attacker as u64);
                    let epoch = envelope.body.epoch;
                    self.check_release(g, owner_id, owner, attacker, session, epoch);
                    self.stats.count_release(attacker, self.copy_of(owner));
                    if !attacker {
                        let msg = Msg::Response {
                            session,
                            env: Some(envelope),
                            rule: 0,
                        };
                        self.send(g, from, msg);
                    }
                }
                Action::Refuse { refusal, .. } => {
                    let rule = rule_index(refusal.rule());
                    self.rec(Kind::Refuse, g, o, rule as u64);
                    self.stats
                        .count_refusal(attacker, self.copy_of(owner), rule);
                    if !attacker {
                        let msg = Msg::Response {
                            session,
                            env: None,
                            rule,
                        };
                        self.send(g, from, msg);
                    }
                }
                Action::Alert(_) => self.stats.alerts += 1,
                Action::Log(_) => self.stats.decisions += 1,
                _ => {}
            }
        }
    }

    /// Whether an attacker's request for `owner` used a copied boot key of a
    /// real node (rather than a stranger's key).
    fn copy_of(&self, owner: Option<u32>) -> bool {
        owner.is_some()
    }

    /// The release invariants, judged against the oracle and the truth.
    fn check_release(
        &mut self,
        g: u32,
        owner: keyward_core::identity::NodeId,
        o: Option<u32>,
        attacker: bool,
        session: u32,
        epoch: u64,
    ) {
        let now = self.now();
        let p = self.cfg.policy;
        let timeout = self.cfg.oracle_timeout.unwrap_or(p.timeout);
        let gn = &self.nodes[g as usize];
        let roster = gn.roster.clone();
        let nodes = [g, o.unwrap_or(Sim::none())];
        let known = o.is_some();
        let active = roster.roster.is_active(&owner);
        self.checks.check(inv::RELEASE_MEMBER, known && active, &nodes, || {
            format!(
                "guardian n{g} released a share of {} (admitted: {known}, active in its roster: {active})",
                owner.short()
            )
        });
        let revoked = roster.roster.is_revoked(&owner);
        self.checks
            .check(inv::RELEASE_NOT_REVOKED, !revoked, &nodes, || {
                format!("guardian n{g} released a share of a node its roster says is revoked")
            });
        let locked = self.oracle.locked(g);
        self.checks
            .check(inv::RELEASE_NO_LOCKDOWN, !locked, &nodes, || {
                format!("guardian n{g} released a share while it had been told of a lockdown")
            });
        let Some(o) = o else { return };
        let ground = self.oracle.ground(g, o, now, &p, timeout);
        let seen = self.oracle.seen(g, o).cloned().unwrap_or_default();
        let why = || {
            format!(
                "guardian n{g} released n{o}'s share at {}: last liveness delivered {}, last release {}, approval {}; timeout {} s, extended {} s",
                crate::trace::clock(now),
                seen.alive.map_or("never".into(), crate::trace::clock),
                seen.release.map_or("never".into(), crate::trace::clock),
                seen.approved.map_or("none".into(), crate::trace::clock),
                timeout / SEC,
                p.extended_timeout / SEC
            )
        };
        self.checks
            .check(inv::RELEASE_ALIVE, ground.is_some(), &nodes, why);
        self.check_honest_approval(g, o, epoch);
        let chained = matches!(ground, Some(Ground::Extended { chained: true }));
        if chained {
            self.stats.chained_extended += 1;
        }
        if self.cfg.strict {
            self.checks.check(inv::STRICT_EXT_CHAIN, !chained, &nodes, || {
                format!("guardian n{g} released n{o}'s share only because of an extended timeout that an earlier extended release had renewed; n{o} has not been alive since {}",
                    seen.alive.map_or("ever".into(), crate::trace::clock))
            });
            let owner_runs = self.nodes[o as usize].running();
            let cut = if self.net.connected(o, g) {
                ""
            } else {
                "; it is cut off from this guardian by a partition, so its connection cannot answer"
            };
            self.checks.check(inv::STRICT_OWNER_UP, !(attacker && owner_runs), &nodes, || {
                format!("guardian n{g} released n{o}'s share to a copied boot key while n{o} was running (last liveness {}, up_window {} s){cut}",
                    seen.alive.map_or("never".into(), crate::trace::clock), p.up_window / SEC)
            });
            if p.approval_delay > 0 && ground != Some(Ground::Approved) {
                let first = seen.first_request.filter(|(s, _)| *s == session);
                let waited = first.is_some_and(|(_, t)| now - t >= p.approval_delay);
                self.checks.check(inv::STRICT_DELAY, waited, &nodes, || {
                    format!("guardian n{g} released n{o}'s share without waiting approval_delay ({} s) after this boot's first request", p.approval_delay / SEC)
                });
            }
        }
        self.oracle.released(
            g,
            o,
            now,
            ground.is_some_and(|g| !matches!(g, Ground::Extended { .. })),
            &p,
        );
    }

    fn on_sync(
        &mut self,
        from: u32,
        to: u32,
        reply: bool,
        entry: Rc<Entry>,
        lock: Option<Box<LockState>>,
    ) {
        let mine = self.nodes[to as usize].roster.clone();
        let missing = entry.ops.minus(&mine.ops);
        let new = self.learn(to, &missing);
        if let Some(l) = &lock {
            self.apply_lock(to, **l);
        }
        let node = &self.nodes[to as usize];
        let my_lock = node.guardian.lock_state();
        let they_lack = !node.roster.ops.minus(&entry.ops).is_empty();
        if reply && (they_lack || my_lock != lock.map(|l| *l)) {
            let msg = Msg::Sync {
                reply: false,
                entry: node.roster.clone(),
                lock: my_lock.map(Box::new),
            };
            self.send(to, from, msg);
        }
        self.gossip(to, new);
    }

    /// Merges operations into node i's replica; returns those that were new.
    pub(crate) fn learn(&mut self, i: u32, ops: &[u32]) -> Vec<u32> {
        let mut cur = self.nodes[i as usize].roster.clone();
        let mut new = Vec::new();
        for &op in ops {
            let (e, out) = self.rosters.merge(&cur, op);
            match out {
                Outcome::New => {
                    new.push(op);
                    cur = e;
                }
                Outcome::Known => {}
                Outcome::Rejected(_) => self.stats.ops_rejected += 1,
            }
        }
        if !new.is_empty() {
            self.nodes[i as usize].roster = cur;
            self.last_change = self.now();
            self.rec(Kind::RosterGrew, i, Sim::none(), new.len() as u64);
            self.check_revoked_out(i);
            self.check_membership(i);
        }
        new
    }

    /// Pushes newly learned operations to a few peers.
    pub(crate) fn gossip(&mut self, i: u32, new: Vec<u32>) {
        if new.is_empty() {
            return;
        }
        for _ in 0..self.cfg.fanout {
            if let Some(j) = self.peer(i) {
                self.send(i, j, Msg::Gossip(new.clone()));
            }
        }
    }

    fn check_revoked_out(&mut self, i: u32) {
        let e = self.nodes[i as usize].roster.clone();
        // With hostile members about, a revocation by an admin other than
        // the founder may be voided by a hostile one (a standoff) until the
        // founder's revocation of the hostile members is held: checked from
        // then on (`revocation.takes-effect` checks the founder's own at
        // once).
        let hostile_out = self.hostile_revoked_in(&e.roster);
        let founder = self.id(0);
        for r in &self.revocations {
            if !e.ops.contains(r.op) {
                continue;
            }
            let by_founder = self.rosters.op(r.op).body.signer() == founder;
            if !hostile_out && !by_founder {
                continue;
            }
            let v = self.nodes[r.node as usize].id;
            let out = e.roster.is_revoked(&v) && !e.roster.is_active(&v);
            let sybil = r.sybils.iter().find(|s| e.roster.is_active(s));
            self.checks.check(
                inv::REVOKED_OUT,
                out && sybil.is_none(),
                &[i, r.node],
                || {
                    format!(
                        "n{i}'s roster holds the revocation of n{} but counts {} as active",
                        r.node,
                        if out {
                            "a node it admitted after"
                        } else {
                            "it"
                        }
                    )
                },
            );
        }
    }

    pub(crate) fn apply_lock(&mut self, i: u32, l: LockState) {
        if self.nodes[i as usize].guardian.lock_state() == Some(l) {
            return;
        }
        if self.nodes[i as usize].roster.roster.is_active(&l.by) {
            self.oracle.lock(i, l);
        }
        let ev = if l.on {
            Event::Lockdown { by: l.by, at: l.at }
        } else {
            Event::Lift { by: l.by, at: l.at }
        };
        self.handle(i, ev);
    }

    /// Binds node i's disk anew: new epoch, new key, guardians picked at
    /// random among the members its roster counts as active.
    pub(crate) fn start_bind(&mut self, i: u32) {
        let n = &self.nodes[i as usize];
        // Auditors hold no shares: guardians only.
        let cands: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&j| {
                j != i
                    && n.roster
                        .roster
                        .member(&self.nodes[j as usize].id)
                        .is_some_and(|m| m.role == Role::Guardian)
            })
            .collect();
        let g = self.cfg.guardians.min(cands.len());
        if g == 0 {
            return;
        }
        // A bind given up on leaves envelopes at the guardians that acked
        // it; the daemon's `keyward bind` drops them the same way.
        if let Some(b) = &self.nodes[i as usize].bind {
            let (epoch, gs) = (b.token.epoch, b.token.guardians.clone());
            for to in gs {
                self.send(
                    i,
                    to,
                    Msg::Drop {
                        epochs: vec![epoch],
                    },
                );
            }
        }
        let mut pool = cands;
        let mut guardians = Vec::with_capacity(g);
        for k in 0..g {
            let j = self.rng.gen_range(k..pool.len());
            pool.swap(k, j);
            guardians.push(pool[k]);
        }
        let n = &self.nodes[i as usize];
        let epoch = n
            .token
            .iter()
            .chain(n.bind.as_ref().map(|b| &b.token))
            .map(|t| t.epoch)
            .max()
            .unwrap_or(0)
            + 1;
        let token = Token {
            epoch,
            threshold: self.cfg.threshold.min(g).max(1),
            guardians,
            secret: self.rng.gen(),
        };
        let envelopes = self.split(i, &token);
        let now = self.now();
        self.nodes[i as usize].bind = Some(Bind {
            token,
            envelopes,
            acked: BTreeSet::new(),
            started: now,
        });
        self.send_deposits(i);
        self.timer(i, DEPOSIT_RETRY, Timer::DepositRetry);
    }

    fn send_deposits(&mut self, i: u32) {
        let Some(b) = &self.nodes[i as usize].bind else {
            return;
        };
        let out: Vec<(u32, ShareEnvelope)> = b
            .token
            .guardians
            .iter()
            .zip(&b.envelopes)
            .filter(|(g, _)| !b.acked.contains(g))
            .map(|(g, e)| (*g, e.clone()))
            .collect();
        for (g, e) in out {
            self.send(i, g, Msg::Deposit(Box::new(e)));
        }
    }

    pub(crate) fn deposit_retry(&mut self, i: u32) {
        let Some(started) = self.nodes[i as usize].bind.as_ref().map(|b| b.started) else {
            return;
        };
        self.rec(Kind::DepositRetry, i, Sim::none(), 0);
        if self.now() - started > BIND_GIVE_UP {
            self.start_bind(i);
            return;
        }
        self.send_deposits(i);
        self.timer(i, DEPOSIT_RETRY, Timer::DepositRetry);
    }

    fn on_ack(&mut self, o: u32, g: u32, epoch: u64, ok: bool) {
        let node = &mut self.nodes[o as usize];
        let Some(b) = &mut node.bind else { return };
        if b.token.epoch != epoch || !ok {
            return;
        }
        b.acked.insert(g);
        if b.acked.len() < b.token.guardians.len() {
            return;
        }
        let b = node.bind.take().expect("checked");
        let old = node.token.replace(b.token);
        self.stats.rebinds += 1;
        self.rec(Kind::Rebound, o, Sim::none(), epoch);
        let Some(old) = old else { return };
        let old_epoch = old.epoch;
        let mut tell: Vec<u32> = old.guardians;
        tell.extend(
            self.nodes[o as usize]
                .token
                .as_ref()
                .map(|t| t.guardians.clone())
                .unwrap_or_default(),
        );
        tell.sort_unstable();
        tell.dedup();
        for g in tell {
            self.send(
                o,
                g,
                Msg::Drop {
                    epochs: vec![old_epoch],
                },
            );
        }
    }
}

use rand::Rng;
