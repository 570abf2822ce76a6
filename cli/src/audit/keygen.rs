//! `keyward audit keygen`: the auditor's age X25519 identity, in
//! `age-keygen`'s file format so either tool's identity works with
//! `keyward audit decrypt` and with `age -d -i`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::AuditError;

/// Writes a fresh identity to `out` (created 0600, never replacing a file:
/// losing the auditor's key loses every log) and prints its recipient.
pub fn keygen(out: &Path) -> Result<(), AuditError> {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let secret = id.to_string();
    let text = Zeroizing::new(format!(
        "# created: {}\n# public key: {public}\n{}\n",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        secret.expose_secret()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => AuditError::Exists(out.to_path_buf()),
            _ => AuditError::Io {
                path: out.to_path_buf(),
                err: e,
            },
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(AuditError::io(out))?;
    eprintln!(
        "keyward: wrote the auditor identity to {} (keep it offline; it reads every log)",
        out.display()
    );
    eprintln!("keyward: add this recipient to `[logs] auditors` in every node's config:");
    println!("{public}");
    Ok(())
}
