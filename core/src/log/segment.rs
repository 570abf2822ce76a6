//! A sealed log segment: a signed plaintext header and an encrypted body.
//!
//! The header says what anyone may know without the auditor's key: origin
//! node, source name, per-source sequence number, time range, line count,
//! confidential flag, how the body is encrypted, its length and SHA-256.
//! The node key signs the header (domain [`SEGMENT_DOMAIN`]); the body hash
//! in it makes the signature cover the body too. The trusted sender fields
//! (pid/uid/gid) are per line, inside the encrypted body (see
//! [`super::line`]).
//!
//! The Merkle log's leaf for a segment is the header's canonical CBOR
//! ([`Segment::leaf`]): small, and it commits to the body through its hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::line::{self, Line, MAX_LINE_ENCODED};
use super::recipients::{self, Recipients};
use super::{journal, LogError};
use crate::codec::{self, Wire};
use crate::guardian::Millis;
use crate::identity::{fixed, NodeId, NodeKey, Sig};

/// Signing domain of segment headers.
pub const SEGMENT_DOMAIN: &str = "log segment";

/// Largest segment body, in bytes. The segmenter's default target is 1 MiB.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Most lines in one segment.
pub const MAX_LINES: u32 = 1 << 20;

/// Largest plaintext a segment body may hold (what decryption may produce).
pub const MAX_PLAINTEXT: usize = MAX_BODY;

/// How a body is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyKind {
    /// A standard age file of [`line::BODY_MAGIC`] + lines: `age -d` opens
    /// it. Every segment the segmenter seals.
    Age,
    /// The journal frames of a segment recovered after a crash
    /// ([`journal::FramesBody`]): the node could not read them back, so it
    /// sealed them as they were. The auditor's identity unwraps the key.
    Frames,
}

/// A source's name: 1 to 64 characters of `a-z 0-9 . _ -`, so it is safe in
/// a file name and a log line.
pub fn check_source_name(s: &str) -> Result<(), LogError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        });
    if ok {
        Ok(())
    } else {
        Err(LogError::SourceName(s.chars().take(64).collect()))
    }
}

/// What the node signs about a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub origin: NodeId,
    pub source: String,
    /// Per (origin, source), from 0, one more for each segment sealed.
    pub seq: u64,
    /// Time of the earliest and latest line (Unix ms).
    pub first: Millis,
    pub last: Millis,
    pub lines: u32,
    /// A confidential source is sealed to the auditors only.
    pub confidential: bool,
    /// When the segment was sealed (Unix ms).
    pub sealed: Millis,
    pub body_kind: BodyKind,
    pub body_len: u64,
    #[serde(with = "fixed")]
    pub body_hash: [u8; 32],
}

/// A sealed segment as stored in the spool and sent to peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub header: SegmentHeader,
    pub sig: Sig,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl Wire for Segment {
    const KIND: &'static str = "log-segment";
    const MAX: usize = MAX_BODY + 4096;
}

impl SegmentHeader {
    /// The checks that need neither the body nor a key.
    fn check(&self) -> Result<(), LogError> {
        check_source_name(&self.source)?;
        let bad = |why: &str| Err(LogError::Header(why.to_string()));
        if self.lines == 0 || self.lines > MAX_LINES {
            return bad("line count is 0 or over the limit");
        }
        if self.first > self.last {
            return bad("first line is later than the last");
        }
        if self.body_len > MAX_BODY as u64 {
            return bad("body length over the limit");
        }
        Ok(())
    }
}

/// What the segmenter hands the driver: the segment's bytes for the spool
/// and its leaf for the Merkle log.
#[derive(Clone, Debug)]
pub struct Sealed {
    pub header: SegmentHeader,
    /// The encoded [`Segment`], to write to the spool.
    pub bytes: Vec<u8>,
    /// The leaf to append to the origin's Merkle log ([`Segment::leaf`]).
    pub leaf: Vec<u8>,
}

