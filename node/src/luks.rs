//! The only module that runs cryptsetup.
//!
//! Keys never appear on a command line: they go through stdin or an
//! anonymous memory file (memfd) that cryptsetup opens by its /proc path, so
//! they never touch a disk or `ps`. keyward's keyslot uses the minimal PBKDF
//! (PBKDF2, 1000 iterations) as systemd-cryptenroll does for TPM2 keys: the
//! key is 32 random bytes, so brute force is hopeless anyway and the disk
//! opens in milliseconds.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// Largest LUKS2 JSON metadata we read (LUKS2's own maximum is 4 MiB).
const MAX_METADATA: usize = 4 << 20;
pub const TOKEN_TYPE: &str = "keyward";

#[derive(Debug, thiserror::Error)]
pub enum LuksError {
    #[error("cryptsetup not found; install it (Debian: apt install cryptsetup-bin)")]
    Missing,
    #[error("{device}: cryptsetup {op} failed: {msg}")]
    Failed {
        device: PathBuf,
        op: &'static str,
        msg: String,
    },
    #[error("{device}: {msg}")]
    Invalid { device: PathBuf, msg: String },
}

/// The parts of a device's LUKS2 metadata keyward reads; the rest
/// (segments, digests, config) is cryptsetup's business.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    keyslots: BTreeMap<String, Keyslot>,
    /// Tokens of any type (systemd's, Clevis's, ours): ours are told by
    /// their `type` before they are read as a [`Token`].
    #[serde(default)]
    tokens: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Keyslot {
    /// 0: never tried, 1 (or absent): normal, 2: tried first.
    #[serde(default)]
    priority: Option<u64>,
}

/// Any token's `type`.
#[derive(Deserialize)]
struct TokenType {
    #[serde(rename = "type")]
    kind: String,
}

/// The binding metadata kept in a LUKS2 token, as Clevis does: with it,
/// `unlock` needs only the device and the boot key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    #[serde(rename = "type")]
    pub kind: String,
    /// LUKS2 requires keyslot numbers as strings.
    pub keyslots: Vec<String>,
    pub version: u32,
    pub mesh: String,
    pub owner: String,
    /// The owner's roster name, for messages ("keyward approve web1").
    pub name: String,
    pub epoch: u64,
    pub threshold: usize,
    pub guardians: Vec<TokenGuardian>,
    /// Hex of the ed25519 key of the boot key this epoch's shares were
    /// sealed to. During a boot-key change a device carries two keyward
    /// tokens (old key, new key) and the unlock picks the one whose boot
    /// key it holds. None in tokens written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGuardian {
    pub id: String,
    pub addrs: Vec<String>,
    /// The guardian's roster name, so the boot console names who refused
    /// or could not be reached (absent in tokens written before it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

pub struct Device {
    path: PathBuf,
}

/// An anonymous in-memory file holding a key, handed to cryptsetup by path.
struct KeyFd(OwnedFd);

impl KeyFd {
    fn new(key: &[u8]) -> std::io::Result<Self> {
        // SAFETY: memfd_create with a static NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"keyward-key".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by memfd_create and is owned by us.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut f = std::fs::File::from(owned.try_clone()?);
        f.write_all(key)?;
        Ok(KeyFd(owned))
    }

    fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.0.as_raw_fd())
    }
}

