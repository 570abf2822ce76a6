//! Syslog messages: RFC 5424 and RFC 3164 (BSD).
//!
//! Why our own parser and not a crate: `syslog_loose` (the maintained one)
//! takes `&str` (a syslog message need not be UTF-8, RFC 5424's MSG may be
//! any octets), never refuses anything (it is "loose" by design: garbage
//! parses as a message), and needs chrono with its `clock` feature, whose
//! convenience entry points read the local clock and time zone, which the
//! core must not. What keyward needs is small: PRI, which format, and the
//! header fields the sender *claims* (host, app, pid, msgid), all borrowed
//! from the original bytes, which are what is kept (see [`super`]).
//!
//! RFC 3164 is whatever follows a valid PRI: `logger` and glibc's
//! `syslog()` send `<PRI>Mmm dd hh:mm:ss tag[pid]: msg` to `/dev/log`
//! (no hostname), relays add a hostname, some senders omit the timestamp,
//! and rsyslog's forwarding format puts an RFC 3339 time there. The header
//! is read on a best-effort basis; it never makes the message invalid.
//! RFC 5424 (`<PRI>1 TS HOST APP PROCID MSGID SD [MSG]`) is checked
//! strictly, field by field, with its length limits.

use super::MAX_MESSAGE;

/// Which RFC the message follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// RFC 3164 / BSD syslog, as `/dev/log` receives it.
    Bsd,
    /// RFC 5424, version 1.
    Rfc5424,
}

/// A parsed syslog message: every field borrows the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syslog<'a> {
    /// Facility * 8 + severity, 0 to 191.
    pub pri: u8,
    pub format: Format,
    /// The sender's claimed timestamp, unchecked for BSD messages.
    pub timestamp: Option<&'a [u8]>,
    pub hostname: Option<&'a [u8]>,
    /// APP-NAME (RFC 5424) or the TAG before `[pid]:` (BSD).
    pub app: Option<&'a [u8]>,
    /// PROCID (RFC 5424) or the pid in `tag[pid]:` (BSD): claimed, not
    /// trusted.
    pub procid: Option<&'a [u8]>,
    pub msgid: Option<&'a [u8]>,
    /// The STRUCTURED-DATA elements as one slice, brackets included.
    pub structured_data: Option<&'a [u8]>,
    pub msg: &'a [u8],
}

impl Syslog<'_> {
    pub fn facility(&self) -> u8 {
        self.pri >> 3
    }
    pub fn severity(&self) -> u8 {
        self.pri & 7
    }
}

/// Why bytes are not a syslog message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    #[error("empty syslog message")]
    Empty,
    #[error("message of {len} bytes exceeds the {MAX_MESSAGE}-byte line limit")]
    TooLong { len: usize },
    #[error("syslog message does not start with a priority `<0>` to `<191>`")]
    NoPri,
    #[error("RFC 5424 message: {field} is missing or malformed")]
    Rfc5424 { field: &'static str },
}

/// Parses one message (a datagram, a frame, a RELP payload).
pub fn parse(bytes: &[u8]) -> Result<Syslog<'_>, SyslogError> {
    if bytes.is_empty() {
        return Err(SyslogError::Empty);
    }
    if bytes.len() > MAX_MESSAGE {
        return Err(SyslogError::TooLong { len: bytes.len() });
    }
    let (pri, rest) = parse_pri(bytes).ok_or(SyslogError::NoPri)?;
    if let Some(after) = rest.strip_prefix(b"1 ") {
        parse_5424(pri, after)
    } else {
        Ok(parse_bsd(pri, rest))
    }
}

/// `<N>` with 1 to 3 digits, N <= 191.
fn parse_pri(b: &[u8]) -> Option<(u8, &[u8])> {
    let rest = b.strip_prefix(b"<")?;
    let end = rest.iter().take(4).position(|&c| c == b'>')?;
    if end == 0 || end > 3 {
        return None;
    }
    let mut v: u16 = 0;
    for &c in &rest[..end] {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u16::from(c - b'0');
    }
    if v > 191 {
        return None;
    }
    Some((v as u8, &rest[end + 1..]))
}

/// Splits off one space-terminated field.
fn field(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = b.iter().position(|&c| c == b' ')?;
    Some((&b[..sp], &b[sp + 1..]))
}

/// RFC 5424 header fields: NILVALUE `-` or 1 to `max` printable US-ASCII.
fn header_field<'a>(
    v: &'a [u8],
    max: usize,
    name: &'static str,
) -> Result<Option<&'a [u8]>, SyslogError> {
    if v == b"-" {
        return Ok(None);
    }
    if v.is_empty() || v.len() > max || !v.iter().all(|c| (33..=126).contains(c)) {
        return Err(SyslogError::Rfc5424 { field: name });
    }
    Ok(Some(v))
}

