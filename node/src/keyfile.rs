//! Key files on disk: the boot key and node key as one `label:hex` line
//! in a 0600 file owned by root or this user, refused otherwise. The keys
//! themselves live in `keyward_core::identity`; this is the driver side.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use crate::identity::{BootKey, KeyError, NodeKey};

const BOOT_LABEL: &str = "keyward-boot-key-v1";
const NODE_LABEL: &str = "keyward-node-key-v1";

/// Loading and saving a key as a private file.
pub trait KeyFile: Sized {
    fn load(path: &Path) -> Result<Self, KeyError>;
    fn save(&self, path: &Path) -> Result<(), KeyError>;
}

impl KeyFile for BootKey {
    fn load(path: &Path) -> Result<Self, KeyError> {
        Ok(BootKey::from_zeroizing(read_key_file(
            path, "boot key", BOOT_LABEL,
        )?))
    }

    fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_key_file(path, BOOT_LABEL, self.seed())
    }
}

impl KeyFile for NodeKey {
    fn load(path: &Path) -> Result<Self, KeyError> {
        let seed = read_key_file(path, "node key", NODE_LABEL)?;
        Ok(NodeKey::from_secret(&seed))
    }

    fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_key_file(path, NODE_LABEL, &self.secret())
    }
}

/// Refuses key files that group or others can read: such a key must be
/// treated as copied.
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    let meta = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    check_meta(path, &meta)
}

/// Mode and owner of an opened key file. Checked on the open file, not
/// the path, so the file read is the file checked.
fn check_meta(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err(KeyError::NotAFile { path: path.into() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.into(),
            mode,
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(KeyError::Owner {
            path: path.into(),
            uid: meta.uid(),
        });
    }
    Ok(())
}

fn read_key_file(
    path: &Path,
    what: &'static str,
    label: &str,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    check_meta(path, &file.metadata().map_err(io)?)?;
    let mut text = Zeroizing::new(String::new());
    file.take(256).read_to_string(&mut text).map_err(io)?;
    let bad = |why: &str| KeyError::Format {
        path: path.into(),
        what,
        why: why.into(),
    };
    let body = text
        .trim()
        .strip_prefix(label)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(|| bad(&format!("expected a line `{label}:<64 hex digits>`")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(body.trim(), out.as_mut())
        .map_err(|_| bad("the key is not 64 hex digits"))?;
    Ok(out)
}

fn write_key_file(path: &Path, label: &str, secret: &[u8; 32]) -> Result<(), KeyError> {
    let mut text = Zeroizing::new(format!("{label}:{}\n", hex::encode(secret)));
    write_private_file(path, text.as_bytes(), false)?;
    text.zeroize();
    Ok(())
}

/// Writes a file readable only by its owner, fsyncs it and its directory.
/// Creates missing parent directories with mode 0700.
pub fn write_private_file(path: &Path, data: &[u8], overwrite: bool) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
    }
    if !overwrite && path.exists() {
        return Err(KeyError::Exists { path: path.into() });
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_refused_when_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/boot.key");
        let b = BootKey::generate();
        b.save(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(BootKey::load(&p).unwrap().public(), b.public());
        assert!(matches!(b.save(&p), Err(KeyError::Exists { .. })));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = BootKey::load(&p).err().unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        // a node key file is not a boot key file
        let q = dir.path().join("node.key");
        NodeKey::generate().save(&q).unwrap();
        assert!(matches!(BootKey::load(&q), Err(KeyError::Format { .. })));
    }
}
