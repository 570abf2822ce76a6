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
    #[error("no origin in {dir} (or held by the members asked) matches --origin {wanted}")]
    NoSuchOrigin { dir: PathBuf, wanted: String },
    #[error("{0} findings: the logs above do not verify as they should")]
    Findings(usize),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Daemon(keyward_node::control::CtlError),
    #[error("{0}: only an auditor member may fetch logs; run `keyward audit fetch` on the auditor's node (joined with a token from `keyward invite --role auditor`)")]
    NotAuditor(String),
    #[error("none of the {0} members asked holds any log (are they reachable, and do they log? see `keyward status` on them)")]
    NothingHeld(usize),
    #[error("no active member is `{0}` (give its node id, its name, or the id's last characters)")]
    NoSuchMember(String),
    #[error("no holder gave a checkpoint signed by the origin: {0}")]
    NoCheckpoint(String),
    #[error("{0} origins or segments could not be fetched from any holder (above); run the fetch again to resume, or `keyward audit verify` what came")]
    Incomplete(usize),
    #[error("cannot print the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl AuditError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |err| AuditError::Io { path, err }
    }
}
