//! The world: real `keyward_core::node::Node`s and
//! `keyward_core::unlock::UnlockClient`s driven over a virtual clock,
//! network and disk, the way keywardd (node/src/daemon.rs) and the
//! initramfs (node/src/unlock/mod.rs) drive them over libp2p and sled.
//!
//! What the drivers do and the world models:
//! - Time: each machine's clock is the world's plus its skew
//!   ([`WorldConfig::skew`]), so the admin-message skew bound
//!   (`node::admin::MAX_CLOCK_SKEW`) is exercised.
//! - Connections are explicit: `Output::Dial` (or a `Send` with no
//!   connection) opens one if the target runs keywardd and is reachable;
//!   both ends get `Input::Connected`; a crash closes them all and the
//!   other ends get `Input::Closed`, and requests in flight on them fail.
//! - libp2p pings: keywardd pings every connection every
//!   `(up_window / 3).clamp(500, interval.max(500))` and feeds each
//!   answer as `Input::Pinged`. A full mesh of 1000 nodes pings a million
//!   connections every 3.3 s, which no simulation can run one by one, so
//!   pings are fed lazily and exactly: the last answer on a connection
//!   before now is fed to a node (at its time) just before anything that
//!   reads it: any message over that connection, a share request or an
//!   approval naming the peer, a control request, and the connection
//!   closing. They are counted in full (a ping and its answer each way
//!   per period per connection) in the messages.
//! - Gossip floods over member connections (the transport's member set,
//!   `Output::Members`) with per-node duplicate suppression, forwarded
//!   when the node's `Output::Verdict` accepts it.
//! - Disk: see [`disk`]: a write is durable once its commit completes,
//!   outputs after it wait for it, a crash loses what was not committed.
//! - Boots: the keyscript runs `keyward-unlock` attempts of 60 s with a
//!   5-s pause between them, each one an `UnlockClient` built from the
//!   machine's LUKS token; exit 3 (hopeless) leaves the passphrase prompt.
//! - Binding: the product never rebinds by itself. An admin runs
//!   `keyward bind` (a scenario event): status, guardians picked as the
//!   CLI picks them, `CtlRequest::Deposit`, then the token, then
//!   `CtlRequest::Drop` of the old epoch (or of an abandoned one).

mod bind;
pub mod disk;
pub mod machine;
mod net;
mod notes;

use std::collections::{BTreeMap, BTreeSet};

use keyward_core::guardian::{Millis, Policy};
use keyward_core::identity::{BootKey, NodeId, NodeKey};
use keyward_core::node::{CtlId, GossipId, InId, Input, Node, NodeConfig, OutId, Output};
use keyward_core::proto::{Gossip, Request, Response};
use keyward_core::roster::{Member, MeshId, OpBody, Role, Roster, SignedOp, Verified};
use keyward_core::unlock::{self, ClientOptions, UnlockError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::invariants::{self as inv, Checks, Violation};
use crate::queue::Queue;
use crate::scenario::{DAY, HOUR, MIN, SEC};
use disk::Disk;
use machine::{Ctl, Machine, Phase};

/// The world's time 0 on the machines' clocks (Unix ms, mid-2025): the
/// node reads invite expiries and admin-message dates against it.
pub const T0: Millis = 1_750_000_000_000;
/// How long one `keyward-unlock` attempt lasts (the keyscript's
/// `KEYWARD_TIMEOUT`), and the pause before the next (`KEYWARD_RETRY_PAUSE`).
pub const ATTEMPT: Millis = 60 * SEC;
pub const RETRY_PAUSE: Millis = 5 * SEC;
/// The requester of an attacker's request (not a machine).
const ATTACKER: u32 = u32::MAX;
/// keywardd's shutdown: it waits this long for goodbyes to be answered.
pub const GOODBYE_WAIT: Millis = 1500;

#[derive(Clone, Debug, Serialize)]
pub struct WorldConfig {
    pub nodes: usize,
    pub hours: f64,
    pub seed: u64,
    pub policy: Policy,
    pub latency_min: Millis,
    pub latency_max: Millis,
    /// Each machine's clock is off by a uniform amount in +-skew.
    pub skew: Millis,
    /// Shares per owner (`keyward bind --shares`) and T.
    pub guardians: usize,
    pub threshold: usize,
    /// Clean reboots and crashes per node per day.
    pub reboots: f64,
    pub crashes: f64,
    /// Joins and revocations per day, for the whole mesh.
    pub joins: f64,
    pub revocations: f64,
    /// When the admins bind every node (after the mesh connected).
    pub bind_at: Millis,
    /// Rolling partitions: split 10-30 min, heal 20-60 min, again.
    pub partitions: bool,
    /// Per day for the whole mesh: requests with a copied boot key while
    /// its node runs (threat 7), and connections from strangers.
    pub copies: f64,
    pub strangers: f64,
    /// Testing hook: the timeout the invariants assume, if not the
    /// policy's (a wrong assumption must be caught).
    pub oracle_timeout: Option<Millis>,
}

impl WorldConfig {
    pub fn new(nodes: usize, hours: f64, seed: u64) -> WorldConfig {
        let guardians = 5.min(nodes.saturating_sub(1)).max(1);
        WorldConfig {
            nodes,
            hours,
            seed,
            policy: Policy::default(),
            latency_min: 1,
            latency_max: 60,
            skew: 30 * SEC,
            guardians,
            threshold: 3.min(guardians),
            reboots: 1.0,
            crashes: 0.5,
            joins: (nodes as f64 * 0.02).max(2.0),
            revocations: (nodes as f64 * 0.01).max(2.0),
            bind_at: 30 * SEC,
            partitions: false,
            copies: 12.0,
            strangers: 12.0,
            oracle_timeout: None,
        }
    }

    pub fn end(&self) -> Millis {
        (self.hours * HOUR as f64) as Millis
    }

    /// keywardd's libp2p ping interval (node/src/daemon.rs).
    pub fn ping_period(&self) -> Millis {
        let p = &self.policy;
        (p.up_window / 3).clamp(500, p.interval.max(500))
    }
}

/// What the world does at a time, besides messages and timers.
#[derive(Clone, Debug)]
pub enum Act {
    Reboot,
    Crash,
    /// A running member invites a new machine, which joins (and is bound
    /// by an admin a little later).
    Join,
    /// An admin on the founder revokes a member; owners it guarded are
    /// rebound by an admin.
    Revoke,
    /// An admin runs `keyward bind` (or `rebind`) on this machine.
    Bind(u32),
    /// An admin runs `keyward lockdown` / `lift` on this machine.
    Lockdown(u32),
    Lift(u32),
    /// An admin runs `keyward approve <owner>` on machine `admin`.
    Approve {
        admin: u32,
        owner: u32,
    },
    /// An admin types the passphrase at machine's prompt.
    Passphrase(u32),
    /// Power goes off at this machine (no goodbye), back after `down`.
    CrashNode(u32, Millis),
    /// A running server is seized: off longer than timeout (10 min to
    /// 3 h more), then the thief boots it on the same network.
    Seize(u32),
    /// The network splits (a minority or half the machines on one side);
    /// connections across close, dials across fail.
    Partition,
    Heal,
    /// Someone with a copy of a running node's boot key asks its
    /// guardians for shares.
    Copy,
    /// A stranger (no member, no member's boot key) connects to a
    /// guardian: the transport's gate refuses it.
    Stranger,
}

/// A message on a connection.
enum Wire {
    Req { rid: u64, from: u32, req: Request },
    Resp { rid: u64, response: Response },
    Gossip { msg: u64, via: u32 },
}

enum Ev {
    Deliver {
        conn: u64,
        to: u32,
        wire: Box<Wire>,
    },
    NodeTimer {
        m: u32,
        inc: u32,
        at: Millis,
    },
    ClientTimer {
        m: u32,
        inc: u32,
        at: Millis,
    },
    Committed {
        m: u32,
        inc: u32,
    },
    Verified {
        m: u32,
        inc: u32,
        ops: Vec<Verified>,
    },
    Connect {
        from: u32,
        to: u32,
        inc_from: u32,
        inc_to: u32,
    },
    DialFailed {
        from: u32,
        to: u32,
        inc: u32,
    },
    PowerOn {
        m: u32,
    },
    Initramfs {
        m: u32,
        inc: u32,
    },
    Attempt {
        m: u32,
        inc: u32,
    },
    DaemonUp {
        m: u32,
        inc: u32,
    },
    ShutdownDone {
        m: u32,
        inc: u32,
    },
    Act(Act),
}

/// Who waits on a request's answer.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Node(OutId),
    /// The unlock client, asking this guardian.
    Client(NodeId),
}

