//! The simulator core: the world, the event loop and its dispatch.
//!
//! One seeded RNG, one virtual clock, one queue ordered by (time, sequence):
//! the same seed gives the same run, byte for byte. Node behaviour lives in
//! `daemon` (a running node), `boot` (power-on to unlocked) and `admin`
//! (scenario actions and the operator).

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use keyward_core::guardian::{Event, Guardian, LockState, Millis, ShareRequest};
use keyward_core::identity::{BootKey, NodeId, NodeKey};
use keyward_core::roster::{Member, MeshId, OpBody, Role, Roster, SignedOp};
use keyward_core::shares::{split_with_rng, DiskSecret, ShareEnvelope};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::invariants::{Checks, Violation};
use crate::net::{Net, ATTACKER};
use crate::node::{Node, Phase, Token};
use crate::oracle::Oracle;
use crate::queue::Queue;
use crate::report::{Failure, Stats, Summary};
use crate::rosters::{Bits, Entry, Rosters};
use crate::scenario::{Config, Placement, MIN, SEC};
use crate::trace::{Kind, Rec, Trace, NONE};
use crate::watch::Watch;

pub enum Msg {
    Ping,
    Bye,
    Request {
        session: u32,
        req: Box<ShareRequest>,
    },
    Response {
        session: u32,
        env: Option<Box<ShareEnvelope>>,
        rule: u8,
    },
    Deposit(Box<ShareEnvelope>),
    Ack {
        epoch: u64,
        ok: bool,
    },
    Drop {
        epochs: Vec<u64>,
    },
    Gossip(Vec<u32>),
    Sync {
        reply: bool,
        entry: Rc<Entry>,
        lock: Option<Box<LockState>>,
    },
    /// `keyward approve` of `owner`, issued by `by`'s node key (an
    /// admin's, or a hostile member's or one it minted).
    Approve {
        owner: u32,
        by: NodeId,
    },
    Lock(Box<LockState>),
}

