//! keyward-auditbench: logs part 2's figures, with a peer beside each in
//! the same run, as a markdown table.
//!
//! Four keywardd on loopback: an origin with a unix datagram source and a
//! RELP source, two guardians that keep its log (`replicas = 2`) and an
//! auditor member.
//!
//! - Ingest with replication: `N` lines of 120 bytes into the origin's
//!   unix socket as fast as it takes them, until both replicas hold every
//!   line durably (the origin's replicated size covers its whole log);
//!   beside it rsyslogd (imuxsock → omfile, no fsync) with the same lines,
//!   once before keyward's run and once after (each phase starts after a
//!   `sync`), compared with the faster of the two: the order of the runs
//!   and the previous run's writeback must not decide the ratio.
//! - Replication latency: one line every 20 ms over RELP with `ack =
//!   "replicated"` (the `200 OK` comes once 2 peers hold it on disk), and
//!   the same with `ack = "durable"` (this host's disk only), send to ack:
//!   median and p99.
//! - `keyward audit fetch` of that log (from the origin and its
//!   replicas, through the auditor's keywardd) and `keyward audit verify`
//!   of what came, in MB/s of segment files; beside them `cp -r` of a
//!   replica's directory (the disk's ceiling for the same files).
//!
//! ```text
//! cargo build --release --workspace
//! target/release/keyward-auditbench     # KEYWARD_AUDITBENCH_LINES=N (default 8000000, about 1 GB)
//! ```

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use keyward_netns_tests::mesh::{bins, free_port, Mesh, MeshOptions};
use keyward_netns_tests::relp::RelpClient;
use keyward_netns_tests::rsyslog::{send_datagrams, Rsyslogd};
use keyward_netns_tests::spool::Durable;

const LINE_BYTES: usize = 120;
const LIMIT: Duration = Duration::from_secs(1800);
const PROBES: u64 = 300;

fn line(i: u64) -> Vec<u8> {
    let head = format!("<13>Dec  3 18:00:00 bench[4242]: line #{i:09} ");
    let mut l = head.into_bytes();
    l.resize(LINE_BYTES, b'x');
    l
}

/// Total bytes of the segment files (not the `.age` copies) under `dir`.
fn segment_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if p.parent().is_some_and(|p| p.ends_with("segments")) && p.extension().is_none()
            {
                total += e.metadata()?.len();
            }
        }
    }
    Ok(total)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Latencies of `PROBES` lines sent over RELP to `port`, one per 20 ms.