struct PendingReq {
    from: u32,
    to: u32,
    conn: u64,
    reply: Reply,
}

/// What the world counts; "messages" are what keywardd really sends.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    /// Connection attempts (each a TCP + noise + yamux handshake).
    pub dials: u64,
    pub dials_failed: u64,
    pub connections: u64,
    /// libp2p pings and their answers, both ways on every connection.
    pub pings: u64,
    pub requests: u64,
    pub responses: u64,
    /// Gossip transmissions (every copy on every connection).
    pub gossip: u64,
    /// Messages lost because their connection closed first.
    pub lost: u64,
}

impl Traffic {
    pub fn messages(&self) -> u64 {
        self.dials + self.pings + self.requests + self.responses + self.gossip
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WorldStats {
    pub boots: u64,
    pub unlocked: u64,
    pub unlock_ms: Vec<Millis>,
    pub hopeless: u64,
    pub attempts: u64,
    pub passphrase: u64,
    pub reboots: u64,
    pub crashes: u64,
    pub seized: u64,
    pub partitions: u64,
    pub joins: u64,
    pub revocations: u64,
    pub copy_attacks: u64,
    pub copied_released: u64,
    pub copied_refused: BTreeMap<String, u64>,
    pub strangers: u64,
    /// Control requests (invite, join, revoke) that failed.
    pub ctl_failed: u64,
    pub binds: u64,
    pub binds_failed: u64,
    pub releases: u64,
    pub refusals: BTreeMap<String, u64>,
    pub notes: BTreeMap<&'static str, u64>,
    /// Admin messages refused as dated too far in the future.
    pub admin_from_future: u64,
    pub writes_lost: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorldSummary {
    pub nodes: usize,
    pub hours: f64,
    pub seed: u64,
    pub events: u64,
    pub trace_hash: String,
    pub boots: u64,
    pub unlocked: u64,
    pub unlock_median_ms: Millis,
    pub unlock_p99_ms: Millis,
    pub hopeless: u64,
    pub unlock_attempts: u64,
    pub passphrase: u64,
    pub reboots: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub joins: u64,
    pub revocations: u64,
    pub copy_attacks: u64,
    pub copied_released: u64,
    pub copied_refused: BTreeMap<String, u64>,
    pub strangers: u64,
    pub ctl_failed: u64,
    pub binds: u64,
    pub binds_failed: u64,
    pub bound_at_end: usize,
    pub locked_at_end: usize,
    pub seized: u64,
    /// Seized servers still locked at the end.
    pub seized_locked_at_end: usize,
    pub releases: u64,
    pub refusals: BTreeMap<String, u64>,
    pub notes: BTreeMap<&'static str, u64>,
    pub admin_from_future: u64,
    pub writes_lost: u64,
    pub disk_commits: u64,
    pub traffic: Traffic,
    pub messages_per_node_hour: f64,
    /// Of which: pings, dials, requests + responses, gossip.
    pub per_node_hour: BTreeMap<&'static str, f64>,
    pub invariant_checks: BTreeMap<String, u64>,
}

pub struct World {
    pub cfg: WorldConfig,
    rng: ChaCha8Rng,
    q: Queue<Ev>,
    pub machines: Vec<Machine>,
    ids: BTreeMap<NodeId, u32>,
    boots: BTreeMap<NodeId, u32>,
    pub mesh: MeshId,
    net: net::Net,
    reqs: BTreeMap<u64, PendingReq>,
    next_id: u64,
    /// Gossip messages by number: the author's machine and the message.
    gossip: Vec<(u32, Gossip)>,
    pub stats: WorldStats,
    pub checks: Checks,
    /// What each guardian was told (liveness, approvals), recorded as the
    /// world delivers it: `release.alive-within-timeout` judges every
    /// release against it.
    oracle: crate::oracle::Oracle,
    event: u64,
    hash: u64,
}

impl World {
    /// A founded mesh of `cfg.nodes` guardians, every machine running
    /// keywardd with the roster on its disk; the admins bind at
    /// `cfg.bind_at`.
    pub fn new(cfg: WorldConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let n = cfg.nodes.max(2);
        let mesh = MeshId(rng.gen());
        let keys: Vec<(NodeKey, BootKey)> = (0..n)
            .map(|_| (NodeKey::from_seed(rng.gen()), BootKey::from_seed(rng.gen())))
            .collect();
        let members: Vec<Member> = keys
            .iter()
            .enumerate()
            .map(|(i, (k, b))| Member {
                id: k.id(),
                boot: b.public(),
                name: format!("n{i}"),
                role: Role::Guardian,
            })
            .collect();
        let member = |i: usize| members[i].clone();
        let (_, found) = Roster::found("sim", mesh, member(0), &keys[0].0);
        let mut ops = vec![found];
        for i in 1..n {
            ops.push(SignedOp::sign(
                OpBody::Admit {
                    mesh,
                    member: member(i),
                    claim: member(i).claim(mesh, &keys[i].0),
                    invite: Some(serde_bytes::ByteArray::new(rng.gen())),
                    by: keys[0].0.id(),
                    at: T0,
                },
                &keys[0].0,
            ));
        }
        let disk = Disk::with_roster(&ops);
        let mut w = World {
            net: net::Net::default(),
            q: Queue::default(),
            machines: Vec::with_capacity(n),
            ids: BTreeMap::new(),
            boots: BTreeMap::new(),
            mesh,
            reqs: BTreeMap::new(),
            next_id: 0,
            gossip: Vec::new(),
            stats: WorldStats::default(),
            checks: Checks::default(),
            oracle: crate::oracle::Oracle::default(),
            event: 0,
            hash: 0xcbf2_9ce4_8422_2325,
            rng,
            cfg,
        };
        for (i, (key, boot)) in keys.into_iter().enumerate() {
            let me = member(i);
            let skew = w.rng.gen_range(-(w.cfg.skew as i64)..=w.cfg.skew as i64);
            let m = Machine::new(key, boot, me, skew, disk.clone());
            w.ids.insert(m.id, i as u32);
            w.boots.insert(m.boot_id, i as u32);
            w.machines.push(m);
            w.oracle.add_node();
        }
        for i in 0..n as u32 {
            // Daemons start within the first seconds.
            let d = w.rng.gen_range(0..5 * SEC);
            w.machines[i as usize].phase = Phase::Starting;
            let inc = w.machines[i as usize].inc;
            w.q.at(d, Ev::DaemonUp { m: i, inc });
            let b = w.cfg.bind_at + w.rng.gen_range(0..30 * SEC);
            w.q.at(b, Ev::Act(Act::Bind(i)));
        }
        w.next_churn(Act::Reboot);
        w.next_churn(Act::Crash);
        w.next_churn(Act::Join);
        w.next_churn(Act::Revoke);
        w.next_churn(Act::Copy);
        w.next_churn(Act::Stranger);
        if w.cfg.partitions {
            let d = w.uniform(10 * MIN, 30 * MIN);
            w.q.at(d, Ev::Act(Act::Partition));
        }
        w
    }

    /// Schedules an event at world time `at`.
    pub fn at(&mut self, at: Millis, act: Act) {
        self.q.at(at, Ev::Act(act));
    }

    pub fn now(&self) -> Millis {
        self.q.now()
    }

    /// Machine `m`'s clock at world time `t`.
    pub fn local_at(&self, m: u32, t: Millis) -> Millis {
        (T0 as i64 + t as i64 + self.machines[m as usize].skew).max(0) as Millis
    }

    fn local(&self, m: u32) -> Millis {
        self.local_at(m, self.now())
    }

    /// World time of machine `m`'s clock reading `local` (never before now).
    fn world_of(&self, m: u32, local: Millis) -> Millis {
        let w = local as i64 - T0 as i64 - self.machines[m as usize].skew;
        (w.max(0) as Millis).max(self.now())
    }

    fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn latency(&mut self) -> Millis {
        let (lo, hi) = (self.cfg.latency_min, self.cfg.latency_max);
        self.rng.gen_range(lo..=hi.max(lo))
    }

    fn uniform(&mut self, lo: Millis, hi: Millis) -> Millis {
        self.rng.gen_range(lo..=hi.max(lo))
    }

    /// Folds one record into the trace hash (FNV-1a).
    fn rec(&mut self, kind: u64, a: u64, b: u64) {
        for v in [self.event, self.now(), kind, a, b] {
            for byte in v.to_le_bytes() {
                self.hash ^= byte as u64;
                self.hash = self.hash.wrapping_mul(0x100_0000_01b3);
            }
        }
    }

    fn idx(&self, id: &NodeId) -> Option<u32> {
        self.ids.get(id).or_else(|| self.boots.get(id)).copied()
    }

    /// Runs to the end, or to the first failed invariant.
    pub fn run(mut self) -> Result<WorldSummary, Box<Violation>> {
        let end = self.cfg.end();
        while let Some((t, ev)) = self.q.pop() {
            if t > end {
                break;
            }
            self.event += 1;
            self.dispatch(ev);
            if let Some(mut v) = self.checks.failed.take() {
                v.event = self.event;
                v.at = t;
                return Err(Box::new(v));
            }
        }
        Ok(self.summary())
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { conn, to, wire } => self.deliver(conn, to, *wire),
            Ev::NodeTimer { m, inc, at } => {
                let mm = &mut self.machines[m as usize];
                if mm.inc == inc && mm.timer_at == Some(at) {
                    mm.timer_at = None;
                    self.rec(1, m as u64, 0);
                    let now = self.local(m);
                    if let Some(n) = self.machines[m as usize].node.as_mut() {
                        n.handle_timeout(now);
                    }
                    self.drain(m);
                }
            }
            Ev::ClientTimer { m, inc, at } => {
                let mm = &mut self.machines[m as usize];
                if mm.inc == inc && mm.client_at == Some(at) {
                    mm.client_at = None;
                    let now = self.local(m);
                    if let Some(c) = self.machines[m as usize].client.as_mut() {
                        c.handle_timeout(now);
                    }
                    self.drain_client(m);
                }
            }
            Ev::Committed { m, inc } => self.committed(m, inc),
            Ev::Verified { m, inc, ops } => {
                if self.machines[m as usize].inc == inc {
                    self.input(m, Input::Verified(ops));
                }
            }
            Ev::Connect {
                from,
                to,
                inc_from,
                inc_to,
            } => self.connect(from, to, inc_from, inc_to),
            Ev::DialFailed { from, to, inc } => {
                if self.machines[from as usize].inc == inc {
                    self.dial_failed(from, to, "dial failed: connection refused or timed out");
                }
            }
            Ev::PowerOn { m } => self.power_on(m),
            Ev::Initramfs { m, inc } => {
                if self.machines[m as usize].inc == inc {
                    self.initramfs(m);
                }
            }
            Ev::Attempt { m, inc } => {
                if self.machines[m as usize].inc == inc {
                    self.attempt(m);
                }
            }
            Ev::DaemonUp { m, inc } => {
                if self.machines[m as usize].inc == inc {
                    self.daemon_up(m);
                }
            }
            Ev::ShutdownDone { m, inc } => {
                let mm = &self.machines[m as usize];
                if mm.inc == inc && mm.leaving {
                    self.finish_shutdown(m);
                }
            }
            Ev::Act(a) => self.act(a),
        }
    }

    // ---- the node's driver ----

    /// One input to machine m's node, then everything it asks for.
    fn input(&mut self, m: u32, i: Input) {
        let now = self.local(m);
        let Some(n) = self.machines[m as usize].node.as_mut() else {
            return;
        };
        n.handle(now, i);
        self.drain(m);
    }

    /// Carries out the node's outputs in order; stops at a write until
    /// its commit completes.
    fn drain(&mut self, m: u32) {
        loop {
            let mm = &mut self.machines[m as usize];
            if mm.committing.is_some() {
                break;
            }
            let Some(o) = mm.node.as_mut().and_then(|n| n.poll_output()) else {
                break;
            };
            self.output(m, o);
        }
        let mm = &self.machines[m as usize];
        let Some(node) = &mm.node else { return };
        if mm.leaving && !node.saying_goodbye() {
            let inc = mm.inc;
            self.q.after(0, Ev::ShutdownDone { m, inc });
        }
        let at = self.world_of(m, node.poll_timeout());
        let mm = &mut self.machines[m as usize];
        if mm.timer_at.is_none_or(|t| at < t) {
            mm.timer_at = Some(at);
            let inc = mm.inc;
            self.q.at(at, Ev::NodeTimer { m, inc, at });
        }
    }

    fn output(&mut self, m: u32, o: Output) {
        match o {
            Output::Dial(n) => {
                if let Some(t) = self.ids.get(&n).copied() {
                    self.dial(m, t);
                }
            }
            Output::DialBootstrap | Output::Pin { .. } | Output::Housekeeping => {}
            Output::Disconnect(n) => {
                if let Some(t) = self.idx(&n) {
                    self.close(m, t);
                }
            }
            Output::Send { id, to, req } => match self.ids.get(&to).copied() {
                Some(t) => self.send_req(m, t, req, Reply::Node(id)),
                None => self.input(
                    m,
                    Input::Response {
                        id,
                        from: to,
                        result: Err("no address known".into()),
                    },
                ),
            },
            Output::Respond { id, response } => self.respond(m, id, response),
            Output::Publish { msg, .. } => self.publish(m, msg),
            Output::Verdict { id, accept } => self.verdict(m, id, accept),
            Output::Subscribe(_) => self.machines[m as usize].subscribed = true,
            Output::Members { members, .. } => {
                self.machines[m as usize].members = members.into_iter().collect();
            }
            Output::Verify(ops) => {
                // Verified off the event loop in keywardd; here at once,
                // handed back a millisecond later.
                let vs: Vec<Verified> = ops.into_iter().filter_map(|o| o.verify().ok()).collect();
                let inc = self.machines[m as usize].inc;
                self.q.after(1, Ev::Verified { m, inc, ops: vs });
            }
            Output::Write { id, write } => {
                let d = self.uniform(1, 4);
                let mm = &mut self.machines[m as usize];
                mm.committing = Some((id, write));
                let inc = mm.inc;
                self.q.after(d, Ev::Committed { m, inc });
            }
            Output::Reply { id, response } => self.on_reply(m, id, response),
            Output::Note(n) => self.note(m, n),
        }
    }

    fn committed(&mut self, m: u32, inc: u32) {
        let mm = &mut self.machines[m as usize];
        if mm.inc != inc {
            return;
        }
        let Some((id, write)) = mm.committing.take() else {
            return;
        };
        mm.disk.apply(write);
        match id {
            Some(id) => self.input(m, Input::Written { id, result: Ok(()) }),
            None => self.drain(m),
        }
    }

    /// The last ping answer on the m-o connection before now, fed to m's
    /// node (see the module doc).
    fn feed_pings(&mut self, m: u32, o: u32) {
        let period = self.cfg.ping_period();
        let now = self.now();
        let Some(c) = self.net.conn_mut(m, o) else {
            return;
        };
        if !c.daemons {
            return;
        }
        let tick = c.opened + (now - c.opened) / period * period;
        let side = c.side(m);
        if tick <= c.opened || tick <= c.fed[side] {
            return;
        }
        c.fed[side] = tick;
        let peer = c.ids[1 - side];
        let t = self.local_at(m, tick);
        if let Some(n) = self.machines[m as usize].node.as_mut() {
            n.handle(t, Input::Pinged { peer });
            self.told_alive(m, o, t);
            self.drain(m);
        }
    }

    fn feed_all_pings(&mut self, m: u32) {
        for o in self.net.peers(m) {
            self.feed_pings(m, o);
        }
    }

    /// The oracle's record: guardian g's node was shown o alive at its
    /// time t (a ping answer or a connection), unless o said goodbye on
    /// this connection, or is no active member there.
    fn told_alive(&mut self, g: u32, o: u32, t: Millis) {
        let oid = self.machines[o as usize].id;
        let bye = self.net.conn(g, o).is_some_and(|c| c.bye[c.side(o)]);
        let active = self.machines[g as usize]
            .node
            .as_ref()
            .is_some_and(|n| n.roster().is_active(&oid));
        if active && !bye {
            self.oracle.alive(g, o, t, t);
        }
    }

    /// The oracle's record of an approval delivered to g (by gossip or a
    /// sync answer), at the time its issuer signed.
    fn told_admin(&mut self, g: u32, a: &keyward_core::proto::AdminMsg) {
        if let keyward_core::proto::AdminKind::Approve { owner } = &a.body.kind {
            if let Some(o) = self.ids.get(owner).copied() {
                self.oracle.approve(g, o, a.body.by, a.body.at);
            }
        }
    }

    // ---- connections and messages ----

    fn reachable(&self, from: u32, to: u32) -> bool {
        self.net.same_side(from, to) && self.daemon_listens(to)
    }

    fn daemon_listens(&self, to: u32) -> bool {
        self.machines[to as usize].running() && !self.machines[to as usize].leaving
    }

    /// Opens a connection from `from` to `to` unless one is up or coming.
    fn dial(&mut self, from: u32, to: u32) {
        if from == to || self.net.conn(from, to).is_some() || !self.net.dialing.insert((from, to)) {
            return;
        }
        self.net.traffic.dials += 1;
        self.rec(2, from as u64, to as u64);
        let lat = self.latency();
        let inc_from = self.machines[from as usize].inc;
        if self.reachable(from, to) {
            let inc_to = self.machines[to as usize].inc;
            // TCP, noise and yamux: two round trips.
            self.q.after(
                4 * lat,
                Ev::Connect {
                    from,
                    to,
                    inc_from,
                    inc_to,
                },
            );
        } else {
            // Refused at once by a running machine; a machine that is off
            // lets the dial time out.
            let d = if self.machines[to as usize].phase == Phase::Down
                || !self.net.same_side(from, to)
            {
                10 * SEC
            } else {
                2 * lat
            };
            self.q.after(
                d,
                Ev::DialFailed {
                    from,
                    to,
                    inc: inc_from,
                },
            );
        }
    }

    fn connect(&mut self, from: u32, to: u32, inc_from: u32, inc_to: u32) {
        if self.machines[from as usize].inc != inc_from {
            self.net.dialing.remove(&(from, to));
            return;
        }
        if self.machines[to as usize].inc != inc_to || !self.reachable(from, to) {
            return self.dial_failed(from, to, "dial failed: the peer went away");
        }
        self.net.dialing.remove(&(from, to));
        if self.net.conn(from, to).is_none() {
            let (Some(a), Some(b)) = (
                self.machines[from as usize].endpoint(),
                self.machines[to as usize].endpoint(),
            ) else {
                return;
            };
            let daemons = self.machines[from as usize].running();
            let id = self.fresh();
            self.net.open(id, from, to, a, b, self.now(), daemons);
            self.net.traffic.connections += 1;
            self.rec(3, from as u64, to as u64);
            self.connected_at(from, b, Some(to));
            self.connected_at(to, a, None);
        }
        // Requests that waited for this connection, both ways.
        for (x, y) in [(from, to), (to, from)] {
            for (req, reply) in self.net.waiting.remove(&(x, y)).unwrap_or_default() {
                self.transmit(x, y, req, reply);
            }
        }
    }

    /// Tells machine m a connection to `peer` is up.
    fn connected_at(&mut self, m: u32, peer: NodeId, to: Option<u32>) {
        match self.machines[m as usize].phase {
            Phase::Running => {
                if let Some(o) = to.or_else(|| self.ids.get(&peer).copied()) {
                    if self.machines[o as usize].id == peer {
                        let t = self.local(m);
                        self.told_alive(m, o, t);
                    }
                }
                self.input(m, Input::Connected { peer })
            }
            Phase::Unlocking => {
                let now = self.local(m);
                if let Some(c) = self.machines[m as usize].client.as_mut() {
                    c.handle(
                        now,
                        unlock::Input::Connected {
                            peer: Some(peer),
                            addr: format!("/sim/{}", to.unwrap_or(u32::MAX)),
                            probe: None,
                        },
                    );
                }
                self.drain_client(m);
            }
            _ => {}
        }
    }

    fn dial_failed(&mut self, from: u32, to: u32, why: &str) {
        self.net.dialing.remove(&(from, to));
        self.net.traffic.dials_failed += 1;
        let to_id = self.machines[to as usize].id;
        let waiting = self.net.waiting.remove(&(from, to)).unwrap_or_default();
        if self.machines[from as usize].phase == Phase::Unlocking && !waiting.is_empty() {
            let now = self.local(from);
            if let Some(c) = self.machines[from as usize].client.as_mut() {
                c.handle(
                    now,
                    unlock::Input::DialFailed {
                        peer: Some(to_id),
                        probe: None,
                        error: format!("/sim/{to}: {why}"),
                    },
                );
            }
        }
        for (_, reply) in waiting {
            self.fail(from, to_id, reply, why.to_string(), true);
        }
    }

    /// A request of `from` ends without an answer.
    fn fail(&mut self, from: u32, to: NodeId, reply: Reply, why: String, dial: bool) {
        match reply {
            Reply::Node(id) => self.input(
                from,
                Input::Response {
                    id,
                    from: to,
                    result: Err(why),
                },
            ),
            Reply::Client(guardian) => {
                let now = self.local(from);
                if let Some(c) = self.machines[from as usize].client.as_mut() {
                    let failure = if dial {
                        unlock::Failure::Dial
                    } else {
                        unlock::Failure::Other(why)
                    };
                    c.handle(now, unlock::Input::RequestFailed { guardian, failure });
                }
                self.drain_client(from);
            }
        }
    }

    /// Sends a request, dialling first if there is no connection.
    fn send_req(&mut self, from: u32, to: u32, req: Request, reply: Reply) {
        let want = self.machines[to as usize].id;
        if let Some(c) = self.net.conn(from, to) {
            if c.ids[c.side(to)] == want {
                return self.transmit(from, to, req, reply);
            }
            // Connected to that machine's initramfs (its boot key), not
            // to its keywardd: a dial to the node key finds nobody.
            let why = "dial failed: the peer's node key does not answer".to_string();
            return self.fail(from, want, reply, why, true);
        }
        self.net
            .waiting
            .entry((from, to))
            .or_default()
            .push((req, reply));
        self.dial(from, to);
    }

    fn transmit(&mut self, from: u32, to: u32, req: Request, reply: Reply) {
        let Some(conn) = self.net.conn(from, to).map(|c| c.id) else {
            let to_id = self.machines[to as usize].id;
            return self.fail(from, to_id, reply, "connection closed".into(), false);
        };
        self.net.traffic.requests += 1;
        let rid = self.fresh();
        self.rec(4, from as u64, to as u64);
        self.reqs.insert(
            rid,
            PendingReq {
                from,
                to,
                conn,
                reply,
            },
        );
        let lat = self.latency();
        self.q.after(
            lat,
            Ev::Deliver {
                conn,
                to,
                wire: Box::new(Wire::Req { rid, from, req }),
            },
        );
    }

    fn respond(&mut self, m: u32, id: InId, response: Response) {
        let Some(p) = self.reqs.get(&id.0) else {
            return;
        };
        if p.from == ATTACKER {
            self.reqs.remove(&id.0);
            self.net.traffic.responses += 1;
            match &response {
                Response::Share(_) => {
                    self.stats.copied_released += 1;
                    self.check_response(m, ATTACKER, &response);
                }
                Response::ShareRefused(r) => {
                    *self
                        .stats
                        .copied_refused
                        .entry(r.rule().to_string())
                        .or_default() += 1;
                }
                _ => {}
            }
            return;
        }
        let (conn, to) = (p.conn, p.from);
        if !self.net.is_open(conn) {
            return;
        }
        self.check_response(m, to, &response);
        self.net.traffic.responses += 1;
        self.rec(5, m as u64, to as u64);
        let lat = self.latency();
        self.q.after(
            lat,
            Ev::Deliver {
                conn,
                to,
                wire: Box::new(Wire::Resp {
                    rid: id.0,
                    response,
                }),
            },
        );
    }

    fn deliver(&mut self, conn: u64, to: u32, wire: Wire) {
        if !self.net.is_open(conn) {
            self.net.traffic.lost += 1;
            return;
        }
        match wire {
            Wire::Req { rid, from, req } => {
                if !self.machines[to as usize].running() {
                    return;
                }
                self.feed_pings(to, from);
                if let Request::Share(sr) = &req {
                    if let Some(o) = self.ids.get(&sr.owner).copied() {
                        self.feed_pings(to, o);
                    }
                }
                let Some(from_id) = self.net.conn(from, to).map(|c| c.ids[c.side(from)]) else {
                    return;
                };
                if matches!(req, Request::GoingDown) {
                    if let Some(c) = self.net.conn_mut(from, to) {
                        let side = c.side(from);
                        c.bye[side] = true;
                    }
                }
                self.input(
                    to,
                    Input::Request {
                        id: InId(rid),
                        from: from_id,
                        req,
                    },
                );
            }
            Wire::Resp { rid, response } => {
                let Some(p) = self.reqs.remove(&rid) else {
                    return;
                };
                let other = p.to;
                let other_id = match self.net.conn(to, other) {
                    Some(c) => c.ids[c.side(other)],
                    None => return,
                };
                match p.reply {
                    Reply::Node(id) => {
                        self.feed_pings(to, other);
                        if let Response::Roster { admin, .. } = &response {
                            for a in admin {
                                self.told_admin(to, a);
                            }
                        }
                        self.input(
                            to,
                            Input::Response {
                                id,
                                from: other_id,
                                result: Ok(response),
                            },
                        );
                    }
                    Reply::Client(guardian) => {
                        let now = self.local(to);
                        if let Some(c) = self.machines[to as usize].client.as_mut() {
                            c.handle(now, unlock::Input::Response { guardian, response });
                        }
                        self.drain_client(to);
                    }
                }
            }
            Wire::Gossip { msg, via } => self.gossip_in(to, via, msg),
        }
    }

    /// Closes the connection between a and b, if any: both ends hear of
    /// it, requests on it fail.
    fn close(&mut self, a: u32, b: u32) {
        let period = self.cfg.ping_period();
        let now = self.now();
        // The last pings before the close reach both ends first.
        self.feed_pings(a, b);
        self.feed_pings(b, a);
        let Some(c) = self.net.remove(a, b, now, period) else {
            return;
        };
        self.rec(6, a as u64, b as u64);
        let failed: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, p)| p.conn == c.id)
            .map(|(r, _)| *r)
            .collect();
        for r in failed {
            let p = self.reqs.remove(&r).expect("listed");
            let to_id = c.ids[c.side(p.to)];
            self.fail(p.from, to_id, p.reply, "connection closed".into(), false);
        }
        for (x, y) in [(a, b), (b, a)] {
            let peer = c.ids[c.side(y)];
            if self.machines[x as usize].running() {
                self.input(x, Input::Closed { peer });
            }
        }
    }

