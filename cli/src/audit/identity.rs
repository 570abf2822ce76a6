//! Loading the auditor's identity for `audit decrypt`: an age identity
//! file (`keyward audit keygen` and `age-keygen` write the same format) or
//! an unencrypted SSH key (age's `ssh` feature, enabled for the workspace
//! by keyward-core, since segments may be encrypted to SSH recipients).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::AuditError;

/// Far above any identity file (an RSA 16384 SSH key is some 13 KiB).
const MAX_IDENTITY: u64 = 64 * 1024;

/// Reads the identity at `path`: the first identity of an age identity
/// file, or an SSH key. A file others can read is used but warned about.
pub fn load(path: &Path) -> Result<Box<dyn age::Identity>, AuditError> {
    let bad = |why: &str| AuditError::Identity {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let f = std::fs::File::open(path).map_err(AuditError::io(path))?;
    if let Ok(m) = f.metadata() {
        if m.mode() & 0o077 != 0 {
            eprintln!(
                "keyward: warning: {} can be read by others: chmod 600 it",
                path.display()
            );
        }
    }
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(MAX_IDENTITY + 1)
        .read_to_end(&mut bytes)
        .map_err(AuditError::io(path))?;
    if bytes.len() as u64 > MAX_IDENTITY {
        return Err(bad("over 64 KiB"));
    }
    if let Ok(file) = age::IdentityFile::from_buffer(&bytes[..]) {
        if let Ok(mut ids) = file.into_identities() {
            if ids.len() > 1 {
                eprintln!(
                    "keyward: {} holds {} identities; only the first is used",
                    path.display(),
                    ids.len()
                );
            }
            if !ids.is_empty() {
                let id: Box<dyn age::Identity> = ids.swap_remove(0);
                return Ok(id);
            }
        }
    }
    let name = Some(path.display().to_string());
    match age::ssh::Identity::from_buffer(&bytes[..], name) {
        Ok(id @ age::ssh::Identity::Unencrypted(_)) => Ok(Box::new(id)),
        Ok(age::ssh::Identity::Encrypted(_)) => Err(bad(
            "a passphrase-protected SSH key; decrypt a copy first (ssh-keygen -p) on the auditor's machine",
        )),
        Ok(age::ssh::Identity::Unsupported(_)) => Err(bad("an SSH key type age does not support")),
        Err(_) => Err(bad("neither an age identity nor an SSH private key")),
    }
}
