//! Logs part 2 between real nodes: an origin's sealed segments reach its
//! replicas, a replica that was away catches up by index, pushes in
//! another's name and forked or rolled-back checkpoints are refused with
//! evidence and an alert, and a witness never cosigns two inconsistent
//! checkpoints, even across a restart of its state.

use std::sync::Arc;

use super::*;
use base64::Engine;

use crate::control::{CtlError, CtlRequest, LogPiece};
use crate::log::fetch::FetchItem;
use crate::log::merkle::MerkleLog;
use crate::log::replica::store::ReplicaStore;
use crate::log::replica::usage::Limits;
use crate::log::replica::wire::{Push, RefusedCode};
use crate::log::replica::Write as RWrite;
use crate::log::segment::{BodyKind, Segment};
use crate::log::witness::cosign;
use crate::log::witness::evidence::{Evidence, EvidenceKind};
use crate::log::witness::request::AddCheckpoint;
use crate::log::witness::{Witness, WitnessFile};
use crate::node::logs::{reads, LogsSetup, RETRY_AFTER, SILENCE_AFTER, WITNESS_INTERVAL};
use crate::node::{LogData, LogRead};
use crate::testkit::mesh;
use crate::testkit::mesh_with_auditors;

/// A node's own log as its spool's files hold it.
pub struct OwnLog {
    key: NodeKey,
    log: MerkleLog,
    segs: Vec<Vec<u8>>,
    tiles: BTreeMap<String, Vec<u8>>,
    /// Makes a different history of the same key (a forking origin).
    salt: u8,
    pub note: Vec<u8>,
}

impl OwnLog {
    pub fn new(key: &NodeKey) -> Self {
        let key = NodeKey::from_secret(&key.secret());
        OwnLog {
            log: MerkleLog::new(key.id()),
            key,
            segs: vec![],
            tiles: BTreeMap::new(),
            salt: 0,
            note: vec![],
        }
    }

    fn forked(key: &NodeKey, salt: u8) -> Self {
        OwnLog {
            salt,
            ..OwnLog::new(key)
        }
    }

    /// Seals `n` more segments and signs a checkpoint: (size, note).
    pub fn seal(&mut self, n: usize, now: Millis) -> (u64, Vec<u8>) {
        for _ in 0..n {
            let seq = self.segs.len() as u64;
            let s = Segment::seal(
                &self.key,
                "app",
                seq,
                (now, now, 1),
                true,
                now,
                BodyKind::Age,
                vec![self.salt, seq as u8, 7, 7],
            )
            .unwrap();
            let (_, tiles) = self.log.append(&s.leaf).unwrap();
            for t in tiles {
                self.tiles.insert(t.path, t.bytes);
            }
            self.segs.push(s.bytes);
        }
        let c = self.log.checkpoint(now, &self.key).unwrap();
        self.note = c.note.clone();
        (c.size, c.note)
    }

    /// The latest checkpoint note.
    fn clone_note(&self) -> Vec<u8> {
        self.note.clone()
    }

    /// A file of the spool's layout, by its path in it.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        if path == "checkpoint" {
            return (!self.note.is_empty()).then(|| self.note.clone());
        }
        if let Some(i) = path.strip_prefix("segments/") {
            return self.segs.get(i.parse::<usize>().ok()?).cloned();
        }
        self.tiles.get(path).cloned()
    }

    /// What the driver reads for the node.
    pub fn read(&self, r: &LogRead) -> Result<LogData, String> {
        match r {
            LogRead::Segments {
                from,
                to,
                max_bytes,
            } => reads::read_segments(*from, *to, *max_bytes, |i| {
                self.segs
                    .get(i as usize)
                    .cloned()
                    .ok_or_else(|| "no such segment".into())
            }),
            LogRead::Proof { .. } => reads::prove(r, &self.tiles),
            LogRead::Prefix { .. } => Err("a replica's read, not the own log's".into()),
        }
    }
}

fn arc_key(k: &NodeKey) -> Arc<NodeKey> {
    Arc::new(NodeKey::from_secret(&k.secret()))
}

fn setup(key: &NodeKey, replicas: usize, witness: Option<Witness>) -> LogsSetup {
    LogsSetup {
        replicas,
        witness_interval: WITNESS_INTERVAL,
        store: Some(ReplicaStore::new(Limits::default()).unwrap()),
        witness: Some(witness.unwrap_or_else(|| Witness::new(arc_key(key)))),
        silence_after: SILENCE_AFTER,
        problems: Vec::new(),
    }
}