    fn close_all(&mut self, m: u32) {
        for o in self.net.peers(m) {
            self.close(m, o);
        }
        // Dials out of here die with it; requests waiting on them too.
        let mine: Vec<(u32, u32)> = self
            .net
            .waiting
            .keys()
            .filter(|(x, y)| *x == m || *y == m)
            .copied()
            .collect();
        for (x, y) in mine {
            let v = self.net.waiting.remove(&(x, y)).unwrap_or_default();
            if x != m {
                let to_id = self.machines[y as usize].id;
                for (_, reply) in v {
                    self.fail(
                        x,
                        to_id,
                        reply,
                        "dial failed: the peer went away".into(),
                        true,
                    );
                }
            }
        }
        self.net.dialing.retain(|(x, _)| *x != m);
    }

    // ---- gossip ----

    fn publish(&mut self, m: u32, msg: Gossip) {
        let id = self.gossip.len() as u64;
        self.gossip.push((m, msg));
        self.machines[m as usize].seen.insert(id);
        self.flood(m, id, None);
    }

    /// Sends gossip message `id` from m to its member connections, except
    /// where it came from and its author.
    fn flood(&mut self, m: u32, id: u64, via: Option<u32>) {
        let author = self.gossip[id as usize].0;
        for p in self.net.peers(m) {
            if Some(p) == via || p == author {
                continue;
            }
            let Some(c) = self.net.conn(m, p) else {
                continue;
            };
            if !c.daemons
                || !self.machines[m as usize]
                    .members
                    .contains(&c.ids[c.side(p)])
            {
                continue;
            }
            let conn = c.id;
            self.net.traffic.gossip += 1;
            let lat = self.latency();
            self.q.after(
                lat,
                Ev::Deliver {
                    conn,
                    to: p,
                    wire: Box::new(Wire::Gossip { msg: id, via: m }),
                },
            );
        }
    }

