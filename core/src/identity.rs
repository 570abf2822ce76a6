//! Keys of one node.
//!
//! The *boot key* is a 32-byte seed that lives unencrypted in
//! `/etc/keyward/boot.key` and in the initramfs. From it we derive, with
//! domain-separated HKDF, an ed25519 key (it only ever asks for shares) and an
//! X25519 age identity (shares are sealed to it). Deriving both from one seed
//! keeps the initramfs to a single small file.
//!
//! The *node key* is an independent ed25519 key kept on the encrypted root.
//! It is the node's libp2p identity and signs liveness, roster operations and
//! share envelopes. A stolen disk yields the boot key but never the node key,
//! which is what lets guardians tell "the node is up" from "someone booted the
//! disk".

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Errors about key files and signatures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is readable by group or others (mode {mode:04o}); a key file must be private: run `chmod 600 {path}` and check who copied it"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "{path} is owned by uid {uid}, not by root or this user: whoever owns it could have read or replaced the key; run `chown root:root {path}` if it is the right file"
    )]
    Owner { path: PathBuf, uid: u32 },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} already exists; refusing to overwrite a key (move it away first if you really mean to replace it)")]
    Exists { path: PathBuf },
    #[error("{path} is not a keyward {what} file: {why}")]
    Format {
        path: PathBuf,
        what: &'static str,
        why: String,
    },
    #[error("bad signature")]
    BadSignature,
    #[error("invalid public key")]
    BadPublicKey,
}

/// A node's public identity: its node key's ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId(#[serde(with = "fixed")] pub [u8; 32]);

/// Byte order, as the derived order of the array would be, but decided
/// by the first eight bytes as one integer in almost every comparison
/// (ids are uniform): maps and sets keyed by node id are searched on
/// every message, and a `memcmp` call per step was 8 % of a 1,000-node
/// simulation.
impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let head =
            |b: &[u8; 32]| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        head(&self.0)
            .cmp(&head(&other.0))
            .then_with(|| self.0[8..].cmp(&other.0[8..]))
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Serializes fixed-size arrays as CBOR byte strings (compact, and a wrong
/// length is a decode error rather than a panic).
pub mod fixed {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let b = serde_bytes::ByteBuf::deserialize(d)?;
        b.as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(b.len(), &"a fixed-length byte string"))
    }
}

impl NodeId {
    pub fn short(&self) -> String {
        let s = self.to_string();
        s[s.len().saturating_sub(8)..].to_string()
    }

    pub fn verify(&self, domain: &str, msg: &[u8], sig: &Sig) -> Result<(), KeyError> {
        verify(&self.0, domain, msg, sig)
    }
}

impl fmt::Display for NodeId {
    /// The libp2p peer id text of this key ("12D3KooW..."), which is how
    /// admins see nodes: base58 of the identity multihash of the key's
    /// protobuf encoding, as libp2p inlines ed25519 keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = [0u8; PEER_ID_LEN];
        b[..PEER_ID_PREFIX.len()].copy_from_slice(&PEER_ID_PREFIX);
        b[PEER_ID_PREFIX.len()..].copy_from_slice(&self.0);
        f.write_str(&bs58::encode(b).into_string())
    }
}

/// The bytes before the key in an ed25519 libp2p peer id: the identity
/// multihash code (0x00) and length (36), then the protobuf fields
/// `KeyType = Ed25519 (1)` and `Data`, 32 bytes.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
const PEER_ID_LEN: usize = PEER_ID_PREFIX.len() + 32;

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`{s}` is not a node id (a libp2p peer id such as 12D3KooW...): {why}")
        };
        // Longer input is not a peer id of ours; refuse before decoding.
        if s.len() > 64 {
            return Err(bad("too long"));
        }
        let b = bs58::decode(s)
            .into_vec()
            .map_err(|e| bad(&e.to_string()))?;
        if b.len() != PEER_ID_LEN || b[..PEER_ID_PREFIX.len()] != PEER_ID_PREFIX {
            return Err(format!("`{s}` is not an ed25519 peer id"));
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(&b[PEER_ID_PREFIX.len()..]);
        // Only a point on the curve names a node.
        VerifyingKey::from_bytes(&k).map_err(|_| format!("`{s}` is not an ed25519 peer id"))?;
        Ok(NodeId(k))
    }
}

/// An ed25519 signature, serialized as 64 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub [u8; 64]);

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({}..)", hex::encode(&self.0[..4]))
    }
}

impl Serialize for Sig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(d)?;
        let a: [u8; 64] = b
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::invalid_length(b.len(), &"64 bytes"))?;
        Ok(Sig(a))
    }
}

/// Domain-separates every signature so a signature made for one purpose can
/// never be replayed as another (a roster op as a share envelope, say).
fn tagged(domain: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(domain.len() + 1 + msg.len());
    v.extend_from_slice(b"keyward/v1/");
    v.extend_from_slice(domain.as_bytes());
    v.push(0);
    v.extend_from_slice(msg);
    v
}

