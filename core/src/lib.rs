//! keyward-core: every decision keyward makes, with no IO.
//!
//! The sans-IO contract (quinn-proto's shape): nothing here opens a
//! socket or a file, reads a clock or draws from the OS random number
//! generator. Every input carries `now` (Unix milliseconds, [`guardian::Millis`]),
//! randomness is passed in, and outputs are returned or polled. keywardd,
//! the boot client and the simulator drive these same types, so what the
//! simulator proves holds for the product. (The `os-rng` feature adds
//! convenience constructors for drivers; sealing a share with `age` draws
//! its ephemeral key inside `age`, at bind time, in the CLI; sealing a log
//! segment likewise draws age's file key inside `age`.)
//!
//! Module map:
//! - [`identity`]: node keys, boot keys, node ids, domain-separated signatures.
//! - [`codec`]: bounded CBOR framing of everything on the wire and on disk.
//! - [`control`]: the typed control API (admin requests and replies).
//! - [`shares`]: splitting a disk secret, sealing shares to a boot key,
//!   checking and combining them.
//! - [`roster`]: the mesh's membership as a set of signed operations and
//!   the deterministic rule that resolves them.
//! - [`guardian`]: a guardian's release policy for the shares it holds.
//! - [`proto`]: the wire messages between nodes.
//! - [`lookup`]: finding a member by name or id prefix.
//! - [`unlock`]: the boot client's state machine, [`unlock::UnlockClient`].
//! - [`node`]: the sans-IO [`node::Node`] that keywardd and the simulator
//!   drive: every decision above those (serving peers, gossip and sync,
//!   admin messages, membership, fan-outs, timers, explicit writes).
//! - [`log`]: the tamper-evident log spool: lines, signed age-encrypted
//!   segments, journal frames and crash recovery, the segmenter, each
//!   origin's Merkle log (tlog_tiles) and checkpoints (signed_note), and
//!   verification of a spool read back.
//! - [`sig_memo`]: a memo of signature checks a simulator turns on so its
//!   thousand nodes do not redo the same curve arithmetic (off in keywardd).
//! - [`bind`]: the binding plan (guardians, T, epoch, what to drop),
//!   shared by `keyward bind` and the simulator.

pub mod bind;
pub mod codec;
pub mod control;
pub mod guardian;
pub mod identity;
pub mod log;
pub mod lookup;
pub mod node;
pub mod proto;
pub mod roster;
pub mod shares;
pub mod sig_memo;
#[cfg(test)]
mod testkit;
pub mod text;
pub mod unlock;
