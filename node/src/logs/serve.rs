//! Reading a piece of a log file for an auditor's fetch: the node decided
//! the auditor may have it and named the file (`Output::ServeLog`); this
//! only reads at most `fetch::CHUNK` bytes of it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use keyward_core::identity::NodeId;
use keyward_core::log::fetch::CHUNK;
use keyward_core::log::replica;

/// Bytes of `path` (in the own spool, or `origin`'s replica directory
/// under the logs directory `dir`) from `offset`, at most [`CHUNK`], and
/// the file's length.
pub fn read_piece(
    dir: &Path,
    origin: &NodeId,
    own: bool,
    path: &str,
    offset: u64,
) -> io::Result<(Vec<u8>, u64)> {
    let base = if own {
        dir.to_path_buf()
    } else {
        dir.join(replica::origin_dir(origin))
    };
    let mut f = File::open(base.join(path))?;
    let total = f.metadata()?.len();
    let mut bytes = Vec::new();
    if offset < total {
        f.seek(SeekFrom::Start(offset))?;
        f.take(CHUNK as u64).read_to_end(&mut bytes)?;
    }
    Ok((bytes, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_bounded_and_a_missing_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let o = NodeId([3; 32]);
        let rdir = d.path().join(replica::origin_dir(&o)).join("segments");
        std::fs::create_dir_all(&rdir).unwrap();
        let big = vec![7u8; CHUNK + 10];
        std::fs::write(rdir.join(format!("{:020}", 4)), &big).unwrap();
        let p = format!("segments/{:020}", 4);
        let (b, t) = read_piece(d.path(), &o, false, &p, 0).unwrap();
        assert_eq!((b.len(), t), (CHUNK, big.len() as u64));
        let (b, _) = read_piece(d.path(), &o, false, &p, CHUNK as u64).unwrap();
        assert_eq!(b.len(), 10);
        let (b, _) = read_piece(d.path(), &o, false, &p, u64::MAX).unwrap();
        assert!(b.is_empty());
        assert!(
            read_piece(d.path(), &o, true, &p, 0).is_err(),
            "not in the own spool"
        );
    }
}