    fn gossip_in(&mut self, to: u32, via: u32, msg: u64) {
        let mm = &self.machines[to as usize];
        if !mm.running() || !mm.subscribed || !mm.members.contains(&self.machines[via as usize].id)
        {
            return;
        }
        if !self.machines[to as usize].seen.insert(msg) {
            return;
        }
        let (author, g) = self.gossip[msg as usize].clone();
        if let Gossip::Admin(a) = &g {
            self.told_admin(to, a);
        }
        if let Gossip::Admin(a) = &g {
            if let keyward_core::proto::AdminKind::Approve { owner }
            | keyward_core::proto::AdminKind::Deny { owner } = &a.body.kind
            {
                if let Some(o) = self.ids.get(owner).copied() {
                    self.feed_pings(to, o);
                }
            }
        }
        self.feed_pings(to, via);
        let gid = self.fresh();
        self.machines[to as usize]
            .verdicts
            .insert(gid, (msg, author, via));
        let (via_id, author_id) = (
            self.machines[via as usize].id,
            self.machines[author as usize].id,
        );
        self.input(
            to,
            Input::Gossip {
                id: GossipId(gid),
                via: via_id,
                author: Some(author_id),
                msg: Ok(g),
            },
        );
    }

    fn verdict(&mut self, m: u32, id: GossipId, accept: bool) {
        let Some((msg, _, via)) = self.machines[m as usize].verdicts.remove(&id.0) else {
            return;
        };
        if accept {
            self.flood(m, msg, Some(via));
        }
    }

