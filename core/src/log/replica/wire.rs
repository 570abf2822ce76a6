//! The messages between an origin and its replicas, each a codec frame of
//! its own kind with a hard size limit, and checked after decoding
//! ([`Push::check`]) before anything in it is used.
//!
//! - [`Push`] (origin → replica): consecutive segments from `from_index`,
//!   with the origin's latest checkpoint, which covers them. Zero segments
//!   is a probe: "tell me what you hold".
//! - [`Held`] (replica → origin): the replica's log size, sent only once
//!   every segment under it is durable.
//! - [`Ask`] (replica → origin): catch up from this index (a gap).
//! - [`Refused`] (replica → origin): why a push was not taken, for the
//!   origin to report (a full quota) or act on (a gap).

use serde::{Deserialize, Serialize};

use super::super::checkpoint::MAX_NOTE;
use super::super::segment::Segment;
use crate::codec::{self, CodecError, Wire};
use crate::identity::NodeId;

/// Most segments in one push: bounds the work of one accept and the
/// evidence a refusal carries.
pub const MAX_BATCH: usize = 256;

/// Largest push frame: one segment of the largest size, the checkpoint,
/// and headroom for framing (a push of many small segments stays under
/// this too: the origin packs segments until the next would not fit).
pub const MAX_PUSH: usize = <Segment as Wire>::MAX + MAX_NOTE + 64 * 1024;

/// Bytes a segment costs in a push beyond its own length (CBOR byte string
/// header), counted when packing.
const PER_SEGMENT_OVERHEAD: usize = 9;

/// Bytes of a push frame besides its segments and note (map keys, ids,
/// integers), rounded up.
const PUSH_OVERHEAD: usize = 256;

/// Longest detail text in a refusal.
pub const MAX_DETAIL: usize = 1024;

/// Segments of `origin`'s log from `from_index` on, and its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub origin: NodeId,
    pub from_index: u64,
    /// Encoded segments ([`Segment`] frames), at indices `from_index`,
    /// `from_index + 1`, ...
    pub segments: Vec<serde_bytes::ByteBuf>,
    /// The origin's latest signed checkpoint note; its size is at least
    /// `from_index + segments.len()`.
    #[serde(with = "serde_bytes")]
    pub checkpoint: Vec<u8>,
}

impl Wire for Push {
    const KIND: &'static str = "log-replica-push";
    const MAX: usize = MAX_PUSH;
}

/// What a replica holds of `origin`'s log: leaves `0..size` (segments
/// older than its retention excepted, their leaves stay in its tiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub origin: NodeId,
    pub size: u64,
    /// The size of the checkpoint the answered push carried, if this
    /// replica's tree matches it (its verified checkpoint is that one);
    /// else 0. Only so many leaves are known to be the origin's *current*
    /// log: an origin restored from an old backup signs a new history
    /// with the same key, and a replica holding the old one must not
    /// count as holding the new ([`super::tracker`]).
    #[serde(default)]
    pub matches: u64,
}

impl Wire for Held {
    const KIND: &'static str = "log-replica-held";
    const MAX: usize = 256;
}

/// Push `origin`'s log to me from `from_index` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub origin: NodeId,
    pub from_index: u64,
}

impl Wire for Ask {
    const KIND: &'static str = "log-replica-ask";
    const MAX: usize = 256;
}

/// Why a replica refused a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusedCode {
    /// The replica's quota for this origin is full.
    Full { used: u64, quota: u64 },
    /// The push starts past what the replica holds: push from `size`.
    Gap,
    /// The push is not acceptable (malformed, not covered by its
    /// checkpoint, ...): a bug or an attack; the detail says which.
    Invalid,
    /// The push carried evidence against the origin (a forked history, an
    /// equivocation, a segment not genuine): the replica keeps it.
    Evidence,
}

/// A refused push, with what the replica holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub origin: NodeId,
    pub size: u64,
    pub code: RefusedCode,
    pub detail: String,
}

impl Wire for Refused {
    const KIND: &'static str = "log-replica-refused";
    const MAX: usize = MAX_DETAIL + 512;
}

