//! A small network lab for keyward's end-to-end tests.
//!
//! [`Lab::new`] builds, as root, one network namespace per node, joined by a
//! bridge that lives in a namespace of its own (the "hub"), so nothing is
//! added to the host's links, addresses or routes. Addresses come from
//! 198.18.0.0/15 (RFC 2544 benchmarking space) and are only reachable from
//! inside the lab. The lab can cut a node off ([`Lab::link_down`]), drop a
//! share of the packets it sends ([`Lab::set_loss`], nftables) and delay its frames
//! ([`Lab::set_delay`], a userspace relay, because these machines have no
//! netem).
//!
//! Everything is undone when the [`Lab`] drops, also while a test panics.
//! A run that was SIGKILLed (or aborted on a panic in a release build)
//! leaves namespaces, processes and mesh directories behind; the next
//! [`Lab::new`] or [`mesh::Mesh`] removes those whose owning process is
//! gone, telling a reused pid from the owner by its start time.
//!
//! Tests that cannot run here (not root, no `ip`, no `nft`) get a [`Skip`]
//! error; [`or_skip!`] and [`lab_or_skip!`] turn it into `skipped: ...` and
//! return. Set `KEYWARD_NETNS_REQUIRE=1` (as CI does) to make a skip fail
//! the test instead, so a broken CI image cannot pass silently.

mod delay;
pub mod journald;
mod lab;
pub mod mesh;
mod nft;
mod ns;
pub mod relp;
pub mod rsyslog;
pub mod spool;
mod stale;
pub mod syslog_ng;
pub mod vm;
pub mod vm_rig;
pub mod vm_stale;

pub use anyhow;
pub use lab::{Lab, Node, MAX_NODES, PREFIX_LEN};
pub use stale::remove_stale_files;

/// What the tests read of `cryptsetup luksDump --dump-json-metadata`: the
/// keyslots by number.
#[derive(Debug, serde::Deserialize)]
pub struct LuksDump {
    pub keyslots: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

use std::fmt;

/// The environment cannot run namespace tests (not root, a tool missing).
///
/// Returned inside an [`anyhow::Error`]; find it with
/// `err.downcast_ref::<Skip>()` or use [`or_skip!`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skip {}

/// Prints `skipped: <reason>`, or panics when `KEYWARD_NETNS_REQUIRE=1`.
/// Used by [`or_skip!`]; call it directly from tests that do not return `()`.
pub fn report_skip(skip: &Skip) {
    if std::env::var_os("KEYWARD_NETNS_REQUIRE").is_some_and(|v| v == "1") {
        panic!("KEYWARD_NETNS_REQUIRE=1 but the test would be skipped: {skip}");
    }
    println!("skipped: {skip}");
}

/// Unwraps an `anyhow::Result`; on a [`Skip`] error prints
/// `skipped: <reason>` and returns from the enclosing `()` function; any
/// other error panics with its full context.
#[macro_export]
macro_rules! or_skip {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(err) => {
                let err: $crate::anyhow::Error = err.into();
                if let Some(skip) = err.downcast_ref::<$crate::Skip>() {
                    $crate::report_skip(skip);
                    return;
                }
                panic!("{err:#}");
            }
        }
    };
}

/// `Lab::new(n)`, or print `skipped: <reason>` and return.
#[macro_export]
macro_rules! lab_or_skip {
    ($nodes:expr) => {
        $crate::or_skip!($crate::Lab::new($nodes))
    };
}
