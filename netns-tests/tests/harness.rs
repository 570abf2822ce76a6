//! Self-tests of the lab with real namespaces and iputils `ping`.
//! Every packet goes to an address inside a namespace the test made.
//! Needs root, iproute2, nftables and iputils-ping; skips otherwise.

use keyward_netns_tests::{lab_or_skip, or_skip, Lab, Skip};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one `ping` run saw.
#[derive(Debug)]
struct Ping {
    received: u32,
    /// Minimum round trip in ms, if anything came back.
    min_ms: Option<f64>,
}

fn need_ping() -> anyhow::Result<()> {
    match Command::new("ping").arg("-V").output() {
        Ok(_) => Ok(()),
        Err(_) => Err(Skip("`ping` (iputils-ping) not found".into()).into()),
    }
}

/// Pings node `to` from node `from` `count` times, 0.2 s apart.
fn ping(lab: &Lab, from: usize, to: usize, count: u32) -> Ping {
    let out = lab
        .run(
            from,
            Command::new("ping")
                .args(["-n", "-q", "-i", "0.2", "-W", "1", "-c"])
                .arg(count.to_string())
                .arg(lab.node(to).addr().to_string()),
        )
        .expect("run ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("unexpected ping output: {text}"));
    let min_ms = text
        .lines()
        .find_map(|l| l.split_once(" = ")?.1.split('/').next()?.parse().ok());
    Ping { received, min_ms }
}

/// Pings until one answer arrives (a few tries: ARP may need a moment after
/// a link change).
fn reachable(lab: &Lab, from: usize, to: usize) -> bool {
    (0..5).any(|_| ping(lab, from, to, 3).received > 0)
}

#[test]
fn two_nodes_ping_each_other() {
    or_skip!(need_ping());
    let lab = lab_or_skip!(2);
    let (a, b) = (lab.node(0).addr(), lab.node(1).addr());
    assert_ne!(a, b);
    for o in [a.octets(), b.octets()] {
        assert!(o[0] == 198 && o[1] & 0xfe == 18, "outside 198.18.0.0/15");
    }
    assert_eq!(ping(&lab, 0, 1, 3).received, 3);
    assert_eq!(ping(&lab, 1, 0, 3).received, 3);
}

#[test]
fn link_down_isolates_and_link_up_restores() {
    or_skip!(need_ping());
    let lab = lab_or_skip!(2);
    assert!(reachable(&lab, 0, 1));
    lab.link_down(1).unwrap();
    assert_eq!(ping(&lab, 0, 1, 3).received, 0);
    assert_eq!(ping(&lab, 1, 0, 3).received, 0);
    lab.link_up(1).unwrap();
    assert!(reachable(&lab, 0, 1));
    assert!(reachable(&lab, 1, 0));
}

#[test]
fn loss_100_drops_everything_and_0_restores() {
    or_skip!(need_ping());
    let lab = lab_or_skip!(2);
    assert!(reachable(&lab, 0, 1));
    or_skip!(lab.set_loss(1, 100));
    assert_eq!(ping(&lab, 0, 1, 5).received, 0);
    assert_eq!(ping(&lab, 1, 0, 5).received, 0);
    // Loopback inside the node is exempt.
    let lo = lab
        .run(
            1,
            Command::new("ping").args(["-n", "-q", "-c", "1", "-W", "1", "127.0.0.1"]),
        )
        .unwrap();
    assert!(lo.status.success(), "loopback must not be dropped");
    lab.set_loss(1, 0).unwrap();
    assert_eq!(ping(&lab, 0, 1, 5).received, 5);
    lab.set_loss(1, 0).unwrap(); // clearing twice is fine
    assert!(lab.set_loss(1, 101).is_err());
}

#[test]
fn delay_is_added_to_every_frame_both_ways() {
    or_skip!(need_ping());
    let lab = lab_or_skip!(3);
    let delay = Duration::from_millis(50);
    let before = ping(&lab, 0, 1, 3);
    println!("rtt before delay: {:?} ms", before.min_ms);
    lab.set_delay(1, delay).unwrap();
    // The first ping also waits for ARP, which is delayed as well.
    let slow = ping(&lab, 0, 1, 5);
    let back = ping(&lab, 1, 0, 3);
    println!("rtt with 50 ms delay on node 1: {slow:?}, reverse: {back:?}");
    let floor = 2.0 * delay.as_secs_f64() * 1000.0 * 0.8;
    assert_eq!(slow.received, 5);
    assert!(slow.min_ms.unwrap() >= floor, "{slow:?} < {floor} ms");
    assert!(back.min_ms.unwrap() >= floor, "{back:?} < {floor} ms");
    // Nodes that are not delayed still talk directly.
    assert_eq!(ping(&lab, 0, 2, 3).received, 3);

    // Cutting the delayed link still works, and the relay survives it.
    lab.link_down(1).unwrap();
    assert_eq!(ping(&lab, 0, 1, 3).received, 0);
    lab.link_up(1).unwrap();
    assert!(reachable(&lab, 0, 1));

    lab.set_delay(1, Duration::from_millis(20)).unwrap();
    let changed = ping(&lab, 0, 1, 3);
    println!("rtt after changing delay to 20 ms: {changed:?}");
    assert!(changed.min_ms.unwrap() >= 2.0 * 20.0 * 0.8);

    lab.set_delay(1, Duration::ZERO).unwrap();
    let after = ping(&lab, 0, 1, 3);
    println!("rtt after removing delay: {after:?}");
    assert_eq!(after.received, 3);
}

/// What scenario 8 and the benchmark set: 25 ms at each node's end is
/// 50 ms one way, 100 ms round trip, between two delayed nodes.
#[test]
fn delay_on_both_ends_adds_up_to_the_one_way_figure() {
    or_skip!(need_ping());
    let lab = lab_or_skip!(2);
    for i in 0..2 {
        lab.set_delay(i, Duration::from_millis(25)).unwrap();
    }
    let p = ping(&lab, 0, 1, 5);
    println!("rtt with 25 ms at each end: {p:?}");
    let rtt = p.min_ms.unwrap();
    assert!((95.0..150.0).contains(&rtt), "{p:?}");
}

#[test]
fn tcp_crosses_a_delayed_link_intact() {
    let lab = lab_or_skip!(2);
    lab.set_delay(1, Duration::from_millis(5)).unwrap();
    let server = SocketAddr::from((lab.node(1).addr(), 7000));
    let listener = lab.in_ns(1, || TcpListener::bind(server)).unwrap().unwrap();
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    let expected = data.clone();
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        got
    });
    let mut conn = lab
        .in_ns(0, || {
            TcpStream::connect_timeout(&server, Duration::from_secs(5))
        })
        .unwrap()
        .unwrap();
    let start = Instant::now();
    conn.write_all(&data).unwrap();
    drop(conn);
    let got = receiver.join().unwrap();
    println!("8 MiB over a 5 ms link in {:?}", start.elapsed());
    assert!(got == expected, "TCP data corrupted through the relay");
}

