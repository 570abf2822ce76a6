//! Logs part 2 in the world (the logs scenario): every machine logs, and
//! the real `Node` replicates its log to 2 peers that witness it, under
//! the scenario's churn. The world plays keywardd's spool: lines go
//! through the production `Segmenter`, sealed segments into a
//! `MerkleLog` with its tiles, and each signed checkpoint reaches the node
//! as `Input::LogCheckpointed`; the node's reads (`Output::ReadLog`) are
//! answered from that log or, for a witness's prefix proof, from the
//! replica files on the machine's disk. Replica and witness writes are
//! the node's `Write`s, lost on a crash until committed; a restarting
//! daemon loads its replicas and witness from them, as keywardd does.
//!
//! Two origins are restored from an old backup (spool and state, as an
//! intruder or a careless admin would): their logs go back to an earlier
//! size and then grow another history. The invariants, checked as the
//! events happen:
//! - [`inv::LOG_REPLICATED`]: when a node is told that R replicas hold
//!   its log up to a size (what an `ack = "replicated"` waits for), R
//!   other machines' disks hold every segment below it, committed: no
//!   acknowledged line is lost while fewer than R + 1 copies are
//!   destroyed.
//! - [`inv::LOG_WITNESS`]: every checkpoint a witness's committed state
//!   records for an origin is on the same history as the one it recorded
//!   before (the world knows every history each origin had): no honest
//!   witness cosigns two inconsistent checkpoints, restarts included.
//! - [`inv::LOG_REPORTED`]: an origin restored from a backup, whose
//!   witnesses had cosigned beyond the restored size, is reported with
//!   evidence by an honest node within [`REPORT_WITHIN`] of running again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keyward_core::guardian::Millis;
use keyward_core::identity::{NodeId, NodeKey};
use keyward_core::log::line::{Line, Sender};
use keyward_core::log::merkle::MerkleLog;
use keyward_core::log::recipients::Recipients;
use keyward_core::log::replica;
use keyward_core::log::replica::store::ReplicaStore;
use keyward_core::log::replica::usage::Limits;
use keyward_core::log::segmenter::{Limits as SegLimits, Segmenter, Source};
use keyward_core::log::witness::state::WitnessRecord;
use keyward_core::log::witness::{Witness, WitnessWrite};
use keyward_core::node::logs::{reads, SILENCE_AFTER, WITNESS_INTERVAL};
use keyward_core::node::{Input, LogData, LogRead, LogsSetup, ReadId, Write};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::scenario::Scenario;

/// How often each machine seals a segment of its own log.
pub const SEAL_EVERY: Millis = 5 * MIN;
/// Replicas per origin (keywardd's default).
pub const REPLICAS: usize = 2;
/// An origin restored from a backup is reported within this long of
/// running again (a witness interval to reach its witnesses, retries,
/// and witnesses that are down for a while).
pub const REPORT_WITHIN: Millis = 45 * MIN;

/// The auditor every log is sealed to (no one decrypts in the world, so
/// its identity was thrown away). age draws its own randomness, so the
/// segments' bytes differ between runs of one seed; sizes, and so every
/// decision, do not.
const AUDITOR: &str = "age15lpn2hqd6yw9eanhprqljuvwjga7ecsw2jy5tf929p635pz6mawsnycxcv";

fn recipients() -> Arc<Recipients> {
    Arc::new(Recipients::parse(&[AUDITOR], None).expect("a valid age recipient"))
}

/// A machine's own log, as its spool holds it.
pub struct OwnLog {
    seg: Segmenter,
    log: MerkleLog,
    pub segs: Vec<Vec<u8>>,
    leaves: Vec<Vec<u8>>,
    tiles: BTreeMap<String, Vec<u8>>,
    note: Vec<u8>,
    /// Which of the world's histories of this origin it is.
    pub history: usize,
}

impl OwnLog {
    /// An empty log whose next segment gets sequence `next_seq`.
    fn new(key: &NodeKey, history: usize, next_seq: u64) -> OwnLog {
        let key = Arc::new(NodeKey::from_secret(&key.secret()));
        let source = Source {
            name: "syslog".into(),
            confidential: true,
        };
        OwnLog {
            seg: Segmenter::new(
                key.clone(),
                recipients(),
                source,
                SegLimits::default(),
                next_seq,
            )
            .expect("valid source"),
            log: MerkleLog::new(key.id()),
            segs: vec![],
            leaves: vec![],
            tiles: BTreeMap::new(),
            note: vec![],
            history,
        }
    }

