//! Where each peer can be reached, and how we know.
//!
//! An address is only believed when it comes from the peer itself: we
//! reached the peer there (an authenticated connection we dialled), the
//! peer listed it on its own authenticated connection (identify), or the
//! peer signed it (a libp2p signed peer record, relayed by others in sync
//! answers and checked here against the peer's key). Nobody can put an
//! address into another peer's entry. `keyward bind` and `refresh` write
//! these addresses into LUKS tokens, so a member that could poison them
//! could send a node's initramfs anywhere.
//!
//! Each address remembers when it was last confirmed; the most recently
//! confirmed comes first, and one not confirmed for `max_age` while a
//! newer one was is dropped, so tokens do not collect dead addresses.
//! Addresses an admin gave (an invite, the bootstrap list) are kept for
//! good, next to the learnt ones, so a restarted mesh can always find its
//! way back. Sans-IO: every call takes `now`.

use std::collections::BTreeMap;

use libp2p::core::{PeerRecord as SignedPeerRecord, SignedEnvelope};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::codec::Wire;
use crate::guardian::Millis;

/// Learnt addresses kept per peer.
pub const MAX_ADDRS: usize = 8;
/// Admin-given addresses kept per peer.
pub const MAX_PINNED: usize = 8;
/// Longest address accepted, in bytes of its binary form (a DNS name of
/// 253 characters still fits).
pub const MAX_ADDR_LEN: usize = 300;
/// Largest signed peer record accepted or relayed, in bytes.
pub const MAX_RECORD_LEN: usize = 4096;
pub use crate::proto::SYNC_RECORDS_BUDGET;
/// mDNS candidates (unconfirmed, never persisted) kept per peer.
const MAX_CANDIDATES: usize = 4;

/// One learnt address and when it was last confirmed, in ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub addr: String,
    /// Last time a connection we dialled there authenticated the peer.
    pub reached: Option<Millis>,
    /// Last time the peer itself said it listens there.
    pub claimed: Option<Millis>,
}

impl Seen {
    fn last(&self) -> Millis {
        self.reached.max(self.claimed).unwrap_or(0)
    }
}

/// Everything known of one peer's addresses; also its on-disk form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Best first.
    pub seen: Vec<Seen>,
    /// From an invite or the bootstrap list: kept for good.
    pub pinned: Vec<String>,
    /// The newest signed peer record of this peer (protobuf envelope).
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
    /// Its sequence number (the signer's clock, in seconds).
    pub record_seq: u64,
    /// Unconfirmed (mDNS): tried when dialling, never shown or persisted.
    #[serde(skip)]
    pub candidates: Vec<Multiaddr>,
}

impl Wire for Entry {
    const KIND: &'static str = "peer-addrs";
    /// MAX_ADDRS + MAX_PINNED addresses of MAX_ADDR_LEN and a record.
    const MAX: usize = 16 * 1024;
}

/// What a call changed, so the daemon knows how urgently to persist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    None,
    /// Only when addresses were last confirmed: persist some time soon.
    Times,
    /// Addresses, their order, or the record: persist before they matter.
    Content,
}

/// A signed peer record whose signature checked out.
#[derive(Clone, Debug)]
pub struct VerifiedRecord {
    pub peer: PeerId,
    pub seq: u64,
    pub addrs: Vec<Multiaddr>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("signed peer record of {len} bytes exceeds the {MAX_RECORD_LEN}-byte limit")]
    TooLarge { len: usize },
    #[error("signed peer record does not decode or its signature is bad: {0}")]
    Invalid(String),
    #[error("signed peer record lists {n} addresses; at most {MAX_ADDRS} are accepted")]
    TooManyAddrs { n: usize },
    #[error(
        "signed peer record lists an address of {len} bytes; at most {MAX_ADDR_LEN} are accepted"
    )]
    AddrTooLong { len: usize },
}

/// Signs our own listen addresses (at most [`MAX_ADDRS`]).
pub fn sign_record(
    key: &libp2p::identity::Keypair,
    addrs: &[Multiaddr],
) -> Result<VerifiedRecord, String> {
    let addrs: Vec<Multiaddr> = addrs
        .iter()
        .filter(|a| a.len() <= MAX_ADDR_LEN)
        .take(MAX_ADDRS)
        .cloned()
        .collect();
    let r = SignedPeerRecord::new(key, addrs).map_err(|e| e.to_string())?;
    let bytes = r.to_signed_envelope().into_protobuf_encoding();
    Ok(VerifiedRecord {
        peer: r.peer_id(),
        seq: r.seq(),
        addrs: r.addresses().to_vec(),
        bytes,
    })
}

