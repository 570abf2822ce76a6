use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::cosign::{self, CosignError};
use super::evidence::{Evidence, EvidenceError, EvidenceKind, Fork, Rollback};
use super::request::{AddCheckpoint, RequestError};
use super::state::{StateError, WitnessIndex, WitnessRecord};
use super::*;
use crate::identity::NodeKey;
use crate::log::merkle::MerkleLog;

/// One history of an origin's log: the tree, its tiles, and its root at
/// every size.
#[derive(Clone)]
struct Log {
    log: MerkleLog,
    tiles: BTreeMap<String, Vec<u8>>,
    roots: Vec<Hash>,
}

impl Log {
    fn new(key: &NodeKey) -> Self {
        Log {
            log: MerkleLog::new(key.id()),
            tiles: BTreeMap::new(),
            roots: vec![EMPTY_ROOT],
        }
    }

    fn append(&mut self, leaf: &[u8]) {
        for w in self.log.append(leaf).unwrap().1 {
            self.tiles.insert(w.path, w.bytes);
        }
        self.roots.push(self.log.root().unwrap());
    }

    fn grow(&mut self, tag: &str, n: usize) {
        for i in 0..n {
            self.append(format!("{tag} {} {i}", self.size()).as_bytes());
        }
    }

    fn size(&self) -> u64 {
        self.log.size()
    }

    fn root(&self) -> Hash {
        self.log.root().unwrap()
    }

    fn note(&self, key: &NodeKey) -> Vec<u8> {
        checkpoint::sign(key, self.size(), self.root(), 0)
            .unwrap()
            .note
    }

    fn request(&self, key: &NodeKey, old: u64) -> AddCheckpoint {
        let proof = if old == 0 || old > self.size() {
            Vec::new()
        } else {
            merkle::prove_consistency(old, self.size(), self.root(), &self.tiles).unwrap()
        };
        AddCheckpoint {
            old_size: old,
            proof,
            note: self.note(key),
        }
    }

    fn prefix(&self, from: u64) -> PrefixProof {
        let (prefix_root, proof) =
            merkle::prove_prefix(from, self.size(), self.root(), &self.tiles).unwrap();
        PrefixProof { prefix_root, proof }
    }
}

struct Setup {
    origin: NodeKey,
    witness: Witness,
    /// The state files, by origin, as a driver would keep them.
    disk: BTreeMap<NodeId, Vec<u8>>,
    /// The index file.
    index: Option<Vec<u8>>,
}

fn setup() -> Setup {
    Setup {
        origin: NodeKey::from_seed([1; 32]),
        witness: Witness::new(Arc::new(NodeKey::from_seed([2; 32]))),
        disk: BTreeMap::new(),
        index: None,
    }
}

impl Setup {
    fn add(&mut self, now: Millis, req: &AddCheckpoint) -> Result<Cosigned, Refusal> {
        let p = self.witness.add_checkpoint(now, &self.origin.id(), req)?;
        for w in p.writes() {
            match w.file {
                WitnessFile::Origin(o) => {
                    self.disk.insert(o, w.bytes.clone());
                }
                WitnessFile::Index => self.index = Some(w.bytes.clone()),
            }
        }
        Ok(p.committed())
    }

    fn restart(&mut self) {
        self.witness = Witness::load(
            Arc::new(NodeKey::from_seed([2; 32])),
            self.index.as_deref(),
            self.disk.values().cloned().collect::<Vec<_>>(),
        )
        .unwrap();
    }
}

