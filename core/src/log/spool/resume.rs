//! Starting a spool from what is on disk, after a clean stop or a crash.
//!
//! The driver reads the spool directory and hands over: the checkpoint,
//! the tiles (by C2SP path), each segment file's header
//! ([`scan_segment`], which verifies it), and every journal. The rules,
//! which together mean no acknowledged line is lost, none is logged twice,
//! and no source's sequence has a gap:
//!
//! 1. The checkpoint and its tiles rebuild the Merkle log
//!    ([`MerkleLog::resume`]); a checkpoint that does not verify, or tiles
//!    that do not hash to it, stop the spool: nothing may be built on a log
//!    that was tampered with (the admin moves the spool aside).
//! 2. Segments under the checkpoint are counted (quota, retention) and set
//!    each source's next sequence number. Segments beyond it were written
//!    by a commit whose checkpoint did not follow: those that continue the
//!    log without a hole (index, origin and sequence all the next ones)
//!    are appended again; the others are deleted, and their journals
//!    (still there: a journal goes only after a checkpoint covers its
//!    segment) are recovered instead.
//! 3. A journal whose sequence is below the source's next was sealed
//!    already: deleted once a checkpoint is durable. One at the next
//!    sequence is recovered ([`journal::recover`]) and sealed as a
//!    `Frames` segment. One above the next was created by a group commit
//!    that did not finish (the segment before it would otherwise be on
//!    disk), so none of its lines was acknowledged: deleted, with a
//!    warning. An empty one (the crash tore its first write) is deleted;
//!    one that cannot be parsed is kept aside as `.damaged`, and the
//!    source's sequence moves past it, so the loss shows as a gap.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::checkpoint::{self, CheckpointError};
use super::super::journal;
use super::super::merkle::{MerkleError, MerkleLog, TileStore};
use super::super::recipients::Recipients;
use super::super::segment::{Sealed, Segment, SegmentHeader};
use super::super::LogError;
use super::quota::Disk;
use super::{Output, Spool, SpoolConfig, Stage, Warning};
use crate::guardian::Millis;
use crate::identity::NodeKey;

/// One segment file, as [`scan_segment`] found it.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    pub index: u64,
    /// File size in bytes.
    pub len: u64,
    /// The verified header, or why the file does not decode.
    pub header: Result<SegmentHeader, String>,
}

/// Decodes and verifies one segment file, keeping only its header.
pub fn scan_segment(index: u64, bytes: &[u8]) -> SegmentFile {
    SegmentFile {
        index,
        len: bytes.len() as u64,
        header: Segment::decode(bytes)
            .map(|s| s.header)
            .map_err(|e| e.to_string()),
    }
}

/// One journal file, `journal/<source>.<seq>`.
#[derive(Clone, Debug)]
pub struct JournalFile {
    pub source: String,
    pub seq: u64,
    pub bytes: Vec<u8>,
}

/// What the driver read from the spool directory.
pub struct OnDisk<'a, T: TileStore + ?Sized> {
    pub checkpoint: Option<Vec<u8>>,
    pub tiles: &'a T,
    /// Total size of the tile files.
    pub tiles_bytes: u64,
    pub segments: Vec<SegmentFile>,
    pub journals: Vec<JournalFile>,
}

