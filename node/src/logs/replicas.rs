//! keywardd's files of logs part 2, under the logs directory (the spool
//! directory, default `<state_dir>/logs`):
//!
//! - `replicas/<origin>/`: other origins' logs in their own layout
//!   (`checkpoint`, `tile/...`, `segments/<index>`), written as
//!   `log::replica::Write`s say, with their barriers;
//! - `witness/index` and `witness/<origin>`: the witness's state, each
//!   file replaced durably (tmp, fsync, rename, directory fsync);
//! - `evidence/<origin>/<ms>-<what>`: evidence against an origin;
//! - `cosigned/<witness>`: this node's latest checkpoint as each witness
//!   cosigned it;
//! - `replicas-damaged/<origin>-<ms>/`: an origin's replica that did not
//!   verify when the node started, set aside whole as evidence.
//!
//! Loading refuses what does not verify (the store and the witness check
//! every file), and reading this node's own log (segments for a push, a
//! consistency proof for a witness) is bounded by the spool's limits.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyward_core::identity::{NodeId, NodeKey};
use keyward_core::log::replica::store::ReplicaStore;
use keyward_core::log::replica::usage::Limits;
use keyward_core::log::replica::Write as ReplicaWrite;
use keyward_core::log::witness::{Witness, WitnessFile, WitnessWrite};
use keyward_core::node::logs::reads;
use keyward_core::node::{LogData, LogRead};

use super::config::LogsConfig;
use super::layout;

pub const REPLICAS: &str = "replicas";
pub const WITNESS: &str = "witness";
pub const EVIDENCE: &str = "evidence";
pub const COSIGNED: &str = "cosigned";
/// Where an origin's replica that did not verify at start is set aside.
pub const DAMAGED: &str = "replicas-damaged";

/// Most other origins read at start (the witness's own bound).
const MAX_ORIGINS: usize = keyward_core::log::witness::MAX_ORIGINS;

/// What the node keeps of other origins' logs, as loaded.
pub struct Loaded {
    pub store: Option<ReplicaStore>,
    pub witness: Option<Witness>,
    /// Why a part is off, for `keyward status` (also logged as errors).
    pub problems: Vec<String>,
}

/// Loads the replicas and the witness's state from `dir`. An origin's
/// replica that does not verify is set aside (evidence) and held afresh;
/// a disk that fails to read turns the replicas off, and a witness that
/// forgot what it cosigned stays off: it must not run. Each reason is
/// logged as an error and returned for `keyward status`.
pub fn load(cfg: &LogsConfig, key: &NodeKey, dir: &Path) -> Loaded {
    if cfg.replica_quota_bytes == 0 {
        return Loaded {
            store: None,
            witness: None,
            problems: Vec::new(),
        };
    }
    let mut problems = Vec::new();
    // before any damaged replica is set aside: a node that held replicas
    // must also have a witness state
    let had_replicas = origins_in(&dir.join(REPLICAS))
        .map(|o| !o.is_empty())
        .unwrap_or(false);
    let store = match load_store(cfg, dir, &mut problems) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("log replicas are OFF: {e}");
            problems.push(format!(
                "this node keeps no log replicas until it restarts: {e}"
            ));
            None
        }
    };
    let witness = match load_witness(key, dir, had_replicas) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!("the log witness is OFF: {e}");
            problems.push(format!(
                "this node witnesses no logs until it restarts: {e}"
            ));
            None
        }
    };
    Loaded {
        store,
        witness,
        problems,
    }
}

fn origins_in(dir: &Path) -> std::io::Result<Vec<(NodeId, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let Some(id) = e
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<NodeId>().ok())
        else {
            continue;
        };
        out.push((id, e.path()));
        if out.len() > MAX_ORIGINS {
            return Err(std::io::Error::other(format!(
                "{} holds more than {MAX_ORIGINS} origins",
                dir.display()
            )));
        }
    }
    Ok(out)
}