impl Net {
    /// Logs on at every node, each replicating its log to `r` peers.
    fn logs_on(&mut self, r: usize) {
        for i in 0..self.peers.len() {
            let s = setup(&self.peers[i].key, r, None);
            let now = self.clock(i);
            self.peers[i].node.set_logs(s, now);
        }
        self.drive();
    }

    /// Node `i` seals `n` segments and its checkpoint is durable.
    fn seal(&mut self, i: usize, n: usize) -> u64 {
        let now = self.clock(i);
        let (size, checkpoint) = self.peers[i].own.seal(n, now);
        self.input(i, Input::LogCheckpointed { size, checkpoint });
        size
    }

    /// The size node `j` holds of `i`'s log.
    fn held(&self, j: usize, i: usize) -> u64 {
        let o = self.peers[i].id();
        let v = self.peers[j].node.logs_view();
        v.held.iter().find(|(x, _)| *x == o).map_or(0, |(_, n)| *n)
    }

    fn replicas_of(&self, i: usize) -> Vec<usize> {
        let v = self.peers[i].node.logs_view();
        v.replicas
            .iter()
            .map(|(p, _, _)| self.index(p).unwrap())
            .collect()
    }

    fn alerts(&mut self, i: usize) -> Vec<String> {
        match ok(self.control(i, CtlRequest::Status)) {
            CtlReply::Status(s) => s.alerts.into_iter().map(|a| a.text).collect(),
            r => panic!("{r:?}"),
        }
    }
}

