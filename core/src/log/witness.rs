//! The witness of other nodes' logs, sans IO (C2SP tlog-witness).
//!
//! Every interval an origin sends its replica peers its signed checkpoint
//! with a consistency proof from the size each last cosigned. A peer, as a
//! witness, cosigns ([`cosign`], C2SP `cosignature/v1`) only a checkpoint
//! that extends the last one it cosigned for that origin, and keeps that
//! state durably ([`state`]), so an origin cannot show two histories to the
//! same witness nor roll back, even across the witness's restarts.
//! Cosigned checkpoints are gossiped; [`Witness::observe`] compares what
//! another peer was shown with what this witness cosigned, so two peers
//! shown different histories find out. What an origin did wrong is
//! returned as [`evidence::Evidence`], which anyone re-checks on its own.
//!
//! No clock, no file, no socket: `now` is an argument, and the state write
//! is returned in a [`Pending`] the driver commits before it releases the
//! cosignature (see there).
//!
//! - [`request`]: the add-checkpoint request (C2SP body format).
//! - [`cosign`]: making and verifying `cosignature/v1`.
//! - [`state`]: the per-origin record kept on disk and its checks on load.
//! - [`evidence`]: self-verifying fork and rollback evidence.

pub mod cosign;
pub mod evidence;
pub mod request;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use self::cosign::{CosignError, Cosignature};
use self::evidence::{Evidence, Fork, Rollback};
use self::request::AddCheckpoint;
use self::state::{StateError, WitnessIndex, WitnessRecord};
use super::checkpoint::{self, CheckpointError};
use super::merkle::{self, Hash};
use crate::codec::{self, CodecError};
use crate::guardian::Millis;
use crate::identity::{NodeId, NodeKey};

/// Most hashes a consistency proof may carry (C2SP tlog-witness: a client
/// sends at most 63 proof lines).
pub const MAX_PROOF: usize = 63;

/// Most origins one witness keeps state for (each is a roster member it
/// replicates; far above any mesh keyward targets).
pub const MAX_ORIGINS: usize = 65_536;

/// Root of the empty tree (RFC 6962), the only root a size-0 checkpoint
/// may carry.
pub const EMPTY_ROOT: Hash = tlog_tiles::EMPTY_HASH;

pub(crate) fn hashes_from(b: &[u8]) -> Option<Vec<Hash>> {
    if !b.len().is_multiple_of(32) {
        return None;
    }
    b.chunks_exact(32)
        .map(|c| c.try_into().ok().map(Hash))
        .collect()
}

pub(crate) fn hashes_to(h: &[Hash]) -> Vec<u8> {
    h.iter().flat_map(|h| h.0).collect()
}

/// Which witness file a [`WitnessWrite`] replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessFile {
    /// The origin's record (a [`WitnessRecord`], codec kind
    /// `witness-state`), one file per origin.
    Origin(NodeId),
    /// The index of origins (a [`WitnessIndex`], codec kind
    /// `witness-index`).
    Index,
}

/// A state file for the driver to make durable: replace `file` with
/// `bytes` (tmp, fsync, rename, directory fsync).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessWrite {
    pub file: WitnessFile,
    pub bytes: Vec<u8>,
}

/// A checkpoint this witness cosigned.
#[derive(Clone, Debug, PartialEq)]
pub struct Cosigned {
    pub origin: NodeId,
    pub size: u64,
    pub root: Hash,
    /// The signature line (the C2SP response body) and the cosigned note.
    pub cosignature: Cosignature,
}

/// A cosignature held back until the state behind it is durable.
///
/// The contract: the driver makes [`Pending::writes`] durable first, in
/// order (an origin's record before the index that lists it), and only
/// then calls [`Pending::committed`] and sends the cosignature. If a write
/// fails, it drops the `Pending` and stops witnessing until a
/// restart reloads the state from disk. Why: a cosignature released ahead
/// of its record could be forgotten by a crash, and the restarted witness
/// would then cosign a checkpoint inconsistent with it. The witness's
/// memory already holds the new state, so later requests are checked
/// against it (never against an older size) even before the write lands.
#[must_use = "commit the write, then release the cosignature with `committed`"]
#[derive(Debug)]
pub struct Pending {
    writes: Vec<WitnessWrite>,
    cosigned: Cosigned,
}

impl Pending {
    /// The state files to make durable, in this order, before anything is
    /// released: the origin's record, then the index if the origin is new.
    pub fn writes(&self) -> &[WitnessWrite] {
        &self.writes
    }

    /// The cosignature, to release once [`Pending::writes`] are durable.
    pub fn committed(self) -> Cosigned {
        self.cosigned
    }
}