    // ---- machines' lives ----

    fn daemon_up(&mut self, m: u32) {
        let now = self.local(m);
        let seed: [u8; 32] = self.rng.gen();
        let mm = &mut self.machines[m as usize];
        let cfg = NodeConfig {
            key: NodeKey::from_secret(&mm.key.secret()),
            me: mm.me.clone(),
            policy: self.cfg.policy,
            clock_floor: T0 - DAY,
            bootstrap: false,
            seed,
        };
        let node = Node::new(cfg, mm.disk.stored(), now);
        mm.node = Some(node);
        mm.phase = Phase::Running;
        mm.inc += 1;
        mm.running_since = self.q.now();
        mm.asking_since = None;
        self.rec(7, m as u64, 0);
        self.input(m, Input::Listening(vec![format!("/sim/{m}")]));
    }

    /// Power off: nothing is said, uncommitted writes are lost.
    fn power_off(&mut self, m: u32) {
        self.close_all(m);
        let now = self.now();
        let mm = &mut self.machines[m as usize];
        if mm.committing.take().is_some() {
            self.stats.writes_lost += 1;
        }
        mm.node = None;
        mm.client = None;
        mm.phase = Phase::Down;
        mm.inc += 1;
        mm.timer_at = None;
        mm.client_at = None;
        mm.members.clear();
        mm.subscribed = false;
        mm.verdicts.clear();
        mm.ctl.clear();
        mm.leaving = false;
        mm.down_since = now;
        self.rec(8, m as u64, 0);
    }

