//! Logs: the sans-IO heart of keyward's tamper-evident log spool.
//!
//! A driver (keywardd) receives lines from syslog sockets, RELP, pipes and
//! file tails; everything it decides about them is here, with no file, no
//! socket, no clock: every call carries `now` (Unix ms) and returns the
//! bytes the driver must write.
//!
//! - [`line`]: one log line (time, trusted sender fields, message) and the
//!   bounded, versioned binary format lines take inside encrypted bodies.
//! - [`recipients`]: who can read a source: the auditor recipients (age
//!   X25519 or SSH) and, for non-confidential sources, the local admin.
//! - [`segment`]: a sealed segment: signed plaintext header (origin,
//!   source, sequence, time range, line count, body hash) + age-encrypted
//!   body.
//! - [`journal`]: what makes an open segment durable before it is sealed:
//!   AEAD frames under a per-segment key that only lives in memory, wrapped
//!   to the recipients; and the recovery rule after a crash.
//! - [`segmenter`]: batches the lines of one source into segments, by size
//!   and by time, and emits journal writes for group commit.
//! - [`checkpoint`]: the log's signed C2SP checkpoints.
//! - [`merkle`]: each origin's append-only Merkle log over its segments
//!   (RFC 6962 hashing, C2SP tlog-tiles layout, `tlog_tiles` crate) and its
//!   checkpoints (C2SP signed notes, `signed_note` crate).
//! - [`spool`]: all sources' segmenters, the Merkle log, checkpoints,
//!   group commit barriers, the quota and retention, and resuming after a
//!   crash: the driver performs what it returns.
//! - [`ingest`]: what arrives on the wire before it is a line: syslog
//!   messages (RFC 3164/5424), RFC 6587 TCP framing, RELP sessions, file
//!   tail positions and the `keyward logs write` pipe protocol.
//! - [`replica`]: logs part 2: which peers keep each origin's log, the
//!   messages between them, the replica store (never overwrites, refuses
//!   with evidence) and the origin's tracking of what its replicas hold.
//! - [`verify`]: reading a spool back and saying exactly what is wrong with
//!   it: a segment edited, truncated, reordered, replaced or missing.
//! - [`fetch`]: what an auditor member asks a node for to copy the logs
//!   it holds into an audit directory, piece by bounded piece.
//! - [`witness`]: cosigning other nodes' checkpoints (C2SP tlog-witness),
//!   the state that keeps a witness from cosigning a rollback across
//!   restarts, gossip comparison, and self-verifying fork/rollback
//!   evidence.
//!
//! Exception to the core's "randomness is passed in" rule: `age` draws its
//! file keys and ephemeral X25519 keys from the OS RNG inside the crate (its
//! API takes no RNG). The per-segment journal key is drawn from the RNG the
//! caller passes.

pub mod checkpoint;
pub mod fetch;
pub mod ingest;
pub mod journal;
pub mod line;
pub mod merkle;
pub mod recipients;
pub mod replica;
pub mod segment;
pub mod segmenter;
pub mod spool;
pub mod verify;
pub mod witness;

use crate::codec::CodecError;
use crate::identity::NodeId;

/// What can go wrong building or opening log structures. Verification of a
/// spool has its own, more specific, findings ([`verify::Finding`]).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("log line: {0}")]
    Line(#[from] line::LineError),
    #[error("source name `{0}` is not valid: 1 to 64 characters of a-z, 0-9, '.', '_', '-'")]
    SourceName(String),
    #[error("age recipient `{0}` is neither an age X25519 recipient (age1...) nor an SSH public key (ssh-ed25519 / ssh-rsa)")]
    Recipient(String),
    #[error("no auditor recipient configured: every segment must be readable by the auditor")]
    NoAuditor,
    #[error("a non-confidential source needs a local admin recipient")]
    NoAdmin,
    #[error("age encryption failed: {0}")]
    Encrypt(String),
    #[error("cannot decrypt this segment with the given identity: {0}")]
    Decrypt(String),
    #[error("segment signature by {origin:?} does not verify")]
    BadSignature { origin: NodeId },
    #[error("segment body hash does not match its signed header")]
    BodyHash,
    #[error("segment header is inconsistent: {0}")]
    Header(String),
    #[error("journal: {0}")]
    Journal(String),
    #[error("segmenter limits are not sane: {0}")]
    Config(String),
}
