//! What listeners hand the spool.

use keyward_core::log::line::Line;
use tokio::sync::{mpsc, oneshot};

/// Why lines were not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the log spool is full (quota reached); lines are refused until space is freed")]
    Full,
    #[error("unknown log source `{0}`")]
    UnknownSource(String),
    /// A line the spool cannot take (over the line size limit).
    #[error("lines refused: {0}")]
    Invalid(String),
    #[error("log spool cannot write: {0}")]
    Io(String),
    #[error("keywardd's log spool is shutting down")]
    ShuttingDown,
}

/// Lines of one source, as one listener read them.
pub struct Batch {
    /// The source's name, as configured.
    pub source: String,
    pub lines: Vec<Line>,
    /// Answered once every line of the batch is durable (or refused). None
    /// for sources without acknowledgement (datagrams).
    pub ack: Option<oneshot::Sender<Result<(), Refused>>>,
}

/// The spool's inbox; bounded so a flood backs up into the listeners (and
/// the kernel's socket buffers) instead of into memory.
pub type Inbox = mpsc::Sender<Batch>;

/// Capacity of the inbox, in batches.
pub const INBOX_BATCHES: usize = 1024;
