//! `keyward audit`: the auditor's offline tools. The auditor is a roster
//! member that holds no shares and releases nothing; its age identity is
//! the recipient every segment body is encrypted to. These commands run on
//! the auditor's own machine, need no keyward config, no node key and no
//! daemon: they read an audit directory (docs/design.md, "Audit
//! directory"), which today is what `keyward logs export --out DIR` writes
//! on each node (fetching over the network comes later).

pub mod decrypt;
pub mod dir;
pub mod error;
pub mod identity;
pub mod keygen;
pub mod time;
pub mod verify;
pub mod witnesses;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

pub use error::AuditError;

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    cmd: AuditCmd,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Make the auditor's age X25519 identity (0600, never overwritten) and
    /// print its public recipient (age1...) for the `[logs] auditors` of every node.
    /// An identity made by `age-keygen` works as well.
    Keygen {
        /// Where to write the identity.
        #[arg(long, default_value = "auditor.key")]
        out: PathBuf,
    },
    /// Check every origin of an audit directory: checkpoint signature,
    /// tiles, every segment's inclusion and signature, sequence gaps and
    /// witness cosignatures. Exits 0 only when every origin is clean.
    ///
    /// DIR holds one directory per origin (`<node id>/checkpoint`,
    /// `tile/...`, `segments/...`), as `keyward logs export --out DIR`
    /// writes it on each node; `keyward audit fetch` (pulling from the
    /// mesh over the network) comes later.
    Verify {
        /// The audit directory: one `<node id>/` per origin.
        dir: PathBuf,
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print the lines of the segments that verify, in log order, each
    /// with its trusted sender fields. Segments that do not verify are
    /// reported on stderr and skipped (exit status 1). Plaintext goes to
    /// stdout only, never to a file.
    Decrypt {
        /// The audit directory: one `<node id>/` per origin.
        dir: PathBuf,
        /// The auditor's identity file (age X25519 as from `keyward audit
        /// keygen` or `age-keygen`, or an unencrypted SSH key).
        #[arg(short = 'i', long = "identity")]
        identity: PathBuf,
        /// Only this origin (its node id, or the id's last characters).
        #[arg(long)]
        origin: Option<String>,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only lines at or after T (RFC 3339, or unix seconds).
        #[arg(long, value_parser = time::parse_arg)]
        since: Option<u64>,
        /// Only lines before T (RFC 3339, or unix seconds).
        #[arg(long, value_parser = time::parse_arg)]
        until: Option<u64>,
        #[arg(long, value_enum, default_value_t = Format::Rfc5424)]
        format: Format,
    },
}

/// How `audit decrypt` prints a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// RFC 5424 syslog, trusted fields in an SD element.
    Rfc5424,
    /// One JSON object per line.
    Json,
}

/// Runs an audit command. Findings are printed and returned as
/// [`AuditError::Findings`], so the exit status is non-zero.
pub fn run(a: &AuditArgs) -> Result<(), AuditError> {
    match &a.cmd {
        AuditCmd::Keygen { out } => keygen::keygen(out),
        AuditCmd::Verify { dir, json } => verify::run(dir, *json),
        AuditCmd::Decrypt {
            dir,
            identity,
            origin,
            source,
            since,
            until,
            format,
        } => {
            let id = identity::load(identity)?;
            decrypt::run(
                dir,
                id.as_ref(),
                &decrypt::Select {
                    origin: origin.clone(),
                    source: source.clone(),
                    since: *since,
                    until: *until,
                },
                *format,
            )
        }
    }
}
