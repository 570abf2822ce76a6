//! One log line, and the binary format lines take inside an encrypted
//! segment body or journal frame.
//!
//! Why not CBOR here: a segment of 1 MiB holds some 8,000 lines and this
//! format is on the hot path of every line; a fixed layout is encoded with a
//! few copies and decoded with bounds checks only. It is versioned by the
//! body's magic ([`BODY_MAGIC`]) and bounded per line ([`MAX_MSG`]).
//!
//! Layout of one line, big-endian:
//! `time_ms: u64 | flags: u8 | pid: u32 if flags&1 | uid: u32 if flags&2 |
//! gid: u32 if flags&4 | len: u32 | msg: len bytes`. Other flag bits are
//! refused, so a later version cannot be misread as this one.

use crate::guardian::Millis;

/// First bytes of a segment body's plaintext: "KWL" and the format version.
pub const BODY_MAGIC: [u8; 4] = *b"KWL\x01";

/// Largest message accepted in one line, in bytes (rsyslog's default
/// `maxMessageSize` is 8 KiB; journald's line limit is 48 KiB).
pub const MAX_MSG: usize = 64 * 1024;

/// Largest encoded line: header fields plus the message.
pub const MAX_LINE_ENCODED: usize = 8 + 1 + 12 + 4 + MAX_MSG;

const F_PID: u8 = 1;
const F_UID: u8 = 2;
const F_GID: u8 = 4;

/// Fields the kernel vouches for (SCM_CREDENTIALS on the unix socket, or
/// the driver's own knowledge for a pipe): the sender cannot forge them, as
/// journald's `_PID`/`_UID`/`_GID`. They live inside the encrypted body,
/// one set per line, because who logged is itself confidential; the
/// segment's signature covers them through the body hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sender {
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One line as received: when, from whom (trusted), what (raw bytes: a
/// syslog message need not be UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub time: Millis,
    pub sender: Sender,
    pub msg: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error("message of {len} bytes exceeds the {MAX_MSG}-byte line limit")]
    TooLong { len: usize },
    #[error("body does not start with the line format magic (not a keyward v1 body)")]
    Magic,
    #[error("line {index} is cut short")]
    Truncated { index: u32 },
    #[error("line {index} has unknown flags {flags:#04x}")]
    Flags { index: u32, flags: u8 },
    #[error("line {index} declares {len} message bytes, over the {MAX_MSG}-byte limit")]
    Length { index: u32, len: u64 },
    #[error("expected {expected} lines, found {found}")]
    Count { expected: u32, found: u32 },
    #[error("line {index} time {time} lies outside the segment's range {first}..={last}")]
    Time {
        index: u32,
        time: Millis,
        first: Millis,
        last: Millis,
    },
}

impl Line {
    /// Size of this line once encoded.
    pub fn encoded_len(&self) -> usize {
        let s = &self.sender;
        8 + 1
            + 4 * (s.pid.is_some() as usize + s.uid.is_some() as usize + s.gid.is_some() as usize)
            + 4
            + self.msg.len()
    }

    /// Appends this line's encoding to `out`; refuses an oversize message.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), LineError> {
        if self.msg.len() > MAX_MSG {
            return Err(LineError::TooLong {
                len: self.msg.len(),
            });
        }
        out.extend_from_slice(&self.time.to_be_bytes());
        let s = &self.sender;
        let flags = (s.pid.is_some() as u8 * F_PID)
            | (s.uid.is_some() as u8 * F_UID)
            | (s.gid.is_some() as u8 * F_GID);
        out.push(flags);
        for v in [s.pid, s.uid, s.gid].into_iter().flatten() {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(self.msg.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.msg);
        Ok(())
    }
}

/// Reads big-endian integers off a slice, refusing to run past its end.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
}