    pub fn size(&self) -> u64 {
        self.log.size()
    }

    /// A line in, the segment sealed, appended and checkpointed: the new
    /// size, its root and the signed note.
    fn seal(
        &mut self,
        key: &NodeKey,
        now: Millis,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u64, [u8; 32], Vec<u8>)> {
        let line = Line {
            time: now,
            sender: Sender {
                pid: Some(1),
                uid: Some(0),
                gid: Some(0),
            },
            msg: format!("<13>line {} of the log", self.segs.len()).into_bytes(),
        };
        let _ = self.seg.push(now, &line, rng).ok()?;
        let sealed = self.seg.seal(now).ok()??;
        let (_, tiles) = self.log.append(&sealed.leaf).ok()?;
        for t in tiles {
            self.tiles.insert(t.path, t.bytes);
        }
        self.segs.push(sealed.bytes);
        self.leaves.push(sealed.leaf);
        let c = self.log.checkpoint(now, key).ok()?;
        self.note = c.note.clone();
        Some((c.size, c.root.0, c.note))
    }

    /// The same log as a backup of `size` segments left it: what an
    /// origin restored from that backup logs on from (a new history).
    fn restored(&self, key: &NodeKey, size: usize, history: usize, now: Millis) -> OwnLog {
        let mut o = OwnLog::new(key, history, size as u64);
        for i in 0..size {
            let (_, tiles) = o.log.append(&self.leaves[i]).expect("append");
            for t in tiles {
                o.tiles.insert(t.path, t.bytes);
            }
            o.segs.push(self.segs[i].clone());
            o.leaves.push(self.leaves[i].clone());
        }
        if size > 0 {
            o.note = o.log.checkpoint(now, key).expect("sign").note;
        }
        o
    }

    /// What keywardd's spool reads for the node.
    fn read(&self, r: &LogRead) -> Result<LogData, String> {
        match r {
            LogRead::Segments {
                from,
                to,
                max_bytes,
            } => reads::read_segments(*from, *to, *max_bytes, |i| {
                self.segs
                    .get(i as usize)
                    .cloned()
                    .ok_or_else(|| format!("no segment {i}"))
            }),
            r => reads::prove(r, &self.tiles),
        }
    }
}

/// The world's view of the logs, for the invariants and the summary.
#[derive(Default)]
pub struct LogsWorld {
    /// Every history each origin's log had: the root at each size
    /// (index 0 is the empty tree's).
    histories: BTreeMap<NodeId, Vec<Vec<[u8; 32]>>>,
    /// What each witness's committed state last recorded of an origin:
    /// (size, root).
    witnessed: BTreeMap<(u32, NodeId), (u64, [u8; 32])>,
    /// Origins restored from a backup beyond what their witnesses had
    /// cosigned: when they ran again (None while down).
    restored: BTreeMap<u32, Option<Millis>>,
    /// Origins an honest node kept fork or rollback evidence against.
    reported: BTreeSet<NodeId>,
    /// Per origin, the size below which `LOG_REPLICATED` was checked.
    checked: BTreeMap<NodeId, u64>,
    pub stats: LogStats,
}

/// What the summary says of the logs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LogStats {
    pub segments: u64,
    pub replicated_checks: u64,
    pub witness_records: u64,
    pub restores: u64,
    /// Restores whose time to be reported ([`REPORT_WITHIN`]) ended
    /// before the run did; the invariant judged each.
    pub restores_judged: u64,
    /// Of those, the ones an honest node reported.
    pub reported: u64,
    pub evidence: u64,
}