fn load_store(
    cfg: &LogsConfig,
    dir: &Path,
    problems: &mut Vec<String>,
) -> anyhow::Result<ReplicaStore> {
    let limits = Limits {
        quota_bytes: cfg.replica_quota_bytes,
        warn_percent: cfg.warn_percent,
        retention_ms: u64::from(cfg.replica_retention_days) * 86_400_000,
    };
    let mut store = ReplicaStore::new(limits)?;
    for (origin, odir) in origins_in(&dir.join(REPLICAS))? {
        let loaded = match load_origin(&mut store, origin, &odir) {
            Ok(l) => l,
            Err(OriginLoad::Damaged(why)) => {
                // One origin's damaged copy must not cost every other
                // origin its replica: set it aside as evidence (never
                // delete or overwrite it) and hold that origin afresh; the
                // origin pushes its log again from what this node says it
                // holds (nothing), and the witness state, kept apart, still
                // refuses any rollback.
                let aside = quarantine(dir, &origin, &odir, crate::clock::now())?;
                let text = format!(
                    "{why}; moved it to {} as evidence, and this node holds {origin}'s log afresh (the origin pushes it again)",
                    aside.display()
                );
                tracing::error!("{text}");
                problems.push(text);
                continue;
            }
            Err(OriginLoad::Io(e)) => return Err(e),
        };
        apply_replica(dir, &loaded.writes).map_err(anyhow::Error::msg)?;
        for n in loaded.notices {
            tracing::info!("replica of {origin}: {n:?}");
        }
    }
    Ok(store)
}

/// Why one origin's replica did not load.
enum OriginLoad {
    /// Its files do not verify: they are set aside, the rest go on.
    Damaged(String),
    /// The disk failed to read: nothing is moved (a transient error must
    /// not discard a good copy), the store stays off.
    Io(anyhow::Error),
}

fn load_origin(
    store: &mut ReplicaStore,
    origin: NodeId,
    odir: &Path,
) -> Result<keyward_core::log::replica::store::Loaded, OriginLoad> {
    let io = |e: std::io::Error| OriginLoad::Io(anyhow::anyhow!("{}: {e}", odir.display()));
    let cp = layout::read_checkpoint(odir).map_err(io)?;
    let (tiles, tiles_bytes) = layout::read_tiles(odir).map_err(io)?;
    let mut segs = Vec::new();
    for i in layout::segment_indexes(odir).map_err(io)? {
        segs.push((
            i,
            layout::read_bounded(&layout::segment_path(odir, i)).map_err(io)?,
        ));
    }
    store
        .load(origin, cp.as_deref(), &tiles, tiles_bytes, segs)
        .map_err(|e| OriginLoad::Damaged(e.to_string()))
}

/// Moves `replicas/<origin>` to `replicas-damaged/<origin>-<ms>`
/// durably, and returns where it went.
fn quarantine(dir: &Path, origin: &NodeId, odir: &Path, now_ms: u64) -> anyhow::Result<PathBuf> {
    let damaged = dir.join(DAMAGED);
    let mut dirs = BTreeSet::new();
    layout::make_dir(&damaged, &mut dirs)?;
    let aside = damaged.join(format!("{origin}-{now_ms}"));
    anyhow::ensure!(
        !aside.exists(),
        "{} exists already: move it away and restart",
        aside.display()
    );
    fs::rename(odir, &aside).map_err(|e| {
        anyhow::anyhow!(
            "moving {} aside to {}: {e}",
            odir.display(),
            aside.display()
        )
    })?;
    dirs.insert(damaged);
    dirs.insert(dir.join(REPLICAS));
    sync_dirs(&mut dirs).map_err(anyhow::Error::msg)?;
    Ok(aside)
}

fn load_witness(key: &NodeKey, dir: &Path, had_replicas: bool) -> anyhow::Result<Witness> {
    let key = Arc::new(NodeKey::from_secret(&key.secret()));
    let wdir = dir.join(WITNESS);
    if !wdir.is_dir() {
        anyhow::ensure!(
            !had_replicas,
            "{} is missing while {} holds other origins' logs: a witness that forgot what it cosigned could cosign a rollback; restore it from a backup (or re-seed it) and restart",
            wdir.display(),
            dir.join(REPLICAS).display()
        );
        return Ok(Witness::new(key));
    }
    let index = match layout::read_bounded(&wdir.join("index")) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mut records = Vec::new();
    for (_, p) in origins_in(&wdir)? {
        records.push(layout::read_bounded(&p)?);
    }
    Witness::load(key, index.as_deref(), records).map_err(|e| {
        anyhow::anyhow!(
            "{e}: keep {} aside as evidence and restore it from a backup",
            wdir.display()
        )
    })
}

