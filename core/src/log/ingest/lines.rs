//! LF-separated lines of a tailed file or a `keyward logs write` pipe, with
//! the byte offset each line ends at.
//!
//! The offset is what makes a tail resumable: the position saved after the
//! spool acknowledged a batch is the end of its last whole line, so an
//! unfinished last line (a writer mid-`write`) is read again, whole, after a
//! restart. A line longer than the line limit is cut into pieces of the
//! limit rather than stalling the file forever (the cut is where a reader
//! sees the piece boundary).

use super::MAX_MESSAGE;

/// One line without its LF, and the offset just past it (past the LF).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub msg: Vec<u8>,
    pub end: u64,
}

/// Splits a byte stream into lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// Offset of the first byte of `partial` in the stream.
    start: u64,
}

impl LineSplitter {
    /// A splitter whose first byte is at `offset` of the file.
    pub fn at(offset: u64) -> Self {
        LineSplitter {
            partial: Vec::new(),
            start: offset,
        }
    }

    /// Offset of the next byte to read from the file.
    pub fn read_offset(&self) -> u64 {
        self.start + self.partial.len() as u64
    }

    /// Offset just past the last whole line handed out.
    pub fn line_offset(&self) -> u64 {
        self.start
    }

    /// Bytes of an unfinished line held.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Appends bytes; whole lines go to `out`. Never holds more than
    /// [`MAX_MESSAGE`] bytes.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Split>) {
        while !bytes.is_empty() {
            let room = MAX_MESSAGE - self.partial.len();
            match bytes.iter().take(room + 1).position(|&c| c == b'\n') {
                Some(lf) => {
                    self.partial.extend_from_slice(&bytes[..lf]);
                    self.start += self.partial.len() as u64 + 1;
                    out.push(Split {
                        msg: std::mem::take(&mut self.partial),
                        end: self.start,
                    });
                    bytes = &bytes[lf + 1..];
                }
                None if bytes.len() >= room => {
                    // no LF within the limit: cut a full-size piece
                    self.partial.extend_from_slice(&bytes[..room]);
                    self.start += self.partial.len() as u64;
                    out.push(Split {
                        msg: std::mem::take(&mut self.partial),
                        end: self.start,
                    });
                    bytes = &bytes[room..];
                }
                None => {
                    self.partial.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// End of stream (a pipe writer closed): the unfinished line is a line.
    pub fn finish(&mut self) -> Option<Split> {
        if self.partial.is_empty() {
            return None;
        }
        self.start += self.partial.len() as u64;
        Some(Split {
            msg: std::mem::take(&mut self.partial),
            end: self.start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn apache_access_log_reads() {
        let mut s = LineSplitter::at(100);
        let mut out = vec![];
        s.push(b"127.0.0.1 - - [02/Dec/2026:17:54:04 +0000] \"GET / HTTP/1.1\" 200 10\n127.0.0.1 - - [02/Dec", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end, 100 + 67);
        assert_eq!(s.line_offset(), 167);
        assert_eq!(s.read_offset(), 167 + 21);
        s.push(b"/2026] x\n\n", &mut out);
        assert_eq!(out[1].msg, b"127.0.0.1 - - [02/Dec/2026] x");
        assert_eq!(
            out[2],
            Split {
                msg: vec![],
                end: 167 + 30 + 1
            }
        );
        assert_eq!(s.finish(), None);
        s.push(b"tail", &mut out);
        assert_eq!(
            s.finish(),
            Some(Split {
                msg: b"tail".to_vec(),
                end: 202
            })
        );
    }

    #[test]
    fn long_lines_are_cut_at_the_limit() {
        let mut s = LineSplitter::default();
        let mut out = vec![];
        let mut b = vec![b'a'; MAX_MESSAGE * 2 + 10];
        b.push(b'\n');
        for c in b.chunks(1000) {
            s.push(c, &mut out);
            assert!(s.pending() <= MAX_MESSAGE);
        }
        assert_eq!(
            out.iter().map(|l| l.msg.len()).collect::<Vec<_>>(),
            vec![MAX_MESSAGE, MAX_MESSAGE, 10]
        );
        assert_eq!(out[2].end, b.len() as u64);
    }

    proptest! {
        #[test]
        fn splits_like_split_on_lf(b in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..2000), cut in 1usize..100) {
            let mut s = LineSplitter::default();
            let mut out = vec![];
            for c in b.chunks(cut) { s.push(c, &mut out); }
            let fin = s.finish();
            let mut want: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
            let last = want.pop().unwrap();
            prop_assert_eq!(out.iter().map(|l| l.msg.as_slice()).collect::<Vec<_>>(), want);
            prop_assert_eq!(fin.map(|l| l.msg), (!last.is_empty()).then(|| last.to_vec()));
            // each line ends where the next begins
            let mut at = 0u64;
            for l in &out {
                at += l.msg.len() as u64 + 1;
                prop_assert_eq!(l.end, at);
            }
        }
    }
}
