//! Answering the node's log reads ([`LogRead`]) over the files a driver
//! holds: keywardd's spool and replica directories, the simulator's
//! in-memory log and disk. The driver only fetches bytes (a segment by
//! index, the tiles); which of them answer and how is here, once.

use crate::log::merkle::{self, TileStore};
use crate::log::witness::PrefixProof;

use super::super::io::{LogData, LogRead};

/// Answers a [`LogRead::Segments`]: the segments from `from` on, in
/// order, as many as fit `max_bytes` (at least the first, whatever its
/// size). `segment(i)` reads the one at leaf index `i`.
pub fn read_segments(
    from: u64,
    to: u64,
    max_bytes: usize,
    mut segment: impl FnMut(u64) -> Result<Vec<u8>, String>,
) -> Result<LogData, String> {
    let mut out = Vec::new();
    let mut used = 0usize;
    for i in from..to {
        let b = segment(i)?;
        if !out.is_empty() && used.saturating_add(b.len()) > max_bytes {
            break;
        }
        used = used.saturating_add(b.len());
        out.push(b);
    }
    Ok(LogData::Segments(out))
}

/// Answers a [`LogRead::Proof`] (over the own log's tiles) or a
/// [`LogRead::Prefix`] (over the tiles of the replica it names).
pub fn prove(read: &LogRead, tiles: &(impl TileStore + ?Sized)) -> Result<LogData, String> {
    match read {
        LogRead::Proof { old, size, root } => merkle::prove_consistency(*old, *size, *root, tiles)
            .map(LogData::Proof)
            .map_err(|e| e.to_string()),
        LogRead::Prefix {
            from, size, root, ..
        } => merkle::prove_prefix(*from, *size, *root, tiles)
            .map(|(prefix_root, proof)| LogData::Prefix(PrefixProof { prefix_root, proof }))
            .map_err(|e| e.to_string()),
        LogRead::Segments { .. } => Err("segments are read, not proven".into()),
    }
}
