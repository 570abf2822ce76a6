//! Files left behind by runs that were killed (SIGKILL, or a panic in a
//! release build with `panic = "abort"`, where no `Drop` runs).
//!
//! Every mesh directory is made in the temp dir as
//! `keyward-mesh-<pid>-<start>-<random>`, where `<pid>` and `<start>` (its
//! start time, in clock ticks since boot, field 22 of `/proc/<pid>/stat`)
//! name the process that owns it. A pid alone is not enough: after a
//! killed run the pid may be reused by an unrelated process. A directory is
//! stale when no process with that pid *and* start time exists; then any
//! process still using it (a loopback daemon whose `KEYWARD_CONFIG` points
//! inside it) is killed and the directory removed.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// Prefix of every mesh directory in the temp dir.
pub(crate) const MESH_DIR_PREFIX: &str = "keyward-mesh-";

/// Start time of process `pid` in clock ticks since boot, if it exists
/// and has not exited. A SIGKILLed run stays a zombie until its reaper
/// gets to it; it owns nothing any more, so it counts as gone.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may contain spaces and parentheses: skip past the last ')'
    let (_, rest) = stat.rsplit_once(") ")?;
    // rest starts at field 3 (state); starttime is field 22
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), None | Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(22 - 4)?.parse().ok()
}

/// `keyward-mesh-<pid>-<start>-`: the prefix of this process's mesh dirs.
pub(crate) fn own_mesh_prefix() -> String {
    let me = std::process::id();
    format!("{MESH_DIR_PREFIX}{me}-{}-", start_ticks(me).unwrap_or(0))
}

/// `(pid, start)` from a mesh dir name, if it is one of ours.
pub(crate) fn mesh_dir_owner(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(MESH_DIR_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((pid, start))
}

/// Whether the process that made something is still running: `pid`
/// exists and has start time `start`.
fn owner_alive(pid: u32, start: u64) -> bool {
    start_ticks(pid) == Some(start)
}

/// Wall-clock time at which process `pid` started, if it exists.
pub(crate) fn started_at(pid: u32) -> Option<SystemTime> {
    let ticks = start_ticks(pid)?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(btime)
            + Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz),
    )
}

/// Removes the mesh directories of dead owners from the temp dir, killing
/// first any process whose `KEYWARD_CONFIG` lies inside one.
pub fn remove_stale_files() {
    let tmp = std::env::temp_dir();
    let Ok(dir) = std::fs::read_dir(&tmp) else {
        return;
    };
    for entry in dir.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((pid, start)) = mesh_dir_owner(&name) else {
            continue;
        };
        if owner_alive(pid, start) {
            continue;
        }
        let path = entry.path();
        eprintln!(
            "keyward-netns-tests: removing stale mesh directory {}",
            path.display()
        );
        kill_users_of(&path);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            eprintln!("keyward-netns-tests: removing {}: {e}", path.display());
        }
    }
}

/// SIGKILLs every process (except this one) whose environment sets
/// `KEYWARD_CONFIG` to a path under `dir`, until none is left (bounded:
/// about one second).
fn kill_users_of(dir: &Path) {
    let me = std::process::id();
    for _ in 0..100 {
        let pids = users_of(dir, me);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "keyward-netns-tests: processes still using {}",
        dir.display()
    );
}

fn users_of(dir: &Path, me: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut want = dir.as_os_str().as_encoded_bytes().to_vec();
    want.push(b'/');
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // zombies have an empty environ: they are dead already
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0).any(|var| {
                    var.strip_prefix(b"KEYWARD_CONFIG=")
                        .is_some_and(|v| v.starts_with(&want))
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mesh_dir_owner() {
        assert_eq!(mesh_dir_owner("keyward-mesh-12-345-aBc"), Some((12, 345)));
        assert_eq!(mesh_dir_owner("keyward-mesh-aBcDeF"), None);
        assert_eq!(mesh_dir_owner("keyward-mesh-12-345"), None);
        assert_eq!(mesh_dir_owner("other-12-345-x"), None);
        let own = own_mesh_prefix() + "x";
        let (pid, start) = mesh_dir_owner(&own).unwrap();
        assert_eq!(pid, std::process::id());
        assert!(owner_alive(pid, start));
        assert!(!owner_alive(pid, start + 1));
    }

    #[test]
    fn own_start_is_in_the_past() {
        let t = started_at(std::process::id()).unwrap();
        assert!(t <= SystemTime::now() + Duration::from_secs(1));
    }
}