impl Device {
    pub fn new(path: &Path) -> Self {
        Device { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn run(
        &self,
        op: &'static str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, LuksError> {
        let mut cmd = Command::new("cryptsetup");
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LuksError::Missing
            } else {
                self.failed(op, e.to_string())
            }
        })?;
        if let Some(data) = stdin {
            let mut s = child.stdin.take().expect("piped");
            // cryptsetup may exit before reading (wrong device): not an error here.
            let _ = s.write_all(data);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.failed(op, e.to_string()))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(self.failed(
                op,
                if msg.is_empty() {
                    format!("exit status {}", out.status)
                } else {
                    msg
                },
            ));
        }
        Ok(out.stdout)
    }

    fn failed(&self, op: &'static str, msg: String) -> LuksError {
        LuksError::Failed {
            device: self.path.clone(),
            op,
            msg,
        }
    }

    fn dev(&self) -> &str {
        self.path.to_str().unwrap_or_default()
    }

    /// The LUKS2 JSON metadata.
    pub fn metadata(&self) -> Result<Metadata, LuksError> {
        let out = self.run(
            "luksDump",
            &["luksDump", "--dump-json-metadata", self.dev()],
            None,
        )?;
        if out.len() > MAX_METADATA {
            return Err(LuksError::Invalid {
                device: self.path.clone(),
                msg: "LUKS2 metadata larger than 4 MiB".into(),
            });
        }
        serde_json::from_slice(&out).map_err(|e| LuksError::Invalid {
            device: self.path.clone(),
            msg: format!("unreadable LUKS2 metadata ({e}); is this a LUKS2 device?"),
        })
    }

    pub fn keyslots(&self) -> Result<Vec<u32>, LuksError> {
        let m = self.metadata()?;
        let mut v: Vec<u32> = m.keyslots.keys().filter_map(|k| k.parse().ok()).collect();
        v.sort();
        Ok(v)
    }

    /// Whether `key` opens the device (optionally: that exact keyslot).
    pub fn test_key(&self, key: &[u8], slot: Option<u32>) -> Result<(), LuksError> {
        let s = slot.map(|s| s.to_string());
        let mut args = vec!["open", "--test-passphrase", "--key-file=-"];
        if let Some(s) = &s {
            args.extend(["--key-slot", s]);
        }
        args.push(self.dev());
        self.run("open --test-passphrase", &args, Some(key))
            .map(|_| ())
    }

    /// Adds `new_key` in a new keyslot with the minimal PBKDF, authorized
    /// by `existing` (a passphrase or key of another slot), and marks the
    /// slot preferred. Returns the slot.
    ///
    /// The minimal PBKDF (PBKDF2, 1000 iterations) is safe because keyward's
    /// keys are 32 uniformly random bytes: a PBKDF slows the guessing of a
    /// low-entropy passphrase; against 2^256 possible keys it adds nothing.
    ///
    /// Preferred, because cryptsetup tries a key on every keyslot in turn,
    /// paying each slot's PBKDF, preferred slots first: with the passphrase
    /// slot first (argon2id, 1-2 s on real hardware, far more under qemu
    /// TCG), every unlock by the mesh would pay that before reaching
    /// keyward's slot. Preferred, keyward's slot is tried first; a typed
    /// passphrase pays its 1000 PBKDF2 iterations (about a millisecond)
    /// extra. If the slot cannot be marked, it is removed again and the
    /// error returned, so a bind never leaves a slot half set up.
    pub fn add_key(&self, existing: &[u8], new_key: &[u8]) -> Result<u32, LuksError> {
        let before = self.keyslots()?;
        let newf = KeyFd::new(new_key).map_err(|e| self.failed("luksAddKey", e.to_string()))?;
        let np = newf.path();
        self.run(
            "luksAddKey",
            &[
                "luksAddKey",
                "--batch-mode",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file=-",
                self.dev(),
                &np,
            ],
            Some(existing),
        )?;
        let after = self.keyslots()?;
        let slot = after
            .into_iter()
            .find(|s| !before.contains(s))
            .ok_or_else(|| self.failed("luksAddKey", "no new keyslot appeared".into()))?;
        if let Err(e) = self.prefer_slot(slot) {
            let _ = self.kill_slot(slot, existing);
            return Err(e);
        }
        Ok(slot)
    }

    /// Marks `slot` preferred: cryptsetup tries it before the others (see
    /// [`Device::add_key`]). Needs no key.
    pub fn prefer_slot(&self, slot: u32) -> Result<(), LuksError> {
        let s = slot.to_string();
        self.run(
            "config --priority prefer",
            &[
                "config",
                "--batch-mode",
                "--priority",
                "prefer",
                "--key-slot",
                &s,
                self.dev(),
            ],
            None,
        )
        .map(|_| ())
    }

    /// Whether `slot` is marked preferred (LUKS2 priority 2).
    pub fn slot_preferred(&self, slot: u32) -> Result<bool, LuksError> {
        let m = self.metadata()?;
        let priority = m.keyslots.get(&slot.to_string()).and_then(|k| k.priority);
        Ok(priority == Some(2))
    }

    /// Removes a keyslot, authorized by a key of a slot that stays.
    pub fn kill_slot(&self, slot: u32, authorizing_key: &[u8]) -> Result<(), LuksError> {
        let s = slot.to_string();
        self.run(
            "luksKillSlot",
            &[
                "luksKillSlot",
                "--batch-mode",
                "--key-file=-",
                self.dev(),
                &s,
            ],
            Some(authorizing_key),
        )
        .map(|_| ())
    }

    /// Opens the device as /dev/mapper/`name` with `key` (needs dm-crypt).
    pub fn open(&self, name: &str, key: &[u8]) -> Result<(), LuksError> {
        self.run(
            "open",
            &["open", "--key-file=-", self.dev(), name],
            Some(key),
        )
        .map(|_| ())
    }

    /// keyward's current token (the highest epoch) and its LUKS2 token
    /// id, if the device is bound.
    pub fn token(&self) -> Result<Option<(u32, Token)>, LuksError> {
        Ok(self.tokens()?.pop())
    }

    /// Every keyward token, lowest epoch first. More than one only while
    /// a boot-key change waits for the new initramfs: the older tokens
    /// name the old boot key's epochs.
    pub fn tokens(&self) -> Result<Vec<(u32, Token)>, LuksError> {
        tokens_in(&self.path, &self.metadata()?)
    }

    /// `tokens` read straight from the header when possible (see
    /// `token_direct`).
    pub fn tokens_direct(&self) -> Result<Vec<(u32, Token)>, LuksError> {
        // A missing or unreadable device is said as such, also where
        // cryptsetup (the fallback) is not installed.
        if let Err(e) = std::fs::File::open(&self.path) {
            return Err(LuksError::Invalid {
                device: self.path.clone(),
                msg: format!("cannot be read: {e}"),
            });
        }
        match read_header_json(&self.path) {
            Some(meta) => tokens_in(&self.path, &meta),
            None => self.tokens(),
        }
    }

    /// keyward's token read straight from the LUKS2 header, without
    /// running cryptsetup: the unlock path at boot then starts no process.
    /// The primary header's checksum is verified; on any doubt this falls
    /// back to asking cryptsetup.
    pub fn token_direct(&self) -> Result<Option<(u32, Token)>, LuksError> {
        Ok(self.tokens_direct()?.pop())
    }

    /// Writes a token beside the keyward tokens already there; returns
    /// its id.
    pub fn add_token(&self, tok: &Token) -> Result<u32, LuksError> {
        let before: Vec<u32> = self.tokens()?.into_iter().map(|(i, _)| i).collect();
        let json = serde_json::to_vec(tok).expect("token serializes");
        self.run(
            "token import",
            &["token", "import", "--json-file=-", self.dev()],
            Some(&json),
        )?;
        self.tokens()?
            .into_iter()
            .map(|(i, _)| i)
            .find(|i| !before.contains(i))
            .ok_or_else(|| self.failed("token import", "no new token appeared".into()))
    }

    /// Writes the token, replacing the current keyward token.
    pub fn set_token(&self, tok: &Token) -> Result<u32, LuksError> {
        let old = self.token()?;
        let json = serde_json::to_vec(tok).expect("token serializes");
        let mut args = vec!["token", "import", "--json-file=-"];
        let id;
        if let Some((i, _)) = &old {
            id = i.to_string();
            args.extend(["--token-id", &id, "--token-replace"]);
        }
        args.push(self.dev());
        self.run("token import", &args, Some(&json))?;
        Ok(self.token()?.map(|(i, _)| i).unwrap_or_default())
    }

    /// Rewrites the keyward token with LUKS2 id `id`.
    pub fn replace_token(&self, id: u32, tok: &Token) -> Result<(), LuksError> {
        let json = serde_json::to_vec(tok).expect("token serializes");
        let ids = id.to_string();
        self.run(
            "token import",
            &[
                "token",
                "import",
                "--json-file=-",
                "--token-id",
                &ids,
                "--token-replace",
                self.dev(),
            ],
            Some(&json),
        )
        .map(|_| ())
    }

    pub fn remove_token(&self, id: u32) -> Result<(), LuksError> {
        let s = id.to_string();
        self.run(
            "token remove",
            &["token", "remove", "--token-id", &s, self.dev()],
            None,
        )
        .map(|_| ())
    }

    /// Formats an image for tests and demos (cheap PBKDF).
    pub fn format_for_tests(&self, passphrase: &[u8]) -> Result<(), LuksError> {
        self.run(
            "luksFormat",
            &[
                "luksFormat",
                "--type",
                "luks2",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--batch-mode",
                "--key-file=-",
                self.dev(),
            ],
            Some(passphrase),
        )
        .map(|_| ())
    }
}

