//! Real syslog peers for tests and benchmarks: a private `rsyslogd` (its
//! own config, work directory and sockets; never the system's /dev/log),
//! and a datagram sender that blocks rather than drops.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

/// Whether rsyslogd and its RELP modules are installed.
pub fn have_rsyslog_relp() -> bool {
    Command::new("rsyslogd").arg("-v").output().is_ok()
        && ["/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/rsyslog"]
            .iter()
            .any(|d| {
                Path::new(d).join("omrelp.so").exists() && Path::new(d).join("imrelp.so").exists()
            })
}

/// Sends `line(i)` for each `i` of `range` to a unix datagram socket;
/// blocks while the receiver's queue is full, so none is dropped on the
/// way. Waits up to 10 s for the socket to appear.
pub fn send_datagrams(
    path: &Path,
    range: std::ops::Range<u64>,
    line: impl Fn(u64) -> Vec<u8>,
) -> Result<()> {
    let s = UnixDatagram::unbound()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.connect(path).is_err() {
        ensure!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in range {
        s.send(&line(i))
            .with_context(|| format!("sending line {i} to {}", path.display()))?;
    }
    Ok(())
}

/// Sends lines `range` as UDP datagrams from 127.0.0.1 to `to`, as fast
/// as the kernel takes them. UDP has no back-pressure: what the
/// receiver's socket cannot hold is dropped, and the receiver counts
/// what it got.
pub fn send_udp(
    to: std::net::SocketAddr,
    range: std::ops::Range<u64>,
    line: impl Fn(u64) -> Vec<u8>,
) -> Result<()> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    s.connect(to)?;
    for i in range {
        // A full receive queue on loopback drops silently; ECONNREFUSED
        // (nobody bound yet, from an earlier datagram's ICMP) is a loss too.
        match s.send(&line(i)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e).with_context(|| format!("sending line {i} to {to}")),
        }
    }
    Ok(())
}

/// An rsyslogd of this run, killed when dropped.
pub struct Rsyslogd {
    child: Child,
}

impl Rsyslogd {
    /// Starts `rsyslogd -n` with `conf` (after a header that sets its work
    /// directory `dir/name` and keeps it off the system's /dev/log).
    pub fn start(dir: &Path, name: &str, conf: &str) -> Result<Rsyslogd> {
        let work = dir.join(name);
        std::fs::create_dir_all(&work)?;
        let conf_path = work.join("rsyslog.conf");
        std::fs::write(
            &conf_path,
            format!(
                "global(workDirectory=\"{w}\")\nmodule(load=\"imuxsock\" SysSock.Use=\"off\")\n{conf}",
                w = work.display()
            ),
        )?;
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(work.join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("stderr"))?)
            .spawn()
            .context("starting rsyslogd (apt install rsyslog rsyslog-relp)")?;
        Ok(Rsyslogd { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
