//! Durability of an open segment, without plaintext on disk.
//!
//! A line is acknowledged (RELP `rsp 200`, a TCP sender's flow) only once
//! it is on disk, but a segment is sealed only when it is full or old
//! enough. In between, the segmenter writes *journal frames*: when a segment
//! opens it draws a random 32-byte key K (from the caller's RNG, kept in
//! memory only, zeroized on drop), wraps K with age to the source's
//! recipients, and the driver writes that wrapped key as the journal's
//! first record ([`JournalOpen`]). At every group commit the lines received
//! since the last one become one [`Frame`]: ChaCha20-Poly1305 under K, nonce
//! = frame index, the frame's metadata (segment identity, index, line count,
//! time range) as associated data. The driver appends and fsyncs; then it
//! may acknowledge those lines.
//!
//! The recovery rule. After a crash the node has the journal but not K: K
//! is wrapped to the recipients, and the node is none of them (for a
//! confidential source nobody on the node is). So the node never reads the
//! frames back. [`recover`] seals them *as they are*: a segment whose body
//! ([`BodyKind::Frames`](super::segment::BodyKind::Frames)) is the wrapped
//! key and the frame sequence, and whose signed header takes its line count
//! and time range from the frames' clear metadata. The auditor unwraps K
//! with its identity and opens the frames ([`open_frames`]), which also
//! checks that metadata (it is the AEAD's associated data). A torn last
//! record (the crash cut a write) is dropped: its lines were never fsynced,
//! so never acknowledged.
//!
//! The driver's part: one journal file per open segment, named by source
//! and sequence; create it with the [`JournalWrite`] whose `create` is set;
//! after a sealed segment of that sequence is durable in the spool, delete
//! the journal. At start, a journal whose (source, seq) the spool already
//! holds is a leftover of that window: delete it, do not recover it.
//!
//! Journal file = records, each `len: u32 BE` + a [`Record`] frame (codec).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::line::{self, Line};
use super::recipients::{self, Recipients};
use super::segment::{self, BodyKind, Sealed, Segment, SegmentHeader};
use super::LogError;
use crate::codec::{self, Wire};
use crate::guardian::Millis;
use crate::identity::{NodeId, NodeKey};

/// The first record of a journal: which segment, and its wrapped key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalOpen {
    pub origin: NodeId,
    pub source: String,
    pub seq: u64,
    pub confidential: bool,
    pub opened: Millis,
    /// An age file (to the source's recipients) whose plaintext is K.
    #[serde(with = "serde_bytes")]
    pub wrapped_key: Vec<u8>,
}

/// Lines of one group commit, encrypted under K.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub index: u32,
    pub lines: u32,
    pub first: Millis,
    pub last: Millis,
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    Open(JournalOpen),
    Frame(Frame),
}

impl Wire for Record {
    const KIND: &'static str = "log-journal";
    const MAX: usize = segment::MAX_BODY + 4096;
}

/// The body of a recovered segment: the journal as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FramesBody {
    pub open: JournalOpen,
    pub frames: Vec<Frame>,
}

impl Wire for FramesBody {
    const KIND: &'static str = "log-frames";
    const MAX: usize = segment::MAX_BODY;
}

/// What the driver appends to a journal (and fsyncs before acknowledging
/// the lines in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalWrite {
    pub source: String,
    pub seq: u64,
    /// Create (truncate) the journal file first: this is its opening record.
    pub create: bool,
    pub bytes: Vec<u8>,
}

/// Associated data of a frame: binds it to its segment and place.
#[derive(Serialize)]
struct FrameAad<'a> {
    origin: &'a NodeId,
    source: &'a str,
    seq: u64,
    index: u32,
    lines: u32,
    first: Millis,
    last: Millis,
}

fn nonce(index: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&index.to_be_bytes());
    n.into()
}

/// Length-prefixes one record for the journal file.
pub(crate) fn record_bytes(r: &Record) -> Result<Vec<u8>, LogError> {
    let b = codec::encode(r)?;
    let mut out = Vec::with_capacity(4 + b.len());
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(&b);
    Ok(out)
}