fn tokens_in(device: &Path, m: &Metadata) -> Result<Vec<(u32, Token)>, LuksError> {
    let mut out = Vec::new();
    for (id, t) in &m.tokens {
        let ours = TokenType::deserialize(t).is_ok_and(|t| t.kind == TOKEN_TYPE);
        if ours {
            let tok = Token::deserialize(t).map_err(|e| LuksError::Invalid {
                device: device.into(),
                msg: format!("keyward token {id} is damaged ({e}); unbind and bind again"),
            })?;
            let id = id.parse().map_err(|_| LuksError::Invalid {
                device: device.into(),
                msg: format!("odd token id {id}"),
            })?;
            out.push((id, tok));
        }
    }
    out.sort_by_key(|(id, t)| (t.epoch, *id));
    Ok(out)
}

/// The JSON area of a LUKS2 primary header, if its magic, version, size
/// and sha256 checksum are right (LUKS2 on-disk format: a 4096-byte binary
/// header, then the JSON area, both covered by the checksum).
fn read_header_json(path: &Path) -> Option<Metadata> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut bin = vec![0u8; 4096];
    f.read_exact(&mut bin).ok()?;
    if &bin[..6] != b"LUKS\xba\xbe" || u16::from_be_bytes([bin[6], bin[7]]) != 2 {
        return None;
    }
    let hdr_size = usize::try_from(u64::from_be_bytes(bin[8..16].try_into().ok()?)).ok()?;
    if !(8192..=MAX_METADATA).contains(&hdr_size) || !bin[72..104].starts_with(b"sha256\0") {
        return None;
    }
    let mut json = vec![0u8; hdr_size - 4096];
    f.read_exact(&mut json).ok()?;
    let want: [u8; 32] = bin[448..480].try_into().ok()?;
    bin[448..512].fill(0);
    let mut h = Sha256::new();
    h.update(&bin);
    h.update(&json);
    if h.finalize().as_slice() != want {
        return None;
    }
    let end = json.iter().position(|&b| b == 0).unwrap_or(json.len());
    serde_json::from_slice(&json[..end]).ok()
}