#[test]
fn accepts_a_first_checkpoint_then_consistent_ones() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 10);
    let c = s.add(1_700_000_000_123, &a.request(&key, 0)).unwrap();
    assert_eq!((c.size, c.root), (10, a.root()));
    assert_eq!(c.cosignature.time, 1_700_000_000);
    // the cosigned note still opens as the origin's checkpoint, and its
    // cosignature verifies for this witness only
    assert_eq!(
        checkpoint::open(&c.cosignature.note, &key.id()).unwrap(),
        (10, a.root())
    );
    let wid = s.witness.id();
    assert_eq!(
        cosign::verify(&c.cosignature.note, &wid).unwrap(),
        1_700_000_000
    );
    assert!(matches!(
        cosign::verify(&c.cosignature.note, &key.id()),
        Err(CosignError::Missing { .. })
    ));
    // the response line, appended to the origin's note, verifies too
    let mut with_line = a.note(&key);
    with_line.extend_from_slice(&c.cosignature.line);
    assert_eq!(cosign::verify(&with_line, &wid).unwrap(), 1_700_000_000);
    let text = String::from_utf8(c.cosignature.line.clone()).unwrap();
    assert!(
        text.starts_with(&format!("— keyward/witness/{wid} ")),
        "{text}"
    );
    // the state write is the record of what was cosigned
    let r: WitnessRecord = codec::decode(&s.disk[&key.id()]).unwrap();
    assert_eq!((r.size, r.root, r.time), (10, a.root().0, 1_700_000_000));

    for (i, n) in [1usize, 0, 255, 300, 7].into_iter().enumerate() {
        let old = a.size();
        a.grow("a", n);
        let c = s
            .add(1_700_000_100_000 + i as u64, &a.request(&key, old))
            .unwrap();
        assert_eq!((c.size, c.root), (a.size(), a.root()));
    }
    assert_eq!(s.witness.last(&key.id()).unwrap().size, a.size());
}

#[test]
fn cosignature_key_id_and_vkey_follow_c2sp() {
    let w = NodeKey::from_seed([2; 32]).id();
    let mut k = vec![0x04];
    k.extend_from_slice(&w.0);
    assert_eq!(
        cosign::key_id(&w),
        signed_note::key_id(&format!("keyward/witness/{w}"), &k)
    );
    let v = cosign::verifier_key(&w);
    let parts: Vec<&str> = v.split('+').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1], format!("{:08x}", cosign::key_id(&w)));
}

#[test]
fn cosignatures_of_one_checkpoint_merge_and_others_do_not() {
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 3);
    let note = a.note(&key);
    let (w1, w2) = (NodeKey::from_seed([5; 32]), NodeKey::from_seed([6; 32]));
    let c1 = cosign::cosign(&w1, &note, 10).unwrap().note;
    let c2 = cosign::cosign(&w2, &note, 11).unwrap().note;
    let m = cosign::merge(&c1, &c2).unwrap();
    assert_eq!(cosign::verify(&m, &w1.id()).unwrap(), 10);
    assert_eq!(cosign::verify(&m, &w2.id()).unwrap(), 11);
    assert!(crate::log::checkpoint::open(&m, &key.id()).is_ok());
    assert_eq!(cosign::merge(&m, &c2).unwrap(), m, "nothing twice");
    assert_eq!(cosign::merge(&note, &c1).unwrap(), c1);
    // another checkpoint's cosignature is not carried over
    a.grow("a", 1);
    let later = cosign::cosign(&w2, &a.note(&key), 12).unwrap().note;
    assert_eq!(cosign::merge(&c1, &later), None);
    assert_eq!(cosign::merge(&c1, b"not a note"), None);
    assert_eq!(cosign::merge(b"", &c1), None);
}

#[test]
fn an_edited_or_misattributed_cosignature_is_refused() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 3);
    let c = s.add(5_000, &a.request(&key, 0)).unwrap();
    let wid = s.witness.id();
    // another checkpoint text under the same cosignature line
    let mut b = Log::new(&key);
    b.grow("b", 3);
    let mut forged = b.note(&key);
    forged.extend_from_slice(&c.cosignature.line);
    assert!(matches!(
        cosign::verify(&forged, &wid),
        Err(CosignError::Invalid { .. })
    ));
    // a time changed in the line
    let line = String::from_utf8(c.cosignature.line.clone()).unwrap();
    let b64 = line.trim_end().rsplit(' ').next().unwrap();
    use base64::Engine;
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    raw[4 + 7] ^= 1;
    let edited = line.replace(b64, &base64::engine::general_purpose::STANDARD.encode(raw));
    let mut n = a.note(&key);
    n.extend_from_slice(edited.as_bytes());
    assert!(matches!(
        cosign::verify(&n, &wid),
        Err(CosignError::Invalid { .. })
    ));
    assert!(matches!(
        cosign::cosign(&NodeKey::from_seed([2; 32]), &a.note(&key), u64::MAX),
        Err(CosignError::Time { .. })
    ));
}