/// The segment files a node wrote for replicas, in order.
fn segment_writes(p: &Peer) -> Vec<String> {
    p.disk
        .iter()
        .filter_map(|w| match w {
            Write::Replica(ws) => Some(ws),
            _ => None,
        })
        .flatten()
        .filter_map(|w| match w {
            RWrite::Segment { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// The witness's files as its writes left them: (index, records).
fn witness_files(p: &Peer) -> (Option<Vec<u8>>, BTreeMap<NodeId, Vec<u8>>) {
    let mut index = None;
    let mut records = BTreeMap::new();
    for w in &p.disk {
        if let Write::Witness(ws) = w {
            for w in ws {
                match w.file {
                    WitnessFile::Index => index = Some(w.bytes.clone()),
                    WitnessFile::Origin(o) => {
                        records.insert(o, w.bytes.clone());
                    }
                }
            }
        }
    }
    (index, records)
}

fn add_checkpoint(old: u64, note: &[u8]) -> Request {
    let body = AddCheckpoint {
        old_size: old,
        proof: vec![],
        note: note.to_vec(),
    }
    .to_body()
    .unwrap();
    Request::AddCheckpoint { body }
}

#[test]
fn sealed_segments_reach_two_replicas_and_the_replicated_size_advances() {
    let mut net = Net::mesh(mesh(4));
    net.logs_on(2);
    let reps = net.replicas_of(0);
    assert_eq!(reps.len(), 2, "two replicas chosen among three guardians");
    assert_eq!(net.seal(0, 3), 3);
    for j in 1..4 {
        let want = if reps.contains(&j) { 3 } else { 0 };
        assert_eq!(net.held(j, 0), want, "node {j}");
    }
    assert_eq!(net.peers[0].replicated.last(), Some(&3));
    net.seal(0, 2);
    assert_eq!(net.peers[0].replicated.last(), Some(&5));
    assert!(
        net.peers[0].replicated.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        net.peers[0].replicated
    );
    for &j in &reps {
        assert_eq!(net.held(j, 0), 5);
        // the answer that lets the origin ack as replicated comes only
        // after the replica's files were written
        let t = &net.peers[j].trace;
        let writes: Vec<usize> = (0..t.len())
            .filter(|w| t[*w] == "write:replica files")
            .collect();
        assert!(!writes.is_empty(), "{t:?}");
        for w in writes {
            assert_eq!(
                t.get(w + 1).map(String::as_str),
                Some("respond:log-held"),
                "{t:?}"
            );
        }
        let segs = segment_writes(&net.peers[j]);
        assert_eq!(segs.len(), 5, "each segment written once: {segs:?}");
    }
    // every interval, the replicas cosign the latest checkpoint
    net.advance(WITNESS_INTERVAL + 1000);
    for &j in &reps {
        let w = net.peers[j].id();
        assert!(
            net.peers[0].cosigned.contains(&(w, 5)),
            "{:?}",
            net.peers[0].cosigned
        );
    }
    // a later checkpoint is cosigned with a proof from the last one
    net.seal(0, 4);
    net.advance(WITNESS_INTERVAL + 1000);
    for &j in &reps {
        let w = net.peers[j].id();
        assert!(
            net.peers[0].cosigned.contains(&(w, 9)),
            "{:?}",
            net.peers[0].cosigned
        );
        assert_eq!(net.held(j, 0), 9);
    }
    let v = net.peers[0].node.logs_view();
    assert_eq!((v.size, v.replicated), (9, 9));
    assert!(
        v.replicas
            .iter()
            .all(|(_, h, c)| *h == Some(9) && *c == Some(9)),
        "{v:?}"
    );
    // `keyward status` at the origin: its log, each replica by name with
    // what it holds and when it last cosigned
    let now = net.now;
    let r = net.peers[0].node.status(now).replication.unwrap();
    assert_eq!((r.size, r.replicated, r.replicas.len()), (9, 9, 2));
    for p in &r.replicas {
        assert!(p.name.is_some(), "{p:?}");
        assert_eq!((p.held, p.cosigned), (Some(9), Some(9)), "{p:?}");
        assert!(
            p.cosigned_ms_ago
                .is_some_and(|a| a <= WITNESS_INTERVAL + 1000),
            "{p:?}"
        );
    }
    assert!(r.kept.is_empty(), "the origin keeps no one's log: {r:?}");
    // and at a replica: the origin's log it keeps and witnessed
    let r = net.peers[reps[0]].node.status(now).replication.unwrap();
    let origin = net.peers[0].id().to_string();
    let k = r.kept.iter().find(|k| k.origin == origin).unwrap();
    assert_eq!((k.held, k.witnessed), (9, Some(9)), "{k:?}");
    assert!(k.name.is_some());
}

#[test]
fn a_replica_that_was_offline_catches_up_by_index() {
    let mut net = Net::mesh(mesh(3));
    net.logs_on(2);
    let reps = net.replicas_of(0);
    assert_eq!(reps.len(), 2);
    let (a, b) = (reps[0], reps[1]);
    net.seal(0, 3);
    assert_eq!((net.held(a, 0), net.held(b, 0)), (3, 3));
    net.peers[b].down = true;
    net.seal(0, 2);
    assert_eq!(net.held(a, 0), 5);
    assert_eq!(net.held(b, 0), 3, "away");
    assert_eq!(
        net.peers[0].replicated.last(),
        Some(&3),
        "R = 2: only what both hold is replicated"
    );
    net.advance(3 * RETRY_AFTER);
    assert_eq!(net.held(b, 0), 3, "still away");
    net.peers[b].down = false;
    net.advance(2 * RETRY_AFTER);
    assert_eq!(net.held(b, 0), 5, "caught up");
    assert_eq!(net.peers[0].replicated.last(), Some(&5));
    let segs = segment_writes(&net.peers[b]);
    assert_eq!(segs.len(), 5, "nothing it held was sent again: {segs:?}");
    let mut sorted = segs.clone();
    sorted.dedup();
    assert_eq!(sorted, segs);
}

#[test]
fn a_push_in_another_nodes_name_is_refused_with_a_finding() {
    let mut net = Net::mesh(mesh(3));
    net.logs_on(2);
    let (victim, liar) = (net.peers[0].id(), net.peers[1].id());
    // node 1 signs segments with its own key and pushes them as node 0's
    let mut own = OwnLog::new(&net.peers[1].key);
    own.seal(2, T0);
    let push = Push::pack(victim, 0, own.note.clone(), own.segs.clone());
    let r = net.ask(2, liar, Request::LogPush(Box::new(push)));
    match r {
        Some(Response::LogRefused(r)) => assert_eq!(r.code, RefusedCode::Evidence, "{r:?}"),
        r => panic!("{r:?}"),
    }
    assert_eq!(net.held(2, 0), 0, "nothing of it kept");
    let ev = &net.peers[2].evidence;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].0, ev[0].1), (liar, "push"));
    assert_eq!(
        Push::decode(&ev[0].2).unwrap().origin,
        victim,
        "the push is kept"
    );
    let alerts = net.alerts(2);
    assert!(
        alerts.iter().any(|a| a.contains("in the name of")),
        "{alerts:?}"
    );
    // a stranger's push is refused without looking at it
    let stranger = NodeKey::generate().id();
    let push = Push::pack(stranger, 0, own.note.clone(), own.segs.clone());
    let r = net.ask(2, stranger, Request::LogPush(Box::new(push)));
    assert!(matches!(r, Some(Response::Refused { .. })), "{r:?}");
}

/// Two nodes with logs on; node 1 cosigned node 0's first checkpoint
/// (3 leaves): the net, the origin, its key and its honest log.
fn cosigned_once() -> (Net, NodeId, NodeKey, OwnLog) {
    let mut net = Net::mesh(mesh(2));
    net.logs_on(1);
    let origin = net.peers[0].id();
    let key = NodeKey::from_secret(&net.peers[0].key.secret());
    let mut honest = OwnLog::new(&key);
    honest.seal(3, T0);
    let r = net.ask(1, origin, add_checkpoint(0, &honest.note));
    assert!(matches!(r, Some(Response::Cosigned { .. })), "{r:?}");
    (net, origin, key, honest)
}

#[test]
fn a_fork_or_a_rollback_is_refused_with_evidence_and_an_alert() {
    let (mut net, origin, key, honest) = cosigned_once();
    // the same size, another history
    let mut fork = OwnLog::forked(&key, 1);
    fork.seal(3, T0);
    let r = net.ask(1, origin, add_checkpoint(3, &fork.note));
    assert!(
        matches!(
            r,
            Some(Response::WitnessRefused {
                last_size: None,
                ..
            })
        ),
        "{r:?}"
    );
    // a smaller checkpoint: a rollback
    let mut old = OwnLog::new(&key);
    old.seal(2, T0);
    let r = net.ask(1, origin, add_checkpoint(2, &old.note));
    assert!(matches!(r, Some(Response::WitnessRefused { .. })), "{r:?}");
    let ev = net.peers[1].evidence.clone();
    let kinds: Vec<&str> = ev.iter().map(|e| e.1).collect();
    assert_eq!(kinds, ["fork", "rollback"]);
    for (against, _, bytes) in &ev {
        assert_eq!(*against, origin);
        // self-verifying: anyone with the origin's id checks it
        let e = Evidence::decode(bytes).unwrap();
        match e.check().unwrap() {
            EvidenceKind::Fork { a, b, .. } => assert_eq!((a, b), (3, 3)),
            EvidenceKind::Rollback {
                cosigned, offered, ..
            } => assert_eq!((cosigned, offered), (3, 2)),
        }
    }
    let alerts = net.alerts(1);
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("fork") || a.contains("two histories")),
        "{alerts:?}"
    );
    assert!(alerts.iter().any(|a| a.contains("rollback")), "{alerts:?}");
    // a checkpoint in the name of another node is not cosigned
    let r = net.ask(1, net.peers[1].id(), add_checkpoint(0, &honest.note));
    assert!(matches!(r, Some(Response::WitnessRefused { .. })), "{r:?}");
}

