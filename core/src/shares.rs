//! Splitting a disk secret over guardians and putting it back together.
//!
//! Each share is sealed (age, X25519) to the owner's boot key, so guardians
//! hold ciphertext only: even all of them together learn nothing. Each
//! envelope is signed by the owner's node key and names the guardian it was
//! made for, so a guardian cannot forge, swap or replay shares unnoticed. A
//! commitment to the secret lets `combine` tell a right combination from a
//! wrong one before the key ever reaches cryptsetup.

use std::collections::BTreeMap;
use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codec::{self, Wire};
use crate::identity::{BootKey, BootPublic, NodeId, NodeKey, Sig};

const SIG_DOMAIN: &str = "share envelope";
/// Most combinations `combine` tries before giving up; bounds the work a
/// hostile set of envelopes can cause.
const MAX_TRIES: usize = 2000;

/// A LUKS key made by keyward: 32 random bytes.
pub struct DiskSecret(Zeroizing<[u8; 32]>);

impl DiskSecret {
    #[cfg(any(test, feature = "os-rng"))]
    pub fn generate() -> Self {
        let mut b = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(b.as_mut());
        DiskSecret(b)
    }

    pub fn from_bytes(b: [u8; 32]) -> Self {
        DiskSecret(Zeroizing::new(b))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Binds the secret to its owner and epoch so a commitment from one
    /// binding is useless for another.
    pub fn commitment(&self, owner: &NodeId, epoch: u64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"keyward/v1/share commitment\0");
        h.update(owner.0);
        h.update(epoch.to_be_bytes());
        h.update(&self.0[..]);
        h.finalize().into()
    }
}

impl fmt::Debug for DiskSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DiskSecret(..)")
    }
}

/// The signed part of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareBody {
    pub owner: NodeId,
    pub guardian: NodeId,
    pub epoch: u64,
    /// The Shamir x coordinate, 1..=255.
    pub index: u8,
    pub threshold: u8,
    pub total: u8,
    #[serde(with = "crate::identity::fixed")]
    pub commitment: [u8; 32],
    /// age ciphertext of the share, to the owner's boot X25519 key.
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
    /// The boot key `sealed` was sealed to, signed with the rest by the
    /// owner's node key. The guardian accepts a request for this epoch
    /// only when signed by this boot key, so during a boot-key change the
    /// old epoch keeps opening with the old key (still in the initramfs)
    /// and the new epoch only with the new one, whatever the roster says.
    /// None in envelopes made before it existed: the roster's key applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootPublic>,
}

/// One guardian's share of one owner's disk key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareEnvelope {
    pub body: ShareBody,
    pub sig: Sig,
}

impl Wire for ShareEnvelope {
    const KIND: &'static str = "share";
    const MAX: usize = 2048;
}

impl ShareEnvelope {
    pub fn verify(&self) -> Result<(), crate::identity::KeyError> {
        self.body
            .owner
            .verify(SIG_DOMAIN, &codec::signing_bytes(&self.body), &self.sig)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("threshold {t} with {n} guardians: need 1 <= threshold <= guardians <= 255")]
    Shape { t: usize, n: usize },
    #[error("the same guardian {0} appears twice")]
    Duplicate(NodeId),
    #[error("sealing a share failed: {0}")]
    Seal(String),
}

/// Splits `secret` `threshold`-of-`guardians.len()`, one envelope per
/// guardian, with coefficients from the OS RNG (drivers only).
#[cfg(any(test, feature = "os-rng"))]
pub fn split(
    secret: &DiskSecret,
    threshold: usize,
    guardians: &[NodeId],
    epoch: u64,
    owner: &NodeKey,
    boot: &BootPublic,
) -> Result<Vec<ShareEnvelope>, SplitError> {
    split_with_rng(
        secret,
        threshold,
        guardians,
        epoch,
        owner,
        boot,
        &mut rand::rngs::OsRng,
    )
}