    fn crash(&mut self, m: u32, down: Option<Millis>) {
        if self.machines[m as usize].phase == Phase::Down {
            return;
        }
        self.power_off(m);
        if let Some(d) = down {
            self.q.after(d, Ev::PowerOn { m });
        }
    }

    /// A clean reboot: keywardd says goodbye, waits for the answers (at
    /// most `GOODBYE_WAIT`), writes what changed, exits.
    fn shutdown(&mut self, m: u32, down: Millis) {
        if !self.machines[m as usize].running() {
            return;
        }
        let mm = &mut self.machines[m as usize];
        mm.leaving = true;
        if let Some(n) = mm.node.as_mut() {
            n.goodbye();
        }
        let inc = mm.inc;
        self.q.after(GOODBYE_WAIT, Ev::ShutdownDone { m, inc });
        self.q.after(GOODBYE_WAIT + down, Ev::PowerOn { m });
        self.drain(m);
    }

    fn finish_shutdown(&mut self, m: u32) {
        let now = self.local(m);
        let mm = &mut self.machines[m as usize];
        mm.leaving = false;
        if let Some((_, w)) = mm.committing.take() {
            mm.disk.apply(w);
        }
        if let Some(n) = mm.node.as_mut() {
            n.persist();
            // The store is flushed before exit: every write lands.
            while let Some(o) = n.poll_output() {
                if let Output::Write { write, .. } = o {
                    mm.disk.apply(write);
                }
            }
            let _ = now;
        }
        self.power_off(m);
    }

    fn power_on(&mut self, m: u32) {
        let mm = &mut self.machines[m as usize];
        if mm.phase != Phase::Down {
            return;
        }
        mm.phase = Phase::Booting;
        mm.inc += 1;
        let inc = mm.inc;
        self.rec(9, m as u64, 0);
        let d = self.uniform(15 * SEC, 45 * SEC);
        self.q.after(d, Ev::Initramfs { m, inc });
    }

    fn initramfs(&mut self, m: u32) {
        self.stats.boots += 1;
        let now = self.now();
        let mm = &mut self.machines[m as usize];
        mm.asking_since = Some(now);
        mm.attempts = 0;
        if mm.token.is_none() {
            mm.phase = Phase::Prompt;
            mm.inc += 1;
            return;
        }
        mm.phase = Phase::Unlocking;
        mm.inc += 1;
        self.attempt(m);
    }