/// Verifies a domain-tagged signature made by `pubkey`.
pub fn verify(pubkey: &[u8; 32], domain: &str, msg: &[u8], sig: &Sig) -> Result<(), KeyError> {
    let c = crate::sig_memo::verified(pubkey, &sig.0, &[domain.as_bytes(), msg], || {
        check(pubkey, &tagged(domain, msg), sig)
    });
    checked(c)
}

/// One ed25519 check, strict (no malleable or small-order forms).
fn check(pubkey: &[u8; 32], signed: &[u8], sig: &Sig) -> crate::sig_memo::Checked {
    use crate::sig_memo::Checked;
    let Ok(vk) = VerifyingKey::from_bytes(pubkey) else {
        return Checked::BadKey;
    };
    match vk.verify_strict(signed, &Signature::from_bytes(&sig.0)) {
        Ok(()) => Checked::Valid,
        Err(_) => Checked::BadSignature,
    }
}

fn checked(c: crate::sig_memo::Checked) -> Result<(), KeyError> {
    use crate::sig_memo::Checked;
    match c {
        Checked::Valid => Ok(()),
        Checked::BadKey => Err(KeyError::BadPublicKey),
        Checked::BadSignature => Err(KeyError::BadSignature),
    }
}

fn sign(sk: &SigningKey, domain: &str, msg: &[u8]) -> Sig {
    Sig(sk.sign(&tagged(domain, msg)).to_bytes())
}

fn random32(rng: &mut (impl RngCore + CryptoRng)) -> Zeroizing<[u8; 32]> {
    let mut b = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(b.as_mut());
    b
}

/// HKDF-SHA256 of a boot seed, one output per purpose (`info`).
fn derive(seed: &[u8; 32], info: &str) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"keyward boot key v1"), seed);
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(info.as_bytes(), out.as_mut())
        .expect("32 bytes is a valid HKDF length");
    out
}

/// The boot key: the only secret the initramfs has.
pub struct BootKey {
    seed: Zeroizing<[u8; 32]>,
    /// Derived once: deriving it costs a scalar multiplication, and the
    /// unlock client signs one request per guardian and retry. Zeroized
    /// on drop (ed25519-dalek's `zeroize` feature).
    sk: SigningKey,
}

/// What guardians know of an owner's boot key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPublic {
    /// ed25519 key that signs share requests.
    #[serde(with = "fixed")]
    pub sign: [u8; 32],
    /// X25519 public key (age recipient) that shares are sealed to.
    #[serde(with = "fixed")]
    pub seal: [u8; 32],
}

impl fmt::Debug for BootPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootPublic({})", hex::encode(&self.sign[..4]))
    }
}

impl BootPublic {
    /// The age recipient shares are sealed to.
    pub fn recipient(&self) -> age::x25519::Recipient {
        let s = bech32::encode::<bech32::Bech32>(bech32::Hrp::parse_unchecked("age"), &self.seal)
            .expect("32 bytes always encode");
        s.parse().expect("well-formed age recipient")
    }

    /// The node id a boot-key connection shows up as.
    pub fn as_node_id(&self) -> NodeId {
        NodeId(self.sign)
    }

    pub fn verify(&self, domain: &str, msg: &[u8], sig: &Sig) -> Result<(), KeyError> {
        verify(&self.sign, domain, msg, sig)
    }
}

impl BootKey {
    /// A new boot key from the OS RNG (drivers only).
    #[cfg(any(test, feature = "os-rng"))]
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::rngs::OsRng)
    }

    pub fn generate_with(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self::from_zeroizing(random32(rng))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_zeroizing(Zeroizing::new(seed))
    }

    /// The seed, for writing the key file. Secret.
    pub fn seed(&self) -> &Zeroizing<[u8; 32]> {
        &self.seed
    }

    pub fn from_zeroizing(seed: Zeroizing<[u8; 32]>) -> Self {
        let sk = SigningKey::from_bytes(&derive(&seed, "ed25519 share requests"));
        BootKey { seed, sk }
    }

    fn derive(&self, info: &str) -> Zeroizing<[u8; 32]> {
        derive(&self.seed, info)
    }

    /// The ed25519 key that signs share requests and authenticates the
    /// initramfs's libp2p connections.
    pub fn signing_key(&self) -> SigningKey {
        self.sk.clone()
    }

    /// The age identity that opens sealed shares.
    pub fn age_identity(&self) -> age::x25519::Identity {
        let sk = self.derive("x25519 share sealing");
        let mut s = Zeroizing::new(
            bech32::encode_upper::<bech32::Bech32>(
                bech32::Hrp::parse_unchecked("age-secret-key-"),
                sk.as_ref(),
            )
            .expect("32 bytes always encode"),
        );
        let id = age::x25519::Identity::from_str(&s).expect("well-formed age identity");
        s.zeroize();
        id
    }

    pub fn public(&self) -> BootPublic {
        let recipient = self.age_identity().to_public().to_string();
        let (_, data) = bech32::decode(&recipient).expect("age recipients are bech32");
        let mut seal = [0u8; 32];
        seal.copy_from_slice(&data);
        BootPublic {
            sign: self.signing_key().verifying_key().to_bytes(),
            seal,
        }
    }

    pub fn sign(&self, domain: &str, msg: &[u8]) -> Sig {
        sign(&self.sk, domain, msg)
    }
}

