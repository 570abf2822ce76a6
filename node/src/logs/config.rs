//! The `[logs]` table of keyward.toml: where lines come from, who can read
//! them, how they are cut, committed and kept.
//!
//! Shared by the ingest listeners (which sockets and files to open), the
//! spool (sources, limits, quota) and the CLI (`keyward logs`). Validated
//! once by [`LogsConfig::check`], before the daemon opens anything.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[logs]`: off unless at least one auditor recipient is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Auditor recipients (age X25519 `age1...` or SSH public keys). Every
    /// segment is sealed to all of them. Empty: logging is off.
    pub auditors: Vec<String>,
    /// Spool directory. Default: `<state_dir>/logs`.
    pub spool: Option<PathBuf>,
    /// Plaintext bytes per segment.
    pub segment_bytes: usize,
    /// Lines per segment.
    pub segment_lines: u32,
    /// Seconds a segment stays open at most.
    pub segment_secs: u64,
    /// Group commit: most milliseconds between a line's arrival and the
    /// fsync that makes it durable (and acknowledges it).
    pub commit_ms: u64,
    /// Seconds between signed checkpoints of the Merkle log.
    pub checkpoint_secs: u64,
    /// Total bytes the spool may use.
    pub quota_bytes: u64,
    /// Percentage of the quota at which a warning is logged and shown by
    /// `keyward status`.
    pub warn_percent: u8,
    /// What happens when the spool is full.
    pub when_full: WhenFull,
    /// Unix stream socket of `keyward logs write` (pipe sources).
    pub pipe_socket: PathBuf,
    /// Source name of keyward's own events and the guardian's decisions.
    pub events_source: String,
    /// Whether that source is confidential (readable by the auditor only).
    pub events_confidential: bool,
    #[serde(rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Peers that keep a copy of this node's log (0: none); chosen from
    /// the roster's guardians.
    pub replicas: usize,
    /// Seconds between asking those peers to cosign (witness) this node's
    /// checkpoint.
    pub witness_secs: u64,
    /// When a line with acknowledgement (RELP, pipe) is acknowledged, for
    /// every source that does not say: once durable here, or once
    /// `replicas` peers hold it.
    pub ack: AckPolicy,
    /// Bytes this node keeps of each other origin's log (0: it keeps no
    /// replicas and witnesses nothing).
    pub replica_quota_bytes: u64,
    /// Days this node keeps other origins' segments; 0 = until the
    /// quota is full (then it takes no more of that origin).
    pub replica_retention_days: u32,
    /// An origin whose log this node keeps, that is up but whose log has
    /// not grown for this many seconds, is reported silent (0: never).
    pub silence_secs: u64,
}

/// When a line is acknowledged to its sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckPolicy {
    /// Once its group commit is durable on this node's disk.
    #[default]
    Durable,
    /// Once `replicas` peers hold its segment durably (after it is
    /// sealed, checkpointed and pushed): a RELP `rsp 200` then means the
    /// line survives the loss of this host.
    Replicated,
}

/// What to do when the spool reaches its quota. Never silent loss of a
/// line that is not yet replicated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// Refuse new lines (RELP and pipes get an error; datagrams are
    /// dropped and counted).
    Refuse,
    /// Delete the oldest sealed segments that peers already hold; refuse
    /// when none qualifies.
    DropOldestReplicated,
}

/// `[[logs.source]]`: one named source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSource", into = "RawSource")]
pub struct SourceConfig {
    /// a-z, 0-9, '.', '_', '-'; 1 to 64 characters.
    pub name: String,
    pub input: SourceInput,
    /// Default true: sealed to the auditors only, unreadable on the node.
    pub confidential: bool,
    /// Days to keep sealed segments locally; 0 = until the quota needs room.
    pub retention_days: u32,
    /// This source's acknowledgement policy (default: `[logs] ack`).
    pub ack: Option<AckPolicy>,
}

/// Where a source's lines come from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceInput {
    /// `/dev/log`-style unix datagram socket; the kernel's SCM_CREDENTIALS
    /// of each sender are recorded as trusted fields.
    Unix { path: PathBuf },
    /// Syslog over UDP (RFC 3164 / RFC 5424), localhost only.
    Udp { listen: SocketAddr },
    /// Syslog over TCP, RFC 6587 octet counting or LF framing, localhost only.
    Tcp { listen: SocketAddr },
    /// RELP (rsyslog omrelp); `rsp 200` only once the line is durable.
    Relp { listen: SocketAddr },
    /// A file tailed across rotation (rename) and truncation (copytruncate).
    File { path: PathBuf },
    /// Lines from `keyward logs write --source NAME` over `pipe_socket`.
    Pipe,
}

/// The kinds as written in `kind = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Unix,
    Udp,
    Tcp,
    Relp,
    File,
    Pipe,
}

/// A source table as written. TOML's shape is flat (`kind`, `path`,
/// `listen` side by side); serde cannot flatten a tagged enum and still
/// refuse unknown keys, so the table is read flat, every key checked, and
/// then turned into [`SourceConfig`] with the error naming the key that is
/// missing or does not belong to the kind.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    #[serde(default = "yes")]
    confidential: bool,
    #[serde(default)]
    retention_days: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ack: Option<AckPolicy>,
}