impl Segment {
    /// Signs a header over `body` and encodes the segment.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn seal(
        key: &NodeKey,
        source: &str,
        seq: u64,
        (first, last, lines): (Millis, Millis, u32),
        confidential: bool,
        now: Millis,
        body_kind: BodyKind,
        body: Vec<u8>,
    ) -> Result<Sealed, LogError> {
        let header = SegmentHeader {
            origin: key.id(),
            source: source.to_string(),
            seq,
            first,
            last,
            lines,
            confidential,
            sealed: now,
            body_kind,
            body_len: body.len() as u64,
            body_hash: Sha256::digest(&body).into(),
        };
        header.check()?;
        let leaf = codec::signing_bytes(&header);
        let sig = key.sign(SEGMENT_DOMAIN, &leaf);
        let seg = Segment { header, sig, body };
        let bytes = codec::encode(&seg)?;
        Ok(Sealed {
            header: seg.header,
            bytes,
            leaf,
        })
    }

    /// Decodes and fully checks a segment: size, header bounds, body
    /// length and hash, and the origin's signature, in that order (cheap
    /// checks first). Nothing of it is used before all pass.
    pub fn decode(bytes: &[u8]) -> Result<Segment, LogError> {
        let seg: Segment = codec::decode(bytes)?;
        seg.check()?;
        // The signature covers the header's re-encoding, so another
        // encoding of the same segment would pass every check above.
        if !codec::is_canonical(&seg, bytes) {
            return Err(LogError::Header(
                "not in keyward's canonical encoding (the file was rewritten or edited)".into(),
            ));
        }
        Ok(seg)
    }

    fn check(&self) -> Result<(), LogError> {
        self.header.check()?;
        if self.body.len() as u64 != self.header.body_len {
            return Err(LogError::Header(format!(
                "body is {} bytes, header says {}",
                self.body.len(),
                self.header.body_len
            )));
        }
        if <[u8; 32]>::from(Sha256::digest(&self.body)) != self.header.body_hash {
            return Err(LogError::BodyHash);
        }
        self.header
            .origin
            .verify(
                SEGMENT_DOMAIN,
                &codec::signing_bytes(&self.header),
                &self.sig,
            )
            .map_err(|_| LogError::BadSignature {
                origin: self.header.origin,
            })
    }

    /// The Merkle leaf of this segment: its header's canonical bytes.
    pub fn leaf(&self) -> Vec<u8> {
        codec::signing_bytes(&self.header)
    }

    /// Decrypts the body with `identity` (the auditor's, or the local
    /// admin's for a non-confidential source) and checks the lines against
    /// the signed header.
    pub fn open(&self, identity: &dyn age::Identity) -> Result<Vec<Line>, LogError> {
        let h = &self.header;
        match h.body_kind {
            BodyKind::Age => {
                let max = (h.lines as usize)
                    .saturating_mul(MAX_LINE_ENCODED)
                    .saturating_add(line::BODY_MAGIC.len())
                    .min(MAX_PLAINTEXT);
                let plain = recipients::decrypt(identity, &self.body, max)?;
                Ok(line::decode_body(&plain, h.lines, h.first, h.last)?)
            }
            BodyKind::Frames => journal::open_frames(identity, h, &self.body),
        }
    }
}

