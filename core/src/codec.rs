//! Every wire and disk encoding. This is the only module that names
//! `serde_cbor`, so the format library can be swapped in one place.
//!
//! A frame is a CBOR map `{v: version, k: kind, b: body}`. The version and
//! kind are checked before the body is trusted, so a peer speaking a newer
//! protocol gets a clear refusal instead of a confusing parse error. Every
//! kind has a hard size limit checked before any parsing: a decoder never
//! allocates more than its input, and its input is never more than the limit.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol and disk format version this build speaks.
pub const VERSION: u16 = 1;

/// A type that crosses the wire or hits the disk.
pub trait Wire: Serialize + DeserializeOwned {
    /// Short stable name, checked on decode.
    const KIND: &'static str;
    /// Largest encoded frame accepted, in bytes.
    const MAX: usize;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("{kind} message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("unsupported {kind} version {got} (this build speaks version {VERSION}); upgrade keyward on the older side")]
    Version { kind: &'static str, got: u16 },
    #[error("expected a {expected} message, got `{got}`")]
    Kind { expected: &'static str, got: String },
    #[error("malformed {kind} message: {why}")]
    Malformed { kind: &'static str, why: String },
    /// The input ended inside the frame: a file cut short (a torn write,
    /// or a deliberate truncation), told apart from other damage so that
    /// log verification can say which happened.
    #[error("{kind} message is cut short: the input ends inside it")]
    Truncated { kind: &'static str },
}

#[derive(Serialize)]
struct FrameOut<'a, T> {
    v: u16,
    k: &'a str,
    b: &'a T,
}

#[derive(Deserialize)]
struct Head {
    v: u16,
    k: String,
}

#[derive(Deserialize)]
struct FrameIn<T> {
    #[allow(dead_code)]
    v: u16,
    #[allow(dead_code)]
    k: String,
    b: T,
}

/// Encodes a framed message; refuses to produce a frame its peer would drop.
pub fn encode<T: Wire>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let out = serde_cbor::to_vec(&FrameOut {
        v: VERSION,
        k: T::KIND,
        b: msg,
    })
    .map_err(|e| CodecError::Malformed {
        kind: T::KIND,
        why: e.to_string(),
    })?;
    if out.len() > T::MAX {
        return Err(CodecError::TooLarge {
            kind: T::KIND,
            len: out.len(),
            max: T::MAX,
        });
    }
    Ok(out)
}

/// Decodes a framed message, checking size, version and kind first.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > T::MAX {
        return Err(CodecError::TooLarge {
            kind: T::KIND,
            len: bytes.len(),
            max: T::MAX,
        });
    }
    let malformed = |e: serde_cbor::Error| {
        if e.is_eof() {
            CodecError::Truncated { kind: T::KIND }
        } else {
            CodecError::Malformed {
                kind: T::KIND,
                why: e.to_string(),
            }
        }
    };
    let head: Head = serde_cbor::from_slice(bytes).map_err(malformed)?;
    if head.v != VERSION {
        return Err(CodecError::Version {
            kind: T::KIND,
            got: head.v,
        });
    }
    if head.k != T::KIND {
        return Err(CodecError::Kind {
            expected: T::KIND,
            got: head.k.chars().take(32).collect(),
        });
    }
    let f: FrameIn<T> = serde_cbor::from_slice(bytes).map_err(malformed)?;
    Ok(f.b)
}

/// Whether `bytes` are the one encoding this build writes of `msg` (as
/// decoded from them). CBOR has others for the same value: a map key
/// written as a byte string instead of a text string (one bit apart)
/// decodes to the same field. A stored object whose bytes are evidence
/// (a segment, a witness record) is taken only in this encoding, so no
/// edit of its file goes unseen.
///
/// The encoding is compared as it is written, never kept: a segment's
/// is up to a megabyte, and allocating it again for every segment read
/// was a third of `keyward audit verify`'s time.
pub fn is_canonical<T: Wire>(msg: &T, bytes: &[u8]) -> bool {
    let mut rest = Compare { rest: bytes };
    let frame = FrameOut {
        v: VERSION,
        k: T::KIND,
        b: msg,
    };
    serde_cbor::to_writer(&mut rest, &frame).is_ok() && rest.rest.is_empty()
}

/// A writer that takes only the bytes `rest` starts with, consuming them,
/// and fails at the first that differs (or goes past its end).
struct Compare<'a> {
    rest: &'a [u8],
}

impl std::io::Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(rest) => {
                self.rest = rest;
                Ok(buf.len())
            }
            None => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The canonical bytes a signature covers: the body alone, unframed.
