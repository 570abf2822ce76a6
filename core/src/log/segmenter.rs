//! Batching one source's lines into segments, sans IO.
//!
//! The driver feeds lines with [`Segmenter::push`]; a segment is cut when
//! the next line would take it over [`Limits::max_bytes`] or
//! [`Limits::max_lines`] (push returns the sealed one), or when it has been
//! open for [`Limits::max_age_ms`] ([`Segmenter::poll_timeout`] says when,
//! [`Segmenter::handle_timeout`] seals). Group commit: after a batch of
//! pushes the driver calls [`Segmenter::take_journal`], appends the
//! returned bytes to the journal files, fsyncs once, and only then
//! acknowledges the batch's lines. A sealed segment must be written to the
//! spool and appended to the Merkle log before its journal is deleted. See
//! [`super::journal`] for why the journal holds no plaintext and what
//! happens after a crash.
//!
//! Durability window of datagram sources (`/dev/log`, UDP): they have no
//! acknowledgement, so a line is lost if the node crashes between its
//! arrival and the next group commit's fsync; the driver bounds that window
//! by how often it calls `take_journal` (every batch it reads).

use std::sync::Arc;

use zeroize::Zeroizing;

use super::journal::{self, JournalOpen, JournalWrite, Record, SegmentKey};
use super::line::{self, Line, MAX_LINE_ENCODED};
use super::recipients::Recipients;
use super::segment::{self, Sealed, MAX_LINES};
use super::LogError;
use crate::guardian::Millis;
use crate::identity::NodeKey;

/// When a segment is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Plaintext bytes per segment (lines as encoded). Default 1 MiB: large
    /// enough that per-segment costs (age header, signature, Merkle leaf)
    /// vanish, small enough to replicate and to hold in memory per source.
    pub max_bytes: usize,
    /// Lines per segment. Default 100,000.
    pub max_lines: u32,
    /// How long a segment stays open. Default 60 s: a quiet source's lines
    /// reach a sealed, logged segment within a minute.
    pub max_age_ms: Millis,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1024 * 1024,
            max_lines: 100_000,
            max_age_ms: 60_000,
        }
    }
}

impl Limits {
    pub fn check(&self) -> Result<(), LogError> {
        // The body is the plaintext plus age's 16 bytes per 64 KiB and a
        // header; keep a margin under the segment's hard limit.
        let max = segment::MAX_BODY - segment::MAX_BODY / 16 - MAX_LINE_ENCODED;
        if self.max_bytes < 1024 || self.max_bytes > max {
            return Err(LogError::Config(format!(
                "max_bytes {} must be within 1024..={max}",
                self.max_bytes
            )));
        }
        if self.max_lines == 0 || self.max_lines > MAX_LINES {
            return Err(LogError::Config(format!(
                "max_lines {} must be within 1..={MAX_LINES}",
                self.max_lines
            )));
        }
        if self.max_age_ms == 0 {
            return Err(LogError::Config("max_age_ms must be positive".into()));
        }
        Ok(())
    }
}

/// A source's identity and confidentiality.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// Default true: sealed to the auditors only.
    pub confidential: bool,
}

/// Most journal bytes one segment may have: a recovered segment's body is
/// its journal, which must fit [`segment::MAX_BODY`]. Frames cost ~60 bytes
/// each over their lines, so a source committed line by line reaches this
/// before `max_bytes`; the segment is then cut early.
const JOURNAL_MAX: usize = segment::MAX_BODY - 64 * 1024;

/// Bytes a frame record adds over its plaintext (tag, metadata, framing),
/// rounded up.
const FRAME_OVERHEAD: usize = 128;

struct Open {
    seq: u64,
    /// Journal bytes of this segment handed out so far.
    journal_len: usize,
    deadline: Millis,
    key: SegmentKey,
    /// BODY_MAGIC + every line so far. Capacity reserved up front, so it
    /// never reallocates (which would leave unzeroized copies behind).
    plain: Zeroizing<Vec<u8>>,
    first: Millis,
    last: Millis,
    lines: u32,
    /// plain[..framed] is already in journal frames.
    framed: usize,
    frame_first: Millis,
    frame_last: Millis,
    frame_lines: u32,
    next_frame: u32,
}