/// A message that decoded but breaks a rule of its kind.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("a push of {count} segments is over the {MAX_BATCH}-segment limit")]
    TooManySegments { count: usize },
    #[error("segment {at} of the push is {len} bytes, over the segment limit")]
    SegmentTooLarge { at: usize, len: usize },
    #[error("the push's checkpoint is {len} bytes, over the {MAX_NOTE}-byte limit")]
    CheckpointTooLarge { len: usize },
    #[error("the push's indices overflow (from {from} with {count} segments)")]
    IndexOverflow { from: u64, count: usize },
    #[error("refusal detail of {len} bytes is over the {MAX_DETAIL}-byte limit")]
    DetailTooLong { len: usize },
}

impl Push {
    /// The rules [`codec`]'s size and kind checks cannot see.
    pub fn check(&self) -> Result<(), WireError> {
        if self.segments.len() > MAX_BATCH {
            return Err(WireError::TooManySegments {
                count: self.segments.len(),
            });
        }
        if let Some((at, s)) = self
            .segments
            .iter()
            .enumerate()
            .find(|(_, s)| s.len() > <Segment as Wire>::MAX)
        {
            return Err(WireError::SegmentTooLarge { at, len: s.len() });
        }
        if self.checkpoint.len() > MAX_NOTE {
            return Err(WireError::CheckpointTooLarge {
                len: self.checkpoint.len(),
            });
        }
        self.end()?;
        Ok(())
    }

    /// One past the last index the push carries.
    pub fn end(&self) -> Result<u64, WireError> {
        self.from_index
            .checked_add(self.segments.len() as u64)
            .ok_or(WireError::IndexOverflow {
                from: self.from_index,
                count: self.segments.len(),
            })
    }

