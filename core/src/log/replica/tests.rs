//! The replica store against real signed segments: what it takes, what it
//! refuses with which evidence, restarts from its files, and converges to
//! the origin's log whatever order pushes come in.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::store::{LoadError, Refusal, ReplicaStore};
use super::tracker::{Problem, ReplicationTracker};
use super::usage::{Limits, Notice};
use super::wire::{Push, RefusedCode};
use super::*;
use crate::codec;
use crate::guardian::Millis;
use crate::identity::NodeKey;
use crate::log::checkpoint;
use crate::log::merkle::{self, MerkleLog, TileStore};
use crate::log::segment::{BodyKind, Segment};

/// An origin with its log, made of real signed segments (bodies are
/// opaque bytes: the replica never opens them).
struct Origin {
    key: NodeKey,
    log: MerkleLog,
    segs: Vec<Vec<u8>>,
    seqs: BTreeMap<String, u64>,
    /// Checkpoint notes by size.
    cps: BTreeMap<u64, Vec<u8>>,
}

impl Origin {
    fn new(seed: u8) -> Self {
        let key = NodeKey::from_seed([seed; 32]);
        Origin {
            log: MerkleLog::new(key.id()),
            key,
            segs: Vec::new(),
            seqs: BTreeMap::new(),
            cps: BTreeMap::new(),
        }
    }

    fn id(&self) -> NodeId {
        self.key.id()
    }

    /// Seals the source's next segment, sealed at `now`, and logs it.
    fn seal(&mut self, source: &str, now: Millis) -> u64 {
        let seq = *self.seqs.get(source).unwrap_or(&0);
        self.seal_seq(source, seq, now, b"body")
    }

    fn seal_seq(&mut self, source: &str, seq: u64, now: Millis, body: &[u8]) -> u64 {
        self.seqs.insert(source.to_string(), seq + 1);
        let s = Segment::seal(
            &self.key,
            source,
            seq,
            (now, now, 1),
            true,
            now,
            BodyKind::Age,
            [body, &now.to_be_bytes()].concat(),
        )
        .unwrap();
        let (i, _) = self.log.append(&s.leaf).unwrap();
        self.segs.push(s.bytes);
        i
    }

    fn checkpoint(&mut self) -> Vec<u8> {
        let c = self.log.checkpoint(0, &self.key).unwrap();
        self.cps.insert(c.size, c.note.clone());
        c.note
    }

    /// A push of `from..to` with the checkpoint of size `cp`.
    fn push(&self, from: u64, to: u64, cp: u64) -> Push {
        Push {
            origin: self.id(),
            from_index: from,
            segments: self.segs[from as usize..to as usize]
                .iter()
                .map(|s| serde_bytes::ByteBuf::from(s.clone()))
                .collect(),
            checkpoint: self.cps[&cp].clone(),
        }
    }
}

/// The replica's directory: writes applied as the driver would.
#[derive(Default, Clone)]
struct Dir(BTreeMap<String, Vec<u8>>);

impl Dir {
    fn apply(&mut self, writes: &[Write]) {
        for w in writes {
            match w {
                Write::Segment { path, bytes } => {
                    assert!(!self.0.contains_key(path), "{path} overwritten");
                    self.0.insert(path.clone(), bytes.clone());
                }
                Write::Tile { path, bytes } => {
                    if let Some(old) = self.0.get(path) {
                        assert_eq!(old, bytes, "{path} rewritten with other bytes");
                    }
                    self.0.insert(path.clone(), bytes.clone());
                }
                Write::Checkpoint { path, note } => {
                    self.0.insert(path.clone(), note.clone());
                }
                Write::Delete { path } => {
                    self.0.remove(path);
                }
                Write::Sync => {}
            }
        }
    }

    /// Loads `origin`'s replica from this directory into `store`.
    fn load(
        &self,
        store: &mut ReplicaStore,
        origin: &NodeId,
    ) -> Result<super::store::Loaded, LoadError> {
        let dir = format!("{}/", origin_dir(origin));
        let tiles: BTreeMap<String, Vec<u8>> = self
            .0
            .iter()
            .filter_map(|(p, b)| {
                let rest = p.strip_prefix(&dir)?;
                rest.starts_with("tile/")
                    .then(|| (rest.to_string(), b.clone()))
            })
            .collect();
        let segments: Vec<(u64, Vec<u8>)> = self
            .0
            .iter()
            .filter_map(|(p, b)| {
                let i = p.strip_prefix(&format!("{dir}segments/"))?;
                Some((i.parse().ok()?, b.clone()))
            })
            .collect();
        store.load(
            *origin,
            self.0.get(&checkpoint_path(origin)).map(Vec::as_slice),
            &tiles,
            tiles.values().map(|b| b.len() as u64).sum(),
            segments,
        )
    }

