//! keywardd's log driver: listeners that take lines in, and the spool task
//! that drives `keyward_core::log` (segmenting, journal, Merkle log,
//! checkpoints) and does its writes and fsyncs.
//!
//! The listeners (one per `[[logs.source]]`) decide nothing about lines:
//! they parse, attach the trusted sender fields the kernel gives them, and
//! send [`Batch`]es into the spool's inbox. The spool answers each batch's
//! `ack` once its lines are durable (after the group commit's fsync), or
//! with the reason they were refused.

pub mod admin_key;
pub mod config;
#[cfg(feature = "daemon")]
mod inbox;
pub mod layout;
#[cfg(feature = "daemon")]
pub mod listen;
pub mod read;
#[cfg(feature = "daemon")]
pub mod replicas;
#[cfg(feature = "daemon")]
pub mod serve;
#[cfg(feature = "daemon")]
pub mod spool;
#[cfg(feature = "daemon")]
pub use inbox::{Batch, Inbox, Refused, INBOX_BATCHES};
#[cfg(feature = "daemon")]
pub use spool::{start, SpoolHandle};
