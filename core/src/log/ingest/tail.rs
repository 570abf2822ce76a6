//! Following a file: its saved position, and what to do when it is
//! rotated (renamed away, logrotate's `create`) or truncated
//! (`copytruncate`).
//!
//! The position saved is the file's identity (device and inode) and the
//! offset just past the last line the spool acknowledged, so after a
//! restart reading resumes exactly there: nothing acknowledged is read
//! twice and nothing unacknowledged is skipped. The driver writes it (tmp,
//! fsync, rename) only after the spool's ack for the lines before it.
//!
//! Limits, by nature of a poll: a file truncated and then written past the
//! saved offset between two polls looks like growth (its new head is
//! missed); `copytruncate` itself loses what the writer wrote between the
//! copy and the truncation. A file rotated twice while keywardd was down
//! resumes only from the most recent rotated copy that still carries the
//! saved inode (the driver looks in the same directory).

/// A file's identity on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// The saved position of a tailed source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailPos {
    pub file: FileId,
    pub offset: u64,
}

const MAGIC: &str = "keyward-tail 1";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TailError {
    #[error("tail position file is not `{MAGIC} DEV INO OFFSET`; delete it to read the file again from its start")]
    Format,
}

impl TailPos {
    /// `keyward-tail 1 DEV INO OFFSET\n`: text, so an admin can read it.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{MAGIC} {} {} {}\n",
            self.file.dev, self.file.ino, self.offset
        )
        .into_bytes()
    }

    pub fn decode(b: &[u8]) -> Result<Self, TailError> {
        if b.len() > 100 {
            return Err(TailError::Format);
        }
        let s = std::str::from_utf8(b).map_err(|_| TailError::Format)?;
        let rest = s
            .strip_prefix(MAGIC)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(TailError::Format)?;
        let rest = rest.strip_suffix('\n').ok_or(TailError::Format)?;
        let mut it = rest.split(' ').map(|n| {
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return Err(TailError::Format);
            }
            n.parse::<u64>().map_err(|_| TailError::Format)
        });
        let (Some(dev), Some(ino), Some(offset), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(TailError::Format);
        };
        Ok(TailPos {
            file: FileId {
                dev: dev?,
                ino: ino?,
            },
            offset: offset?,
        })
    }
}

/// Where to start after (re)starting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Read the file at the path from this offset.
    At(u64),
    /// The saved file is no longer at the path (rotated while keywardd was
    /// down): finish the rotated copy with this identity from `offset` if
    /// it can be found beside the path, then read the path from 0.
    Rotated(TailPos),
}

/// The starting point, given the saved position and the file now at the
/// path. A source never read before starts at 0 (the file's existing lines
/// are logged too, as rsyslog's imfile does).
pub fn resume(saved: Option<TailPos>, at_path: FileId, size: u64) -> Resume {
    match saved {
        None => Resume::At(0),
        Some(p) if p.file == at_path => Resume::At(if size < p.offset { 0 } else { p.offset }),
        Some(p) => Resume::Rotated(p),
    }
}

/// What to do after reading the open file up to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed: poll again later.
    Wait,
    /// The open file is shorter than what was read (copytruncate): read it
    /// again from 0.
    Truncated,
    /// Another file is at the path and the open one has gone quiet: finish
    /// with the open one (its last whole line is read; an unfinished one
    /// is taken as is) and read the new one from 0.
    Switch,
}

/// The decision after one poll. `open_size`: the open file's size now;
/// `read_to`: the offset read up to; `at_path`: the identity of the file
/// at the path (None if nothing is there, e.g. between rename and create);
/// `quiet`: the open file gave no bytes in this poll. A renamed file still
/// gets its writer's last lines: the switch waits until it stays quiet.
pub fn step(
    open: FileId,
    open_size: u64,
    read_to: u64,
    at_path: Option<FileId>,
    quiet: bool,
) -> Step {
    if open_size < read_to {
        return Step::Truncated;
    }
    match at_path {
        Some(id) if id != open && quiet => Step::Switch,
        _ => Step::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: FileId = FileId {
        dev: 2049,
        ino: 131,
    };
    const B: FileId = FileId {
        dev: 2049,
        ino: 132,
    };

    #[test]
    fn position_file() {
        let p = TailPos {
            file: A,
            offset: 12345,
        };
        assert_eq!(p.encode(), b"keyward-tail 1 2049 131 12345\n");
        assert_eq!(TailPos::decode(&p.encode()), Ok(p));
        for bad in [
            &b""[..],
            b"keyward-tail 1 1 2\n",
            b"keyward-tail 1 1 2 3 4\n",
            b"keyward-tail 1 1 2 3",
            b"keyward-tail 2 1 2 3\n",
            b"keyward-tail 1 1 2 +3\n",
            b"keyward-tail 1 1 2 99999999999999999999\n",
        ] {
            assert_eq!(TailPos::decode(bad), Err(TailError::Format));
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(resume(None, A, 10), Resume::At(0));
        assert_eq!(
            resume(Some(TailPos { file: A, offset: 5 }), A, 10),
            Resume::At(5)
        );
        assert_eq!(
            resume(
                Some(TailPos {
                    file: A,
                    offset: 50
                }),
                A,
                10
            ),
            Resume::At(0)
        );
        assert_eq!(
            resume(Some(TailPos { file: A, offset: 5 }), B, 10),
            Resume::Rotated(TailPos { file: A, offset: 5 })
        );
        assert_eq!(step(A, 10, 10, Some(A), true), Step::Wait);
        assert_eq!(step(A, 3, 10, Some(A), true), Step::Truncated);
        assert_eq!(step(A, 10, 10, Some(B), false), Step::Wait);
        assert_eq!(step(A, 10, 10, Some(B), true), Step::Switch);
        assert_eq!(step(A, 10, 10, None, true), Step::Wait);
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = TailPos::decode(&b);
        }

        #[test]
        fn round_trips(dev: u64, ino: u64, offset: u64) {
            let p = TailPos { file: FileId { dev, ino }, offset };
            prop_assert_eq!(TailPos::decode(&p.encode()), Ok(p));
        }
    }
}
