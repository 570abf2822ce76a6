//! The node's decisions above the guardian and the roster, one concern
//! per module, each with its own state type. Every method takes `now`
//! (and randomness, where it needs any) and returns what happened; the
//! driver (keywardd, the simulator) logs it, writes it and moves bytes.
//!
//! - [`admin`]: signed admin messages and copied-boot-key alerts.
//! - [`decisions`]: the guardian's decision history and its journal
//!   throttle; strangers' requests counted apart.
//! - [`members`]: issuing invites and admitting their holders.
//! - [`peers`]: connections, liveness, reconnect backoff, strikes and bans.
//! - [`timers`]: the node's periodic work, by name.

pub mod admin;
pub mod decisions;
pub mod members;
pub mod peers;
pub mod timers;
