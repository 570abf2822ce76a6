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
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// a-z, 0-9, '.', '_', '-'; 1 to 64 characters.
    pub name: String,
    #[serde(flatten)]
    pub input: SourceInput,
    /// Default true: sealed to the auditors only, unreadable on the node.
    #[serde(default = "yes")]
    pub confidential: bool,
    /// Days to keep sealed segments locally; 0 = until the quota needs room.
    #[serde(default)]
    pub retention_days: u32,
}

fn yes() -> bool {
    true
}

/// Where a source's lines come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
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
        }
    }
}

impl LogsConfig {
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
