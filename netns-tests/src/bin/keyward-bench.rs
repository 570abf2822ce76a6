//! keyward-bench: measures the unlock path and the mesh with real daemons
//! and prints a markdown table.
//!
//! On loopback (no privileges): unlock latency from process start to key
//! (`keyward unlock --print-key`), 3-of-5 guardians, with all guardians
//! answering and with 2 of them hung (SIGSTOP); time from `keyward join`
//! to every roster having the new node; idle RSS of a daemon in a 10-node
//! mesh. As root, the same unlock latency between network namespaces on
//! clean links and on lossy, slow links (1% loss per packet in each
//! direction, 50 ms one-way delay between any two nodes), lockdown
//! propagation and join propagation there. mDNS is off everywhere.
//!
//! Every unlock must print the same 32-byte key, and for each series one
//! of them is proven against the image with `cryptsetup open
//! --test-passphrase`.
//!
//! Build everything first, then run it:
//!
//! ```text
//! cargo build --release --workspace
//! target/release/keyward-bench            # as root for the namespace rows
//! ```
//!
//! `KEYWARD_BENCH_UNLOCKS=N` changes the number of unlocks per row
//! (default 100, at least 50).
//!
//! `keyward-bench mesh100` runs only the big-mesh rows instead (about
//! 3 minutes, no privileges): 100 daemons on loopback form one mesh
//! (sequential `keyward join`s, invites from the first ten members in
//! turn); then, once idle, connections per daemon (established TCP
//! sockets counted by the kernel, checked against each daemon's status),
//! the CPU time all of them use in 60 s, their RSS, and how long a
//! lockdown (and its lift) takes to reach all 100.
//! `KEYWARD_BENCH_MESH_NODES=N` changes the size.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use keyward_netns_tests::mesh::{bins, have_cryptsetup, Conns, Mesh, MeshOptions};
use keyward_netns_tests::Lab;

/// Joins timed per place (each into a fresh mesh), so p99 is the worst of 20.
const JOIN_SAMPLES: usize = 20;

/// Loss on every node's output: 1% per packet in each direction.
const LOSS_PERCENT: u8 = 1;
/// Relay delay at each node's end: 50 ms one way between two nodes.
const DELAY_PER_END: Duration = Duration::from_millis(25);

/// Long liveness timeouts: every unlock of a run must be allowed.
const POLICY: &str = "interval = 1\ntimeout = 3600\nextended_timeout = 3600\nup_window = 3\n";

struct Row {
    what: String,
    place: &'static str,
    n: usize,
    median: String,
    p99: String,
    notes: String,
}

