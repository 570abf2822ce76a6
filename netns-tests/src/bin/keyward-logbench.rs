//! keyward-logbench: sustained lines/s into one node, keywardd beside
//! rsyslogd in the same run, the same lines, and a markdown table.
//!
//! Rows:
//! - unix datagram socket: `N` lines of 120 bytes sent as fast as the
//!   socket takes them into keywardd (age encryption to an auditor, ed25519
//!   signatures, Merkle log, group-commit fsync), then into `rsyslogd`
//!   (Debian's package: imuxsock on its own socket into a plain file with
//!   omfile, rsyslog's defaults: no fsync);
//! - UDP: the same lines sent to keywardd's UDP source, then to
//!   `rsyslogd`'s `imudp`, as fast as the sender can. UDP has no
//!   back-pressure, so here "lost" is what each receiver dropped while
//!   it could not keep up (only duplicates are an error); the row ends
//!   when nothing more became durable for 3 s, and its time is that of
//!   the last line that did;
//! - RELP: the same lines handed to a client `rsyslogd` that forwards them
//!   with `omrelp` into keywardd's RELP source, then into a second
//!   `rsyslogd`'s `imrelp` writing a plain file.
//!
//! A row ends when every line is durable at the receiver: for keywardd, in
//! sealed segments or fsynced journal frames of its spool (read from disk,
//! not asked of the daemon); for rsyslogd, in its output file. Afterwards
//! keywardd's segments are decrypted with the auditor's identity and every
//! line is checked to be there exactly once ("lost" counts the missing and
//! the duplicated). CPU is the receiving daemon's user+system time over the
//! row, from /proc. Traffic stays on 127.0.0.1 and unix sockets.
//!
//! ```text
//! cargo build --release --workspace
//! target/release/keyward-logbench          # KEYWARD_LOGBENCH_LINES=N (default 1000000)
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use keyward_netns_tests::mesh::{free_port, Mesh, MeshOptions};
use keyward_netns_tests::rsyslog::{have_rsyslog_relp, send_datagrams, send_udp, Rsyslogd};
use keyward_netns_tests::spool::{decrypt_source, Durable};

const LINE_BYTES: usize = 120;
/// Longest a row may take before the bench gives up on it.
const ROW_LIMIT: Duration = Duration::from_secs(600);
/// A UDP row ends when nothing more became durable for this long.
const QUIET: Duration = Duration::from_secs(3);

/// Line `i`: an RFC 3164 message of exactly 120 bytes with its number.
fn line(i: u64) -> Vec<u8> {
    let head = format!("<13>Dec  2 18:00:00 bench[4242]: line #{i:09} ");
    let mut l = head.into_bytes();
    l.resize(LINE_BYTES, b'x');
    l
}

/// The number a received message carries, if it is one of ours.
fn number_of(msg: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(msg).ok()?;
    let at = s.find("line #")? + 6;
    s.get(at..at + 9)?.parse().ok()
}

/// user+system CPU of `pid` so far.
fn cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; fields count from after its ')'.
    let rest = &stat[stat.rfind(')').context("bad /proc stat")? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Every line of `source` in the spool, decrypted with the auditor's
/// identity: how many of `0..n` are missing or there more than once.
fn keyward_lost(spool: &Path, source: &str, id: &age::x25519::Identity, n: u64) -> Result<Tally> {
    let mut count: BTreeMap<u64, u32> = BTreeMap::new();
    for l in decrypt_source(spool, source, id)? {
        if let Some(i) = number_of(&l.msg) {
            *count.entry(i).or_default() += 1;
        }
    }
    Ok(Tally::of(&count, n))
}

/// Of lines `0..n`: how many never arrived, and how many arrived more
/// than once.
#[derive(Clone, Copy)]
struct Tally {
    missing: u64,
    extra: u64,
}

impl Tally {
    fn of(count: &BTreeMap<u64, u32>, n: u64) -> Tally {
        Tally {
            missing: (0..n).filter(|i| !count.contains_key(i)).count() as u64,
            extra: count
                .values()
                .map(|&c| u64::from(c.saturating_sub(1)))
                .sum(),
        }
    }
}

/// Counts newline-terminated lines appended to a file since the last call.
struct FileCounter {
    path: PathBuf,
    offset: u64,
    lines: u64,
}

impl FileCounter {
    fn new(path: &Path) -> FileCounter {
        FileCounter {
            path: path.to_path_buf(),
            offset: 0,
            lines: 0,
        }
    }

    fn poll(&mut self) -> Result<u64> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Ok(self.lines);
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        self.lines += buf[..end].iter().filter(|&&b| b == b'\n').count() as u64;
        self.offset += end as u64;
        Ok(self.lines)
    }
}