#[test]
fn a_wrong_old_size_is_a_conflict_and_the_retry_succeeds() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 5);
    // first contact with a non-zero old size: the witness says 0
    assert!(matches!(
        s.add(1, &a.request(&key, 3)),
        Err(Refusal::Conflict {
            old: 3,
            last_size: 0
        })
    ));
    s.add(1, &a.request(&key, 0)).unwrap();
    a.grow("a", 5);
    assert!(matches!(
        s.add(2, &a.request(&key, 4)),
        Err(Refusal::Conflict {
            old: 4,
            last_size: 5
        })
    ));
    assert!(matches!(
        s.add(2, &a.request(&key, 0)),
        Err(Refusal::Conflict { last_size: 5, .. })
    ));
    s.add(2, &a.request(&key, 5)).unwrap();
    // an old size above the checkpoint's is malformed
    let mut r = a.request(&key, 10);
    r.old_size = 11;
    assert!(matches!(
        s.add(3, &r),
        Err(Refusal::OldTooLarge { old: 11, size: 10 })
    ));
    // the same checkpoint again is cosigned again (C2SP: old = size)
    s.add(4, &a.request(&key, 10)).unwrap();
}

#[test]
fn a_bad_proof_or_a_foreign_note_is_refused() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 6);
    s.add(1, &a.request(&key, 0)).unwrap();
    a.grow("a", 6);
    let mut r = a.request(&key, 6);
    r.proof[0].0[0] ^= 1;
    assert!(matches!(
        s.add(2, &r),
        Err(Refusal::BadProof {
            old: 6,
            size: 12,
            ..
        })
    ));
    r.proof = vec![Hash([0; 32]); 64];
    assert!(matches!(
        s.add(2, &r),
        Err(Refusal::ProofTooLong { len: 64 })
    ));
    // a checkpoint signed by someone else, or of another origin
    let other = NodeKey::from_seed([3; 32]);
    let mut o = Log::new(&other);
    o.grow("o", 12);
    assert!(matches!(
        s.add(2, &o.request(&other, 6)),
        Err(Refusal::Checkpoint { .. })
    ));
    // a first checkpoint with a proof
    let mut t = setup();
    let mut r = a.request(&key, 0);
    r.proof = vec![Hash([1; 32])];
    assert!(matches!(t.add(1, &r), Err(Refusal::BadProof { .. })));
    // nothing was cosigned by any of these
    assert_eq!(s.witness.last(&key.id()).unwrap().size, 6);
}

#[test]
fn a_rollback_is_refused_with_evidence() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 4);
    let old = a.clone();
    a.grow("a", 6);
    s.add(1, &a.request(&key, 0)).unwrap();
    for req in [old.request(&key, 0), old.request(&key, 10)] {
        let Err(Refusal::Rollback {
            last_size: 10,
            size: 4,
            evidence,
        }) = s.add(2, &req)
        else {
            panic!("rollback not refused");
        };
        assert_eq!(
            evidence.check().unwrap(),
            EvidenceKind::Rollback {
                origin: key.id(),
                cosigned: 10,
                offered: 4
            }
        );
        let back = Evidence::decode(&evidence.encode().unwrap()).unwrap();
        assert_eq!(&back, evidence.as_ref());
    }
    assert_eq!(s.witness.last(&key.id()).unwrap().size, 10);
}

#[test]
fn a_fork_at_the_same_size_is_refused_with_evidence() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 5);
    let mut b = a.clone();
    a.grow("a", 5);
    b.grow("b", 5);
    s.add(1, &a.request(&key, 0)).unwrap();
    let Err(Refusal::Fork { size: 10, evidence }) = s.add(2, &b.request(&key, 10)) else {
        panic!("fork not refused");
    };
    assert_eq!(
        evidence.check().unwrap(),
        EvidenceKind::Fork {
            origin: key.id(),
            a: 10,
            b: 10
        }
    );
    // the witness did not move
    assert_eq!(s.witness.last(&key.id()).unwrap().root, a.root().0);
    // gossip of the other side shows it too
    let Observation::Fork(e) = s.witness.observe(&key.id(), &b.note(&key)).unwrap() else {
        panic!("gossip did not show the fork");
    };
    e.check().unwrap();
}