fn parse_5424(pri: u8, b: &[u8]) -> Result<Syslog<'_>, SyslogError> {
    let bad = |field| SyslogError::Rfc5424 { field };
    let (ts, b) = field(b).ok_or(bad("TIMESTAMP"))?;
    let timestamp = if ts == b"-" {
        None
    } else if is_rfc3339(ts) {
        Some(ts)
    } else {
        return Err(bad("TIMESTAMP"));
    };
    let (host, b) = field(b).ok_or(bad("HOSTNAME"))?;
    let hostname = header_field(host, 255, "HOSTNAME")?;
    let (app, b) = field(b).ok_or(bad("APP-NAME"))?;
    let app = header_field(app, 48, "APP-NAME")?;
    let (procid, b) = field(b).ok_or(bad("PROCID"))?;
    let procid = header_field(procid, 128, "PROCID")?;
    let (msgid, b) = field(b).ok_or(bad("MSGID"))?;
    let msgid = header_field(msgid, 32, "MSGID")?;
    let sd_len = structured_data_len(b).ok_or(bad("STRUCTURED-DATA"))?;
    let (sd, rest) = b.split_at(sd_len);
    let structured_data = if sd == b"-" { None } else { Some(sd) };
    let msg = match rest {
        [] => rest,
        [b' ', m @ ..] => m,
        _ => return Err(bad("STRUCTURED-DATA")),
    };
    Ok(Syslog {
        pri,
        format: Format::Rfc5424,
        timestamp,
        hostname,
        app,
        procid,
        msgid,
        structured_data,
        msg,
    })
}

/// Length of the STRUCTURED-DATA at the start of `b`: `-` or one or more
/// `[SD-ID *(SP PARAM="VALUE")]`, values with `\"`, `\\` and `\]` escapes.
fn structured_data_len(b: &[u8]) -> Option<usize> {
    if b.first() == Some(&b'-') {
        return Some(1);
    }
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        i += 1;
        let name_ok = |c: &u8| (33..=126).contains(c) && !matches!(c, b'=' | b']' | b'"' | b' ');
        let id_start = i;
        while b.get(i).is_some_and(name_ok) {
            i += 1;
        }
        if i == id_start || i - id_start > 32 {
            return None;
        }
        loop {
            match b.get(i)? {
                b']' => {
                    i += 1;
                    break;
                }
                b' ' => {
                    i += 1;
                    let p = i;
                    while b.get(i).is_some_and(name_ok) {
                        i += 1;
                    }
                    if i == p || i - p > 32 || b.get(i)? != &b'=' || b.get(i + 1)? != &b'"' {
                        return None;
                    }
                    i += 2;
                    loop {
                        match b.get(i)? {
                            b'\\' => i += 2,
                            b'"' => {
                                i += 1;
                                break;
                            }
                            _ => i += 1,
                        }
                    }
                }
                _ => return None,
            }
        }
    }
    (i > 0).then_some(i)
}

fn digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

/// `YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm)`, shape only.
fn is_rfc3339(t: &[u8]) -> bool {
    if t.len() < 20 || t.len() > 40 {
        return false;
    }
    let shape = |s: &[u8], pat: &[u8]| {
        s.len() == pat.len()
            && s.iter().zip(pat).all(|(c, p)| {
                if *p == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == p
                }
            })
    };
    if !shape(&t[..19], b"9999-99-99T99:99:99") {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == b"Z"
        || (rest.len() == 6 && matches!(rest[0], b'+' | b'-') && shape(&rest[1..], b"99:99"))
}

/// `Mmm dd hh:mm:ss` (day space-padded), as BSD syslog writes time.
fn is_bsd_time(t: &[u8]) -> bool {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    t.len() == 15
        && MONTHS.contains(&&t[..3])
        && t[3] == b' '
        && (t[4] == b' ' || t[4].is_ascii_digit())
        && t[5].is_ascii_digit()
        && t[6] == b' '
        && digits(&t[7..9])
        && t[9] == b':'
        && digits(&t[10..12])
        && t[12] == b':'
        && digits(&t[13..15])
}

/// Longest TAG read from a BSD message (RFC 3164 says 32; systemd and
/// others send longer ones).
const MAX_TAG: usize = 128;

