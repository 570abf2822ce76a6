//! Reading a spool back: which segments are genuine, and exactly what is
//! wrong with the others.
//!
//! Input (read by the driver): the origin's latest checkpoint note, its
//! tiles, and its segments by leaf index. The checkpoint's signature and
//! the tiles are checked first ([`SpoolError`]: nothing can be trusted
//! without them). Then each leaf gets its segment, or a [`Finding`]:
//! edited, truncated, reordered, replaced or missing. A finding never stops
//! the walk: `keyward logs` shows the genuine segments and reports the
//! rest, never showing a doubtful line as genuine.
//!
//! What a local check cannot see: a root attacker on a live node holds the
//! node key and could re-sign a rewritten log and checkpoint. That is what
//! part 2's witnesses are for (their cosignatures pin the checkpoint);
//! [`check_extends`] is the local half of it: a later checkpoint must
//! extend an earlier one someone kept.

use std::collections::{BTreeMap, HashMap};

use super::checkpoint::{self, CheckpointError};
use super::merkle::{self, Hash, MerkleError, TileStore};
use super::segment::{Segment, SegmentHeader};
use super::LogError;
use crate::codec::CodecError;
use crate::identity::NodeId;

/// The spool cannot be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("Merkle log: {0}")]
    Merkle(#[from] MerkleError),
}

/// One thing wrong with one segment of the spool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    #[error("segment {index} was edited: {why}")]
    Edited { index: u64, why: String },
    #[error("segment {index} is truncated")]
    Truncated { index: u64 },
    #[error("segment {index} holds the log's segment {found}: segments were reordered")]
    Reordered { index: u64, found: u64 },
    #[error("segment {index} was replaced by a segment not in the log ({source_name} #{seq})")]
    Replaced {
        index: u64,
        source_name: String,
        seq: u64,
    },
    #[error("segment {index} is missing")]
    Missing { index: u64 },
    #[error("segment {index} is beyond the checkpoint (size {size}): not yet verifiable")]
    Unlogged { index: u64, size: u64 },
    #[error(
        "source {source_name}: segment #{got} where #{expected} was due: the node logged a gap"
    )]
    SequenceGap {
        source_name: String,
        expected: u64,
        got: u64,
    },
}