    fn held_indices(&self, origin: &NodeId) -> Vec<u64> {
        let dir = format!("{}/segments/", origin_dir(origin));
        self.0
            .keys()
            .filter_map(|p| p.strip_prefix(&dir)?.parse().ok())
            .collect()
    }
}

#[test]
fn limits_are_checked() {
    use super::store::LimitsError;
    let bad = |l| ReplicaStore::new(l).err();
    assert_eq!(
        bad(Limits {
            warn_percent: 0,
            ..Limits::default()
        }),
        Some(LimitsError::WarnPercent(0))
    );
    assert_eq!(
        bad(Limits {
            warn_percent: 101,
            ..Limits::default()
        }),
        Some(LimitsError::WarnPercent(101))
    );
    assert_eq!(
        bad(Limits {
            quota_bytes: 0,
            ..Limits::default()
        }),
        Some(LimitsError::NoQuota)
    );
}

fn store() -> ReplicaStore {
    ReplicaStore::new(Limits::default()).unwrap()
}

fn origin_with(n: u64) -> Origin {
    let mut o = Origin::new(1);
    for i in 0..n {
        o.seal(if i % 3 == 0 { "auth" } else { "web" }, 1000 + i);
        o.checkpoint();
    }
    o
}

fn accept(s: &mut ReplicaStore, d: &mut Dir, o: &Origin, p: &Push) -> Result<u64, Refusal> {
    let a = s.accept(0, o.id(), p)?;
    d.apply(&a.writes);
    Ok(a.held.size)
}

#[test]
fn accepts_in_order_in_the_origins_layout() {
    let o = origin_with(5);
    let mut s = store();
    let mut d = Dir::default();
    let a = s.accept(0, o.id(), &o.push(0, 3, 3)).unwrap();
    assert_eq!(
        a.held,
        wire::Held {
            origin: o.id(),
            size: 3,
            matches: 3
        }
    );
    assert!(a.findings.is_empty());
    let dir = origin_dir(&o.id());
    assert_eq!(
        a.writes[0],
        Write::Segment {
            path: format!("{dir}/segments/00000000000000000000"),
            bytes: o.segs[0].clone()
        }
    );
    assert!(a.writes.contains(&Write::Checkpoint {
        path: format!("{dir}/checkpoint"),
        note: o.cps[&3].clone()
    }));
    assert!(a.writes.iter().any(
        |w| matches!(w, Write::Tile { path, .. } if *path == format!("{dir}/tile/0/000.p/3"))
    ));
    // the checkpoint is replaced only once the segments and tiles are
    // durable, and the push ends with a barrier
    let cp_at = a
        .writes
        .iter()
        .position(|w| matches!(w, Write::Checkpoint { .. }))
        .unwrap();
    assert_eq!(a.writes[cp_at - 1], Write::Sync);
    assert!(a.writes[..cp_at - 1]
        .iter()
        .all(|w| matches!(w, Write::Segment { .. } | Write::Tile { .. })));
    assert_eq!(a.writes.last(), Some(&Write::Sync));
    d.apply(&a.writes);
    assert_eq!(accept(&mut s, &mut d, &o, &o.push(3, 5, 5)).unwrap(), 5);
    assert_eq!(s.verified(&o.id()), Some((5, o.log.root().unwrap())));
    // the replica's directory verifies as the origin's own log
    let tiles: BTreeMap<String, Vec<u8>> =
        d.0.iter()
            .filter_map(|(p, b)| Some((p.strip_prefix(&format!("{dir}/"))?.to_string(), b.clone())))
            .filter(|(p, _)| p.starts_with("tile/"))
            .collect();
    let segs: BTreeMap<u64, Vec<u8>> = (0..5).map(|i| (i, o.segs[i as usize].clone())).collect();
    let r = crate::log::verify::verify_spool(&o.id(), &o.cps[&5], &tiles, &segs, 0).unwrap();
    assert!(r.is_clean(), "{:?}", r.findings);
}

#[test]
fn a_gap_is_refused_and_asks_for_the_missing_range() {
    let o = origin_with(6);
    let mut s = store();
    let mut d = Dir::default();
    let r = s.accept(0, o.id(), &o.push(2, 4, 4)).unwrap_err();
    assert!(
        matches!(
            r,
            Refusal::Gap {
                held: 0,
                from_index: 2,
                ..
            }
        ),
        "{r}"
    );
    assert_eq!(
        r.ask(),
        Some(wire::Ask {
            origin: o.id(),
            from_index: 0
        })
    );
    assert_eq!(s.refused(&r).code, RefusedCode::Gap);
    accept(&mut s, &mut d, &o, &o.push(0, 2, 2)).unwrap();
    let r = s.accept(0, o.id(), &o.push(4, 6, 6)).unwrap_err();
    assert_eq!(r.ask().unwrap().from_index, 2);
    assert_eq!(s.refused(&r).size, 2);
    // a refused push changed nothing
    assert_eq!(s.held(&o.id()).size, 2);
}

