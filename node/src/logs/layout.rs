//! The spool directory on disk (docs/design.md, Logs, "Spool layout"):
//!
//! ```text
//! <spool>/checkpoint                 latest signed note (tmp + fsync + rename + dir fsync)
//! <spool>/tile/<L>/<N>[.p/<W>]       C2SP hash tiles (written once)
//! <spool>/segments/<index, 20 digits> one encoded segment per Merkle leaf
//! <spool>/journal/<source>.<seq>     an open segment's encrypted frames
//! ```
//!
//! Files 0600, directories 0700. Shared by keywardd's spool task (which
//! writes) and `keyward logs` (which only reads).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use keyward_core::log::segment::MAX_BODY;

pub const CHECKPOINT: &str = "checkpoint";
pub const SEGMENTS: &str = "segments";
pub const JOURNAL: &str = "journal";
pub const TILES: &str = "tile";

/// Largest file the spool reads back (a segment or a journal).
const MAX_FILE: u64 = MAX_BODY as u64 + 64 * 1024;

pub fn segment_path(spool: &Path, index: u64) -> PathBuf {
    spool.join(SEGMENTS).join(format!("{index:020}"))
}

pub fn journal_path(spool: &Path, source: &str, seq: u64) -> PathBuf {
    spool.join(JOURNAL).join(format!("{source}.{seq}"))
}

/// Creates a directory (and its parents) 0700; returns the directories
/// it created, whose parents then need an fsync.
pub fn make_dir(dir: &Path, created: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(p) = dir.parent() {
        make_dir(p, created)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            created.insert(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes a whole file atomically: `<path>.tmp`, fsync, rename. The
/// caller fsyncs the directory (collected in `dirs`) at its barrier.
pub fn write_atomic(path: &Path, bytes: &[u8], dirs: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    make_dir(dir, dirs)?;
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    dirs.insert(dir.to_path_buf());
    Ok(())
}

/// fsyncs a directory (its entries: created, renamed, removed files).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a file of at most [`MAX_FILE`] bytes.
pub fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut b = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut b)?;
    if b.len() as u64 > MAX_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is over {MAX_FILE} bytes: not a spool file",
                path.display()
            ),
        ));
    }
    Ok(b)
}

/// The segment files, by leaf index (names that are not 20 digits are
/// ignored: temporary files of an interrupted write).
pub fn segment_indexes(spool: &Path) -> io::Result<Vec<u64>> {
    let mut v = Vec::new();
    match fs::read_dir(spool.join(SEGMENTS)) {
        Ok(rd) => {
            for e in rd {
                let name = e?.file_name();
                let name = name.to_string_lossy();
                if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
                    if let Ok(i) = name.parse() {
                        v.push(i);
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    v.sort_unstable();
    Ok(v)
}

/// Every tile file, by its C2SP path (`tile/...`), and their total size.
pub fn read_tiles(spool: &Path) -> io::Result<(BTreeMap<String, Vec<u8>>, u64)> {
    let mut out = BTreeMap::new();
    let mut total = 0;
    let root = spool.join(TILES);
    let mut stack = vec![root];
    // Bounded: a tile tree of height 8 has at most 8 levels of x000/ groups.
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let t = e.file_type()?;
            let p = e.path();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() && p.extension().is_none_or(|x| x != "tmp") {
                let rel = p
                    .strip_prefix(spool)
                    .map_err(io::Error::other)?
                    .to_string_lossy()
                    .into_owned();
                let b = read_bounded(&p)?;
                total += b.len() as u64;
                out.insert(rel, b);
            }
        }
    }
    Ok((out, total))
}

/// The journal files: (source, seq, path). `.damaged` ones are skipped.
pub fn journals(spool: &Path) -> io::Result<Vec<(String, u64, PathBuf)>> {
    let mut v = Vec::new();
    match fs::read_dir(spool.join(JOURNAL)) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some((source, seq)) = name.rsplit_once('.') {
                    if let Ok(seq) = seq.parse::<u64>() {
                        v.push((source.to_string(), seq, e.path()));
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(v)
}

/// The checkpoint note, if the spool has one.
pub fn read_checkpoint(spool: &Path) -> io::Result<Option<Vec<u8>>> {
    match read_bounded(&spool.join(CHECKPOINT)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