fn parse_bsd(pri: u8, b: &[u8]) -> Syslog<'_> {
    let mut rest = b;
    let mut timestamp = None;
    if rest.len() > 15 && is_bsd_time(&rest[..15]) && rest[15] == b' ' {
        timestamp = Some(&rest[..15]);
        rest = &rest[16..];
    } else if let Some((t, r)) = field(rest).filter(|(t, _)| is_rfc3339(t)) {
        timestamp = Some(t);
        rest = r;
    }
    // A hostname only follows a timestamp, and is a word that is not itself
    // a tag (`app:` or `app[pid]:`) followed by one.
    let mut hostname = None;
    if timestamp.is_some() {
        if let Some((word, r)) = field(rest) {
            let looks_tag = word.ends_with(b":") || word.contains(&b'[');
            if !word.is_empty() && !looks_tag && word.len() <= 255 && tag(r).is_some() {
                hostname = Some(word);
                rest = r;
            }
        }
    }
    let (app, procid, msg) = match tag(rest) {
        Some((app, procid, msg)) => (Some(app), procid, msg),
        None => (None, None, rest),
    };
    Syslog {
        pri,
        format: Format::Bsd,
        timestamp,
        hostname,
        app,
        procid,
        msgid: None,
        structured_data: None,
        msg,
    }
}