    /// One `keyward-unlock` run, as the keyscript starts it.
    fn attempt(&mut self, m: u32) {
        let Some(plan) = self.machines[m as usize].plan() else {
            return;
        };
        self.stats.attempts += 1;
        let seed: [u8; 32] = self.rng.gen();
        let now = self.local(m);
        let mm = &mut self.machines[m as usize];
        mm.attempts += 1;
        let opts = ClientOptions {
            timeout: ATTEMPT,
            verbose: false,
        };
        match unlock::UnlockClient::new(plan, opts, mm.boot_key.clone(), seed, now) {
            Ok(c) => mm.client = Some(c),
            Err(_) => {
                mm.phase = Phase::Prompt;
                mm.inc += 1;
                return;
            }
        }
        let attempts = mm.attempts as u64;
        self.rec(10, m as u64, attempts);
        self.drain_client(m);
    }

    fn drain_client(&mut self, m: u32) {
        loop {
            let Some(o) = self.machines[m as usize]
                .client
                .as_mut()
                .and_then(|c| c.poll_output())
            else {
                break;
            };
            match o {
                unlock::Output::Send {
                    guardian, request, ..
                } => match self.ids.get(&guardian).copied() {
                    Some(g) => self.send_req(m, g, *request, Reply::Client(guardian)),
                    None => self.fail(m, guardian, Reply::Client(guardian), "unknown".into(), true),
                },
                unlock::Output::Probe { .. } | unlock::Output::Print(_) => {}
                unlock::Output::Done(r) => return self.unlock_done(m, r),
            }
        }
        let mm = &self.machines[m as usize];
        let Some(t) = mm.client.as_ref().and_then(|c| c.poll_timeout()) else {
            return;
        };
        let at = self.world_of(m, t);
        let mm = &mut self.machines[m as usize];
        if mm.client_at.is_none_or(|x| at < x) {
            mm.client_at = Some(at);
            let inc = mm.inc;
            self.q.at(at, Ev::ClientTimer { m, inc, at });
        }
    }

    fn unlock_done(&mut self, m: u32, r: Result<keyward_core::shares::DiskSecret, UnlockError>) {
        let mm = &mut self.machines[m as usize];
        mm.client = None;
        mm.client_at = None;
        // The client exits: its connections close.
        self.close_all(m);
        match r {
            Ok(secret) => {
                let ok = self.machines[m as usize]
                    .token
                    .as_ref()
                    .is_some_and(|t| &t.secret == secret.as_bytes());
                self.checks.check(inv::UNLOCK_KEY, ok, &[m], || {
                    format!("n{m}: the unlock client's key is not the disk key")
                });
                let seized = self.machines[m as usize].seized;
                self.checks.check(inv::SEIZED_LOCKED, !seized, &[m], || {
                    format!("n{m} was seized and unlocked with shares")
                });
                let took = self.now() - self.machines[m as usize].asking_since.unwrap_or(0);
                self.stats.unlocked += 1;
                self.stats.unlock_ms.push(took);
                self.rec(11, m as u64, took);
                self.opened(m);
            }
            Err(UnlockError::Hopeless(_)) | Err(UnlockError::BadToken(_)) => {
                self.stats.hopeless += 1;
                let mm = &mut self.machines[m as usize];
                mm.phase = Phase::Prompt;
                mm.inc += 1;
                self.rec(12, m as u64, 0);
            }
            Err(_) => {
                let inc = self.machines[m as usize].inc;
                self.q.after(RETRY_PAUSE, Ev::Attempt { m, inc });
            }
        }
    }

    /// The disk is open: keywardd starts a few seconds later.
    fn opened(&mut self, m: u32) {
        let mm = &mut self.machines[m as usize];
        mm.phase = Phase::Starting;
        mm.inc += 1;
        let inc = mm.inc;
        let d = self.uniform(2 * SEC, 6 * SEC);
        self.q.after(d, Ev::DaemonUp { m, inc });
    }

    // ---- the scenario and the admin ----

