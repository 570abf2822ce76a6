//! One keyward node's decisions, sans IO: [`Node`] takes [`Input`]s with
//! the time and hands back [`Output`]s for its driver (keywardd over
//! libp2p and sled; the simulator over its virtual network, clock and
//! disk) to carry out in order. Randomness comes from a seed the driver
//! gives ([`NodeConfig::seed`]); what the node writes is [`Write`], the
//! state directory's whole schema; what it says is [`Note`].
//!
//! The concerns, each with its own state type or `impl Node` block:
//! - [`admin`]: signed admin messages and copied-boot-key alerts.
//! - [`decisions`]: the guardian's decision history and its journal
//!   throttle; strangers' requests counted apart.
//! - [`members`]: issuing invites and admitting their holders, revoking,
//!   rekeying.
//! - [`overlay`]: whom the node keeps connections to (guardians, wards,
//!   gossip neighbours), bounded whatever the mesh's size.
//! - [`peers`]: connections, liveness, reconnect backoff, strikes and bans.
//! - [`timers`]: the node's periodic work, by name.
//! - `serve`: answering peers (share requests, deposits, drops, syncs,
//!   joins, goodbyes).
//! - `spread`: gossip and sync answers in, merges, admin messages applied.
//! - `commands`: the admin's control requests.
//! - `outbound`: requests this node sends and what waits on them.
//! - [`logs`]: this node's log replicated to its replica peers and
//!   witnessed by them; other members' logs kept and witnessed.
//! - `entropy`: anti-entropy rounds, their answers and the descent into
//!   differing parts of the roster.

pub mod admin;
mod commands;
pub mod decisions;
mod entropy;
mod io;
pub mod logs;
mod machine;
pub mod members;
mod notes;
mod outbound;
pub mod overlay;
pub mod peers;
mod serve;
mod spread;
pub mod timers;

pub use commands::MAX_INVITE_ADDRS;
pub use io::{
    CtlId, GossipId, InId, Input, LogData, LogRead, OutId, Output, ReadId, Write, WriteId,
};
pub use logs::{LogsSetup, LogsView};
pub use machine::{Node, NodeConfig, Stored};
pub use notes::Note;
pub use spread::VERIFY_INLINE;

#[cfg(test)]
mod tests;
