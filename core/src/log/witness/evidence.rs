//! Evidence of a misbehaving origin, checkable by anyone.
//!
//! A report is worth only what it proves: [`Evidence::check`] re-verifies
//! the origin's signature on every note and the consistency proof, so an
//! auditor or `keyward status` trusts the evidence, not whoever relayed it.
//!
//! - [`Fork`]: two checkpoints the origin signed that cannot both be true.
//!   Either the same size with different roots, or a smaller checkpoint
//!   (`m`, `a`) and a larger one (`n`, `b`) with a consistency proof that
//!   the first `m` leaves of `b`'s tree hash to `a' != a`. This proves the
//!   origin showed two histories: an honest origin never signs both.
//! - [`Rollback`]: a checkpoint of size `m` offered to a witness that had
//!   cosigned size `n > m`, both signed by the origin. It proves the
//!   origin's log had reached `n`, so `m` is not its latest and whoever
//!   presents `m` as current is rolling it back. It does not by itself
//!   prove the origin lied: a stale copy of an old checkpoint, delivered
//!   late, looks the same. Whether `m` is a prefix of `n` takes a proof,
//!   and if it is not, that is a [`Fork`].
//!
//! Codec kind `log-evidence`, bounded: notes at most [`MAX_NOTE`] each
//! (stored bare: text and the origin's signature), at most
//! [`MAX_PROOF`] proof hashes.

use serde::{Deserialize, Serialize};

use super::super::checkpoint::{self, CheckpointError, MAX_NOTE};
use super::super::merkle::{self, Hash};
use super::{hashes_from, MAX_PROOF};
use crate::codec::{self, CodecError, Wire};
use crate::identity::{fixed, NodeId};

/// Two checkpoints signed by `origin` that cannot both be true.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    pub origin: NodeId,
    /// The smaller (or same-size) checkpoint note.
    #[serde(with = "serde_bytes")]
    pub a: Vec<u8>,
    /// The larger (or same-size) checkpoint note.
    #[serde(with = "serde_bytes")]
    pub b: Vec<u8>,
    /// The root of `b`'s tree cut at `a`'s size, as the proof shows; it
    /// differs from `a`'s root. For a same-size fork, `b`'s root.
    #[serde(with = "fixed")]
    pub prefix_root: [u8; 32],
    /// Consistency proof from (`a`'s size, `prefix_root`) to `b`: 32-byte
    /// hashes, concatenated; empty for a same-size fork.
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
}

/// A checkpoint smaller than one the witness had cosigned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub origin: NodeId,
    /// The larger checkpoint, which the witness had cosigned.
    #[serde(with = "serde_bytes")]
    pub cosigned: Vec<u8>,
    /// The smaller checkpoint, offered after it.
    #[serde(with = "serde_bytes")]
    pub offered: Vec<u8>,
}

/// Evidence against an origin. Decode it with [`Evidence::decode`], then
/// trust it only once [`Evidence::check`] says what it proves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Evidence {
    Fork(Fork),
    Rollback(Rollback),
}

impl Wire for Evidence {
    const KIND: &'static str = "log-evidence";
    const MAX: usize = 2 * MAX_NOTE + MAX_PROOF * 32 + 512;
}

