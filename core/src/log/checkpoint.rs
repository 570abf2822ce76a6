//! Checkpoints: C2SP tlog-checkpoint text in a C2SP signed note, signed
//! with the node key (plain Ed25519 over the note text, as every C2SP
//! verifier and witness expects; see [`NodeKey::sign_note`]).
//!
//! Origin line: `keyward/log/<node id>`; the signature's key name is the
//! same string. The caller decides when to checkpoint (every interval);
//! a periodic checkpoint even of an unchanged tree shows the node alive.

use signed_note::{Note, Verifier, VerifierList};
use tlog_tiles::Checkpoint;

use super::merkle::{Hash, MerkleError, MerkleLog};
use crate::guardian::Millis;
use crate::identity::{self, NodeId, NodeKey, Sig};

/// Largest checkpoint note accepted (ours are ~200 bytes; witnesses'
/// cosignatures add ~100 each).
pub const MAX_NOTE: usize = 16 * 1024;

const ALG_ED25519: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint of {len} bytes exceeds the {MAX_NOTE}-byte limit")]
    TooLarge { len: usize },
    #[error("not a signed note: {0}")]
    Note(String),
    #[error("no valid signature by {origin:?} on the checkpoint: {why}")]
    Signature { origin: NodeId, why: String },
    #[error("not a C2SP checkpoint")]
    Malformed,
    #[error("checkpoint is for `{got}`, expected `{expected}`")]
    Origin { expected: String, got: String },
    #[error(transparent)]
    Merkle(#[from] MerkleError),
}

/// The checkpoint origin line of a node's log.
pub fn origin_line(node: &NodeId) -> String {
    format!("keyward/log/{node}")
}

fn key_id(name: &str, node: &NodeId) -> u32 {
    let mut k = vec![ALG_ED25519];
    k.extend_from_slice(&node.0);
    signed_note::key_id(name, &k)
}

/// The C2SP verifier key string of a node's log (`name+id+base64`), for
/// witnesses and auditors.
pub fn verifier_key(node: &NodeId) -> String {
    use base64::Engine;
    let name = origin_line(node);
    let mut k = vec![ALG_ED25519];
    k.extend_from_slice(&node.0);
    format!(
        "{name}+{:08x}+{}",
        key_id(&name, node),
        base64::engine::general_purpose::STANDARD.encode(k)
    )
}

struct NodeSigner<'a> {
    key: &'a NodeKey,
    name: String,
    id: u32,
}

impl signed_note::Signer for NodeSigner<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.key
            .sign_note(msg)
            .map(|s| s.0.to_vec())
            .ok_or_else(signature::Error::new)
    }
}

struct NodeVerifier {
    node: NodeId,
    name: String,
    id: u32,
}

impl Verifier for NodeVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(s) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        identity::verify_note(&self.node.0, msg, &Sig(s)).is_ok()
    }
}

/// A signed checkpoint: what was signed, and the note to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// When it was made (not part of the signed text).
    pub at: Millis,
    /// The signed note bytes, to write as the log's `checkpoint` file.
    pub note: Vec<u8>,
}

impl MerkleLog {
    /// Signs a checkpoint of the log as it is now.
    pub fn checkpoint(
        &self,
        now: Millis,
        key: &NodeKey,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        sign(key, self.size(), self.root()?, now)
    }
}

/// Signs a checkpoint of (size, root) for `key`'s log.
pub fn sign(
    key: &NodeKey,
    size: u64,
    root: Hash,
    now: Millis,
) -> Result<SignedCheckpoint, CheckpointError> {
    let node = key.id();
    let name = origin_line(&node);
    let text = Checkpoint::new(&name, size, root, "")
        .map_err(|_| CheckpointError::Malformed)?
        .to_bytes();
    let mut note = Note::new(&text, &[]).map_err(|e| CheckpointError::Note(e.to_string()))?;
    let signer = NodeSigner {
        key,
        id: key_id(&name, &node),
        name,
    };
    note.add_sigs(&[&signer])
        .map_err(|e| CheckpointError::Note(e.to_string()))?;
    Ok(SignedCheckpoint {
        size,
        root,
        at: now,
        note: note.to_bytes(),
    })
}