/// "N CPUs, release build": what a table was measured on.
fn machine() -> String {
    format!(
        "{} CPUs, {} build",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Median and p99 (nearest rank) of `v`.
fn stats(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n);
    (median, v[rank - 1])
}

fn row(
    rows: &mut Vec<Row>,
    what: &str,
    place: &'static str,
    v: &mut [Duration],
    notes: String,
) -> Result<()> {
    ensure!(!v.is_empty(), "no samples for {what}");
    let (med, p99) = stats(v);
    let (min, max) = (v[0], v[v.len() - 1]);
    eprintln!(
        "  {what} [{place}]: median {} p99 {} (min {} max {}, n={})",
        ms(med),
        ms(p99),
        ms(min),
        ms(max),
        v.len()
    );
    rows.push(Row {
        what: what.into(),
        place,
        n: v.len(),
        median: ms(med),
        p99: ms(p99),
        notes: format!("min {}, max {}{notes}", ms(min), ms(max)),
    });
    Ok(())
}

fn unlocks() -> usize {
    std::env::var("KEYWARD_BENCH_UNLOCKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .max(50)
}

fn opts() -> MeshOptions {
    MeshOptions {
        policy: POLICY.into(),
        mdns: false,
    }
}

/// One `keyward unlock --print-key` of node `i`'s image, as node `i`
/// (in its namespace when the mesh is in a lab): wall time from process
/// start to exit, and the key it wrote to a pipe.
fn time_unlock(m: &Mesh, i: usize, timeout: &str) -> Result<(Duration, Vec<u8>)> {
    let img = m.dir(i).join("disk.img");
    let args = [
        "unlock",
        "--print-key",
        "--quiet",
        "--timeout",
        timeout,
        "--device",
        img.to_str().unwrap_or_default(),
    ];
    let t = Instant::now();
    let o = m.cli(i, &args)?;
    let took = t.elapsed();
    if !o.status.success() || o.stdout.len() != 32 {
        bail!(
            "unlock of node{i} failed ({} key bytes): {}",
            o.stdout.len(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok((took, o.stdout))
}

/// A formed mesh of `n` whose last node binds its image 3-of-5, with
/// that node's daemon stopped cleanly (it is "rebooting").
fn owner_mesh(m: &mut Mesh) -> Result<usize> {
    let owner = m.nodes.len() - 1;
    m.form()?;
    m.make_image(owner)?;
    let out = m.bind(owner, &["--shares", "5", "--threshold", "3"])?;
    ensure!(out.contains("3-of-5"), "bind: {out}");
    m.stop(owner)?;
    Ok(owner)
}

/// Guardians named in node `i`'s LUKS token, as mesh node indices.
fn token_guardians(m: &Mesh, i: usize) -> Result<Vec<usize>> {
    let (_, tok) = keyward_node::luks::Device::new(&m.dir(i).join("disk.img"))
        .token()?
        .context("image not bound")?;
    let mut out = Vec::new();
    for g in &tok.guardians {
        let j = (0..m.nodes.len())
            .find(|&j| m.status_direct(j).is_ok_and(|v| v.node.id == g.id))
            .context("guardian of the token not found in the mesh")?;
        out.push(j);
    }
    Ok(out)
}

/// `n` timed unlocks of `owner`'s image after one warm-up. Every run must
/// print the same key, and that key must open the image (`cryptsetup
/// open --test-passphrase`, once per series, outside the timing).
fn unlock_series(m: &Mesh, owner: usize, n: usize, timeout: &str) -> Result<Vec<Duration>> {
    // one warm-up run (page cache, ARP, first connections)
    let (_, key) = time_unlock(m, owner, timeout)?;
    keyward_node::luks::Device::new(&m.dir(owner).join("disk.img"))
        .test_key(&key, None)
        .context("the unlocked key does not open the image")?;
    (0..n)
        .map(|k| {
            let (took, again) = time_unlock(m, owner, timeout)?;
            ensure!(again == key, "unlock {k} printed another key");
            Ok(took)
        })
        .collect()
}

fn loopback_unlock(rows: &mut Vec<Row>) -> Result<()> {
    let n = unlocks();
    eprintln!("loopback: 6-node mesh, owner binds 3-of-5, {n} unlocks");
    let mut m = Mesh::loopback(6, &opts())?;
    let owner = owner_mesh(&mut m)?;
    let mut v = unlock_series(&m, owner, n, "10s")?;
    row(
        rows,
        "unlock 3-of-5, process start to key (`unlock --print-key`)",
        "loopback",
        &mut v,
        String::new(),
    )?;
    // the part of that spent reading the token: `keyward unlock` runs
    // cryptsetup once for the LUKS2 metadata
    let img = m.dir(owner).join("disk.img");
    let mut v = (0..n.min(50))
        .map(|_| {
            let t = Instant::now();
            let o = Command::new("cryptsetup")
                .args(["luksDump", "--dump-json-metadata"])
                .arg(&img)
                .stdout(Stdio::null())
                .status()?;
            ensure!(o.success(), "luksDump failed");
            Ok(t.elapsed())
        })
        .collect::<Result<Vec<_>>>()?;
    row(
        rows,
        "for reference: reading the token with `cryptsetup luksDump` (unlock reads the LUKS2 header itself, no child process)",
        "loopback",
        &mut v,
        String::new(),
    )?;
    let hung: Vec<usize> = token_guardians(&m, owner)?.into_iter().take(2).collect();
    for &g in &hung {
        m.signal(g, libc::SIGSTOP)?;
    }
    let r = unlock_series(&m, owner, n, "10s");
    for &g in &hung {
        m.signal(g, libc::SIGCONT)?;
    }
    let mut v = r?;
    // nothing is left behind by the unlock processes
    let left = children_named(std::process::id(), "keyward")?;
    row(
        rows,
        "unlock 3-of-5 with 2 of the 5 guardians hung (SIGSTOP)",
        "loopback",
        &mut v,
        format!(", keyward processes left running afterwards: {left}"),
    )?;
    Ok(())
}

/// Number of live child processes of `parent` whose command is `name`.
fn children_named(parent: u32, name: &str) -> Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir("/proc")? {
        let e = e?;
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let comm = comm.rsplit_once('(').map(|x| x.1).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if comm == name && fields.get(1) == Some(&parent.to_string().as_str()) && fields[0] != "Z" {
            n += 1;
        }
    }
    Ok(n)
}

/// Time from starting `keyward join` on `joiner` until every node of
/// `all` lists `joiner` in its roster.
fn time_join(m: &Mesh, joiner: usize, inviter: usize, all: &[usize]) -> Result<Duration> {
    let token = m.cli_ok(inviter, &["invite"])?;
    let name = m.nodes[joiner].name.clone();
    let t = Instant::now();
    m.cli_ok(joiner, &["join", token.trim()])?;
    let deadline = t + Duration::from_secs(30);
    let mut pending: Vec<usize> = all.to_vec();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!("{name} not in the rosters of {pending:?} after 30 s");
        }
        pending.retain(|&i| {
            !m.status_direct(i)
                .is_ok_and(|v| v.members.iter().any(|x| x.name == name))
        });
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(t.elapsed())
}

/// Joins node 4 to a fresh mesh of nodes 0..3, `samples` times.
fn join_samples(samples: usize, mut make: impl FnMut() -> Result<Mesh>) -> Result<Vec<Duration>> {
    let mut v = Vec::new();
    for s in 0..samples {
        let mut m = make()?;
        m.form_nodes(&[0, 1, 2, 3])?;
        m.init(4, None)?;
        m.start(4)?;
        // invited by a non-founder, so the news has to travel
        let d = time_join(&m, 4, 1 + s % 3, &[0, 1, 2, 3, 4])?;
        v.push(d);
    }
    Ok(v)
}

fn loopback_join(rows: &mut Vec<Row>) -> Result<()> {
    eprintln!("loopback: join to roster convergence on 5 nodes");
    let mut v = join_samples(JOIN_SAMPLES, || Mesh::loopback(5, &opts()))?;
    row(
        rows,
        "`keyward join` to the new node in all 5 rosters",
        "loopback",
        &mut v,
        ", a fresh 4-node mesh per join".into(),
    )
}

fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

fn loopback_rss(rows: &mut Vec<Row>) -> Result<()> {
    eprintln!("loopback: 10-node mesh, 10 s idle, VmRSS");
    let mut m = Mesh::loopback(10, &opts())?;
    m.form()?;
    std::thread::sleep(Duration::from_secs(10));
    let mut kib: Vec<u64> = (0..10)
        .map(|i| rss_kib(m.pid(i).context("daemon not running")?))
        .collect::<Result<_>>()?;
    let node0 = kib[0];
    kib.sort();
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    eprintln!("  VmRSS KiB of the 10 daemons: {kib:?}");
    rows.push(Row {
        what: "idle RSS of one keywardd in a 10-node mesh after 10 s".into(),
        place: "loopback",
        n: 10,
        median: mib((kib[4] + kib[5]) / 2),
        p99: mib(kib[9]),
        notes: format!(
            "node0 {}, min {} (p99 column = max)",
            mib(node0),
            mib(kib[0])
        ),
    });
    Ok(())
}

fn netns_unlock(rows: &mut Vec<Row>) -> Result<()> {
    let n = unlocks();
    eprintln!("netns: 6 namespaces, owner binds 3-of-5, {n} unlocks clean, then lossy");
    let lab = Arc::new(Lab::new(6)?);
    let mut m = Mesh::in_lab(lab.clone(), &opts())?;
    let owner = owner_mesh(&mut m)?;
    let mut v = unlock_series(&m, owner, n, "30s")?;
    row(
        rows,
        "unlock 3-of-5, process start to key, clean links",
        "netns",
        &mut v,
        String::new(),
    )?;
    for i in 0..6 {
        lab.set_loss(i, LOSS_PERCENT)?;
        lab.set_delay(i, DELAY_PER_END)?;
    }
    let mut v = unlock_series(&m, owner, n.clamp(50, 60), "60s")?;
    row(
        rows,
        "unlock 3-of-5, 1% loss per packet each way, 50 ms one-way delay between nodes (100 ms RTT)",
        "netns",
        &mut v,
        String::new(),
    )?;
    for i in 0..6 {
        lab.set_loss(i, 0)?;
        lab.set_delay(i, Duration::ZERO)?;
    }
    // lockdown propagation, all 6 daemons running, clean links
    m.start(owner)?;
    m.converge(Duration::from_secs(30))?;
    let all: Vec<usize> = (0..6).collect();
    let mut on = Vec::new();
    let mut off = Vec::new();
    for k in 0..10 {
        let from = k % 6;
        on.push(time_lock(&m, from, false, &all)?);
        off.push(time_lock(&m, (from + 1) % 6, true, &all)?);
    }
    row(
        rows,
        "`keyward lockdown` until all 6 nodes show it",
        "netns",
        &mut on,
        ", from each node in turn".into(),
    )?;
    row(
        rows,
        "`keyward lockdown --lift` until all 6 nodes show it lifted",
        "netns",
        &mut off,
        String::new(),
    )?;
    Ok(())
}

/// Time from starting `keyward lockdown [--lift]` on `from` until all
/// of `all` show the new state (one poller: 6 nodes).
fn time_lock(m: &Mesh, from: usize, lift: bool, all: &[usize]) -> Result<Duration> {
    time_lock_reach(m, from, lift, all, 1, Duration::from_secs(10))
}

/// Runs `keyward lockdown [--lift]` on `from` and returns how long until
/// every node of `nodes` shows the new state, as seen by `pollers`
/// threads polling a share of the control sockets each (a sweep of 100
/// from one thread takes tens of ms, which would be measured too); fails
/// after `limit`.
fn time_lock_reach(
    m: &Mesh,
    from: usize,
    lift: bool,
    nodes: &[usize],
    pollers: usize,
    limit: Duration,
) -> Result<Duration> {
    let pollers = pollers.max(1);
    let t = Instant::now();
    if lift {
        m.cli_ok(from, &["lockdown", "--lift"])?;
    } else {
        m.cli_ok(from, &["lockdown"])?;
    }
    let seen: Vec<Result<Duration>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..pollers)
            .map(|k| {
                let mut pending: Vec<usize> =
                    nodes.iter().copied().skip(k).step_by(pollers).collect();
                s.spawn(move || -> Result<Duration> {
                    let mut last = t.elapsed();
                    while !pending.is_empty() {
                        if t.elapsed() > limit {
                            bail!(
                                "lockdown (lift: {lift}) not seen by {pending:?} after {limit:?}"
                            );
                        }
                        pending.retain(|&i| {
                            !m.status_direct(i)
                                .is_ok_and(|v| v.lockdown.is_none() == lift)
                        });
                        last = t.elapsed();
                        if !pending.is_empty() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    Ok(last)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("poller panicked")))
            })
            .collect()
    });
    let mut worst = Duration::ZERO;
    for d in seen {
        worst = worst.max(d?);
    }
    Ok(worst)
}

fn netns_join(rows: &mut Vec<Row>) -> Result<()> {
    eprintln!("netns: join to roster convergence on 5 namespaces");
    let mut v = join_samples(JOIN_SAMPLES, || {
        Mesh::in_lab(Arc::new(Lab::new(5)?), &opts())
    })?;
    row(
        rows,
        "`keyward join` to the new node in all 5 rosters",
        "netns",
        &mut v,
        ", a fresh 4-node mesh per join".into(),
    )
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = s.rsplit_once(") ").context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after the command: state(0) ... utime(11) stime(12)
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// Connections of every daemon now.
fn all_conns(m: &Mesh) -> Result<Vec<Conns>> {
    (0..m.nodes.len()).map(|i| m.conns(i)).collect()
}

/// What a sample of connection counts says: (max, mean) of the sockets.
fn sockets_max_mean(c: &[Conns]) -> (usize, f64) {
    let max = c.iter().map(|c| c.sockets).max().unwrap_or(0);
    let mean = c.iter().map(|c| c.sockets).sum::<usize>() as f64 / c.len().max(1) as f64;
    (max, mean)
}

/// Time from starting `keyward lockdown [--lift]` on `from` until every
/// node of the mesh shows the new state; four pollers.
fn time_lock_wide(m: &Mesh, from: usize, lift: bool) -> Result<Duration> {
    let all: Vec<usize> = (0..m.nodes.len()).collect();
    time_lock_reach(m, from, lift, &all, 4, Duration::from_secs(30))
}

/// Microseconds since the epoch of a log line's RFC 3339 UTC timestamp
/// (`2026-12-03T10:41:29.095182Z ...`, as keywardd's log lines start).
fn log_micros(line: &str) -> Option<i64> {
    let ts = line.get(..27)?;
    let n = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec, us) = (n(11..13)?, n(14..16)?, n(17..19)?, n(20..26)?);
    // days from civil (Howard Hinnant's algorithm)
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000_000 + sec * 1_000_000 + us)
}

