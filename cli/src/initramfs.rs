//! Whether the initramfs carries this node's current boot key.
//!
//! After `rebind --new-boot-key` the old boot key keeps opening its old
//! epoch until the owner drops that epoch, because the initramfs on /boot
//! still holds the old key until `update-initramfs -u` runs. keyward's
//! initramfs-tools hook, when it copies the boot key into an image, writes
//! the SHA-256 of the key file it copied next to it
//! (`<boot_key>.initramfs`). Comparing that with the key file now says
//! whether the image was built with the current key.
//!
//! A content hash written by the hook, not file times: an mtime comparison
//! (boot key vs /boot/initrd.img-*) breaks when the clock steps (the very
//! case of a guardian restored from a snapshot), when a file is copied
//! without -p, when several kernels have images, and it cannot tell an
//! image built without keyward (the hook skipped, crypttab not using the
//! keyscript) from one that carries the key. The hook knows exactly which
//! key it put in. What it cannot know is whether update-initramfs then
//! failed after it ran; update-initramfs reports that failure itself.
//! The hash of a 32-byte random seed reveals nothing about it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Largest boot key file hashed (they are a few dozen bytes).
const MAX_KEY_FILE: u64 = 64 << 10;

/// Where the hook records the key it copied.
pub fn marker_path(boot_key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.initramfs", boot_key.display()))
}

/// What the initramfs is known to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Carried {
    /// Built with the current boot key.
    Current,
    /// Built with another key file (the marker names its hash).
    Other,
    /// No marker: the hook never ran here (or predates the marker).
    Unknown,
}

fn sha256_file(p: &Path) -> Option<String> {
    let f = std::fs::File::open(p).ok()?;
    let mut b = zeroize::Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_KEY_FILE), &mut b).ok()?;
    Some(hex::encode(Sha256::digest(&b[..])))
}

/// Compares the hook's marker with the boot key file.
pub fn carried(boot_key: &Path) -> Carried {
    let Ok(marker) = std::fs::read_to_string(marker_path(boot_key)) else {
        return Carried::Unknown;
    };
    let want = marker.split_whitespace().next().unwrap_or_default();
    match sha256_file(boot_key) {
        Some(h) if h == want => Carried::Current,
        _ => Carried::Other,
    }
}