/// Batches one source's lines; one per source.
pub struct Segmenter {
    key: Arc<NodeKey>,
    recipients: Arc<Recipients>,
    source: Source,
    limits: Limits,
    next_seq: u64,
    open: Option<Open>,
    writes: Vec<JournalWrite>,
}

impl Segmenter {
    /// `next_seq`: the sequence number of the next segment (0 for a new
    /// source; after a restart, one past the last sealed or recovered).
    pub fn new(
        key: Arc<NodeKey>,
        recipients: Arc<Recipients>,
        source: Source,
        limits: Limits,
        next_seq: u64,
    ) -> Result<Self, LogError> {
        segment::check_source_name(&source.name)?;
        limits.check()?;
        if !source.confidential && !recipients.has_admin() {
            return Err(LogError::NoAdmin);
        }
        Ok(Segmenter {
            key,
            recipients,
            source,
            limits,
            next_seq,
            open: None,
            writes: Vec::new(),
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Sequence number the next opened segment will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Lines in the open segment.
    pub fn open_lines(&self) -> u32 {
        self.open.as_ref().map_or(0, |o| o.lines)
    }

    /// Adds a line. Returns the previous segment, sealed, if this line did
    /// not fit in it.
    pub fn push(
        &mut self,
        now: Millis,
        line: &Line,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) -> Result<Option<Sealed>, LogError> {
        let len = line.encoded_len();
        if line.msg.len() > line::MAX_MSG {
            return Err(line::LineError::TooLong {
                len: line.msg.len(),
            }
            .into());
        }
        let mut sealed = None;
        if let Some(o) = &self.open {
            let journal_after =
                o.journal_len + (o.plain.len() - o.framed) + len + 2 * FRAME_OVERHEAD;
            if o.plain.len() + len > self.limits.max_bytes
                || o.lines >= self.limits.max_lines
                || journal_after > JOURNAL_MAX
            {
                sealed = self.seal(now)?;
            }
        }
        if self.open.is_none() {
            self.open_segment(now, rng)?;
        }
        let o = self.open.as_mut().expect("opened above");
        line.encode_into(&mut o.plain)?;
        o.first = o.first.min(line.time);
        o.last = o.last.max(line.time);
        o.lines += 1;
        o.frame_first = o.frame_first.min(line.time);
        o.frame_last = o.frame_last.max(line.time);
        o.frame_lines += 1;
        Ok(sealed)
    }

    fn open_segment(
        &mut self,
        now: Millis,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) -> Result<(), LogError> {
        let key = SegmentKey::random(rng);
        let wrapped_key = key.wrap(&self.recipients, self.source.confidential)?;
        let seq = self.next_seq;
        let rec = Record::Open(JournalOpen {
            origin: self.key.id(),
            source: self.source.name.clone(),
            seq,
            confidential: self.source.confidential,
            opened: now,
            wrapped_key,
        });
        let bytes = journal::record_bytes(&rec)?;
        let journal_len = bytes.len();
        self.writes.push(JournalWrite {
            source: self.source.name.clone(),
            seq,
            create: true,
            bytes,
        });
        // One line may exceed max_bytes on its own; the segment then holds
        // just that line.
        let mut plain = Zeroizing::new(Vec::with_capacity(
            self.limits.max_bytes + MAX_LINE_ENCODED + line::BODY_MAGIC.len(),
        ));
        plain.extend_from_slice(&line::BODY_MAGIC);
        self.open = Some(Open {
            seq,
            journal_len,
            deadline: now.saturating_add(self.limits.max_age_ms),
            key,
            framed: plain.len(),
            plain,
            first: Millis::MAX,
            last: 0,
            lines: 0,
            frame_first: Millis::MAX,
            frame_last: 0,
            frame_lines: 0,
            next_frame: 0,
        });
        self.next_seq = seq + 1;
        Ok(())
    }

    /// Group commit: the journal bytes to append (and fsync) for every line
    /// pushed so far. Lines pushed before this call may be acknowledged
    /// once these writes are durable (or their segment sealed and durable).
    pub fn take_journal(&mut self) -> Vec<JournalWrite> {
        if let Some(o) = &mut self.open {
            if o.frame_lines > 0 {
                let f = o.key.frame(
                    &self.key.id(),
                    &self.source.name,
                    o.seq,
                    o.next_frame,
                    (o.frame_first, o.frame_last, o.frame_lines),
                    &o.plain[o.framed..],
                );
                o.next_frame += 1;
                o.framed = o.plain.len();
                o.frame_lines = 0;
                o.frame_first = Millis::MAX;
                o.frame_last = 0;
                let bytes = journal::record_bytes(&Record::Frame(f))
                    .expect("a frame of at most one segment fits a record");
                o.journal_len += bytes.len();
                match self.writes.last_mut() {
                    Some(w) if w.seq == o.seq => w.bytes.extend_from_slice(&bytes),
                    _ => self.writes.push(JournalWrite {
                        source: self.source.name.clone(),
                        seq: o.seq,
                        create: false,
                        bytes,
                    }),
                }
            }
        }
        std::mem::take(&mut self.writes)
    }

    /// When the open segment must be sealed, if one is open.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.open.as_ref().map(|o| o.deadline)
    }

    /// Seals the open segment if its time is up.
    pub fn handle_timeout(&mut self, now: Millis) -> Result<Option<Sealed>, LogError> {
        match &self.open {
            Some(o) if now >= o.deadline => self.seal(now),
            _ => Ok(None),
        }
    }

    /// Seals the open segment now (shutdown), if it holds any line.
    pub fn seal(&mut self, now: Millis) -> Result<Option<Sealed>, LogError> {
        let Some(o) = self.open.take() else {
            return Ok(None);
        };
        // Journal writes of this segment not yet taken are moot: the sealed
        // segment carries its lines.
        self.writes.retain(|w| w.seq != o.seq);
        if o.lines == 0 {
            // Opened but empty (never happens through push): give the
            // sequence number back so the source's sequence has no gap.
            self.next_seq = o.seq;
            return Ok(None);
        }
        segment::seal_plaintext(
            &self.key,
            &self.recipients,
            &self.source.name,
            o.seq,
            (o.first, o.last, o.lines),
            self.source.confidential,
            now,
            &o.plain,
        )
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::line::Sender;
    use crate::log::recipients::Recipient;
    use crate::log::segment::{BodyKind, Segment};

    struct Fx {
        key: Arc<NodeKey>,
        auditor: age::x25519::Identity,
        admin: age::x25519::Identity,
        recipients: Arc<Recipients>,
    }

    fn fx() -> Fx {
        let auditor = age::x25519::Identity::generate();
        let admin = age::x25519::Identity::generate();
        let recipients = Arc::new(
            Recipients::new(
                vec![Recipient::X25519(auditor.to_public())],
                Some(Recipient::X25519(admin.to_public())),
            )
            .unwrap(),
        );
        Fx {
            key: Arc::new(NodeKey::generate()),
            auditor,
            admin,
            recipients,
        }
    }

    fn line(t: Millis, i: usize) -> Line {
        Line {
            time: t,
            sender: Sender {
                pid: Some(i as u32),
                uid: Some(33),
                gid: Some(33),
            },
            msg: format!("GET /index.html 200 line {i:06} {}", "x".repeat(80)).into_bytes(),
        }
    }

    fn seg(f: &Fx, confidential: bool, limits: Limits) -> Segmenter {
        Segmenter::new(
            f.key.clone(),
            f.recipients.clone(),
            Source {
                name: "apache".into(),
                confidential,
            },
            limits,
            0,
        )
        .unwrap()
    }

    #[test]
    fn cuts_by_size_and_keeps_every_line_in_order() {
        let f = fx();
        let limits = Limits {
            max_bytes: 4096,
            ..Limits::default()
        };
        let mut s = seg(&f, true, limits);
        let mut rng = rand::rngs::OsRng;
        let mut sealed = Vec::new();
        for i in 0..200 {
            if let Some(x) = s
                .push(1000 + i as u64, &line(1000 + i as u64, i), &mut rng)
                .unwrap()
            {
                sealed.push(x);
            }
        }
        sealed.extend(s.seal(5000).unwrap());
        assert!(sealed.len() > 3);
        let mut all = Vec::new();
        for (n, x) in sealed.iter().enumerate() {
            assert_eq!(x.header.seq, n as u64);
            let sg = Segment::decode(&x.bytes).unwrap();
            assert!(sg.body.len() < 4096 + 512);
            all.extend(sg.open(&f.auditor).unwrap());
            // confidential: not for the admin
            assert!(sg.open(&f.admin).is_err());
        }
        assert_eq!(all.len(), 200);
        for (i, l) in all.iter().enumerate() {
            assert_eq!(*l, line(1000 + i as u64, i));
        }
        assert_eq!(s.next_seq(), sealed.len() as u64);
    }

    #[test]
    fn cuts_by_line_count_and_time() {
        let f = fx();
        let mut rng = rand::rngs::OsRng;
        let mut s = seg(
            &f,
            false,
            Limits {
                max_lines: 3,
                max_age_ms: 500,
                ..Limits::default()
            },
        );
        assert_eq!(s.poll_timeout(), None);
        for i in 0..3 {
            assert!(s.push(10, &line(10, i), &mut rng).unwrap().is_none());
        }
        let x = s.push(11, &line(11, 3), &mut rng).unwrap().unwrap();
        assert_eq!(x.header.lines, 3);
        assert_eq!(s.poll_timeout(), Some(511));
        assert!(s.handle_timeout(510).unwrap().is_none());
        let y = s.handle_timeout(511).unwrap().unwrap();
        assert_eq!((y.header.seq, y.header.lines), (1, 1));
        assert_eq!(s.poll_timeout(), None);
        // non-confidential: the admin reads it
        let sg = Segment::decode(&y.bytes).unwrap();
        assert_eq!(sg.open(&f.admin).unwrap(), vec![line(11, 3)]);
    }

    #[test]
    fn journal_has_no_plaintext_and_recovers_as_frames() {
        let f = fx();
        let mut rng = rand::rngs::OsRng;
        let mut s = seg(&f, true, Limits::default());
        let mut file = Vec::new();
        let mut expect = Vec::new();
        for batch in 0..4 {
            for i in 0..10 {
                let l = line(100 + batch, batch as usize * 10 + i);
                assert!(s.push(100 + batch, &l, &mut rng).unwrap().is_none());
                expect.push(l);
            }
            for w in s.take_journal() {
                assert_eq!((w.seq, w.create), (0, batch == 0));
                file.extend_from_slice(&w.bytes);
            }
        }
        // lines pushed after the last group commit were never acknowledged
        s.push(200, &line(200, 99), &mut rng).unwrap();
        assert!(!file.windows(13).any(|w| w == b"GET /index.ht"));
        // the crash cut the last write in half
        let torn = [file.clone(), vec![0, 0, 1, 0, 0xa3]].concat();
        drop(s);
        let r = journal::recover(&f.key, &torn, 9999).unwrap();
        assert!(r.torn_tail);
        assert_eq!(r.next_seq, 1);
        let x = r.sealed.unwrap();
        assert_eq!(x.header.body_kind, BodyKind::Frames);
        assert_eq!(
            (x.header.lines, x.header.first, x.header.last),
            (40, 100, 103)
        );
        let sg = Segment::decode(&x.bytes).unwrap();
        assert_eq!(sg.open(&f.auditor).unwrap(), expect);
        // confidential: the admin cannot unwrap the frames' key
        assert!(matches!(sg.open(&f.admin), Err(LogError::Decrypt(_))));
        // another node's key does not recover this journal
        assert!(journal::recover(&NodeKey::generate(), &file, 1).is_err());
    }

    #[test]
    fn a_journal_committed_line_by_line_still_recovers_into_one_segment() {
        let f = fx();
        let mut rng = rand::rngs::OsRng;
        let mut s = seg(
            &f,
            true,
            Limits {
                max_bytes: 8 * 1024 * 1024,
                max_lines: MAX_LINES,
                ..Limits::default()
            },
        );
        let mut file = Vec::new();
        let tiny = Line {
            time: 1,
            sender: Sender::default(),
            msg: b"x".to_vec(),
        };
        let mut n = 0;
        let sealed = loop {
            if let Some(x) = s.push(1, &tiny, &mut rng).unwrap() {
                break x;
            }
            n += 1;
            for w in s.take_journal() {
                if w.seq == 0 {
                    file.extend_from_slice(&w.bytes);
                }
            }
        };
        // cut by the journal bound, long before max_bytes
        assert!(sealed.header.lines < 8 * 1024 * 1024 / 14);
        assert_eq!(sealed.header.lines, n);
        let r = journal::recover(&f.key, &file, 2).unwrap();
        let x = r.sealed.unwrap();
        assert_eq!(x.header.lines, n);
        assert!(Segment::decode(&x.bytes).is_ok());
    }

    #[test]
    fn ssh_recipients_read_their_segments() {
        // a throwaway key made with ssh-keygen for this test
        const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCnWIK96+zsfy/152DPFnyqaDGI22i6noy8Hhtc+8/npQAAAJCpK4+gqSuP
oAAAAAtzc2gtZWQyNTUxOQAAACCnWIK96+zsfy/152DPFnyqaDGI22i6noy8Hhtc+8/npQ
AAAEA+NpVJWLSs+lXR/VS+XNXD6hZWbHWqpckuZclnsaOgLKdYgr3r7Ox/L/XnYM8WfKpo
MYjbaLqejLweG1z7z+elAAAABmt3dGVzdAECAwQFBgc=
-----END OPENSSH PRIVATE KEY-----
";
        const SSH_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKdYgr3r7Ox/L/XnYM8WfKpoMYjbaLqejLweG1z7z+el kwtest";
        let id = age::ssh::Identity::from_buffer(SSH_KEY.as_bytes(), None).unwrap();
        let r = Arc::new(Recipients::parse(&[SSH_PUB], None).unwrap());
        let key = Arc::new(NodeKey::generate());
        let mut s = Segmenter::new(
            key.clone(),
            r,
            Source {
                name: "ssh".into(),
                confidential: true,
            },
            Limits::default(),
            0,
        )
        .unwrap();
        let mut rng = rand::rngs::OsRng;
        s.push(5, &line(5, 1), &mut rng).unwrap();
        let j: Vec<u8> = s.take_journal().into_iter().flat_map(|w| w.bytes).collect();
        let sealed = s.seal(6).unwrap().unwrap();
        let seg = Segment::decode(&sealed.bytes).unwrap();
        assert_eq!(seg.open(&id).unwrap(), vec![line(5, 1)]);
        let rec = journal::recover(&key, &j, 7).unwrap().sealed.unwrap();
        let seg = Segment::decode(&rec.bytes).unwrap();
        assert_eq!(seg.open(&id).unwrap(), vec![line(5, 1)]);
        assert!(Recipients::parse(&["ssh-ed25519 garbage"], None).is_err());
        assert!(Recipients::parse(&["age1nope"], None).is_err());
        assert!(matches!(
            Recipients::parse(&[], None),
            Err(LogError::NoAuditor)
        ));
    }

    #[test]
    fn a_journal_with_no_frame_seals_nothing() {
        let f = fx();
        let mut rng = rand::rngs::OsRng;
        let mut s = Segmenter::new(
            f.key.clone(),
            f.recipients.clone(),
            Source {
                name: "mail".into(),
                confidential: true,
            },
            Limits::default(),
            7,
        )
        .unwrap();
        s.push(1, &line(1, 0), &mut rng).unwrap();
        let w = s.take_journal();
        // the opening record and the first frame come together
        assert_eq!(w.len(), 1);
        let (recs, _) = journal::parse(&w[0].bytes).unwrap();
        assert_eq!(recs.len(), 2);
        let open_only = journal::record_bytes(&recs[0]).unwrap();
        let r = journal::recover(&f.key, &open_only, 5).unwrap();
        assert!(r.sealed.is_none());
        assert_eq!(r.next_seq, 7);
    }

    #[test]
    fn limits_and_sources_are_checked() {
        let f = fx();
        for bad in [
            Limits {
                max_bytes: 10,
                ..Limits::default()
            },
            Limits {
                max_lines: 0,
                ..Limits::default()
            },
            Limits {
                max_age_ms: 0,
                ..Limits::default()
            },
        ] {
            assert!(bad.check().is_err());
        }
        let no_admin = Arc::new(
            Recipients::new(vec![Recipient::X25519(f.auditor.to_public())], None).unwrap(),
        );
        let r = Segmenter::new(
            f.key.clone(),
            no_admin,
            Source {
                name: "x".into(),
                confidential: false,
            },
            Limits::default(),
            0,
        );
        assert!(matches!(r, Err(LogError::NoAdmin)));
        let mut s = seg(&f, true, Limits::default());
        let big = Line {
            time: 1,
            sender: Sender::default(),
            msg: vec![0; line::MAX_MSG + 1],
        };
        assert!(s.push(1, &big, &mut rand::rngs::OsRng).is_err());
        assert_eq!(s.open_lines(), 0);
    }
}