    /// Packs the segments from `from_index` on, in order, into one push:
    /// as many as fit in [`MAX_PUSH`] and [`MAX_BATCH`] (at least one, if
    /// any is given: a single segment always fits). The caller passes the
    /// segments of [`super::tracker::ReplicationTracker::next_push`]'s range
    /// and reports the range actually packed (`from_index..end()`).
    pub fn pack(
        origin: NodeId,
        from_index: u64,
        checkpoint: Vec<u8>,
        segments: impl IntoIterator<Item = Vec<u8>>,
    ) -> Push {
        let mut room = MAX_PUSH.saturating_sub(PUSH_OVERHEAD + checkpoint.len());
        let mut out = Vec::new();
        for s in segments {
            let cost = s.len() + PER_SEGMENT_OVERHEAD;
            if out.len() == MAX_BATCH || (cost > room && !out.is_empty()) {
                break;
            }
            room = room.saturating_sub(cost);
            out.push(serde_bytes::ByteBuf::from(s));
        }
        Push {
            origin,
            from_index,
            segments: out,
            checkpoint,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.check()?;
        Ok(codec::encode(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Push, WireError> {
        let p: Push = codec::decode(bytes)?;
        p.check()?;
        Ok(p)
    }
}

impl Held {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        Ok(codec::encode(self)?)
    }
    pub fn decode(bytes: &[u8]) -> Result<Held, WireError> {
        Ok(codec::decode(bytes)?)
    }
}

impl Ask {
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        Ok(codec::encode(self)?)
    }
    pub fn decode(bytes: &[u8]) -> Result<Ask, WireError> {
        Ok(codec::decode(bytes)?)
    }
}

impl Refused {
    /// A refusal; the detail is cut to [`MAX_DETAIL`] bytes (on a
    /// character boundary).
    pub fn new(origin: NodeId, size: u64, code: RefusedCode, detail: &str) -> Refused {
        Refused {
            origin,
            size,
            code,
            detail: crate::text::prefix(detail, MAX_DETAIL).to_string(),
        }
    }

    pub fn check(&self) -> Result<(), WireError> {
        if self.detail.len() > MAX_DETAIL {
            return Err(WireError::DetailTooLong {
                len: self.detail.len(),
            });
        }
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.check()?;
        Ok(codec::encode(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Refused, WireError> {
        let r: Refused = codec::decode(bytes)?;
        r.check()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn arb_code() -> impl Strategy<Value = RefusedCode> {
        prop_oneof![
            (any::<u64>(), any::<u64>())
                .prop_map(|(used, quota)| RefusedCode::Full { used, quota }),
            Just(RefusedCode::Gap),
            Just(RefusedCode::Invalid),
            Just(RefusedCode::Evidence),
        ]
    }

    #[test]
    fn limits_are_enforced() {
        let p = Push {
            origin: id(1),
            from_index: 0,
            segments: vec![serde_bytes::ByteBuf::from(vec![1]); MAX_BATCH + 1],
            checkpoint: vec![],
        };
        assert!(matches!(p.encode(), Err(WireError::TooManySegments { .. })));
        let bytes = codec::encode(&p).unwrap();
        assert!(matches!(
            Push::decode(&bytes),
            Err(WireError::TooManySegments { .. })
        ));
        let p = Push {
            origin: id(1),
            from_index: u64::MAX,
            segments: vec![serde_bytes::ByteBuf::from(vec![1])],
            checkpoint: vec![],
        };
        assert!(matches!(p.check(), Err(WireError::IndexOverflow { .. })));
        let p = Push {
            origin: id(1),
            from_index: 0,
            segments: vec![],
            checkpoint: vec![b'x'; MAX_NOTE + 1],
        };
        assert!(matches!(
            p.check(),
            Err(WireError::CheckpointTooLarge { .. })
        ));
        let r = Refused {
            origin: id(1),
            size: 0,
            code: RefusedCode::Gap,
            detail: "é".repeat(MAX_DETAIL),
        };
        assert!(matches!(r.check(), Err(WireError::DetailTooLong { .. })));
        let r = Refused::new(id(1), 0, RefusedCode::Gap, &"é".repeat(MAX_DETAIL));
        assert!(r.detail.len() <= MAX_DETAIL);
        assert_eq!(Refused::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn packing_respects_both_bounds() {
        // many small segments: the count bound
        let p = Push::pack(id(1), 5, vec![1; 100], (0..1000).map(|_| vec![0u8; 10]));
        assert_eq!(p.segments.len(), MAX_BATCH);
        assert!(p.encode().unwrap().len() <= MAX_PUSH);
        // large segments: the byte bound, and one always fits
        let big = <Segment as Wire>::MAX;
        let p = Push::pack(id(1), 0, vec![1; MAX_NOTE], (0..3).map(|_| vec![0u8; big]));
        assert_eq!(p.segments.len(), 1);
        assert!(p.encode().unwrap().len() <= MAX_PUSH);
        let p = Push::pack(id(1), 0, vec![], (0..5).map(|_| vec![0u8; 6 << 20]));
        assert_eq!(p.segments.len(), 2);
        assert!(p.encode().unwrap().len() <= MAX_PUSH);
        assert_eq!(p.end().unwrap(), 2);
        let p = Push::pack(id(1), 0, vec![], std::iter::empty());
        assert!(p.segments.is_empty());
    }

    #[test]
    fn kinds_are_not_confused() {
        let h = Held {
            origin: id(2),
            size: 9,
            matches: 9,
        }
        .encode()
        .unwrap();
        assert!(matches!(
            Ask::decode(&h),
            Err(WireError::Codec(CodecError::Kind { .. }))
        ));
        assert!(matches!(
            Push::decode(&h),
            Err(WireError::Codec(CodecError::Kind { .. }))
        ));
    }

    proptest! {
        #[test]
        fn pushes_round_trip(
            o: [u8; 32],
            from in 0u64..(1 << 60),
            segs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            cp in proptest::collection::vec(any::<u8>(), 0..500),
        ) {
            let p = Push::pack(NodeId(o), from, cp, segs);
            prop_assert_eq!(Push::decode(&p.encode().unwrap()).unwrap(), p);
        }

        #[test]
        fn small_messages_round_trip(o: [u8; 32], n: u64, code in arb_code(), detail in ".{0,300}") {
            let h = Held { origin: NodeId(o), size: n, matches: n / 2 };
            prop_assert_eq!(Held::decode(&h.encode().unwrap()).unwrap(), h);
            let a = Ask { origin: NodeId(o), from_index: n };
            prop_assert_eq!(Ask::decode(&a.encode().unwrap()).unwrap(), a);
            let r = Refused::new(NodeId(o), n, code, &detail);
            prop_assert_eq!(Refused::decode(&r.encode().unwrap()).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Push::decode(&bytes);
            let _ = Held::decode(&bytes);
            let _ = Ask::decode(&bytes);
            let _ = Refused::decode(&bytes);
        }

        #[test]
        fn mutated_pushes_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let p = Push::pack(id(3), 7, b"note".to_vec(), (0..4).map(|i| vec![i; 40]));
            let mut b = p.encode().unwrap();
            for (i, x) in flips {
                let at = i.index(b.len());
                b[at] ^= x;
            }
            if let Ok(q) = Push::decode(&b) {
                prop_assert!(q.check().is_ok());
            }
        }
    }
}