/// serde_cbor writes struct fields in declaration order, so the same value
/// always gives the same bytes.
pub fn signing_bytes<T: Serialize>(body: &T) -> Vec<u8> {
    serde_cbor::to_vec(body).expect("in-memory values always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Msg {
        a: u64,
        #[serde(with = "serde_bytes")]
        b: Vec<u8>,
        c: Option<String>,
        d: Vec<u32>,
    }
    impl Wire for Msg {
        const KIND: &'static str = "test";
        const MAX: usize = 1024;
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Other(u8);
    impl Wire for Other {
        const KIND: &'static str = "other";
        const MAX: usize = 64;
    }

    proptest! {
        /// The streaming comparison says what comparing with a fresh
        /// encoding would: the encoding itself is canonical; cut short,
        /// with a byte more, or with any byte changed it is not.
        #[test]
        fn canonical_is_exactly_the_encoding(a: u64, b in proptest::collection::vec(any::<u8>(), 0..200), at: usize, x in 1u8..) {
            let m = Msg { a, b, c: None, d: vec![1, 2] };
            let bytes = encode(&m).unwrap();
            prop_assert!(is_canonical(&m, &bytes));
            prop_assert!(!is_canonical(&m, &bytes[..bytes.len() - 1]));
            let mut more = bytes.clone();
            more.push(0);
            prop_assert!(!is_canonical(&m, &more));
            let mut changed = bytes.clone();
            changed[at % bytes.len()] ^= x;
            prop_assert!(!is_canonical(&m, &changed));
        }
    }

    proptest! {
        #[test]
        fn round_trips(a: u64, b in proptest::collection::vec(any::<u8>(), 0..200), c: Option<String>, d in proptest::collection::vec(any::<u32>(), 0..20)) {
            let m = Msg { a, b, c, d };
            match encode(&m) {
                Ok(bytes) => prop_assert_eq!(decode::<Msg>(&bytes).unwrap(), m),
                Err(CodecError::TooLarge { .. }) => {}
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode::<Msg>(&bytes);
            let _ = decode::<Other>(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(a: u64, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = encode(&Msg { a, b: vec![1; 40], c: Some("x".into()), d: vec![1, 2, 3] }).unwrap();
            for (i, x) in flips {
                let n = bytes.len();
                bytes[i % n] ^= x;
            }
            let _ = decode::<Msg>(&bytes);
        }
    }

    #[test]
    fn refuses_oversize_before_parsing() {
        let e = decode::<Other>(&[0u8; 65]).unwrap_err();
        assert!(matches!(
            e,
            CodecError::TooLarge {
                len: 65,
                max: 64,
                ..
            }
        ));
        let big = Msg {
            a: 1,
            b: vec![0; 2000],
            c: None,
            d: vec![],
        };
        assert!(matches!(encode(&big), Err(CodecError::TooLarge { .. })));
    }

    #[test]
    fn refuses_other_versions_and_kinds() {
        let bytes = serde_cbor::to_vec(&FrameOut {
            v: 9,
            k: "other",
            b: &Other(1),
        })
        .unwrap();
        let e = decode::<Other>(&bytes).unwrap_err();
        assert_eq!(
            e,
            CodecError::Version {
                kind: "other",
                got: 9
            }
        );
        assert!(e.to_string().contains("upgrade"));
        let bytes = encode(&Other(3)).unwrap();
        assert!(matches!(
            decode::<Msg>(&bytes),
            Err(CodecError::Kind { .. })
        ));
    }

    #[test]
    fn a_cut_frame_is_reported_as_truncated() {
        let bytes = encode(&Msg {
            a: 7,
            b: vec![9; 100],
            c: None,
            d: vec![],
        })
        .unwrap();
        for cut in [bytes.len() - 1, bytes.len() / 2, 20] {
            assert_eq!(
                decode::<Msg>(&bytes[..cut]).unwrap_err(),
                CodecError::Truncated { kind: "test" },
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // a byte string header claiming 2^63 bytes inside a small frame
        let mut bytes = vec![
            0xa3, 0x61, b'v', 0x01, 0x61, b'k', 0x64, b't', b'e', b's', b't', 0x61, b'b',
        ];
        bytes.extend_from_slice(&[0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode::<Msg>(&bytes).is_err());
        // an array header claiming 2^32 elements
        let mut bytes = vec![
            0xa3, 0x61, b'v', 0x01, 0x61, b'k', 0x64, b't', b'e', b's', b't', 0x61, b'b',
        ];
        bytes.extend_from_slice(&[0x9a, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode::<Msg>(&bytes).is_err());
    }
}