/// `split` with the Shamir polynomial coefficients drawn from `rng`.
///
/// The simulator passes its seeded RNG so that the shares (index,
/// commitment and the plaintext share) are the same for the same seed.
/// The age sealing is not covered: age 0.12 draws its file key and its
/// ephemeral X25519 key from the OS inside `age::encrypt` and offers no way
/// to supply an RNG, so `body.sealed`, and the owner's signature over the
/// body, still differ from run to run. Nothing decided from an envelope
/// depends on those bytes: the owner opens the same share either way.
pub fn split_with_rng<R: RngCore + rand::CryptoRng>(
    secret: &DiskSecret,
    threshold: usize,
    guardians: &[NodeId],
    epoch: u64,
    owner: &NodeKey,
    boot: &BootPublic,
    rng: &mut R,
) -> Result<Vec<ShareEnvelope>, SplitError> {
    let n = guardians.len();
    if threshold == 0 || threshold > n || n > 255 {
        return Err(SplitError::Shape { t: threshold, n });
    }
    for (i, g) in guardians.iter().enumerate() {
        if guardians[..i].contains(g) {
            return Err(SplitError::Duplicate(*g));
        }
    }
    let recipient = boot.recipient();
    let owner_id = owner.id();
    let commitment = secret.commitment(&owner_id, epoch);
    let dealer = blahaj::Sharks(threshold as u8).dealer_rng(secret.as_bytes(), &mut Rng010(rng));
    guardians
        .iter()
        .zip(dealer)
        .map(|(g, share)| {
            let plain = Zeroizing::new(Vec::<u8>::from(&share));
            let sealed =
                age::encrypt(&recipient, &plain).map_err(|e| SplitError::Seal(e.to_string()))?;
            let body = ShareBody {
                owner: owner_id,
                guardian: *g,
                epoch,
                index: plain[0],
                threshold: threshold as u8,
                total: n as u8,
                commitment,
                sealed,
                boot: Some(boot.clone()),
            };
            let sig = owner.sign(SIG_DOMAIN, &codec::signing_bytes(&body));
            Ok(ShareEnvelope { body, sig })
        })
        .collect()
}

/// Lends a `rand` 0.8 generator (the workspace's) to blahaj, which takes
/// a `rand_core` 0.10 one; it forwards every draw unchanged.
struct Rng010<'a, R>(&'a mut R);

impl<R: RngCore> rand_core_010::TryRng for Rng010<'_, R> {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

/// Only a cryptographic generator may deal shares: the bound on
/// `split_with_rng` carries the promise over.
impl<R: RngCore + rand::CryptoRng> rand_core_010::TryCryptoRng for Rng010<'_, R> {}

/// What the owner expects of the envelopes, from its LUKS token.
#[derive(Clone, Debug)]
pub struct Expect {
    pub owner: NodeId,
    pub epoch: u64,
    pub threshold: usize,
}

/// Why one envelope was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub from: NodeId,
    pub index: u8,
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "share {} from guardian {} {}",
            self.index,
            self.from.short(),
            self.reason
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    #[error("{valid} valid shares of {needed} needed{}", list(.rejected))]
    NotEnough {
        valid: usize,
        needed: usize,
        rejected: Vec<Rejected>,
    },
    #[error("{tried} combinations of {valid} valid shares all failed the commitment; the shares do not belong to one key{}", list(.rejected))]
    NoMatch {
        valid: usize,
        tried: usize,
        rejected: Vec<Rejected>,
    },
}

fn list(r: &[Rejected]) -> String {
    r.iter().map(|r| format!("; {r}")).collect()
}

/// One envelope checked and opened.
struct Opened {
    index: u8,
    share: blahaj::Share,
    commitment: [u8; 32],
}

/// Checks one envelope received from guardian `from`.
fn open(
    from: NodeId,
    env: &ShareEnvelope,
    expect: &Expect,
    boot: &BootKey,
) -> Result<Opened, String> {
    let b = &env.body;
    if b.owner != expect.owner {
        return Err(format!("belongs to another node ({})", b.owner.short()));
    }
    if env.verify().is_err() {
        return Err("has a bad signature".into());
    }
    if b.guardian != from {
        return Err(format!(
            "was made for guardian {}, not the sender",
            b.guardian.short()
        ));
    }
    if b.epoch != expect.epoch {
        return Err(format!(
            "is from epoch {}, expected {}",
            b.epoch, expect.epoch
        ));
    }
    if b.threshold as usize != expect.threshold {
        return Err(format!(
            "says threshold {}, expected {}",
            b.threshold, expect.threshold
        ));
    }
    if b.boot.as_ref().is_some_and(|k| *k != boot.public()) {
        return Err("cannot be opened with this boot key (it was sealed to another one: this epoch belongs to an older or newer boot key)".into());
    }
    let plain = Zeroizing::new(
        age::decrypt(&boot.age_identity(), &b.sealed)
            .map_err(|_| "cannot be opened with this boot key".to_string())?,
    );
    if plain.len() != 33 || plain[0] != b.index || b.index == 0 {
        return Err("has a malformed share inside".into());
    }
    let share = blahaj::Share::try_from(plain.as_slice()).map_err(|e| e.to_string())?;
    Ok(Opened {
        index: b.index,
        share,
        commitment: b.commitment,
    })
}

