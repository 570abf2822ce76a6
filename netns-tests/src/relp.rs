//! A RELP client that remembers which lines were acknowledged: what a
//! test needs to check "every acknowledged line survives", which
//! rsyslogd cannot tell from outside (it forgets an acked line). Frames
//! are keyward's own RELP frame type, so the bytes are what omrelp sends.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keyward_core::log::ingest::relp::{Frame, FrameParser};

/// Lines sent over one RELP session; `acked` fills in as `200 OK`s come.
pub struct RelpClient {
    stream: TcpStream,
    next: u32,
    /// TXNRs of the lines sent, with their numbers and when they left.
    sent: Vec<(u32, u64, Instant)>,
    /// When each TXNR's `200 OK` came.
    acked: Arc<Mutex<BTreeMap<u32, Instant>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RelpClient {
    /// Opens a session with `addr` (an open the server accepted).
    pub fn connect(addr: &str) -> Result<RelpClient> {
        let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut out = Vec::new();
        Frame {
            txnr: 1,
            command: b"open".to_vec(),
            data: b"relp_version=0\nrelp_software=keyward-test\ncommands=syslog".to_vec(),
        }
        .encode(&mut out);
        stream.write_all(&out)?;
        let mut parser = FrameParser::default();
        let mut buf = [0u8; 4096];
        let f = loop {
            if let Some(f) = parser.next_frame()? {
                break f;
            }
            let n = stream.read(&mut buf)?;
            if n == 0 {
                bail!("RELP server closed before answering open");
            }
            parser.push(&buf[..n])?;
        };
        if f.txnr != 1 || f.command != b"rsp" || !f.data.starts_with(b"200") {
            bail!("RELP open refused: {}", String::from_utf8_lossy(&f.data));
        }
        let acked: Arc<Mutex<BTreeMap<u32, Instant>>> = Arc::default();
        let reader = {
            let mut s = stream.try_clone()?;
            let acked = acked.clone();
            std::thread::spawn(move || {
                // bounded: ends when the server closes or goes silent 30 s
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || parser.push(&buf[..n]).is_err() {
                        return;
                    }
                    while let Ok(Some(f)) = parser.next_frame() {
                        if f.command == b"rsp" && f.data.starts_with(b"200") {
                            acked.lock().unwrap().insert(f.txnr, Instant::now());
                        }
                    }
                }
            })
        };
        Ok(RelpClient {
            stream,
            next: 2,
            sent: Vec::new(),
            acked,
            reader: Some(reader),
        })
    }

    /// Sends line number `n` (`msg`); fails once the server is gone.
    pub fn send(&mut self, n: u64, msg: &[u8]) -> Result<()> {
        let mut out = Vec::new();
        Frame {
            txnr: self.next,
            command: b"syslog".to_vec(),
            data: msg.to_vec(),
        }
        .encode(&mut out);
        self.stream.write_all(&out)?;
        self.sent.push((self.next, n, Instant::now()));
        self.next += 1;
        Ok(())
    }

    /// How many lines were acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits up to `wait` until every line sent is acknowledged; how
    /// long each acknowledged one took (send to `200 OK`), in send order.
    pub fn latencies(&self, wait: Duration) -> Vec<Duration> {
        let end = Instant::now() + wait;
        while self.acked_count() < self.sent.len() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let acked = self.acked.lock().unwrap();
        self.sent
            .iter()
            .filter_map(|(t, _, at)| acked.get(t).map(|a| a.duration_since(*at)))
            .collect()
    }

    /// Drops the connection and returns the numbers of the lines the
    /// server acknowledged (waiting up to `wait` for answers in flight).
    pub fn finish(mut self, wait: Duration) -> BTreeSet<u64> {
        let end = std::time::Instant::now() + wait;
        while self.acked_count() < self.sent.len() && std::time::Instant::now() < end {
            if self.reader.as_ref().is_some_and(|r| r.is_finished()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let acked = self.acked.lock().unwrap();
        self.sent
            .iter()
            .filter(|(t, _, _)| acked.contains_key(t))
            .map(|(_, n, _)| *n)
            .collect()
    }
}
