//! The `/dev/log`-style unix datagram socket.
//!
//! Each datagram is one message, kept as received. With SO_PASSCRED the
//! kernel attaches the sender's pid, uid and gid (SCM_CREDENTIALS) to every
//! datagram; an unprivileged sender cannot claim another's (only root may
//! send other credentials, as for journald), so they go into the line as
//! its trusted sender. The socket is mode 0666, as `/dev/log` is: anyone
//! may log, and who did is recorded.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::path::Path;

use keyward_core::log::line::{Sender, MAX_MSG};
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, UnixAddr};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use super::{clear_socket_path, line, set_mode, MAX_BATCH_BYTES, MAX_BATCH_LINES};
use crate::logs::{Batch, Inbox};

/// Binds `path`: a stale socket is replaced, a live one (rsyslog's,
/// journald's) or a non-socket file is not.
pub fn bind(path: &Path) -> Result<UnixDatagram, String> {
    let live = |p: &Path| {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect(p))
            .is_ok()
    };
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
    Ok(sock)
}

/// One datagram: its bytes (cut at the line limit) and the kernel's
/// credentials of its sender.
#[allow(clippy::ptr_arg)] // nix's recvmsg takes the cmsg buffer as &mut Vec
fn recv_one(
    sock: &UnixDatagram,
    buf: &mut [u8],
    cmsg: &mut Vec<u8>,
) -> io::Result<(usize, Sender)> {
    sock.try_io(Interest::READABLE, || {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = socket::recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut sender = Sender::default();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmCredentials(cred) = c {
                sender = Sender {
                    pid: Some(cred.pid() as u32),
                    uid: Some(cred.uid()),
                    gid: Some(cred.gid()),
                };
            }
        }
        Ok((msg.bytes.min(MAX_MSG), sender))
    })
}

/// Reads datagrams until the inbox closes: everything already queued in
/// the socket (up to the batch bounds) goes into one batch.
pub async fn run(source: String, sock: UnixDatagram, inbox: Inbox) {
    let mut buf = vec![0u8; MAX_MSG];
    let mut cmsg = nix::cmsg_space!(libc::ucred);
    loop {
        if let Err(e) = sock.readable().await {
            tracing::error!("logs.source `{source}`: socket failed: {e}; this source stops");
            return;
        }
        let mut lines = Vec::new();
        let mut bytes = 0;
        while lines.len() < MAX_BATCH_LINES && bytes < MAX_BATCH_BYTES {
            match recv_one(&sock, &mut buf, &mut cmsg) {
                Ok((n, sender)) => {
                    if n == 0 {
                        continue;
                    }
                    bytes += n;
                    lines.push(line(buf[..n].to_vec(), sender));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("logs.source `{source}`: receive failed: {e}");
                    break;
                }
            }
        }
        if lines.is_empty() {
            continue;
        }
        if inbox
            .send(Batch {
                source: source.clone(),
                lines,
                ack: None,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}