/// Checks one envelope as it arrives, so the unlock client can name a
/// guardian that sent a forged, damaged or foreign share at once instead
/// of only noticing when a combination fails.
pub fn check(
    from: NodeId,
    env: &ShareEnvelope,
    expect: &Expect,
    boot: &BootKey,
) -> Result<(), String> {
    open(from, env, expect, boot).map(|_| ())
}

/// Puts the disk secret back together from envelopes as received from
/// guardians. Invalid or foreign envelopes are dropped with a reason; if a
/// combination fails the commitment, further subsets are tried.
pub fn combine(
    received: &[(NodeId, ShareEnvelope)],
    expect: &Expect,
    boot: &BootKey,
) -> Result<DiskSecret, CombineError> {
    let mut rejected = Vec::new();
    let mut by_index: BTreeMap<u8, Opened> = BTreeMap::new();
    for (from, env) in received {
        match open(*from, env, expect, boot) {
            Ok(o) => {
                by_index.entry(o.index).or_insert(o);
            }
            Err(reason) => rejected.push(Rejected {
                from: *from,
                index: env.body.index,
                reason,
            }),
        }
    }
    let valid: Vec<Opened> = by_index.into_values().collect();
    let t = expect.threshold;
    if t == 0 || valid.len() < t {
        return Err(CombineError::NotEnough {
            valid: valid.len(),
            needed: t,
            rejected,
        });
    }
    let sharks = blahaj::Sharks(t as u8);
    let mut tried = 0;
    let mut pick: Vec<usize> = (0..t).collect();
    loop {
        tried += 1;
        let set: Vec<&blahaj::Share> = pick.iter().map(|&i| &valid[i].share).collect();
        if let Ok(bytes) = sharks.recover(set) {
            let bytes = Zeroizing::new(bytes);
            if let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice()) {
                let s = DiskSecret::from_bytes(arr);
                let c = s.commitment(&expect.owner, expect.epoch);
                if pick.iter().all(|&i| valid[i].commitment == c) {
                    return Ok(s);
                }
            }
        }
        if tried >= MAX_TRIES || !next_combination(&mut pick, valid.len()) {
            break;
        }
    }
    Err(CombineError::NoMatch {
        valid: valid.len(),
        tried,
        rejected,
    })
}

