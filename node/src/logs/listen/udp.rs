//! Syslog over UDP on loopback (RFC 5426): one datagram, one message, kept
//! as received. No sender credentials exist for UDP, so the line has none;
//! the config only lets it listen on a loopback address. It is read on a
//! thread of its own ([`super::datagram`]): UDP has no back-pressure, so
//! what the kernel's queue cannot hold while nobody reads is dropped.

use std::net::{SocketAddr, UdpSocket};

use super::datagram::{self, Credentials, STOP_POLL};
use crate::logs::Inbox;

pub fn bind(addr: SocketAddr) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind(addr).map_err(|e| format!("cannot bind UDP {addr}: {e}"))?;
    s.set_read_timeout(Some(STOP_POLL))
        .map_err(|e| format!("UDP {addr}: cannot set a receive timeout: {e}"))?;
    Ok(s)
}

/// Receives datagrams until the inbox closes or the future is dropped;
/// the socket is closed then.
pub async fn run(source: String, sock: UdpSocket, inbox: Inbox) {
    datagram::run(source, sock, Credentials::Absent, inbox).await
}