/// Decodes a run of encoded lines (no magic), at most `max_lines` of them;
/// every length is checked against the remaining input before use, so a
/// hostile input never makes this allocate more than it holds.
pub fn decode_lines(bytes: &[u8], max_lines: u32) -> Result<Vec<Line>, LineError> {
    let mut c = Cursor { b: bytes };
    let mut out = Vec::new();
    let mut index = 0u32;
    while !c.b.is_empty() {
        if index >= max_lines {
            return Err(LineError::Count {
                expected: max_lines,
                found: index.saturating_add(1),
            });
        }
        let cut = LineError::Truncated { index };
        let time = c.u64().ok_or(cut.clone())?;
        let flags = *c.take(1).ok_or(cut.clone())?.first().expect("1 byte");
        if flags & !(F_PID | F_UID | F_GID) != 0 {
            return Err(LineError::Flags { index, flags });
        }
        let mut field = |bit: u8| -> Result<Option<u32>, LineError> {
            if flags & bit == 0 {
                Ok(None)
            } else {
                c.u32().map(Some).ok_or(LineError::Truncated { index })
            }
        };
        let sender = Sender {
            pid: field(F_PID)?,
            uid: field(F_UID)?,
            gid: field(F_GID)?,
        };
        let len = c.u32().ok_or(cut.clone())? as usize;
        if len > MAX_MSG {
            return Err(LineError::Length {
                index,
                len: len as u64,
            });
        }
        let msg = c.take(len).ok_or(cut)?.to_vec();
        out.push(Line { time, sender, msg });
        index += 1;
    }
    Ok(out)
}

/// Decodes a whole body plaintext (magic + lines) and checks it against
/// what the signed header claims: the line count and the time range.
pub fn decode_body(
    bytes: &[u8],
    expected: u32,
    first: Millis,
    last: Millis,
) -> Result<Vec<Line>, LineError> {
    let rest = bytes.strip_prefix(&BODY_MAGIC).ok_or(LineError::Magic)?;
    let lines = decode_lines(rest, expected)?;
    if lines.len() as u32 != expected {
        return Err(LineError::Count {
            expected,
            found: lines.len() as u32,
        });
    }
    for (i, l) in lines.iter().enumerate() {
        if l.time < first || l.time > last {
            return Err(LineError::Time {
                index: i as u32,
                time: l.time,
                first,
                last,
            });
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_line() -> impl Strategy<Value = Line> {
        (
            any::<u64>(),
            any::<Option<u32>>(),
            any::<Option<u32>>(),
            any::<Option<u32>>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(time, pid, uid, gid, msg)| Line {
                time,
                sender: Sender { pid, uid, gid },
                msg,
            })
    }

    proptest! {
        #[test]
        fn lines_round_trip(lines in proptest::collection::vec(arb_line(), 0..20)) {
            let mut b = BODY_MAGIC.to_vec();
            for l in &lines {
                let before = b.len();
                l.encode_into(&mut b).unwrap();
                prop_assert_eq!(b.len() - before, l.encoded_len());
            }
            let first = lines.iter().map(|l| l.time).min().unwrap_or(0);
            let last = lines.iter().map(|l| l.time).max().unwrap_or(0);
            prop_assert_eq!(decode_body(&b, lines.len() as u32, first, last).unwrap(), lines);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), n in 0u32..50) {
            let _ = decode_lines(&bytes, n);
            let _ = decode_body(&bytes, n, 0, u64::MAX);
        }

        #[test]
        fn cut_bodies_are_refused(lines in proptest::collection::vec(arb_line(), 1..10), cut in any::<prop::sample::Index>()) {
            let mut b = BODY_MAGIC.to_vec();
            for l in &lines { l.encode_into(&mut b).unwrap(); }
            let at = cut.index(b.len());
            prop_assert!(decode_body(&b[..at], lines.len() as u32, 0, u64::MAX).is_err());
        }
    }

    #[test]
    fn refuses_oversize_lines_and_counts() {
        let big = Line {
            time: 1,
            sender: Sender::default(),
            msg: vec![0; MAX_MSG + 1],
        };
        assert!(matches!(
            big.encode_into(&mut Vec::new()),
            Err(LineError::TooLong { .. })
        ));
        let mut b = BODY_MAGIC.to_vec();
        let l = Line {
            time: 5,
            sender: Sender {
                pid: Some(1),
                uid: None,
                gid: Some(3),
            },
            msg: b"hi".to_vec(),
        };
        l.encode_into(&mut b).unwrap();
        l.encode_into(&mut b).unwrap();
        assert!(matches!(
            decode_body(&b, 1, 0, 10),
            Err(LineError::Count { .. })
        ));
        assert!(matches!(
            decode_body(&b, 3, 0, 10),
            Err(LineError::Count { .. })
        ));
        assert!(matches!(
            decode_body(&b, 2, 6, 10),
            Err(LineError::Time { .. })
        ));
        assert_eq!(decode_body(&b, 2, 5, 5).unwrap().len(), 2);
    }
}
