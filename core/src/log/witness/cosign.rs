//! C2SP tlog-cosignature `cosignature/v1` (Ed25519), made with a node key.
//!
//! Neither `signed_note` nor `tlog_tiles` 0.2 implements cosignatures, so
//! this module builds them on `signed_note`'s note and signature-line
//! format and on [`NodeKey::sign_note`] (plain Ed25519): no primitive of
//! our own.
//!
//! - Key name: `keyward/witness/<node id>`.
//! - Key ID: `SHA-256(name || "\n" || 0x04 || public key)[:4]`
//!   (`signed_note::key_id` with the algorithm byte 0x04).
//! - Signed message: `cosignature/v1\ntime <T>\n` followed by the whole
//!   checkpoint text (its final newline included, no signature line).
//! - Signature (after the key ID in the line): `T` as 8 bytes big-endian,
//!   then the 64-byte Ed25519 signature. `T` is POSIX seconds, at most
//!   2^63 - 1.
//!
//! Why the same node key can sign checkpoints and cosignatures: a
//! checkpoint's text starts with its origin line `keyward/log/...`, a
//! cosigned message with `cosignature/v1`, so neither can be read as the
//! other (and both differ from keyward's domain-tagged messages, which
//! hold a NUL); their key IDs differ too (algorithm byte 0x01 vs 0x04).

use base64::Engine;
use signed_note::{Note, NoteError, Signer, Verifier, VerifierList};

use super::super::checkpoint::MAX_NOTE;
use crate::identity::{self, NodeId, NodeKey, Sig};

/// Algorithm byte of an Ed25519 `cosignature/v1` key (C2SP tlog-cosignature).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Largest cosignature timestamp C2SP allows.
pub const MAX_TIME: u64 = i64::MAX as u64;

/// Bytes of a `cosignature/v1` signature after the key ID: time + Ed25519.
const SIG_LEN: usize = 8 + 64;

#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error("note of {len} bytes exceeds the {MAX_NOTE}-byte limit")]
    TooLarge { len: usize },
    #[error("not a signed note: {0}")]
    Note(String),
    #[error("cosignature time {time} is beyond 2^63-1 seconds")]
    Time { time: u64 },
    #[error("the note carries no cosignature by witness {witness:?}")]
    Missing { witness: NodeId },
    #[error("the cosignature by witness {witness:?} does not verify: the note or its cosignature line was altered")]
    Invalid { witness: NodeId },
    #[error("cannot cosign: {0}")]
    Sign(String),
}

/// The key name a node's cosignatures carry.
pub fn witness_name(node: &NodeId) -> String {
    format!("keyward/witness/{node}")
}

fn key_material(node: &NodeId) -> Vec<u8> {
    let mut k = vec![ALG_COSIGNATURE_V1];
    k.extend_from_slice(&node.0);
    k
}

/// The key ID of a node's cosignatures.
pub fn key_id(node: &NodeId) -> u32 {
    signed_note::key_id(&witness_name(node), &key_material(node))
}

/// The C2SP verifier key (`name+id+base64(0x04 || key)`) of a node as a
/// witness, for log clients outside keyward that check cosignatures.
pub fn verifier_key(node: &NodeId) -> String {
    format!(
        "{}+{:08x}+{}",
        witness_name(node),
        key_id(node),
        base64::engine::general_purpose::STANDARD.encode(key_material(node))
    )
}

/// The message a `cosignature/v1` signs.
fn message(time: u64, text: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(text);
    m
}

/// A signature computed beforehand, so that the line returned and the line
/// put in the note are the same bytes.
struct Fixed {
    name: String,
    id: u32,
    sig: Vec<u8>,
}

impl Signer for Fixed {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.sig.clone())
    }
}

struct CosignVerifier {
    node: NodeId,
    name: String,
    id: u32,
}

impl Verifier for CosignVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, sig)) = split(sig) else {
            return false;
        };
        time <= MAX_TIME && identity::verify_note(&self.node.0, &message(time, msg), &sig).is_ok()
    }
}

fn split(sig: &[u8]) -> Option<(u64, Sig)> {
    if sig.len() != SIG_LEN {
        return None;
    }
    let time = u64::from_be_bytes(sig[..8].try_into().ok()?);
    Some((time, Sig(sig[8..].try_into().ok()?)))
}