impl Msg {
    pub fn kind(&self) -> Kind {
        match self {
            Msg::Ping => Kind::Ping,
            Msg::Bye => Kind::Bye,
            Msg::Request { .. } => Kind::Request,
            Msg::Response { env: Some(_), .. } => Kind::Released,
            Msg::Response { .. } => Kind::Refused,
            Msg::Deposit(_) => Kind::Deposit,
            Msg::Ack { .. } => Kind::Ack,
            Msg::Drop { .. } => Kind::Drop,
            Msg::Gossip(_) => Kind::Gossip,
            Msg::Sync { .. } => Kind::Sync,
            Msg::Approve { .. } => Kind::Approve,
            Msg::Lock(_) => Kind::Lock,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Timer {
    Ping,
    Sync,
    BootTry,
    Initramfs,
    DaemonUp,
    PowerOn,
    DepositRetry,
}

#[derive(Clone, Copy, Debug)]
pub enum Act {
    Reboot,
    Crash,
    Join,
    Revoke,
    Stranger,
    Copy,
    Theft,
    Readmit(u32),
    RevokeNode(u32),
    CrashNode(u32, Millis),
    Partition,
    Heal,
    Seize,
    Outage,
    PowerBack,
    AdminOutage,
    ApproveLoop,
    Lockdown,
    Lift,
    Review {
        periodic: bool,
    },
    /// A hostile member's next move (hostile scenario).
    Hostile,
    /// Hostile approvals of every seized server.
    HostileBurst,
    /// An admin on the founder revokes the hostile members.
    RevokeHostile,
}

pub enum Ev {
    Msg { from: u32, to: u32, msg: Msg },
    Timer { node: u32, inc: u32, t: Timer },
    Act(Act),
    Tick,
}

/// A revocation as it really happened, for the invariants.
pub struct Revocation {
    pub node: u32,
    pub op: u32,
    /// Nodes the revoked node admitted after its revocation.
    pub sybils: Vec<NodeId>,
}

pub struct Outage {
    pub admin_started: bool,
    pub last_progress: Millis,
}

pub struct Sim {
    pub cfg: Config,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) q: Queue<Ev>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) ids: BTreeMap<NodeId, u32>,
    pub(crate) rosters: Rosters,
    pub(crate) net: Net,
    pub(crate) oracle: Oracle,
    pub(crate) checks: Checks,
    pub(crate) trace: Trace,
    pub(crate) stats: Stats,
    pub(crate) mesh: MeshId,
    /// Number of the event being run.
    pub(crate) event: u64,
    pub(crate) sessions: u32,
    pub(crate) revocations: Vec<Revocation>,
    pub(crate) healed_at: Millis,
    pub(crate) last_change: Millis,
    pub(crate) outage: Option<Outage>,
    pub(crate) lockdown: bool,
    /// State of the per-event checks (see `watch`).
    pub(crate) watch: Watch,
    /// The hostile members and what they made (hostile scenario).
    pub(crate) hostile: Option<crate::hostile::Hostile>,
    /// Seized servers not (yet) opened, and when they were seized.
    pub(crate) seizures: BTreeMap<u32, Millis>,
    /// (guardian, owner, epoch) already released to a seized server: a
    /// repeat gives the thief nothing new.
    pub(crate) seized_released: BTreeSet<(u32, u32, u64)>,
    /// Seized servers a hostile approval opened before the guardians could
    /// know it was revoked (accepted loss; see `hostile`).
    pub(crate) hostile_opened: BTreeSet<u32>,
    /// Replica states (by digest) the membership checks already judged.
    pub(crate) judged: BTreeSet<[u8; 32]>,
}

/// Interval of the backstop re-evaluation of quorums (see `watch`).
pub const TICK: Millis = 5 * SEC;
/// Trace records printed with a failure: the last ones touching the nodes
/// the violation names. This is a window, not a minimised trace: finding
/// a minimal one would need shrinking by replay, which the sim does not
/// do; the seed replays the full run and `--trace` prints all of it.
pub const TRACE_TAIL: usize = 40;

impl Sim {
    pub fn new(cfg: Config) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let hostile = cfg.scenario == crate::scenario::Scenario::Hostile;
        let n = if hostile {
            cfg.nodes.max(crate::hostile::MIN_NODES)
        } else {
            cfg.nodes.max(2)
        };
        // The hostile scenario's auditor is the last node (see `hostile`).
        let role = |i: usize| {
            if hostile && i == n - 1 {
                Role::Auditor
            } else {
                Role::Guardian
            }
        };
        let mesh = MeshId(rng.gen());
        let keys: Vec<(NodeKey, BootKey)> = (0..n)
            .map(|_| (NodeKey::from_seed(rng.gen()), BootKey::from_seed(rng.gen())))
            .collect();
        let member = |i: usize| Member {
            id: keys[i].0.id(),
            boot: keys[i].1.public(),
            name: format!("n{i}"),
            role: role(i),
        };
        let mut rosters = Rosters::new(cfg.dedup);
        let (mut roster, found) = Roster::found("sim", mesh, member(0), &keys[0].0);
        let mut bits = Bits::default();
        bits.insert(rosters.add_op(found));
        let mut admits = Vec::new();
        for i in 1..n {
            let op = SignedOp::sign(
                OpBody::Admit {
                    mesh,
                    member: member(i),
                    claim: member(i).claim(mesh, &keys[i].0),
                    invite: Some(serde_bytes::ByteArray::new(rng.gen())),
                    by: keys[0].0.id(),
                    at: 0,
                },
                &keys[0].0,
            );
            admits.push(op.clone());
            bits.insert(rosters.add_op(op));
        }
        let rep = roster.merge_all(admits);
        assert!(
            rep.errors.is_empty() && rep.new.len() == n - 1,
            "setup roster: {:?}",
            rep.errors
        );
        let genesis = rosters.genesis(roster, bits);
        let mut sim = Sim {
            net: Net::new(cfg.net.clone(), n),
            trace: Trace::new(1 << 14, cfg.trace),
            cfg,
            rng,
            q: Queue::default(),
            nodes: Vec::with_capacity(n),
            ids: BTreeMap::new(),
            rosters,
            oracle: Oracle::default(),
            checks: Checks::default(),
            stats: Stats::default(),
            mesh,
            event: 0,
            sessions: 0,
            revocations: Vec::new(),
            healed_at: 0,
            last_change: 0,
            outage: None,
            lockdown: false,
            watch: Watch::default(),
            hostile: None,
            seizures: BTreeMap::new(),
            seized_released: BTreeSet::new(),
            hostile_opened: BTreeSet::new(),
            judged: BTreeSet::new(),
        };
        for (i, (key, boot_key)) in keys.into_iter().enumerate() {
            let id = key.id();
            sim.ids.insert(id, i as u32);
            sim.oracle.add_node();
            sim.nodes.push(Node {
                id,
                key,
                boot_key,
                phase: Phase::Running,
                inc: 0,
                roster: sim.rosters.replica(&genesis),
                guardian: Guardian::new(id, sim.cfg.policy),
                token: None,
                bind: None,
                boot: None,
                role: role(i),
                hostile: false,
                revoked: false,
                seized: false,
                stolen: false,
                running_since: 0,
                down_since: 0,
                powered_on: 0,
                pinged_at: 0,
            });
        }
        drop(genesis);
        if hostile {
            sim.hostile = Some(crate::hostile::Hostile::new(&mut sim));
        }
        for i in 0..n as u32 {
            sim.initial_bind(i);
        }
        let (ping, sync) = (sim.cfg.policy.interval, sim.cfg.sync_interval);
        for i in 0..n as u32 {
            let d = sim.rng.gen_range(0..ping);
            sim.timer(i, d, Timer::Ping);
            let d = sim.rng.gen_range(0..sync);
            sim.timer(i, d, Timer::Sync);
        }
        sim.q.at(TICK, Ev::Tick);
        crate::admin::plan(&mut sim);
        sim
    }