/// Encrypts a body plaintext to a source's recipients and seals it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn seal_plaintext(
    key: &NodeKey,
    recipients: &Recipients,
    source: &str,
    seq: u64,
    range: (Millis, Millis, u32),
    confidential: bool,
    now: Millis,
    plaintext: &[u8],
) -> Result<Sealed, LogError> {
    let body = recipients.encrypt(confidential, plaintext)?;
    Segment::seal(
        key,
        source,
        seq,
        range,
        confidential,
        now,
        BodyKind::Age,
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::line::Sender;
    use proptest::prelude::*;

    pub(crate) fn sample(key: &NodeKey, recipients: &Recipients, confidential: bool) -> Sealed {
        let mut plain = line::BODY_MAGIC.to_vec();
        for i in 0..3u64 {
            Line {
                time: 1000 + i,
                sender: Sender {
                    pid: Some(42),
                    uid: Some(1000),
                    gid: None,
                },
                msg: format!("line {i}").into_bytes(),
            }
            .encode_into(&mut plain)
            .unwrap();
        }
        seal_plaintext(
            key,
            recipients,
            "apache",
            7,
            (1000, 1002, 3),
            confidential,
            2000,
            &plain,
        )
        .unwrap()
    }

    fn keys() -> (
        NodeKey,
        age::x25519::Identity,
        age::x25519::Identity,
        Recipients,
    ) {
        let key = NodeKey::generate();
        let auditor = age::x25519::Identity::generate();
        let admin = age::x25519::Identity::generate();
        let r = Recipients::new(
            vec![super::super::recipients::Recipient::X25519(
                auditor.to_public(),
            )],
            Some(super::super::recipients::Recipient::X25519(
                admin.to_public(),
            )),
        )
        .unwrap();
        (key, auditor, admin, r)
    }

    #[test]
    fn seal_decode_open() {
        let (key, auditor, admin, r) = keys();
        let s = sample(&key, &r, false);
        let seg = Segment::decode(&s.bytes).unwrap();
        assert_eq!(seg.header, s.header);
        assert_eq!(seg.leaf(), s.leaf);
        let lines = seg.open(&auditor).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].sender.pid, Some(42));
        assert_eq!(seg.open(&admin).unwrap(), lines);
        // the node's own keys open nothing
        let other = age::x25519::Identity::generate();
        assert!(matches!(seg.open(&other), Err(LogError::Decrypt(_))));
        // the body is a plain age file
        let plain = age::decrypt(&auditor, &seg.body).unwrap();
        assert!(plain.starts_with(&line::BODY_MAGIC));
    }

    #[test]
    fn confidential_segments_are_not_for_the_admin() {
        let (key, auditor, admin, r) = keys();
        let seg = Segment::decode(&sample(&key, &r, true).bytes).unwrap();
        assert!(seg.open(&auditor).is_ok());
        assert!(matches!(seg.open(&admin), Err(LogError::Decrypt(_))));
    }

    #[test]
    fn edits_are_refused_with_the_reason() {
        let (key, _, _, r) = keys();
        let s = sample(&key, &r, false);
        let mut seg = Segment::decode(&s.bytes).unwrap();
        seg.body[10] ^= 1;
        let b = codec::encode(&seg).unwrap();
        assert!(matches!(Segment::decode(&b), Err(LogError::BodyHash)));
        let mut seg = Segment::decode(&s.bytes).unwrap();
        seg.header.lines = 4;
        let b = codec::encode(&seg).unwrap();
        assert!(matches!(
            Segment::decode(&b),
            Err(LogError::BadSignature { .. })
        ));
        let mut seg = Segment::decode(&s.bytes).unwrap();
        seg.body.pop();
        let b = codec::encode(&seg).unwrap();
        assert!(matches!(Segment::decode(&b), Err(LogError::Header(_))));
        assert!(matches!(
            Segment::decode(&s.bytes[..s.bytes.len() - 5]),
            Err(LogError::Codec(codec::CodecError::Truncated { .. }))
        ));
    }

    #[test]
    fn source_names() {
        assert!(check_source_name("apache.access_log-1").is_ok());
        for bad in ["", "Apache", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_source_name(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn sealed_segments_round_trip(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20),
            t0 in 0u64..(1 << 50),
            seq: u64,
            confidential: bool,
            pid: Option<u32>,
        ) {
            let (key, auditor, _, r) = keys();
            let lines: Vec<Line> = msgs
                .into_iter()
                .enumerate()
                .map(|(i, msg)| Line { time: t0 + i as u64, sender: Sender { pid, uid: None, gid: Some(4) }, msg })
                .collect();
            let mut plain = line::BODY_MAGIC.to_vec();
            for l in &lines {
                l.encode_into(&mut plain).unwrap();
            }
            let n = lines.len() as u32;
            let s = seal_plaintext(&key, &r, "src", seq, (t0, t0 + n as u64 - 1, n), confidential, t0, &plain).unwrap();
            let seg = Segment::decode(&s.bytes).unwrap();
            prop_assert_eq!(&seg.header, &s.header);
            prop_assert_eq!(seg.leaf(), s.leaf);
            prop_assert_eq!(seg.open(&auditor).unwrap(), lines);
        }
    }

    /// Every single-bit flip of a segment, anywhere, is refused (a flip
    /// of bit 5 of a map key's first byte turns a text string into a byte
    /// string of the same letters, which CBOR decodes to the same field).
    #[test]
    fn every_single_bit_flip_is_refused() {
        let (key, _, _, r) = keys();
        let b = sample(&key, &r, false).bytes;
        assert!(Segment::decode(&b).is_ok());
        for at in 0..b.len() {
            for bit in 0..8 {
                let mut t = b.clone();
                t[at] ^= 1 << bit;
                assert!(
                    Segment::decode(&t).is_err(),
                    "a flip of bit {bit} of byte {at} (0x{:02x}) was taken",
                    b[at]
                );
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert!(Segment::decode(&bytes).is_err());
        }

        #[test]
        fn flipped_segments_are_refused(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4)) {
            let (key, _, _, r) = keys();
            let mut b = sample(&key, &r, false).bytes;
            for (i, x) in flips {
                let at = i.index(b.len());
                b[at] ^= x;
            }
            prop_assert!(Segment::decode(&b).is_err());
        }
    }
}
