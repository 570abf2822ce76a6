//! RELP, the server side of one session (rsyslog's `omrelp` is the client).
//!
//! A frame is `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. The client opens
//! with `open` (offers), sends `syslog` commands and ends with `close`;
//! every command gets one `rsp` carrying its TXNR. keyward's rule: a
//! `syslog` command is answered `200 OK` only once the driver reports it
//! durable ([`Session::done`]), and answers leave in the order the commands
//! came (RELP clients may rely on it), so one slow batch holds back the
//! answers behind it, never lets them overtake. A refused line gets
//! `500 <reason>` and rsyslog retries it later.
//!
//! Bounded: a frame's data is at most the line limit (plus room for the
//! offers), the unanswered commands at most [`MAX_OUTSTANDING`]: past that
//! the session stops reading frames until answers go out, which backs the
//! client up through TCP.

use std::collections::VecDeque;

use super::MAX_MESSAGE;

/// Most commands read but not yet answered (omrelp's window is 128).
pub const MAX_OUTSTANDING: usize = 1024;
/// Largest DATALEN accepted.
pub const MAX_DATA: usize = MAX_MESSAGE + 1024;
/// Largest TXNR (RELP wraps to 1 after it).
pub const MAX_TXNR: u32 = 999_999_999;
const MAX_COMMAND: usize = 32;
/// Most bytes buffered: one whole frame plus one read.
pub const MAX_READ: usize = 64 * 1024;
const MAX_HEADER: usize = 9 + 1 + MAX_COMMAND + 1 + 9 + 1;
const MAX_BUFFER: usize = MAX_HEADER + MAX_DATA + 1 + MAX_READ;

/// The offers keyward answers `open` with.
pub const OPEN_OK: &[u8] = b"200 OK\nrelp_version=0\nrelp_software=keyward\ncommands=syslog";

/// One RELP frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: Vec<u8>,
    pub data: Vec<u8>,
}

impl Frame {
    /// The frame's bytes on the wire.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("{} ", self.txnr).as_bytes());
        out.extend_from_slice(&self.command);
        out.extend_from_slice(format!(" {}", self.data.len()).as_bytes());
        if !self.data.is_empty() {
            out.push(b' ');
            out.extend_from_slice(&self.data);
        }
        out.push(b'\n');
    }
}

/// What is wrong with a RELP peer; the session is over after it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelpError {
    #[error("RELP frame: {0}")]
    Syntax(&'static str),
    #[error("RELP frame of {len} data bytes exceeds the {max}-byte limit; lower the sender's maxMessageSize")]
    TooLong { len: usize, max: usize },
    #[error("RELP peer sent `{0}` before `open`")]
    NotOpen(String),
    #[error("RELP peer sent TXNR {got}, expected {expected}")]
    Txnr { got: u32, expected: u32 },
    #[error("RELP peer's open offers no `relp_version` or no `syslog` command")]
    Offers,
    #[error("RELP peer sent data after `close`")]
    AfterClose,
    #[error("more than {max} bytes buffered: process frames before reading more")]
    Overfull { max: usize },
    #[error("RELP stream ended inside a frame")]
    Truncated,
}

/// Incremental frame parser.
#[derive(Debug, Default)]
pub struct FrameParser {
    buf: Vec<u8>,
    pos: usize,
}

fn number(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0')))
}

