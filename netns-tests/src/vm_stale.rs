//! What a killed VM boot test leaves behind, and its removal.
//!
//! A VM test run that is SIGKILLed (or times out in CI) runs no `Drop`: its
//! chroot copy keeps proc, sys and a recursive bind of /dev mounted, its
//! root image stays attached to a loop device, and its copies of kernel and
//! initrd stay in the temp dir. Left alone, the mounts pile up and the loop
//! devices run out. Everything the VM test makes is named after its owner,
//! `<pid>-<start>` (start time in clock ticks since boot, as the mesh
//! directories of [`crate::stale`]), so the next run can tell what belongs
//! to a process that is gone and undo exactly that, nothing else:
//!
//! - `<cache>/chroot-<pid>-<start>/`: a chroot copy and its mounts;
//! - `<cache>/debootstrap-<pid>-<start>-<key>/`: an unfinished debootstrap
//!   (which mounts proc and sys in its target);
//! - `$TMPDIR/keyward-vm-<pid>-<start>-*/`: kernel, initrds, boot images;
//! - loop devices whose backing file lies in one of those or in a mesh
//!   directory (`$TMPDIR/keyward-mesh-<pid>-<start>-*`) of a gone owner.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::stale::{mesh_dir_owner, start_ticks};

/// Prefix of a chroot copy's directory in the cache.
pub(crate) const CHROOT_PREFIX: &str = "chroot-";
/// Prefix of a debootstrap's directory in the cache, until it is complete.
pub(crate) const DEBOOTSTRAP_PREFIX: &str = "debootstrap-";
/// Prefix of a VM test's work directory in the temp dir.
pub(crate) const WORK_PREFIX: &str = "keyward-vm-";

/// `<pid>-<start>` of this process: the owner tag of what it makes.
pub(crate) fn own_tag() -> String {
    let me = std::process::id();
    format!("{me}-{}", start_ticks(me).unwrap_or(0))
}

/// The owner `(pid, start)` of a name `<prefix><pid>-<start>[-...]`.
fn owner_of(name: &str, prefix: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(prefix)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    Some((pid, start))
}

fn gone((pid, start): (u32, u64)) -> bool {
    start_ticks(pid) != Some(start)
}

/// Whether `path` lies in something the VM test (or its mesh) made for an
/// owner that is gone.
fn in_stale(path: &Path, cache: &Path) -> bool {
    let tmp = std::env::temp_dir();
    let first_below = |base: &Path| {
        path.strip_prefix(base)
            .ok()?
            .components()
            .next()?
            .as_os_str()
            .to_str()
            .map(str::to_owned)
    };
    if let Some(n) = first_below(cache) {
        return [CHROOT_PREFIX, DEBOOTSTRAP_PREFIX]
            .iter()
            .any(|p| owner_of(&n, p).is_some_and(gone));
    }
    if let Some(n) = first_below(&tmp) {
        return owner_of(&n, WORK_PREFIX).is_some_and(gone) || mesh_dir_owner(&n).is_some_and(gone);
    }
    false
}

/// Mount points (of this mount namespace) at or below `dir`.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .map(PathBuf::from)
                .filter(|p| p.starts_with(dir))
                .collect()
        })
        .unwrap_or_default()
}

/// Unmounts everything at or below `dir`, deepest first (lazily: a stale
/// mount may still be busy). True when nothing is mounted there any more.
pub(crate) fn unmount_below(dir: &Path) -> bool {
    let mut ms = mounts_below(dir);
    ms.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for m in ms {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&m)
            .stderr(Stdio::null())
            .status();
    }
    mounts_below(dir).is_empty()
}

/// Removes `dir` only when nothing is mounted below it: deleting through
/// a leftover bind of /dev would delete the host's device nodes.
pub(crate) fn remove_unmounted(dir: &Path) {
    if unmount_below(dir) {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            eprintln!("vmtest: removing {}: {e}", dir.display());
        }
    } else {
        eprintln!(
            "vmtest: {} still has mounts below it; left in place",
            dir.display()
        );
    }
}

