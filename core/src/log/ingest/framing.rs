//! RFC 6587 framing of syslog over TCP: octet counting (`LEN SP MSG`) and
//! non-transparent LF framing (`MSG LF`).
//!
//! The method is detected per frame, as rsyslog's imtcp does: a frame that
//! starts with a digit is octet-counted (a syslog message starts with `<`),
//! anything else runs to the next LF. Incremental: bytes in as they arrive,
//! whole frames out; a frame may span any number of reads. Bounded: no
//! frame is longer than the line limit, and the buffer never holds more
//! than one unfinished frame plus the bytes of one read.

use super::MAX_MESSAGE;

/// Most digits of an octet count (65536 has 5).
const MAX_LEN_DIGITS: usize = 5;

/// Why a stream cannot be framed; the connection is unusable after it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("syslog frame of {len} bytes exceeds the {max}-byte limit (RFC 6587 octet count or LF-framed line); send shorter messages")]
    TooLong { len: usize, max: usize },
    #[error("RFC 6587 octet count is not a number followed by a space")]
    BadCount,
    #[error("stream ended inside a frame ({pending} bytes never completed)")]
    Truncated { pending: usize },
    #[error("more than {max} bytes buffered: read frames out before pushing more")]
    Overfull { max: usize },
}

/// Turns a TCP byte stream into syslog messages.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    pos: usize,
    failed: Option<FrameError>,
}

/// Most bytes a deframer holds: one unfinished frame and its count, plus
/// one read of this size.
pub const MAX_READ: usize = 64 * 1024;
const MAX_BUFFER: usize = MAX_MESSAGE + MAX_LEN_DIGITS + 1 + MAX_READ;

impl Deframer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. Call [`Deframer::next_frame`] until it
    /// returns `None` before pushing again; pushes of at most [`MAX_READ`]
    /// bytes then always fit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() + bytes.len() > MAX_BUFFER {
            return Err(self.fail(FrameError::Overfull { max: MAX_BUFFER }));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(e.clone());
        e
    }

    /// The next complete message, `None` if more bytes are needed. Empty
    /// LF-framed lines are skipped.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let rest = &self.buf[self.pos..];
            let Some(&first) = rest.first() else {
                return Ok(None);
            };
            if first.is_ascii_digit() {
                return self.octet_counted();
            }
            match rest.iter().position(|&c| c == b'\n') {
                Some(0) => self.pos += 1,
                Some(lf) => {
                    if lf > MAX_MESSAGE {
                        return Err(self.fail(FrameError::TooLong {
                            len: lf,
                            max: MAX_MESSAGE,
                        }));
                    }
                    let frame = rest[..lf].to_vec();
                    self.pos += lf + 1;
                    return Ok(Some(frame));
                }
                None if rest.len() > MAX_MESSAGE => {
                    let len = rest.len();
                    return Err(self.fail(FrameError::TooLong {
                        len,
                        max: MAX_MESSAGE,
                    }));
                }
                None => return Ok(None),
            }
        }
    }

    fn octet_counted(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let rest = &self.buf[self.pos..];
        let ndigits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if ndigits > MAX_LEN_DIGITS {
            let len = rest[..ndigits].iter().fold(0usize, |n, &c| {
                n.saturating_mul(10).saturating_add(usize::from(c - b'0'))
            });
            return Err(self.fail(FrameError::TooLong {
                len,
                max: MAX_MESSAGE,
            }));
        }
        if ndigits == rest.len() {
            return Ok(None);
        }
        if rest[ndigits] != b' ' {
            return Err(self.fail(FrameError::BadCount));
        }
        let len = rest[..ndigits]
            .iter()
            .fold(0usize, |n, &c| n * 10 + usize::from(c - b'0'));
        if len > MAX_MESSAGE {
            return Err(self.fail(FrameError::TooLong {
                len,
                max: MAX_MESSAGE,
            }));
        }
        let start = ndigits + 1;
        if rest.len() < start + len {
            return Ok(None);
        }
        let frame = rest[start..start + len].to_vec();
        self.pos += start + len;
        Ok(Some(frame))
    }

    /// Called at end of stream: an unfinished octet-counted frame is an
    /// error; an unterminated LF-framed line is the last message (rsyslog
    /// keeps it too).
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        if rest[0].is_ascii_digit() {
            let pending = rest.len();
            return Err(self.fail(FrameError::Truncated { pending }));
        }
        let frame = rest.to_vec();
        self.pos = self.buf.len();
        Ok(Some(frame))
    }
}

