//! The `/dev/log`-style unix datagram socket.
//!
//! Each datagram is one message, kept as received. With SO_PASSCRED the
//! kernel attaches the sender's pid, uid and gid (SCM_CREDENTIALS) to every
//! datagram; an unprivileged sender cannot claim another's (only root may
//! send other credentials, as for journald), so they go into the line as
//! its trusted sender. The socket is mode 0666, as `/dev/log` is: anyone
//! may log, and who did is recorded.
//!
//! The socket is read on a thread of its own, [`RECV_AT_ONCE`] datagrams
//! per `recvmmsg` call. A datagram sender is never told to slow down: it
//! blocks once the kernel's queue of the socket is full (512 datagrams,
//! `net.unix.max_dgram_qlen`), so how fast that queue is emptied is how
//! fast every program on the host can log. On the daemon's event loop
//! the queue waited its turn behind the mesh's traffic (the segments
//! this very log pushes to its replicas), and each datagram cost a
//! system call of its own.

use std::io::{self, IoSliceMut};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward_core::log::line::{Line, Sender, MAX_MSG};
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders};
use tokio::sync::oneshot;

use super::{clear_socket_path, line, set_mode, MAX_BATCH_BYTES, MAX_BATCH_LINES};
use crate::logs::{Batch, Inbox};

/// Datagrams taken by one `recvmmsg` call.
pub const RECV_AT_ONCE: usize = 32;

/// How often the receiving thread, while the socket is quiet, looks
/// whether it should stop.
const STOP_POLL: Duration = Duration::from_millis(200);

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

/// Receives datagrams until the inbox closes or the returned future is
/// dropped (the daemon aborts its sources' tasks when it stops). Once
/// the future is gone the socket is closed, as a socket a task owns
/// would be: its path can be bound again at once.
pub async fn run(source: String, sock: UnixDatagram, inbox: Inbox) {
    let sock = Arc::new(sock);
    let flag = Arc::new(AtomicBool::new(false));
    let (done, ended) = oneshot::channel::<()>();
    let (gone, thread_gone) = std::sync::mpsc::channel::<()>();
    let name = source.clone();
    let (s, f) = (sock.clone(), flag.clone());
    let spawned = std::thread::Builder::new()
        .name("keyward-logrecv".into())
        .spawn(move || {
            receive(&source, &s, &inbox, &f);
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
/// flag, then a shutdown that wakes a blocked receive at once, then a
/// wait (bounded, in case it waits on a full spool) for the thread to
/// close the socket.
struct StopOnDrop {
    flag: Arc<AtomicBool>,
    sock: Arc<UnixDatagram>,
    thread_gone: std::sync::mpsc::Receiver<()>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
        let _ = self.sock.shutdown(Shutdown::Read);
        let _ = self.thread_gone.recv_timeout(Duration::from_secs(1));
    }
}

/// The thread's loop: block for the first datagram, then take what else
/// is queued (up to the batch bounds) and hand it over as one batch.
fn receive(source: &str, sock: &UnixDatagram, inbox: &Inbox, stop: &AtomicBool) {
    let mut rx = Recv::new();
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
    fn new() -> Recv {
        Recv {
            bufs: (0..RECV_AT_ONCE).map(|_| vec![0u8; MAX_MSG]).collect(),
            headers: MultiHeaders::preallocate(RECV_AT_ONCE, Some(nix::cmsg_space!(libc::ucred))),
        }
    }

    /// Up to `max` datagrams, each cut at the line limit, appended to
    /// `out` with the kernel's credentials of its sender (empty ones are
    /// dropped); returns their bytes. A socket shut down for reading
    /// gives empty datagrams at once.
    fn recv(
        &mut self,
        sock: &UnixDatagram,
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
            // the datagram is taken from the queue either way: without
            // credentials (the buffer holds them, so never) it is kept
            // with no trusted sender rather than lost
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