impl FrameParser {
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), RelpError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() + bytes.len() > MAX_BUFFER {
            return Err(RelpError::Overfull { max: MAX_BUFFER });
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes held that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next whole frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, RelpError> {
        let rest = &self.buf[self.pos..];
        // TXNR, COMMAND and DATALEN, each followed by one space (DATALEN
        // by a space or, when 0, the trailer).
        let mut fields = [&rest[..0]; 3];
        let mut at = 0;
        for (i, max) in [(0, 9), (1, MAX_COMMAND), (2, 9)] {
            let sep = rest[at..]
                .iter()
                .take(max + 1)
                .position(|&c| c == b' ' || c == b'\n');
            let Some(sep) = sep else {
                if rest.len() - at > max {
                    return Err(RelpError::Syntax(
                        [
                            "TXNR is not 1 to 9 digits",
                            "COMMAND is longer than 32 bytes",
                            "DATALEN is not 1 to 9 digits",
                        ][i],
                    ));
                }
                return Ok(None);
            };
            fields[i] = &rest[at..at + sep];
            at += sep;
            if i < 2 && rest[at] != b' ' {
                return Err(RelpError::Syntax("frame header is cut short by LF"));
            }
            if i < 2 {
                at += 1;
            }
        }
        let txnr = number(fields[0]).ok_or(RelpError::Syntax("TXNR is not 1 to 9 digits"))?;
        let command = fields[1];
        if command.is_empty() || !command.iter().all(u8::is_ascii_alphabetic) {
            return Err(RelpError::Syntax("COMMAND is not 1 to 32 letters"));
        }
        let len =
            number(fields[2]).ok_or(RelpError::Syntax("DATALEN is not 1 to 9 digits"))? as usize;
        if len > MAX_DATA {
            return Err(RelpError::TooLong { len, max: MAX_DATA });
        }
        // rest[at] is the space before DATA, or the trailer when len == 0
        let data_start = if len == 0 { at } else { at + 1 };
        if len > 0 && rest[at] != b' ' {
            return Err(RelpError::Syntax("DATALEN is not followed by a space"));
        }
        let Some(&trailer) = rest.get(data_start + len) else {
            return Ok(None);
        };
        if trailer != b'\n' {
            return Err(RelpError::Syntax(
                "frame does not end with LF after DATALEN bytes",
            ));
        }
        let frame = Frame {
            txnr,
            command: command.to_vec(),
            data: rest[data_start..data_start + len].to_vec(),
        };
        self.pos += data_start + len + 1;
        Ok(Some(frame))
    }
}

/// What the driver must do for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Store this message; report the outcome with [`Session::done`].
    Syslog { txnr: u32, msg: Vec<u8> },
}

#[derive(Debug)]
enum Answer {
    Pending,
    Ready(Vec<u8>),
    /// `close`: answered once everything before it is.
    Close,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    AwaitOpen,
    Open,
    /// `close` read; nothing more is accepted.
    Closing,
    /// `rsp` to close and `serverclose` queued: the driver may hang up
    /// once output is flushed.
    Closed,
}

