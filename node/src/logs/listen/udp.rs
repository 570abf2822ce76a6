//! Syslog over UDP on loopback (RFC 5426): one datagram, one message, kept
//! as received. No sender credentials exist for UDP, so the line has none;
//! the config only lets it listen on a loopback address.

use std::io;
use std::net::SocketAddr;

use keyward_core::log::line::{Sender, MAX_MSG};
use tokio::net::UdpSocket;

use super::{line, MAX_BATCH_BYTES, MAX_BATCH_LINES};
use crate::logs::{Batch, Inbox};

pub fn bind(addr: SocketAddr) -> Result<UdpSocket, String> {
    let s = std::net::UdpSocket::bind(addr).map_err(|e| format!("cannot bind UDP {addr}: {e}"))?;
    s.set_nonblocking(true)
        .map_err(|e| format!("UDP {addr}: {e}"))?;
    UdpSocket::from_std(s).map_err(|e| format!("UDP {addr}: {e}"))
}

/// Reads datagrams until the inbox closes, batching what is queued.
pub async fn run(source: String, sock: UdpSocket, inbox: Inbox) {
    let mut buf = vec![0u8; MAX_MSG];
    loop {
        if let Err(e) = sock.readable().await {
            tracing::error!("logs.source `{source}`: UDP socket failed: {e}; this source stops");
            return;
        }
        let mut lines = Vec::new();
        let mut bytes = 0;
        while lines.len() < MAX_BATCH_LINES && bytes < MAX_BATCH_BYTES {
            match sock.try_recv_from(&mut buf) {
                Ok((0, _)) => {}
                Ok((n, _)) => {
                    bytes += n;
                    lines.push(line(buf[..n].to_vec(), Sender::default()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("logs.source `{source}`: UDP receive failed: {e}");
                    break;
                }
            }
        }
        if !lines.is_empty()
            && inbox
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