/// An open segment's key, in memory only.
pub(crate) struct SegmentKey(Zeroizing<[u8; 32]>);

impl SegmentKey {
    pub(crate) fn random(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(k.as_mut());
        SegmentKey(k)
    }

    /// K wrapped to the source's recipients.
    pub(crate) fn wrap(
        &self,
        recipients: &Recipients,
        confidential: bool,
    ) -> Result<Vec<u8>, LogError> {
        recipients.encrypt(confidential, self.0.as_ref())
    }

    /// Encrypts the encoded `lines` (no magic) as frame `index`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn frame(
        &self,
        origin: &NodeId,
        source: &str,
        seq: u64,
        index: u32,
        (first, last, lines): (Millis, Millis, u32),
        plain: &[u8],
    ) -> Frame {
        let aad = codec::signing_bytes(&FrameAad {
            origin,
            source,
            seq,
            index,
            lines,
            first,
            last,
        });
        let c = ChaCha20Poly1305::new(Key::from_slice(self.0.as_ref()));
        let ct = c
            .encrypt(
                &nonce(index),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("ChaCha20-Poly1305 encrypts any in-memory buffer");
        Frame {
            index,
            lines,
            first,
            last,
            ct,
        }
    }
}

/// A journal read back after a crash.
#[derive(Debug)]
pub struct Recovery {
    /// The frames sealed as a segment; None if the journal held no frame
    /// (nothing was acknowledged in that segment).
    pub sealed: Option<Sealed>,
    /// The sequence number the source's segmenter continues from.
    pub next_seq: u64,
    /// The last record was cut short and dropped.
    pub torn_tail: bool,
}

/// Parses a journal file: complete records, and whether a torn tail was
/// dropped. A damaged record before the end is an error, not a tail.
pub fn parse(bytes: &[u8]) -> Result<(Vec<Record>, bool), LogError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Ok((out, true));
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if len > Record::MAX {
            return Err(LogError::Journal(format!(
                "record {} declares {len} bytes, over the limit",
                out.len()
            )));
        }
        if rest.len() - 4 < len {
            return Ok((out, true));
        }
        let r: Record = codec::decode(&rest[4..4 + len])?;
        out.push(r);
        rest = &rest[4 + len..];
    }
    Ok((out, false))
}

/// The recovery rule (see the module doc): seals a crashed segment's
/// frames, unread, as a [`BodyKind::Frames`] segment signed by `key`.
pub fn recover(key: &NodeKey, journal: &[u8], now: Millis) -> Result<Recovery, LogError> {
    let (records, torn_tail) = parse(journal)?;
    let mut it = records.into_iter();
    let open = match it.next() {
        Some(Record::Open(o)) => o,
        Some(Record::Frame(_)) => {
            return Err(LogError::Journal(
                "first record is a frame, not the opening record".into(),
            ))
        }
        None => {
            return Err(LogError::Journal(
                "empty journal: no opening record, sequence unknown".into(),
            ))
        }
    };
    if open.origin != key.id() {
        return Err(LogError::Journal(format!(
            "journal of {:?}, not of this node",
            open.origin
        )));
    }
    segment::check_source_name(&open.source)?;
    let mut frames = Vec::new();
    let (mut first, mut last, mut lines) = (Millis::MAX, 0, 0u32);
    for r in it {
        let Record::Frame(f) = r else {
            return Err(LogError::Journal("a second opening record".into()));
        };
        if f.index as usize != frames.len() || f.lines == 0 || f.first > f.last {
            return Err(LogError::Journal(format!(
                "frame {} out of order or inconsistent",
                f.index
            )));
        }
        first = first.min(f.first);
        last = last.max(f.last);
        lines = lines.saturating_add(f.lines);
        frames.push(f);
    }
    if frames.is_empty() {
        return Ok(Recovery {
            sealed: None,
            next_seq: open.seq,
            torn_tail,
        });
    }
    let seq = open.seq;
    let (source, confidential) = (open.source.clone(), open.confidential);
    let body = codec::encode(&FramesBody { open, frames })?;
    let sealed = Segment::seal(
        key,
        &source,
        seq,
        (first, last, lines),
        confidential,
        now,
        BodyKind::Frames,
        body,
    )?;
    Ok(Recovery {
        sealed: Some(sealed),
        next_seq: seq + 1,
        torn_tail,
    })
}

