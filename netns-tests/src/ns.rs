//! Namespace plumbing: running `ip`, entering a namespace from one thread,
//! killing what runs in a namespace, and removing namespaces left behind by
//! a run that was killed.
//!
//! Namespaces are named `kwt-<pid>-<lab>-<role>` (see [`PREFIX`]); every
//! link the lab makes is created inside its namespaces, so deleting the
//! namespaces removes every link, address and nft table with them.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Prefix of every namespace this harness creates.
pub(crate) const PREFIX: &str = "kwt-";

/// Where `ip netns` keeps its namespace files.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// `ip netns add` mounts /run/netns on first use; two concurrent first uses
/// can stack two mounts and hide each other's files, so the labs of one test
/// binary add and delete namespaces one at a time.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// Runs `ip <args>` and fails with its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn add(name: &str) -> Result<()> {
    let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ip(&["netns", "add", name])
}

/// Kills everything inside `name`, then deletes it. Errors are printed, not
/// returned, because this runs from `Drop`.
pub(crate) fn remove(name: &str) {
    if !std::path::Path::new(&path(name)).exists() {
        return;
    }
    kill_all_in(name);
    let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = ip(&["netns", "del", name]) {
        eprintln!("keyward-netns-tests: {e:#}");
    }
}

/// Path of the file that pins namespace `name`.
pub(crate) fn path(name: &str) -> String {
    format!("{NETNS_DIR}/{name}")
}

/// Runs `f` on a new thread that has entered namespace `name`.
///
/// A network namespace belongs to a thread, not to the process, so this
/// changes nothing for the caller; sockets `f` creates stay in `name` for
/// their whole life and can be used from any thread afterwards.
pub(crate) fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let ns = File::open(path(name)).with_context(|| format!("opening namespace {name}"))?;
    let joined = std::thread::scope(|s| {
        s.spawn(move || -> Result<T> {
            // SAFETY: plain syscall on a descriptor we own for the call.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("setns");
            }
            Ok(f())
        })
        .join()
    });
    match joined {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Makes `cmd` start inside namespace `name`.
///
/// A `pre_exec` hook keeps everything the caller set on `cmd` (stdio, env,
/// directory), which rebuilding it as `ip netns exec ...` would lose. The
/// hook opens the namespace by path at spawn time, so the same `Command` can
/// be spawned again (to restart a daemon). The child keeps the host's /sys
/// view, unlike `ip netns exec`.
pub(crate) fn enter_on_exec(cmd: &mut Command, name: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let path = CString::new(path(name))?;
    let hook = move || {
        // SAFETY: open, setns and close are async-signal-safe and `path`
        // is a valid C string owned by the closure.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let rc = libc::setns(fd, libc::CLONE_NEWNET);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if rc != 0 {
                return Err(err);
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe syscalls.
    unsafe { cmd.pre_exec(hook) };
    Ok(())
}

/// SIGKILLs every process (except this one) whose network namespace is
/// `name`, including grandchildren a daemon forked, until none is left
/// (bounded: about one second).
pub(crate) fn kill_all_in(name: &str) {
    let Ok(meta) = std::fs::metadata(path(name)) else {
        return;
    };
    let wanted = format!("net:[{}]", meta.ino());
    let me = std::process::id();
    for _ in 0..100 {
        let pids = pids_in(&wanted, me);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("keyward-netns-tests: processes still alive in {name}");
}

/// Pids whose `/proc/<pid>/ns/net` link reads `wanted`. Zombies have no
/// namespace link and are not listed: they are already dead.
fn pids_in(wanted: &str, me: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|link| link.as_os_str() == wanted)
        })
        .collect()
}

/// Removes namespaces of this harness left by runs that were killed (those
/// whose owning pid is gone or now belongs to a process that started after
/// the namespace was made) and their mesh directories (see
/// [`crate::stale`]); and, when `own_too` is set, those carrying this
/// process's pid (a previous run with a recycled pid; only safe before this
/// process created any lab).
pub(crate) fn remove_stale(own_too: bool) {
    crate::stale::remove_stale_files();
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    let me = std::process::id();
    for entry in dir.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(owner) = owner_pid(&name) else {
            continue;
        };
        let stale = if owner == me {
            own_too
        } else {
            !owner_made(owner, &entry.path())
        };
        if stale {
            eprintln!("keyward-netns-tests: removing stale namespace {name}");
            remove(&name);
        }
    }
}

/// Whether process `pid` exists and is the one that made namespace file
/// `file`: it started before the namespace was created. A process that
/// started later got the pid of a killed run by reuse. (An nsfs file's
/// modification time is the namespace's creation; two seconds allow for
/// the rounding of boot time and clock ticks.)
fn owner_made(pid: u32, file: &std::path::Path) -> bool {
    let Some(started) = crate::stale::started_at(pid) else {
        return false;
    };
    match std::fs::metadata(file).and_then(|m| m.modified()) {
        Ok(created) => started <= created + Duration::from_secs(2),
        // cannot tell: keep it, it may be a live lab's
        Err(_) => true,
    }
}

/// The pid in `kwt-<pid>-...`, if `name` is one of ours.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn parses_owner() {
        assert_eq!(owner_pid("kwt-123-4-hub"), Some(123));
        assert_eq!(owner_pid("kwt-x-4-hub"), None);
        assert_eq!(owner_pid("other-123-4"), None);
        assert_eq!(owner_pid("kwt-123"), None);
    }
}
