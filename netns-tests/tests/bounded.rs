//! Issue 19 with real daemons in real namespaces: in a mesh of 20 (more
//! than `FULL_MESH_UP_TO`, so nodes keep only their overlay connected),
//! unlock, lockdown and its lift, and revocation still work, and every
//! daemon's connections stay within its bound all along: the members it
//! keeps (guardians, wards, gossip neighbours, as its status marks them)
//! plus the simulator's 8 transient ones (`net.connection-bound`), and
//! never more than [`CAP`]. Connections are counted by the kernel (the
//! daemon's established TCP sockets), not taken from the daemon.
//!
//! Needs root, iproute2 and cryptsetup; skips otherwise (fails instead
//! with `KEYWARD_NETNS_REQUIRE=1`).

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_netns_tests::mesh::{bins, have_cryptsetup, LogsOnPanic, Mesh, MeshOptions};
use keyward_netns_tests::{lab_or_skip, report_skip, Skip};

/// Members: enough that each keeps 6 gossip neighbours of 19 others.
const N: usize = 20;
/// No daemon ever holds more connections than this (issue 19's goal for
/// a mesh of any size is 25).
const CAP: usize = 25;

/// Every running daemon's connections against its bound, once; returns
/// the most sockets one held.
fn check(m: &Mesh, when: &str, checks: &mut usize) -> usize {
    check_within(m, when, checks, true)
}

