//! The pipe socket of `keyward logs write` (Apache's `CustomLog "|..."`):
//! server and client of `keyward_core::log::ingest::pipe`.
//!
//! The socket is mode 0600 (root: Apache starts its piped loggers as root).
//! The writer's pid, uid and gid come from the kernel (SO_PEERCRED) and go
//! into every line as its trusted sender. Every batch is acknowledged back
//! (`ok N`); after the writer closes its side and the last batch is
//! durable, `done N`: the client exits 0 only then.

use std::path::Path;
use std::sync::Arc;

use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use keyward_core::log::ingest::lines::LineSplitter;
use keyward_core::log::ingest::pipe::{self as proto, Reply, MAX_HEADER, MAX_REPLY};
use keyward_core::log::line::Sender;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Semaphore};

use super::{clear_socket_path, line, set_mode, MAX_BATCH_BYTES, MAX_CONNECTIONS};
use crate::logs::{Batch, Inbox, Refused};

/// Batches of one writer awaiting the spool's ack at once.
const MAX_IN_FLIGHT: usize = 16;

/// Binds the pipe socket, mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    let live = |p: &Path| std::os::unix::net::UnixStream::connect(p).is_ok();
    clear_socket_path(path, live, "another keywardd serves it")?;
    let l = UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    set_mode(path, 0o600)?;
    Ok(l)
}

/// Serves writers of the configured pipe sources until the spool closes.
pub async fn run(listener: UnixListener, sources: Vec<String>, inbox: Inbox) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sources = Arc::new(sources);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let (sources, inbox) = (sources.clone(), inbox.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, &sources, &inbox).await {
                        tracing::warn!("logs pipe: writer disconnected: {e}");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("logs pipe: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        if inbox.is_closed() {
            return;
        }
    }
}

type Waiting =
    std::pin::Pin<Box<dyn std::future::Future<Output = (u64, Result<(), Refused>)> + Send>>;

async fn connection(stream: UnixStream, sources: &[String], inbox: &Inbox) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("no peer credentials: {e}"))?;
    let sender = Sender {
        pid: cred.pid().map(|p| p as u32),
        uid: Some(cred.uid()),
        gid: Some(cred.gid()),
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut header = Vec::new();
    (&mut r)
        .take(MAX_HEADER as u64 + 1)
        .read_until(b'\n', &mut header)
        .await
        .map_err(|e| e.to_string())?;
    let source = match header
        .strip_suffix(b"\n")
        .ok_or(proto::PipeError::Header)
        .and_then(proto::parse_header)
    {
        Ok(s) if sources.contains(&s) => s,
        Ok(s) => {
            let msg = format!(
                "`{s}` is not a pipe source of this node (kind = \"pipe\" in [[logs.source]]); configured: {}",
                if sources.is_empty() { "none".to_string() } else { sources.join(", ") }
            );
            let _ = w.write_all(&Reply::Err(msg.clone()).encode()).await;
            return Err(msg);
        }
        Err(e) => {
            let _ = w.write_all(&Reply::Err(e.to_string()).encode()).await;
            return Err(e.to_string());
        }
    };
    let mut split = LineSplitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut waiting: FuturesOrdered<Waiting> = FuturesOrdered::new();
    let mut durable = 0u64;
    let mut eof = false;
    loop {
        if eof && waiting.is_empty() {
            w.write_all(&Reply::Done(durable).encode())
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        tokio::select! {
            n = r.read(&mut buf), if !eof && waiting.len() < MAX_IN_FLIGHT => {
                let n = n.map_err(|e| e.to_string())?;
                let mut lines = Vec::new();
                if n == 0 {
                    eof = true;
                    lines.extend(split.finish());
                } else {
                    split.push(&buf[..n], &mut lines);
                    // take what else is already there, up to a batch
                    let mut bytes = n;
                    while bytes < MAX_BATCH_BYTES {
                        match r.read(&mut buf).now_or_never() {
                            Some(Ok(0)) => {
                                eof = true;
                                lines.extend(split.finish());
                                break;
                            }
                            Some(Ok(m)) => {
                                bytes += m;
                                split.push(&buf[..m], &mut lines);
                            }
                            Some(Err(e)) => return Err(e.to_string()),
                            None => break,
                        }
                    }
                }
                if !lines.is_empty() {
                    let count = lines.len() as u64;
                    let (tx, rx) = oneshot::channel();
                    let lines = lines.into_iter().map(|l| line(l.msg, sender)).collect();
                    if inbox.send(Batch { source: source.clone(), lines, ack: Some(tx) }).await.is_err() {
                        let _ = w.write_all(&Reply::Err(Refused::ShuttingDown.to_string()).encode()).await;
                        return Err(Refused::ShuttingDown.to_string());
                    }
                    waiting.push_back(Box::pin(async move {
                        (count, rx.await.unwrap_or(Err(Refused::ShuttingDown)))
                    }));
                }
            }
            Some((count, res)) = waiting.next(), if !waiting.is_empty() => {
                match res {
                    Ok(()) => {
                        durable += count;
                        w.write_all(&Reply::Ok(durable).encode()).await.map_err(|e| e.to_string())?;
                    }
                    Err(e) => {
                        let _ = w.write_all(&Reply::Err(e.to_string()).encode()).await;
                        return Err(e.to_string());
                    }
                }
            }
        }
    }
}

/// Why `keyward logs write` failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot connect to keywardd's log pipe socket {path}: {err} (is keywardd running with [logs] enabled and a pipe source configured?)")]
    Connect { path: String, err: std::io::Error },
    #[error("{0}")]
    Proto(#[from] proto::PipeError),
    #[error("keywardd refused the lines: {0}")]
    Refused(String),
    #[error("connection to keywardd failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "keywardd closed the pipe before confirming every line ({durable} lines confirmed durable)"
    )]
    Unconfirmed { durable: u64 },
}