/// Checks a signed peer record's size, signature and bounds. Whether its
/// signer is someone whose addresses we want is the caller's question.
pub fn verify_record(bytes: &[u8]) -> Result<VerifiedRecord, RecordError> {
    if bytes.len() > MAX_RECORD_LEN {
        return Err(RecordError::TooLarge { len: bytes.len() });
    }
    let env = SignedEnvelope::from_protobuf_encoding(bytes)
        .map_err(|e| RecordError::Invalid(e.to_string()))?;
    let r = SignedPeerRecord::from_signed_envelope(env)
        .map_err(|e| RecordError::Invalid(e.to_string()))?;
    if r.addresses().len() > MAX_ADDRS {
        return Err(RecordError::TooManyAddrs {
            n: r.addresses().len(),
        });
    }
    if let Some(a) = r.addresses().iter().find(|a| a.len() > MAX_ADDR_LEN) {
        return Err(RecordError::AddrTooLong { len: a.len() });
    }
    Ok(VerifiedRecord {
        peer: r.peer_id(),
        seq: r.seq(),
        addrs: r.addresses().iter().map(strip_p2p).collect(),
        bytes: bytes.to_vec(),
    })
}

/// The address without a trailing `/p2p/<id>`: the entry's key says whose.
pub fn strip_p2p(a: &Multiaddr) -> Multiaddr {
    a.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Every peer's entry.
#[derive(Default)]
pub struct AddrBook {
    entries: BTreeMap<PeerId, Entry>,
    /// Drop a learnt address not confirmed for this long while another
    /// address of the same peer was.
    max_age: Millis,
}

impl AddrBook {
    pub fn new(max_age: Millis) -> Self {
        AddrBook {
            entries: BTreeMap::new(),
            max_age,
        }
    }

    /// Puts back an entry read from disk (bounds enforced again).
    pub fn restore(&mut self, p: PeerId, mut e: Entry) {
        e.seen.retain(|s| usable(&s.addr));
        e.seen.truncate(MAX_ADDRS);
        e.pinned.retain(|a| usable(a));
        e.pinned.truncate(MAX_PINNED);
        if e.record.len() > MAX_RECORD_LEN {
            e.record.clear();
            e.record_seq = 0;
        }
        self.entries.insert(p, e);
    }

    pub fn get(&self, p: &PeerId) -> Option<&Entry> {
        self.entries.get(p)
    }

    pub fn contains(&self, p: &PeerId) -> bool {
        self.entries.contains_key(p)
    }

    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.entries.keys()
    }

    /// Forgets peers `keep` says no to (strangers we no longer talk to).
    pub fn retain(&mut self, mut keep: impl FnMut(&PeerId, &Entry) -> bool) {
        self.entries.retain(|p, e| keep(p, e));
    }

    /// A connection we dialled to `a` authenticated `p`.
    pub fn reached(&mut self, p: PeerId, a: &Multiaddr, now: Millis) -> Change {
        self.learn(p, std::slice::from_ref(a), now, true)
    }

    /// `p` said, on its own authenticated connection, that it listens on
    /// `addrs` (identify).
    pub fn claimed(&mut self, p: PeerId, addrs: &[Multiaddr], now: Millis) -> Change {
        let addrs: Vec<Multiaddr> = addrs.iter().take(MAX_ADDRS).cloned().collect();
        self.learn(p, &addrs, now, false)
    }

    /// A signed record of `r.peer`, checked by [`verify_record`]. Only a
    /// newer record than the one held counts. Its addresses were confirmed
    /// when the peer signed them (never later than `now`).
    pub fn record(&mut self, r: VerifiedRecord, now: Millis) -> Change {
        let e = self.entries.entry(r.peer).or_default();
        if r.seq <= e.record_seq && !e.record.is_empty() {
            return Change::None;
        }
        e.record = r.bytes;
        e.record_seq = r.seq;
        let at = r.seq.saturating_mul(1000).min(now);
        self.learn(r.peer, &r.addrs, at, false);
        Change::Content
    }

    /// An admin gave this address (invite, bootstrap): kept for good.
    pub fn pin(&mut self, p: PeerId, a: &Multiaddr) -> Change {
        let a = strip_p2p(a);
        if a.len() > MAX_ADDR_LEN {
            return Change::None;
        }
        let a = a.to_string();
        let e = self.entries.entry(p).or_default();
        if e.pinned.contains(&a) {
            return Change::None;
        }
        e.pinned.insert(0, a);
        e.pinned.truncate(MAX_PINNED);
        Change::Content
    }

    /// An unconfirmed address (mDNS): tried when dialling, never trusted.
    pub fn candidate(&mut self, p: PeerId, a: &Multiaddr) {
        let a = strip_p2p(a);
        if a.len() > MAX_ADDR_LEN {
            return;
        }
        let e = self.entries.entry(p).or_default();
        if !e.candidates.contains(&a) {
            e.candidates.insert(0, a);
            e.candidates.truncate(MAX_CANDIDATES);
        }
    }

    /// Addresses to dial `p` at: learnt (best first), then pinned, then
    /// unconfirmed candidates.
    pub fn dial_addrs(&self, p: &PeerId) -> Vec<Multiaddr> {
        let Some(e) = self.entries.get(p) else {
            return vec![];
        };
        let mut out: Vec<Multiaddr> = vec![];
        let parsed = e
            .seen
            .iter()
            .map(|s| s.addr.as_str())
            .chain(e.pinned.iter().map(String::as_str))
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .chain(e.candidates.iter().cloned());
        for a in parsed {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// Addresses to tell others (status, LUKS tokens): the confirmed ones
    /// best first, or the pinned ones while nothing was confirmed.
    pub fn confirmed(&self, p: &PeerId) -> Vec<String> {
        match self.entries.get(p) {
            Some(e) if !e.seen.is_empty() => e.seen.iter().map(|s| s.addr.clone()).collect(),
            Some(e) => e.pinned.clone(),
            None => vec![],
        }
    }

    fn learn(&mut self, p: PeerId, addrs: &[Multiaddr], at: Millis, reached: bool) -> Change {
        let max_age = self.max_age;
        let e = self.entries.entry(p).or_default();
        let before = e.seen.clone();
        for a in addrs {
            let a = strip_p2p(a);
            if a.len() > MAX_ADDR_LEN || a.is_empty() {
                continue;
            }
            let text = a.to_string();
            let s = match e.seen.iter().position(|s| s.addr == text) {
                Some(i) => &mut e.seen[i],
                None => {
                    e.seen.push(Seen {
                        addr: text,
                        reached: None,
                        claimed: None,
                    });
                    e.seen.last_mut().expect("just pushed")
                }
            };
            let slot = if reached {
                &mut s.reached
            } else {
                &mut s.claimed
            };
            *slot = Some(slot.unwrap_or(0).max(at));
        }
        // Most recently confirmed first; at the same time, one we reached
        // before one only claimed; otherwise as they were, new ones in the
        // order given (the sort is stable).
        e.seen.sort_by(|a, b| {
            b.last()
                .cmp(&a.last())
                .then(b.reached.is_some().cmp(&a.reached.is_some()))
        });
        if let Some(newest) = e.seen.first().map(Seen::last) {
            e.seen
                .retain(|s| newest.saturating_sub(s.last()) <= max_age);
        }
        e.seen.truncate(MAX_ADDRS);
        let same_addrs = before.len() == e.seen.len()
            && before.iter().zip(&e.seen).all(|(a, b)| a.addr == b.addr);
        if !same_addrs {
            Change::Content
        } else if before != e.seen {
            Change::Times
        } else {
            Change::None
        }
    }
}

fn usable(a: &str) -> bool {
    a.parse::<Multiaddr>()
        .is_ok_and(|m| m.len() <= MAX_ADDR_LEN && !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    const DAY: Millis = 24 * 3600 * 1000;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_most_recently_confirmed_address_comes_first() {
        let mut b = AddrBook::new(7 * DAY);
        let p = PeerId::random();
        assert_eq!(
            b.claimed(
                p,
                &[ma("/ip4/192.0.2.1/tcp/1"), ma("/ip4/192.0.2.2/tcp/1")],
                1000
            ),
            Change::Content
        );
        assert_eq!(
            b.confirmed(&p),
            ["/ip4/192.0.2.1/tcp/1", "/ip4/192.0.2.2/tcp/1"]
        );
        // the peer moved: it is reached at a new address, then identifies
        b.reached(p, &ma("/ip4/198.51.100.7/tcp/1"), 5000);
        b.claimed(
            p,
            &[ma("/ip4/198.51.100.8/tcp/1"), ma("/ip4/198.51.100.7/tcp/1")],
            5000,
        );
        assert_eq!(
            b.confirmed(&p),
            [
                "/ip4/198.51.100.7/tcp/1",
                "/ip4/198.51.100.8/tcp/1",
                "/ip4/192.0.2.1/tcp/1",
                "/ip4/192.0.2.2/tcp/1"
            ]
        );
        // confirming the same again changes only times
        assert_eq!(
            b.reached(p, &ma("/ip4/198.51.100.7/tcp/1"), 6000),
            Change::Times
        );
        assert_eq!(
            b.reached(p, &ma("/ip4/198.51.100.7/tcp/1"), 6000),
            Change::None
        );
    }

    #[test]
    fn old_addresses_age_out_but_never_the_last_one() {
        let mut b = AddrBook::new(7 * DAY);
        let p = PeerId::random();
        b.reached(p, &ma("/ip4/192.0.2.1/tcp/1"), DAY);
        // a whole-mesh outage of a month ages nothing out
        assert_eq!(b.confirmed(&p).len(), 1);
        b.reached(p, &ma("/ip4/192.0.2.2/tcp/1"), 20 * DAY);
        assert_eq!(b.confirmed(&p), ["/ip4/192.0.2.2/tcp/1"]);
        // and the list stays bounded however many are claimed
        for i in 0..50 {
            b.claimed(p, &[ma(&format!("/ip4/192.0.2.{i}/tcp/2"))], 21 * DAY + i);
        }
        assert_eq!(b.confirmed(&p).len(), MAX_ADDRS);
        assert_eq!(b.confirmed(&p)[0], "/ip4/192.0.2.49/tcp/2");
    }

    #[test]
    fn pinned_addresses_stay_and_are_dialled_after_learnt_ones() {
        let mut b = AddrBook::new(DAY);
        let p = PeerId::random();
        let inv = ma(&format!("/ip4/192.0.2.1/tcp/7300/p2p/{p}"));
        assert_eq!(b.pin(p, &inv), Change::Content);
        assert_eq!(b.pin(p, &inv), Change::None);
        assert_eq!(b.confirmed(&p), ["/ip4/192.0.2.1/tcp/7300"]);
        b.reached(p, &ma("/ip4/192.0.2.5/tcp/7300"), 10 * DAY);
        b.candidate(p, &ma("/ip4/192.0.2.6/tcp/7300"));
        assert_eq!(
            b.dial_addrs(&p),
            [
                ma("/ip4/192.0.2.5/tcp/7300"),
                ma("/ip4/192.0.2.1/tcp/7300"),
                ma("/ip4/192.0.2.6/tcp/7300")
            ]
        );
        // candidates are never told to others
        assert_eq!(b.confirmed(&p), ["/ip4/192.0.2.5/tcp/7300"]);
    }

    #[test]
    fn signed_records_are_checked_and_only_newer_ones_count() {
        let k = Keypair::generate_ed25519();
        let r = sign_record(&k, &[ma("/ip4/192.0.2.1/tcp/7300")]).unwrap();
        let v = verify_record(&r.bytes).unwrap();
        assert_eq!(v.peer, k.public().to_peer_id());
        let mut b = AddrBook::new(DAY);
        assert_eq!(b.record(v.clone(), u64::MAX), Change::Content);
        assert_eq!(b.record(v, u64::MAX), Change::None);
        assert_eq!(
            b.confirmed(&k.public().to_peer_id()),
            ["/ip4/192.0.2.1/tcp/7300"]
        );
        // a flipped byte breaks the signature
        let mut bad = r.bytes.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(matches!(verify_record(&bad), Err(RecordError::Invalid(_))));
        assert!(matches!(
            verify_record(&vec![0; MAX_RECORD_LEN + 1]),
            Err(RecordError::TooLarge { .. })
        ));
    }

    #[test]
    fn oversize_lists_and_addresses_in_a_record_are_refused() {
        let k = Keypair::generate_ed25519();
        let many: Vec<Multiaddr> = (0..20)
            .map(|i| ma(&format!("/ip4/192.0.2.{i}/tcp/1")))
            .collect();
        // sign_record bounds our own; forge an oversize one the hard way
        let r = SignedPeerRecord::new(&k, many).unwrap();
        let bytes = r.to_signed_envelope().into_protobuf_encoding();
        assert_eq!(
            verify_record(&bytes).unwrap_err(),
            RecordError::TooManyAddrs { n: 20 }
        );
        let long = ma(&format!("/dns4/{}/tcp/1", "a".repeat(400)));
        let r = SignedPeerRecord::new(&k, vec![long]).unwrap();
        let bytes = r.to_signed_envelope().into_protobuf_encoding();
        assert!(matches!(
            verify_record(&bytes),
            Err(RecordError::AddrTooLong { .. })
        ));
    }
}
