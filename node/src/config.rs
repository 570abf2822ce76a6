//! `/etc/keyward/keyward.toml`: defaults for everything, unknown keys
//! refused with their name and line so a typo never silently changes policy.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::guardian::Policy;

pub const DEFAULT_PATH: &str = "/etc/keyward/keyward.toml";
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Longest policy time accepted (a year, in seconds): anything longer is a
/// unit mistake, and the bound keeps the conversion to milliseconds exact.
const MAX_POLICY_SECS: u64 = 366 * 24 * 3600;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Human name of this node in the roster (defaults to the hostname).
    pub name: Option<String>,
    /// State directory on the encrypted root: node key and database.
    pub state_dir: PathBuf,
    /// Boot seed, also copied into the initramfs.
    pub boot_key: PathBuf,
    /// Local control socket used by the CLI.
    pub control_socket: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<String>,
    /// Static peers to dial at start (multiaddrs, with or without /p2p/).
    pub bootstrap: Vec<String>,
    /// mDNS discovery on the local link.
    pub mdns: bool,
    /// Also listen on QUIC (udp) next to TCP.
    pub quic: bool,
    /// Log level when RUST_LOG is not set.
    pub log_level: String,
    /// Seconds after which a peer's learnt address is forgotten when it was
    /// not confirmed again while a newer address of that peer was (so LUKS
    /// tokens do not collect dead addresses). An address is never dropped
    /// for age alone: after a long outage the last known ones stay.
    pub address_max_age: u64,
    pub policy: PolicyConfig,
    /// Logs: sources, auditors, segments, quota (docs/logs.md).
    pub logs: crate::logs::config::LogsConfig,
}

/// Release policy times, in seconds (Mandos's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub interval: u64,
    pub timeout: u64,
    pub extended_timeout: u64,
    pub approval_delay: u64,
    pub approval_window: u64,
    pub up_window: u64,
    /// Distinct admins (active guardians) whose approvals an approved
    /// release needs; a count, not seconds.
    pub approvals: u32,
}

/// Most approvals `policy.approvals` may ask for: more people than that
/// are never at hand when a whole mesh lost power.
pub const MAX_APPROVALS: u32 = 16;

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = Policy::default();
        PolicyConfig {
            interval: p.interval / 1000,
            timeout: p.timeout / 1000,
            extended_timeout: p.extended_timeout / 1000,
            approval_delay: p.approval_delay / 1000,
            approval_window: p.approval_window / 1000,
            up_window: p.up_window / 1000,
            approvals: p.approvals,
        }
    }
}

