//! Why an audit command failed: each says what was wrong and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The io error is in the message (not a `#[source]`), so it is shown
    /// once however the caller prints the chain.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error(
        "{0} exists: keygen never overwrites an identity; choose another --out or move it aside"
    )]
    Exists(PathBuf),
    #[error("{path}: not an identity keyward can use ({why}); give an age X25519 identity (`keyward audit keygen`, `age-keygen`) or an unencrypted SSH key")]
    Identity { path: PathBuf, why: String },
    #[error("{0} holds no origin directory (named by a node id, as `keyward logs export --out DIR` writes them)")]
    NoOrigins(PathBuf),
    #[error("no origin in {dir} matches --origin {wanted}")]
    NoSuchOrigin { dir: PathBuf, wanted: String },
    #[error("{0} findings: the logs above do not verify as they should")]
    Findings(usize),
    #[error("cannot print the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl AuditError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |err| AuditError::Io { path, err }
    }
}