/// The client: sends `input`'s lines to `source` through `socket` and
/// returns how many lines keywardd confirmed durable, once all are.
pub async fn write(
    socket: &Path,
    source: &str,
    mut input: impl AsyncRead + Unpin,
) -> Result<u64, WriteError> {
    let header = proto::header(source)?;
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|err| WriteError::Connect {
            path: socket.display().to_string(),
            err,
        })?;
    let (r, mut w) = stream.into_split();
    let send = async move {
        w.write_all(&header).await?;
        tokio::io::copy(&mut input, &mut w).await?;
        w.shutdown().await?;
        Ok::<_, std::io::Error>(w)
    };
    let mut r = BufReader::new(r);
    let mut durable = 0u64;
    let replies = async {
        let mut l = Vec::new();
        loop {
            l.clear();
            let n = (&mut r)
                .take(MAX_REPLY as u64 + 1)
                .read_until(b'\n', &mut l)
                .await?;
            let Some(body) = l.strip_suffix(b"\n") else {
                if n == 0 {
                    return Err(WriteError::Unconfirmed { durable });
                }
                return Err(proto::PipeError::Reply.into());
            };
            match Reply::decode(body)? {
                Reply::Ok(n) => durable = n,
                Reply::Done(n) => return Ok(n),
                Reply::Err(e) => return Err(WriteError::Refused(e)),
            }
        }
    };
    tokio::pin!(send);
    tokio::pin!(replies);
    let mut sent = false;
    let mut _writer = None;
    loop {
        tokio::select! {
            s = &mut send, if !sent => {
                match s {
                    // keep the write half (already shut down) until the end
                    Ok(w) => _writer = Some(w),
                    // a refusal arrives on the read side: prefer it
                    Err(e) => return Err(match tokio::time::timeout(std::time::Duration::from_secs(2), &mut replies).await {
                        Ok(Err(r @ WriteError::Refused(_))) => r,
                        _ => WriteError::Io(e),
                    }),
                }
                sent = true;
            }
            r = &mut replies => return r,
        }
    }
}
