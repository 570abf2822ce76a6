//! The auditor's fetch (`keyward audit fetch`): what an auditor member
//! asks a node for to copy the logs it holds (its own and its replicas)
//! into an audit directory, one bounded piece at a time.
//!
//! A node serves only an active member whose role is auditor (the node
//! decides, `node::logs`); the files are the origin's own layout, so the
//! auditor writes what it gets where the holder keeps it and `keyward
//! audit verify` checks it all: nothing a holder sends is trusted.
//!
//! Why pieces and not "everything of origin X": a 1 GB log must not be
//! one message, a fetch interrupted half way must resume where it
//! stopped, and the auditor must be able to take each piece from another
//! holder when one is gone (the origin destroyed, a replica down).

use serde::{Deserialize, Serialize};

use super::merkle::{self, TILE_HEIGHT};
use crate::identity::NodeId;

/// Most bytes of a file in one answer: a 16 MiB segment comes in four
/// pieces; small enough for a control-socket line (base64) and to keep
/// one answer from holding up a daemon.
pub const CHUNK: usize = 4 << 20;

/// Most origins one holder lists (its own log and every replica it may
/// keep, the witness's bound).
pub const MAX_HOLDING: usize = super::witness::MAX_ORIGINS + 1;

/// Most cosigned notes one holder returns for an origin.
pub const MAX_NOTES: usize = 32;

/// Hashes in a full tile.
pub const TILE_WIDTH: u16 = 1 << TILE_HEIGHT;

/// One piece of an origin's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchItem {
    /// The holder's `checkpoint` of the origin: the latest origin-signed
    /// note its files match.
    Checkpoint,
    /// Notes of the origin carrying witness cosignatures the holder knows
    /// (an origin's own: each witness's latest; a replica's: its own
    /// cosignature), for the auditor to merge into the checkpoint.
    Cosigned,
    /// The hash tile `index` of `level` with `width` hashes (256: full).
    /// Level 0 alone authenticates the log (`merkle::read_log`); proofs
    /// (a cosigned earlier checkpoint against the log) read the others.
    Tile { level: u8, index: u64, width: u16 },
    /// The encoded segment at leaf `index`, from byte `offset` on.
    Segment { index: u64, offset: u64 },
}

/// Why a fetch request is not one a holder answers.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("tile width {0} is not 1 to 256")]
    Width(u16),
    #[error("tile level {0} is beyond {MAX_LEVEL}")]
    Level(u8),
}

/// Highest tile level of a tree of at most 2^64 leaves (8 bits a level).
pub const MAX_LEVEL: u8 = 7;

impl FetchItem {
    /// Checks the fields a holder uses to name a file.
    pub fn check(&self) -> Result<(), FetchError> {
        match self {
            FetchItem::Tile { width, .. } if *width == 0 || *width > TILE_WIDTH => {
                Err(FetchError::Width(*width))
            }
            FetchItem::Tile { level, .. } if *level > MAX_LEVEL => Err(FetchError::Level(*level)),
            _ => Ok(()),
        }
    }

    /// The file's path in the origin's layout (relative to the origin's
    /// directory: the spool, or `replicas/<origin>`), or None for what the
    /// node answers from memory ([`FetchItem::Cosigned`]). Call
    /// [`FetchItem::check`] first.
    pub fn path(&self) -> Option<String> {
        match *self {
            FetchItem::Checkpoint => Some("checkpoint".into()),
            FetchItem::Cosigned => None,
            FetchItem::Tile {
                level,
                index,
                width,
            } => Some(tile_path(level, index, width)),
            FetchItem::Segment { index, .. } => Some(format!("segments/{index:020}")),
        }
    }

    /// Where in the file the answer starts.
    pub fn offset(&self) -> u64 {
        match *self {
            FetchItem::Segment { offset, .. } => offset,
            _ => 0,
        }
    }
}

/// The C2SP path of tile `index` of `level` with `width` hashes.
pub fn tile_path(level: u8, index: u64, width: u16) -> String {
    merkle::c2sp_path(&tlog_tiles::Tile::new(
        TILE_HEIGHT,
        level,
        index,
        width.into(),
        false,
    ))
}

