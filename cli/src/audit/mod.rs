//! `keyward audit`: the auditor's offline tools. The auditor is a roster
//! member that holds no shares and releases nothing; its age identity is
//! the recipient every segment body is encrypted to. `fetch` copies every
//! origin's log from the mesh into an audit directory (docs/design.md,
//! "Audit directory") through the auditor's own keywardd (an auditor
//! member); the others run on the auditor's offline machine and need no
//! keyward config, node key or daemon: they read an audit directory, as
//! `fetch` or `keyward logs export --out DIR` (on each node) writes it.

pub mod decrypt;
pub mod dir;
pub mod error;
pub mod fetch;
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
    /// Copy every origin's log the mesh holds into DIR (resumable: run it
    /// again to go on), through this node's keywardd, which must be an
    /// auditor member. An origin's log comes from itself or, when it is
    /// gone, from its replicas.
    Fetch {
        /// The audit directory to fill (one `<node id>/` per origin).
        #[arg(long)]
        out: PathBuf,
        /// Ask only this member (node id, name, or the id's last
        /// characters); repeatable. Default: every active guardian.
        #[arg(long)]
        from: Vec<String>,
        /// Only this origin (its node id, or the id's last characters).
        #[arg(long)]
        origin: Option<String>,
        /// Segments fetched at once.
        #[arg(long, default_value_t = fetch::DEFAULT_JOBS)]
        jobs: usize,
    },
    /// Check every origin of an audit directory: checkpoint signature,
    /// tiles, every segment's inclusion and signature, sequence gaps and
    /// witness cosignatures. Exits 0 only when every origin is clean.
    ///
    /// DIR holds one directory per origin (`<node id>/checkpoint`,
    /// `tile/...`, `segments/...`), as `keyward audit fetch` or
    /// `keyward logs export --out DIR` writes it.
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
/// [`AuditError::Findings`], so the exit status is non-zero. Only `fetch`
/// reads the config (`config`: its path), for keywardd's control socket.
pub fn run(a: &AuditArgs, config: &std::path::Path) -> Result<(), AuditError> {
    match &a.cmd {
        AuditCmd::Keygen { out } => keygen::keygen(out),
        AuditCmd::Fetch {
            out,
            from,
            origin,
            jobs,
        } => {
            let cfg = keyward_node::config::Config::load(config)
                .map_err(|e| AuditError::Config(e.to_string()))?;
            fetch::run(
                &crate::client(&cfg),
                &fetch::Fetch {
                    out,
                    from,
                    origin: origin.as_deref(),
                    jobs: *jobs,
                },
            )
        }
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