#[test]
fn a_witness_never_cosigns_two_inconsistent_checkpoints_across_a_restart() {
    let (mut net, origin, key, mut honest) = cosigned_once();
    let t = &net.peers[1].trace;
    let w = t.iter().position(|k| k == "write:witness state").unwrap();
    assert!(
        t[w..].iter().any(|k| k == "respond:cosigned"),
        "written first: {t:?}"
    );
    // the witness restarts from its files
    let (index, records) = witness_files(&net.peers[1]);
    let loaded = Witness::load(
        arc_key(&net.peers[1].key),
        index.as_deref(),
        records.values(),
    )
    .expect("the state loads");
    let me = net.peers[1].node.me().clone();
    let cfg = NodeConfig {
        key: NodeKey::from_secret(&net.peers[1].key.secret()),
        me,
        policy: Policy::default(),
        clock_floor: 0,
        bootstrap: false,
        seed: [9; 32],
        merges: None,
    };
    let stored = Stored {
        roster: net.peers[1].node.roster().ops(),
        ..Stored::default()
    };
    let now = net.clock(1);
    net.peers[1].node = Node::new(cfg, stored, now);
    let s = setup(&net.peers[1].key, 1, Some(loaded));
    net.peers[1].node.set_logs(s, now);
    net.drive();
    // neither another history of size 3, from any old size, nor a
    // smaller one, nor a larger one on another history
    let mut fork = OwnLog::forked(&key, 1);
    fork.seal(3, T0);
    let mut old = OwnLog::new(&key);
    old.seal(2, T0);
    let mut fork5 = OwnLog::forked(&key, 2);
    fork5.seal(5, T0);
    for (o, note) in [
        (0, &fork.note),
        (3, &fork.note),
        (0, &old.note),
        (3, &old.note),
        (0, &fork5.note),
        (3, &fork5.note),
    ] {
        let r = net.ask(1, origin, add_checkpoint(o, note));
        assert!(
            matches!(r, Some(Response::WitnessRefused { .. })),
            "old {o}: {r:?}"
        );
    }
    // the honest log goes on, with its proof
    let (size, note) = honest.seal(2, T0);
    let LogData::Proof(proof) = honest
        .read(&LogRead::Proof {
            old: 3,
            size,
            root: crate::log::checkpoint::open(&note, &origin).unwrap().1,
        })
        .unwrap()
    else {
        panic!()
    };
    let body = AddCheckpoint {
        old_size: 3,
        proof,
        note,
    }
    .to_body()
    .unwrap();
    let r = net.ask(1, origin, Request::AddCheckpoint { body });
    assert!(matches!(r, Some(Response::Cosigned { .. })), "{r:?}");
}

