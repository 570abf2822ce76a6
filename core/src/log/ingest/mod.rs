//! Ingest: the wire formats lines arrive in, parsed and framed without IO.
//!
//! keywardd's listeners (keyward-node `logs::listen`) only move bytes: every
//! rule about where a message starts and ends, what a RELP peer is owed and
//! where a tailed file resumes is here, bounded and tested against
//! arbitrary input.
//!
//! What is kept of a message: the bytes exactly as received (one datagram,
//! one RFC 6587 frame, one RELP `syslog` payload, one file or pipe line
//! without its LF), so nothing a sender wrote is lost or reformatted.
//! [`syslog::parse`] is for display and checks only (PRI, the app name and
//! pid the sender *claims*); the trusted pid/uid/gid come from the kernel,
//! and a line's time is when keywardd received it, never the sender's
//! timestamp.
//!
//! - [`syslog`]: RFC 3164 (BSD, as `logger` and glibc `syslog()` send to
//!   `/dev/log`) and RFC 5424 messages.
//! - [`framing`]: RFC 6587 octet-counting and LF framing for TCP syslog,
//!   detected per frame.
//! - [`relp`]: a RELP server session (rsyslog's `omrelp`): `rsp 200` only
//!   for what the driver says is durable, in transaction order.
//! - [`lines`]: LF splitting of files and pipes, with the byte offset a
//!   line ends at.
//! - [`tail`]: a tailed file's saved position and what to do on rotation
//!   and truncation.
//! - [`pipe`]: the `keyward logs write` socket protocol.

pub mod framing;
pub mod lines;
pub mod pipe;
pub mod relp;
pub mod syslog;
pub mod tail;

/// Largest message or frame payload any ingest path accepts: the line
/// limit.
pub const MAX_MESSAGE: usize = crate::log::line::MAX_MSG;
