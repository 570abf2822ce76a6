//! `keyward audit decrypt DIR`: the lines of every segment that verifies,
//! per origin in leaf order and in segment order within a segment, each
//! with the trusted fields the node recorded (origin, source, sequence,
//! receive time, and the kernel's pid/uid/gid when the source has them).
//! It reads through the same verified path as `keyward logs` (a segment is
//! opened only once it matched the Merkle log), and writes plaintext to
//! stdout only.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use keyward_node::identity::NodeId;
use keyward_node::logs::read::{self, Filter, Shown};

use super::{dir, AuditError, Format};

/// Which lines to print.
#[derive(Clone, Debug, Default)]
pub struct Select {
    pub origin: Option<String>,
    pub source: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<u64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<u64>,
}

/// Prints the selected lines; every finding goes to stderr and counts.
pub fn run(
    dir_path: &Path,
    identity: &dyn age::Identity,
    sel: &Select,
    format: Format,
) -> Result<(), AuditError> {
    let origins = dir::select(dir_path, dir::origins(dir_path)?, sel.origin.as_deref())?;
    let filter = Filter {
        source: sel.source.clone(),
        since: sel.since,
        until: sel.until,
        from_index: 0,
        confidential: true,
    };
    let mut findings = 0usize;
    let stdout = std::io::stdout();
    for (origin, path) in &origins {
        let r = match read::read(path, origin, identity, &filter) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("keyward: FINDING {origin}: {e:#}; none of its lines are shown");
                findings += 1;
                continue;
            }
        };
        let mut out = stdout.lock();
        for l in &r.lines {
            let text = match format {
                Format::Rfc5424 => rfc5424(origin, l),
                Format::Json => json(origin, l)?,
            };
            // A closed stdout (`| head`) ends the output, not an error.
            if writeln!(out, "{text}").is_err() {
                return Ok(());
            }
        }
        drop(out);
        for f in &r.findings {
            eprintln!("keyward: FINDING {origin}: {f}; its lines are not shown");
        }
        findings += r.findings.len();
        if r.unlogged > 0 {
            eprintln!(
                "keyward: {origin}: {} segments sealed after its checkpoint are not verifiable yet and not shown",
                r.unlogged
            );
        }
    }
    if findings > 0 {
        return Err(AuditError::Findings(findings));
    }
    Ok(())
}

fn json(origin: &NodeId, l: &Shown) -> Result<String, AuditError> {
    let origin = origin.to_string();
    let msg = String::from_utf8_lossy(&l.line.msg);
    Ok(serde_json::to_string(&crate::logs::JsonLine::of(
        Some(&origin),
        l,
        &msg,
    ))?)
}

/// RFC 5424 PRI for lines whose own priority keyward does not interpret
/// (the raw message keeps whatever the sender put in it): user.notice.
const PRI: u8 = 13;

/// The SD-ID of keyward's trusted fields. 32473 is the private enterprise
/// number RFC 5612 reserves for documentation and examples: keyward has
/// none of its own, and a collector must not confuse these with a real
/// vendor's.
const SD_ID: &str = "keyward@32473";

/// RFC 5424 APP-NAME is at most 48 characters; a source name may be 64 (the
/// whole name is in the SD element).
const MAX_APP_NAME: usize = 48;

/// One line as RFC 5424: HOSTNAME the origin's id, APP-NAME the source,
/// PROCID the trusted pid, the trusted fields in an SD element, then the
/// message as received (newlines as `#012`, as rsyslog escapes them, so one
/// line stays one output line).
pub fn rfc5424(origin: &NodeId, l: &Shown) -> String {
    let time = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(l.line.time));
    let s = &l.line.sender;
    let procid = s.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
    let app: String = l.source.chars().take(MAX_APP_NAME).collect();
    let mut sd = format!(
        "[{SD_ID} origin=\"{}\" source=\"{}\" segment=\"{}\" seq=\"{}\" time_ms=\"{}\"",
        sd_escape(&origin.to_string()),
        sd_escape(&l.source),
        l.index,
        l.seq,
        l.line.time
    );
    for (k, v) in [("pid", s.pid), ("uid", s.uid), ("gid", s.gid)] {
        if let Some(v) = v {
            sd.push_str(&format!(" {k}=\"{v}\""));
        }
    }
    sd.push(']');
    let msg = String::from_utf8_lossy(&l.line.msg);
    let msg = msg.trim_end_matches(['\n', '\r']).replace('\n', "#012");
    format!("<{PRI}>1 {time} {origin} {app} {procid} - {sd} {msg}")
}

/// RFC 5424 PARAM-VALUE escaping: `"`, `\` and `]` get a backslash.
fn sd_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_node::identity::NodeKey;
    use keyward_node::log::line::{Line, Sender};

    #[test]
    fn rfc5424_carries_the_trusted_fields() {
        let origin = NodeKey::from_seed([1; 32]).id();
        let l = Shown {
            index: 3,
            source: "auth".into(),
            seq: 2,
            line: Line {
                time: 1_764_669_600_123,
                sender: Sender {
                    pid: Some(42),
                    uid: Some(0),
                    gid: None,
                },
                msg: b"a \"b\"\nc\n".to_vec(),
            },
        };
        let s = rfc5424(&origin, &l);
        assert!(s.starts_with(&format!(
            "<13>1 2025-12-02T10:00:00.123Z {origin} auth 42 - [keyward@32473 origin=\"{origin}\" source=\"auth\" segment=\"3\" seq=\"2\" time_ms=\"1764669600123\" pid=\"42\" uid=\"0\"]"
        )), "{s}");
        assert!(s.ends_with("] a \"b\"#012c"), "{s}");
        assert_eq!(sd_escape("a\"]\\"), "a\\\"\\]\\\\");
    }
}