/// Detaches loop devices backed by files of gone owners.
fn detach_stale_loops(cache: &Path) {
    let Ok(o) = Command::new("losetup")
        .args([
            "--list",
            "--noheadings",
            "--raw",
            "--output",
            "NAME,BACK-FILE",
        ])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Some((dev, back)) = line.split_once(' ') else {
            continue;
        };
        let back = back.trim().trim_end_matches(" (deleted)");
        if in_stale(Path::new(back), cache) {
            eprintln!("vmtest: detaching stale loop device {dev} ({back})");
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}

/// Removes what killed VM test runs left: their loop devices, the mounts
/// of their chroot copies and debootstraps, and those directories. Only
/// things named after an owner that is gone are touched, so runs going on
/// at the same time keep theirs.
pub fn remove_stale(cache: &Path) {
    detach_stale_loops(cache);
    for (base, prefixes) in [
        (
            cache.to_path_buf(),
            &[CHROOT_PREFIX, DEBOOTSTRAP_PREFIX][..],
        ),
        (std::env::temp_dir(), &[WORK_PREFIX][..]),
    ] {
        let Ok(rd) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in rd.flatten() {
            let Some(n) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if prefixes.iter().any(|p| owner_of(&n, p).is_some_and(gone)) {
                eprintln!("vmtest: removing stale {}", e.path().display());
                remove_unmounted(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_names() {
        assert_eq!(owner_of("chroot-12-345", CHROOT_PREFIX), Some((12, 345)));
        assert_eq!(
            owner_of("debootstrap-12-345-d549ace0", DEBOOTSTRAP_PREFIX),
            Some((12, 345))
        );
        assert_eq!(owner_of("keyward-vm-1-2-abc", WORK_PREFIX), Some((1, 2)));
        assert_eq!(owner_of("base-d549ace0", CHROOT_PREFIX), None);
        assert_eq!(owner_of("chroot-x-1", CHROOT_PREFIX), None);
    }

    #[test]
    fn this_process_is_not_gone() {
        let tag = own_tag();
        let name = format!("{CHROOT_PREFIX}{tag}");
        assert!(!owner_of(&name, CHROOT_PREFIX).is_some_and(gone));
        let cache = Path::new("/nonexistent-cache");
        assert!(!in_stale(&cache.join(&name).join("root"), cache));
        assert!(!in_stale(Path::new("/etc/passwd"), cache));
    }

    /// As root: a fake killed run (a pid above pid_max owns it) with a
    /// tmpfs mounted in its chroot copy and a loop device on a file in its
    /// work dir; remove_stale undoes both and deletes the directories, and
    /// leaves a live owner's directory alone.
    #[test]
    fn a_killed_runs_mounts_and_loop_devices_are_removed() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: needs root (mount, losetup)");
            return;
        }
        let cache = tempfile::tempdir().unwrap();
        let dead = "4194305-1";
        let chroot = cache.path().join(format!("{CHROOT_PREFIX}{dead}"));
        let proc_dir = chroot.join("root/proc");
        std::fs::create_dir_all(&proc_dir).unwrap();
        let live = cache.path().join(format!("{CHROOT_PREFIX}{}", own_tag()));
        std::fs::create_dir_all(&live).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "kwtest"])
            .arg(&proc_dir)
            .status()
            .unwrap();
        assert!(st.success());
        let work = std::env::temp_dir().join(format!("{WORK_PREFIX}{dead}-x"));
        std::fs::create_dir_all(&work).unwrap();
        let img = work.join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let o = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(o.status.success() && !dev.is_empty(), "losetup failed");

        remove_stale(cache.path());

        assert!(mounts_below(&chroot).is_empty(), "mount left");
        assert!(!chroot.exists() && !work.exists(), "directories left");
        assert!(live.exists(), "a live owner's directory was removed");
        let l = Command::new("losetup").args(["-l", "-n"]).output().unwrap();
        assert!(
            !String::from_utf8_lossy(&l.stdout)
                .lines()
                .any(|x| x.starts_with(&format!("{dev} "))),
            "loop device {dev} left"
        );
    }
}