/// Like [`check`]; with `bound` false only against [`CAP`] (right after
/// the joins). Prints who a daemon over its bound holds beyond its
/// overlay.
fn check_within(m: &Mesh, when: &str, checks: &mut usize, bound: bool) -> usize {
    let mut most = 0;
    for i in (0..N).filter(|&i| m.running(i)) {
        let c = m
            .conns(i)
            .unwrap_or_else(|e| panic!("{when}: node{i}: {e:#}"));
        assert!(
            (!bound || c.sockets <= c.bound()) && c.sockets <= CAP,
            "{when}: node{i} holds {} connections, bound {} (wanted {} + 8), cap {CAP}: {c:?}",
            c.sockets,
            c.bound(),
            c.wanted
        );
        if c.sockets > c.bound() {
            let extra: Vec<String> = m
                .status_direct(i)
                .map(|v| {
                    v.members
                        .into_iter()
                        .filter(|x| {
                            x.connected
                                && !x.me
                                && !x.guards_me
                                && !x.gossip
                                && x.holds_shares_epochs.is_empty()
                        })
                        .map(|x| x.name)
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "  {when}: node{i} holds {} > bound {}; outside its overlay: {extra:?}",
                c.sockets,
                c.bound()
            );
        }
        most = most.max(c.sockets);
        *checks += 1;
    }
    most
}

/// Waits (checking connections on every round) until every node of
/// `nodes` passes `f`; a failure names the nodes that did not.
fn wait_checking(
    m: &Mesh,
    when: &str,
    checks: &mut usize,
    timeout: Duration,
    nodes: &[usize],
    mut f: impl FnMut(&Mesh, usize) -> bool,
) {
    let t = Instant::now();
    loop {
        check(m, when, checks);
        let behind: Vec<usize> = nodes.iter().copied().filter(|&i| !f(m, i)).collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            t.elapsed() < timeout,
            "{when}: not within {timeout:?} at nodes {behind:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Node `i` reboots ([`Mesh::reboot_unlock`]).
fn reboot_unlock(m: &Mesh, i: usize, timeout: &str) -> Output {
    m.reboot_unlock(i, timeout).expect("keyward unlock ran")
}

fn assert_opens(o: &Output, who: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{who}: unlock failed: {e}");
    assert!(e.contains("the key from the guardians opens"), "{who}: {e}");
}

#[test]
fn twenty_nodes_keep_few_connections_while_unlock_lockdown_and_revocation_work() {
    let started = Instant::now();
    let lab = Arc::new(lab_or_skip!(N));
    if !have_cryptsetup() {
        report_skip(&Skip("cryptsetup not installed".into()));
        return;
    }
    bins();
    let opts = MeshOptions {
        policy: "interval = 1\ntimeout = 30\nextended_timeout = 30\nup_window = 3\n".into(),
        mdns: false,
    };
    let mut m = Mesh::in_lab(lab.clone(), &opts).expect("mesh in lab");
    let _logs = LogsOnPanic::of(&m, N, 20);
    let all: Vec<usize> = (0..N).collect();
    let mut checks = 0;
    println!("  lab of {N} namespaces after {:?}", started.elapsed());

    // joins, each invited by one of the first five members
    m.form_large(&all, 5, Duration::from_secs(60)).unwrap();
    println!("  formed after {:?}", started.elapsed());
    // Right after the joins only the cap holds: connections that came
    // up before their peer was a member (a joiner's, at its inviter) go
    // 5 s after the admission (`JOINED_GRACE`), but those of the
    // fully connected first eight members become unwanted as the mesh
    // passes eight and go 30 s after they opened (seen: 14 against a
    // bound of 13 at 8.5 s). The bound holds from the next step on.
    let t = Instant::now();
    let mut most = 0;
    while t.elapsed() < Duration::from_secs(35) {
        let when = format!("{:.1} s after forming", t.elapsed().as_secs_f64());
        most = most.max(check_within(&m, &when, &mut checks, false));
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("  most connections of a daemon in the 35 s after forming: {most}");
    most = 0;

    // The owner binds 3-of-5; its guardians say so, so it keeps them.
    // It picks among the members it knows an address of first (a CI
    // run's deposit could not dial node18, which was up: most likely its
    // peer record had not reached the owner yet, as in
    // `bind_after_forming.rs`).
    let owner = N - 1;
    m.make_image(owner).unwrap();
    let unaddressed: Vec<String> = m
        .status_direct(owner)
        .unwrap()
        .members
        .into_iter()
        .filter(|x| !x.me && x.addrs.is_empty())
        .map(|x| x.name)
        .collect();
    println!("  node{owner} knows no address of {unaddressed:?} yet");
    let out = m
        .bind(owner, &["--shares", "5", "--threshold", "3"])
        .unwrap();
    assert!(out.contains("3-of-5"), "bind: {out}");
    wait_checking(
        &m,
        "after bind",
        &mut checks,
        Duration::from_secs(30),
        &[owner],
        |m, i| {
            m.status_direct(i)
                .is_ok_and(|v| v.members.iter().filter(|x| x.guards_me).count() == 5)
        },
    );
    let guardians: Vec<String> = m
        .status_direct(owner)
        .unwrap()
        .members
        .into_iter()
        .filter(|x| x.guards_me)
        .map(|x| x.name)
        .collect();
    println!("  node{owner}'s guardians: {guardians:?}");

    // unlock: the owner reboots
    m.stop(owner).unwrap();
    check(&m, "owner down", &mut checks);
    assert_opens(&reboot_unlock(&m, owner, "20s"), "owner");
    check(&m, "after unlock", &mut checks);
    m.start(owner).unwrap();
    m.converge_rosters(&all, Duration::from_secs(30)).unwrap();

    // lockdown from one node reaches all 20, refuses the owner; lift
    let out = m.cli_ok(3, &["lockdown"]).unwrap();
    assert!(out.contains("LOCKDOWN set mesh-wide"), "{out}");
    wait_checking(
        &m,
        "lockdown",
        &mut checks,
        Duration::from_secs(30),
        &all,
        |m, i| m.status_direct(i).is_ok_and(|v| v.lockdown.is_some()),
    );
    m.stop(owner).unwrap();
    let o = reboot_unlock(&m, owner, "3s");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "unlock in lockdown: {e}");
    assert!(e.contains("the mesh is in lockdown"), "{e}");
    m.start(owner).unwrap();
    m.cli_ok(8, &["lockdown", "--lift"]).unwrap();
    wait_checking(
        &m,
        "lift",
        &mut checks,
        Duration::from_secs(30),
        &all,
        |m, i| m.status_direct(i).is_ok_and(|v| v.lockdown.is_none()),
    );

    // Revocations by the founder, each dropped by every other node within
    // 30 s: node1, which admitted 15 of the others (itself or through
    // those it admitted), so its revocation goes out with 15
    // re-endorsements at once (a burst gossip once dropped whole:
    // `net::GOSSIP_READ_MAX`); and one of the owner's guardians, if node1
    // is none. The revoked keep running until then.
    let mut gone = vec!["node1".to_string()];
    if !guardians.iter().any(|x| x == "node1") {
        gone.push(guardians.iter().find(|x| *x != "node0").unwrap().clone());
    }
    let mut rest = all.clone();
    for name in &gone {
        let g: usize = name.trim_start_matches("node").parse().unwrap();
        let out = m.cli_ok(0, &["revoke", name]).unwrap();
        assert!(out.contains(&format!("revoked {name}")), "{out}");
        rest.retain(|&i| i != g);
        let t = Instant::now();
        wait_checking(
            &m,
            &format!("revocation of {name}"),
            &mut checks,
            Duration::from_secs(30),
            &rest,
            |m, i| {
                m.status_direct(i)
                    .is_ok_and(|v| v.member_named(name).is_none())
            },
        );
        println!("  {name} revoked everywhere after {:?}", t.elapsed());
    }
    for name in &gone {
        m.kill(name.trim_start_matches("node").parse().unwrap());
    }
    // the owner still unlocks with the 4 guardians left
    m.stop(owner).unwrap();
    assert_opens(&reboot_unlock(&m, owner, "20s"), "owner after revocation");
    m.start(owner).unwrap();
    m.converge_rosters(&rest, Duration::from_secs(30)).unwrap();

    // and idle for a while
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        most = most.max(check(&m, "idle after revocation", &mut checks));
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "  {checks} checks of one daemon's connections, most held {most}; whole test {:?}",
        started.elapsed()
    );
}