#[test]
fn a_witness_whose_state_write_fails_releases_nothing_and_stops() {
    let mut net = Net::mesh(mesh(2));
    net.logs_on(1);
    let origin = net.peers[0].id();
    let mut honest = OwnLog::new(&net.peers[0].key);
    honest.seal(1, T0);
    net.peers[1].fail_writes = true;
    let r = net.ask(1, origin, add_checkpoint(0, &honest.note));
    assert!(matches!(r, Some(Response::WitnessRefused { .. })), "{r:?}");
    net.peers[1].fail_writes = false;
    let r = net.ask(1, origin, add_checkpoint(0, &honest.note));
    assert!(
        matches!(&r, Some(Response::WitnessRefused { reason, .. }) if reason.contains("restart")),
        "{r:?}"
    );
}

#[test]
fn a_witnessed_fork_is_spread_as_an_alert_every_member_checks() {
    let mut net = Net::mesh(mesh(3));
    net.logs_on(2);
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        net.connect(a, b);
    }
    let origin = net.peers[0].id();
    let key = NodeKey::from_secret(&net.peers[0].key.secret());
    let mut honest = OwnLog::new(&key);
    honest.seal(3, T0);
    let r = net.ask(1, origin, add_checkpoint(0, &honest.note));
    assert!(matches!(r, Some(Response::Cosigned { .. })), "{r:?}");
    let mut fork = OwnLog::forked(&key, 1);
    fork.seal(3, T0);
    let r = net.ask(1, origin, add_checkpoint(3, &fork.note));
    assert!(matches!(r, Some(Response::WitnessRefused { .. })), "{r:?}");
    // node 2 never saw the fork itself: it checked the evidence it got
    let alerts = net.alerts(2);
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("two histories") && a.contains("proven by evidence")),
        "{alerts:?}"
    );
    // a member's "alert" whose evidence proves nothing is refused
    let (_, _, ev) = net.peers[1].evidence[0].clone();
    let other = net.peers[2].id();
    let forged = crate::proto::AdminMsg::sign(
        crate::proto::AdminBody {
            mesh: net.peers[2].node.roster().mesh().unwrap(),
            kind: crate::proto::AdminKind::LogAlert {
                origin: other,
                evidence: ev,
            },
            by: net.peers[1].id(),
            at: net.now,
        },
        &net.peers[1].key,
    );
    assert!(crate::node::admin::AdminState::check_alert(
        &forged,
        net.peers[2].node.roster(),
        net.now
    )
    .is_err());
}

/// What auditor `a` got from member `from` for one fetch item.
fn fetch(net: &mut Net, a: usize, from: usize, origin: usize, item: FetchItem) -> CtlResponse {
    let req = CtlRequest::LogFetch {
        from: net.peers[from].id().to_string(),
        origin: net.peers[origin].id().to_string(),
        item,
    };
    net.control(a, req)
}

