//! Who can read a source's segments.
//!
//! Every segment is encrypted to all the auditor recipients (the auditor's
//! identity is made on a dedicated machine and never on a node). A
//! non-confidential source is also encrypted to the local admin recipient,
//! whose identity stays on the node (root only), so the admin can read it;
//! a confidential source is not, so nothing on the node can. Recipients are
//! age X25519 (`age1...`) or SSH public keys (`ssh-ed25519`, `ssh-rsa`),
//! the key kinds operators already hold.

use std::fmt;
use std::io::Write;

use super::LogError;

/// One parsed recipient.
pub enum Recipient {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl Recipient {
    fn as_age(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r,
        }
    }
}

impl std::str::FromStr for Recipient {
    type Err = LogError;
    fn from_str(s: &str) -> Result<Self, LogError> {
        let s = s.trim();
        if s.len() > 16 * 1024 {
            return Err(LogError::Recipient(s.chars().take(32).collect()));
        }
        if s.starts_with("age1") {
            return s
                .parse()
                .map(Recipient::X25519)
                .map_err(|_| LogError::Recipient(s.chars().take(80).collect()));
        }
        s.parse()
            .map(Recipient::Ssh)
            .map_err(|_| LogError::Recipient(s.chars().take(80).collect()))
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::X25519(r) => write!(f, "X25519({r})"),
            Recipient::Ssh(r) => write!(f, "Ssh({r})"),
        }
    }
}

/// The recipients of one node's logs.
#[derive(Debug)]
pub struct Recipients {
    auditors: Vec<Recipient>,
    admin: Option<Recipient>,
}

impl Recipients {
    /// At least one auditor is required: a segment nobody off the node can
    /// read would defeat "investigators can read the logs even when the
    /// server is destroyed".
    pub fn new(auditors: Vec<Recipient>, admin: Option<Recipient>) -> Result<Self, LogError> {
        if auditors.is_empty() {
            return Err(LogError::NoAuditor);
        }
        Ok(Recipients { auditors, admin })
    }

    /// Parses recipient strings (as written in keyward.toml).
    pub fn parse(auditors: &[&str], admin: Option<&str>) -> Result<Self, LogError> {
        let auditors = auditors
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<Recipient>, _>>()?;
        let admin = admin.map(str::parse).transpose()?;
        Self::new(auditors, admin)
    }

    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// The recipients of a source: the auditors, plus the admin unless the
    /// source is confidential.
    fn for_source(&self, confidential: bool) -> Result<Vec<&dyn age::Recipient>, LogError> {
        let mut v: Vec<&dyn age::Recipient> = self.auditors.iter().map(|r| r.as_age()).collect();
        if !confidential {
            v.push(self.admin.as_ref().ok_or(LogError::NoAdmin)?.as_age());
        }
        Ok(v)
    }

    /// Encrypts `plaintext` as a standard age file (binary, not armored) to
    /// the source's recipients, so `age -d -i auditor.key` opens it.
    pub fn encrypt(&self, confidential: bool, plaintext: &[u8]) -> Result<Vec<u8>, LogError> {
        let enc = age::Encryptor::with_recipients(self.for_source(confidential)?.into_iter())
            .map_err(|e| LogError::Encrypt(e.to_string()))?;
        // age adds 16 bytes per 64 KiB chunk plus a header of ~100 bytes
        // per recipient.
        let mut out = Vec::with_capacity(plaintext.len() + plaintext.len() / 4096 + 1024);
        let mut w = enc
            .wrap_output(&mut out)
            .map_err(|e| LogError::Encrypt(e.to_string()))?;
        w.write_all(plaintext)
            .and_then(|_| w.finish().map(|_| ()))
            .map_err(|e| LogError::Encrypt(e.to_string()))?;
        Ok(out)
    }
}

/// Decrypts an age file with one identity, refusing output larger than
/// `max` bytes (the caller knows the bound from the signed header).
pub fn decrypt(
    identity: &dyn age::Identity,
    ciphertext: &[u8],
    max: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, LogError> {
    use std::io::Read;
    let d =
        age::Decryptor::new_buffered(ciphertext).map_err(|e| LogError::Decrypt(e.to_string()))?;
    let r = d
        .decrypt(std::iter::once(identity))
        .map_err(|e| LogError::Decrypt(e.to_string()))?;
    let mut out = zeroize::Zeroizing::new(Vec::new());
    let n = r
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| LogError::Decrypt(e.to_string()))?;
    if n > max {
        return Err(LogError::Decrypt(format!(
            "plaintext exceeds the {max}-byte bound"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_recipient_strings_never_panic(s in "\\PC{0,200}", pre in prop::sample::select(vec!["", "age1", "ssh-ed25519 ", "ssh-rsa "])) {
            let _ = format!("{pre}{s}").parse::<Recipient>();
        }

        #[test]
        fn arbitrary_ciphertexts_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let id = age::x25519::Identity::generate();
            prop_assert!(decrypt(&id, &bytes, 1024).is_err());
        }
    }

    #[test]
    fn decryption_output_is_bounded() {
        let id = age::x25519::Identity::generate();
        let r = Recipients::new(vec![Recipient::X25519(id.to_public())], None).unwrap();
        let ct = r.encrypt(true, &[7; 100]).unwrap();
        assert_eq!(decrypt(&id, &ct, 100).unwrap().len(), 100);
        assert!(matches!(decrypt(&id, &ct, 99), Err(LogError::Decrypt(_))));
    }
}
