//! Link delay without netem: a userspace frame relay.
//!
//! Normally node `i`'s hub-side veth end `p<i>` is a bridge port. To delay
//! node `i`, the lab takes `p<i>` off the bridge, adds a veth pair
//! `q<i>`/`r<i>` with `q<i>` on the bridge, and a [`Relay`] thread copies
//! every frame between `p<i>` and `r<i>` through raw `AF_PACKET` sockets,
//! holding each one for the delay:
//!
//! ```text
//! node i: eth0 ══ p<i> ⇄ [relay: +delay each way] ⇄ r<i> ══ q<i> ── br0 ── other nodes
//! ```
//!
//! Every frame in both directions (ARP, IPv4, IPv6) is delayed, so a ping
//! between a delayed node and an undelayed one gains twice the delay.
//! The sockets use `PACKET_VNET_HDR`: veth hands over TCP segments with the
//! checksum still to be filled in and as 64 KiB GSO bursts; the virtio-net
//! header carries that state across the relay unchanged, so TCP works.
//!
//! One thread per delayed node; it wakes at least every [`TICK`] to check
//! its stop flag, and each direction queues at most [`MAX_QUEUED`] bytes
//! (further frames are dropped, like a full router buffer).

use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// Linux ABI constants (linux/if_packet.h, linux/if_ether.h).
const SOL_PACKET: libc::c_int = 263;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;
/// `struct virtio_net_hdr` without the mergeable-buffers field.
const VNET_HDR_LEN: usize = 10;
const ETH_HLEN: usize = 14;

/// Longest thing one read returns: a vnet header plus a 64 KiB GSO frame.
const MAX_FRAME: usize = VNET_HDR_LEN + ETH_HLEN + 65_536 + 64;
/// Per-direction queue bound.
const MAX_QUEUED: usize = 32 << 20;
/// Longest the relay sleeps before looking at its stop flag again.
const TICK: Duration = Duration::from_millis(20);
/// Frames read per socket per wake-up, so one busy side cannot starve the other.
const READ_BATCH: usize = 64;

/// A running relay between two interfaces; stops and joins at drop.
pub(crate) struct Relay {
    delay_ns: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Opens both sockets inside namespace `ns` and starts relaying.
    pub(crate) fn start(ns: &str, a: &str, b: &str, delay: Duration) -> Result<Relay> {
        let (sa, sb) = crate::ns::in_netns(ns, || -> io::Result<_> {
            Ok((packet_socket(a)?, packet_socket(b)?))
        })?
        .with_context(|| format!("opening packet sockets on {a} and {b} in {ns}"))?;
        let delay_ns = Arc::new(AtomicU64::new(nanos(delay)));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (delay_ns.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("kwt-delay-{a}"))
            .spawn(move || run(sa, sb, &d, &s))?;
        Ok(Relay {
            delay_ns,
            stop,
            thread: Some(thread),
        })
    }

    /// Changes the delay for frames read from now on.
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.delay_ns.store(nanos(delay), Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Frames read from `rx`, waiting for their time to be written to `tx`.
struct Direction<'a> {
    rx: &'a OwnedFd,
    tx: &'a OwnedFd,
    queue: VecDeque<(Instant, Vec<u8>)>,
    queued: usize,
}

impl Direction<'_> {
    /// Writes every frame whose time has come. A failed write (link down,
    /// buffer full) loses the frame, as a real link would.
    fn flush(&mut self, now: Instant) {
        while self.queue.front().is_some_and(|(due, _)| *due <= now) {
            let (_, frame) = self.queue.pop_front().expect("front exists");
            self.queued -= frame.len();
            // SAFETY: valid buffer and length; the socket is bound to its interface.
            unsafe { libc::send(self.tx.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        }
    }

    /// Reads up to [`READ_BATCH`] waiting frames and schedules them.
    fn read(&mut self, buf: &mut [u8], delay: Duration) {
        for _ in 0..READ_BATCH {
            match recv_frame(self.rx.as_raw_fd(), buf) {
                Ok(Some(len)) => {
                    if self.queued + len <= MAX_QUEUED {
                        self.queued += len;
                        let due = Instant::now() + delay;
                        self.queue.push_back((due, buf[..len].to_vec()));
                    }
                }
                Ok(None) => continue,
                Err(_) => break, // EAGAIN: nothing more to read now.
            }
        }
    }
}

fn run(a: OwnedFd, b: OwnedFd, delay_ns: &AtomicU64, stop: &AtomicBool) {
    let mut dirs = [
        Direction {
            rx: &a,
            tx: &b,
            queue: VecDeque::new(),
            queued: 0,
        },
        Direction {
            rx: &b,
            tx: &a,
            queue: VecDeque::new(),
            queued: 0,
        },
    ];
    let mut buf = vec![0u8; MAX_FRAME];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for d in &mut dirs {
            d.flush(now);
        }
        let next_due = dirs
            .iter()
            .filter_map(|d| d.queue.front().map(|f| f.0))
            .min();
        let wait = next_due.map_or(TICK, |due| due.saturating_duration_since(now).min(TICK));
        let mut fds = [a.as_raw_fd(), b.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // Round up so a frame is never sent before its time.
        let ms = wait.as_micros().div_ceil(1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of two pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) } <= 0 {
            continue;
        }
        let delay = Duration::from_nanos(delay_ns.load(Ordering::Relaxed));
        for (d, p) in dirs.iter_mut().zip(fds) {
            // POLLERR too: reading clears a pending error (ENETDOWN after
            // link_down), which would otherwise make poll return at once forever.
            if p.revents != 0 {
                d.read(&mut buf, delay);
            }
        }
    }
}

/// Reads one frame (with its vnet header) into `buf`. `Ok(None)` means a
/// frame to skip: one this relay sent itself, or one too big for `buf`.
fn recv_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: sockaddr_ll is plain data; zeroes are a valid value.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: valid buffer, address and length pointers.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            (&mut from as *mut libc::sockaddr_ll).cast(),
            &mut from_len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // MSG_TRUNC makes recvfrom report the full length, so truncation shows.
    if n > buf.len() || n < VNET_HDR_LEN + ETH_HLEN || from.sll_pkttype == PACKET_OUTGOING {
        return Ok(None);
    }
    Ok(Some(n))
}

/// A raw packet socket that sees every frame arriving on `ifname` and sends
/// frames out of it, each prefixed by a virtio-net header.
fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    // Protocol 0 until bind: a socket made with ETH_P_ALL would start
    // queueing frames of every interface before it is bound to one.
    // SAFETY: plain syscall; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_opt(&fd, SOL_PACKET, PACKET_VNET_HDR, 1)?;
    // Our own sends would otherwise come back to us as "outgoing" frames.
    set_opt(&fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
    set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20)?;
    let name = CString::new(ifname)?;
    // SAFETY: `name` is a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data; zeroes are a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = index as i32;
    // SAFETY: `addr` is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn set_opt(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a c_int and its size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