/// Why a checkpoint was not cosigned. The HTTP status C2SP tlog-witness
/// gives each case is noted, for drivers that speak it.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 400.
    #[error("consistency proof of {len} hashes: at most {MAX_PROOF} are ever needed; the request is malformed")]
    ProofTooLong { len: usize },
    /// 403/404.
    #[error("not a checkpoint of {origin:?} signed by it: {source}")]
    Checkpoint {
        origin: NodeId,
        source: CheckpointError,
    },
    /// 400.
    #[error(
        "a checkpoint of size 0 must carry the empty tree's root; the origin's log code is broken"
    )]
    EmptyRoot,
    /// 400.
    #[error(
        "old size {old} is larger than the checkpoint's size {size}; the request is malformed"
    )]
    OldTooLarge { old: u64, size: u64 },
    /// 409: the origin retries with a proof from `last_size`.
    #[error("this witness last cosigned size {last_size} of this log, not {old}: retry with a consistency proof from size {last_size}")]
    Conflict { old: u64, last_size: u64 },
    /// The checkpoint is smaller than the one cosigned: never cosigned.
    #[error("checkpoint of size {size} is smaller than size {last_size}, which this witness already cosigned: a rollback (or a stale copy); refused, evidence attached")]
    Rollback {
        last_size: u64,
        size: u64,
        evidence: Box<Evidence>,
    },
    /// Same size, another root: the origin signed two histories.
    #[error("checkpoint of size {size} has another root than the one this witness cosigned at that size: the origin signed two histories; refused, evidence attached")]
    Fork { size: u64, evidence: Box<Evidence> },
    /// 422.
    #[error("consistency proof from size {old} to {size} does not verify ({why}): not cosigned; the origin must send the proof of its log from the size this witness cosigned")]
    BadProof { old: u64, size: u64, why: String },
    #[error("this witness already keeps {MAX_ORIGINS} origins and takes no new one")]
    TooManyOrigins,
    #[error("cannot cosign: {0}")]
    Cosign(#[from] CosignError),
    #[error("cannot encode the witness state: {0}")]
    Codec(#[from] CodecError),
}

/// What a checkpoint gossiped by another peer says about this witness's
/// view of the origin.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// This witness cosigned nothing of that origin: nothing to compare.
    NoState,
    /// The same checkpoint, or one shown (by proof, or because one of them
    /// is empty) to be on the same history.
    Consistent,
    /// Different sizes: only a consistency proof from size `from` to size
    /// `to` (of the larger checkpoint's tree, with the root of its first
    /// `from` leaves: `merkle::prove_prefix`) can tell; ask the origin or a
    /// replica and call [`Witness::observe_with_proof`].
    NeedProof { from: u64, to: u64 },
    /// The origin signed both this witness's checkpoint and the other one,
    /// and they cannot both be true.
    Fork(Box<Evidence>),
}

/// The root of the first `from` leaves of the larger checkpoint's tree,
/// and the consistency proof from it to that checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefixProof {
    pub prefix_root: Hash,
    pub proof: Vec<Hash>,
}

/// Why a gossiped checkpoint could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(
        "not a checkpoint of {origin:?} signed by it: {source}; ignore it and note who sent it"
    )]
    Checkpoint {
        origin: NodeId,
        source: CheckpointError,
    },
    #[error("a checkpoint of size 0 must carry the empty tree's root; ignore it")]
    EmptyRoot,
    #[error("consistency proof of {len} hashes: at most {MAX_PROOF} are ever needed")]
    ProofTooLong { len: usize },
    #[error("the proof from size {from} to {to} does not verify ({why}): it proves nothing either way; ask another peer")]
    BadProof { from: u64, to: u64, why: String },
}

/// A witness: for each origin, the last checkpoint it cosigned.
pub struct Witness {
    key: Arc<NodeKey>,
    logs: BTreeMap<NodeId, WitnessRecord>,
}

impl Witness {
    /// A witness that has cosigned nothing. Only for a node whose state is
    /// being created: a driver that finds no witness state where the node
    /// has state must not call this (a witness that forgot would cosign a
    /// rollback); see [`state`] for what the admin does.
    pub fn new(key: Arc<NodeKey>) -> Self {
        Witness {
            key,
            logs: BTreeMap::new(),
        }
    }