#[test]
fn gossip_compares_and_a_proof_settles_a_fork() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let id = key.id();
    let mut a = Log::new(&key);
    a.grow("common", 7);
    let mut b = a.clone();
    a.grow("a", 5);
    b.grow("b", 13);
    s.add(1, &a.request(&key, 0)).unwrap(); // cosigned (12, A)
    let w = &s.witness;
    assert_eq!(
        w.observe(&id, &a.note(&key)).unwrap(),
        Observation::Consistent
    );
    assert_eq!(
        w.observe(&NodeKey::from_seed([9; 32]).id(), &a.note(&key))
            .map_err(|_| ())
            .err(),
        Some(())
    );
    // another peer was shown B at 20: not evidence until a proof
    assert_eq!(
        w.observe(&id, &b.note(&key)).unwrap(),
        Observation::NeedProof { from: 12, to: 20 }
    );
    let Observation::Fork(e) = w
        .observe_with_proof(&id, &b.note(&key), &b.prefix(12))
        .unwrap()
    else {
        panic!("the proof did not show the fork");
    };
    assert_eq!(
        e.check().unwrap(),
        EvidenceKind::Fork {
            origin: id,
            a: 12,
            b: 20
        }
    );
    let back = Evidence::decode(&e.encode().unwrap()).unwrap();
    back.check().unwrap();
    // a proof that does not verify proves nothing
    let mut bad = b.prefix(12);
    bad.prefix_root.0[0] ^= 1;
    assert!(matches!(
        w.observe_with_proof(&id, &b.note(&key), &bad),
        Err(ObserveError::BadProof { .. })
    ));
    // an honest larger checkpoint is consistent
    let mut a2 = a.clone();
    a2.grow("a", 9);
    assert_eq!(
        w.observe_with_proof(&id, &a2.note(&key), &a2.prefix(12))
            .unwrap(),
        Observation::Consistent
    );
    // a smaller one from the other history: proved against our own tree
    let mut b9 = Log::new(&key);
    b9.grow("common", 7);
    b9.grow("b", 2);
    assert_eq!(
        w.observe(&id, &b9.note(&key)).unwrap(),
        Observation::NeedProof { from: 9, to: 12 }
    );
    let Observation::Fork(e) = w
        .observe_with_proof(&id, &b9.note(&key), &a.prefix(9))
        .unwrap()
    else {
        panic!("the smaller fork was not shown");
    };
    assert_eq!(
        e.check().unwrap(),
        EvidenceKind::Fork {
            origin: id,
            a: 9,
            b: 12
        }
    );
    // and a smaller one of our history is consistent
    let mut a5 = Log::new(&key);
    a5.grow("common", 5);
    assert_eq!(
        w.observe_with_proof(&id, &a5.note(&key), &a.prefix(5))
            .unwrap(),
        Observation::Consistent
    );
}

#[test]
fn a_restarted_witness_still_refuses_a_rollback() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 3);
    let old = a.clone();
    s.add(1, &a.request(&key, 0)).unwrap();
    a.grow("a", 3);
    s.add(2, &a.request(&key, 3)).unwrap();
    s.restart();
    assert_eq!(s.witness.last(&key.id()).unwrap().size, 6);
    assert!(matches!(
        s.add(3, &old.request(&key, 0)),
        Err(Refusal::Rollback { .. })
    ));
    assert!(matches!(
        s.add(3, &a.request(&key, 0)),
        Err(Refusal::Conflict { last_size: 6, .. })
    ));
    a.grow("a", 1);
    s.add(4, &a.request(&key, 6)).unwrap();
}