/// The tiles of a tree of `size` leaves: (level, index, width). Level
/// `L` holds the `size >> 8L` hashes of its complete 256^L-leaf subtrees,
/// 256 to a tile, the last one partial unless they fill it.
pub fn tiles(size: u64) -> impl Iterator<Item = (u8, u64, u16)> {
    let full = u64::from(TILE_WIDTH);
    (0..=MAX_LEVEL).flat_map(move |level| {
        let n = size.checked_shr(u32::from(level) * 8).unwrap_or(0);
        (0..n.div_ceil(full)).map(move |i| (level, i, (n - i * full).min(full) as u16))
    })
}

/// One origin whose log a node holds: leaves `0..size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub origin: NodeId,
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tiles_cover_the_tree() {
        assert_eq!(tiles(0).count(), 0);
        assert_eq!(tiles(1).collect::<Vec<_>>(), vec![(0, 0, 1)]);
        assert_eq!(tiles(256).collect::<Vec<_>>(), vec![(0, 0, 256), (1, 0, 1)]);
        assert_eq!(
            tiles(600).collect::<Vec<_>>(),
            vec![(0, 0, 256), (0, 1, 256), (0, 2, 88), (1, 0, 2)]
        );
        assert_eq!(tile_path(0, 0, 256), "tile/0/000");
        assert_eq!(tile_path(0, 2, 88), "tile/0/002.p/88");
        assert_eq!(tile_path(0, 1234, 256), "tile/0/x001/234");
        assert_eq!(tile_path(1, 0, 2), "tile/1/000.p/2");
    }

    #[test]
    fn tiles_are_the_ones_the_log_writes() {
        let key = crate::identity::NodeKey::generate();
        let mut log = merkle::MerkleLog::new(key.id());
        let mut written = std::collections::BTreeSet::new();
        for size in 1..=700u64 {
            let (_, ws) = log.append(&size.to_be_bytes()).unwrap();
            written.extend(ws.into_iter().map(|w| w.path));
            for (l, i, w) in tiles(size) {
                let p = tile_path(l, i, w);
                assert!(written.contains(&p), "size {size}: {p} was never written");
            }
        }
    }

    #[test]
    fn widths_and_levels_are_checked() {
        let t = |level, width| FetchItem::Tile {
            level,
            index: 0,
            width,
        };
        assert_eq!(t(0, 0).check(), Err(FetchError::Width(0)));
        assert_eq!(t(0, 257).check(), Err(FetchError::Width(257)));
        assert_eq!(t(8, 1).check(), Err(FetchError::Level(8)));
        assert!(t(7, 256).check().is_ok());
    }

    proptest! {
        #[test]
        fn items_round_trip_and_name_files_under_the_origin(
            index: u64, offset: u64, width in 1u16..=256, level in 0u8..=7, which in 0u8..4,
        ) {
            let item = match which {
                0 => FetchItem::Checkpoint,
                1 => FetchItem::Cosigned,
                2 => FetchItem::Tile { level, index, width },
                _ => FetchItem::Segment { index, offset },
            };
            let b = crate::codec::encode(&crate::proto::Request::LogFetch { origin: NodeId([1; 32]), item })
                .unwrap();
            let back: crate::proto::Request = crate::codec::decode(&b).unwrap();
            let same = matches!(back, crate::proto::Request::LogFetch { item: i, .. } if i == item);
            prop_assert!(same, "decoded {:?}", back);
            prop_assert!(item.check().is_ok());
            if let Some(p) = item.path() {
                prop_assert!(!p.starts_with('/') && !p.contains(".."));
            }
        }

        #[test]
        fn tiles_add_up(size in 0u64..100_000_000) {
            let total: u64 = tiles(size)
                .filter(|(l, _, _)| *l == 0)
                .map(|(_, _, w)| u64::from(w))
                .sum();
            prop_assert_eq!(total, size);
        }
    }
}