    /// The witness as its state files left it: the index (`None` if there
    /// is no index file) and the records (one per origin). Every record is
    /// checked, and every origin the index lists must have one; anything
    /// wrong refuses the whole state (see [`state`] for what the admin
    /// does).
    pub fn load<I>(key: Arc<NodeKey>, index: Option<&[u8]>, records: I) -> Result<Self, StateError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let me = key.id();
        let mut logs = BTreeMap::new();
        let mut index_of = BTreeMap::new();
        for (i, bytes) in records.into_iter().enumerate() {
            if i >= MAX_ORIGINS {
                return Err(StateError::TooMany {
                    count: i + 1,
                    max: MAX_ORIGINS,
                });
            }
            let r = state::validate(i, bytes.as_ref(), &me)?;
            if let Some(first) = index_of.insert(r.origin, i) {
                return Err(StateError::Duplicate {
                    origin: r.origin,
                    first,
                    second: i,
                });
            }
            logs.insert(r.origin, r);
        }
        match index {
            Some(bytes) => {
                let ix: WitnessIndex = codec::decode(bytes).map_err(StateError::Index)?;
                if let Some(origin) = ix.origins.iter().find(|o| !logs.contains_key(o)) {
                    return Err(StateError::Missing { origin: *origin });
                }
            }
            None if !logs.is_empty() => {
                return Err(StateError::NoIndex {
                    records: logs.len(),
                })
            }
            None => {}
        }
        Ok(Witness { key, logs })
    }

    /// This witness's node id (its cosignatures verify with it).
    pub fn id(&self) -> NodeId {
        self.key.id()
    }

    /// What this witness last cosigned for `origin` (its `note` is what it
    /// gossips).
    pub fn last(&self, origin: &NodeId) -> Option<&WitnessRecord> {
        self.logs.get(origin)
    }

    /// The origins this witness keeps state for.
    pub fn origins(&self) -> impl Iterator<Item = &NodeId> {
        self.logs.keys()
    }

    /// C2SP add-checkpoint. `origin` is a member the caller knows this node
    /// witnesses; the note must be its checkpoint, signed by it. A first
    /// checkpoint from an origin is trusted on first use (old size 0, no
    /// proof); after that only a checkpoint consistent with the last one
    /// cosigned is. The state changes in memory at once; see [`Pending`]
    /// for the write to commit before releasing the cosignature.
    pub fn add_checkpoint(
        &mut self,
        now: Millis,
        origin: &NodeId,
        req: &AddCheckpoint,
    ) -> Result<Pending, Refusal> {
        if req.proof.len() > MAX_PROOF {
            return Err(Refusal::ProofTooLong {
                len: req.proof.len(),
            });
        }
        let (size, root, bare) =
            checkpoint::open_bare(&req.note, origin).map_err(|source| Refusal::Checkpoint {
                origin: *origin,
                source,
            })?;
        if size == 0 && root != EMPTY_ROOT {
            return Err(Refusal::EmptyRoot);
        }
        match self.logs.get(origin) {
            Some(last) => {
                let last_bare = bare_of(last)?;
                if size < last.size {
                    return Err(Refusal::Rollback {
                        last_size: last.size,
                        size,
                        evidence: Box::new(Evidence::Rollback(Rollback {
                            origin: *origin,
                            cosigned: last_bare,
                            offered: bare,
                        })),
                    });
                }
                if size == last.size && root != Hash(last.root) {
                    return Err(Refusal::Fork {
                        size,
                        evidence: Box::new(Evidence::Fork(Fork {
                            origin: *origin,
                            a: last_bare,
                            b: bare,
                            prefix_root: root.0,
                            proof: Vec::new(),
                        })),
                    });
                }
                if req.old_size > size {
                    return Err(Refusal::OldTooLarge {
                        old: req.old_size,
                        size,
                    });
                }
                if req.old_size != last.size {
                    return Err(Refusal::Conflict {
                        old: req.old_size,
                        last_size: last.size,
                    });
                }
                if last.size == 0 {
                    empty_proof(req, size)?;
                } else {
                    merkle::check_consistency(&req.proof, last.size, Hash(last.root), size, root)
                        .map_err(|e| Refusal::BadProof {
                        old: last.size,
                        size,
                        why: e.to_string(),
                    })?;
                }
            }
            None => {
                if req.old_size > size {
                    return Err(Refusal::OldTooLarge {
                        old: req.old_size,
                        size,
                    });
                }
                if req.old_size != 0 {
                    return Err(Refusal::Conflict {
                        old: req.old_size,
                        last_size: 0,
                    });
                }
                empty_proof(req, size)?;
                if self.logs.len() >= MAX_ORIGINS {
                    return Err(Refusal::TooManyOrigins);
                }
            }
        }
        let cosignature = cosign::cosign(&self.key, &bare, now / 1000)?;
        let record = WitnessRecord {
            origin: *origin,
            size,
            root: root.0,
            time: cosignature.time,
            note: cosignature.note.clone(),
        };
        let mut writes = vec![WitnessWrite {
            file: WitnessFile::Origin(*origin),
            bytes: codec::encode(&record)?,
        }];
        let new_origin = self.logs.insert(*origin, record).is_none();
        if new_origin {
            let index = WitnessIndex {
                origins: self.logs.keys().copied().collect(),
            };
            match codec::encode(&index) {
                Ok(bytes) => writes.push(WitnessWrite {
                    file: WitnessFile::Index,
                    bytes,
                }),
                Err(e) => {
                    self.logs.remove(origin);
                    return Err(e.into());
                }
            }
        }
        Ok(Pending {
            writes,
            cosigned: Cosigned {
                origin: *origin,
                size,
                root,
                cosignature,
            },
        })
    }

    /// Compares a checkpoint of `origin` that another peer was shown
    /// (gossiped, typically with its witnesses' cosignatures) with the one
    /// this witness cosigned. Same size and another root is a fork; a
    /// different size needs a proof ([`Observation::NeedProof`]).
    pub fn observe(&self, origin: &NodeId, note: &[u8]) -> Result<Observation, ObserveError> {
        let (size, root, bare) = open_seen(origin, note)?;
        let Some(last) = self.logs.get(origin) else {
            return Ok(Observation::NoState);
        };
        if size == last.size {
            if root == Hash(last.root) {
                return Ok(Observation::Consistent);
            }
            return Ok(Observation::Fork(Box::new(Evidence::Fork(Fork {
                origin: *origin,
                a: bare_seen(last)?,
                b: bare,
                prefix_root: root.0,
                proof: Vec::new(),
            }))));
        }
        if size == 0 || last.size == 0 {
            return Ok(Observation::Consistent);
        }
        Ok(Observation::NeedProof {
            from: size.min(last.size),
            to: size.max(last.size),
        })
    }

    /// Settles an [`Observation::NeedProof`]: `proof` goes from the smaller
    /// checkpoint's size to the larger one (the gossiped note or this
    /// witness's, whichever is larger). If it verifies and the prefix root
    /// is the smaller checkpoint's, they are consistent; if it verifies with
    /// another prefix root, the origin signed two histories: a fork, with
    /// evidence. A proof that does not verify proves nothing.
    pub fn observe_with_proof(
        &self,
        origin: &NodeId,
        note: &[u8],
        proof: &PrefixProof,
    ) -> Result<Observation, ObserveError> {
        match self.observe(origin, note)? {
            Observation::NeedProof { .. } => {}
            settled => return Ok(settled),
        }
        if proof.proof.len() > MAX_PROOF {
            return Err(ObserveError::ProofTooLong {
                len: proof.proof.len(),
            });
        }
        let (size, root, bare) = open_seen(origin, note)?;
        let Some(last) = self.logs.get(origin) else {
            return Ok(Observation::NoState);
        };
        let ours = (last.size, Hash(last.root), bare_seen(last)?);
        let theirs = (size, root, bare);
        let (small, large) = if ours.0 < theirs.0 {
            (ours, theirs)
        } else {
            (theirs, ours)
        };
        merkle::check_consistency(&proof.proof, small.0, proof.prefix_root, large.0, large.1)
            .map_err(|e| ObserveError::BadProof {
                from: small.0,
                to: large.0,
                why: e.to_string(),
            })?;
        if proof.prefix_root == small.1 {
            return Ok(Observation::Consistent);
        }
        Ok(Observation::Fork(Box::new(Evidence::Fork(Fork {
            origin: *origin,
            a: small.2,
            b: large.2,
            prefix_root: proof.prefix_root.0,
            proof: hashes_to(&proof.proof),
        }))))
    }
}