/// Why a spool cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("the spool's checkpoint does not verify ({0}): the spool was tampered with or belongs to another node; move it aside (keep it as evidence) and restart")]
    Checkpoint(#[from] CheckpointError),
    #[error("the spool's tiles do not match its checkpoint ({0}): the Merkle log was tampered with; move the spool aside (keep it as evidence) and restart")]
    Merkle(#[from] MerkleError),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl Spool {
    /// Starts the spool from what is on disk (see the module doc for the
    /// rules). Its first outputs are the repairs: leftover journals
    /// deleted or kept aside, recovered segments and their tiles written,
    /// then a checkpoint.
    pub fn resume<T: TileStore + ?Sized>(
        key: Arc<NodeKey>,
        recipients: Arc<Recipients>,
        cfg: SpoolConfig,
        disk: OnDisk<'_, T>,
        now: Millis,
    ) -> Result<Spool, ResumeError> {
        let origin = key.id();
        let mut acct = Disk::default();
        acct.tiles_found(disk.tiles_bytes);
        let (mut log, size) = match &disk.checkpoint {
            Some(note) => {
                let (size, root) = checkpoint::open(note, &origin)?;
                acct.checkpoint_written(note.len() as u64);
                (MerkleLog::resume(origin, size, root, disk.tiles)?, size)
            }
            None => (MerkleLog::new(origin), 0),
        };
        let mut out = Vec::new();
        let mut next_seq: BTreeMap<String, u64> = BTreeMap::new();
        let mut again: Vec<SegmentHeader> = Vec::new();
        let mut segments = disk.segments;
        segments.sort_by_key(|s| s.index);
        for f in segments {
            let ours = f.header.as_ref().ok().filter(|h| h.origin == origin);
            if f.index < size {
                acct.segment_found(f.index, ours, f.len);
                if let Some(h) = ours {
                    let n = next_seq.entry(h.source.clone()).or_default();
                    *n = (*n).max(h.seq + 1);
                }
                continue;
            }
            let expected_index = size + again.len() as u64;
            let why = match (&f.header, ours) {
                (Err(e), _) => Some(format!("does not decode: {e}")),
                (Ok(_), None) => Some("signed by another node".to_string()),
                (Ok(h), Some(_)) if f.index != expected_index => Some(format!(
                    "index {} after a hole (expected {expected_index}); source {} #{}",
                    f.index, h.source, h.seq
                )),
                (Ok(h), Some(_)) => {
                    let want = next_seq.get(&h.source).copied().unwrap_or(0);
                    (h.seq != want)
                        .then(|| format!("source {} #{} where #{want} was due", h.source, h.seq))
                }
            };
            match why {
                Some(why) => {
                    out.push(Output::DeleteSegment { index: f.index });
                    out.push(Output::Warn(Warning::Discarded {
                        index: f.index,
                        why,
                    }));
                }
                None => {
                    let h = ours.expect("why is None only for our own header").clone();
                    acct.segment_found(f.index, Some(&h), f.len);
                    next_seq.insert(h.source.clone(), h.seq + 1);
                    again.push(h);
                }
            }
        }
        let mut journals = disk.journals;
        journals.sort_by(|a, b| (&a.source, a.seq).cmp(&(&b.source, b.seq)));
        let mut recovered: Vec<Sealed> = Vec::new();
        let mut leftovers = Vec::new();
        for j in journals {
            acct.journal_found(&j.source, j.seq, j.bytes.len() as u64);
            let expected = next_seq.get(&j.source).copied().unwrap_or(0);
            if j.seq < expected {
                leftovers.push((j.source, j.seq));
                continue;
            }
            let drop = |acct: &mut Disk, out: &mut Vec<Output>, w: Option<Warning>| {
                acct.journal_deleted(&j.source, j.seq);
                out.push(Output::DeleteJournal {
                    source: j.source.clone(),
                    seq: j.seq,
                });
                out.extend(w.map(Output::Warn));
            };
            if j.seq > expected {
                let w = Warning::Unacknowledged {
                    source: j.source.clone(),
                    seq: j.seq,
                };
                drop(&mut acct, &mut out, Some(w));
                continue;
            }
            match journal::parse(&j.bytes) {
                Ok((records, _)) if records.is_empty() => {
                    drop(&mut acct, &mut out, None);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    quarantine(&mut acct, &mut out, &mut next_seq, &j, e.to_string());
                    continue;
                }
            }
            match journal::recover(&key, &j.bytes, now) {
                Ok(r) => match r.sealed {
                    Some(s) if s.header.source == j.source && s.header.seq == j.seq => {
                        out.push(Output::Warn(Warning::Recovered {
                            source: j.source.clone(),
                            seq: j.seq,
                            lines: s.header.lines,
                        }));
                        next_seq.insert(j.source.clone(), j.seq + 1);
                        recovered.push(s);
                    }
                    Some(s) => {
                        let why = format!(
                            "its opening record names {} #{}",
                            s.header.source, s.header.seq
                        );
                        quarantine(&mut acct, &mut out, &mut next_seq, &j, why);
                    }
                    None => drop(&mut acct, &mut out, None),
                },
                Err(e) => quarantine(&mut acct, &mut out, &mut next_seq, &j, e.to_string()),
            }
        }
        // Appended again: leaves whose segment files are on disk already;
        // then the recovered segments, which are new files.
        let leaves: Vec<Vec<u8>> = again
            .iter()
            .map(crate::codec::signing_bytes)
            .chain(recovered.iter().map(|s| s.leaf.clone()))
            .collect();
        let mut spool = Spool::build(
            key,
            recipients,
            cfg,
            MerkleLog::new(origin),
            &next_seq,
            acct,
        )?;
        spool.out.extend(out);
        spool.checkpointed = size;
        spool.awaiting_checkpoint = leftovers;
        if !leaves.is_empty() {
            let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
            let (first, tiles) = log
                .append_batch(&refs)
                .map_err(|e| LogError::Header(e.to_string()))?;
            let mut sealed = Vec::new();
            for (i, s) in recovered.into_iter().enumerate() {
                let index = first + (again.len() + i) as u64;
                sealed.push((s.header.source.clone(), s.header.seq));
                spool
                    .disk
                    .segment_written(index, &s.header, s.bytes.len() as u64);
                spool.out.push_back(Output::WriteSegment {
                    index,
                    source: s.header.source,
                    seq: s.header.seq,
                    bytes: s.bytes,
                });
            }
            for t in tiles {
                spool.disk.tile_written(&t);
                spool.out.push_back(Output::WriteTile(t));
            }
            let id = spool.barrier();
            spool.stages.insert(
                id,
                Stage::Commit {
                    acks: Vec::new(),
                    sealed,
                },
            );
        }
        spool.log = log;
        Ok(spool)
    }
}

fn quarantine(
    acct: &mut Disk,
    out: &mut Vec<Output>,
    next_seq: &mut BTreeMap<String, u64>,
    j: &JournalFile,
    why: String,
) {
    acct.journal_deleted(&j.source, j.seq);
    out.push(Output::QuarantineJournal {
        source: j.source.clone(),
        seq: j.seq,
    });
    out.push(Output::Warn(Warning::Damaged {
        source: j.source.clone(),
        seq: j.seq,
        why,
    }));
    next_seq.insert(j.source.clone(), j.seq + 1);
}