/// Opens a recovered segment's body with a recipient's identity: unwraps
/// K, decrypts every frame, and checks the lines against the frames'
/// metadata and the signed header.
pub fn open_frames(
    identity: &dyn age::Identity,
    h: &SegmentHeader,
    body: &[u8],
) -> Result<Vec<Line>, LogError> {
    let fb: FramesBody = codec::decode(body)?;
    let o = &fb.open;
    if o.origin != h.origin
        || o.source != h.source
        || o.seq != h.seq
        || o.confidential != h.confidential
    {
        return Err(LogError::Header(
            "recovered body belongs to another segment".into(),
        ));
    }
    let k = recipients::decrypt(identity, &o.wrapped_key, 32)?;
    let k: [u8; 32] = k
        .as_slice()
        .try_into()
        .map_err(|_| LogError::Decrypt("wrapped key is not 32 bytes".into()))?;
    let key = SegmentKey(Zeroizing::new(k));
    let c = ChaCha20Poly1305::new(Key::from_slice(key.0.as_ref()));
    let mut out = Vec::new();
    for (i, f) in fb.frames.iter().enumerate() {
        if f.index as usize != i {
            return Err(LogError::Header(format!("frame {i} is out of order")));
        }
        let aad = codec::signing_bytes(&FrameAad {
            origin: &h.origin,
            source: &h.source,
            seq: h.seq,
            index: f.index,
            lines: f.lines,
            first: f.first,
            last: f.last,
        });
        let plain = Zeroizing::new(
            c.decrypt(
                &nonce(f.index),
                Payload {
                    msg: &f.ct,
                    aad: &aad,
                },
            )
            .map_err(|_| LogError::Decrypt(format!("frame {i} does not authenticate")))?,
        );
        let lines = line::decode_lines(&plain, f.lines)?;
        if lines.len() as u32 != f.lines {
            return Err(LogError::Line(line::LineError::Count {
                expected: f.lines,
                found: lines.len() as u32,
            }));
        }
        if lines.iter().any(|l| l.time < f.first || l.time > f.last) {
            return Err(LogError::Header(format!(
                "frame {i} has a line outside its time range"
            )));
        }
        out.extend(lines);
    }
    if out.len() as u32 != h.lines {
        return Err(LogError::Line(line::LineError::Count {
            expected: h.lines,
            found: out.len() as u32,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_journals_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
            let key = NodeKey::from_seed([3; 32]);
            let _ = recover(&key, &bytes, 1);
        }

        #[test]
        fn arbitrary_frames_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            prop_assert!(codec::decode::<FramesBody>(&bytes).is_err());
            prop_assert!(codec::decode::<Record>(&bytes).is_err());
            let h = SegmentHeader {
                origin: NodeId([1; 32]),
                source: "s".into(),
                seq: 0,
                first: 0,
                last: 9,
                lines: 1,
                confidential: true,
                sealed: 9,
                body_kind: BodyKind::Frames,
                body_len: bytes.len() as u64,
                body_hash: [0; 32],
            };
            let id = age::x25519::Identity::generate();
            prop_assert!(open_frames(&id, &h, &bytes).is_err());
        }

        #[test]
        fn records_round_trip(index: u32, lines in 1u32.., first: u64, ct in proptest::collection::vec(any::<u8>(), 0..300)) {
            let r = Record::Frame(Frame { index, lines, first, last: first, ct });
            let b = record_bytes(&r).unwrap();
            let (rs, torn) = parse(&b).unwrap();
            prop_assert!(!torn);
            prop_assert_eq!(rs, vec![r]);
            // every strict prefix is a torn tail, never an error
            for cut in 0..b.len() {
                let (rs, torn) = parse(&b[..cut]).unwrap();
                prop_assert!(rs.is_empty());
                prop_assert_eq!(torn, cut > 0);
            }
        }
    }
}