impl World {
    /// A starting daemon's logs, loaded from its disk as keywardd loads
    /// them; the own log's latest checkpoint is handed over as the spool
    /// does at start.
    pub(super) fn logs_up(&mut self, m: u32) {
        if self.cfg.scenario != Scenario::Logs {
            return;
        }
        let now = self.local(m);
        let mm = &mut self.machines[m as usize];
        let key = Arc::new(NodeKey::from_secret(&mm.key.secret()));
        let mut store = ReplicaStore::new(Limits::default()).expect("default limits");
        let mut problems = vec![];
        let origins: BTreeSet<String> = mm
            .disk
            .replica
            .keys()
            .filter_map(|p| p.strip_prefix("replicas/"))
            .filter_map(|p| p.split('/').next())
            .map(String::from)
            .collect();
        let mut repairs = vec![];
        for o in origins {
            let Ok(origin) = o.parse::<NodeId>() else {
                continue;
            };
            let cp = mm.disk.replica.get(&replica::checkpoint_path(&origin));
            let (tiles, segs) = mm.disk.replica_of(&origin);
            let tiles_bytes = tiles.values().map(|b| b.len() as u64).sum();
            match store.load(origin, cp.map(Vec::as_slice), &tiles, tiles_bytes, segs) {
                Ok(l) => repairs.extend(l.writes),
                Err(e) => problems.push(format!("replica of {origin}: {e}")),
            }
        }
        if !repairs.is_empty() {
            // keywardd performs the repairs before anything else
            mm.disk.apply(Write::Replica(repairs), &mut self.disks);
        }
        let mm = &mut self.machines[m as usize];
        let witness = Witness::load(
            key.clone(),
            mm.disk.witness_index.as_deref(),
            mm.disk.witness.values(),
        )
        .expect("a witness's committed files always load");
        let setup = LogsSetup {
            replicas: REPLICAS,
            witness_interval: WITNESS_INTERVAL,
            store: Some(store),
            witness: Some(witness),
            silence_after: SILENCE_AFTER,
            problems,
        };
        if mm.own.is_none() {
            mm.own = Some(OwnLog::new(&mm.key, 0, 0));
            self.logs
                .histories
                .entry(mm.id)
                .or_default()
                .push(vec![keyward_core::log::witness::EMPTY_ROOT.0]);
        }
        let Some(node) = mm.node.as_mut() else {
            return;
        };
        node.set_logs(setup, now);
        let own = mm.own.as_ref().expect("set above");
        let (size, note) = (own.size(), own.note.clone());
        if let Some(t) = self.logs.restored.get_mut(&m) {
            if t.is_none() {
                *t = Some(self.q.now());
            }
        }
        self.drain(m);
        if size > 0 {
            self.input(
                m,
                Input::LogCheckpointed {
                    size,
                    checkpoint: note,
                },
            );
        }
        let inc = self.machines[m as usize].inc;
        let d = self.uniform(1, SEAL_EVERY);
        self.q.after(d, Ev::LogSeal { m, inc });
    }

    /// Machine m's spool seals a segment; its checkpoint goes to the node.
    pub(super) fn log_seal(&mut self, m: u32, inc: u32) {
        let now = self.local(m);
        let mm = &mut self.machines[m as usize];
        if mm.inc != inc || mm.node.is_none() {
            return;
        }
        let key = NodeKey::from_secret(&mm.key.secret());
        let Some(own) = mm.own.as_mut() else {
            return;
        };
        let history = own.history;
        let Some((size, root, note)) = own.seal(&key, now, &mut self.rng) else {
            return;
        };
        self.logs.stats.segments += 1;
        let id = self.machines[m as usize].id;
        if let Some(h) = self
            .logs
            .histories
            .get_mut(&id)
            .and_then(|h| h.get_mut(history))
        {
            h.truncate(size as usize);
            h.push(root);
        }
        self.input(
            m,
            Input::LogCheckpointed {
                size,
                checkpoint: note,
            },
        );
        self.q.after(SEAL_EVERY, Ev::LogSeal { m, inc });
    }

    /// A read the node asked for, from its own log or its replicas.
    pub(super) fn log_read(&mut self, m: u32, id: ReadId, read: LogRead) {
        let mm = &self.machines[m as usize];
        let result = match &read {
            LogRead::Prefix { origin, .. } => reads::prove(&read, &mm.disk.replica_of(origin).0),
            r => match &mm.own {
                Some(o) => o.read(r),
                None => Err("no log".into()),
            },
        };
        self.input(m, Input::LogRead { id, result });
    }

    /// The node says R replicas hold its log up to `size`: check that
    /// every segment below it not checked yet is, byte for byte, on R
    /// other machines' disks (a restored origin's new history is checked
    /// again from where it forked).
    pub(super) fn log_replicated(&mut self, m: u32, size: u64) {
        self.logs.stats.replicated_checks += 1;
        let origin = self.machines[m as usize].id;
        let from = self.logs.checked.get(&origin).copied().unwrap_or(0);
        let Some(own) = &self.machines[m as usize].own else {
            return;
        };
        let mut short = None;
        for i in from..size {
            let want = own.segs.get(i as usize);
            let path = replica::segment_path(&origin, i);
            let holders = (0..self.machines.len())
                .filter(|&j| j != m as usize)
                .filter(|&j| want.is_some() && self.machines[j].disk.replica.get(&path) == want)
                .count();
            if holders < REPLICAS {
                short = Some((i, holders));
                break;
            }
        }
        self.logs.checked.insert(origin, size.max(from));
        self.checks
            .check(inv::LOG_REPLICATED, short.is_none(), &[m], || {
                let (i, n) = short.unwrap_or_default();
                format!(
                    "n{m} was told {REPLICAS} replicas hold its log up to {size}, but segment {i} (as n{m} holds it) is on {n} other disks"
                )
            });
    }