#[test]
fn a_segment_not_signed_by_the_origin_is_refused() {
    let o = origin_with(2);
    let mallory = NodeKey::from_seed([66; 32]);
    // mallory's own segment, relabelled with the origin's name: its
    // signature no longer verifies
    let s0 = Segment::seal(
        &mallory,
        "auth",
        0,
        (1, 1, 1),
        true,
        1,
        BodyKind::Age,
        vec![1],
    )
    .unwrap();
    let mut seg = Segment::decode(&s0.bytes).unwrap();
    seg.header.origin = o.id();
    let forged = codec::encode(&seg).unwrap();
    let mut p = o.push(0, 2, 2);
    p.segments[1] = serde_bytes::ByteBuf::from(forged);
    let mut s = store();
    match s.accept(0, o.id(), &p).unwrap_err().finding() {
        Some(Finding::BadSegment { index: 1, why, .. }) => {
            assert!(why.contains("signature"), "{why}")
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(s.held(&o.id()).size, 0, "refused whole");
    // an edited body
    let mut p = o.push(0, 2, 2);
    let n = p.segments[0].len();
    p.segments[0][n - 1] ^= 1;
    assert!(matches!(
        s.accept(0, o.id(), &p).unwrap_err().finding(),
        Some(Finding::BadSegment { index: 0, .. })
    ));
    // a checkpoint that is not the origin's
    let mut p = o.push(0, 2, 2);
    p.checkpoint = checkpoint::sign(&mallory, 2, o.log.root().unwrap(), 0)
        .unwrap()
        .note;
    assert!(matches!(
        s.accept(0, o.id(), &p),
        Err(Refusal::Invalid { .. })
    ));
    // a checkpoint that does not cover the segments
    let p = o.push(0, 2, 1);
    let r = s.accept(0, o.id(), &p).unwrap_err();
    assert!(matches!(r, Refusal::Invalid { .. }));
    assert!(r.to_string().contains("does not cover"), "{r}");
}

#[test]
fn pushes_in_another_nodes_name_are_refused_with_evidence() {
    let victim = origin_with(2);
    let mut mallory = Origin::new(66);
    mallory.seal("auth", 5);
    mallory.checkpoint();
    let mut s = store();
    // mallory pushes its own segments claiming to be the victim
    let mut p = mallory.push(0, 1, 1);
    p.origin = victim.id();
    let r = s.accept(0, mallory.id(), &p).unwrap_err();
    assert_eq!(
        r.finding(),
        Some(&Finding::NotSender {
            sender: mallory.id(),
            claimed: victim.id()
        })
    );
    assert_eq!(s.refused(&r).code, RefusedCode::Evidence);
    // the victim's authenticated connection carrying mallory's segment
    let mut p = victim.push(0, 1, 2);
    p.segments[0] = serde_bytes::ByteBuf::from(mallory.segs[0].clone());
    assert_eq!(
        s.accept(0, victim.id(), &p).unwrap_err().finding(),
        Some(&Finding::ForeignSegment {
            origin: victim.id(),
            index: 0,
            named: mallory.id()
        })
    );
    assert_eq!(s.origins().count(), 0);
}

#[test]
fn never_overwrites_and_reports_equivocation() {
    let o = origin_with(5);
    let mut s = store();
    let mut d = Dir::default();
    accept(&mut s, &mut d, &o, &o.push(0, 3, 3)).unwrap();
    // the same segments again: nothing written
    let a = s.accept(0, o.id(), &o.push(0, 3, 3)).unwrap();
    assert!(a.writes.is_empty(), "{:?}", a.writes);
    assert_eq!(a.held.size, 3);
    // an overlapping push writes only what is new
    let a = s.accept(0, o.id(), &o.push(1, 5, 5)).unwrap();
    let segs: Vec<&String> = a
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::Segment { path, .. } => Some(path),
            _ => None,
        })
        .collect();
    assert_eq!(segs.len(), 2);
    assert!(segs[0].ends_with("00000000000000000003"));
    d.apply(&a.writes);
    // the origin signs another segment at index 1 (a forked history)
    let mut fork = Origin::new(1);
    fork.seal("auth", 1000);
    fork.seal_seq("web", 0, 1001, b"other");
    fork.checkpoint();
    let p = fork.push(1, 2, 2);
    match s.accept(0, o.id(), &p).unwrap_err().finding() {
        Some(Finding::Equivocation {
            index: 1,
            held_leaf,
            pushed,
            ..
        }) => {
            assert_eq!(*pushed, fork.segs[1]);
            assert_eq!(
                *held_leaf,
                merkle::leaf_hash(&Segment::decode(&o.segs[1]).unwrap().leaf())
            );
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(d.held_indices(&o.id()), vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_checkpoint_of_another_history_is_a_fork() {
    let o = origin_with(4);
    // the same origin key signs a checkpoint of a tree it did not push
    let mut other = Origin::new(1);
    for i in 0..4 {
        other.seal_seq("x", i, 7, b"x");
    }
    other.checkpoint();
    let mut s = store();
    let mut p = o.push(0, 4, 4);
    p.checkpoint = other.cps[&4].clone();
    match s.accept(0, o.id(), &p).unwrap_err().finding() {
        Some(Finding::Fork {
            size: 4,
            checkpoint,
            computed_root,
            first: 0,
            leaves,
            ..
        }) => {
            assert_eq!(*checkpoint, other.cps[&4]);
            assert_eq!(*computed_root, o.log.root().unwrap());
            assert_eq!(leaves.len(), 4);
        }
        r => panic!("{r:?}"),
    }
    // a checkpoint ahead of the log is checked when the log reaches it
    let mut d = Dir::default();
    let mut p = o.push(0, 2, 4);
    p.checkpoint = other.cps[&4].clone();
    accept(&mut s, &mut d, &o, &p).unwrap();
    assert_eq!(s.verified(&o.id()).unwrap().0, 0);
    assert!(matches!(
        s.accept(
            0,
            o.id(),
            &Push {
                checkpoint: o.cps[&4].clone(),
                ..o.push(2, 4, 4)
            }
        )
        .unwrap_err()
        .finding(),
        Some(Finding::TwoCheckpoints { size: 4, .. })
    ));
    let mut p = o.push(2, 4, 4);
    p.checkpoint = other.cps[&4].clone();
    assert!(matches!(
        s.accept(0, o.id(), &p).unwrap_err().finding(),
        Some(Finding::Fork {
            size: 4,
            first: 2,
            ..
        })
    ));
    // a probe with another root at the verified size
    let mut s = store();
    accept(&mut s, &mut Dir::default(), &o, &o.push(0, 4, 4)).unwrap();
    let mut probe = o.push(4, 4, 4);
    probe.checkpoint = other.cps[&4].clone();
    assert!(matches!(
        s.accept(0, o.id(), &probe).unwrap_err().finding(),
        Some(Finding::TwoCheckpoints { .. })
    ));
}

#[test]
fn sequence_gaps_are_reported_and_kept() {
    let mut o = Origin::new(1);
    o.seal("auth", 1);
    o.seal_seq("auth", 2, 2, b"b");
    o.checkpoint();
    let mut s = store();
    let a = s.accept(0, o.id(), &o.push(0, 2, 2)).unwrap();
    assert_eq!(a.held.size, 2);
    assert_eq!(
        a.findings,
        vec![Finding::Sequence {
            origin: o.id(),
            index: 1,
            source_name: "auth".into(),
            expected: 1,
            got: 2
        }]
    );
}

#[test]
fn quota_refuses_and_warns_once_each_way() {
    let mut o = Origin::new(1);
    for i in 0..12 {
        o.seal("web", i);
        o.checkpoint();
    }
    let seg = o.segs[0].len() as u64;
    let limits = Limits {
        quota_bytes: seg * 6,
        warn_percent: 50,
        retention_ms: 1,
    };
    let mut s = ReplicaStore::new(limits).unwrap();
    let mut d = Dir::default();
    let mut notices = Vec::new();
    let mut refused = None;
    for i in 0..12 {
        match s.accept(0, o.id(), &o.push(i, i + 1, i + 1)) {
            Ok(a) => {
                d.apply(&a.writes);
                notices.extend(a.notices);
            }
            Err(r) => {
                refused = Some((i, r));
                break;
            }
        }
    }
    let (at, r) = refused.expect("the quota fills");
    assert!((2..6).contains(&at), "{at}");
    let (used, quota) = s.usage(&o.id());
    assert!(used <= quota);
    assert_eq!(
        r,
        Refusal::Full {
            origin: o.id(),
            used,
            quota
        }
    );
    assert!(r.to_string().contains("full"), "{r}");
    let w = s.refused(&r);
    assert_eq!(w.code, RefusedCode::Full { used, quota });
    assert_eq!(notices.len(), 1);
    assert!(matches!(notices[0], Notice::Nearing { percent: 50, .. }));
    // a probe or a duplicate is still answered when full
    assert_eq!(
        s.accept(0, o.id(), &o.push(0, 1, at)).unwrap().held.size,
        at
    );
    // the origin hears of it
    let mut t = ReplicationTracker::new(o.id(), 1);
    t.set_replicas(vec![NodeId([9; 32])]);
    t.checkpointed(12);
    assert!(matches!(
        t.on_refused(&NodeId([9; 32]), &w),
        Some(Problem::Full { .. })
    ));
    // retention frees room (every source's newest stays) and relieves
    let (writes, notices) = s.expire(10_000);
    assert!(!writes.is_empty());
    assert!(
        notices.iter().any(|n| matches!(n, Notice::Relieved { .. })),
        "{notices:?}"
    );
    d.apply(&writes);
    assert!(s.accept(0, o.id(), &o.push(at, at + 1, at + 1)).is_ok());
}

#[test]
fn retention_deletes_old_segments_but_each_sources_newest() {
    let mut o = Origin::new(1);
    for (src, t) in [("a", 0), ("b", 0), ("a", 100), ("a", 200), ("a", 5000)] {
        o.seal(src, t);
    }
    o.checkpoint();
    let mut s = ReplicaStore::new(Limits {
        retention_ms: 1000,
        ..Limits::default()
    })
    .unwrap();
    let mut d = Dir::default();
    accept(&mut s, &mut d, &o, &o.push(0, 5, 5)).unwrap();
    assert_eq!(s.poll_timeout(), Some(1000));
    let (w, n) = s.expire(999);
    assert!(w.is_empty() && n.is_empty());
    let (w, n) = s.expire(1200);
    d.apply(&w);
    assert_eq!(n.len(), 3, "{n:?}");
    assert_eq!(d.held_indices(&o.id()), vec![1, 4]);
    // the log still verifies and loads; it keeps growing
    let mut s2 = ReplicaStore::new(Limits::default()).unwrap();
    d.load(&mut s2, &o.id()).unwrap();
    assert_eq!(s2.held(&o.id()).size, 5);
    o.seal("b", 6000);
    o.checkpoint();
    accept(&mut s2, &mut d, &o, &o.push(5, 6, 6)).unwrap();
    // re-pushing an expired index is a no-op
    assert!(s2
        .accept(0, o.id(), &o.push(0, 6, 6))
        .unwrap()
        .writes
        .is_empty());
}

#[test]
fn restart_gives_the_same_state_and_refuses_tampering() {
    let o = origin_with(300);
    let mut s = store();
    let mut d = Dir::default();
    accept(&mut s, &mut d, &o, &o.push(0, 200, 200)).unwrap();
    accept(&mut s, &mut d, &o, &o.push(200, 290, 290)).unwrap();
    let mut s2 = store();
    let loaded = d.load(&mut s2, &o.id()).unwrap();
    assert!(loaded.writes.is_empty() && loaded.notices.is_empty());
    assert_eq!(s2.held(&o.id()), s.held(&o.id()));
    assert_eq!(s2.verified(&o.id()), s.verified(&o.id()));
    assert_eq!(s2.usage(&o.id()), s.usage(&o.id()));
    // both go on the same way
    let a1 = s.accept(0, o.id(), &o.push(290, 300, 300)).unwrap();
    let a2 = s2.accept(0, o.id(), &o.push(290, 300, 300)).unwrap();
    assert_eq!(a1.writes, a2.writes);
    assert!(matches!(
        d.load(&mut s2, &o.id()),
        Err(LoadError::Twice { .. })
    ));
    let dir = origin_dir(&o.id());
    // an edited tile
    let mut bad = d.clone();
    bad.0.get_mut(&format!("{dir}/tile/0/000")).unwrap()[7] ^= 1;
    let e = bad.load(&mut store(), &o.id()).unwrap_err();
    assert!(matches!(e, LoadError::Tiles { .. }), "{e}");
    assert!(e.to_string().contains("damaged or tampered with"), "{e}");
    // an edited segment, and one swapped for another genuine one
    let mut bad = d.clone();
    let p = segment_path(&o.id(), 17);
    let n = bad.0[&p].len();
    bad.0.get_mut(&p).unwrap()[n - 2] ^= 1;
    let e = bad.load(&mut store(), &o.id()).unwrap_err();
    assert!(matches!(e, LoadError::Segment { index: 17, .. }), "{e}");
    let mut bad = d.clone();
    bad.0.insert(p, o.segs[18].clone());
    let e = bad.load(&mut store(), &o.id()).unwrap_err();
    assert!(e.to_string().contains("not the log's leaf"), "{e}");
    // a checkpoint edited, or another node's
    let mut bad = d.clone();
    let cp = checkpoint_path(&o.id());
    bad.0.get_mut(&cp).unwrap()[3] ^= 1;
    assert!(matches!(
        bad.load(&mut store(), &o.id()),
        Err(LoadError::Checkpoint { .. })
    ));
    let other = NodeKey::from_seed([3; 32]).id();
    let e = store()
        .load(
            other,
            Some(&d.0[&cp]),
            &BTreeMap::<String, Vec<u8>>::new(),
            0,
            vec![],
        )
        .unwrap_err();
    assert!(matches!(e, LoadError::Checkpoint { .. }), "{e}");
}

#[test]
fn segments_beyond_the_checkpoint_are_taken_again_or_discarded() {
    let o = origin_with(10);
    let mut s = store();
    let mut d = Dir::default();
    accept(&mut s, &mut d, &o, &o.push(0, 4, 4)).unwrap();
    // a push below its checkpoint: held, not yet verified
    accept(&mut s, &mut d, &o, &o.push(4, 7, 10)).unwrap();
    assert_eq!(s.verified(&o.id()).unwrap().0, 4);
    let mut s2 = store();
    let l = d.load(&mut s2, &o.id()).unwrap();
    assert_eq!(s2.held(&o.id()).size, 7);
    let mut d2 = d.clone();
    d2.apply(&l.writes);
    // the pending checkpoint was in memory only: the next push brings it
    accept(&mut s2, &mut d2, &o, &o.push(7, 10, 10)).unwrap();
    assert_eq!(s2.verified(&o.id()).unwrap(), (10, o.log.root().unwrap()));
    // a torn tail segment: it and what follows go, the origin re-pushes
    let mut bad = d.clone();
    let p = segment_path(&o.id(), 5);
    bad.0.get_mut(&p).unwrap().truncate(10);
    let mut s3 = store();
    let l = bad.load(&mut s3, &o.id()).unwrap();
    assert_eq!(s3.held(&o.id()).size, 5);
    assert_eq!(l.notices.len(), 2, "{:?}", l.notices);
    assert!(l.writes.contains(&Write::Delete { path: p }));
    bad.apply(&l.writes);
    accept(&mut s3, &mut bad, &o, &o.push(5, 10, 10)).unwrap();
    assert_eq!(s3.verified(&o.id()).unwrap(), (10, o.log.root().unwrap()));
}

/// Real segments from a real spool, replicated to the peers placement
/// picks in a test mesh; the origin's tracker sees them replicated.
#[test]
fn a_spools_log_replicates_to_its_chosen_peers() {
    use crate::log::line::{Line, Sender};
    use crate::log::recipients::{Recipient, Recipients};
    use crate::log::segmenter::Limits as SegLimits;
    use crate::log::spool::resume::OnDisk;
    use crate::log::spool::{Output, SourcePolicy, Spool, SpoolConfig, WhenFull};

    let mesh = crate::testkit::mesh(5);
    let key = Arc::new(NodeKey::from_secret(&mesh.nodes[0].key.secret()));
    let origin = key.id();
    let auditor = age::x25519::Identity::generate();
    let recipients =
        Arc::new(Recipients::new(vec![Recipient::X25519(auditor.to_public())], None).unwrap());
    let cfg = SpoolConfig {
        limits: SegLimits {
            max_bytes: 4096,
            max_lines: 3,
            max_age_ms: 1000,
        },
        sources: vec![SourcePolicy {
            name: "auth".into(),
            confidential: true,
            retention_ms: 0,
        }],
        quota_bytes: 1 << 30,
        warn_percent: 80,
        when_full: WhenFull::Refuse,
        checkpoint_ms: 60_000,
    };
    let empty: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut sp = Spool::resume(
        key.clone(),
        recipients,
        cfg,
        OnDisk {
            checkpoint: None,
            tiles: &empty,
            tiles_bytes: 0,
            segments: vec![],
            journals: vec![],
        },
        0,
    )
    .unwrap();
    let mut segs: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut spool_tiles: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut note = Vec::new();
    let mut rng = rand::rngs::OsRng;
    for i in 0..20u64 {
        let line = Line {
            time: 1000 + i,
            sender: Sender::default(),
            msg: format!("line {i}").into_bytes(),
        };
        sp.lines(1000 + i, "auth", &[line], Some(i), &mut rng);
        sp.commit(1000 + i);
        while let Some(o) = sp.poll_output() {
            match o {
                Output::WriteSegment { index, bytes, .. } => {
                    segs.insert(index, bytes);
                }
                Output::WriteTile(t) => {
                    spool_tiles.insert(t.path, t.bytes);
                }
                Output::ReplaceCheckpoint { note: n } => note = n,
                Output::Sync { id } => sp.written(1000 + i, id),
                _ => {}
            }
        }
    }
    let size = checkpoint::open(&note, &origin).unwrap().0;
    assert!(size >= 6, "{size}");
    let mut t = ReplicationTracker::new(origin, 2);
    t.set_members(mesh.roster.members());
    t.checkpointed(size);
    let peers = t.replicas().to_vec();
    assert_eq!(peers.len(), 2);
    let mut stores: BTreeMap<NodeId, (ReplicaStore, Dir)> = peers
        .iter()
        .map(|p| (*p, (store(), Dir::default())))
        .collect();
    let mut replicated = Vec::new();
    // drive until nothing is left to push
    loop {
        let mut any = false;
        for p in &peers {
            let Some(range) = t.next_push(p) else {
                continue;
            };
            any = true;
            let push = Push::pack(
                origin,
                range.start,
                note.clone(),
                (range.clone()).map(|i| segs[&i].clone()),
            );
            t.sent(p, push.from_index..push.end().unwrap());
            let bytes = push.encode().unwrap();
            let (st, dir) = stores.get_mut(p).unwrap();
            match st.accept(0, origin, &Push::decode(&bytes).unwrap()) {
                Ok(a) => {
                    dir.apply(&a.writes);
                    let h = wire::Held::decode(&a.held.encode().unwrap()).unwrap();
                    replicated.extend(t.on_held(p, &h));
                }
                Err(r) => panic!("{r}"),
            }
        }
        if !any {
            break;
        }
    }
    assert_eq!(t.replicated_size(), size);
    assert_eq!(replicated, vec![0..size]);
    for (p, (st, dir)) in &stores {
        assert_eq!(st.held(&origin).size, size, "{p:?}");
        // the replica's tiles are the spool's, path for path
        let pre = format!("{}/", origin_dir(&origin));
        for (path, b) in dir.0.iter().filter(|(p, _)| p.contains("/tile/")) {
            let rel = path.strip_prefix(&pre).unwrap();
            assert_eq!(spool_tiles.tile(rel), Some(b.as_slice()), "{rel}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Pushes in any order, duplicated or dropped, never leave a gap or two
    /// segments at one index; once the origin catches the replica up (by
    /// what it says it holds) it holds the origin's whole log, verified.
    #[test]
    fn any_push_order_converges(
        n in 1u64..40,
        pushes in proptest::collection::vec((any::<prop::sample::Index>(), 1u64..12, any::<bool>()), 0..30),
    ) {
        let o = origin_with(n);
        let mut s = store();
        let mut d = Dir::default();
        for (from, len, latest) in pushes {
            let from = from.index(n as usize) as u64;
            let to = (from + len).min(n);
            let cp = if latest { n } else { to };
            let held_before = s.held(&o.id()).size;
            match s.accept(0, o.id(), &o.push(from, to, cp)) {
                Ok(a) => {
                    prop_assert!(a.findings.is_empty());
                    d.apply(&a.writes);
                    prop_assert_eq!(a.held.size, held_before.max(to));
                }
                Err(Refusal::Gap { held, .. }) => prop_assert!(from > held),
                Err(r) => return Err(TestCaseError::fail(r.to_string())),
            }
            let held = s.held(&o.id()).size;
            prop_assert_eq!(d.held_indices(&o.id()), (0..held).collect::<Vec<_>>());
            for i in 0..held {
                prop_assert_eq!(&d.0[&segment_path(&o.id(), i)], &o.segs[i as usize]);
            }
        }
        // catch up from what the replica says it holds
        let mut t = ReplicationTracker::new(o.id(), 1);
        let peer = NodeId([2; 32]);
        t.set_replicas(vec![peer]);
        t.checkpointed(n);
        while let Some(r) = t.next_push(&peer) {
            let p = Push::pack(o.id(), r.start, o.cps[&n].clone(), r.map(|i| o.segs[i as usize].clone()));
            t.sent(&peer, p.from_index..p.end().unwrap());
            let a = s.accept(0, o.id(), &p).unwrap();
            d.apply(&a.writes);
            t.on_held(&peer, &a.held);
        }
        prop_assert_eq!(t.replicated_size(), n);
        prop_assert_eq!(s.verified(&o.id()), Some((n, o.log.root().unwrap())));
        let mut s2 = store();
        d.load(&mut s2, &o.id()).unwrap();
        prop_assert_eq!(s2.verified(&o.id()), s.verified(&o.id()));
    }

    /// Whatever bytes the replica's files hold, loading never panics.
    #[test]
    fn arbitrary_files_never_panic(
        cp in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        tile in proptest::collection::vec(any::<u8>(), 0..200),
        seg in proptest::collection::vec(any::<u8>(), 0..300),
        idx in 0u64..4,
    ) {
        let o = origin_with(3);
        let mut d = Dir::default();
        let mut s = store();
        let a = s.accept(0, o.id(), &o.push(0, 3, 3)).unwrap();
        d.apply(&a.writes);
        let dir = origin_dir(&o.id());
        let mut bad = d.clone();
        if let Some(cp) = cp {
            bad.0.insert(checkpoint_path(&o.id()), cp);
        }
        bad.0.insert(format!("{dir}/tile/0/000.p/3"), tile);
        bad.0.insert(segment_path(&o.id(), idx), seg);
        let _ = bad.load(&mut store(), &o.id());
    }

    /// Arbitrary pushes from the origin's authenticated connection never
    /// panic, and never leave a gap.
    #[test]
    fn arbitrary_pushes_never_panic(
        from in 0u64..5,
        segs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..4),
        flip in any::<prop::sample::Index>(),
    ) {
        let o = origin_with(4);
        let mut s = store();
        let p = Push {
            origin: o.id(),
            from_index: from,
            segments: segs.into_iter().map(serde_bytes::ByteBuf::from).collect(),
            checkpoint: o.cps[&4].clone(),
        };
        let _ = s.accept(0, o.id(), &p);
        prop_assert_eq!(s.held(&o.id()).size, 0);
        let mut p = o.push(0, 4, 4);
        let i = flip.index(p.segments.len());
        let n = p.segments[i].len();
        p.segments[i][flip.index(n)] ^= 0x40;
        let _ = s.accept(0, o.id(), &p);
    }
}

/// A crash after any single write of a run of pushes, keeping none, all or
/// every other one of the writes not yet synced: the replica always loads
/// (a crash never looks like tampering), and holds at least what its last
/// `Held` said.
#[test]
fn a_crash_anywhere_loses_nothing_held_was_sent_for() {
    let o = origin_with(300);
    let pushes = [
        (0, 3, 3),
        (3, 120, 200),
        (120, 200, 200),
        (200, 280, 300),
        (280, 300, 300),
    ];
    // the whole run's writes, with the Held each push sends after them
    let mut s = store();
    let mut run: Vec<(Write, Option<u64>)> = Vec::new();
    for (from, to, cp) in pushes {
        let a = s.accept(0, o.id(), &o.push(from, to, cp)).unwrap();
        let n = a.writes.len();
        for (i, w) in a.writes.into_iter().enumerate() {
            run.push((w, (i + 1 == n).then_some(a.held.size)));
        }
    }
    let keeps: [fn(usize) -> bool; 3] = [|_| false, |_| true, |i| i % 2 == 0];
    // every write around a barrier or a checkpoint, and a sample of the
    // others (loading verifies every segment: each point costs)
    let points: Vec<usize> = (0..=run.len())
        .filter(|&i| {
            i % 29 == 0
                || i == run.len()
                || run[i.saturating_sub(2)..(i + 2).min(run.len())]
                    .iter()
                    .any(|(w, _)| matches!(w, Write::Sync | Write::Checkpoint { .. }))
        })
        .collect();
    for crash_at in points {
        for keep in keeps {
            let mut durable = Dir::default();
            let mut pending: Vec<Write> = Vec::new();
            let mut acked = 0;
            for (w, held) in &run[..crash_at] {
                if *w == Write::Sync {
                    durable.apply(&pending);
                    pending.clear();
                } else {
                    pending.push(w.clone());
                }
                if let Some(h) = held {
                    acked = *h;
                }
            }
            let kept: Vec<Write> = pending
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, w)| w)
                .collect();
            durable.apply(&kept);
            let mut s2 = store();
            let l = durable
                .load(&mut s2, &o.id())
                .unwrap_or_else(|e| panic!("crash at {crash_at}: {e}"));
            durable.apply(&l.writes);
            let held = s2.held(&o.id()).size;
            assert!(
                held >= acked,
                "crash at {crash_at}: holds {held}, acked {acked}"
            );
            // and it catches up from there to the origin's log
            let mut at = held;
            while at < 300 {
                let to = (at + 256).min(300);
                let a = s2.accept(0, o.id(), &o.push(at, to, 300)).unwrap();
                durable.apply(&a.writes);
                at = a.held.size;
            }
            // the checkpoint, if what was held already covered it
            let a = s2.accept(0, o.id(), &o.push(at, at, 300)).unwrap();
            durable.apply(&a.writes);
            assert_eq!(s2.verified(&o.id()), Some((300, o.log.root().unwrap())));
            let mut s3 = store();
            durable.load(&mut s3, &o.id()).unwrap();
        }
    }
}
