//! Syslog over TCP on loopback, RFC 6587 (octet counting or LF framing,
//! per frame: `keyward_core::log::ingest::framing`), connections accepted
//! by `super::accept`. A stream that breaks the framing is closed.

use std::net::SocketAddr;

use keyward_core::log::ingest::framing::{Deframer, MAX_READ};
use keyward_core::log::line::Sender;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::line;
use crate::logs::{Batch, Inbox};

/// Binds a TCP listener (syslog or RELP).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let s = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("cannot listen on TCP {addr}: {e}"))?;
    s.set_nonblocking(true)
        .map_err(|e| format!("TCP {addr}: {e}"))?;
    TcpListener::from_std(s).map_err(|e| format!("TCP {addr}: {e}"))
}

pub async fn run(source: String, listener: TcpListener, inbox: Inbox) {
    super::accept::serve(
        source,
        listener,
        inbox,
        "TCP",
        |source, stream, inbox| async move { connection(&source, stream, &inbox).await },
    )
    .await
}

/// One connection: each read's whole frames become one batch.
async fn connection(source: &str, mut stream: TcpStream, inbox: &Inbox) -> Result<(), String> {
    let mut d = Deframer::new();
    let mut buf = vec![0u8; MAX_READ];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        let mut lines = Vec::new();
        // frames before a framing error are still logged
        let mut broken = None;
        if n == 0 {
            match d.finish() {
                Ok(Some(f)) => lines.push(line(f, Sender::default())),
                Ok(None) => {}
                Err(e) => broken = Some(e),
            }
        } else if let Err(e) = d.push(&buf[..n]) {
            broken = Some(e);
        } else {
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => lines.push(line(f, Sender::default())),
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
        }
        if !lines.is_empty() {
            inbox
                .send(Batch {
                    source: source.to_string(),
                    lines,
                    ack: None,
                })
                .await
                .map_err(|_| "keywardd's log spool stopped".to_string())?;
        }
        if let Some(e) = broken {
            return Err(e.to_string());
        }
        if n == 0 {
            return Ok(());
        }
    }
}
