//! The witness's durable state: one record per origin, codec kind
//! `witness-state`, and an index of the origins, codec kind
//! `witness-index`.
//!
//! A record holds what the witness last cosigned for that origin: size,
//! root, the time of its cosignature, and the note (bare: the checkpoint
//! text, the origin's signature and this witness's cosignature). Loading
//! re-verifies everything a record claims, so a damaged or edited record
//! is refused rather than believed. The index lists every origin that has
//! a record, so a record file lost on its own is noticed instead of
//! reading as "never witnessed". It is rewritten only when an origin is
//! first witnessed, after that origin's record: a crash between the two
//! leaves a record the index does not list yet, which loads (its
//! cosignature was never released), never an index entry without a record.
//! What no sans-IO check can see is the loss of every file at once: the
//! driver must not take a missing witness directory for a fresh witness
//! on a node that already has state.
//!
//! Why refusing matters: a witness that forgot what it cosigned would trust
//! the origin's next checkpoint on first use, and could cosign a rollback
//! or the other side of a fork. So [`super::Witness::load`] never skips a
//! bad record. What the admin does then: keep the state directory aside as
//! evidence (it may show tampering), then either restore the witness state
//! from a backup, or, if there is none, re-seed each origin's record from
//! the latest checkpoint cosigned by the other witnesses of the mesh (they
//! pin the history this witness can no longer vouch for) before restarting
//! the witness.

use serde::{Deserialize, Serialize};

use super::super::checkpoint::{self, MAX_NOTE};
use super::super::merkle::Hash;
use super::cosign;
use crate::codec::{self, CodecError, Wire};
use crate::identity::{fixed, NodeId};

/// What a witness keeps for one origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessRecord {
    pub origin: NodeId,
    /// Size of the last checkpoint cosigned.
    pub size: u64,
    /// Its root hash.
    #[serde(with = "fixed")]
    pub root: [u8; 32],
    /// When it was cosigned (POSIX seconds, as in the cosignature).
    pub time: u64,
    /// The bare note with this witness's cosignature.
    #[serde(with = "serde_bytes")]
    pub note: Vec<u8>,
}

impl Wire for WitnessRecord {
    const KIND: &'static str = "witness-state";
    const MAX: usize = MAX_NOTE + 256;
}

/// The origins that have a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessIndex {
    pub origins: Vec<NodeId>,
}

impl Wire for WitnessIndex {
    const KIND: &'static str = "witness-index";
    const MAX: usize = 64 + 34 * super::MAX_ORIGINS;
}

/// Why the witness state cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("witness state record {index} cannot be decoded ({source}): the witness refuses to start rather than forget what it cosigned; keep the state aside as evidence and restore it from a backup or re-seed it from the mesh's latest cosigned checkpoints")]
    Decode { index: usize, source: CodecError },
    #[error("witness state record {index} (origin {origin:?}) is corrupt: {why}; the witness refuses to start rather than forget what it cosigned; keep the state aside as evidence and restore it from a backup or re-seed it from the mesh's latest cosigned checkpoints")]
    Corrupt {
        index: usize,
        origin: NodeId,
        why: String,
    },
    #[error("witness state holds two records for origin {origin:?} (records {first} and {second}): a driver must keep one file per origin; keep the state aside and restore it")]
    Duplicate {
        origin: NodeId,
        first: usize,
        second: usize,
    },
    #[error("witness state holds {count} records, more than the {max} a witness keeps")]
    TooMany { count: usize, max: usize },
    #[error("the witness index cannot be decoded ({0}): the witness refuses to start rather than miss a lost record; keep the state aside as evidence and restore it from a backup")]
    Index(CodecError),
    #[error("the witness index lists origin {origin:?} but its record is missing: the witness refuses to start rather than trust that origin's next checkpoint on first use; restore the record from a backup or re-seed it from the mesh's latest cosigned checkpoint of that origin")]
    Missing { origin: NodeId },
    #[error("the witness state has {records} records but no index: the index was lost; keep the state aside as evidence and restore it from a backup")]
    NoIndex { records: usize },
}

/// One record, checked: decoded within bounds, the note the origin's
/// checkpoint with the record's size and root, and cosigned by `witness`
/// at the record's time.
pub(super) fn validate(
    index: usize,
    bytes: &[u8],
    witness: &NodeId,
) -> Result<WitnessRecord, StateError> {
    let r: WitnessRecord =
        codec::decode(bytes).map_err(|source| StateError::Decode { index, source })?;
    let origin = r.origin;
    let corrupt = move |why: String| StateError::Corrupt { index, origin, why };
    // Another encoding of the same record was written by something
    // other than this witness.
    if !codec::is_canonical(&r, bytes) {
        return Err(corrupt(
            "it is not in keyward's canonical encoding (rewritten or edited)".into(),
        ));
    }
    let (size, root) = checkpoint::open(&r.note, &r.origin)
        .map_err(|e| corrupt(format!("its note is not the origin's checkpoint: {e}")))?;
    if size != r.size || root != Hash(r.root) {
        return Err(corrupt(format!(
            "it says size {} but its note is a checkpoint of size {size} (or another root)",
            r.size
        )));
    }
    match cosign::verify(&r.note, witness) {
        Ok(t) if t == r.time => Ok(r),
        Ok(t) => Err(corrupt(format!(
            "it says cosigned at {} but the cosignature says {t}",
            r.time
        ))),
        Err(e) => Err(corrupt(format!(
            "its note's cosignature by this witness: {e}"
        ))),
    }
}