impl PolicyConfig {
    pub fn to_policy(&self) -> Policy {
        Policy {
            interval: self.interval * 1000,
            timeout: self.timeout * 1000,
            extended_timeout: self.extended_timeout * 1000,
            approval_delay: self.approval_delay * 1000,
            approval_window: self.approval_window * 1000,
            up_window: self.up_window * 1000,
            approvals: self.approvals,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: None,
            state_dir: "/var/lib/keyward".into(),
            boot_key: "/etc/keyward/boot.key".into(),
            control_socket: "/run/keyward/control.sock".into(),
            listen: vec!["/ip4/0.0.0.0/tcp/7300".into(), "/ip6/::/tcp/7300".into()],
            bootstrap: vec![],
            mdns: true,
            quic: false,
            log_level: "info".into(),
            address_max_age: 7 * 24 * 3600,
            policy: PolicyConfig::default(),
            logs: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} is larger than 1 MiB; is this the right file?")]
    TooLarge { path: PathBuf },
    #[error("config {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("config {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

/// When an unknown-key error at `line` names a top-level key that sits
/// below a `[table]` header, TOML put it in that table: the classic mistake
/// of appending `mdns = false` to a file that ends with `[policy]`. Says
/// so, and what to do, instead of a bare "unknown field".
fn top_level_key_in_table(text: &str, line: usize, msg: &str) -> Option<String> {
    if !msg.contains("unknown field") {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let l = lines.get(line.checked_sub(1)?)?;
    let key = l.split('=').next()?.trim();
    if !Config::TOP_LEVEL_KEYS.contains(&key) {
        return None;
    }
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && !l.starts_with("[["))?;
    Some(format!(
        "; `{key}` is a top-level key, but it comes after the {table} header, so TOML reads it as part of {table}: move it above {table} (or write the table's keys as `policy.timeout = 300` with no header)"
    ))
}

impl Config {
    /// Loads `path`; a missing file at the default path means all defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.into(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_PATH) =>
            {
                return Ok(Config::default())
            }
            Err(e) => return Err(read(e)),
        };
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: path.into() });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            let mut msg = e.message().trim().to_string();
            if let Some(hint) = line.and_then(|l| top_level_key_in_table(text, l, &msg)) {
                msg.push_str(&hint);
            }
            ConfigError::Parse {
                path: path.into(),
                msg: match line {
                    Some(l) => format!("line {l}: {msg}"),
                    None => msg,
                },
            }
        })?;
        c.validate(path)?;
        Ok(c)
    }

    /// The names of the top-level keys, for [`top_level_key_in_table`].
    const TOP_LEVEL_KEYS: [&'static str; 9] = [
        "name",
        "state_dir",
        "boot_key",
        "control_socket",
        "listen",
        "bootstrap",
        "mdns",
        "quic",
        "log_level",
    ];

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |msg: String| ConfigError::Invalid {
            path: path.into(),
            msg,
        };
        self.logs.check().map_err(bad)?;
        let p = &self.policy;
        for (key, v) in [
            ("interval", p.interval),
            ("timeout", p.timeout),
            ("extended_timeout", p.extended_timeout),
            ("approval_delay", p.approval_delay),
            ("approval_window", p.approval_window),
            ("up_window", p.up_window),
        ] {
            if v > MAX_POLICY_SECS {
                return Err(bad(format!(
                    "policy.{key} = {v} s is more than a year; times are in seconds (300 = 5 min)"
                )));
            }
        }
        if !(60..=MAX_POLICY_SECS).contains(&self.address_max_age) {
            return Err(bad(format!(
                "address_max_age = {} s: give between 60 s and a year, in seconds (604800 = 7 days)",
                self.address_max_age
            )));
        }
        if p.interval == 0 || p.timeout == 0 {
            return Err(bad(
                "policy.interval and policy.timeout must be at least 1 second".into(),
            ));
        }
        if p.interval > p.timeout {
            return Err(bad(format!(
                "policy.interval ({} s) is longer than policy.timeout ({} s): every node would look dead between checks",
                p.interval, p.timeout
            )));
        }
        // The copied-boot-key check refuses a boot-key request while the
        // owner answered within up_window: 0 turns it off, and a window as
        // long as the timeout would refuse every boot after a crash.
        if p.up_window == 0 {
            return Err(bad(
                "policy.up_window = 0 turns off the copied-boot-key check (a boot key used while its node runs); use at least 1 second (default 10)".into(),
            ));
        }
        if p.up_window >= p.timeout {
            return Err(bad(format!(
                "policy.up_window ({} s) must be shorter than policy.timeout ({} s): a node counts as up for up_window after its last answer, so no reboot without a clean goodbye could ever unlock (default 10 s of 300 s)",
                p.up_window, p.timeout
            )));
        }
        if p.approvals == 0 || p.approvals > MAX_APPROVALS {
            return Err(bad(format!(
                "policy.approvals = {} is the number of distinct admins whose `keyward approve` a release needs: use 1 to {MAX_APPROVALS} (default 1)",
                p.approvals
            )));
        }
        for a in self.listen.iter().chain(&self.bootstrap) {
            if a.parse::<libp2p::Multiaddr>().is_err() {
                return Err(bad(format!(
                    "`{a}` is not a multiaddr (example: /ip4/192.0.2.7/tcp/7300)"
                )));
            }
        }
        if let Some(n) = &self.name {
            crate::roster::check_name(n).map_err(bad)?;
        }
        Ok(())
    }

    pub fn node_key_path(&self) -> PathBuf {
        self.state_dir.join("node.key")
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("db")
    }

    /// The roster name of this node.
    pub fn node_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| crate::roster::check_name(h).is_ok())
                .unwrap_or_else(|| "node".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.policy.timeout, 300);
        assert_eq!(c.policy.interval, 120);
        assert_eq!(c.policy.extended_timeout, 900);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = Config::parse(
            "mdns = false\n\n[policy]\ntimout = 3\n",
            Path::new("k.toml"),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("line 4"), "{s}");
        assert!(s.contains("timout"), "{s}");
    }

    /// Issue 16.7: `mdns = false` appended below `[policy]` (as boot.md
    /// suggested editing the example) lands in the policy table; the error
    /// must say so and say where to put it.
    #[test]
    fn a_top_level_key_below_a_table_is_explained() {
        let e = Config::parse(
            "name = \"web1\"\n[policy]\ntimeout = 300\nmdns = false\n",
            Path::new("k.toml"),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("line 4"), "{s}");
        assert!(s.contains("`mdns` is a top-level key"), "{s}");
        assert!(s.contains("move it above [policy]"), "{s}");
        // A real typo inside the table gets no such hint.
        let e = Config::parse("[policy]\ntimout = 3\n", Path::new("k")).unwrap_err();
        assert!(!e.to_string().contains("top-level"), "{e}");
    }

    /// The example config has no table header, so a key appended at its
    /// end stays top-level; and every key in it is a real one.
    #[test]
    fn the_example_config_takes_appended_top_level_keys() {
        let ex = include_str!("../../dist/keyward.toml.example");
        assert!(
            !ex.lines().any(|l| l.trim_start().starts_with('[')),
            "the example must not open a table: a key appended at its end would land in it"
        );
        let uncommented: String = ex
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()) && l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&uncommented, Path::new("example")).unwrap();
        assert_eq!(c.policy, PolicyConfig::default());
        let appended = format!("{ex}\nmdns = false\n");
        assert!(!Config::parse(&appended, Path::new("example")).unwrap().mdns);
    }

    #[test]
    fn nonsense_values_are_explained() {
        let e =
            Config::parse("[policy]\ninterval = 600\ntimeout = 60\n", Path::new("k")).unwrap_err();
        assert!(e.to_string().contains("longer than policy.timeout"), "{e}");
        let e =
            Config::parse("[policy]\ntimeout = 9223372036854775807\n", Path::new("k")).unwrap_err();
        assert!(e.to_string().contains("policy.timeout"), "{e}");
        let e = Config::parse("bootstrap = [\"10.0.0.1:7300\"]\n", Path::new("k")).unwrap_err();
        assert!(e.to_string().contains("not a multiaddr"), "{e}");
        let e = Config::parse("address_max_age = 5\n", Path::new("k")).unwrap_err();
        assert!(e.to_string().contains("address_max_age = 5 s"), "{e}");
    }

    /// L8: a config that silently turns off the copied-boot-key check.
    #[test]
    fn an_up_window_that_disables_the_copy_check_is_refused() {
        let e = Config::parse("[policy]\nup_window = 0\n", Path::new("k")).unwrap_err();
        assert!(
            e.to_string().contains("policy.up_window = 0 turns off"),
            "{e}"
        );
        for (up, timeout) in [(300, 300), (400, 300)] {
            let e = Config::parse(
                &format!("[policy]\nup_window = {up}\ntimeout = {timeout}\n"),
                Path::new("k"),
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .contains("must be shorter than policy.timeout"),
                "{e}"
            );
        }
        let c = Config::parse("[policy]\nup_window = 299\n", Path::new("k")).unwrap();
        assert_eq!(c.policy.to_policy().up_window, 299_000);
    }

    #[test]
    fn approvals_are_a_bounded_count_of_admins() {
        assert_eq!(Config::default().policy.to_policy().approvals, 1);
        let c = Config::parse("[policy]\napprovals = 2\n", Path::new("k")).unwrap();
        assert_eq!(c.policy.to_policy().approvals, 2);
        for bad in ["0", "17", "4294967295"] {
            let e = Config::parse(&format!("[policy]\napprovals = {bad}\n"), Path::new("k"))
                .unwrap_err();
            assert!(e.to_string().contains("distinct admins"), "{bad}: {e}");
        }
        let e = Config::parse("[policy]\napprovals = -1\n", Path::new("k")).unwrap_err();
        assert!(
            e.to_string().contains("policy") || e.to_string().contains("line 2"),
            "{e}"
        );
    }
}