/// The node key: the node's libp2p identity; only the unlocked system has it.
pub struct NodeKey {
    sk: SigningKey,
}

impl NodeKey {
    /// A new node key from the OS RNG (drivers only).
    #[cfg(any(test, feature = "os-rng"))]
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::rngs::OsRng)
    }

    pub fn generate_with(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        NodeKey {
            sk: SigningKey::from_bytes(&random32(rng)),
        }
    }

    /// The ed25519 secret key bytes, for the libp2p identity and the key
    /// file. Secret.
    pub fn secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.sk.to_bytes())
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_secret(&Zeroizing::new(seed))
    }

    /// The key from its secret bytes (read from a key file), copied
    /// nowhere else.
    pub fn from_secret(secret: &Zeroizing<[u8; 32]>) -> Self {
        NodeKey {
            sk: SigningKey::from_bytes(secret),
        }
    }

    pub fn id(&self) -> NodeId {
        NodeId(self.sk.verifying_key().to_bytes())
    }

    pub fn sign(&self, domain: &str, msg: &[u8]) -> Sig {
        sign(&self.sk, domain, msg)
    }

    /// A plain ed25519 signature over the text of a C2SP signed note (a
    /// log checkpoint), which is what any C2SP verifier or witness checks:
    /// the note format is its own domain. It cannot be confused with
    /// keyward's tagged signatures: a note text is UTF-8 without control
    /// characters other than newline, and every tagged message holds a NUL.
    /// Witness cosignatures (C2SP `cosignature/v1`, `log::witness::cosign`)
    /// go through here too: their message is itself a note text starting
    /// with the line `cosignature/v1`, which no checkpoint's origin line is.
    /// Refuses (None) any text that is not a well-formed note text.
    pub fn sign_note(&self, text: &[u8]) -> Option<Sig> {
        let s = std::str::from_utf8(text).ok()?;
        if !s.ends_with('\n') || s.chars().any(|c| c < ' ' && c != '\n') {
            return None;
        }
        Some(Sig(self.sk.sign(text).to_bytes()))
    }
}

/// Verifies a plain ed25519 signature over a signed note's text (see
/// [`NodeKey::sign_note`]).
pub fn verify_note(pubkey: &[u8; 32], text: &[u8], sig: &Sig) -> Result<(), KeyError> {
    // The memo's parts differ from a tagged check's (no domain part), so
    // a note and a tagged message never share an entry.
    checked(crate::sig_memo::verified(pubkey, &sig.0, &[text], || {
        check(pubkey, text, sig)
    }))
}

#[cfg(test)]
mod order_tests {
    use super::NodeId;
    use proptest::prelude::*;

    proptest! {
        /// The order of ids is the order of their bytes (the roster's
        /// digests and every sorted list depend on it).
        #[test]
        fn node_ids_order_as_their_bytes(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), k in 0usize..32) {
            prop_assert_eq!(NodeId(a).cmp(&NodeId(b)), a.cmp(&b));
            // ids that share a prefix of k bytes
            let mut c = b;
            c[..k].copy_from_slice(&a[..k]);
            prop_assert_eq!(NodeId(a).cmp(&NodeId(c)), a.cmp(&c));
            prop_assert_eq!(NodeId(a).cmp(&NodeId(a)), std::cmp::Ordering::Equal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_key_derivations_are_stable_and_distinct() {
        let b = BootKey::from_seed([7; 32]);
        let p1 = b.public();
        let p2 = BootKey::from_seed([7; 32]).public();
        assert_eq!(p1, p2);
        assert_ne!(p1.sign, p1.seal);
        assert_ne!(BootKey::from_seed([8; 32]).public(), p1);
        // the age identity and recipient agree
        let ct = age::encrypt(&p1.recipient(), b"hello").unwrap();
        assert_eq!(age::decrypt(&b.age_identity(), &ct).unwrap(), b"hello");
    }

    #[test]
    fn signatures_are_domain_separated() {
        let n = NodeKey::generate();
        let s = n.sign("a", b"msg");
        assert!(n.id().verify("a", b"msg", &s).is_ok());
        assert!(n.id().verify("b", b"msg", &s).is_err());
        assert!(n.id().verify("a", b"msh", &s).is_err());
    }

    #[test]
    fn node_id_round_trips_through_its_text() {
        let n = NodeKey::generate();
        let id = n.id();
        let s = id.to_string();
        assert!(s.starts_with("12D3KooW"), "{s}");
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert!("nonsense".parse::<NodeId>().is_err());
    }
}