#[test]
fn drop_removes_processes_and_namespaces() {
    let lab = lab_or_skip!(2);
    let prefix = lab.prefix().to_owned();
    let mut sleeper = lab.spawn(0, Command::new("sleep").arg("1000")).unwrap();
    // A grandchild the lab never saw: it must die too.
    let mut parent = lab
        .spawn(
            1,
            Command::new("sh")
                .args(["-c", "sleep 1000 & echo $!; wait"])
                .stdout(Stdio::piped()),
        )
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let grandchild: u32 = line.trim().parse().unwrap();
    lab.set_delay(1, Duration::from_millis(10)).unwrap();
    if let Err(e) = lab.set_loss(0, 50) {
        assert!(e.downcast_ref::<Skip>().is_some(), "{e:#}");
    }
    assert!(namespaces_with(&prefix).len() == 3);

    drop(lab);

    for child in [&mut sleeper, &mut parent] {
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
    assert!(gone_soon(grandchild), "grandchild {grandchild} survived");
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
}

#[test]
fn a_panicking_test_still_cleans_up() {
    drop(lab_or_skip!(1));
    let mut prefix = String::new();
    let mut child = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new(2).unwrap();
        prefix = lab.prefix().to_owned();
        lab.set_delay(0, Duration::from_millis(10)).unwrap();
        child = Some(lab.spawn(1, Command::new("sleep").arg("1000")).unwrap());
        panic!("test failure with a lab alive");
    }));
    assert!(result.is_err());
    assert!(!prefix.is_empty());
    assert_eq!(namespaces_with(&prefix), Vec::<String>::new());
    let status = child.unwrap().wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn stale_namespaces_of_a_killed_run_are_removed() {
    // A first lab only to skip where labs cannot run.
    drop(lab_or_skip!(1));
    // Fake a SIGKILLed run: a namespace named after a pid that has exited,
    // with a process still running inside.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let stale = format!("kwt-{}-0-hub", gone.id());
    assert!(Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap()
        .success());
    let mut orphan = Command::new("ip")
        .args(["netns", "exec", &stale, "sleep", "1000"])
        .spawn()
        .unwrap();
    // Wait until the sleep has entered the namespace, or the cleanup could
    // run first and leave it behind.
    let t = std::time::Instant::now();
    while Command::new("ip")
        .args(["netns", "pids", &stale])
        .output()
        .unwrap()
        .stdout
        .is_empty()
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "orphan never entered {stale}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut guard = Leftovers::default();
    // A namespace named after a live process that started before it (a
    // concurrent run's lab) must stay.
    let live = Command::new("sleep").arg("1000").spawn().unwrap();
    let kept = format!("kwt-{}-0-hub", live.id());
    guard.children.push(live);
    assert!(Command::new("ip")
        .args(["netns", "add", &kept])
        .status()
        .unwrap()
        .success());
    guard.namespaces.push(kept.clone());
    // Mesh directories: one of the dead run (with a LUKS image and a
    // loopback daemon still using it), one whose pid was reused by a
    // process started later (here: this one, with another start time),
    // and one of this very process, which must stay.
    let me = std::process::id();
    let start = start_ticks(me);
    let tmp = std::env::temp_dir();
    let dead_dir = tmp.join(format!("keyward-mesh-{}-1-test", gone.id()));
    let reused_dir = tmp.join(format!("keyward-mesh-{me}-{}-test", start + 1));
    let own_dir = tmp.join(format!("keyward-mesh-{me}-{start}-test"));
    guard.dirs = vec![dead_dir.clone(), reused_dir.clone(), own_dir.clone()];
    let mut daemon = None;
    for dir in [&dead_dir, &reused_dir, &own_dir] {
        // built under another name and renamed, so that a concurrent
        // test's cleanup never sees it half made
        let building = tmp.join(format!(
            "kwt-building-{}",
            dir.file_name().unwrap().to_str().unwrap()
        ));
        guard.dirs.push(building.clone());
        std::fs::create_dir_all(building.join("node0")).unwrap();
        std::fs::write(building.join("node0/disk.img"), [0u8; 4096]).unwrap();
        if dir == &dead_dir {
            daemon = Some(
                Command::new("sleep")
                    .arg("1000")
                    .env("KEYWARD_CONFIG", dir.join("node0/keyward.toml"))
                    .spawn()
                    .unwrap(),
            );
        }
        std::fs::rename(&building, dir).unwrap();
    }
    let _lab = Lab::new(1).unwrap();
    assert!(namespaces_with(&stale).is_empty(), "{stale} left behind");
    assert_eq!(orphan.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(
        namespaces_with(&kept),
        std::slice::from_ref(&kept),
        "a live run's namespace"
    );
    assert!(!dead_dir.exists(), "{} left behind", dead_dir.display());
    assert!(!reused_dir.exists(), "{} left behind", reused_dir.display());
    let mut daemon = daemon.unwrap();
    let status = (0..100).find_map(|_| {
        let s = daemon.try_wait().unwrap();
        if s.is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    });
    guard.children.push(daemon);
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "a daemon of the killed run survived"
    );
    assert!(
        own_dir.join("node0/disk.img").exists(),
        "a live run's files"
    );
}

/// What a test made outside any lab, removed at drop (also on failure).
#[derive(Default)]
struct Leftovers {
    namespaces: Vec<String>,
    dirs: Vec<std::path::PathBuf>,
    children: Vec<std::process::Child>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Start time of `pid` in clock ticks since boot (field 22 of its stat).
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(") ").unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// True once `pid` has exited (gone, or a zombie waiting for its reaper).
fn gone_soon(pid: u32) -> bool {
    (0..200).any(|_| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, s)| s.chars().next());
        if matches!(state, None | Some('Z') | Some('X')) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
        false
    })
}