/// A BSD tag, its pid and the message after them.
type Tag<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// `TAG[PID]: MSG` or `TAG: MSG`: the tag, the pid and the message (its
/// one leading space dropped).
fn tag(b: &[u8]) -> Option<Tag<'_>> {
    let end = b
        .iter()
        .take(MAX_TAG + 1)
        .position(|&c| matches!(c, b'[' | b':' | b' '))?;
    if end == 0 {
        return None;
    }
    let app = &b[..end];
    let (procid, after) = if b[end] == b'[' {
        let r = &b[end + 1..];
        let close = r.iter().take(MAX_TAG + 1).position(|&c| c == b']')?;
        let pid = &r[..close];
        if pid.is_empty() || !pid.iter().all(|c| (33..=126).contains(c)) {
            return None;
        }
        (Some(pid), &r[close + 1..])
    } else {
        (None, &b[end..])
    };
    let after = after.strip_prefix(b":")?;
    let msg = after.strip_prefix(b" ").unwrap_or(after);
    Some((app, procid, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn logger_to_dev_log() {
        // util-linux logger -u SOCK (RFC 3164 on a unix socket, no host)
        let m = parse(b"<13>Dec  2 17:54:04 root[4242]: hello world").unwrap();
        assert_eq!(m.pri, 13);
        assert_eq!((m.facility(), m.severity()), (1, 5));
        assert_eq!(m.format, Format::Bsd);
        assert_eq!(m.timestamp, Some(&b"Dec  2 17:54:04"[..]));
        assert_eq!(m.hostname, None);
        assert_eq!(m.app, Some(&b"root"[..]));
        assert_eq!(m.procid, Some(&b"4242"[..]));
        assert_eq!(m.msg, b"hello world");
        // glibc syslog(3) with LOG_PID from sshd
        let m = parse(b"<38>Dec 12 03:04:05 sshd[811]: Accepted publickey for root from 127.0.0.1 port 52114 ssh2").unwrap();
        assert_eq!((m.facility(), m.severity()), (4, 6));
        assert_eq!(m.app, Some(&b"sshd"[..]));
        assert!(m.msg.starts_with(b"Accepted"));
        // a relay's line, with a hostname
        let m = parse(b"<86>Dec  2 17:54:04 web1 CRON[12]: (root) CMD (run-parts)").unwrap();
        assert_eq!(m.hostname, Some(&b"web1"[..]));
        assert_eq!(m.app, Some(&b"CRON"[..]));
        // no timestamp, no pid
        let m = parse(b"<14>postfix/smtpd: connect from localhost").unwrap();
        assert_eq!(m.timestamp, None);
        assert_eq!(m.app, Some(&b"postfix/smtpd"[..]));
        assert_eq!(m.procid, None);
        assert_eq!(m.msg, b"connect from localhost");
        // no tag at all: the rest is the message
        let m = parse(b"<5>just some words").unwrap();
        assert_eq!(m.app, None);
        assert_eq!(m.msg, b"just some words");
        // rsyslog's forward format: RFC 3339 time in a BSD header
        let m = parse(b"<30>2026-12-02T17:54:04.123456+00:00 web1 systemd[1]: Started x.").unwrap();
        assert_eq!(m.timestamp, Some(&b"2026-12-02T17:54:04.123456+00:00"[..]));
        assert_eq!(m.hostname, Some(&b"web1"[..]));
        assert_eq!(m.procid, Some(&b"1"[..]));
        // not UTF-8
        let m = parse(b"<13>app: \xff\xfe bytes").unwrap();
        assert_eq!(m.msg, b"\xff\xfe bytes");
    }

    #[test]
    fn rfc5424_samples() {
        // RFC 5424 section 6.5, examples 1 and 3
        let m = parse(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8").unwrap();
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!(m.pri, 34);
        assert_eq!(m.hostname, Some(&b"mymachine.example.com"[..]));
        assert_eq!(m.app, Some(&b"su"[..]));
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid, Some(&b"ID47"[..]));
        assert_eq!(m.structured_data, None);
        assert!(m.msg.starts_with(b"\xef\xbb\xbf'su root'"));
        let m = parse(br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry..."#).unwrap();
        assert_eq!(
            m.structured_data,
            Some(&br#"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]"#[..])
        );
        assert_eq!(m.msg, b"An application event log entry...");
        // logger --rfc5424 (util-linux), SD with an escaped quote and no MSG
        let m = parse(br#"<13>1 2026-12-02T17:54:04.561289+00:00 host root 4242 - [timeQuality tzKnown="1" isSynced="0"][x@1 a="q\"]"]"#).unwrap();
        assert_eq!(m.procid, Some(&b"4242"[..]));
        assert_eq!(m.msg, b"");
        // all NILVALUEs
        let m = parse(b"<0>1 - - - - - -").unwrap();
        assert_eq!((m.timestamp, m.hostname, m.app), (None, None, None));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b""), Err(SyslogError::Empty));
        assert_eq!(parse(b"hello"), Err(SyslogError::NoPri));
        assert_eq!(parse(b"<192>x"), Err(SyslogError::NoPri));
        assert_eq!(parse(b"<1234>x"), Err(SyslogError::NoPri));
        assert_eq!(parse(b"<>x"), Err(SyslogError::NoPri));
        assert!(matches!(
            parse(b"<13>1 yesterday host app - - - m"),
            Err(SyslogError::Rfc5424 { field: "TIMESTAMP" })
        ));
        assert!(matches!(
            parse(b"<13>1 - host app - - [unclosed"),
            Err(SyslogError::Rfc5424 {
                field: "STRUCTURED-DATA"
            })
        ));
        assert!(matches!(
            parse(b"<13>1 - host"),
            Err(SyslogError::Rfc5424 { .. })
        ));
        let long = [b"<13>".as_slice(), &vec![b'a'; MAX_MESSAGE]].concat();
        assert!(matches!(parse(&long), Err(SyslogError::TooLong { .. })));
    }

    fn token(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(
            proptest::collection::vec(34u8..=126, 1..=max).prop_filter("not nil", |v| v != b"-"),
        )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(m) = parse(&b) {
                prop_assert!(m.pri <= 191);
                prop_assert!(m.msg.len() <= b.len());
            }
            let with_pri = [b"<13>".as_slice(), &b].concat();
            prop_assert!(parse(&with_pri).is_ok() || with_pri.starts_with(b"<13>1 "));
        }

        #[test]
        fn rfc5424_round_trips(
            pri in 0u8..=191,
            host in token(255),
            app in token(48),
            procid in token(128),
            msgid in token(32),
            msg in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let nil = |f: &Option<Vec<u8>>| f.clone().unwrap_or_else(|| b"-".to_vec());
            let mut b = format!("<{pri}>1 2026-12-02T17:54:04Z ").into_bytes();
            for f in [&host, &app, &procid, &msgid] {
                b.extend(nil(f));
                b.push(b' ');
            }
            b.extend_from_slice(br#"[a@1 k="v\]"] "#);
            b.extend(&msg);
            let m = parse(&b).unwrap();
            prop_assert_eq!(m.pri, pri);
            prop_assert_eq!(m.hostname.map(<[u8]>::to_vec), host);
            prop_assert_eq!(m.app.map(<[u8]>::to_vec), app);
            prop_assert_eq!(m.procid.map(<[u8]>::to_vec), procid);
            prop_assert_eq!(m.msgid.map(<[u8]>::to_vec), msgid);
            prop_assert_eq!(m.msg, &msg[..]);
        }

        #[test]
        fn bsd_round_trips(
            pri in 0u8..=191,
            app in "[a-z][a-z0-9/._-]{0,40}",
            pid in 1u32..4_000_000,
            msg in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut b = format!("<{pri}>Dec  2 17:54:04 {app}[{pid}]: ").into_bytes();
            b.extend(&msg);
            let m = parse(&b).unwrap();
            prop_assert_eq!(m.app, Some(app.as_bytes()));
            let pid = pid.to_string();
            prop_assert_eq!(m.procid, Some(pid.as_bytes()));
            prop_assert_eq!(m.msg, &msg[..]);
        }
    }
}
