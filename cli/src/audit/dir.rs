//! The audit directory: one directory per origin, named by its node id,
//! each in the spool/replica layout (`checkpoint`, `tile/<L>/<N>[.p/<W>]`,
//! `segments/<index, 20 digits>`, and `segments/<index>.age`, the body as a
//! plain age file for `age -d`). The same per-origin layout as a replica's
//! `replicas/<origin>/`, so one reader serves exports and fetched copies.

use std::path::{Path, PathBuf};

use keyward_node::identity::NodeId;

use super::AuditError;

/// At most this many entries are looked at in an audit directory: a mesh
/// has far fewer origins, and a directory of junk must not run forever.
const MAX_ENTRIES: usize = 100_000;

/// Where an origin's files live in an audit directory.
pub fn origin_dir(dir: &Path, origin: &NodeId) -> PathBuf {
    dir.join(origin.to_string())
}

/// The origins of an audit directory, sorted by id. Entries whose name is
/// not a node id are ignored with a note on stderr (an auditor's notes
/// beside the logs are fine).
pub fn origins(dir: &Path) -> Result<Vec<(NodeId, PathBuf)>, AuditError> {
    let mut v = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(AuditError::io(dir))?;
    for e in rd.take(MAX_ENTRIES) {
        let e = e.map_err(AuditError::io(dir))?;
        let name = e.file_name();
        let Some(id) = name.to_str().and_then(|s| s.parse::<NodeId>().ok()) else {
            eprintln!(
                "keyward: {}: not an origin directory (not named by a node id); ignored",
                e.path().display()
            );
            continue;
        };
        if e.file_type().map_err(AuditError::io(e.path()))?.is_dir() {
            v.push((id, e.path()));
        }
    }
    if v.is_empty() {
        return Err(AuditError::NoOrigins(dir.to_path_buf()));
    }
    v.sort_by_key(|(id, _)| id.to_string());
    Ok(v)
}

/// Keeps the origin named by `wanted`: its whole id or the id's last
/// characters (as `keyward status` shows them).
pub fn select(
    dir: &Path,
    all: Vec<(NodeId, PathBuf)>,
    wanted: Option<&str>,
) -> Result<Vec<(NodeId, PathBuf)>, AuditError> {
    let Some(w) = wanted else { return Ok(all) };
    let v: Vec<_> = all
        .into_iter()
        .filter(|(id, _)| !w.is_empty() && id.to_string().ends_with(w))
        .collect();
    if v.is_empty() {
        return Err(AuditError::NoSuchOrigin {
            dir: dir.to_path_buf(),
            wanted: w.to_string(),
        });
    }
    Ok(v)
}