    /// The setup binding: every node splits its disk key over its
    /// guardians, who accept the deposit through `Guardian::handle`, and
    /// has been seen alive by them.
    fn initial_bind(&mut self, i: u32) {
        let n = self.nodes.len() as u32;
        // Auditors hold no shares.
        let may_guard = |s: &Sim, j: u32| j != i && s.nodes[j as usize].role == Role::Guardian;
        let cands = (0..n).filter(|&j| may_guard(self, j)).count();
        let g = self.cfg.guardians.min(cands);
        let guardians: Vec<u32> = match self.cfg.placement {
            Placement::Ring => (1..n)
                .map(|k| (i + k) % n)
                .filter(|&j| may_guard(self, j))
                .take(g)
                .collect(),
            Placement::Random => {
                let mut v = Vec::with_capacity(g);
                while v.len() < g {
                    let j = self.rng.gen_range(0..n);
                    if may_guard(self, j) && !v.contains(&j) {
                        v.push(j);
                    }
                }
                v
            }
        };
        let token = Token {
            epoch: 1,
            threshold: self.cfg.threshold.min(g).max(1),
            guardians,
            secret: self.rng.gen(),
        };
        let envs = self.split(i, &token);
        let owner = self.nodes[i as usize].id;
        for (g, env) in token.guardians.iter().zip(envs) {
            let node = &mut self.nodes[*g as usize];
            let roster = node.roster.clone();
            let acts = node.guardian.handle(
                Event::Deposit {
                    from: owner,
                    envelope: Box::new(env),
                    at: 0,
                },
                &roster.roster,
            );
            assert!(matches!(
                acts[..],
                [keyward_core::guardian::Action::Store { .. }]
            ));
            node.guardian
                .handle(Event::Alive { node: owner, at: 0 }, &roster.roster);
            self.oracle.alive(*g, i, 0, 0);
        }
        self.nodes[i as usize].token = Some(token);
    }

    /// `shares::split_with_rng` of a token's secret, made by node i, with
    /// the Shamir coefficients from the seeded RNG (the age sealing inside
    /// stays OS-random: see `split_with_rng` and `Sim::absorb`).
    pub(crate) fn split(&mut self, i: u32, t: &Token) -> Vec<ShareEnvelope> {
        let node = &self.nodes[i as usize];
        let ids: Vec<NodeId> = t
            .guardians
            .iter()
            .map(|g| self.nodes[*g as usize].id)
            .collect();
        split_with_rng(
            &DiskSecret::from_bytes(t.secret),
            t.threshold,
            &ids,
            t.epoch,
            &node.key,
            &node.boot_key.public(),
            &mut self.rng,
        )
        .expect("valid split")
    }

    /// A nonce for a `ShareRequest`, from the seeded RNG so that the
    /// request bytes are the same for the same seed (the signature over
    /// them is deterministic ed25519).
    pub(crate) fn nonce(&mut self) -> [u8; 16] {
        self.rng.gen()
    }