/// Whether cryptsetup can be run here (tests skip otherwise).
pub fn available() -> bool {
    Command::new("cryptsetup")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata as cryptsetup dumps it, trimmed: a foreign token is
    /// passed over, ours is read, a damaged one of ours is said so.
    #[test]
    fn metadata_is_read_as_typed_fields() {
        let ours = r#"{"type":"keyward","keyslots":["1"],"version":1,"mesh":"m",
            "owner":"o","name":"web1","epoch":3,"threshold":2,"guardians":[]}"#;
        let json = format!(
            r#"{{"keyslots":{{"0":{{"type":"luks2"}},"1":{{"type":"luks2","priority":2}}}},
                "tokens":{{"0":{{"type":"systemd-tpm2","keyslots":["0"]}},"4":{ours}}},
                "segments":{{}},"digests":{{}},"config":{{"json_size":"12288"}}}}"#
        );
        let m: Metadata = serde_json::from_str(&json).unwrap();
        let mut slots: Vec<&String> = m.keyslots.keys().collect();
        slots.sort();
        assert_eq!(slots, ["0", "1"]);
        assert_eq!(m.keyslots["1"].priority, Some(2));
        assert_eq!(m.keyslots["0"].priority, None);
        let toks = tokens_in(Path::new("/dev/x"), &m).unwrap();
        assert_eq!(toks.len(), 1);
        assert_eq!((toks[0].0, toks[0].1.epoch), (4, 3));
        // no tokens, no keyslots: nothing, not an error
        let empty: Metadata = serde_json::from_str("{}").unwrap();
        assert!(tokens_in(Path::new("/dev/x"), &empty).unwrap().is_empty());
        // a keyward token that is not one
        let bad = r#"{"tokens":{"1":{"type":"keyward","epoch":"x"}}}"#;
        let m: Metadata = serde_json::from_str(bad).unwrap();
        let e = tokens_in(Path::new("/dev/x"), &m).unwrap_err().to_string();
        assert!(e.contains("keyward token 1 is damaged"), "{e}");
    }

    #[test]
    fn add_test_token_and_kill_on_a_real_image() {
        if !available() {
            eprintln!("skipped: cryptsetup not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(20 << 20)
            .unwrap();
        let d = Device::new(&img);
        d.format_for_tests(b"passphrase").unwrap();
        let key = [7u8; 32];
        assert!(d.test_key(&key, None).is_err());
        let slot = d.add_key(b"passphrase", &key).unwrap();
        assert_eq!(slot, 1);
        // tried before the passphrase's slot, whose PBKDF is the costly one
        assert!(d.slot_preferred(slot).unwrap());
        assert!(!d.slot_preferred(0).unwrap());
        d.test_key(&key, Some(slot)).unwrap();
        d.test_key(b"passphrase", None).unwrap();
        assert!(d.token().unwrap().is_none());
        let mut tok = Token {
            kind: TOKEN_TYPE.into(),
            keyslots: vec![slot.to_string()],
            version: 1,
            mesh: "m".into(),
            owner: "o".into(),
            name: "web1".into(),
            epoch: 1,
            threshold: 2,
            guardians: vec![TokenGuardian {
                id: "g".into(),
                addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
                name: "node1".into(),
            }],
            boot: None,
        };
        d.set_token(&tok).unwrap();
        assert_eq!(d.token().unwrap().unwrap().1, tok);
        // the header is read directly, checksum verified, same answer
        assert!(
            read_header_json(&img).is_some(),
            "direct LUKS2 header read failed"
        );
        assert_eq!(d.token_direct().unwrap(), d.token().unwrap());
        tok.epoch = 2;
        d.set_token(&tok).unwrap();
        assert_eq!(d.token().unwrap().unwrap().1.epoch, 2);
        d.kill_slot(slot, b"passphrase").unwrap();
        assert!(d.test_key(&key, None).is_err());
        let e = d.test_key(b"wrong", None).unwrap_err().to_string();
        assert!(e.contains("open --test-passphrase failed"), "{e}");
    }
}