    fn next_churn(&mut self, a: Act) {
        let n = self.machines.len() as f64;
        let per_day = match a {
            Act::Reboot => self.cfg.reboots * n,
            Act::Crash => self.cfg.crashes * n,
            Act::Join => self.cfg.joins,
            Act::Revoke => self.cfg.revocations,
            Act::Copy => self.cfg.copies,
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

    fn pick(&mut self, ok: impl Fn(&Machine) -> bool) -> Option<u32> {
        let n = self.machines.len() as u32;
        for _ in 0..64 {
            let i = self.rng.gen_range(0..n);
            if ok(&self.machines[i as usize]) {
                return Some(i);
            }
        }
        None
    }

    fn act(&mut self, a: Act) {
        match a {
            Act::Reboot => {
                if let Some(m) = self.pick(|m| m.running() && !m.leaving) {
                    self.stats.reboots += 1;
                    let d = self.uniform(10 * SEC, 60 * SEC);
                    self.shutdown(m, d);
                }
                self.next_churn(Act::Reboot);
            }
            Act::Crash => {
                if let Some(m) = self.pick(|m| m.phase != Phase::Down && !m.seized) {
                    self.stats.crashes += 1;
                    let d = self.crash_downtime();
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
                if v < n && !self.machines[v as usize].revoked {
                    let who = self.machines[v as usize].id.to_string();
                    let req = keyward_core::control::CtlRequest::Revoke {
                        who,
                        cascade: false,
                        reason: "simulated revocation".into(),
                    };
                    self.control(0, req, Ctl::Revoke(v));
                }
                self.next_churn(Act::Revoke);
            }
            Act::CrashNode(m, d) => {
                self.stats.crashes += 1;
                self.crash(m, Some(d));
            }
            Act::Seize(m) => {
                if self.machines[m as usize].running() {
                    self.stats.seized += 1;
                    self.machines[m as usize].seized = true;
                    let t = self.cfg.policy.timeout;
                    let d = self.uniform(t + 10 * MIN, t + 3 * HOUR);
                    self.rec(14, m as u64, d);
                    self.crash(m, Some(d));
                }
            }
            Act::Bind(m) => self.bind(m),
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
                self.rec(17, minority.len() as u64, 0);
                self.net.split(minority);
                for (a, b) in self.net.crossing() {
                    self.close(a, b);
                }
                let d = self.uniform(10 * MIN, 30 * MIN);
                self.q.after(d, Ev::Act(Act::Heal));
            }
            Act::Heal => {
                self.net.heal(self.now());
                self.rec(18, 0, 0);
                let d = self.uniform(20 * MIN, 60 * MIN);
                self.q.after(d, Ev::Act(Act::Partition));
            }
            Act::Lockdown(m) => {
                self.control(m, keyward_core::control::CtlRequest::Lockdown, Ctl::Admin)
            }
            Act::Lift(m) => self.control(m, keyward_core::control::CtlRequest::Lift, Ctl::Admin),
            Act::Approve { admin, owner } => {
                let who = self.machines[owner as usize].me.name.clone();
                self.control(
                    admin,
                    keyward_core::control::CtlRequest::Approve { who },
                    Ctl::Admin,
                )
            }
            Act::Passphrase(m) => {
                let p = self.machines[m as usize].phase;
                if matches!(p, Phase::Prompt | Phase::Unlocking) {
                    self.stats.passphrase += 1;
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
    fn join(&mut self) {
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
    fn copy_attack(&mut self) {
        let Some(o) = self.pick(|m| m.running() && m.token.is_some() && !m.revoked) else {
            return;
        };
        self.stats.copy_attacks += 1;
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
            self.input(
                g,
                Input::Request {
                    id: InId(rid),
                    from: boot_id,
                    req: Request::Share(req),
                },
            );
            self.input(g, Input::Closed { peer: boot_id });
        }
    }

    /// Downtime after a crash: mostly minutes, sometimes hours.
    fn crash_downtime(&mut self) -> Millis {
        let r: f64 = self.rng.gen();
        if r < 0.7 {
            self.uniform(30 * SEC, 3 * MIN)
        } else if r < 0.93 {
            self.uniform(3 * MIN, 20 * MIN)
        } else {
            self.uniform(20 * MIN, 3 * HOUR)
        }
    }

    /// Sends a control request to machine m's keywardd.
    fn control(&mut self, m: u32, req: keyward_core::control::CtlRequest, what: Ctl) {
        if !self.machines[m as usize].running() {
            return;
        }
        // Status reads liveness: the pings so far first.
        self.feed_all_pings(m);
        let id = CtlId(self.fresh());
        self.machines[m as usize].ctl.insert(id, what);
        self.input(m, Input::Control { id, req });
    }

    fn note(&mut self, _m: u32, n: keyward_core::node::Note) {
        if let keyward_core::node::Note::AdminRefused {
            why: keyward_core::node::admin::AdminRefusal::FromTheFuture { .. },
            ..
        } = &n
        {
            self.stats.admin_from_future += 1;
        }
        *self.stats.notes.entry(notes::name(&n)).or_default() += 1;
    }

    /// The release checks, at the guardian as it answers.
    fn check_response(&mut self, g: u32, to: u32, r: &Response) {
        match r {
            Response::Share(env) => {
                self.stats.releases += 1;
                let owner = env.body.owner;
                let Some(node) = &self.machines[g as usize].node else {
                    return;
                };
                let (active, revoked) = (
                    node.roster().is_active(&owner),
                    node.roster().is_revoked(&owner),
                );
                let locked = node.guardian().lockdown().is_some();
                let nodes = [g, to];
                self.checks.check(inv::RELEASE_MEMBER, active, &nodes, || {
                    format!("guardian n{g} released a share of a node not active in its roster")
                });
                self.checks
                    .check(inv::RELEASE_NOT_REVOKED, !revoked, &nodes, || {
                        format!("guardian n{g} released a share of a revoked node")
                    });
                self.checks
                    .check(inv::RELEASE_NO_LOCKDOWN, !locked, &nodes, || {
                        format!("guardian n{g} released a share during a lockdown")
                    });
                let Some(o) = self.ids.get(&owner).copied() else {
                    return;
                };
                let p = self.cfg.policy;
                let now = self.local(g);
                let timeout = self.cfg.oracle_timeout.unwrap_or(p.timeout);
                let ground = self.oracle.ground(g, o, now, &p, timeout);
                let seen = self.oracle.seen(g, o).cloned().unwrap_or_default();
                self.checks
                    .check(inv::RELEASE_ALIVE, ground.is_some(), &[g, o], || {
                        format!(
                            "guardian n{g} released n{o}'s share at {now}: last liveness delivered {:?}, last release {:?}, approval {:?}",
                            seen.alive, seen.release, seen.approved
                        )
                    });
                let grounded =
                    ground.is_some_and(|x| !matches!(x, crate::oracle::Ground::Extended { .. }));
                self.oracle.released(g, o, now, grounded, &p);
            }
            Response::ShareRefused(r) => {
                *self.stats.refusals.entry(r.rule().to_string()).or_default() += 1;
            }
            _ => {}
        }
    }

    fn summary(mut self) -> WorldSummary {
        let end = self.now().min(self.cfg.end());
        let period = self.cfg.ping_period();
        self.net.close_all_for_count(end, period);
        // Convergence at the end: every running member that has run for
        // 30 min, the network whole for 30 min, holds one roster (a
        // revoked node is out of the mesh and may keep an old one).
        let whole = !self.net.is_split() && self.net.healed_at + 30 * MIN <= end;
        let digests: BTreeSet<[u8; 32]> = self
            .machines
            .iter()
            .filter(|m| whole && m.running() && !m.revoked && m.running_since + 30 * MIN <= end)
            .filter_map(|m| m.node.as_ref().map(|n| n.roster().digest()))
            .collect();
        let converged = digests.len() <= 1;
        self.checks.check(inv::CONVERGE, converged, &[], || {
            format!(
                "{} different rosters among settled nodes at the end",
                digests.len()
            )
        });
        let s = &mut self.stats;
        let mut ms = std::mem::take(&mut s.unlock_ms);
        ms.sort_unstable();
        let pct = |q: f64| {
            if ms.is_empty() {
                0
            } else {
                ms[((ms.len() - 1) as f64 * q).round() as usize]
            }
        };
        let n = self.machines.len() as f64;
        let hours = (end as f64 / HOUR as f64).max(1e-9);
        let t = &self.net.traffic;
        let per = |x: u64| x as f64 / n / hours;
        let mut per_node_hour = BTreeMap::new();
        per_node_hour.insert("dials", per(t.dials));
        per_node_hour.insert("pings", per(t.pings));
        per_node_hour.insert("requests+responses", per(t.requests + t.responses));
        per_node_hour.insert("gossip", per(t.gossip));
        WorldSummary {
            nodes: self.machines.len(),
            hours: self.cfg.hours,
            seed: self.cfg.seed,
            events: self.event,
            trace_hash: format!("{:016x}", self.hash),
            boots: s.boots,
            unlocked: s.unlocked,
            unlock_median_ms: pct(0.5),
            unlock_p99_ms: pct(0.99),
            hopeless: s.hopeless,
            unlock_attempts: s.attempts,
            passphrase: s.passphrase,
            reboots: s.reboots,
            crashes: s.crashes,
            partitions: s.partitions,
            copy_attacks: s.copy_attacks,
            copied_released: s.copied_released,
            copied_refused: s.copied_refused.clone(),
            strangers: s.strangers,
            joins: s.joins,
            revocations: s.revocations,
            ctl_failed: s.ctl_failed,
            binds: s.binds,
            binds_failed: s.binds_failed,
            bound_at_end: self.machines.iter().filter(|m| m.token.is_some()).count(),
            locked_at_end: self
                .machines
                .iter()
                .filter(|m| matches!(m.phase, Phase::Unlocking | Phase::Prompt))
                .count(),
            seized: s.seized,
            seized_locked_at_end: self
                .machines
                .iter()
                .filter(|m| m.seized && matches!(m.phase, Phase::Unlocking | Phase::Prompt))
                .count(),
            releases: s.releases,
            refusals: s.refusals.clone(),
            notes: s.notes.clone(),
            admin_from_future: s.admin_from_future,
            writes_lost: s.writes_lost,
            disk_commits: self.machines.iter().map(|m| m.disk.commits).sum(),
            messages_per_node_hour: per(t.messages()),
            per_node_hour,
            traffic: t.clone(),
            invariant_checks: self
                .checks
                .runs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }
}