fn rsyslog_lost(path: &Path, n: u64) -> Result<Tally> {
    let text = std::fs::read(path)?;
    let mut count: BTreeMap<u64, u32> = BTreeMap::new();
    for l in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Some(i) = number_of(l) {
            *count.entry(i).or_default() += 1;
        }
    }
    Ok(Tally::of(&count, n))
}

struct Row {
    what: &'static str,
    receiver: &'static str,
    lines: u64,
    tally: Tally,
    /// UDP: missing lines are the receiver's drops, not a failure.
    lossy: bool,
    secs: f64,
    cpu: Duration,
}

impl Row {
    fn lost(&self) -> u64 {
        self.tally.missing + self.tally.extra
    }

    fn arrived(&self) -> u64 {
        self.lines - self.tally.missing
    }
}

/// Sends `n` lines with `send` and waits until `durable()` reaches `n`;
/// returns the wall time and the receiver's CPU over it.
fn run_row(
    pid: u32,
    n: u64,
    send: impl FnOnce() -> Result<()> + Send,
    mut durable: impl FnMut() -> Result<u64>,
) -> Result<(f64, Duration)> {
    let cpu0 = cpu(pid)?;
    let t0 = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let mut sender = Some(s.spawn(send));
        loop {
            // A sender that failed ends the row at once, with its error.
            if sender.as_ref().is_some_and(|h| h.is_finished()) {
                let h = sender.take().expect("checked");
                h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
            }
            let d = durable()?;
            if d >= n {
                break;
            }
            if t0.elapsed() > ROW_LIMIT {
                bail!("only {d} of {n} lines durable after {ROW_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(h) = sender {
            h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        }
        Ok(())
    })?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((secs, cpu(pid)? - cpu0))
}

/// Like [`run_row`] for a sender without back-pressure (UDP): sends `n`
/// lines, then waits until `durable()` stopped growing for [`QUIET`];
/// returns the time until the last line became durable and the
/// receiver's CPU until then.
fn run_lossy_row(
    pid: u32,
    n: u64,
    send: impl FnOnce() -> Result<()>,
    mut durable: impl FnMut() -> Result<u64>,
) -> Result<(f64, Duration)> {
    let cpu0 = cpu(pid)?;
    let t0 = Instant::now();
    send()?;
    let (mut last, mut at, mut cpu_at) = (durable()?, t0.elapsed(), cpu(pid)?);
    while last < n && at.saturating_add(QUIET) > t0.elapsed() {
        ensure!(t0.elapsed() < ROW_LIMIT, "the row took over {ROW_LIMIT:?}");
        std::thread::sleep(Duration::from_millis(20));
        let d = durable()?;
        if d > last {
            (last, at, cpu_at) = (d, t0.elapsed(), cpu(pid)?);
        }
    }
    Ok((at.as_secs_f64(), cpu_at - cpu0))
}