/// The bare note of a record (its origin signature only), for evidence.
fn bare_of(r: &WitnessRecord) -> Result<Vec<u8>, Refusal> {
    checkpoint::open_bare(&r.note, &r.origin)
        .map(|(_, _, b)| b)
        .map_err(|source| Refusal::Checkpoint {
            origin: r.origin,
            source,
        })
}

fn bare_seen(r: &WitnessRecord) -> Result<Vec<u8>, ObserveError> {
    checkpoint::open_bare(&r.note, &r.origin)
        .map(|(_, _, b)| b)
        .map_err(|source| ObserveError::Checkpoint {
            origin: r.origin,
            source,
        })
}

fn open_seen(origin: &NodeId, note: &[u8]) -> Result<(u64, Hash, Vec<u8>), ObserveError> {
    let (size, root, bare) =
        checkpoint::open_bare(note, origin).map_err(|source| ObserveError::Checkpoint {
            origin: *origin,
            source,
        })?;
    if size == 0 && root != EMPTY_ROOT {
        return Err(ObserveError::EmptyRoot);
    }
    Ok((size, root, bare))
}

/// C2SP: the proof from old size 0 is empty (everything extends the empty
/// tree).
fn empty_proof(req: &AddCheckpoint, size: u64) -> Result<(), Refusal> {
    if req.proof.is_empty() {
        Ok(())
    } else {
        Err(Refusal::BadProof {
            old: 0,
            size,
            why: "a proof from size 0 must be empty".into(),
        })
    }
}
