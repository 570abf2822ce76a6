//! The add-checkpoint request, in C2SP tlog-witness's body format.
//!
//! ```text
//! old <old size>\n
//! <base64 proof hash>\n      (0 to 63 lines)
//! \n
//! <signed checkpoint note>
//! ```
//!
//! The old size is ASCII decimal without leading zeroes (`0` for zero).
//! Keeping the standard body means a keyward origin could also ask any
//! C2SP witness, and a keyward witness could serve any C2SP log client.

use base64::Engine;

use super::super::checkpoint::MAX_NOTE;
use super::super::merkle::Hash;
use super::MAX_PROOF;

/// Largest request body accepted: the old size line, 63 proof lines, the
/// blank line and a note.
pub const MAX_BODY: usize = 32 + MAX_PROOF * 45 + 1 + MAX_NOTE;

/// What an origin sends a witness: "cosign this checkpoint, which extends
/// the one of `old_size` you last cosigned, as `proof` shows".
#[derive(Clone, Debug, PartialEq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    pub note: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("add-checkpoint body of {len} bytes exceeds the {MAX_BODY}-byte limit")]
    TooLarge { len: usize },
    #[error("malformed add-checkpoint body: {0}")]
    Malformed(&'static str),
    #[error("add-checkpoint body has more than {MAX_PROOF} proof lines")]
    ProofTooLong,
}

impl AddCheckpoint {
    /// The C2SP body (the sender keeps within the limits it would refuse).
    pub fn to_body(&self) -> Result<Vec<u8>, RequestError> {
        if self.proof.len() > MAX_PROOF {
            return Err(RequestError::ProofTooLong);
        }
        let mut b = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            b.extend_from_slice(h.to_string().as_bytes());
            b.push(b'\n');
        }
        b.push(b'\n');
        b.extend_from_slice(&self.note);
        if b.len() > MAX_BODY {
            return Err(RequestError::TooLarge { len: b.len() });
        }
        Ok(b)
    }

    /// Parses a C2SP body; the note itself is checked by the witness.
    pub fn from_body(body: &[u8]) -> Result<Self, RequestError> {
        if body.len() > MAX_BODY {
            return Err(RequestError::TooLarge { len: body.len() });
        }
        let (first, mut rest) =
            split_line(body).ok_or(RequestError::Malformed("no old size line"))?;
        let digits = first.strip_prefix(b"old ").ok_or(RequestError::Malformed(
            "the first line is not `old <size>`",
        ))?;
        let old_size = decimal(digits).ok_or(RequestError::Malformed(
            "the old size is not a decimal without leading zeroes",
        ))?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = split_line(rest).ok_or(RequestError::Malformed(
                "no blank line before the checkpoint",
            ))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF {
                return Err(RequestError::ProofTooLong);
            }
            let h = base64::engine::general_purpose::STANDARD
                .decode(line)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or(RequestError::Malformed(
                    "a proof line is not a base64 32-byte hash",
                ))?;
            proof.push(Hash(h));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            note: rest.to_vec(),
        })
    }
}

fn split_line(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b'\n')?;
    Some((&b[..i], &b[i + 1..]))
}

fn decimal(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 20 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if d.len() > 1 && d[0] == b'0' {
        return None;
    }
    std::str::from_utf8(d).ok()?.parse().ok()
}
