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
//! - libp2p pings: keywardd pings its guardians and wards (the peers the
//!   node marks for liveness, `Output::Liveness`), on every connection
//!   to them, every `(up_window / 3).clamp(500, interval.max(500))`, and
//!   feeds each answer as `Input::Pinged`. Thousands of nodes ping tens
//!   of thousands of connections every 3.3 s, which no simulation can run
//!   one by one, so pings are fed lazily and exactly: the last answer on
//!   a connection before now is fed to a node (at its time) just before
//!   anything that reads it: any message over that connection, a share
//!   request or an approval naming the peer, a control request, the
//!   marking ending, and the connection closing. They are counted in
//!   full (a ping and its answer per period from each end that pings) in
//!   the messages.
//! - Gossip as gossipsub spreads it (`gossip`, `mesh`): a node's own
//!   message flooded over its member connections (the transport's member
//!   set, `Output::Members`), others' forwarded over its gossipsub mesh
//!   (6 to 12 peers) when the node's `Output::Verdict` accepts them, with
//!   per-node duplicate suppression.
//! - Disk: see [`disk`]: a write is durable once its commit completes,
//!   outputs after it wait for it, a crash loses what was not committed.
//! - Boots: the keyscript runs `keyward-unlock` attempts of 60 s with a
//!   5-s pause between them, each one an `UnlockClient` built from the
//!   machine's LUKS token; exit 3 (hopeless) leaves the passphrase prompt.
//! - Binding: the product never rebinds by itself. An admin runs
//!   `keyward bind` (a scenario event): status, guardians picked as the
//!   CLI picks them, `CtlRequest::Deposit`, then the token, then
//!   `CtlRequest::Drop` of the old epoch (or of an abandoned one).

mod acts;
mod admin;
mod bind;
mod bound;
mod checks;
mod config;
mod conn;
pub mod disk;
mod driver;
mod gossip;
pub mod hostile;
mod hostile_checks;
mod life;
pub mod logs;
pub mod machine;
mod mesh;
mod net;
mod notes;
mod plan;
mod reach;
mod summary;
mod watch;

pub use config::{Act, Config, WorldConfig};
pub use reach::ReachStat;
pub use summary::{Traffic, WorldStats, WorldSummary};

use std::collections::{BTreeMap, BTreeSet};

use keyward_core::guardian::Millis;
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
use crate::trace::Kind;
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
    /// The periodic look of the time-based invariants.
    Watch,
    /// Machine m's spool seals a segment (the logs scenario).
    LogSeal {
        m: u32,
        inc: u32,
    },
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
    /// Each gossip message's estimated size on the wire.
    gossip_bytes: Vec<u64>,
    pub stats: WorldStats,
    pub checks: Checks,
    /// What each guardian was told (liveness, approvals), recorded as the
    /// world delivers it: `release.alive-within-timeout` judges every
    /// release against it.
    oracle: crate::oracle::Oracle,
    event: u64,
    /// The trace: every record hashed, the last ones kept for a failure.
    trace: crate::trace::Trace,
    /// The admin's view: a lockdown it ordered is on.
    lockdown: bool,
    /// The lockdown and the revocation being timed as they spread.
    reach_lock: Option<reach::Reach>,
    reach_revoke: Option<reach::Reach>,
    /// After a whole-mesh outage: the admin's last progress.
    outage: Option<Millis>,
    /// The guardian answering a copied boot key's request right now.
    attacker_at: Option<u32>,
    /// A whole-mesh outage happened and no admin has stepped in yet.
    outage_waiting: bool,
    /// Seized servers and when.
    seizures: BTreeMap<u32, Millis>,
    /// The hostile scenario's state.
    hostile: Option<hostile::Hostile>,
    /// The invariants that watch time pass and replicas change.
    watch: watch::Watch,
    /// Verified roster operations by id (`cfg.memo`).
    memo: BTreeMap<keyward_core::roster::OpId, Option<Verified>>,
    /// Roster merges shared by every node (`roster::MergeMemo`): nodes in
    /// the same roster state hold one copy of it.
    merges: std::sync::Arc<keyward_core::roster::MergeMemo>,
    /// Roster writes shared by every disk ([`disk::SharedRosters`]).
    disks: disk::SharedRosters,
    /// The logs scenario's view of every log ([`logs`]).
    pub logs: logs::LogsWorld,
}