/// Parses a checkpoint note and checks it is `origin`'s, signed by it.
/// Other signatures (witness cosignatures) are ignored here.
pub fn open(note: &[u8], origin: &NodeId) -> Result<(u64, Hash), CheckpointError> {
    let (size, root, _) = parse(note, origin)?;
    Ok((size, root))
}

/// Like [`open`], and also returns the note reduced to its text and the
/// origin's own signature, every other line (cosignatures, unknown keys)
/// dropped. That is what a witness keeps and what evidence carries: what
/// matters is only the origin's word, and its size stays bounded whatever
/// else a sender piled onto the note.
pub fn open_bare(note: &[u8], origin: &NodeId) -> Result<(u64, Hash, Vec<u8>), CheckpointError> {
    parse(note, origin)
}

fn parse(note: &[u8], origin: &NodeId) -> Result<(u64, Hash, Vec<u8>), CheckpointError> {
    if note.len() > MAX_NOTE {
        return Err(CheckpointError::TooLarge { len: note.len() });
    }
    let n = Note::from_bytes(note).map_err(|e| CheckpointError::Note(e.to_string()))?;
    let name = origin_line(origin);
    let verifiers = VerifierList::new(vec![Box::new(NodeVerifier {
        node: *origin,
        id: key_id(&name, origin),
        name: name.clone(),
    })]);
    let (mine, _) = n
        .verify(&verifiers)
        .map_err(|e| CheckpointError::Signature {
            origin: *origin,
            why: e.to_string(),
        })?;
    let c = Checkpoint::from_bytes(n.text()).map_err(|_| CheckpointError::Malformed)?;
    if c.origin() != name {
        return Err(CheckpointError::Origin {
            expected: name,
            got: c.origin().chars().take(100).collect(),
        });
    }
    let bare = Note::new(n.text(), &mine)
        .map_err(|e| CheckpointError::Note(e.to_string()))?
        .to_bytes();
    Ok((c.size(), *c.hash(), bare))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn signs_and_opens() {
        let key = NodeKey::generate();
        let mut log = MerkleLog::new(key.id());
        for i in 0..10u8 {
            log.append(&[i]).unwrap();
        }
        let c = log.checkpoint(123, &key).unwrap();
        let text = String::from_utf8(c.note.clone()).unwrap();
        assert!(
            text.starts_with(&format!("keyward/log/{}\n10\n", key.id())),
            "{text}"
        );
        assert!(text.contains("\n\n— keyward/log/"));
        assert_eq!(open(&c.note, &key.id()).unwrap(), (10, log.root().unwrap()));
        // another node's key does not open it
        assert!(matches!(
            open(&c.note, &NodeKey::generate().id()),
            Err(CheckpointError::Signature { .. })
        ));
        // an edited size is refused
        let forged = text.replacen("\n10\n", "\n11\n", 1);
        assert!(matches!(
            open(forged.as_bytes(), &key.id()),
            Err(CheckpointError::Signature { .. })
        ));
        // the C2SP verifier key parses with the reference implementation
        let v = signed_note::StandardVerifier::new(&verifier_key(&key.id())).unwrap();
        let n = Note::from_bytes(&c.note).unwrap();
        n.verify(&VerifierList::new(vec![Box::new(v)])).unwrap();
    }

    proptest! {
        #[test]
        fn checkpoints_round_trip(size: u64, root: [u8; 32], now: u64) {
            let key = NodeKey::from_seed([5; 32]);
            let c = sign(&key, size, Hash(root), now).unwrap();
            prop_assert_eq!(open(&c.note, &key.id()).unwrap(), (size, Hash(root)));
        }

        #[test]
        fn arbitrary_notes_never_panic_and_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            prop_assert!(open(&bytes, &NodeId([9; 32])).is_err());
        }
    }
}