/// Octet-counted encoding of one message (what `logger --octet-count`
/// sends).
pub fn encode_octet_counted(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(d: &mut Deframer) -> Vec<Vec<u8>> {
        let mut v = vec![];
        while let Some(f) = d.next_frame().unwrap() {
            v.push(f);
        }
        v
    }

    #[test]
    fn logger_streams() {
        // logger --tcp --octet-count
        let mut d = Deframer::new();
        d.push(b"51 <13>1 2026-12-02T17:54:04.5+00:00 h root 42 - - one")
            .unwrap();
        d.push(b"5 <13>x9 <13>x y z").unwrap();
        assert_eq!(
            all(&mut d),
            vec![
                b"<13>1 2026-12-02T17:54:04.5+00:00 h root 42 - - one".to_vec(),
                b"<13>x".to_vec(),
                b"<13>x y z".to_vec()
            ]
        );
        // logger --tcp (LF framing), mixed with octet counting, split reads
        let mut d = Deframer::new();
        d.push(b"<13>Dec  2 17:54:04 root: a\n\n<13>b").unwrap();
        assert_eq!(all(&mut d), vec![b"<13>Dec  2 17:54:04 root: a".to_vec()]);
        d.push(b"\n3 ").unwrap();
        assert_eq!(all(&mut d), vec![b"<13>b".to_vec()]);
        d.push(b"<1>").unwrap();
        assert_eq!(all(&mut d), vec![b"<1>".to_vec()]);
        d.push(b"<2>tail").unwrap();
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.finish().unwrap(), Some(b"<2>tail".to_vec()));
    }

    #[test]
    fn bounds() {
        let mut d = Deframer::new();
        d.push(b"65537 <13>").unwrap();
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLong {
                len: 65537,
                max: MAX_MESSAGE
            })
        );
        assert!(d.push(b"x").is_err());
        let mut d = Deframer::new();
        d.push(b"999999999 ").unwrap();
        assert!(matches!(d.next_frame(), Err(FrameError::TooLong { .. })));
        let mut d = Deframer::new();
        d.push(b"12x").unwrap();
        assert_eq!(d.next_frame(), Err(FrameError::BadCount));
        let mut d = Deframer::new();
        d.push(&vec![b'a'; MAX_MESSAGE + 1]).unwrap();
        assert!(matches!(d.next_frame(), Err(FrameError::TooLong { .. })));
        let mut d = Deframer::new();
        d.push(b"10 <13>").unwrap();
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.finish(), Err(FrameError::Truncated { pending: 7 }));
        // exactly the limit is fine
        let mut d = Deframer::new();
        let mut b = vec![];
        encode_octet_counted(&vec![b'<'; MAX_MESSAGE], &mut b);
        for c in b.chunks(MAX_READ) {
            d.push(c).unwrap();
            let _ = all(&mut d);
        }
        let mut d = Deframer::new();
        d.push(&b).unwrap();
        assert_eq!(all(&mut d).len(), 1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..10)) {
            let mut d = Deframer::new();
            for c in chunks {
                if d.push(&c).is_err() { break; }
                while let Ok(Some(f)) = d.next_frame() {
                    prop_assert!(f.len() <= MAX_MESSAGE);
                }
                prop_assert!(d.buf.len() <= MAX_BUFFER);
            }
            let _ = d.finish();
        }

        #[test]
        fn round_trip_any_split(
            msgs in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..12),
            cut in proptest::collection::vec(1usize..50, 1..20),
        ) {
            // LF framing carries messages without LF that do not start
            // with a digit; octet counting carries anything.
            let mut wire = vec![];
            let mut want = vec![];
            for (octet, m) in msgs {
                if octet {
                    encode_octet_counted(&m, &mut wire);
                    want.push(m);
                } else {
                    let m: Vec<u8> = m.into_iter().filter(|&c| c != b'\n').collect();
                    if m.is_empty() || m[0].is_ascii_digit() { continue; }
                    wire.extend(&m);
                    wire.push(b'\n');
                    want.push(m);
                }
            }
            let mut d = Deframer::new();
            let mut got = vec![];
            let mut rest = &wire[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cut[i % cut.len()].min(rest.len());
                d.push(&rest[..n]).unwrap();
                rest = &rest[n..];
                i += 1;
                got.extend(all(&mut d));
            }
            prop_assert_eq!(d.finish().unwrap(), None);
            prop_assert_eq!(got, want);
        }
    }
}
