//! RELP on loopback: the driver of `keyward_core::log::ingest::relp`.
//!
//! Each read's `syslog` commands become one batch with an ack; the batch's
//! TXNRs are answered (`rsp 200`, or `rsp 500 <reason>`) only when the
//! spool answers that ack, so an answered line is durable. Many batches
//! may be in flight per connection (the session's window bounds them);
//! acks are awaited in order, which is the order the session answers in
//! anyway.

use std::collections::VecDeque;

use futures::stream::{FuturesOrdered, StreamExt};
use keyward_core::log::ingest::relp::{Event, Session, MAX_READ};
use keyward_core::log::line::Sender;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::{line, MAX_BATCH_LINES};
use crate::logs::{Batch, Inbox, Refused};

pub async fn run(source: String, listener: TcpListener, inbox: Inbox) {
    super::accept::serve(
        source,
        listener,
        inbox,
        "RELP",
        |source, stream, inbox| async move { connection(&source, stream, &inbox).await },
    )
    .await
}

type Waiting =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Vec<u32>, Result<(), String>)> + Send>>;

/// Sends one batch of `(txnr, message)` and returns what resolves to its
/// verdict.
async fn submit(source: &str, inbox: &Inbox, msgs: Vec<(u32, Vec<u8>)>) -> Waiting {
    let (tx, rx) = oneshot::channel();
    let txnrs: Vec<u32> = msgs.iter().map(|(t, _)| *t).collect();
    let lines = msgs
        .into_iter()
        .map(|(_, m)| line(m, Sender::default()))
        .collect();
    let sent = inbox
        .send(Batch {
            source: source.to_string(),
            lines,
            ack: Some(tx),
        })
        .await;
    Box::pin(async move {
        if sent.is_err() {
            return (txnrs, Err(Refused::ShuttingDown.to_string()));
        }
        let r = match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(refused.to_string()),
            Err(_) => Err(Refused::ShuttingDown.to_string()),
        };
        (txnrs, r)
    })
}

async fn connection(source: &str, mut stream: TcpStream, inbox: &Inbox) -> Result<(), String> {
    let mut s = Session::new();
    let mut buf = vec![0u8; MAX_READ];
    let mut waiting: FuturesOrdered<Waiting> = FuturesOrdered::new();
    let mut eof = false;
    loop {
        // new syslog commands, in batches
        let mut msgs = VecDeque::new();
        while let Some(Event::Syslog { txnr, msg }) = s.poll_event() {
            msgs.push_back((txnr, msg));
        }
        while !msgs.is_empty() {
            let n = msgs.len().min(MAX_BATCH_LINES);
            let batch: Vec<_> = msgs.drain(..n).collect();
            waiting.push_back(submit(source, inbox, batch).await);
        }
        let out = s.take_output();
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        if s.is_closed() {
            return Ok(());
        }
        if eof && waiting.is_empty() {
            return s.eof().map_err(|e| e.to_string());
        }
        let reading = !eof && s.wants_read();
        tokio::select! {
            r = stream.read(&mut buf), if reading => {
                let n = r.map_err(|e| e.to_string())?;
                if n == 0 {
                    eof = true;
                } else {
                    s.receive(&buf[..n]).map_err(|e| e.to_string())?;
                }
            }
            Some((txnrs, r)) = waiting.next(), if !waiting.is_empty() => {
                for t in txnrs {
                    s.done(t, r.clone());
                }
                s.process().map_err(|e| e.to_string())?;
            }
            else => {
                // nothing to read (window full) and nothing in flight:
                // cannot happen, as a full window means commands wait.
                return Err("RELP session stalled".into());
            }
        }
    }
}
