//! The protocol of `keyward logs write` on keywardd's pipe socket.
//!
//! The writer sends one header line, `keyward-logs-write 1 SOURCE\n`, then
//! its lines, LF-separated, then closes its sending side. keywardd answers
//! with text lines: `ok N` each time lines become durable (N counts all
//! durable lines so far), `done N` once the writer's side is closed and all
//! N lines are durable, or `err REASON` when it refuses (unknown source,
//! spool full...) and hangs up. So the writer exits 0 only after `done`:
//! every line it read is on disk. Who writes (pid, uid, gid) keywardd takes
//! from the socket (SO_PEERCRED), never from this stream.

use crate::log::segment::check_source_name;

const HEADER: &str = "keyward-logs-write 1 ";
/// Longest header line (64-byte source name).
pub const MAX_HEADER: usize = HEADER.len() + 64 + 1;
/// Longest answer line.
pub const MAX_REPLY: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PipeError {
    #[error("not a `keyward logs write` header (`{}SOURCE`): an old or foreign client", HEADER.trim_end())]
    Header,
    #[error("source name `{0}` is not valid: 1 to 64 characters of a-z, 0-9, '.', '_', '-'")]
    Source(String),
    #[error("keywardd's answer is not `ok N`, `done N` or `err REASON`")]
    Reply,
}

/// The header line a writer sends for `source`.
pub fn header(source: &str) -> Result<Vec<u8>, PipeError> {
    check_source_name(source).map_err(|_| PipeError::Source(source.into()))?;
    Ok(format!("{HEADER}{source}\n").into_bytes())
}

/// The source named by a header line (without its LF).
pub fn parse_header(line: &[u8]) -> Result<String, PipeError> {
    if line.len() > MAX_HEADER {
        return Err(PipeError::Header);
    }
    let s = std::str::from_utf8(line).map_err(|_| PipeError::Header)?;
    let name = s.strip_prefix(HEADER).ok_or(PipeError::Header)?;
    check_source_name(name).map_err(|_| PipeError::Source(name.into()))?;
    Ok(name.to_string())
}

/// keywardd's answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok(u64),
    Done(u64),
    Err(String),
}

impl Reply {
    /// One line, LF included; a reason is cut to fit and loses its control
    /// characters.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Ok(n) => format!("ok {n}\n").into_bytes(),
            Reply::Done(n) => format!("done {n}\n").into_bytes(),
            Reply::Err(r) => {
                let mut r: String = r
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                while r.len() > MAX_REPLY - 5 {
                    r.pop();
                }
                format!("err {r}\n").into_bytes()
            }
        }
    }

    /// Parses one answer line (without its LF).
    pub fn decode(line: &[u8]) -> Result<Reply, PipeError> {
        if line.len() > MAX_REPLY {
            return Err(PipeError::Reply);
        }
        let s = std::str::from_utf8(line).map_err(|_| PipeError::Reply)?;
        let num = |n: &str| {
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return Err(PipeError::Reply);
            }
            n.parse().map_err(|_| PipeError::Reply)
        };
        if let Some(r) = s.strip_prefix("err ") {
            Ok(Reply::Err(r.to_string()))
        } else if let Some(n) = s.strip_prefix("ok ") {
            Ok(Reply::Ok(num(n)?))
        } else if let Some(n) = s.strip_prefix("done ") {
            Ok(Reply::Done(num(n)?))
        } else {
            Err(PipeError::Reply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_and_replies() {
        let h = header("apache").unwrap();
        assert_eq!(h, b"keyward-logs-write 1 apache\n");
        assert_eq!(parse_header(&h[..h.len() - 1]).unwrap(), "apache");
        assert!(matches!(header("Apache"), Err(PipeError::Source(_))));
        assert_eq!(parse_header(b"GET / HTTP/1.1"), Err(PipeError::Header));
        assert!(matches!(
            parse_header(b"keyward-logs-write 1 a b"),
            Err(PipeError::Source(_))
        ));
        assert_eq!(Reply::decode(b"ok 12"), Ok(Reply::Ok(12)));
        assert_eq!(Reply::decode(b"done 0"), Ok(Reply::Done(0)));
        assert_eq!(
            Reply::decode(b"err spool full"),
            Ok(Reply::Err("spool full".into()))
        );
        assert_eq!(Reply::decode(b"ok -1"), Err(PipeError::Reply));
        assert_eq!(Reply::Err("a\nb".into()).encode(), b"err a b\n");
    }

    proptest! {
        #[test]
        fn never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_header(&b);
            let _ = Reply::decode(&b);
        }

        #[test]
        fn replies_round_trip(n: u64, r in "\\PC{0,1100}") {
            for rep in [Reply::Ok(n), Reply::Done(n)] {
                let e = rep.encode();
                prop_assert_eq!(Reply::decode(&e[..e.len() - 1]), Ok(rep));
            }
            let e = Reply::Err(r.clone()).encode();
            prop_assert!(e.len() <= MAX_REPLY + 1);
            let Ok(Reply::Err(back)) = Reply::decode(&e[..e.len() - 1]) else { panic!("err reply") };
            prop_assert!(r.starts_with(&back));
        }

        #[test]
        fn headers_round_trip(name in "[a-z0-9._-]{1,64}") {
            let h = header(&name).unwrap();
            prop_assert!(h.len() <= MAX_HEADER);
            prop_assert_eq!(parse_header(&h[..h.len() - 1]).unwrap(), name);
        }
    }
}