/// Advances `pick` (strictly increasing indices below `n`) to the next
/// combination in lexicographic order; false when exhausted.
fn next_combination(pick: &mut [usize], n: usize) -> bool {
    let k = pick.len();
    for i in (0..k).rev() {
        if pick[i] < n - k + i {
            pick[i] += 1;
            for j in i + 1..k {
                pick[j] = pick[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(
        t: usize,
        n: usize,
    ) -> (
        NodeKey,
        BootKey,
        Vec<NodeId>,
        DiskSecret,
        Vec<ShareEnvelope>,
    ) {
        let owner = NodeKey::generate();
        let boot = BootKey::generate();
        let guardians: Vec<NodeId> = (0..n).map(|_| NodeKey::generate().id()).collect();
        let secret = DiskSecret::generate();
        let envs = split(&secret, t, &guardians, 1, &owner, &boot.public()).unwrap();
        (owner, boot, guardians, secret, envs)
    }

    fn expect(owner: &NodeKey, t: usize) -> Expect {
        Expect {
            owner: owner.id(),
            epoch: 1,
            threshold: t,
        }
    }

    #[test]
    fn any_threshold_subset_recovers() {
        let (owner, boot, g, secret, envs) = setup(3, 5);
        let recv: Vec<_> = g.iter().copied().zip(envs).collect();
        for skip in 0..5 {
            let sub: Vec<_> = recv
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip && *i != (skip + 1) % 5)
                .map(|(_, r)| r.clone())
                .collect();
            let got = combine(&sub, &expect(&owner, 3), &boot).unwrap();
            assert_eq!(got.as_bytes(), secret.as_bytes());
        }
    }

    #[test]
    fn too_few_shares_says_how_many() {
        let (owner, boot, g, _, envs) = setup(3, 5);
        let recv: Vec<_> = g.iter().copied().zip(envs).take(2).collect();
        let e = combine(&recv, &expect(&owner, 3), &boot).unwrap_err();
        assert_eq!(e.to_string(), "2 valid shares of 3 needed");
    }

    #[test]
    fn tampered_and_foreign_envelopes_are_dropped_with_reasons() {
        let (owner, boot, g, secret, mut envs) = setup(3, 5);
        envs[3].body.sealed[40] ^= 1; // tampered ciphertext: bad signature
        let recv: Vec<_> = g.iter().copied().zip(envs.clone()).collect();
        let got = combine(&recv, &expect(&owner, 3), &boot).unwrap();
        assert_eq!(got.as_bytes(), secret.as_bytes());

        let only3: Vec<_> = recv[2..5].to_vec();
        let e = combine(&only3, &expect(&owner, 3), &boot)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("2 valid shares of 3 needed; share 4 from guardian"),
            "{e}"
        );
        assert!(e.ends_with("has a bad signature"), "{e}");

        // an envelope handed back by the wrong guardian
        let swapped = vec![
            (g[1], envs[0].clone()),
            (g[1], envs[1].clone()),
            (g[2], envs[2].clone()),
        ];
        let e = combine(&swapped, &expect(&owner, 3), &boot)
            .unwrap_err()
            .to_string();
        assert!(e.contains("was made for guardian"), "{e}");

        // another owner's shares, and a wrong boot key
        let (_, _, g2, _, envs2) = setup(3, 5);
        let foreign: Vec<_> = g2.iter().copied().zip(envs2).collect();
        let e = combine(&foreign, &expect(&owner, 3), &boot)
            .unwrap_err()
            .to_string();
        assert!(e.contains("belongs to another node"), "{e}");
        let e = combine(&recv, &expect(&owner, 3), &BootKey::generate())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be opened with this boot key"), "{e}");
    }

    #[test]
    fn a_forged_share_signed_by_the_owner_is_routed_around() {
        // A share that verifies but carries a wrong value (owner bug, or a
        // re-signed envelope) fails the commitment; other subsets are tried.
        let (owner, boot, g, secret, mut envs) = setup(2, 4);
        let mut bad = vec![9u8; 33];
        bad[0] = envs[0].body.index;
        envs[0].body.sealed = age::encrypt(&boot.public().recipient(), &bad).unwrap();
        envs[0].sig = owner.sign(SIG_DOMAIN, &codec::signing_bytes(&envs[0].body));
        let recv: Vec<_> = g.iter().copied().zip(envs).collect();
        let got = combine(&recv, &expect(&owner, 2), &boot).unwrap();
        assert_eq!(got.as_bytes(), secret.as_bytes());
    }

    #[test]
    fn envelopes_round_trip_the_codec() {
        let (_, _, _, _, envs) = setup(3, 5);
        let b = codec::encode(&envs[0]).unwrap();
        // age adds a random "grease" stanza, so the size varies by a few hundred bytes
        assert!(b.len() <= 1024, "{} bytes", b.len());
        assert_eq!(codec::decode::<ShareEnvelope>(&b).unwrap(), envs[0]);
    }

    #[test]
    fn split_refuses_bad_shapes() {
        let o = NodeKey::generate();
        let b = BootKey::generate().public();
        let g = vec![o.id(), o.id()];
        assert!(matches!(
            split(&DiskSecret::generate(), 3, &g, 1, &o, &b),
            Err(SplitError::Shape { .. })
        ));
        assert!(matches!(
            split(&DiskSecret::generate(), 2, &g, 1, &o, &b),
            Err(SplitError::Duplicate(_))
        ));
    }

    #[test]
    fn combinations_enumerate() {
        let mut p = vec![0, 1];
        let mut n = 1;
        while next_combination(&mut p, 4) {
            n += 1;
        }
        assert_eq!(n, 6);
    }
}
