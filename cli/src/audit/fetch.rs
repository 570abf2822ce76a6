//! `keyward audit fetch --out DIR`: copy every origin's log the mesh
//! holds into an audit directory, through this machine's keywardd (an
//! auditor member: only auditors are served).
//!
//! Every active guardian is asked what it holds (its own log and the
//! replicas it keeps); each origin is then taken from the holder with
//! the largest log (the origin itself first among equals), each piece
//! from the next holder when one fails, so a destroyed origin's log comes
//! from its replicas. Nothing fetched is trusted: `keyward audit verify`
//! checks it all. Files are written whole (tmp, fsync, rename), so an
//! interrupted fetch resumes: segments and full tiles already in DIR are
//! not fetched again (they never change; verify catches a bad one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use base64::Engine;
use indicatif::{ProgressBar, ProgressStyle};
use keyward_node::control::{Client, LogPiece};
use keyward_node::identity::NodeId;
use keyward_node::log::checkpoint;
use keyward_node::log::fetch::{tile_path, tiles, FetchItem, TILE_WIDTH};
use keyward_node::log::segment::{BodyKind, Segment};
use keyward_node::log::witness::cosign;
use keyward_node::logs::layout;
use keyward_node::roster::Role;

use super::{dir, AuditError};

/// Most segment fetches in flight (each one control request through the
/// local keywardd to a holder).
pub const DEFAULT_JOBS: usize = 4;

/// Most bytes of one file assembled from pieces (a segment's bound).
const MAX_FILE: u64 = <Segment as keyward_node::codec::Wire>::MAX as u64;

/// What to fetch.
pub struct Fetch<'a> {
    pub out: &'a Path,
    /// Ask only these members (ids or names); default every guardian.
    pub from: &'a [String],
    /// Only this origin (its id or the id's last characters).
    pub origin: Option<&'a str>,
    pub jobs: usize,
}

/// One origin's result, for the summary.
struct Fetched {
    origin: NodeId,
    holder: String,
    size: u64,
    got: u64,
    kept: u64,
    missing: Vec<u64>,
    cosigned: usize,
}

/// Runs `audit fetch`. Fails when an origin or a segment could be had
/// from no holder (the rest is still written).
pub fn run(client: &Client, f: &Fetch) -> Result<(), AuditError> {
    let status = client.status().map_err(AuditError::Daemon)?;
    if status.node.revoked || !status.node.active {
        return Err(AuditError::NotAuditor(format!(
            "this node ({}) is not an active member",
            status.node.id
        )));
    }
    let me = status.member(&status.node.id);
    if me.is_some_and(|m| m.role != Role::Auditor) {
        return Err(AuditError::NotAuditor(format!(
            "this node ({}) is a guardian",
            status.node.id
        )));
    }
    let holders = pick_holders(&status, f.from)?;
    let holding = ask_holdings(client, &holders, f.jobs);
    if holding.is_empty() {
        return Err(AuditError::NothingHeld(holders.len()));
    }
    std::fs::create_dir_all(f.out).map_err(AuditError::io(f.out))?;
    let mut results = Vec::new();
    let mut failed = 0;
    for (origin, mut by) in holding {
        if let Some(w) = f.origin {
            if w.is_empty() || !origin.to_string().ends_with(w) {
                continue;
            }
        }
        // largest first; the origin itself first among equals
        by.sort_by_key(|(h, size)| (std::cmp::Reverse(*size), *h != origin.to_string()));
        match fetch_origin(client, f, &origin, &by) {
            Ok(r) => {
                failed += r.missing.len();
                results.push(r);
            }
            Err(e) => {
                eprintln!("keyward: {origin}: {e}");
                failed += 1;
            }
        }
    }
    if let (Some(w), true, 0) = (f.origin, results.is_empty(), failed) {
        return Err(AuditError::NoSuchOrigin {
            dir: f.out.to_path_buf(),
            wanted: w.to_string(),
        });
    }
    print_summary(&results, f.out);
    if failed > 0 {
        return Err(AuditError::Incomplete(failed));
    }
    Ok(())
}

/// The members to ask: those named, or every active guardian but this
/// node.
fn pick_holders(
    status: &keyward_node::control::Status,
    from: &[String],
) -> Result<Vec<String>, AuditError> {
    if from.is_empty() {
        return Ok(status
            .members
            .iter()
            .filter(|m| !m.me && m.role == Role::Guardian)
            .map(|m| m.id.clone())
            .collect());
    }
    from.iter()
        .map(|w| {
            status
                .member(w)
                .or_else(|| status.member_named(w))
                .or_else(|| {
                    let mut m = status.members.iter().filter(|m| m.id.ends_with(w.as_str()));
                    m.next().filter(|_| m.next().is_none())
                })
                .map(|m| m.id.clone())
                .ok_or_else(|| AuditError::NoSuchMember(w.clone()))
        })
        .collect()
}