/// The outcome of reading a spool back.
#[derive(Debug)]
pub struct Report {
    pub size: u64,
    pub root: Hash,
    /// Genuine segments, by leaf index: shown as genuine.
    pub verified: BTreeMap<u64, SegmentHeader>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks a spool against its checkpoint. `from` is the first leaf index
/// still on disk (retention removes the oldest segments; their leaves
/// stay in the tiles).
pub fn verify_spool(
    origin: &NodeId,
    checkpoint_note: &[u8],
    tiles: &(impl TileStore + ?Sized),
    segments: &BTreeMap<u64, Vec<u8>>,
    from: u64,
) -> Result<Report, SpoolError> {
    let (size, root) = checkpoint::open(checkpoint_note, origin)?;
    let leaves = merkle::read_log(size, root, tiles)?;
    let index_of: HashMap<[u8; 32], u64> = leaves
        .iter()
        .enumerate()
        .map(|(i, h)| (h.0, i as u64))
        .collect();
    let mut verified = BTreeMap::new();
    let mut findings = Vec::new();
    for (i, leaf) in leaves.iter().enumerate().skip(from as usize) {
        let index = i as u64;
        let Some(bytes) = segments.get(&index) else {
            findings.push(Finding::Missing { index });
            continue;
        };
        let seg = match Segment::decode(bytes) {
            Ok(s) => s,
            Err(LogError::Codec(CodecError::Truncated { .. })) => {
                findings.push(Finding::Truncated { index });
                continue;
            }
            Err(e) => {
                findings.push(Finding::Edited {
                    index,
                    why: e.to_string(),
                });
                continue;
            }
        };
        let h = merkle::leaf_hash(&seg.leaf());
        if seg.header.origin == *origin && h == *leaf {
            verified.insert(index, seg.header);
        } else if let (true, Some(&found)) = (seg.header.origin == *origin, index_of.get(&h.0)) {
            findings.push(Finding::Reordered { index, found });
        } else {
            findings.push(Finding::Replaced {
                index,
                source_name: seg.header.source,
                seq: seg.header.seq,
            });
        }
    }
    for &index in segments.range(size..).map(|(i, _)| i) {
        findings.push(Finding::Unlogged { index, size });
    }
    // Each source's sequence numbers run on by one in leaf order. A leaf
    // with a finding could have been any source's: expectations restart
    // after it, so one bad segment is reported once.
    let mut next: HashMap<&str, u64> = HashMap::new();
    let mut from_start = from == 0;
    for i in from..size {
        let Some(h) = verified.get(&i) else {
            next.clear();
            from_start = false;
            continue;
        };
        let expected = match next.get(h.source.as_str()) {
            Some(&n) => n,
            None if from_start => 0,
            None => h.seq,
        };
        if h.seq != expected {
            findings.push(Finding::SequenceGap {
                source_name: h.source.clone(),
                expected,
                got: h.seq,
            });
        }
        next.insert(&h.source, h.seq + 1);
    }
    Ok(Report {
        size,
        root,
        verified,
        findings,
    })
}

/// Checks that `new_note` (the spool's checkpoint now) extends `old_note`
/// (one kept earlier, by an auditor or a witness): no rollback, no
/// rewritten history.
pub fn check_extends(
    origin: &NodeId,
    old_note: &[u8],
    new_note: &[u8],
    tiles: &(impl TileStore + ?Sized),
) -> Result<(), SpoolError> {
    let (old_size, old_root) = checkpoint::open(old_note, origin)?;
    let (new_size, new_root) = checkpoint::open(new_note, origin)?;
    if old_size > new_size {
        return Err(MerkleError::BadProof(format!(
            "the log shrank from {old_size} to {new_size} leaves: rolled back"
        ))
        .into());
    }
    let proof = merkle::prove_consistency(old_size, new_size, new_root, tiles)?;
    merkle::check_consistency(&proof, old_size, old_root, new_size, new_root)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::identity::NodeKey;
    use crate::log::line::{Line, Sender};
    use crate::log::merkle::MerkleLog;
    use crate::log::recipients::{Recipient, Recipients};
    use crate::log::segment::Sealed;
    use crate::log::segmenter::{Limits, Segmenter, Source};
    use proptest::prelude::*;

    struct Spool {
        key: Arc<NodeKey>,
        recipients: Arc<Recipients>,
        auditor: age::x25519::Identity,
        tiles: BTreeMap<String, Vec<u8>>,
        segments: BTreeMap<u64, Vec<u8>>,
        checkpoint: Vec<u8>,
        log: MerkleLog,
    }

    fn segmenter(sp: &Spool, name: &str, next_seq: u64) -> Segmenter {
        Segmenter::new(
            sp.key.clone(),
            sp.recipients.clone(),
            Source {
                name: name.into(),
                confidential: true,
            },
            Limits {
                max_lines: 5,
                ..Limits::default()
            },
            next_seq,
        )
        .unwrap()
    }

    fn sealed_of(s: &mut Segmenter, t: u64, n: usize) -> Vec<Sealed> {
        let mut out = Vec::new();
        for i in 0..n {
            let l = Line {
                time: t + i as u64,
                sender: Sender {
                    pid: Some(7),
                    uid: Some(0),
                    gid: Some(0),
                },
                msg: format!("{} line {i}", s.source().name).into_bytes(),
            };
            out.extend(s.push(t, &l, &mut rand::rngs::OsRng).unwrap());
        }
        out.extend(s.seal(t + 1000).unwrap());
        out
    }

    /// 8 segments: 5 of "auth" interleaved with 3 of "mail".
    fn spool() -> Spool {
        let auditor = age::x25519::Identity::generate();
        let mut sp = Spool {
            key: Arc::new(NodeKey::generate()),
            recipients: Arc::new(
                Recipients::new(vec![Recipient::X25519(auditor.to_public())], None).unwrap(),
            ),
            auditor,
            tiles: BTreeMap::new(),
            segments: BTreeMap::new(),
            checkpoint: Vec::new(),
            log: MerkleLog::new(NodeKey::from_seed([0; 32]).id()),
        };
        sp.log = MerkleLog::new(sp.key.id());
        let auth = sealed_of(&mut segmenter(&sp, "auth", 0), 1000, 25);
        let mail = sealed_of(&mut segmenter(&sp, "mail", 0), 2000, 15);
        let (mut a, mut m) = (auth.into_iter(), mail.into_iter());
        let order = [
            a.next(),
            m.next(),
            a.next(),
            a.next(),
            m.next(),
            a.next(),
            m.next(),
            a.next(),
        ];
        for s in order.into_iter().flatten() {
            append(&mut sp, &s);
        }
        sp.checkpoint = sp.log.checkpoint(5000, &sp.key).unwrap().note;
        sp
    }

    fn append(sp: &mut Spool, s: &Sealed) {
        let (i, writes) = sp.log.append(&s.leaf).unwrap();
        for w in writes {
            sp.tiles.insert(w.path, w.bytes);
        }
        sp.segments.insert(i, s.bytes.clone());
    }

    fn check(sp: &Spool) -> Result<Report, SpoolError> {
        verify_spool(&sp.key.id(), &sp.checkpoint, &sp.tiles, &sp.segments, 0)
    }

    #[test]
    fn a_clean_spool_verifies_and_opens() {
        let sp = spool();
        let r = check(&sp).unwrap();
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!(r.verified.len(), 8);
        let seg = Segment::decode(&sp.segments[&3]).unwrap();
        assert_eq!(seg.open(&sp.auditor).unwrap().len(), 5);
    }

    #[test]
    fn an_edited_segment_is_reported() {
        let mut sp = spool();
        let b = sp.segments.get_mut(&2).unwrap();
        let at = b.len() - 40;
        b[at] ^= 0x20;
        let r = check(&sp).unwrap();
        assert!(
            matches!(&r.findings[..], [Finding::Edited { index: 2, .. }]),
            "{:?}",
            r.findings
        );
        assert!(!r.verified.contains_key(&2));
        assert_eq!(r.verified.len(), 7);
    }

    #[test]
    fn a_truncated_segment_is_reported() {
        let mut sp = spool();
        let b = sp.segments.get_mut(&6).unwrap();
        b.truncate(b.len() / 2);
        let r = check(&sp).unwrap();
        assert_eq!(r.findings, vec![Finding::Truncated { index: 6 }]);
    }

    #[test]
    fn reordered_segments_are_reported() {
        let mut sp = spool();
        let (a, b) = (sp.segments[&1].clone(), sp.segments[&4].clone());
        sp.segments.insert(1, b);
        sp.segments.insert(4, a);
        let r = check(&sp).unwrap();
        assert_eq!(
            r.findings,
            vec![
                Finding::Reordered { index: 1, found: 4 },
                Finding::Reordered { index: 4, found: 1 }
            ]
        );
    }

    #[test]
    fn a_replaced_segment_is_reported() {
        let mut sp = spool();
        // validly signed by the node, same source and sequence, other lines
        let mut s = segmenter(&sp, "auth", 1);
        let other = sealed_of(&mut s, 9000, 3).remove(0);
        sp.segments.insert(2, other.bytes);
        let r = check(&sp).unwrap();
        assert_eq!(
            r.findings,
            vec![Finding::Replaced {
                index: 2,
                source_name: "auth".into(),
                seq: 1
            }]
        );
    }

    #[test]
    fn a_missing_segment_is_reported() {
        let mut sp = spool();
        sp.segments.remove(&5);
        let r = check(&sp).unwrap();
        assert_eq!(r.findings, vec![Finding::Missing { index: 5 }]);
        // retention: leaves before `from` are not expected on disk
        sp.segments.remove(&0);
        let r = verify_spool(&sp.key.id(), &sp.checkpoint, &sp.tiles, &sp.segments, 1).unwrap();
        assert_eq!(r.findings, vec![Finding::Missing { index: 5 }]);
    }

    #[test]
    fn a_gap_in_a_source_and_unlogged_segments_are_reported() {
        let mut sp = spool();
        let mut s = segmenter(&sp, "mail", 4);
        let late = sealed_of(&mut s, 9000, 3).remove(0);
        append(&mut sp, &late);
        let r = check(&sp).unwrap();
        assert_eq!(r.findings, vec![Finding::Unlogged { index: 8, size: 8 }]);
        sp.checkpoint = sp.log.checkpoint(6000, &sp.key).unwrap().note;
        let r = check(&sp).unwrap();
        assert_eq!(
            r.findings,
            vec![Finding::SequenceGap {
                source_name: "mail".into(),
                expected: 3,
                got: 4
            }]
        );
    }

    #[test]
    fn tiles_and_checkpoints_are_checked_first() {
        let sp = spool();
        // a forged checkpoint
        let forged = merkle_forged(&sp);
        assert!(matches!(
            verify_spool(&sp.key.id(), &forged, &sp.tiles, &sp.segments, 0),
            Err(SpoolError::Checkpoint(CheckpointError::Signature { .. }))
        ));
        // an edited tile
        let mut t = sp.tiles.clone();
        t.get_mut("tile/0/000.p/8").unwrap()[3] ^= 1;
        assert!(matches!(
            verify_spool(&sp.key.id(), &sp.checkpoint, &t, &sp.segments, 0),
            Err(SpoolError::Merkle(
                MerkleError::RootMismatch | MerkleError::TileEdited { .. }
            ))
        ));
        // the log cut back
        let mut t = sp.tiles.clone();
        t.remove("tile/0/000.p/8");
        assert!(matches!(
            verify_spool(&sp.key.id(), &sp.checkpoint, &t, &sp.segments, 0),
            Err(SpoolError::Merkle(MerkleError::TileMissing { .. }))
        ));
    }

    fn merkle_forged(sp: &Spool) -> Vec<u8> {
        let other = NodeKey::generate();
        let text = String::from_utf8(sp.checkpoint.clone()).unwrap();
        let body = text.split("\n\n").next().unwrap();
        let mut lg = MerkleLog::new(other.id());
        lg.append(b"x").unwrap();
        let theirs = String::from_utf8(lg.checkpoint(1, &other).unwrap().note).unwrap();
        let sig = theirs.split("\n\n").nth(1).unwrap().to_string();
        // the spool's text, another key's signature line under our name
        let name = checkpoint::origin_line(&sp.key.id());
        let sig = sig.replacen(&checkpoint::origin_line(&other.id()), &name, 1);
        format!("{body}\n\n{sig}").into_bytes()
    }

    #[test]
    fn later_checkpoints_must_extend_earlier_ones() {
        let mut sp = spool();
        let old = sp.checkpoint.clone();
        let mut s = segmenter(&sp, "mail", 3);
        for x in sealed_of(&mut s, 9000, 12) {
            append(&mut sp, &x);
        }
        let new = sp.log.checkpoint(7000, &sp.key).unwrap().note;
        check_extends(&sp.key.id(), &old, &new, &sp.tiles).unwrap();
        assert!(check_extends(&sp.key.id(), &new, &old, &sp.tiles).is_err());
        // a rewritten history (same key, other leaves) does not extend
        let mut fork = MerkleLog::new(sp.key.id());
        let mut ft = BTreeMap::new();
        for i in 0..20u8 {
            for w in fork.append(&[i]).unwrap().1 {
                ft.insert(w.path, w.bytes);
            }
        }
        let forked = fork.checkpoint(8000, &sp.key).unwrap().note;
        assert!(check_extends(&sp.key.id(), &old, &forked, &ft).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn arbitrary_segment_bytes_are_findings_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024), at in 0u64..8) {
            let mut sp = spool();
            sp.segments.insert(at, bytes);
            let r = check(&sp).unwrap();
            prop_assert_eq!(r.findings.len(), 1);
            prop_assert_eq!(r.verified.len(), 7);
        }
    }
}