fn main() -> Result<()> {
    let n: u64 = std::env::var("KEYWARD_LOGBENCH_LINES")
        .ok()
        .map(|v| u64::from_str(&v))
        .transpose()
        .context("KEYWARD_LOGBENCH_LINES must be a number")?
        .unwrap_or(1_000_000);
    ensure!(
        have_rsyslog_relp(),
        "rsyslogd or its RELP modules are missing: apt install rsyslog rsyslog-relp"
    );
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let auditor = age::x25519::Identity::generate();
    let relp_port = free_port()?;
    let udp_at: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;

    let mut mesh = Mesh::loopback(1, &MeshOptions::default())?;
    let node = mesh.nodes[0].dir.clone();
    let unix_sock = node.join("log.sock");
    mesh.append_config(
        0,
        &format!(
            "[logs]\nauditors = [\"{r}\"]\nsegment_secs = 2\n\n[[logs.source]]\nname = \"bench\"\nkind = \"unix\"\npath = \"{u}\"\n\n[[logs.source]]\nname = \"relp\"\nkind = \"relp\"\nlisten = \"127.0.0.1:{relp_port}\"\n\n[[logs.source]]\nname = \"udp\"\nkind = \"udp\"\nlisten = \"{udp_at}\"\n",
            r = auditor.to_public(),
            u = unix_sock.display()
        ),
    )?;
    mesh.init(0, Some("logbench"))?;
    mesh.start(0)?;
    let kpid = mesh.pid(0).context("keywardd pid")?;
    let spool = node.join("state/logs");
    let mut rows = Vec::new();

    // Unix datagram socket: keywardd.
    let mut durable = Durable::default();
    let (secs, c) = run_row(
        kpid,
        n,
        || send_datagrams(&unix_sock, 0..n, line),
        || durable.lines(&spool, "bench"),
    )?;
    // Let the open segment seal (segment_secs), then check every line.
    std::thread::sleep(Duration::from_secs(3));
    rows.push(Row {
        what: "unix datagram socket",
        receiver: "keywardd (age + ed25519 + Merkle, fsync)",
        lines: n,
        tally: keyward_lost(&spool, "bench", &auditor, n)?,
        lossy: false,
        secs,
        cpu: c,
    });

    // Unix datagram socket: rsyslogd into a plain file.
    let rs_sock = dir.join("rs.sock");
    let rs_out = dir.join("rs-unix.log");
    let rs = Rsyslogd::start(
        dir,
        "rs-unix",
        &format!(
            "input(type=\"imuxsock\" Socket=\"{s}\" RateLimit.Interval=\"0\")\naction(type=\"omfile\" file=\"{o}\" template=\"RSYSLOG_FileFormat\")\n",
            s = rs_sock.display(),
            o = rs_out.display()
        ),
    )?;
    let mut fc = FileCounter::new(&rs_out);
    let (secs, c) = run_row(
        rs.pid(),
        n,
        || send_datagrams(&rs_sock, 0..n, line),
        || fc.poll(),
    )?;
    rows.push(Row {
        what: "unix datagram socket",
        receiver: "rsyslogd (imuxsock → omfile, no fsync)",
        lines: n,
        tally: rsyslog_lost(&rs_out, n)?,
        lossy: false,
        secs,
        cpu: c,
    });
    drop(rs);

    // UDP: keywardd, then rsyslogd's imudp.
    let mut durable = Durable::default();
    let (secs, c) = run_lossy_row(
        kpid,
        n,
        || send_udp(udp_at, 0..n, line),
        || durable.lines(&spool, "udp"),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    rows.push(Row {
        what: "UDP (no back-pressure: lost = dropped)",
        receiver: "keywardd (age + ed25519 + Merkle, fsync)",
        lines: n,
        tally: keyward_lost(&spool, "udp", &auditor, n)?,
        lossy: true,
        secs,
        cpu: c,
    });

    let rs_udp_at: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let rs_udp_out = dir.join("rs-udp.log");
    let rs = Rsyslogd::start(
        dir,
        "rs-udp",
        &format!(
            "module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{p}\")\naction(type=\"omfile\" file=\"{o}\" template=\"RSYSLOG_FileFormat\")\n",
            p = rs_udp_at.port(),
            o = rs_udp_out.display()
        ),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let mut fc = FileCounter::new(&rs_udp_out);
    let (secs, c) = run_lossy_row(
        rs.pid(),
        n,
        || send_udp(rs_udp_at, 0..n, line),
        || fc.poll(),
    )?;
    rows.push(Row {
        what: "UDP (no back-pressure: lost = dropped)",
        receiver: "rsyslogd (imudp → omfile, no fsync)",
        lines: n,
        tally: rsyslog_lost(&rs_udp_out, n)?,
        lossy: true,
        secs,
        cpu: c,
    });
    drop(rs);

    // RELP: a client rsyslogd forwards with omrelp.
    let relp_row = |port: u16,
                    tag: &str,
                    receiver_pid: u32,
                    durable: &mut dyn FnMut() -> Result<u64>|
     -> Result<(f64, Duration)> {
        let sock = dir.join(format!("{tag}-client.sock"));
        let client = Rsyslogd::start(
            dir,
            &format!("{tag}-client"),
            &format!(
                "module(load=\"omrelp\")\ninput(type=\"imuxsock\" Socket=\"{s}\" RateLimit.Interval=\"0\")\naction(type=\"omrelp\" target=\"127.0.0.1\" port=\"{port}\" queue.type=\"LinkedList\" queue.size=\"2000000\" action.resumeRetryCount=\"-1\")\n",
                s = sock.display()
            ),
        )?;
        let r = run_row(
            receiver_pid,
            n,
            || send_datagrams(&sock, 0..n, line),
            durable,
        );
        drop(client);
        r
    };
    let mut durable = Durable::default();
    let (secs, c) = relp_row(relp_port, "kw-relp", kpid, &mut || {
        durable.lines(&spool, "relp")
    })?;
    std::thread::sleep(Duration::from_secs(3));
    rows.push(Row {
        what: "RELP (rsyslogd omrelp client)",
        receiver: "keywardd (ack after fsync)",
        lines: n,
        tally: keyward_lost(&spool, "relp", &auditor, n)?,
        lossy: false,
        secs,
        cpu: c,
    });
    mesh.stop(0)?;

    let port = free_port()?;
    let rs_relp_out = dir.join("rs-relp.log");
    let server = Rsyslogd::start(
        dir,
        "rs-relp",
        &format!(
            "module(load=\"imrelp\")\ninput(type=\"imrelp\" port=\"{port}\" address=\"127.0.0.1\")\naction(type=\"omfile\" file=\"{o}\" template=\"RSYSLOG_FileFormat\")\n",
            o = rs_relp_out.display()
        ),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let mut fc = FileCounter::new(&rs_relp_out);
    let (secs, c) = relp_row(port, "rs-relp", server.pid(), &mut || fc.poll())?;
    rows.push(Row {
        what: "RELP (rsyslogd omrelp client)",
        receiver: "rsyslogd (imrelp → omfile, no fsync)",
        lines: n,
        tally: rsyslog_lost(&rs_relp_out, n)?,
        lossy: false,
        secs,
        cpu: c,
    });
    drop(server);

    println!("{n} lines of {LINE_BYTES} bytes each, sent as fast as the receiver takes them (UDP: as the sender can).\n");
    println!("| input | receiver | lines | lost | time | lines/s | CPU per line |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.2} s | {:.0} | {:.2} µs |",
            r.what,
            r.receiver,
            r.lines,
            r.lost(),
            r.secs,
            r.arrived() as f64 / r.secs,
            r.cpu.as_secs_f64() * 1e6 / r.arrived().max(1) as f64
        );
    }
    for pair in rows.chunks(2) {
        if let [k, r] = pair {
            let rate = |x: &Row| x.arrived() as f64 / x.secs;
            let per_line = |x: &Row| x.cpu.as_secs_f64() / x.arrived().max(1) as f64;
            println!(
                "\n{}: keywardd / rsyslogd = {:.2}x lines/s, {:.2}x CPU per line",
                k.what,
                rate(k) / rate(r),
                per_line(k) / per_line(r).max(1e-12)
            );
        }
    }
    let lost: u64 = rows.iter().filter(|r| !r.lossy).map(Row::lost).sum();
    let extra: u64 = rows.iter().map(|r| r.tally.extra).sum();
    ensure!(lost == 0, "{lost} lines lost or duplicated");
    ensure!(extra == 0, "{extra} lines duplicated");
    Ok(())
}
