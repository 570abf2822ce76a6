//! The record of a bind or rebind in progress.
//!
//! A bind hands shares to guardians, then adds a keyslot, then writes the
//! token; a run killed in between (power cut, Ctrl-C, a failed step) leaves
//! shares that no token references and maybe a keyslot that no token
//! names. Before the first share leaves the node, bind writes what it is
//! about to do here; it removes the record once the token is written (or
//! once it has undone a failed run). A record that outlives its run is how
//! `keyward status`, `bind` and `keyward epochs` know what to clean.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Most records read; bind refuses to start while one for its device
/// exists, so more means something else writes here.
const MAX_RECORDS: usize = 64;
/// Largest record read.
const MAX_RECORD: u64 = 64 << 10;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    /// The device, canonical path.
    pub device: PathBuf,
    pub epoch: u64,
    /// Node ids of the guardians shares were sent to.
    pub guardians: Vec<String>,
    /// The device's keyslots before the run: a slot that appeared since,
    /// and that no keyward token names, was added by this run.
    pub slots_before: Vec<u32>,
    /// The keyslot the run added, once known.
    #[serde(default)]
    pub slot: Option<u32>,
    /// Whether the run makes a new boot key.
    pub new_boot_key: bool,
    /// Unix seconds when the run started.
    pub started: u64,
}

fn dir(state: &Path) -> PathBuf {
    state.join("pending-bind")
}

fn path(state: &Path, epoch: u64) -> PathBuf {
    dir(state).join(format!("{epoch}.json"))
}

pub fn canonical(device: &Path) -> PathBuf {
    std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf())
}

impl Pending {
    /// Writes the record durably (before anything leaves the node).
    pub fn save(&self, state: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        keyward_node::keyfile::write_private_file(&path(state, self.epoch), &json, true)?;
        Ok(())
    }

    /// The run finished or was undone.
    pub fn remove(&self, state: &Path) -> anyhow::Result<()> {
        let p = path(state, self.epoch);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", p.display()))
            }
            _ => Ok(()),
        }
    }

    /// One line for an admin.
    pub fn describe(&self) -> String {
        format!(
            "a {} of {} (epoch {}{}) did not finish",
            if self.new_boot_key {
                "rebind --new-boot-key"
            } else {
                "bind"
            },
            self.device.display(),
            self.epoch,
            self.slot
                .map(|s| format!(", keyslot {s} added"))
                .unwrap_or_default()
        )
    }
}

/// Every record left in the state dir, oldest epoch first. An unreadable
/// record is an error naming the file: silently skipping it would hide
/// shares nobody drops.
pub fn all(state: &Path) -> anyhow::Result<Vec<Pending>> {
    let d = dir(state);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
    };
    let mut out = Vec::new();
    for e in entries.take(MAX_RECORDS) {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let f = std::fs::File::open(&p).with_context(|| format!("reading {}", p.display()))?;
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_RECORD), &mut b)?;
        let rec: Pending = serde_json::from_slice(&b).with_context(|| {
            format!(
                "{} is damaged; it records an unfinished bind: run `keyward epochs` to see what is left, then delete the file",
                p.display()
            )
        })?;
        out.push(rec);
    }
    out.sort_by_key(|p| p.epoch);
    Ok(out)
}

/// The unfinished run on `device`, if any.
pub fn for_device(state: &Path, device: &Path) -> anyhow::Result<Option<Pending>> {
    let d = canonical(device);
    Ok(all(state)?.into_iter().find(|p| p.device == d))
}

/// Held while a bind, rebind or cleanup runs, so a cleanup never takes
/// the epoch of a bind still running for an orphan. Released on drop
/// (the lock goes with the file descriptor, also when the process dies).
pub struct Lock(#[allow(dead_code)] std::fs::File);

pub fn lock(state: &Path) -> anyhow::Result<Lock> {
    use std::os::fd::AsRawFd;
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir(state))
        .with_context(|| format!("creating {}", dir(state).display()))?;
    let p = dir(state).join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "another keyward bind, rebind or cleanup is running on this node ({} is locked); wait for it to finish",
            p.display()
        );
    }
    Ok(Lock(f))
}