#[test]
fn a_tampered_state_is_refused() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 3);
    s.add(1_000, &a.request(&key, 0)).unwrap();
    let good = s.disk[&key.id()].clone();
    let ix = s.index.clone().unwrap();
    let ix = Some(ix.as_slice());
    let wkey = || Arc::new(NodeKey::from_seed([2; 32]));
    Witness::load(wkey(), ix, [&good]).unwrap();
    // a flipped byte anywhere
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        assert!(Witness::load(wkey(), ix, [&bad]).is_err(), "byte {i}");
    }
    // truncated
    assert!(matches!(
        Witness::load(wkey(), ix, [&good[..good.len() - 3]]),
        Err(StateError::Decode { index: 0, .. })
    ));
    // a re-encoded record that lowers the size
    let r: WitnessRecord = codec::decode(&good).unwrap();
    let lowered = codec::encode(&WitnessRecord {
        size: 1,
        ..r.clone()
    })
    .unwrap();
    assert!(matches!(
        Witness::load(wkey(), ix, [&lowered]),
        Err(StateError::Corrupt { index: 0, .. })
    ));
    // an older genuine checkpoint without this witness's cosignature
    let mut older = Log::new(&key);
    older.grow("a", 2);
    let swapped = codec::encode(&WitnessRecord {
        size: 2,
        root: older.root().0,
        note: older.note(&key),
        ..r.clone()
    })
    .unwrap();
    let e = Witness::load(wkey(), ix, [&swapped]).err().unwrap();
    assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
    // another witness's record
    assert!(matches!(
        Witness::load(Arc::new(NodeKey::from_seed([4; 32])), ix, [&good]),
        Err(StateError::Corrupt { .. })
    ));
    // a time that is not the cosignature's
    let retimed = codec::encode(&WitnessRecord { time: 7, ..r }).unwrap();
    assert!(Witness::load(wkey(), ix, [&retimed]).is_err());
    // two records for one origin
    let e = Witness::load(wkey(), ix, [&good, &good]).err().unwrap();
    assert!(matches!(e, StateError::Duplicate { .. }));
    assert!(e.to_string().contains("restore"), "{e}");
    // a record lost on its own, or the index lost
    let e = Witness::load(wkey(), ix, Vec::<Vec<u8>>::new())
        .err()
        .unwrap();
    assert!(matches!(e, StateError::Missing { .. }), "{e}");
    let e = Witness::load(wkey(), None, [&good]).err().unwrap();
    assert!(matches!(e, StateError::NoIndex { records: 1 }), "{e}");
    assert!(matches!(
        Witness::load(wkey(), Some(&good[..]), [&good]),
        Err(StateError::Index(_))
    ));
    // a record the index does not list yet (a crash between the two
    // writes) loads
    Witness::load(
        wkey(),
        Some(&codec::encode(&WitnessIndex { origins: vec![] }).unwrap()[..]),
        [&good],
    )
    .unwrap();
}

#[test]
fn two_witnesses_shown_different_histories_find_out_by_gossip() {
    let key = NodeKey::from_seed([1; 32]);
    let id = key.id();
    let mut w1 = setup();
    let mut w2 = Setup {
        origin: NodeKey::from_seed([1; 32]),
        witness: Witness::new(Arc::new(NodeKey::from_seed([7; 32]))),
        disk: BTreeMap::new(),
        index: None,
    };
    let mut a = Log::new(&key);
    a.grow("c", 4);
    let mut b = a.clone();
    a.grow("a", 4);
    b.grow("b", 4);
    // the origin shows A to one witness and B to the other: each cosigns
    let c1 = w1.add(1_000, &a.request(&key, 0)).unwrap();
    let c2 = w2.add(1_000, &b.request(&key, 0)).unwrap();
    // the cosigned notes are gossiped, each with its witness's cosignature
    assert_eq!(
        cosign::verify(&c2.cosignature.note, &w2.witness.id()).unwrap(),
        1
    );
    for (w, seen) in [(&w1, &c2), (&w2, &c1)] {
        let Observation::Fork(e) = w.witness.observe(&id, &seen.cosignature.note).unwrap() else {
            panic!("the fork went unnoticed");
        };
        assert_eq!(
            e.check().unwrap(),
            EvidenceKind::Fork {
                origin: id,
                a: 8,
                b: 8
            }
        );
        // evidence carries the origin's signature only, not the witnesses'
        let Evidence::Fork(f) = e.as_ref() else {
            unreachable!()
        };
        assert!(cosign::verify(&f.a, &w1.witness.id()).is_err());
        assert!(cosign::verify(&f.b, &w2.witness.id()).is_err());
    }
}