fn yes() -> bool {
    true
}

impl TryFrom<RawSource> for SourceConfig {
    type Error = String;

    fn try_from(r: RawSource) -> Result<Self, String> {
        let name = &r.name;
        let want_path = |p: Option<PathBuf>, kind: &str| {
            p.ok_or_else(|| format!("logs.source `{name}` (kind = \"{kind}\") needs `path`"))
        };
        let want_listen = |l: Option<SocketAddr>, kind: &str| {
            l.ok_or_else(|| {
                format!("logs.source `{name}` (kind = \"{kind}\") needs `listen`, e.g. \"127.0.0.1:2514\"")
            })
        };
        let (input, stray) = match r.kind {
            Kind::Unix => (
                SourceInput::Unix {
                    path: want_path(r.path, "unix")?,
                },
                r.listen.map(|_| "listen"),
            ),
            Kind::File => (
                SourceInput::File {
                    path: want_path(r.path, "file")?,
                },
                r.listen.map(|_| "listen"),
            ),
            Kind::Udp => (
                SourceInput::Udp {
                    listen: want_listen(r.listen, "udp")?,
                },
                r.path.map(|_| "path"),
            ),
            Kind::Tcp => (
                SourceInput::Tcp {
                    listen: want_listen(r.listen, "tcp")?,
                },
                r.path.map(|_| "path"),
            ),
            Kind::Relp => (
                SourceInput::Relp {
                    listen: want_listen(r.listen, "relp")?,
                },
                r.path.map(|_| "path"),
            ),
            Kind::Pipe => (
                SourceInput::Pipe,
                r.path.map(|_| "path").or(r.listen.map(|_| "listen")),
            ),
        };
        if let Some(key) = stray {
            let kind = format!("{:?}", r.kind).to_lowercase();
            return Err(format!(
                "logs.source `{name}`: `{key}` does not apply to kind = \"{kind}\"; remove it"
            ));
        }
        Ok(SourceConfig {
            name: r.name,
            input,
            confidential: r.confidential,
            retention_days: r.retention_days,
            ack: r.ack,
        })
    }
}

impl From<SourceConfig> for RawSource {
    fn from(s: SourceConfig) -> Self {
        let (kind, path, listen) = match s.input {
            SourceInput::Unix { path } => (Kind::Unix, Some(path), None),
            SourceInput::File { path } => (Kind::File, Some(path), None),
            SourceInput::Udp { listen } => (Kind::Udp, None, Some(listen)),
            SourceInput::Tcp { listen } => (Kind::Tcp, None, Some(listen)),
            SourceInput::Relp { listen } => (Kind::Relp, None, Some(listen)),
            SourceInput::Pipe => (Kind::Pipe, None, None),
        };
        RawSource {
            name: s.name,
            kind,
            path,
            listen,
            confidential: s.confidential,
            retention_days: s.retention_days,
            ack: s.ack,
        }
    }
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            auditors: vec![],
            spool: None,
            segment_bytes: 1024 * 1024,
            segment_lines: 100_000,
            segment_secs: 60,
            commit_ms: 50,
            checkpoint_secs: 60,
            quota_bytes: 10 * 1024 * 1024 * 1024,
            warn_percent: 80,
            when_full: WhenFull::Refuse,
            pipe_socket: "/run/keyward/logs.sock".into(),
            events_source: "keyward".into(),
            events_confidential: true,
            sources: vec![],
            replicas: 2,
            witness_secs: 60,
            silence_secs: keyward_core::node::logs::SILENCE_AFTER / 1000,
            ack: AckPolicy::Durable,
            replica_quota_bytes: 1 << 30,
            replica_retention_days: 0,
        }
    }
}

impl LogsConfig {
    /// The acknowledgement policy of `source`.
    pub fn ack_of(&self, source: &str) -> AckPolicy {
        self.sources
            .iter()
            .find(|s| s.name == source)
            .and_then(|s| s.ack)
            .unwrap_or(self.ack)
    }

    /// Logging runs only with an auditor to seal to.
    pub fn enabled(&self) -> bool {
        !self.auditors.is_empty()
    }