fn file(r: CtlResponse) -> Vec<u8> {
    match ok(r) {
        CtlReply::LogPiece(LogPiece::File { data, total }) => {
            let b = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            assert_eq!(b.len() as u64, total, "small files come whole");
            b
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn an_auditor_fetches_an_origins_log_from_the_origin_and_from_its_replicas() {
    use crate::log::fetch::tiles;
    let mut net = Net::mesh(mesh_with_auditors(4, 1));
    let aud = 3;
    net.logs_on(2);
    let reps = net.replicas_of(0);
    assert_eq!(reps.len(), 2);
    assert!(!reps.contains(&aud), "an auditor keeps no copies");
    net.seal(0, 3);
    net.advance(WITNESS_INTERVAL + RETRY_AFTER);
    let want = net.peers[0].own.file("checkpoint").unwrap();
    let origin = net.peers[0].id();
    for holder in [0, reps[0], reps[1]] {
        let r = net.control(
            aud,
            CtlRequest::LogHolding {
                from: net.peers[holder].id().to_string(),
            },
        );
        let CtlReply::LogHolding(h) = ok(r) else {
            panic!()
        };
        assert!(
            h.iter()
                .any(|h| h.origin == origin.to_string() && h.size == 3),
            "{holder}: {h:?}"
        );
        assert_eq!(
            file(fetch(&mut net, aud, holder, 0, FetchItem::Checkpoint)),
            want
        );
        for (level, index, width) in tiles(3) {
            let item = FetchItem::Tile {
                level,
                index,
                width,
            };
            let t = file(fetch(&mut net, aud, holder, 0, item));
            assert_eq!(t.len(), 32 * usize::from(width));
        }
        for index in 0..3 {
            let s = file(fetch(
                &mut net,
                aud,
                holder,
                0,
                FetchItem::Segment { index, offset: 0 },
            ));
            assert_eq!(
                Some(s),
                net.peers[0].own.file(&format!("segments/{index:020}"))
            );
        }
        // a segment beyond what the holder has is refused, not invented
        let r = fetch(
            &mut net,
            aud,
            holder,
            0,
            FetchItem::Segment {
                index: 3,
                offset: 0,
            },
        );
        assert!(
            matches!(r, CtlResponse::Err(CtlError::PeerRefused { .. })),
            "{r:?}"
        );
        // cosigned notes: each a valid cosignature by a replica
        let CtlReply::LogPiece(LogPiece::Notes { notes }) =
            ok(fetch(&mut net, aud, holder, 0, FetchItem::Cosigned))
        else {
            panic!()
        };
        assert!(!notes.is_empty(), "holder {holder} knows cosignatures");
        for n in notes {
            let n = base64::engine::general_purpose::STANDARD.decode(n).unwrap();
            assert!(reps
                .iter()
                .any(|&w| cosign::verify(&n, &net.peers[w].id()).is_ok()));
        }
    }
    // the origin is gone: its replicas still serve its log
    net.peers[0].down = true;
    let r = fetch(&mut net, aud, 0, 0, FetchItem::Checkpoint);
    assert!(
        matches!(r, CtlResponse::Err(CtlError::PeerUnreachable { .. })),
        "{r:?}"
    );
    assert_eq!(
        file(fetch(&mut net, aud, reps[0], 0, FetchItem::Checkpoint)),
        want
    );
}

#[test]
fn only_an_active_auditor_fetches_logs() {
    let mut net = Net::mesh(mesh_with_auditors(4, 1));
    net.logs_on(2);
    net.seal(0, 2);
    let origin = net.peers[0].id();
    let item = FetchItem::Segment {
        index: 0,
        offset: 0,
    };
    let fetch_req = Request::LogFetch { origin, item };
    // a guardian, a stranger: refused, nothing read
    for asker in [net.peers[1].id(), stranger("x").key.id()] {
        for req in [Request::LogHolding, fetch_req.clone()] {
            let r = net.ask(0, asker, req);
            assert!(matches!(r, Some(Response::Refused { .. })), "{r:?}");
        }
    }
    assert!(!net.peers[0].trace.iter().any(|t| t.starts_with("serve")));
    // the auditor, once revoked, is refused too
    let aud = net.peers[3].id();
    assert!(matches!(
        net.ask(0, aud, fetch_req.clone()),
        Some(Response::LogFile { .. })
    ));
    let revoke = CtlRequest::Revoke {
        who: aud.to_string(),
        cascade: false,
        reason: "left".into(),
    };
    ok(net.control(0, revoke));
    net.drive();
    for req in [Request::LogHolding, fetch_req] {
        let r = net.ask(0, aud, req);
        assert!(matches!(r, Some(Response::Refused { .. })), "{r:?}");
    }
    // a bad tile width is refused, not read
    let r = net.ask(
        1,
        net.peers[2].id(),
        Request::LogFetch {
            origin,
            item: FetchItem::Tile {
                level: 0,
                index: 0,
                width: 0,
            },
        },
    );
    assert!(matches!(r, Some(Response::Refused { .. })), "{r:?}");
}

#[test]
fn an_origin_that_is_up_but_whose_log_stopped_growing_is_reported_silent_once() {
    const AFTER: Millis = 10 * 60_000;
    let mut net = Net::mesh(mesh(4));
    for i in 0..4 {
        let mut s = setup(&net.peers[i].key, 2, None);
        s.silence_after = AFTER;
        let now = net.clock(i);
        net.peers[i].node.set_logs(s, now);
    }
    net.drive();
    let reps = net.replicas_of(0);
    let other = (1..4).find(|j| !reps.contains(j)).unwrap();
    let silent = |net: &mut Net, j: usize| {
        net.alerts(j)
            .iter()
            .filter(|a| a.contains("silent"))
            .count()
    };
    net.seal(0, 3);
    net.advance(AFTER / 2);
    net.seal(0, 1);
    net.advance(AFTER * 3 / 4);
    for j in 1..4 {
        assert_eq!(
            silent(&mut net, j),
            0,
            "node {j}: it grew {} min ago",
            AFTER * 3 / 4 / 60_000
        );
    }
    net.advance(AFTER / 2);
    for &j in &reps {
        assert_eq!(silent(&mut net, j), 1, "replica {j}: {:?}", net.alerts(j));
    }
    assert_eq!(
        silent(&mut net, other),
        0,
        "not its replica: not its business"
    );
    // reported once, however long it lasts
    net.advance(AFTER * 2);
    for &j in &reps {
        assert_eq!(silent(&mut net, j), 1, "replica {j}");
    }
    // it grows again: the journal says so, and a new silence is new
    net.seal(0, 1);
    for &j in &reps {
        assert!(net.peers[j]
            .notes
            .iter()
            .any(|n| format!("{n:?}").contains("growing again")));
    }
    // a machine that is off is down, not silent
    net.peers[0].down = true;
    for j in 1..4 {
        net.unlink(0, j);
    }
    net.advance(AFTER * 2);
    for &j in &reps {
        assert_eq!(silent(&mut net, j), 1, "replica {j}: {:?}", net.alerts(j));
    }
}

/// A hostile origin (node 0, its key in the attacker's hands) with two
/// witnesses (nodes 1 and 2) that know each other: what node 1 and node 2
/// hold and cosigned of each history is up to the test.
fn two_witnesses() -> (Net, NodeId, NodeKey) {
    let mut net = Net::mesh(mesh(3));
    net.logs_on(2);
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        net.connect(a, b);
    }
    let origin = net.peers[0].id();
    let key = NodeKey::from_secret(&net.peers[0].key.secret());
    (net, origin, key)
}

/// Node `j` holds `log`'s segments (pushed by the origin) and cosigns
/// its checkpoint, from size 0.
fn show(net: &mut Net, j: usize, origin: NodeId, log: &OwnLog) {
    let push = Push::pack(origin, 0, log.note.clone(), log.segs.clone());
    let r = net.ask(j, origin, Request::LogPush(Box::new(push)));
    assert!(matches!(r, Some(Response::LogHeld(_))), "{r:?}");
    let r = net.ask(j, origin, add_checkpoint(0, &log.note));
    assert!(matches!(r, Some(Response::Cosigned { .. })), "{r:?}");
    net.drive();
}

/// Node `j` kept fork evidence against `origin` that re-verifies.
fn assert_fork_evidence(net: &Net, j: usize, origin: NodeId) {
    let ev = net.peers[j]
        .evidence
        .iter()
        .find(|(o, what, _)| *o == origin && *what == "fork")
        .unwrap_or_else(|| panic!("node {j} kept no fork evidence"));
    let e = Evidence::decode(&ev.2).unwrap();
    assert!(
        matches!(e.check(), Ok(EvidenceKind::Fork { .. })),
        "{:?}",
        e.check()
    );
}

/// Node `j` recorded the spread alert, after checking its evidence.
fn assert_heard(net: &mut Net, j: usize) {
    let alerts = net.alerts(j);
    assert!(
        alerts.iter().any(|a| a.contains("proven by evidence")),
        "node {j}: {alerts:?}"
    );
}

fn fork_alerts(net: &mut Net, j: usize) -> Vec<String> {
    net.alerts(j)
        .into_iter()
        .filter(|a| a.contains("shown to different witnesses"))
        .collect()
}

/// An origin shows one history to one witness and another to the other,
/// each consistent on its own. The witnesses tell each other what they
/// cosigned and both report the fork, with evidence anyone re-checks.
#[test]
fn witnesses_shown_different_histories_of_one_size_find_the_fork() {
    let (mut net, origin, key) = two_witnesses();
    let mut h1 = OwnLog::new(&key);
    h1.seal(3, T0);
    let mut h2 = OwnLog::forked(&key, 1);
    h2.seal(3, T0);
    show(&mut net, 1, origin, &h1);
    show(&mut net, 2, origin, &h2);
    for j in [1, 2] {
        let found = fork_alerts(&mut net, j);
        assert!(!found.is_empty(), "node {j}: {:?}", net.alerts(j));
        assert_fork_evidence(&net, j, origin);
    }
    // the origin (and so every member) hears of it, checked
    assert_heard(&mut net, 0);
}

/// The same, where the histories have different sizes: the witness with
/// the larger one proves the other's size from its replica's tiles.
#[test]
fn witnesses_shown_different_histories_of_different_sizes_find_the_fork() {
    let (mut net, origin, key) = two_witnesses();
    let mut h1 = OwnLog::new(&key);
    h1.seal(3, T0);
    let mut h2 = OwnLog::forked(&key, 1);
    h2.seal(5, T0);
    show(&mut net, 1, origin, &h1);
    show(&mut net, 2, origin, &h2);
    let found = fork_alerts(&mut net, 2);
    assert!(
        found.iter().any(|a| a.contains("different history")),
        "node 2 (the larger) proves it: {:?}",
        net.alerts(2)
    );
    assert_fork_evidence(&net, 2, origin);
    // node 1 learns it through the spread alert, which it checks
    assert_heard(&mut net, 1);
}

/// An honest origin whose witnesses cosigned different sizes of one
/// history, a member replaying an old genuine checkpoint, a note its
/// origin did not sign, a stranger: nothing is reported.
#[test]
fn witnesses_of_one_history_at_different_sizes_report_nothing() {
    let (mut net, origin, key) = two_witnesses();
    let mut h = OwnLog::new(&key);
    h.seal(2, T0);
    let old = h.clone_note();
    h.seal(1, T0);
    show(&mut net, 1, origin, &h);
    h.seal(3, T0);
    show(&mut net, 2, origin, &h);
    // node 2 (the larger) proved node 1's size from its tiles
    let reads = |net: &Net| {
        net.peers[2]
            .trace
            .iter()
            .filter(|k| *k == "readlog")
            .count()
    };
    assert_eq!(reads(&net), 1);
    let replay = |net: &mut Net| {
        let from = net.peers[1].id();
        let note = old.clone();
        let r = net.ask(2, from, Request::LogSeen { origin, note });
        assert!(
            matches!(r, Some(Response::LogSeen { note: Some(_) })),
            "{r:?}"
        );
        net.drive();
    };
    // a replay at once reads nothing more; after PROOF_EVERY it is proven
    replay(&mut net);
    assert_eq!(reads(&net), 1);
    net.advance(crate::node::logs::gossip::PROOF_EVERY);
    replay(&mut net);
    assert_eq!(reads(&net), 2);
    for j in 0..3 {
        let alerts = net.alerts(j);
        assert!(
            !alerts.iter().any(|a| a.contains("fork")),
            "node {j}: {alerts:?}"
        );
        assert!(net.peers[j].evidence.is_empty(), "node {j}");
    }
    // a note its origin did not sign is ignored with a note, not an alert
    let mut other = OwnLog::new(&net.peers[1].key);
    other.seal(1, T0);
    let r = net.ask(
        2,
        net.peers[1].id(),
        Request::LogSeen {
            origin,
            note: other.note.clone(),
        },
    );
    assert!(matches!(r, Some(Response::LogSeen { .. })), "{r:?}");
    assert!(net.peers[2].evidence.is_empty());
    // a stranger is not answered
    let r = net.ask(
        2,
        NodeKey::generate().id(),
        Request::LogSeen { origin, note: old },
    );
    assert!(matches!(r, Some(Response::Refused { .. })), "{r:?}");
}
