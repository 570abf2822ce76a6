//! A datagram socket (the unix `/dev/log` socket, syslog over UDP) read
//! on a thread of its own, [`RECV_AT_ONCE`] datagrams per `recvmmsg`.
//!
//! A datagram sender is never told to slow down: it blocks (unix) or
//! its datagrams are dropped (UDP) once the kernel's queue of the socket
//! is full, so how fast that queue is emptied is how fast every program
//! on the host can log, and how much a burst loses. On the daemon's
//! event loop the queue waited its turn behind the mesh's traffic (the
//! segments this very log pushes to its replicas), and each datagram
//! cost a system call of its own.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward_core::log::line::{Line, Sender, MAX_MSG};
use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, MultiHeaders};
use tokio::sync::oneshot;

use super::{line, MAX_BATCH_BYTES, MAX_BATCH_LINES};
use crate::logs::{Batch, Inbox};

/// Datagrams taken by one `recvmmsg` call.
pub const RECV_AT_ONCE: usize = 32;

/// How often the receiving thread, while the socket is quiet, looks
/// whether it should stop: the receive timeout its socket is bound with.
pub const STOP_POLL: Duration = Duration::from_millis(200);

/// Whether the kernel tells who sent each datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// SCM_CREDENTIALS (a unix socket with SO_PASSCRED): every line gets
    /// its sender's pid, uid and gid.
    Kernel,
    /// None exist (UDP): lines have no trusted sender.
    Absent,
}

/// Receives datagrams until the inbox closes or the returned future is
/// dropped (the daemon aborts its sources' tasks when it stops). Once
/// the future is gone the socket is closed, as a socket a task owns
/// would be: its address can be bound again at once. `sock` is in
/// blocking mode with a receive timeout of [`STOP_POLL`].
pub async fn run<S>(source: String, sock: S, creds: Credentials, inbox: Inbox)
where
    S: AsRawFd + Send + Sync + 'static,
{
    let sock = Arc::new(sock);
    let flag = Arc::new(AtomicBool::new(false));
    let (done, ended) = oneshot::channel::<()>();
    let (gone, thread_gone) = std::sync::mpsc::channel::<()>();
    let name = source.clone();
    let (s, f) = (sock.clone(), flag.clone());
    let spawned = std::thread::Builder::new()
        .name("keyward-logrecv".into())
        .spawn(move || {
            receive(&source, &*s, creds, &inbox, &f);
            // the socket closes before anyone is told the thread ended
            drop(s);
            drop((done, gone));
        });
    if let Err(e) = spawned {
        tracing::error!(
            "logs.source `{name}`: cannot start its receiving thread: {e}; this source stops"
        );
        return;
    }
    let _stop = StopOnDrop {
        flag,
        sock,
        thread_gone,
    };
    let _ = ended.await;
}

/// Stops the receiving thread when its task ends, however it ends: the
/// flag, then a shutdown that wakes a blocked receive at once (for an
/// unbound UDP socket the call reports ENOTCONN, yet wakes it all the
/// same), then a wait (bounded, in case it waits on a full spool) for
/// the thread to close the socket.
struct StopOnDrop<S: AsRawFd> {
    flag: Arc<AtomicBool>,
    sock: Arc<S>,
    thread_gone: std::sync::mpsc::Receiver<()>,
}

impl<S: AsRawFd> Drop for StopOnDrop<S> {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
        let _ = socket::shutdown(self.sock.as_raw_fd(), socket::Shutdown::Read);
        let _ = self.thread_gone.recv_timeout(Duration::from_secs(1));
    }
}

/// The thread's loop: block for the first datagram, then take what else
/// is queued (up to the batch bounds) and hand it over as one batch.
fn receive(
    source: &str,
    sock: &impl AsRawFd,
    creds: Credentials,
    inbox: &Inbox,
    stop: &AtomicBool,
) {
    let mut rx = Recv::new(creds);
    while !stop.load(Ordering::Relaxed) && !inbox.is_closed() {
        let mut lines = Vec::new();
        let mut bytes = 0;
        let mut flags = MsgFlags::MSG_WAITFORONE;
        while lines.len() < MAX_BATCH_LINES && bytes < MAX_BATCH_BYTES {
            let room = (MAX_BATCH_LINES - lines.len()).min(RECV_AT_ONCE);
            match rx.recv(sock, room, flags, &mut lines) {
                // nothing but empty datagrams, or the socket shut down
                Ok(0) => break,
                Ok(n) => bytes += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!(
                        "logs.source `{source}`: socket failed: {e}; this source stops"
                    );
                    return;
                }
            }
            flags = MsgFlags::MSG_DONTWAIT;
        }
        if lines.is_empty() {
            continue;
        }
        let batch = Batch {
            source: source.to_string(),
            lines,
            ack: None,
        };
        if inbox.blocking_send(batch).is_err() {
            return;
        }
    }
}

/// The buffers of one `recvmmsg` call, kept from call to call.
struct Recv {
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<()>,
}

impl Recv {
    fn new(creds: Credentials) -> Recv {
        let cmsg = (creds == Credentials::Kernel).then(|| nix::cmsg_space!(libc::ucred));
        Recv {
            bufs: (0..RECV_AT_ONCE).map(|_| vec![0u8; MAX_MSG]).collect(),
            headers: MultiHeaders::preallocate(RECV_AT_ONCE, cmsg),
        }
    }

    /// Up to `max` datagrams, each cut at the line limit, appended to
    /// `out` with the kernel's credentials of their sender, if any
    /// (empty ones are dropped); returns their bytes. A socket shut down
    /// for reading gives empty datagrams at once.
    fn recv(
        &mut self,
        sock: &impl AsRawFd,
        max: usize,
        flags: MsgFlags,
        out: &mut Vec<Line>,
    ) -> io::Result<usize> {
        let mut iovs: Vec<[IoSliceMut; 1]> = self
            .bufs
            .iter_mut()
            .take(max)
            .map(|b| [IoSliceMut::new(b)])
            .collect();
        let got = socket::recvmmsg(sock.as_raw_fd(), &mut self.headers, &mut iovs, flags, None)
            .map_err(io::Error::from)?;
        let mut bytes = 0;
        for msg in got {
            let data = msg.iovs().next().unwrap_or_default();
            let data = &data[..data.len().min(MAX_MSG)];
            if data.is_empty() {
                continue;
            }
            // the datagram is taken from the queue either way: one that
            // came without credentials on a unix socket (the buffer holds
            // them, so never) is kept with no trusted sender, not lost
            let mut sender = Sender::default();
            for c in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmCredentials(cred) = c {
                    sender = Sender {
                        pid: Some(cred.pid() as u32),
                        uid: Some(cred.uid()),
                        gid: Some(cred.gid()),
                    };
                }
            }
            bytes += data.len();
            out.push(line(data.to_vec(), sender));
        }
        Ok(bytes)
    }
}