/// What checked evidence proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvidenceKind {
    /// `origin` signed two incompatible histories (at sizes `a` <= `b`).
    Fork { origin: NodeId, a: u64, b: u64 },
    /// `origin` had signed size `cosigned`; size `offered` < it was
    /// offered as new.
    Rollback {
        origin: NodeId,
        cosigned: u64,
        offered: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("evidence {what} of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("evidence note `{which}` is not a checkpoint signed by the origin ({source}): the evidence is forged or damaged; do not act on it, and note who sent it")]
    Note {
        which: &'static str,
        source: CheckpointError,
    },
    #[error("not a fork: {0}; the evidence is forged or mistaken, do not act on it")]
    NotAFork(String),
    #[error("not a rollback: the offered checkpoint ({offered}) is not smaller than the cosigned one ({cosigned}); do not act on it")]
    NotARollback { cosigned: u64, offered: u64 },
    #[error("the evidence's consistency proof does not verify ({0}): it proves nothing; do not act on it")]
    Proof(String),
}

impl Evidence {
    /// The origin the evidence is against (as claimed until checked).
    pub fn origin(&self) -> NodeId {
        match self {
            Evidence::Fork(f) => f.origin,
            Evidence::Rollback(r) => r.origin,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, EvidenceError> {
        self.bounds()?;
        Ok(codec::encode(self)?)
    }

    /// Decodes and checks the sizes (bounded input, bounded fields); the
    /// signatures and proof are checked by [`Evidence::check`].
    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceError> {
        let e: Evidence = codec::decode(bytes)?;
        e.bounds()?;
        Ok(e)
    }

    fn bounds(&self) -> Result<(), EvidenceError> {
        let note = |what: &'static str, n: &[u8]| {
            if n.len() > MAX_NOTE {
                Err(EvidenceError::TooLarge {
                    what,
                    len: n.len(),
                    max: MAX_NOTE,
                })
            } else {
                Ok(())
            }
        };
        match self {
            Evidence::Fork(f) => {
                note("note a", &f.a)?;
                note("note b", &f.b)?;
                if f.proof.len() > MAX_PROOF * 32 {
                    return Err(EvidenceError::TooLarge {
                        what: "proof",
                        len: f.proof.len(),
                        max: MAX_PROOF * 32,
                    });
                }
            }
            Evidence::Rollback(r) => {
                note("cosigned note", &r.cosigned)?;
                note("offered note", &r.offered)?;
            }
        }
        Ok(())
    }

    /// Re-verifies everything the evidence claims: the origin's signature
    /// on each note, and for a fork the consistency proof and that the
    /// histories differ. Forged or consistent evidence is refused.
    pub fn check(&self) -> Result<EvidenceKind, EvidenceError> {
        self.bounds()?;
        let open = |which: &'static str, note: &[u8], origin: &NodeId| {
            checkpoint::open(note, origin).map_err(|source| EvidenceError::Note { which, source })
        };
        match self {
            Evidence::Fork(f) => {
                let (sa, ra) = open("a", &f.a, &f.origin)?;
                let (sb, rb) = open("b", &f.b, &f.origin)?;
                if sa > sb {
                    return Err(EvidenceError::NotAFork(format!(
                        "note a ({sa}) is larger than note b ({sb})"
                    )));
                }
                if sa == 0 {
                    return Err(EvidenceError::NotAFork(
                        "an empty log has a single history".into(),
                    ));
                }
                let prefix = Hash(f.prefix_root);
                if prefix == ra {
                    return Err(EvidenceError::NotAFork(format!(
                        "the first {sa} leaves of b's tree hash to a's root: b extends a"
                    )));
                }
                let proof = hashes_from(&f.proof).ok_or_else(|| {
                    EvidenceError::Proof("not a whole number of 32-byte hashes".into())
                })?;
                merkle::check_consistency(&proof, sa, prefix, sb, rb)
                    .map_err(|e| EvidenceError::Proof(e.to_string()))?;
                Ok(EvidenceKind::Fork {
                    origin: f.origin,
                    a: sa,
                    b: sb,
                })
            }
            Evidence::Rollback(r) => {
                let (sc, _) = open("cosigned", &r.cosigned, &r.origin)?;
                let (so, _) = open("offered", &r.offered, &r.origin)?;
                if so >= sc {
                    return Err(EvidenceError::NotARollback {
                        cosigned: sc,
                        offered: so,
                    });
                }
                Ok(EvidenceKind::Rollback {
                    origin: r.origin,
                    cosigned: sc,
                    offered: so,
                })
            }
        }
    }
}
