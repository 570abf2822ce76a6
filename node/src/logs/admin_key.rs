//! The local admin's age identity, `<state_dir>/logs-admin.key`: made at
//! keywardd's first start with logs on, root-only (0600). Non-confidential
//! sources are sealed to its recipient as well as to the auditors, so
//! `keyward logs` can show them on the node; confidential ones are not.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use zeroize::Zeroizing;

pub const FILE: &str = "logs-admin.key";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Loads the identity, refusing a file others can read.
pub fn load(state_dir: &Path) -> anyhow::Result<age::x25519::Identity> {
    let p = path(state_dir);
    let meta = std::fs::metadata(&p).with_context(|| {
        format!(
            "reading the local log admin key {} (keywardd makes it when logs are on; run as root)",
            p.display()
        )
    })?;
    if meta.mode() & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}): refusing it; chmod 600 it (and check who read it)",
            p.display(),
            meta.mode() & 0o777
        );
    }
    let s = Zeroizing::new(
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
    );
    s.trim()
        .parse::<age::x25519::Identity>()
        .map_err(|e| anyhow::anyhow!("{} is not an age identity: {e}", p.display()))
}

/// Loads the identity, making it first if there is none.
pub fn load_or_create(state_dir: &Path) -> anyhow::Result<age::x25519::Identity> {
    let p = path(state_dir);
    if !p.exists() {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        let s = Zeroizing::new(format!("{}\n", id.to_string().expose_secret()));
        f.write_all(s.as_bytes())?;
        f.sync_all()?;
        if let Some(d) = p.parent() {
            let _ = std::fs::File::open(d).and_then(|d| d.sync_all());
        }
    }
    load(state_dir)
}