    /// Folds what a message carries into the trace hash. Everything is
    /// covered except `ShareEnvelope::body.sealed` and the envelope's
    /// signature (which signs `sealed`): age 0.12 seals with OS randomness
    /// it does not let a caller replace, so those bytes differ between
    /// runs of one seed. The envelope's owner, guardian, epoch, index,
    /// threshold, total and commitment are covered, and so is the share
    /// itself indirectly: `combine` must give the token's key
    /// (`unlock.key-correct`), which the trace records.
    fn absorb(&mut self, from: u32, to: u32, msg: &Msg) {
        let t = &mut self.trace;
        t.absorb(&[from as u64, to as u64, msg.kind() as u64]);
        let env = |t: &mut Trace, e: &ShareEnvelope| {
            let b = &e.body;
            t.absorb_bytes(&b.owner.0);
            t.absorb_bytes(&b.guardian.0);
            t.absorb(&[b.epoch, b.index as u64, b.threshold as u64, b.total as u64]);
            t.absorb_bytes(&b.commitment);
        };
        match msg {
            Msg::Ping | Msg::Bye => {}
            Msg::Request { session, req } => {
                t.absorb(&[*session as u64, req.epoch]);
                t.absorb_bytes(&req.owner.0);
                t.absorb_bytes(&req.guardian.0);
                t.absorb_bytes(&req.nonce);
                t.absorb_bytes(&req.sig.0);
            }
            Msg::Response {
                session,
                env: e,
                rule,
            } => {
                t.absorb(&[*session as u64, *rule as u64]);
                if let Some(e) = e {
                    env(t, e);
                }
            }
            Msg::Deposit(e) => env(t, e),
            Msg::Ack { epoch, ok } => t.absorb(&[*epoch, *ok as u64]),
            Msg::Drop { epochs } => {
                t.absorb(&[epochs.len() as u64]);
                t.absorb(epochs);
            }
            Msg::Gossip(ops) => {
                t.absorb(&[ops.len() as u64]);
                for op in ops {
                    t.absorb(&[*op as u64]);
                }
            }
            Msg::Sync { reply, entry, lock } => {
                t.absorb(&[*reply as u64]);
                t.absorb_bytes(&entry.digest);
                if let Some(l) = lock {
                    t.absorb_bytes(&l.by.0);
                    t.absorb(&[l.at, l.on as u64]);
                }
            }
            Msg::Approve { owner, by } => {
                t.absorb(&[*owner as u64]);
                t.absorb_bytes(&by.0);
            }
            Msg::Lock(l) => {
                t.absorb_bytes(&l.by.0);
                t.absorb(&[l.at, l.on as u64]);
            }
        }
    }

    /// Runs to the end of the scenario, or to the first failed invariant.
    pub fn run(mut self) -> Result<Summary, Box<Failure>> {
        let end = self.cfg.end();
        while let Some((t, ev)) = self.q.pop() {
            if t > end {
                break;
            }
            self.event += 1;
            self.dispatch(ev);
            self.after_event();
            if let Some(mut v) = self.checks.failed.take() {
                v.event = self.event;
                v.at = t;
                return Err(Box::new(self.failure(v)));
            }
        }
        Ok(self.summary())
    }

    fn failure(&self, v: Violation) -> Failure {
        let lines = self
            .trace
            .last(&v.nodes, TRACE_TAIL)
            .iter()
            .map(Rec::line)
            .collect();
        Failure {
            seed: self.cfg.seed,
            replay: self.cfg.replay(),
            trace: lines,
            violation: v,
            trace_hash: self.trace.hash(),
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Msg { from, to, msg } => self.deliver(from, to, msg),
            Ev::Timer { node, inc, t } => {
                if self.nodes[node as usize].inc == inc {
                    self.on_timer(node, t)
                }
            }
            Ev::Act(a) => self.act(a),
            Ev::Tick => self.tick(),
        }
    }

    fn on_timer(&mut self, i: u32, t: Timer) {
        match t {
            Timer::Ping => self.ping_timer(i),
            Timer::Sync => self.sync_timer(i),
            Timer::BootTry => self.boot_try(i),
            Timer::Initramfs => self.initramfs(i),
            Timer::DaemonUp => self.daemon_up(i),
            Timer::PowerOn => self.power_on(i),
            Timer::DepositRetry => self.deposit_retry(i),
        }
    }

    fn deliver(&mut self, from: u32, to: u32, msg: Msg) {
        if to == ATTACKER {
            return;
        }
        let kind = msg.kind();
        let node = &self.nodes[to as usize];
        let accepts = match msg {
            Msg::Response { .. } => node.asking(),
            _ => node.running(),
        };
        if !self.net.connected(from, to) {
            self.net.stats.cut += 1;
            return;
        }
        if !accepts {
            self.net.stats.to_down += 1;
            self.rec(Kind::ToDown, from, to, kind as u64);
            return;
        }
        self.net.stats.delivered += 1;
        if !matches!(msg, Msg::Response { .. }) {
            let x = match &msg {
                Msg::Gossip(v) => v.len() as u64,
                Msg::Approve { owner, .. } => *owner as u64,
                Msg::Lock(l) => l.on as u64,
                _ => 0,
            };
            self.rec(kind, from, to, x);
        }
        match msg {
            Msg::Response { session, env, rule } => self.on_response(to, from, session, env, rule),
            msg => self.on_message(from, to, msg),
        }
    }