    /// Everything wrong with the table, as one message that says what to
    /// change.
    pub fn check(&self) -> Result<(), String> {
        use keyward_core::log::segment::check_source_name;
        let mut names = std::collections::BTreeSet::new();
        check_source_name(&self.events_source).map_err(|e| format!("logs.events_source: {e}"))?;
        names.insert(self.events_source.as_str());
        for s in &self.sources {
            check_source_name(&s.name).map_err(|e| format!("logs.source: {e}"))?;
            if !names.insert(s.name.as_str()) {
                return Err(format!(
                    "logs.source `{}` is defined twice (or is the events source): give each source its own name",
                    s.name
                ));
            }
            match &s.input {
                SourceInput::Udp { listen }
                | SourceInput::Tcp { listen }
                | SourceInput::Relp { listen }
                    if !listen.ip().is_loopback() =>
                {
                    return Err(format!(
                        "logs.source `{}`: listen {listen} is not a loopback address; syslog, TCP and RELP inputs take only local senders (127.0.0.1 or ::1)",
                        s.name
                    ));
                }
                _ => {}
            }
        }
        if !(1..=100).contains(&self.warn_percent) {
            return Err(format!(
                "logs.warn_percent {} must be 1 to 100",
                self.warn_percent
            ));
        }
        if self.commit_ms == 0 || self.commit_ms > 10_000 {
            return Err(format!(
                "logs.commit_ms {} must be 1 to 10000",
                self.commit_ms
            ));
        }
        if self.replicas > 16 {
            return Err(format!("logs.replicas {} must be 0 to 16", self.replicas));
        }
        if self.witness_secs == 0 {
            return Err("logs.witness_secs must be positive".into());
        }
        if self.replicas == 0
            && (self.ack == AckPolicy::Replicated
                || self
                    .sources
                    .iter()
                    .any(|s| s.ack == Some(AckPolicy::Replicated)))
        {
            return Err("ack = \"replicated\" needs logs.replicas of at least 1".into());
        }
        if self.checkpoint_secs == 0 {
            return Err("logs.checkpoint_secs must be positive".into());
        }
        if self.enabled() {
            let auditors: Vec<&str> = self.auditors.iter().map(String::as_str).collect();
            keyward_core::log::recipients::Recipients::parse(&auditors, None)
                .map_err(|e| format!("logs.auditors: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    /// Every `toml` block of docs/logs.md is a valid keyward.toml (with
    /// the auditor line each needs to switch logging on).
    #[test]
    fn the_snippets_of_docs_logs_md_parse() {
        let doc = include_str!("../../../docs/logs.md");
        let mut blocks = 0;
        let mut rest = doc;
        while let Some(i) = rest.find("```toml\n") {
            let body = &rest[i + 8..];
            let end = body
                .find("```")
                .expect("unterminated toml block in docs/logs.md");
            let text = &body[..end];
            let text = if text.contains("auditors") {
                text.to_string()
            } else {
                format!("[logs]\nauditors = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n{text}")
            };
            let c = Config::parse(&text, Path::new("docs/logs.md"))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(c.logs.enabled());
            assert!(!c.logs.sources.is_empty());
            blocks += 1;
            rest = &body[end + 3..];
        }
        assert!(blocks >= 2, "docs/logs.md lost its toml snippets");
    }

    #[test]
    fn sources_are_parsed_with_their_kinds() {
        let c = Config::parse(
            "[logs]\nauditors = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\
             [[logs.source]]\nname = \"a\"\nkind = \"relp\"\nlisten = \"127.0.0.1:2514\"\n\
             [[logs.source]]\nname = \"b\"\nkind = \"pipe\"\nconfidential = false\n",
            Path::new("k"),
        )
        .unwrap();
        assert_eq!(
            c.logs.sources[0].input,
            SourceInput::Relp {
                listen: "127.0.0.1:2514".parse().unwrap()
            }
        );
        assert!(c.logs.sources[0].confidential);
        assert_eq!(c.logs.sources[1].input, SourceInput::Pipe);
        assert!(!c.logs.sources[1].confidential);
    }

    #[test]
    fn replication_settings_are_read_per_node_and_per_source() {
        let c = Config::parse(
            "[logs]\nauditors = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\
             replicas = 3\nack = \"replicated\"\n\
             [[logs.source]]\nname = \"a\"\nkind = \"pipe\"\nack = \"durable\"\n\
             [[logs.source]]\nname = \"b\"\nkind = \"pipe\"\n",
            Path::new("k"),
        )
        .unwrap();
        assert_eq!(c.logs.replicas, 3);
        assert_eq!(c.logs.ack_of("a"), AckPolicy::Durable);
        assert_eq!(c.logs.ack_of("b"), AckPolicy::Replicated);
        assert_eq!(c.logs.ack_of("keyward"), AckPolicy::Replicated);
        let e = Config::parse(
            "[logs]\nreplicas = 0\n[[logs.source]]\nname = \"a\"\nkind = \"pipe\"\nack = \"replicated\"\n",
            Path::new("k"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs logs.replicas"), "{e}");
    }

    #[test]
    fn bad_logs_tables_are_explained() {
        let cases = [
            (
                "[[logs.source]]\nname = \"a\"\nkind = \"tcp\"\nlisten = \"0.0.0.0:601\"\n",
                "not a loopback address",
            ),
            (
                "[[logs.source]]\nname = \"a\"\nkind = \"pipe\"\n[[logs.source]]\nname = \"a\"\nkind = \"pipe\"\n",
                "defined twice",
            ),
            ("[[logs.source]]\nname = \"A b\"\nkind = \"pipe\"\n", "not valid"),
            ("[logs]\nauditors = [\"age1nope\"]\n", "logs.auditors"),
            ("[logs]\ncommit_ms = 0\n", "commit_ms"),
            ("[[logs.source]]\nname = \"a\"\nkind = \"carrier-pigeon\"\n", "carrier-pigeon"),
        ];
        for (text, want) in cases {
            let e = Config::parse(text, Path::new("k")).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
