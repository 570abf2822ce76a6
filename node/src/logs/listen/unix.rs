//! The `/dev/log`-style unix datagram socket.
//!
//! Each datagram is one message, kept as received. With SO_PASSCRED the
//! kernel attaches the sender's pid, uid and gid (SCM_CREDENTIALS) to every
//! datagram; an unprivileged sender cannot claim another's (only root may
//! send other credentials, as for journald), so they go into the line as
//! its trusted sender. The socket is mode 0666, as `/dev/log` is: anyone
//! may log, and who did is recorded. It is read on a thread of its own
//! ([`super::datagram`]): a sender blocks while the kernel's queue of 512
//! datagrams (`net.unix.max_dgram_qlen`) is full.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use nix::sys::socket::{self, sockopt};

use super::datagram::{self, Credentials, STOP_POLL};
use super::{clear_socket_path, set_mode};
use crate::logs::Inbox;

/// Binds `path`: a stale socket is replaced, a live one (rsyslog's,
/// journald's) or a non-socket file is not.
pub fn bind(path: &Path) -> Result<UnixDatagram, String> {
    let live = |p: &Path| UnixDatagram::unbound().and_then(|s| s.connect(p)).is_ok();
    clear_socket_path(
        path,
        live,
        "rsyslog or journald owns it; set path = \"/run/keyward/log\" and forward to it, or stop them",
    )?;
    let sock =
        UnixDatagram::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    set_mode(path, 0o666)?;
    socket::setsockopt(&sock, sockopt::PassCred, &true)
        .map_err(|e| format!("cannot enable SO_PASSCRED on {}: {e}", path.display()))?;
    sock.set_read_timeout(Some(STOP_POLL))
        .map_err(|e| format!("cannot set a receive timeout on {}: {e}", path.display()))?;
    Ok(sock)
}

/// Receives datagrams, each with its sender's credentials, until the
/// inbox closes or the future is dropped; the socket is closed then.
pub async fn run(source: String, sock: UnixDatagram, inbox: Inbox) {
    datagram::run(source, sock, Credentials::Kernel, inbox).await
}