/// The time of the last line of node `i`'s log containing `needle`.
fn last_logged(m: &Mesh, i: usize, needle: &str) -> Option<i64> {
    m.log(i)
        .lines()
        .rev()
        .find(|l| l.contains(needle))
        .and_then(log_micros)
}

/// From the command's start until the last daemon logged the new state
/// (their own clocks: the same machine's).
fn lock_logged(m: &Mesh, start_us: i64, lift: bool) -> Result<Duration> {
    let needle = if lift { "lockdown lifted" } else { "LOCKDOWN" };
    let mut last = start_us;
    for i in 0..m.nodes.len() {
        let t = last_logged(m, i, needle).with_context(|| format!("node{i} logged no {needle}"))?;
        ensure!(
            t >= start_us,
            "node{i}'s last {needle} is older than the command"
        );
        last = last.max(t);
    }
    Ok(Duration::from_micros((last - start_us) as u64))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The big-mesh rows (`keyward-bench mesh100`).
fn loopback_mesh(n: usize) -> Result<()> {
    const INVITERS: usize = 10;
    const IDLE: Duration = Duration::from_secs(60);
    eprintln!("loopback: {n}-node mesh, invites from the first {INVITERS} members in turn");
    let mut m = Mesh::loopback(n, &opts())?;
    let all: Vec<usize> = (0..n).collect();
    let t = Instant::now();
    let joins = m.form_large(&all, INVITERS, Duration::from_secs(600))?;
    let formed = t.elapsed();
    eprintln!(
        "  formed (every roster has all {n}, equal digests) in {formed:.1?}, joins {joins:.1?}"
    );
    // Connections over the first minute: the joins' connections to their
    // inviters are pruned 5 s after each admission (`JOINED_GRACE`), dials
    // of members whose address is not known yet settle.
    let mut peak = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(45) {
        let c = all_conns(&m)?;
        let (max, mean) = sockets_max_mean(&c);
        peak = peak.max(max);
        eprintln!(
            "  {:>4.0} s after forming: sockets per daemon max {max}, mean {mean:.1}",
            t.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(5));
    }
    // idle: CPU of all daemons over IDLE, connections sampled meanwhile
    let pids: Vec<u32> = all
        .iter()
        .map(|&i| m.pid(i).context("daemon not running"))
        .collect::<Result<_>>()?;
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect::<Result<_>>()?;
    let t = Instant::now();
    let mut samples = Vec::new();
    while t.elapsed() + Duration::from_secs(10) < IDLE {
        std::thread::sleep(Duration::from_secs(10));
        samples.push(all_conns(&m)?);
    }
    std::thread::sleep(IDLE.saturating_sub(t.elapsed()));
    let wall = t.elapsed();
    let after: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect::<Result<_>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / hz)
        .collect();
    let cpu_total: f64 = cpu.iter().sum();
    let cpu_max = cpu.iter().copied().fold(0.0, f64::max);
    // the last sample is "now"
    let last = samples.last().cloned().context("no sample")?;
    let (max, mean) = sockets_max_mean(&last);
    let idle_peak = samples
        .iter()
        .map(|c| sockets_max_mean(c).0)
        .max()
        .unwrap_or(0);
    let member_max = last.iter().map(|c| c.members).max().unwrap_or(0);
    let member_mean = last.iter().map(|c| c.members).sum::<usize>() as f64 / n as f64;
    let wanted_max = last.iter().map(|c| c.wanted).max().unwrap_or(0);
    let wanted_mean = last.iter().map(|c| c.wanted).sum::<usize>() as f64 / n as f64;
    let over: usize = samples
        .iter()
        .map(|s| s.iter().filter(|c| c.sockets > c.bound()).count())
        .sum();
    let differ = last
        .iter()
        .filter(|c| c.sockets != c.members + c.strangers)
        .count();
    let mut kib: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect::<Result<_>>()?;
    kib.sort();
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    let rss_median = if n % 2 == 1 {
        kib[n / 2]
    } else {
        (kib[n / 2 - 1] + kib[n / 2]) / 2
    };
    // lockdown from several nodes, each lift from the next
    let (mut on, mut off, mut on_log, mut off_log) = (vec![], vec![], vec![], vec![]);
    for k in 0..5 {
        let from = (k * 37) % n;
        let t = now_us();
        on.push(time_lock_wide(&m, from, false)?);
        on_log.push(lock_logged(&m, t, false)?);
        let t = now_us();
        off.push(time_lock_wide(&m, (from + 1) % n, true)?);
        off_log.push(lock_logged(&m, t, true)?);
    }
    let (on_med, _) = stats(&mut on);
    let (off_med, _) = stats(&mut off);
    let (on_log_med, _) = stats(&mut on_log);
    let (off_log_med, _) = stats(&mut off_log);
    let after_lock = all_conns(&m)?;
    let (lock_max, _) = sockets_max_mean(&after_lock);

    println!();
    println!(
        "keyward-bench mesh, {n} keywardd on loopback, {}",
        machine()
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| form: `keyward init` x {n}, start {n} daemons, {} sequential `keyward invite` + `keyward join` (invites from the first {INVITERS} members in turn), until every roster has all {n} with equal digests | {:.1} s (the joins {:.1} s, {:.0} ms each) |", n - 1, formed.as_secs_f64(), joins.as_secs_f64(), joins.as_secs_f64() * 1000.0 / (n - 1).max(1) as f64);
    println!("| connections per daemon, idle (established TCP sockets, kernel): max / mean | {max} / {mean:.1} |");
    println!("| same, as the daemons' status counts them (members connected): max / mean | {member_max} / {member_mean:.1} |");
    println!("| members each daemon keeps (guardians + wards + gossip neighbours): max / mean | {wanted_max} / {wanted_mean:.1} |");
    println!("| daemons whose socket count differs from status (members + strangers) | {differ} of {n} |");
    println!("| peak sockets of one daemon: first 45 s after forming / idle minute / after the lockdowns | {peak} / {idle_peak} / {lock_max} |");
    println!(
        "| samples over the bound (wanted + {}) in the idle minute | {over} of {} |",
        Conns::TRANSIENT,
        samples.len() * n
    );
    println!("| CPU time of all {n} daemons over {:.0} s idle | {cpu_total:.2} s ({:.1}% of one core; busiest daemon {cpu_max:.2} s) |", wall.as_secs_f64(), 100.0 * cpu_total / wall.as_secs_f64());
    println!(
        "| RSS per daemon: median / max | {} / {} |",
        mib(rss_median),
        mib(kib[n - 1])
    );
    println!(
        "| `keyward lockdown` until all {n} logged it (the daemons' log times): median / max of {} | {} / {} |",
        on_log.len(),
        ms(on_log_med),
        ms(on_log[on_log.len() - 1])
    );
    println!(
        "| `keyward lockdown --lift` until all {n} logged it: median / max of {} | {} / {} |",
        off_log.len(),
        ms(off_log_med),
        ms(off_log[off_log.len() - 1])
    );
    println!(
        "| the same two until all {n} show it in `status` (4 threads polling; includes their sweeps) | {} / {}; {} / {} |",
        ms(on_med),
        ms(on[on.len() - 1]),
        ms(off_med),
        ms(off[off.len() - 1])
    );
    Ok(())
}

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("mesh100") {
        let n = std::env::var("KEYWARD_BENCH_MESH_NODES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        bins();
        return loopback_mesh(n);
    }
    if !have_cryptsetup() {
        bail!("cryptsetup is needed (apt install cryptsetup-bin)");
    }
    let b = bins();
    eprintln!(
        "binaries: {} and {}",
        b.keyward.display(),
        b.keywardd.display()
    );
    if !Path::new(&b.keyward).exists() {
        bail!("build first: cargo build --release --workspace");
    }
    let mut rows = Vec::new();
    loopback_unlock(&mut rows)?;
    loopback_join(&mut rows)?;
    loopback_rss(&mut rows)?;
    let root = unsafe { libc::geteuid() } == 0;
    let have_nft = Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut skipped = None;
    if root && have_nft {
        netns_unlock(&mut rows)?;
        netns_join(&mut rows)?;
    } else {
        skipped = Some(if root { "nft not found" } else { "not root" });
    }
    println!();
    println!("keyward-bench, {}", machine());
    println!();
    println!("| what | where | n | median | p99 | notes |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what, r.place, r.n, r.median, r.p99, r.notes
        );
    }
    if let Some(why) = skipped {
        println!("| namespace rows | netns | - | - | - | skipped: {why} |");
    }
    Ok(())
}