    fn tick(&mut self) {
        let now = self.now();
        // Backstop of the per-event quorum check: re-evaluate every asking
        // node (a quorum can appear by time alone; see `watch`).
        self.watch.global = true;
        if now % (60 * MIN) < TICK {
            self.rosters.sweep();
        }
        self.q.after(TICK, Ev::Tick);
    }

    // ---- helpers ----

    pub(crate) fn now(&self) -> Millis {
        self.q.now()
    }

    pub(crate) fn rec(&mut self, kind: Kind, a: u32, b: u32, x: u64) {
        let n = self.nodes.len() as u32;
        match (a < n, b < n) {
            (false, false) => self.watch.global = true,
            (ta, tb) => {
                if ta {
                    self.watch.touch(a);
                }
                if tb {
                    self.watch.touch(b);
                }
            }
        }
        self.trace.push(Rec {
            n: self.event,
            t: self.q.now(),
            kind,
            a,
            b,
            x,
        });
    }

    pub(crate) fn send(&mut self, from: u32, to: u32, msg: Msg) {
        self.absorb(from, to, &msg);
        if let Some(lat) = self.net.send(&mut self.rng, from, to) {
            self.q.after(lat, Ev::Msg { from, to, msg });
        }
    }

    pub(crate) fn timer(&mut self, i: u32, delay: Millis, t: Timer) {
        let inc = self.nodes[i as usize].inc;
        self.q.after(delay, Ev::Timer { node: i, inc, t });
    }

    /// `base` give or take 10 %.
    pub(crate) fn jitter(&mut self, base: Millis) -> Millis {
        let lo = base - base / 10;
        self.rng.gen_range(lo..=base + base / 10)
    }

    pub(crate) fn uniform(&mut self, lo: Millis, hi: Millis) -> Millis {
        self.rng.gen_range(lo..=hi.max(lo))
    }

    /// A random node satisfying `ok`, or None after a few tries.
    pub(crate) fn pick(&mut self, ok: impl Fn(&Node, u32) -> bool) -> Option<u32> {
        let n = self.nodes.len() as u32;
        for _ in 0..64 {
            let i = self.rng.gen_range(0..n);
            if ok(&self.nodes[i as usize], i) {
                return Some(i);
            }
        }
        None
    }

    /// A random peer that node i counts as an active member and is
    /// connected to (a daemon knows which of its connections answer).
    pub(crate) fn peer(&mut self, i: u32) -> Option<u32> {
        let n = self.nodes.len() as u32;
        for _ in 0..16 {
            let j = self.rng.gen_range(0..n);
            let p = &self.nodes[j as usize];
            if j != i
                && p.running()
                && self.net.connected(i, j)
                && self.nodes[i as usize].roster.roster.is_active(&p.id)
            {
                return Some(j);
            }
        }
        None
    }

    pub(crate) fn idx(&self, id: &NodeId) -> Option<u32> {
        self.ids.get(id).copied()
    }

    pub(crate) fn id(&self, i: u32) -> NodeId {
        self.nodes[i as usize].id
    }

    /// The node an admin works on: the founder if it runs, else the first
    /// running member that was never revoked.
    pub(crate) fn admin_node(&self) -> Option<u32> {
        (0..self.nodes.len() as u32).find(|&i| {
            let n = &self.nodes[i as usize];
            n.running() && !n.revoked && !n.stolen && !n.hostile && n.roster.roster.is_active(&n.id)
        })
    }

    /// The node an admin revokes `target` from: the first that
    /// `admin_node` would take whose own roster says its revocation of
    /// `target` counts (seniority).
    pub(crate) fn admin_node_for(&self, target: &NodeId) -> Option<u32> {
        (0..self.nodes.len() as u32).find(|&i| {
            let n = &self.nodes[i as usize];
            let r = &n.roster.roster;
            n.running()
                && !n.revoked
                && !n.stolen
                && !n.hostile
                && r.is_active(&n.id)
                && r.may_revoke(&n.id, target)
        })
    }

    pub(crate) fn none() -> u32 {
        NONE
    }
}