/// The server side of one RELP session.
#[derive(Debug)]
pub struct Session {
    parser: FrameParser,
    state: State,
    next_txnr: u32,
    queue: VecDeque<(u32, Answer)>,
    events: VecDeque<Event>,
    out: Vec<u8>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Session {
            parser: FrameParser::default(),
            state: State::AwaitOpen,
            next_txnr: 1,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            out: Vec::new(),
        }
    }

    /// Whether the driver should read more from the client now: the
    /// window of unanswered commands has room and no whole frame waits.
    pub fn wants_read(&self) -> bool {
        self.queue.len() < MAX_OUTSTANDING
            && self.parser.pending() <= MAX_HEADER + MAX_DATA + 1
            && self.state != State::Closed
    }

    /// Bytes read from the client; frames are taken out as far as the
    /// window allows (call [`Session::process`] again after answers).
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), RelpError> {
        if matches!(self.state, State::Closing | State::Closed) && !bytes.is_empty() {
            return Err(RelpError::AfterClose);
        }
        self.parser.push(bytes)?;
        self.process()
    }

    /// The client closed its side: fine between frames, an error inside one.
    pub fn eof(&self) -> Result<(), RelpError> {
        if self.parser.pending() > 0 {
            return Err(RelpError::Truncated);
        }
        Ok(())
    }

    /// Takes buffered frames while the window has room.
    pub fn process(&mut self) -> Result<(), RelpError> {
        while self.queue.len() < MAX_OUTSTANDING
            && !matches!(self.state, State::Closing | State::Closed)
        {
            let Some(f) = self.parser.next_frame()? else {
                break;
            };
            self.frame(f)?;
        }
        self.flush();
        Ok(())
    }

    fn frame(&mut self, f: Frame) -> Result<(), RelpError> {
        if f.txnr != self.next_txnr {
            return Err(RelpError::Txnr {
                got: f.txnr,
                expected: self.next_txnr,
            });
        }
        self.next_txnr = if f.txnr >= MAX_TXNR { 1 } else { f.txnr + 1 };
        let command = f.command.as_slice();
        if self.state == State::AwaitOpen && command != b"open" {
            return Err(RelpError::NotOpen(
                String::from_utf8_lossy(command).into_owned(),
            ));
        }
        match command {
            b"open" if self.state == State::AwaitOpen => {
                let offers = String::from_utf8_lossy(&f.data);
                let version = offers.lines().any(|l| l.starts_with("relp_version="));
                let syslog = offers
                    .lines()
                    .find_map(|l| l.strip_prefix("commands="))
                    .is_some_and(|c| c.split(',').any(|c| c.trim() == "syslog"));
                if !version || !syslog {
                    return Err(RelpError::Offers);
                }
                self.state = State::Open;
                self.queue
                    .push_back((f.txnr, Answer::Ready(OPEN_OK.to_vec())));
            }
            b"syslog" => {
                self.queue.push_back((f.txnr, Answer::Pending));
                self.events.push_back(Event::Syslog {
                    txnr: f.txnr,
                    msg: f.data,
                });
            }
            b"close" => {
                self.state = State::Closing;
                self.queue.push_back((f.txnr, Answer::Close));
            }
            _ => {
                let msg = format!(
                    "500 command {} not supported",
                    String::from_utf8_lossy(command)
                );
                self.queue
                    .push_back((f.txnr, Answer::Ready(msg.into_bytes())));
            }
        }
        Ok(())
    }

    /// The next message to store.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The driver's verdict on a `syslog` command: `Ok` once durable,
    /// `Err(reason)` if refused. Unknown or already answered TXNRs are
    /// ignored.
    pub fn done(&mut self, txnr: u32, result: Result<(), String>) {
        if let Some((_, a @ Answer::Pending)) = self.queue.iter_mut().find(|(t, _)| *t == txnr) {
            *a = Answer::Ready(match result {
                Ok(()) => b"200 OK".to_vec(),
                Err(reason) => {
                    let reason: String = reason
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .take(400)
                        .collect();
                    format!("500 {reason}").into_bytes()
                }
            });
        }
        self.flush();
    }

    /// Moves the answers at the head of the queue to the output, in order.
    fn flush(&mut self) {
        while let Some((txnr, a)) = self.queue.front() {
            let txnr = *txnr;
            match a {
                Answer::Pending => break,
                Answer::Ready(data) => {
                    Frame {
                        txnr,
                        command: b"rsp".to_vec(),
                        data: data.clone(),
                    }
                    .encode(&mut self.out);
                }
                Answer::Close => {
                    Frame {
                        txnr,
                        command: b"rsp".to_vec(),
                        data: b"200 OK".to_vec(),
                    }
                    .encode(&mut self.out);
                    Frame {
                        txnr: 0,
                        command: b"serverclose".to_vec(),
                        data: vec![],
                    }
                    .encode(&mut self.out);
                    self.state = State::Closed;
                }
            }
            self.queue.pop_front();
        }
    }

    /// Bytes to send to the client (drained).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Commands read and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.queue.len()
    }

    /// The client closed the session and every answer is queued: send the
    /// output, then hang up.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What rsyslog 8's omrelp (librelp 1.x) sends to open a session.
    const OPEN: &[u8] = b"1 open 86 relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog\n";

    fn frames(b: &[u8]) -> Vec<Frame> {
        let mut p = FrameParser::default();
        p.push(b).unwrap();
        let mut v = vec![];
        while let Some(f) = p.next_frame().unwrap() {
            v.push(f);
        }
        assert_eq!(p.pending(), 0);
        v
    }

    #[test]
    fn a_session_like_omrelp() {
        let mut s = Session::new();
        s.receive(OPEN).unwrap();
        let out = frames(&s.take_output());
        assert_eq!(
            out,
            vec![Frame {
                txnr: 1,
                command: b"rsp".to_vec(),
                data: OPEN_OK.to_vec()
            }]
        );
        s.receive(b"2 syslog 21 <13>Dec  2 17:54:04 a\n3 syslog 4 <1>b\n4 syslog 4 <1>c\n")
            .unwrap();
        let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev[0],
            Event::Syslog {
                txnr: 2,
                msg: b"<13>Dec  2 17:54:04 a".to_vec()
            }
        );
        // 3 durable before 2: nothing goes out yet, answers stay in order
        s.done(3, Ok(()));
        assert!(s.take_output().is_empty());
        s.done(2, Ok(()));
        s.done(4, Err("the log spool is full\n(quota)".into()));
        let out = frames(&s.take_output());
        assert_eq!(
            out.iter().map(|f| f.txnr).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(out[1].data, b"200 OK");
        assert_eq!(out[2].data, b"500 the log spool is full (quota)");
        s.receive(b"5 syslog 4 <1>d\n6 close 0\n").unwrap();
        assert!(!s.is_closed());
        let _ = s.poll_event();
        s.done(5, Ok(()));
        assert!(s.is_closed());
        let out = frames(&s.take_output());
        assert_eq!(
            out[1],
            Frame {
                txnr: 6,
                command: b"rsp".to_vec(),
                data: b"200 OK".to_vec()
            }
        );
        assert_eq!(out[2].command, b"serverclose");
        assert_eq!(s.receive(b"7 syslog 1 x\n"), Err(RelpError::AfterClose));
    }

    #[test]
    fn protocol_errors() {
        assert!(matches!(
            Session::new().receive(b"1 syslog 1 x\n"),
            Err(RelpError::NotOpen(_))
        ));
        assert_eq!(
            Session::new().receive(b"1 open 4 abcd\n"),
            Err(RelpError::Offers)
        );
        let mut s = Session::new();
        s.receive(OPEN).unwrap();
        assert_eq!(
            s.receive(b"3 syslog 1 x\n"),
            Err(RelpError::Txnr {
                got: 3,
                expected: 2
            })
        );
        let mut s = Session::new();
        s.receive(OPEN).unwrap();
        assert!(matches!(
            s.receive(b"2 syslog 999999 "),
            Err(RelpError::TooLong { .. })
        ));
        for bad in [
            &b"x open 0\n"[..],
            b"1 op3n 0\n",
            b"1 open 1 xy\n",
            b"1 open\n",
            b"1234567890 open 0\n",
        ] {
            let mut p = FrameParser::default();
            p.push(bad).unwrap();
            assert!(
                matches!(p.next_frame(), Err(RelpError::Syntax(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut s = Session::new();
        s.receive(OPEN).unwrap();
        s.receive(b"2 starttls 0\n").unwrap();
        let out = frames(&s.take_output());
        assert!(out[1].data.starts_with(b"500 "));
        s.receive(b"3 syslog 2 ab").unwrap();
        assert_eq!(s.eof(), Err(RelpError::Truncated));
    }

    #[test]
    fn window_is_bounded() {
        let mut s = Session::new();
        s.receive(OPEN).unwrap();
        let _ = s.take_output();
        let mut wire = vec![];
        for t in 2..(MAX_OUTSTANDING as u32 + 50) {
            Frame {
                txnr: t,
                command: b"syslog".to_vec(),
                data: b"<1>x".to_vec(),
            }
            .encode(&mut wire);
        }
        s.receive(&wire).unwrap();
        assert_eq!(s.outstanding(), MAX_OUTSTANDING);
        assert!(!s.wants_read());
        let first: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(first.len(), MAX_OUTSTANDING);
        for e in &first {
            let Event::Syslog { txnr, .. } = e;
            s.done(*txnr, Ok(()));
        }
        s.process().unwrap();
        assert_eq!(std::iter::from_fn(|| s.poll_event()).count(), 48);
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            fs in proptest::collection::vec((1u32..=MAX_TXNR, "[a-z]{1,32}", proptest::collection::vec(any::<u8>(), 0..300)), 0..10),
            cut in 1usize..64,
        ) {
            let fs: Vec<Frame> = fs.into_iter().map(|(txnr, c, data)| Frame { txnr, command: c.into_bytes(), data }).collect();
            let mut wire = vec![];
            for f in &fs { f.encode(&mut wire); }
            let mut p = FrameParser::default();
            let mut got = vec![];
            for c in wire.chunks(cut) {
                p.push(c).unwrap();
                while let Some(f) = p.next_frame().unwrap() { got.push(f); }
            }
            prop_assert_eq!(got, fs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8), verdicts in proptest::collection::vec(any::<bool>(), 0..20)) {
            let mut s = Session::new();
            let mut wire = OPEN.to_vec();
            for c in &chunks { wire.extend(c); }
            if s.receive(&wire).is_ok() {
                let mut i = 0;
                while let Some(Event::Syslog { txnr, msg }) = s.poll_event() {
                    prop_assert!(msg.len() <= MAX_DATA);
                    let ok = verdicts.get(i).copied().unwrap_or(true);
                    s.done(txnr, if ok { Ok(()) } else { Err("no".into()) });
                    i += 1;
                }
                let _ = s.take_output();
                let _ = s.eof();
            }
            let mut s = Session::new();
            for c in &chunks { if s.receive(c).is_err() { break; } }
        }
    }
}