#[test]
fn an_empty_log_and_extra_signature_lines() {
    let mut s = setup();
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    assert_eq!(
        s.witness.observe(&key.id(), &a.note(&key)).unwrap(),
        Observation::NoState
    );
    // an empty log is cosigned; then anything extends it, with no proof
    let c = s.add(1, &a.request(&key, 0)).unwrap();
    assert_eq!(c.size, 0);
    a.grow("a", 3);
    s.add(2, &a.request(&key, 0)).unwrap();
    // an empty checkpoint with another root is refused
    let bogus = checkpoint::sign(&key, 0, Hash([7; 32]), 0).unwrap().note;
    let mut t = setup();
    let r = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        note: bogus.clone(),
    };
    assert!(matches!(t.add(1, &r), Err(Refusal::EmptyRoot)));
    assert!(matches!(
        s.witness.observe(&key.id(), &bogus),
        Err(ObserveError::EmptyRoot)
    ));
    // a note carrying other signature lines is cosigned bare: the origin's
    // signature and this witness's only
    a.grow("a", 2);
    let mut r = a.request(&key, 3);
    let other = cosign::cosign(&NodeKey::from_seed([8; 32]), &r.note, 5).unwrap();
    r.note = other.note;
    r.note
        .extend_from_slice("— somebody/else AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".as_bytes());
    let c = s.add(3, &r).unwrap();
    let text = String::from_utf8(c.cosignature.note.clone()).unwrap();
    assert_eq!(text.matches("\n— ").count(), 2, "{text}");
    assert!(!text.contains("somebody/else"));
}

fn fork_evidence(key: &NodeKey) -> (Fork, Log, Log) {
    let mut a = Log::new(key);
    a.grow("c", 3);
    let mut b = a.clone();
    a.grow("a", 2);
    b.grow("b", 6);
    let p = b.prefix(5);
    (
        Fork {
            origin: key.id(),
            a: a.note(key),
            b: b.note(key),
            prefix_root: p.prefix_root.0,
            proof: hashes_to(&p.proof),
        },
        a,
        b,
    )
}

#[test]
fn forged_evidence_is_refused() {
    let key = NodeKey::from_seed([1; 32]);
    let (f, a, b) = fork_evidence(&key);
    Evidence::Fork(f.clone()).check().unwrap();
    // a note signed by another key under the origin's name
    let other = NodeKey::from_seed([3; 32]);
    let theirs = String::from_utf8(b.note(&other)).unwrap();
    let sig = theirs.split("\n\n").nth(1).unwrap();
    let name_them = checkpoint::origin_line(&other.id());
    let name_us = checkpoint::origin_line(&key.id());
    let text = String::from_utf8(b.note(&key)).unwrap();
    let body = text.split("\n\n").next().unwrap();
    let forged = format!("{body}\n\n{}", sig.replacen(&name_them, &name_us, 1));
    let e = Evidence::Fork(Fork {
        b: forged.into_bytes(),
        ..f.clone()
    })
    .check()
    .unwrap_err();
    assert!(matches!(e, EvidenceError::Note { which: "b", .. }), "{e}");
    // the evidence against another origin
    assert!(matches!(
        Evidence::Fork(Fork {
            origin: other.id(),
            ..f.clone()
        })
        .check(),
        Err(EvidenceError::Note { .. })
    ));
    // consistent notes: b really extends a
    let mut a2 = a.clone();
    a2.grow("a", 4);
    let p = a2.prefix(5);
    let e = Evidence::Fork(Fork {
        origin: key.id(),
        a: a.note(&key),
        b: a2.note(&key),
        prefix_root: p.prefix_root.0,
        proof: hashes_to(&p.proof),
    })
    .check()
    .unwrap_err();
    assert!(matches!(e, EvidenceError::NotAFork(_)), "{e}");
    // the same checkpoint twice
    assert!(matches!(
        Evidence::Fork(Fork {
            origin: key.id(),
            a: a.note(&key),
            b: a.note(&key),
            prefix_root: a.root().0,
            proof: vec![],
        })
        .check(),
        Err(EvidenceError::NotAFork(_))
    ));
    // a made-up prefix root, or a damaged proof
    let mut bad = f.clone();
    bad.prefix_root[0] ^= 1;
    assert!(matches!(
        Evidence::Fork(bad).check(),
        Err(EvidenceError::Proof(_))
    ));
    let mut bad = f.clone();
    bad.proof.pop();
    assert!(matches!(
        Evidence::Fork(bad).check(),
        Err(EvidenceError::Proof(_))
    ));
    // notes in the wrong order
    assert!(matches!(
        Evidence::Fork(Fork {
            a: f.b.clone(),
            b: f.a.clone(),
            ..f.clone()
        })
        .check(),
        Err(EvidenceError::NotAFork(_))
    ));
    // a "rollback" that is not smaller
    let e = Evidence::Rollback(Rollback {
        origin: key.id(),
        cosigned: a.note(&key),
        offered: b.note(&key),
    })
    .check()
    .unwrap_err();
    assert!(matches!(e, EvidenceError::NotARollback { .. }), "{e}");
}