/// A relative path from the core, joined to `dir` only if it stays inside
/// it (no `..`, not absolute).
fn inside(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "refusing the path {rel}: outside the logs directory"
        ));
    }
    Ok(dir.join(p))
}

/// Performs a replica's writes in order, with their barriers.
pub fn apply_replica(dir: &Path, writes: &[ReplicaWrite]) -> Result<(), String> {
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let ctx = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    for w in writes {
        match w {
            ReplicaWrite::Segment { path, bytes } | ReplicaWrite::Tile { path, bytes } => {
                let p = inside(dir, path)?;
                layout::write_atomic(&p, bytes, &mut dirs).map_err(|e| ctx("writing", &p, e))?;
            }
            ReplicaWrite::Sync => sync_dirs(&mut dirs)?,
            ReplicaWrite::Checkpoint { path, note } => {
                let p = inside(dir, path)?;
                layout::write_atomic(&p, note, &mut dirs).map_err(|e| ctx("writing", &p, e))?;
                sync_dirs(&mut dirs)?;
            }
            ReplicaWrite::Delete { path } => {
                let p = inside(dir, path)?;
                match fs::remove_file(&p) {
                    Ok(()) => {
                        if let Some(d) = p.parent() {
                            dirs.insert(d.to_path_buf());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ctx("deleting", &p, e)),
                }
            }
        }
    }
    sync_dirs(&mut dirs)
}

/// fsyncs every directory whose entries changed, and the parents of
/// those created.
fn sync_dirs(dirs: &mut BTreeSet<PathBuf>) -> Result<(), String> {
    let mut all = std::mem::take(dirs);
    let parents: Vec<PathBuf> = all
        .iter()
        .filter_map(|d| d.parent().map(Path::to_path_buf))
        .collect();
    all.extend(parents);
    for d in all {
        layout::sync_dir(&d).map_err(|e| format!("fsync {}: {e}", d.display()))?;
    }
    Ok(())
}

/// Replaces the witness's files in order, each durable before the next.
pub fn apply_witness(dir: &Path, writes: &[WitnessWrite]) -> Result<(), String> {
    let wdir = dir.join(WITNESS);
    for w in writes {
        let name = match w.file {
            WitnessFile::Index => "index".to_string(),
            WitnessFile::Origin(o) => o.to_string(),
        };
        let p = wdir.join(name);
        let mut dirs = BTreeSet::new();
        layout::write_atomic(&p, &w.bytes, &mut dirs)
            .map_err(|e| format!("writing {}: {e}", p.display()))?;
        sync_dirs(&mut dirs)?;
    }
    Ok(())
}

/// Reads what the node asked of this node's own log (`spool`: the spool
/// directory).
pub fn read_log(spool: &Path, read: &LogRead) -> Result<LogData, String> {
    let dir = match read {
        LogRead::Segments {
            from,
            to,
            max_bytes,
        } => {
            return reads::read_segments(*from, *to, *max_bytes, |i| {
                let p = layout::segment_path(spool, i);
                layout::read_bounded(&p).map_err(|e| format!("{}: {e}", p.display()))
            })
        }
        LogRead::Proof { .. } => spool.to_path_buf(),
        LogRead::Prefix { origin, .. } => spool.join(REPLICAS).join(origin.to_string()),
    };
    let (tiles, _) = layout::read_tiles(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    reads::prove(read, &tiles)
}

/// Keeps a file under `dir/<sub>/<name>` durably (evidence, cosigned
/// checkpoints).
pub fn keep(dir: &Path, sub: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
    let p = dir.join(sub).join(name);
    let mut dirs = BTreeSet::new();
    layout::write_atomic(&p, bytes, &mut dirs).map_err(|e| format!("{}: {e}", p.display()))?;
    sync_dirs(&mut dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_the_core_stay_inside_the_logs_directory() {
        let d = Path::new("/x/logs");
        assert!(inside(d, "replicas/a/segments/1").is_ok());
        assert!(inside(d, "../etc/passwd").is_err());
        assert!(inside(d, "/etc/passwd").is_err());
        assert!(inside(d, "replicas/../../x").is_err());
    }

    /// Writes a replica of `n` genuine segments of `key`'s log under `dir`
    /// as a running store would; returns the segment files' paths.
    fn replica_of(dir: &Path, key: &NodeKey, n: u64) -> Vec<PathBuf> {
        use keyward_core::log::line::{Line, Sender};
        use keyward_core::log::merkle::MerkleLog;
        use keyward_core::log::recipients::{Recipient, Recipients};
        use keyward_core::log::replica::wire::Push;
        use keyward_core::log::segmenter::{Limits as SegLimits, Segmenter, Source};
        let auditor = age::x25519::Identity::generate().to_public();
        let recipients = Recipients::new(vec![Recipient::X25519(auditor)], None).unwrap();
        let mut seg = Segmenter::new(
            Arc::new(NodeKey::from_secret(&key.secret())),
            Arc::new(recipients),
            Source {
                name: "syslog".into(),
                confidential: true,
            },
            SegLimits::default(),
            0,
        )
        .unwrap();
        let mut log = MerkleLog::new(key.id());
        let mut segs = Vec::new();
        for i in 0..n {
            let line = Line {
                time: i + 1,
                sender: Sender::default(),
                msg: format!("line {i}").into_bytes(),
            };
            seg.push(i + 1, &line, &mut rand::rngs::OsRng).unwrap();
            let s = seg.seal(i + 1).unwrap().unwrap();
            log.append(&s.leaf).unwrap();
            segs.push(s.bytes);
        }
        let cp = log.checkpoint(1, key).unwrap().note;
        let mut store = ReplicaStore::new(Limits {
            quota_bytes: 1 << 30,
            warn_percent: 80,
            retention_ms: 0,
        })
        .unwrap();
        let push = Push::pack(key.id(), 0, cp, segs);
        let a = store.accept(1, key.id(), &push).unwrap();
        apply_replica(dir, &a.writes).unwrap();
        (0..n)
            .map(|i| dir.join(keyward_core::log::replica::segment_path(&key.id(), i)))
            .collect()
    }

    #[test]
    fn a_damaged_replica_is_set_aside_and_the_other_origins_stay_held() {
        let t = tempfile::tempdir().unwrap();
        let me = NodeKey::generate();
        let (good, bad) = (NodeKey::generate(), NodeKey::generate());
        replica_of(t.path(), &good, 3);
        let files = replica_of(t.path(), &bad, 3);
        fs::create_dir(t.path().join(WITNESS)).unwrap(); // a witness that cosigned nothing yet
        let cfg = LogsConfig::default();
        let l = load(&cfg, &me, t.path());
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.store.as_ref().unwrap().held(&bad.id()).size, 3);
        // one byte of a segment's signed body
        let mut b = fs::read(&files[1]).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        fs::write(&files[1], &b).unwrap();
        let l = load(&cfg, &me, t.path());
        let store = l.store.expect("the store stays on");
        assert_eq!(store.held(&good.id()).size, 3, "the other origin is held");
        assert_eq!(store.held(&bad.id()).size, 0, "the damaged one afresh");
        assert!(l.witness.is_some());
        assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
        let p = &l.problems[0];
        assert!(
            p.contains(&format!("the replica of {}: segment 1 ", bad.id()))
                && p.contains("moved it to")
                && p.contains(DAMAGED),
            "{p}"
        );
        // the damaged copy is kept whole, byte for byte, and out of the way
        let aside: Vec<_> = fs::read_dir(t.path().join(DAMAGED))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{}-", bad.id())));
        assert_eq!(
            fs::read(aside[0].join("segments").join(format!("{:020}", 1))).unwrap(),
            b
        );
        assert!(!t.path().join(REPLICAS).join(bad.id().to_string()).exists());
        // and the next start finds nothing wrong
        let l = load(&cfg, &me, t.path());
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.store.unwrap().held(&good.id()).size, 3);
    }

    #[test]
    fn replica_and_witness_files_round_trip_through_load() {
        let t = tempfile::tempdir().unwrap();
        let key = NodeKey::generate();
        let cfg = LogsConfig::default();
        // a fresh node: both on, empty
        let l = load(&cfg, &key, t.path());
        assert!(l.store.is_some() && l.witness.is_some());
        // replicas without a witness state: the witness stays off
        fs::create_dir_all(t.path().join(REPLICAS).join(key.id().to_string())).unwrap();
        let l = load(&cfg, &key, t.path());
        assert!(l.store.is_some());
        assert!(
            l.witness.is_none(),
            "a forgotten witness must not start fresh"
        );
    }
}
