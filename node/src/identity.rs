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
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand::RngCore;
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
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(#[serde(with = "fixed")] pub [u8; 32]);

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
    /// The libp2p peer id of this node key, which is how admins see nodes.
    pub fn peer_id(&self) -> Option<libp2p::PeerId> {
        let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(&self.0).ok()?;
        Some(libp2p::identity::PublicKey::from(pk).to_peer_id())
    }

    /// Recovers the node id from a libp2p peer id (ed25519 keys are inlined).
    pub fn from_peer_id(p: &libp2p::PeerId) -> Option<NodeId> {
        let mh = p.as_ref();
        let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
        let ed = pk.try_into_ed25519().ok()?;
        Some(NodeId(ed.to_bytes()))
    }

    pub fn short(&self) -> String {
        let s = self.to_string();
        s[s.len().saturating_sub(8)..].to_string()
    }

    pub fn verify(&self, domain: &str, msg: &[u8], sig: &Sig) -> Result<(), KeyError> {
        verify(&self.0, domain, msg, sig)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peer_id() {
            Some(p) => write!(f, "{p}"),
            None => write!(f, "invalid:{}", hex::encode(self.0)),
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let p: libp2p::PeerId = s.parse().map_err(|e| {
            format!("`{s}` is not a node id (a libp2p peer id such as 12D3Koo...): {e}")
        })?;
        NodeId::from_peer_id(&p).ok_or_else(|| format!("`{s}` is not an ed25519 peer id"))
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
    let vk = VerifyingKey::from_bytes(pubkey).map_err(|_| KeyError::BadPublicKey)?;
    vk.verify_strict(&tagged(domain, msg), &Signature::from_bytes(&sig.0))
        .map_err(|_| KeyError::BadSignature)
}

fn sign(sk: &SigningKey, domain: &str, msg: &[u8]) -> Sig {
    Sig(sk.sign(&tagged(domain, msg)).to_bytes())
}

fn random32() -> Zeroizing<[u8; 32]> {
    let mut b = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(b.as_mut());
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

    /// The libp2p peer id a boot-key connection shows up as.
    pub fn peer_id(&self) -> Option<libp2p::PeerId> {
        NodeId(self.sign).peer_id()
    }

    pub fn verify(&self, domain: &str, msg: &[u8], sig: &Sig) -> Result<(), KeyError> {
        verify(&self.sign, domain, msg, sig)
    }
}

impl BootKey {
    pub fn generate() -> Self {
        Self::from_zeroizing(random32())
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_zeroizing(Zeroizing::new(seed))
    }

    fn from_zeroizing(seed: Zeroizing<[u8; 32]>) -> Self {
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

    /// libp2p identity for the unlock client (a boot-key connection).
    pub fn libp2p_keypair(&self) -> libp2p::identity::Keypair {
        let mut b = self.signing_key().to_bytes();
        let kp = libp2p::identity::Keypair::ed25519_from_bytes(&mut b).expect("32-byte key");
        b.zeroize();
        kp
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        Ok(Self::from_zeroizing(read_key_file(
            path, "boot key", BOOT_LABEL,
        )?))
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_key_file(path, BOOT_LABEL, &self.seed)
    }
}

const BOOT_LABEL: &str = "keyward-boot-key-v1";
const NODE_LABEL: &str = "keyward-node-key-v1";

/// The node key: the node's libp2p identity; only the unlocked system has it.
pub struct NodeKey {
    sk: SigningKey,
}

impl NodeKey {
    pub fn generate() -> Self {
        NodeKey {
            sk: SigningKey::from_bytes(&random32()),
        }
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        let seed = Zeroizing::new(seed);
        NodeKey {
            sk: SigningKey::from_bytes(&seed),
        }
    }

    pub fn id(&self) -> NodeId {
        NodeId(self.sk.verifying_key().to_bytes())
    }

    pub fn sign(&self, domain: &str, msg: &[u8]) -> Sig {
        sign(&self.sk, domain, msg)
    }

    pub fn libp2p_keypair(&self) -> libp2p::identity::Keypair {
        let mut b = self.sk.to_bytes();
        let kp = libp2p::identity::Keypair::ed25519_from_bytes(&mut b).expect("32-byte key");
        b.zeroize();
        kp
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let seed = read_key_file(path, "node key", NODE_LABEL)?;
        Ok(NodeKey {
            sk: SigningKey::from_bytes(&seed),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_key_file(path, NODE_LABEL, &Zeroizing::new(self.sk.to_bytes()))
    }
}

/// Refuses key files that group or others can read: such a key must be
/// treated as copied.
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    let meta = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    check_meta(path, &meta)
}

/// Mode and owner of an opened key file. Checked on the open file, not
/// the path, so the file read is the file checked.
fn check_meta(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err(KeyError::NotAFile { path: path.into() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.into(),
            mode,
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(KeyError::Owner {
            path: path.into(),
            uid: meta.uid(),
        });
    }
    Ok(())
}

fn read_key_file(
    path: &Path,
    what: &'static str,
    label: &str,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    check_meta(path, &file.metadata().map_err(io)?)?;
    let mut text = Zeroizing::new(String::new());
    file.take(256).read_to_string(&mut text).map_err(io)?;
    let bad = |why: &str| KeyError::Format {
        path: path.into(),
        what,
        why: why.into(),
    };
    let body = text
        .trim()
        .strip_prefix(label)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(|| bad(&format!("expected a line `{label}:<64 hex digits>`")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(body.trim(), out.as_mut())
        .map_err(|_| bad("the key is not 64 hex digits"))?;
    Ok(out)
}

fn write_key_file(path: &Path, label: &str, secret: &[u8; 32]) -> Result<(), KeyError> {
    let mut text = Zeroizing::new(format!("{label}:{}\n", hex::encode(secret)));
    write_private_file(path, text.as_bytes(), false)?;
    text.zeroize();
    Ok(())
}

/// Writes a file readable only by its owner, fsyncs it and its directory.
/// Creates missing parent directories with mode 0700.
pub fn write_private_file(path: &Path, data: &[u8], overwrite: bool) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
    }
    if !overwrite && path.exists() {
        return Err(KeyError::Exists { path: path.into() });
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
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
    fn node_id_round_trips_through_peer_id() {
        let n = NodeKey::generate();
        let id = n.id();
        assert_eq!(
            id.peer_id().unwrap(),
            n.libp2p_keypair().public().to_peer_id()
        );
        let s = id.to_string();
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert!("nonsense".parse::<NodeId>().is_err());
    }

    #[test]
    fn key_files_are_private_and_refused_when_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/boot.key");
        let b = BootKey::generate();
        b.save(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(BootKey::load(&p).unwrap().public(), b.public());
        assert!(matches!(b.save(&p), Err(KeyError::Exists { .. })));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = BootKey::load(&p).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        // a node key file is not a boot key file
        let q = dir.path().join("node.key");
        NodeKey::generate().save(&q).unwrap();
        assert!(matches!(BootKey::load(&q), Err(KeyError::Format { .. })));
    }
}