    /// A witness's state write committed: it must stay on one history of
    /// each origin.
    pub(super) fn log_witness_committed(&mut self, m: u32, ws: &[WitnessWrite]) {
        use keyward_core::log::witness::WitnessFile;
        for w in ws {
            let WitnessFile::Origin(origin) = w.file else {
                continue;
            };
            let Ok(r) = keyward_core::codec::decode::<WitnessRecord>(&w.bytes) else {
                continue;
            };
            self.logs.stats.witness_records += 1;
            let before = self.logs.witnessed.insert((m, origin), (r.size, r.root));
            let Some((size0, root0)) = before else {
                continue;
            };
            let on_one = self.logs.histories.get(&origin).is_some_and(|hs| {
                hs.iter().any(|h| {
                    h.get(size0 as usize) == Some(&root0) && h.get(r.size as usize) == Some(&r.root)
                })
            });
            let o = self.idx(&origin).unwrap_or(u32::MAX);
            self.checks.check(inv::LOG_WITNESS, on_one, &[m, o], || {
                format!(
                    "witness n{m} recorded n{o}'s checkpoint of size {} after one of size {size0} on another history",
                    r.size
                )
            });
        }
    }

    /// Evidence a node kept against an origin.
    pub(super) fn log_evidence(&mut self, m: u32, origin: NodeId, what: &str) {
        self.logs.stats.evidence += 1;
        if matches!(what, "fork" | "rollback") && self.machines[m as usize].legit() {
            self.logs.reported.insert(origin);
        }
    }

    /// The act: machine m is restored from a backup of its spool and
    /// state taken when its log was smaller than what its witnesses have
    /// cosigned since. It crashes and comes back on the old log.
    pub(super) fn restore_from_backup(&mut self, m: u32) {
        let now = self.local(m);
        let mm = &self.machines[m as usize];
        let Some(own) = &mm.own else { return };
        let id = mm.id;
        let cosigned = self
            .logs
            .witnessed
            .iter()
            .filter(|((_, o), _)| *o == id)
            .map(|(_, (s, _))| *s)
            .max()
            .unwrap_or(0);
        if !mm.running() || cosigned < 2 || own.size() < 2 {
            return;
        }
        let back = (cosigned / 2) as usize;
        let key = NodeKey::from_secret(&mm.key.secret());
        let hs = self.logs.histories.entry(id).or_default();
        let history = hs.len();
        let mut h = hs[own.history].clone();
        h.truncate(back + 1);
        hs.push(h);
        let restored = own.restored(&key, back, history, now);
        if let Some(c) = self.logs.checked.get_mut(&id) {
            *c = (*c).min(back as u64);
        }
        self.machines[m as usize].own = Some(restored);
        self.logs.stats.restores += 1;
        self.logs.restored.insert(m, None);
        let down = self.uniform(MIN, 5 * MIN);
        self.crash(m, Some(down));
    }

    /// The reporting invariant, at each watch tick.
    pub(super) fn check_restores_reported(&mut self) {
        let now = self.q.now();
        let due: Vec<(u32, Millis)> = self
            .logs
            .restored
            .iter()
            .filter_map(|(m, t)| t.map(|t| (*m, t)))
            .filter(|(_, t)| now > t + REPORT_WITHIN)
            .collect();
        for (m, _) in due {
            let id = self.machines[m as usize].id;
            let ok = self.logs.reported.contains(&id);
            self.checks.check(inv::LOG_REPORTED, ok, &[m], || {
                format!(
                    "n{m} was restored from an old backup (its log rolled back and forked) {} min ago and no honest node reported it",
                    REPORT_WITHIN / MIN
                )
            });
            self.logs.restored.remove(&m);
            self.logs.stats.restores_judged += 1;
            if ok {
                self.logs.stats.reported += 1;
            }
        }
    }
}
