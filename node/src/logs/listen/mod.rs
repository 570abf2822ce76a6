//! The ingest listeners: one task per `[[logs.source]]` (and one for the
//! pipe socket) that moves bytes from sockets and files into the spool's
//! [`Inbox`]. What the bytes mean (syslog, RFC 6587 frames, RELP, tail
//! positions, the pipe protocol) is decided in `keyward_core::log::ingest`;
//! these tasks only read, stamp the receive time and the kernel's sender
//! credentials, and wait for the spool's acks where the sender is owed one.
//!
//! - [`unix`]: `/dev/log`-style datagrams with SCM_CREDENTIALS.
//! - [`udp`]: syslog datagrams on loopback.
//! - [`datagram`]: how both are read: on a thread of their own, many
//!   datagrams per system call.
//! - [`tcp`]: RFC 6587 syslog streams on loopback.
//! - [`relp`]: RELP sessions; `rsp 200` after the spool's ack.
//! - [`tail`]: files followed across rotation, position saved after acks.
//! - [`pipe`]: the `keyward logs write` socket, and its client.

mod accept;
pub mod datagram;
pub mod pipe;
pub mod relp;
pub mod tail;
pub mod tcp;
pub mod udp;
pub mod unix;

#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keyward_core::log::line::{Line, Sender};
use tokio::task::JoinHandle;

use super::config::{LogsConfig, SourceInput};
use super::Inbox;

/// Most lines one listener puts in one batch.
pub const MAX_BATCH_LINES: usize = 4096;
/// Most message bytes one listener puts in one batch.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most connections one TCP, RELP or pipe listener serves at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Why a listener could not start: which source, what failed, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("logs.source `{name}`: {what}")]
    Source { name: String, what: String },
    #[error("logs.pipe_socket {}: {what}", path.display())]
    Pipe { path: PathBuf, what: String },
}

fn source_err(source: &str, what: impl Into<String>) -> ListenError {
    ListenError::Source {
        name: source.into(),
        what: what.into(),
    }
}

/// Opens every configured source and starts its task. Call inside the
/// tokio runtime. `spool_dir` holds the tail positions (`tail/<source>`).
/// Nothing is started unless everything could be opened.
pub fn spawn_listeners(
    cfg: &LogsConfig,
    spool_dir: &Path,
    inbox: Inbox,
) -> Result<Vec<JoinHandle<()>>, ListenError> {
    let mut tasks: Vec<Box<dyn FnOnce() -> JoinHandle<()>>> = Vec::new();
    for s in &cfg.sources {
        let name = s.name.clone();
        let inbox = inbox.clone();
        match &s.input {
            SourceInput::Unix { path } => {
                let sock = unix::bind(path).map_err(|e| source_err(&name, e))?;
                tasks.push(Box::new(move || tokio::spawn(unix::run(name, sock, inbox))));
            }
            SourceInput::Udp { listen } => {
                let sock = udp::bind(*listen).map_err(|e| source_err(&name, e))?;
                tasks.push(Box::new(move || tokio::spawn(udp::run(name, sock, inbox))));
            }
            SourceInput::Tcp { listen } => {
                let l = tcp::bind(*listen).map_err(|e| source_err(&name, e))?;
                tasks.push(Box::new(move || tokio::spawn(tcp::run(name, l, inbox))));
            }
            SourceInput::Relp { listen } => {
                let l = tcp::bind(*listen).map_err(|e| source_err(&name, e))?;
                tasks.push(Box::new(move || tokio::spawn(relp::run(name, l, inbox))));
            }
            SourceInput::File { path } => {
                let t =
                    tail::Tail::new(&name, path, spool_dir).map_err(|e| source_err(&name, e))?;
                tasks.push(Box::new(move || tokio::spawn(t.run(inbox))));
            }
            SourceInput::Pipe => {}
        }
    }
    let pipes: Vec<String> = cfg
        .sources
        .iter()
        .filter(|s| s.input == SourceInput::Pipe)
        .map(|s| s.name.clone())
        .collect();
    if !pipes.is_empty() {
        let path = cfg.pipe_socket.clone();
        let l = pipe::bind(&path).map_err(|what| ListenError::Pipe { path, what })?;
        let inbox = inbox.clone();
        tasks.push(Box::new(move || tokio::spawn(pipe::run(l, pipes, inbox))));
    }
    Ok(tasks.into_iter().map(|t| t()).collect())
}

/// A line received now.
fn line(msg: Vec<u8>, sender: Sender) -> Line {
    Line {
        time: crate::clock::now(),
        sender,
        msg,
    }
}

/// Prepares `path` for a socket to be bound there: creates its directory,
/// removes a stale socket (nobody accepts on it), and refuses to remove a
/// live one or anything that is not a socket. `live` tries to reach the
/// socket there.
fn clear_socket_path(
    path: &Path,
    live: impl Fn(&Path) -> bool,
    owner_hint: &str,
) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot inspect {}: {e}", path.display())),
        Ok(m) if !m.file_type().is_socket() => Err(format!(
            "{} exists and is not a socket; keyward will not replace it: remove it or choose another path",
            path.display()
        )),
        Ok(_) if live(path) => Err(format!(
            "cannot bind {}: address in use ({owner_hint}; choose another path or stop it)",
            path.display()
        )),
        Ok(_) => fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display())),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set mode {mode:o} on {}: {e}", path.display()))
}