/// A witness's cosignature on one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosignature {
    /// POSIX seconds, as signed.
    pub time: u64,
    /// The signature line (`— keyward/witness/<id> <base64>\n`): the C2SP
    /// add-checkpoint response body.
    pub line: Vec<u8>,
    /// The note with the line appended (an earlier cosignature by the same
    /// key replaced).
    pub note: Vec<u8>,
}

/// Cosigns `note` at `time` (POSIX seconds). The caller has checked the
/// note is a checkpoint worth cosigning; this only signs.
pub fn cosign(key: &NodeKey, note: &[u8], time: u64) -> Result<Cosignature, CosignError> {
    if note.len() > MAX_NOTE {
        return Err(CosignError::TooLarge { len: note.len() });
    }
    if time > MAX_TIME {
        return Err(CosignError::Time { time });
    }
    let mut n = Note::from_bytes(note).map_err(|e| CosignError::Note(e.to_string()))?;
    let node = key.id();
    let sig = key
        .sign_note(&message(time, n.text()))
        .ok_or_else(|| CosignError::Sign("the note text is not a well-formed note".into()))?;
    let mut bytes = time.to_be_bytes().to_vec();
    bytes.extend_from_slice(&sig.0);
    let signer = Fixed {
        name: witness_name(&node),
        id: key_id(&node),
        sig: bytes.clone(),
    };
    let line = signed_note::Signature::new(signer.name.clone(), signer.id, bytes)
        .map_err(|e| CosignError::Sign(e.to_string()))?
        .to_bytes();
    n.add_sigs(&[&signer])
        .map_err(|e| CosignError::Sign(e.to_string()))?;
    Ok(Cosignature {
        time,
        line,
        note: n.to_bytes(),
    })
}

/// Checks `witness`'s `cosignature/v1` on `note` and returns its time
/// (POSIX seconds). Any member, the auditor or `keyward status` uses it;
/// it says nothing of the origin's own signature (see
/// [`super::super::checkpoint::open`]).
pub fn verify(note: &[u8], witness: &NodeId) -> Result<u64, CosignError> {
    if note.len() > MAX_NOTE {
        return Err(CosignError::TooLarge { len: note.len() });
    }
    let n = Note::from_bytes(note).map_err(|e| CosignError::Note(e.to_string()))?;
    let verifiers = VerifierList::new(vec![Box::new(CosignVerifier {
        node: *witness,
        name: witness_name(witness),
        id: key_id(witness),
    })]);
    match n.verify(&verifiers) {
        Ok((ok, _)) => ok
            .first()
            .and_then(|s| split(s.signature()))
            .map(|(t, _)| t)
            .ok_or(CosignError::Missing { witness: *witness }),
        Err(NoteError::UnverifiedNote) => Err(CosignError::Missing { witness: *witness }),
        Err(_) => Err(CosignError::Invalid { witness: *witness }),
    }
}

/// `note` with the signature lines of `other` it lacks, when both carry
/// the same text (a checkpoint and a cosigned copy of it): how an auditor
/// gathers every witness's cosignature on one checkpoint. None when the
/// texts differ, either is not a note, or the result would exceed
/// [`MAX_NOTE`]. Nothing is verified here (`verify` checks each line).
pub fn merge(note: &[u8], other: &[u8]) -> Option<Vec<u8>> {
    fn split(n: &[u8]) -> Option<(&str, &str)> {
        if n.len() > MAX_NOTE || Note::from_bytes(n).is_err() {
            return None;
        }
        let s = std::str::from_utf8(n).ok()?;
        let i = s.rfind("\n\n")?;
        Some((&s[..=i], &s[i + 2..]))
    }
    let (text, sigs) = split(note)?;
    let (other_text, other_sigs) = split(other)?;
    if text != other_text {
        return None;
    }
    let mut out = note.to_vec();
    for line in other_sigs.lines() {
        if !sigs.lines().any(|l| l == line) {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
    (out.len() <= MAX_NOTE && Note::from_bytes(&out).is_ok()).then_some(out)
}