fn relp_latency(port: u16) -> Result<Vec<Duration>> {
    let mut c = RelpClient::connect(&format!("127.0.0.1:{port}"))?;
    for i in 0..PROBES {
        c.send(i, &line(i))?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let l = c.latencies(Duration::from_secs(60));
    ensure!(
        l.len() as u64 == PROBES,
        "only {} of {PROBES} lines acknowledged",
        l.len()
    );
    Ok(l)
}

/// Writes back every dirty page, so one phase's writes are not flushed
/// during the next phase's timing.
fn sync() {
    let _ = Command::new("sync").status();
}

/// The peer's ingest: rsyslogd (imuxsock → omfile, no fsync) takes the
/// same `n` lines; seconds from the first send until its file holds all
/// of them. Its output is removed after (1 GB of page cache).
fn rsyslog_ingest(m: &Mesh, dir: &Path, name: &str, n: u64) -> Result<f64> {
    let sock = dir.join(format!("{name}.sock"));
    let out = dir.join(format!("{name}.log"));
    let rs = Rsyslogd::start(
        dir,
        name,
        &format!(
            "input(type=\"imuxsock\" Socket=\"{}\" RateLimit.Interval=\"0\")\naction(type=\"omfile\" file=\"{}\" template=\"RSYSLOG_FileFormat\")\n",
            sock.display(),
            out.display()
        ),
    )?;
    let t = Instant::now();
    send_datagrams(&sock, 0..n, line)?;
    eprintln!("{name}: sent in {:.1} s", t.elapsed().as_secs_f64());
    // count the file's lines as it grows, reading only what is new
    let (mut read, mut lines) = (0u64, 0u64);
    m.wait_for(LIMIT, || {
        if let Ok(mut f) = std::fs::File::open(&out) {
            f.seek(SeekFrom::Start(read))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            read += buf.len() as u64;
            lines += buf.iter().filter(|&&c| c == b'\n').count() as u64;
        }
        Ok(lines >= n)
    })?;
    let secs = t.elapsed().as_secs_f64();
    drop(rs);
    std::fs::remove_file(&out)?;
    Ok(secs)
}

fn run(cmd: &mut Command) -> Result<(f64, String)> {
    let t = Instant::now();
    let o = cmd.output()?;
    let secs = t.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    ensure!(o.status.success(), "{cmd:?} failed: {text}");
    Ok((secs, text))
}

fn main() -> Result<()> {
    let n: u64 = std::env::var("KEYWARD_AUDITBENCH_LINES")
        .ok()
        .map(|v| u64::from_str(&v))
        .transpose()
        .context("KEYWARD_AUDITBENCH_LINES must be a number")?
        .unwrap_or(8_000_000);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut m = Mesh::loopback(4, &MeshOptions::default())?;
    let key = dir.join("auditor.key");
    let recipient = m.auditor_keygen(3, &key)?;
    let sock = m.dir(0).join("log.sock");
    let (relp_r, relp_d) = (free_port()?, free_port()?);
    m.append_config(
        0,
        &format!(
            "[logs]\nauditors = [\"{recipient}\"]\nsegment_secs = 1\ncheckpoint_secs = 1\nwitness_secs = 5\nquota_bytes = 40000000000\n\n\
             [[logs.source]]\nname = \"bench\"\nkind = \"unix\"\npath = \"{}\"\n\n\
             [[logs.source]]\nname = \"relp-replicated\"\nkind = \"relp\"\nlisten = \"127.0.0.1:{relp_r}\"\nack = \"replicated\"\n\n\
             [[logs.source]]\nname = \"relp-durable\"\nkind = \"relp\"\nlisten = \"127.0.0.1:{relp_d}\"\nack = \"durable\"\n",
            sock.display()
        ),
    )?;
    for j in [1, 2] {
        m.append_config(j, "[logs]\nreplica_quota_bytes = 20000000000\n")?;
    }
    m.init(0, Some("auditbench"))?;
    for i in 1..4 {
        m.init(i, None)?;
    }
    for i in 0..4 {
        m.start(i)?;
    }
    for i in 1..3 {
        m.join(i, 0)?;
    }
    m.join_as_auditor(3, 0)?;
    m.converge(Duration::from_secs(30))?;
    let spool = m.dir(0).join("state/logs");
    let origin = m.status(0)?.node.id;

    // ingest with replication to 2 peers, with rsyslogd's ingest of the
    // same lines before and after it
    let rs_before = rsyslog_ingest(&m, dir, "rs-before", n)?;
    sync();
    let t = Instant::now();
    send_datagrams(&sock, 0..n, line)?;
    eprintln!("keyward: sent in {:.1} s", t.elapsed().as_secs_f64());
    let mut durable = Durable::default();
    m.wait_for(LIMIT, || Ok(durable.lines(&spool, "bench")? >= n))?;
    let local = t.elapsed().as_secs_f64();
    // every line in both replicas' segment files (sealed, pushed, held)
    let replica_dirs: Vec<_> = [1, 2]
        .iter()
        .map(|j| m.dir(*j).join("state/logs/replicas").join(&origin))
        .collect();
    let mut held = [Durable::default(), Durable::default()];
    m.wait_for(LIMIT, || {
        for (d, h) in replica_dirs.iter().zip(held.iter_mut()) {
            if h.lines(d, "bench")? < n {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    let replicated = t.elapsed().as_secs_f64();
    sync();
    let rs_after = rsyslog_ingest(&m, dir, "rs-after", n)?;

    // replication latency over RELP
    let mut lat_r = relp_latency(relp_r)?;
    let mut lat_d = relp_latency(relp_d)?;

    // fetch + verify, beside cp -r
    let audit = dir.join("audit");
    let (fetch_s, fetched) = run(Command::new(&bins().keyward)
        .env("KEYWARD_CONFIG", &m.nodes[3].config)
        .args(["audit", "fetch", "--out"])
        .arg(&audit))?;
    let bytes = segment_bytes(&audit)?;
    let (verify_s, verified) = run(Command::new(&bins().keyward)
        .args(["audit", "verify"])
        .arg(&audit))?;
    ensure!(verified.contains("ok: every origin verifies"), "{verified}");
    let replica = m.dir(1).join("state/logs/replicas").join(&origin);
    let copy = dir.join("cp");
    let (cp_s, _) = run(Command::new("cp").arg("-r").arg(&replica).arg(&copy))?;
    sync();
    let mb = bytes as f64 / 1e6;

    println!("{fetched}");
    println!("## keyward-auditbench: {n} lines of {LINE_BYTES} bytes, {mb:.0} MB of segments\n");
    println!("| what | keyward | peer in the same run | keyward / peer |");
    println!("|---|---|---|---|");
    let lps = |s: f64| n as f64 / s;
    // against rsyslogd's faster run of the two
    let rsyslog = rs_before.min(rs_after);
    println!(
        "| ingest, unix socket, until 2 replicas hold every line (durable here after {local:.1} s) | {:.0} lines/s ({replicated:.1} s) | rsyslogd imuxsock → omfile, no fsync, no replica: {:.0} lines/s before keyward's run, {:.0} after | {:.2}× |",
        lps(replicated),
        lps(rs_before),
        lps(rs_after),
        rsyslog / replicated
    );
    let (med_r, p99_r) = (percentile(&mut lat_r, 0.5), percentile(&mut lat_r, 0.99));
    let (med_d, p99_d) = (percentile(&mut lat_d, 0.5), percentile(&mut lat_d, 0.99));
    println!(
        "| RELP line to `200 OK`, `ack = \"replicated\"` (on 2 peers' disks), {PROBES} lines | median {} p99 {} | `ack = \"durable\"` (this disk): median {} p99 {} | - |",
        ms(med_r),
        ms(p99_r),
        ms(med_d),
        ms(p99_d)
    );
    println!(
        "| `keyward audit fetch` ({mb:.0} MB, through the auditor's keywardd) | {:.1} MB/s ({fetch_s:.1} s) | `cp -r` of a replica's directory: {:.1} MB/s | {:.2}× |",
        mb / fetch_s,
        mb / cp_s,
        cp_s / fetch_s
    );
    println!(
        "| `keyward audit verify` of what came | {:.1} MB/s ({verify_s:.1} s) | - | - |",
        mb / verify_s
    );
    for i in 0..4 {
        m.stop(i)?;
    }
    Ok(())
}