/// What each holder holds, by origin: (holder, size). Holders that fail
/// are named on stderr.
fn ask_holdings(
    client: &Client,
    holders: &[String],
    jobs: usize,
) -> BTreeMap<NodeId, Vec<(String, u64)>> {
    let out: Mutex<BTreeMap<NodeId, Vec<(String, u64)>>> = Mutex::default();
    parallel(holders.len(), jobs, |i| {
        let h = &holders[i];
        match client.log_holding(h) {
            Ok(v) => {
                let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                for l in v {
                    match l.origin.parse::<NodeId>() {
                        Ok(id) if l.size > 0 => o.entry(id).or_default().push((h.clone(), l.size)),
                        Ok(_) => {}
                        Err(_) => eprintln!("keyward: {h} names an origin that is no node id"),
                    }
                }
            }
            Err(e) => eprintln!("keyward: asking {h} what it holds: {e}"),
        }
    });
    out.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Runs `work(0..n)` on at most `jobs` threads.
fn parallel(n: usize, jobs: usize, work: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 32).min(n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                work(i);
            });
        }
    });
}

/// A whole file from the first holder that has it, piece by piece.
fn file(
    client: &Client,
    holders: &[(String, u64)],
    origin: &NodeId,
    item: impl Fn(u64) -> FetchItem,
) -> Result<Vec<u8>, String> {
    let o = origin.to_string();
    let mut why = Vec::new();
    'holder: for (h, _) in holders {
        let mut buf = Vec::new();
        loop {
            match client.log_fetch(h, &o, item(buf.len() as u64)) {
                Ok(LogPiece::File { data, total }) => {
                    let Ok(b) = base64::engine::general_purpose::STANDARD.decode(data) else {
                        why.push(format!("{h}: not base64"));
                        continue 'holder;
                    };
                    if total > MAX_FILE || b.is_empty() && (buf.len() as u64) < total {
                        why.push(format!("{h}: a file of {total} bytes"));
                        continue 'holder;
                    }
                    buf.extend_from_slice(&b);
                    if buf.len() as u64 >= total {
                        buf.truncate(total as usize);
                        return Ok(buf);
                    }
                }
                Ok(LogPiece::Notes { .. }) => {
                    why.push(format!("{h}: notes instead of a file"));
                    continue 'holder;
                }
                Err(e) => {
                    why.push(e.to_string());
                    continue 'holder;
                }
            }
        }
    }
    Err(why.join("; "))
}

/// Cosigned checkpoints of other sizes than the fetched one, under each
/// origin's directory (`keyward audit verify` checks each against the log).
pub const COSIGNED: &str = "cosigned";

/// The file name of a cosigned note: its size and the start of its hash,
/// so the same note fetched twice is one file.
fn cosigned_name(note: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(note);
    let size = String::from_utf8_lossy(note)
        .lines()
        .nth(1)
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(0);
    format!("{size}-{}", hex::encode(&h[..8]))
}

/// An origin's checkpoint as fetched.
struct Checkpoint {
    /// With every cosignature of the same checkpoint merged in.
    note: Vec<u8>,
    size: u64,
    holder: String,
    /// Cosignature lines merged in.
    cosigned: usize,
    /// Cosigned notes of other sizes (each signed by the origin).
    others: Vec<Vec<u8>>,
}

/// The origin's checkpoint: the first holder's that the origin signed,
/// with every cosignature the holders know of it merged in; cosigned
/// notes of other sizes are kept too.
fn checkpoint_of(
    client: &Client,
    origin: &NodeId,
    holders: &[(String, u64)],
) -> Result<Checkpoint, String> {
    let mut why = Vec::new();
    for (i, h) in holders.iter().enumerate() {
        let note = match file(client, std::slice::from_ref(h), origin, |_| {
            FetchItem::Checkpoint
        }) {
            Ok(n) => n,
            Err(e) => {
                why.push(e);
                continue;
            }
        };
        let size = match checkpoint::open(&note, origin) {
            Ok((size, _)) => size,
            Err(e) => {
                why.push(format!("{}: its checkpoint is not {origin}'s: {e}", h.0));
                continue;
            }
        };
        let mut merged = note;
        let mut cosigned = 0;
        let mut others = Vec::new();
        for (other, _) in &holders[i..] {
            let Ok(LogPiece::Notes { notes }) =
                client.log_fetch(other, &origin.to_string(), FetchItem::Cosigned)
            else {
                continue;
            };
            for n in notes {
                let Ok(n) = base64::engine::general_purpose::STANDARD.decode(n) else {
                    continue;
                };
                match cosign::merge(&merged, &n) {
                    Some(m) => {
                        if m.len() > merged.len() {
                            cosigned += 1;
                        }
                        merged = m;
                    }
                    None if checkpoint::open(&n, origin).is_ok() && !others.contains(&n) => {
                        others.push(n)
                    }
                    None => {}
                }
            }
        }
        return Ok(Checkpoint {
            note: merged,
            size,
            holder: h.0.clone(),
            cosigned,
            others,
        });
    }
    Err(why.join("; "))
}