impl World {
    /// A founded mesh of `cfg.nodes` guardians, every machine running
    /// keywardd with the roster on its disk; the admins bind at
    /// `cfg.bind_at`.
    pub fn new(cfg: WorldConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let hostile = cfg.scenario == crate::scenario::Scenario::Hostile;
        let n = if hostile {
            cfg.nodes.max(hostile::MIN_NODES)
        } else {
            cfg.nodes.max(2)
        };
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
                // The hostile scenario's H1 is an auditor.
                role: if hostile && i == n - 1 {
                    Role::Auditor
                } else {
                    Role::Guardian
                },
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
            gossip_bytes: Vec::new(),
            stats: WorldStats::default(),
            checks: Checks::default(),
            oracle: crate::oracle::Oracle::default(),
            event: 0,
            trace: crate::trace::Trace::new(4096, cfg.trace),
            lockdown: false,
            reach_lock: None,
            reach_revoke: None,
            outage: None,
            outage_waiting: false,
            attacker_at: None,
            seizures: BTreeMap::new(),
            hostile: None,
            watch: watch::Watch::default(),
            logs: logs::LogsWorld::default(),
            memo: BTreeMap::new(),
            merges: Default::default(),
            disks: Default::default(),
            rng,
            cfg,
        };
        w.watch.issued(&ops);
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
        if hostile {
            let (a, g) = (n as u32 - 1, n as u32 - 2);
            for h in [a, g] {
                w.machines[h as usize].hostile = true;
            }
            let ids = [w.machines[a as usize].id, w.machines[g as usize].id];
            w.hostile = Some(hostile::Hostile::new(a, g, ids));
        }
        w.plan();
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

    pub(super) fn local(&self, m: u32) -> Millis {
        self.local_at(m, self.now())
    }

    /// World time of machine `m`'s clock reading `local` (never before now).
    pub(super) fn world_of(&self, m: u32, local: Millis) -> Millis {
        let w = local as i64 - T0 as i64 - self.machines[m as usize].skew;
        (w.max(0) as Millis).max(self.now())
    }

    pub(super) fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn latency(&mut self) -> Millis {
        let (lo, hi) = (self.cfg.latency_min, self.cfg.latency_max);
        self.rng.gen_range(lo..=hi.max(lo))
    }

    pub(super) fn uniform(&mut self, lo: Millis, hi: Millis) -> Millis {
        self.rng.gen_range(lo..=hi.max(lo))
    }

    /// One trace record (see `crate::trace::Kind`): hashed, kept in the
    /// ring a failure prints, printed with `--trace`.
    pub(super) fn rec(&mut self, kind: crate::trace::Kind, a: u64, b: u64) {
        let r = crate::trace::Rec {
            n: self.event,
            t: self.now(),
            kind,
            a,
            b,
        };
        self.trace.push(r);
    }

    pub(super) fn idx(&self, id: &NodeId) -> Option<u32> {
        self.ids.get(id).or_else(|| self.boots.get(id)).copied()
    }

    /// Runs to the end, or to the first failed invariant.
    pub fn run(mut self) -> Result<WorldSummary, Box<crate::Failure>> {
        let end = self.cfg.end();
        while let Some((t, ev)) = self.q.pop() {
            if t > end {
                break;
            }
            self.event += 1;
            self.dispatch(ev);
            self.after_event();
            if let Some(v) = self.checks.failed.take() {
                return Err(self.failure(v, t));
            }
        }
        let s = self.summary();
        match s {
            Ok(s) => Ok(s),
            Err(f) => {
                let (w, v) = *f;
                let at = w.now();
                Err(w.failure(v, at))
            }
        }
    }

    /// The report of a failed invariant: seed, event, the trace records
    /// touching the nodes concerned, the replay command.
    fn failure(&self, mut v: Violation, at: Millis) -> Box<crate::Failure> {
        v.event = self.event;
        v.at = at;
        let nodes: Vec<u64> = v.nodes.iter().map(|n| *n as u64).collect();
        Box::new(crate::Failure {
            seed: self.cfg.seed,
            replay: self.cfg.replay(),
            trace: self
                .trace
                .last(&nodes, 40)
                .iter()
                .map(|r| r.line())
                .collect(),
            trace_hash: self.trace.hash(),
            violation: v,
        })
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { conn, to, wire } => self.deliver(conn, to, *wire),
            Ev::NodeTimer { m, inc, at } => {
                let mm = &mut self.machines[m as usize];
                if mm.inc == inc && mm.timer_at == Some(at) {
                    mm.timer_at = None;
                    self.rec(Kind::Timer, m as u64, 0);
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
            Ev::LogSeal { m, inc } => self.log_seal(m, inc),
            Ev::Watch => {
                self.watch_tick();
                self.check_restores_reported();
                self.q.after(watch::TICK, Ev::Watch);
            }
        }
    }
}