#[test]
fn the_add_checkpoint_body_is_c2sp() {
    let key = NodeKey::from_seed([1; 32]);
    let mut a = Log::new(&key);
    a.grow("a", 9);
    let r = a.request(&key, 0);
    let body = r.to_body().unwrap();
    assert!(body.starts_with(b"old 0\n\nkeyward/log/"));
    assert_eq!(AddCheckpoint::from_body(&body).unwrap(), r);
    let mut b = a.clone();
    b.grow("a", 7);
    let r = b.request(&key, 9);
    assert!(!r.proof.is_empty());
    let body = r.to_body().unwrap();
    assert_eq!(AddCheckpoint::from_body(&body).unwrap(), r);
    // the spec's example header
    let ex = b"old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\nnote\n";
    let p = AddCheckpoint::from_body(ex).unwrap();
    assert_eq!((p.old_size, p.proof.len()), (20852014, 1));
    for bad in [
        &b"old 01\n\n"[..],
        b"old \n\n",
        b"new 1\n\n",
        b"old 1\nnot base64\n\n",
        b"old 1\n",
        b"old 18446744073709551616\n\n",
    ] {
        assert!(
            matches!(
                AddCheckpoint::from_body(bad),
                Err(RequestError::Malformed(_))
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!(
        "old 1\n{}\n",
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n".repeat(64)
    );
    assert_eq!(
        AddCheckpoint::from_body(long.as_bytes()),
        Err(RequestError::ProofTooLong)
    );
}

fn arb_record() -> impl Strategy<Value = WitnessRecord> {
    (
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..1024),
    )
        .prop_map(|(o, size, root, time, note)| WitnessRecord {
            origin: NodeId(o),
            size,
            root,
            time,
            note,
        })
}

fn arb_evidence() -> impl Strategy<Value = Evidence> {
    let note = || proptest::collection::vec(any::<u8>(), 0..600);
    prop_oneof![
        (
            any::<[u8; 32]>(),
            note(),
            note(),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_PROOF)
        )
            .prop_map(|(o, a, b, prefix_root, p)| Evidence::Fork(Fork {
                origin: NodeId(o),
                a,
                b,
                prefix_root,
                proof: p.concat(),
            })),
        (any::<[u8; 32]>(), note(), note()).prop_map(|(o, cosigned, offered)| {
            Evidence::Rollback(Rollback {
                origin: NodeId(o),
                cosigned,
                offered,
            })
        }),
    ]
}

/// A step of a run against the witness: grow history A or B by `n`,
/// then offer the checkpoint of A or B; maybe restart first.
#[derive(Debug, Clone)]
struct Step {
    grow_b: bool,
    n: usize,
    offer_b: bool,
    restart: bool,
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (
            any::<bool>(),
            0usize..6,
            any::<bool>(),
            proptest::bool::weighted(0.15),
        )
            .prop_map(|(grow_b, n, offer_b, restart)| Step {
                grow_b,
                n,
                offer_b,
                restart,
            }),
        1..14,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn state_records_round_trip(r in arb_record()) {
        let bytes = codec::encode(&r).unwrap();
        prop_assert_eq!(codec::decode::<WitnessRecord>(&bytes).unwrap(), r);
    }

    #[test]
    fn indexes_round_trip(origins in proptest::collection::vec(any::<[u8; 32]>(), 0..200)) {
        let ix = WitnessIndex { origins: origins.into_iter().map(NodeId).collect() };
        let bytes = codec::encode(&ix).unwrap();
        prop_assert_eq!(codec::decode::<WitnessIndex>(&bytes).unwrap(), ix);
    }

    #[test]
    fn arbitrary_state_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode::<WitnessRecord>(&bytes);
        let w = Witness::load(Arc::new(NodeKey::from_seed([2; 32])), None, [&bytes]);
        prop_assert!(w.is_err());
        let _ = codec::decode::<WitnessIndex>(&bytes);
        prop_assert!(Witness::load(Arc::new(NodeKey::from_seed([2; 32])), Some(&bytes[..]), Vec::<Vec<u8>>::new()).map(|_| ()).is_ok() == codec::decode::<WitnessIndex>(&bytes).is_ok_and(|i| i.origins.is_empty()));
    }

    #[test]
    fn mutated_records_are_refused(flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4)) {
        let mut s = setup();
        let key = NodeKey::from_seed([1; 32]);
        let mut a = Log::new(&key);
        a.grow("a", 4);
        s.add(1, &a.request(&key, 0)).unwrap();
        let mut bytes = s.disk[&key.id()].clone();
        let orig = bytes.clone();
        for (i, x) in flips {
            let n = bytes.len();
            bytes[i % n] ^= x;
        }
        if bytes != orig {
            let w = Witness::load(Arc::new(NodeKey::from_seed([2; 32])), s.index.as_deref(), [&bytes]);
            prop_assert!(w.is_err());
        }
    }

    #[test]
    fn evidence_round_trips(e in arb_evidence()) {
        let bytes = e.encode().unwrap();
        let back = Evidence::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &e);
        // random notes are never evidence
        prop_assert!(back.check().is_err());
    }

    #[test]
    fn arbitrary_evidence_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(e) = Evidence::decode(&bytes) {
            let _ = e.check();
        }
    }

    #[test]
    fn add_checkpoint_bodies_round_trip(
        old: u64,
        proof in proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_PROOF),
        note in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let r = AddCheckpoint { old_size: old, proof: proof.into_iter().map(Hash).collect(), note };
        let body = r.to_body().unwrap();
        prop_assert_eq!(AddCheckpoint::from_body(&body).unwrap(), r);
    }

    #[test]
    fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(r) = AddCheckpoint::from_body(&bytes) {
            let mut w = Witness::new(Arc::new(NodeKey::from_seed([2; 32])));
            let _ = w.add_checkpoint(0, &NodeKey::from_seed([1; 32]).id(), &r);
        }
    }

    #[test]
    fn every_honest_checkpoint_is_cosigned(grows in proptest::collection::vec(0usize..40, 1..12)) {
        let mut s = setup();
        let key = NodeKey::from_seed([1; 32]);
        let mut a = Log::new(&key);
        let mut last = 0;
        for (i, n) in grows.into_iter().enumerate() {
            a.grow("a", n);
            let c = s.add(i as u64 * 1000, &a.request(&key, last));
            prop_assert!(c.is_ok(), "{:?}", c.err());
            last = a.size();
            if i % 3 == 2 {
                s.restart();
            }
        }
    }

    /// The origin keeps two histories A and B that share a prefix and
    /// offers checkpoints of either, each with a proof from the size the
    /// witness last cosigned (when that history has one). Whatever the
    /// order, and across restarts, everything the witness cosigned lies on
    /// one history; and when only one history was ever offered, every
    /// offer was cosigned.
    #[test]
    fn no_two_inconsistent_checkpoints_are_cosigned(common in 0usize..6, steps in arb_steps()) {
        let mut s = setup();
        let key = NodeKey::from_seed([1; 32]);
        let mut a = Log::new(&key);
        a.grow("c", common);
        let mut b = a.clone();
        let mut cosigned: Vec<(u64, Hash)> = Vec::new();
        let only_a = steps.iter().all(|st| !st.offer_b);
        for (i, st) in steps.iter().enumerate() {
            if st.grow_b { b.grow("b", st.n) } else { a.grow("a", st.n) }
            if st.restart {
                s.restart();
            }
            let h = if st.offer_b { &b } else { &a };
            let last = s.witness.last(&key.id()).map_or(0, |r| r.size);
            match s.add(i as u64 * 1000, &h.request(&key, last)) {
                Ok(c) => cosigned.push((c.size, c.root)),
                Err(e) => {
                    prop_assert!(!only_a, "honest checkpoint refused: {e}");
                    if let Refusal::Fork { evidence, .. } | Refusal::Rollback { evidence, .. } = e {
                        prop_assert!(evidence.check().is_ok());
                    }
                }
            }
        }
        let on = |h: &Log| cosigned.iter().all(|(n, r)| h.roots.get(*n as usize) == Some(r));
        prop_assert!(on(&a) || on(&b), "cosigned on two histories: {:?}", cosigned);
        // cosigned sizes never go down
        prop_assert!(cosigned.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