fn fetch_origin(
    client: &Client,
    f: &Fetch,
    origin: &NodeId,
    holders: &[(String, u64)],
) -> Result<Fetched, AuditError> {
    let dest = dir::origin_dir(f.out, origin);
    let Checkpoint {
        note,
        size,
        holder,
        cosigned,
        others,
    } = checkpoint_of(client, origin, holders).map_err(AuditError::NoCheckpoint)?;
    let mut dirs = BTreeSet::new();
    let cp = dest.join(layout::CHECKPOINT);
    keep_larger_old(&cp, origin, size);
    let io = |p: &Path| AuditError::io(p.to_path_buf());
    layout::write_atomic(&cp, &note, &mut dirs).map_err(io(&cp))?;
    for (level, index, width) in tiles(size) {
        let p = dest.join(tile_path(level, index, width));
        if width == TILE_WIDTH && p.exists() {
            continue;
        }
        let item = FetchItem::Tile {
            level,
            index,
            width,
        };
        match file(client, holders, origin, |_| item) {
            Ok(b) => layout::write_atomic(&p, &b, &mut dirs).map_err(io(&p))?,
            Err(e) => eprintln!("keyward: {origin}: tile {level}/{index} (width {width}): {e}"),
        }
    }
    for n in &others {
        let p = dest.join(COSIGNED).join(cosigned_name(n));
        layout::write_atomic(&p, n, &mut dirs).map_err(io(&p))?;
    }
    let todo: Vec<u64> = (0..size)
        .filter(|i| !layout::segment_path(&dest, *i).exists())
        .collect();
    let kept = size - todo.len() as u64;
    let bar = ProgressBar::new(todo.len() as u64).with_prefix(short_id(origin));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} segments {binary_bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let missing = Mutex::new(Vec::new());
    let dirs = Mutex::new(dirs);
    let bytes = AtomicUsize::new(0);
    parallel(todo.len(), f.jobs, |k| {
        let i = todo[k];
        let r = file(client, holders, origin, |offset| FetchItem::Segment {
            index: i,
            offset,
        })
        .and_then(|b| {
            let mut d = dirs.lock().unwrap_or_else(|p| p.into_inner());
            write_segment(&dest, i, &b, &mut d).map_err(|e| e.to_string())?;
            Ok(b.len())
        });
        match r {
            Ok(n) => {
                bytes.fetch_add(n, Ordering::Relaxed);
                bar.inc(1);
            }
            Err(e) => {
                bar.suspend(|| eprintln!("keyward: {origin}: segment {i}: {e}"));
                missing.lock().unwrap_or_else(|p| p.into_inner()).push(i);
            }
        }
    });
    bar.finish_and_clear();
    for d in dirs.into_inner().unwrap_or_else(|p| p.into_inner()) {
        layout::sync_dir(&d).map_err(AuditError::io(d))?;
    }
    let mut missing = missing.into_inner().unwrap_or_else(|p| p.into_inner());
    missing.sort_unstable();
    Ok(Fetched {
        origin: *origin,
        holder,
        size,
        got: todo.len() as u64 - missing.len() as u64,
        kept,
        missing,
        cosigned,
    })
}

/// A checkpoint already in DIR for a larger log than the holders now
/// offer is the auditor's evidence of a rollback: kept aside, never
/// overwritten.
fn keep_larger_old(cp: &Path, origin: &NodeId, size: u64) {
    let Ok(old) = layout::read_bounded(cp) else {
        return;
    };
    if let Ok((old_size, _)) = checkpoint::open(&old, origin) {
        if old_size > size {
            let aside = cp.with_file_name(format!("checkpoint.{old_size}"));
            eprintln!(
                "keyward: {origin}: the holders now offer {size} leaves, but {} was for {old_size}: a rollback? the old one is kept as {}",
                cp.display(),
                aside.display()
            );
            let _ = std::fs::rename(cp, aside);
        }
    }
}

/// The segment and, for `age -d` by hand, its body beside it.
fn write_segment(
    dest: &Path,
    i: u64,
    b: &[u8],
    dirs: &mut BTreeSet<PathBuf>,
) -> std::io::Result<()> {
    if let Ok(seg) = Segment::decode(b) {
        let ext = match seg.header.body_kind {
            BodyKind::Age => "age",
            BodyKind::Frames => "frames",
        };
        let body = dest.join(layout::SEGMENTS).join(format!("{i:020}.{ext}"));
        layout::write_atomic(&body, &seg.body, dirs)?;
    }
    // the segment last: its presence says the fetch of index i is done
    layout::write_atomic(&layout::segment_path(dest, i), b, dirs)
}

fn short_id(id: &NodeId) -> String {
    let s = id.to_string();
    s[s.len().saturating_sub(8)..].to_string()
}

fn print_summary(results: &[Fetched], out: &Path) {
    println!(
        "{:<52} {:>8} {:>8} {:>8} {:>8} {:>9}  FROM",
        "ORIGIN", "SIZE", "FETCHED", "HAD", "MISSING", "COSIGNED"
    );
    for r in results {
        println!(
            "{:<52} {:>8} {:>8} {:>8} {:>8} {:>9}  {}",
            r.origin.to_string(),
            r.size,
            r.got,
            r.kept,
            r.missing.len(),
            r.cosigned,
            r.holder
        );
    }
    println!(
        "next: keyward audit verify {} && keyward audit decrypt {} -i auditor.key",
        out.display(),
        out.display()
    );
}
