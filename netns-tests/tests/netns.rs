//! The unlock path with real daemons in real network namespaces: one
//! `keywardd` per namespace of a [`Lab`], listening on its 198.18.x.y
//! address, and `keyward unlock` run inside a namespace the way an
//! initramfs runs it — with nothing but a boot key and the LUKS image.
//!
//! Needs root, iproute2, nftables and cryptsetup; skips otherwise (fails
//! instead with `KEYWARD_NETNS_REQUIRE=1`, as CI runs it). Policy times
//! are seconds (set in each node's config) so the file stays short; the
//! tests run one at a time (a static mutex) so daemons of different
//! tests do not starve each other of CPU on small machines. mDNS is on
//! only where said, and then its traffic stays inside the lab.

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keyward_netns_tests::mesh::{bins, have_cryptsetup, LogsOnPanic, Mesh, MeshOptions};
use keyward_netns_tests::{lab_or_skip, or_skip, report_skip, Lab, Skip};
use keyward_node::control::{AlertStatus, MemberStatus};

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time; a failed test does not block the others.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Policy with liveness `timeout` (and `extended_timeout`) in seconds.
fn opts(timeout: u64, mdns: bool) -> MeshOptions {
    MeshOptions {
        policy: format!(
            "interval = 1\ntimeout = {timeout}\nextended_timeout = {timeout}\nup_window = 3\n"
        ),
        mdns,
    }
}

/// `(Arc<Lab>, Mesh)` of `$n` namespaces, or skip (not root, no tools).
macro_rules! lab_mesh {
    ($n:expr, $opts:expr) => {{
        let lab = Arc::new(lab_or_skip!($n));
        if !have_cryptsetup() {
            report_skip(&Skip("cryptsetup not installed".into()));
            return;
        }
        // build (or find) the binaries before anything is timed
        bins();
        let mesh = Mesh::in_lab(lab.clone(), &$opts).expect("mesh in lab");
        let logs = LogsOnPanic::of(&mesh, $n, 40);
        (lab, mesh, logs)
    }};
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Makes node `i`'s LUKS2 image and binds it with the default split,
/// which must be `split` (a mesh of 5: the 4 others guard it, 3 of them
/// needed, "3-of-4"; a mesh of 6: "3-of-5").
fn bind(m: &Mesh, i: usize, split: &str) {
    m.make_image(i).unwrap();
    let out = m.bind(i, &[]).unwrap();
    assert!(out.contains(split), "node{i} bind, want {split}: {out}");
}

/// What an initramfs in namespace `ns` runs ([`Mesh::initramfs_unlock`]).
fn initramfs_unlock(m: &Mesh, ns: usize, boot_key: &Path, image: &Path, timeout: &str) -> Output {
    m.initramfs_unlock(ns, boot_key, image, timeout)
        .expect("keyward unlock ran")
}

/// Node `i` reboots: its initramfs asks with its own boot key and image.
fn reboot_unlock(m: &Mesh, i: usize, timeout: &str) -> Output {
    m.reboot_unlock(i, timeout).expect("keyward unlock ran")
}

fn assert_opens(o: &Output, who: &str) {
    assert!(o.status.success(), "{who}: unlock failed: {}", stderr(o));
    assert!(
        stderr(o).contains("the key from the guardians opens"),
        "{who}: {}",
        stderr(o)
    );
}

fn assert_refused(o: &Output, who: &str, needles: &[&str]) {
    let e = stderr(o);
    assert!(!o.status.success(), "{who}: unlock should be refused: {e}");
    for n in needles {
        assert!(e.contains(n), "{who}: expected `{n}` in: {e}");
    }
}

/// Guardian `g`'s recent release decisions about `owner`: (released, rule, reason).
fn decisions(m: &Mesh, g: usize, owner: &str) -> Vec<(bool, String, String)> {
    let v = m.status_direct(g).unwrap();
    v.decisions
        .into_iter()
        .filter(|d| d.owner == owner)
        .map(|d| (d.released, d.rule, d.reason))
        .collect()
}

/// Guardians among `gs` whose latest decision about `owner` has `rule`.
fn latest_rule(m: &Mesh, gs: &[usize], owner: &str, rule: &str) -> Vec<usize> {
    gs.iter()
        .copied()
        .filter(|&g| {
            // status lists decisions newest first
            decisions(m, g, owner)
                .first()
                .is_some_and(|(_, r, _)| r == rule)
        })
        .collect()
}

/// Guardians among `gs` whose latest refused request from a stranger (not
/// the owner's boot key; kept apart from the decisions) named `owner` and
/// was refused by `rule`.
fn latest_stranger_rule(m: &Mesh, gs: &[usize], owner: &str, rule: &str) -> Vec<usize> {
    gs.iter()
        .copied()
        .filter(|&g| {
            let v = m.status_direct(g).unwrap();
            v.strangers.last_owner.as_deref() == Some(owner)
                && v.strangers.last_rule.as_deref() == Some(rule)
        })
        .collect()
}

/// Status member entry `name` as seen by node `i`.
fn member(m: &Mesh, i: usize, name: &str) -> MemberStatus {
    let v = m.status_direct(i).unwrap();
    v.member_named(name)
        .cloned()
        .unwrap_or_else(|| panic!("node{i} has no member {name}: {v}"))
}

/// The nodes of scenario 1 (and 8): 6, so each node's image is guarded
/// by the 5 others, 3 of them needed ("binds its image 3-of-5").
const REBOOT_NODES: usize = 6;

/// [`REBOOT_NODES`] nodes, mDNS on, joined by invite chain (node i is
/// invited by node i-1, so a joiner knows only its inviter, from the
/// token; the rest it finds by roster sync and mDNS), each binds 3-of-5,
/// then each in turn reboots (SIGTERM, unlock from its initramfs,
/// restart).
fn nodes_reboot_each(lab: &Lab, m: &mut Mesh, unlock_timeout: &str, settle: Duration) {
    let n = REBOOT_NODES;
    // libp2p's own logs are off by default; mDNS discoveries are wanted
    m.set_daemon_env("RUST_LOG", "info,libp2p=warn,libp2p_mdns=info");
    let t = Instant::now();
    m.init(0, Some("lab")).unwrap();
    for i in 1..n {
        m.init(i, None).unwrap();
    }
    for i in 0..n {
        m.start(i).unwrap();
    }
    for i in 1..n {
        let token = m.cli_ok(i - 1, &["invite"]).unwrap();
        let inv = keyward_node::proto::Invite::from_token(token.trim()).unwrap();
        // the token carries the inviter's lab address, nothing else
        let want = format!("/ip4/{}/tcp/7300", lab.node(i - 1).addr());
        assert!(
            !inv.addrs.is_empty() && inv.addrs.iter().all(|a| a.starts_with(&want)),
            "{:?}",
            inv.addrs
        );
        let out = m.cli_ok(i, &["join", token.trim()]).unwrap();
        assert!(out.contains("joined mesh lab"), "{out}");
    }
    m.converge(settle).unwrap();
    println!("  mesh of {n} formed in {} ms", t.elapsed().as_millis());
    // every node knows every other at its lab address, port 7300
    for i in 0..n {
        for j in (0..n).filter(|&j| j != i) {
            let x = member(m, i, &format!("node{j}"));
            let want = format!("/ip4/{}/tcp/7300", lab.node(j).addr());
            let addrs: Vec<&str> = x.addrs.iter().map(String::as_str).collect();
            assert!(
                addrs.contains(&want.as_str()),
                "node{i} sees node{j} at {addrs:?}"
            );
            // connected; not pinged (nobody guards anyone yet), so `up`
            // only for up_window after the connection came up
            assert!(x.connected, "node{i} sees node{j}: {x}");
        }
    }
    let split = format!("3-of-{}", n - 1);
    for i in 0..n {
        bind(m, i, &split);
        // the token names the n-1 others with their lab addresses
        let (_, tok) = keyward_node::luks::Device::new(&m.dir(i).join("disk.img"))
            .token()
            .unwrap()
            .expect("bound");
        assert_eq!((tok.threshold, tok.guardians.len()), (3, n - 1));
        for g in &tok.guardians {
            assert!(
                g.addrs.iter().any(|a| a.contains("/ip4/198.")),
                "guardian {} in node{i}'s token: {:?}",
                g.id,
                g.addrs
            );
        }
    }
    // every node guards every other now: each pings its wards (and its
    // guardians), so each sees every other up
    for i in 0..n {
        for j in (0..n).filter(|&j| j != i) {
            m.wait_for(Duration::from_secs(10), || {
                let v = m.status_direct(i)?;
                Ok(v.member_named(&format!("node{j}")).is_some_and(|x| x.up))
            })
            .unwrap_or_else(|e| panic!("node{i} sees its ward node{j} up: {e}"));
        }
    }
    for i in 0..n {
        let name = format!("node{i}");
        let others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        m.stop(i).unwrap();
        let o = reboot_unlock(m, i, unlock_timeout);
        assert_opens(&o, &name);
        // SIGTERM said goodbye first, so no guardian may take the
        // rebooting node for a running one (and raise a copied-key alert)
        assert!(
            !stderr(&o).contains("the owner is up"),
            "{name}: a clean reboot was refused as `owner up`: {}",
            stderr(&o)
        );
        let released = latest_rule(m, &others, &name, "released");
        assert!(
            released.len() >= 3,
            "{name}: only guardians {released:?} released"
        );
        for &g in &released {
            let d = &decisions(m, g, &name)[0];
            assert_eq!(d.2, "alive within timeout", "{name} via node{g}: {d:?}");
        }
        m.start(i).unwrap();
        m.converge(settle).unwrap();
    }
    for i in 0..n {
        let alerts = m.status_direct(i).unwrap().alerts;
        assert_eq!(
            alerts,
            Vec::<AlertStatus>::new(),
            "node{i}: alerts after clean reboots"
        );
    }
    assert_mdns_found_everyone(lab, m, n);
}

/// mDNS ran inside the lab: every daemon's mDNS behaviour reported every
/// other node (its peer id) at that node's lab address, and nothing
/// outside the lab.
fn assert_mdns_found_everyone(lab: &Lab, m: &Mesh, n: usize) {
    let ids: Vec<String> = (0..n)
        .map(|j| m.status_direct(j).unwrap().node.id)
        .collect();
    for i in 0..n {
        let log = m.log(i);
        let found: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("discovered peer on address"))
            .collect();
        for l in &found {
            assert!(l.contains("/ip4/198."), "node{i}: {l}");
        }
        for j in (0..n).filter(|&j| j != i) {
            let addr = format!("/ip4/{}/tcp/7300", lab.node(j).addr());
            assert!(
                found
                    .iter()
                    .any(|l| l.contains(&format!("peer={}", ids[j])) && l.contains(&addr)),
                "node{i} did not discover node{j} ({}) at {addr} by mDNS; it found:\n{}",
                ids[j],
                found.join("\n")
            );
        }
    }
}

/// Issue scenario 1: six nodes, mDNS inside the lab, invite/join, each
/// binds 3-of-5 and each reboots in turn; its key opens its image.
#[test]
fn six_nodes_with_mdns_each_reboots_and_unlocks() {
    let _s = serial();
    let (lab, mut m, _logs) = lab_mesh!(REBOOT_NODES, opts(6, true));
    let t = Instant::now();
    nodes_reboot_each(&lab, &mut m, "10s", Duration::from_secs(20));
    println!("  scenario done in {} ms", t.elapsed().as_millis());
}

/// Loss set on every node: 1% of the packets it sends (so 1% per packet
/// in each direction between two nodes).
const LOSS_PERCENT: u8 = 1;
/// Relay delay at each node's end: a frame between two nodes passes two
/// relays, so 50 ms one way and 100 ms round trip.
const DELAY_PER_END: Duration = Duration::from_millis(25);

/// Issue scenario 8: scenario 1 over lossy, slow links: 1% loss per
/// packet in each direction and 50 ms one-way delay between any two
/// nodes (100 ms round trip).
#[test]
fn six_nodes_over_1pct_loss_50ms_one_way_links_each_reboots_and_unlocks() {
    let _s = serial();
    let (lab, mut m, _logs) = lab_mesh!(REBOOT_NODES, opts(20, true));
    for i in 0..REBOOT_NODES {
        or_skip!(lab.set_loss(i, LOSS_PERCENT));
        lab.set_delay(i, DELAY_PER_END).unwrap();
    }
    let t = Instant::now();
    nodes_reboot_each(&lab, &mut m, "60s", Duration::from_secs(60));
    println!("  lossy scenario done in {} ms", t.elapsed().as_millis());
}

/// Issue scenario 2: seized (cut off and powered off longer than the
/// timeout), then booted on the network: refused, naming the rule, until
/// an admin approves it.
#[test]
fn a_seized_node_booted_on_the_network_is_refused_until_approved() {
    let _s = serial();
    let (lab, mut m, _logs) = lab_mesh!(5, opts(6, false));
    m.form().unwrap();
    bind(&m, 4, "3-of-4");
    lab.link_down(4).unwrap();
    m.kill(4);
    let cut = Instant::now();
    // longer than timeout (6 s)
    std::thread::sleep(Duration::from_millis(7500));
    for g in 0..4 {
        let x = member(&m, g, "node4");
        assert!(!x.up, "node{g}: {x}");
        assert!(x.last_seen_ms_ago.unwrap() > 6000, "node{g}: {x}");
    }
    // the thief boots it on the same network
    lab.link_up(4).unwrap();
    let o = reboot_unlock(&m, 4, "3s");
    assert_refused(
        &o,
        "seized node4",
        &[
            "0 valid shares of 3 needed",
            "not seen alive for",
            "keyward approve node4",
        ],
    );
    assert_eq!(latest_rule(&m, &[0, 1, 2, 3], "node4", "not-seen").len(), 4);
    println!("  refused {} ms after the cut", cut.elapsed().as_millis());
    let out = m.cli_ok(1, &["approve", "node4"]).unwrap();
    assert!(out.contains("approved node4"), "{out}");
    let o = reboot_unlock(&m, 4, "15s");
    assert_opens(&o, "node4 after approve");
    let approved = latest_rule(&m, &[0, 1, 2, 3], "node4", "released");
    assert!(approved.len() >= 3, "{approved:?}");
    for g in approved {
        assert_eq!(decisions(&m, g, "node4")[0].2, "approved by an admin");
    }
}

/// Issue scenario 3: node4's boot key copied and used from another
/// namespace while node4 runs: refused, and every member raises the alert.
#[test]
fn a_copied_boot_key_is_refused_while_its_node_runs_and_alerts_everyone() {
    let _s = serial();
    let (_lab, mut m, _logs) = lab_mesh!(5, opts(6, false));
    m.form().unwrap();
    bind(&m, 4, "3-of-4");
    let loot = m.dir(2).join("loot");
    std::fs::create_dir_all(&loot).unwrap();
    std::fs::copy(m.dir(4).join("boot.key"), loot.join("boot.key")).unwrap();
    std::fs::copy(m.dir(4).join("disk.img"), loot.join("disk.img")).unwrap();
    // the thief runs it from node2's namespace, i.e. another address
    let t = Instant::now();
    let o = initramfs_unlock(&m, 2, &loot.join("boot.key"), &loot.join("disk.img"), "2s");
    assert_refused(
        &o,
        "copied key",
        &[
            "0 valid shares of 3 needed",
            "the owner is up",
            "it may have been copied",
        ],
    );
    assert_eq!(latest_rule(&m, &[0, 1, 2, 3], "node4", "owner-up").len(), 4);
    let want = "boot key of node4 used while node4 is running: it may have been copied";
    m.wait_for(Duration::from_secs(5), || {
        Ok((0..5).all(|i| {
            m.status_direct(i)
                .is_ok_and(|v| v.alerts.iter().any(|x| x.text.contains(want)))
        }))
    })
    .unwrap_or_else(|e| {
        for i in 0..5 {
            eprintln!("node{i} alerts: {:?}", m.status_direct(i).unwrap().alerts);
        }
        panic!("not every member raised the alert: {e}")
    });
    println!(
        "  all 5 members (owner included) show the alert {} ms after the attempt started",
        t.elapsed().as_millis()
    );
    // each member shows it once, however many times the thief retried
    for i in 0..5 {
        let n = m
            .status_direct(i)
            .unwrap()
            .alerts
            .iter()
            .filter(|x| x.text.contains(want))
            .count();
        assert_eq!(n, 1, "node{i} alerts");
    }
    // the genuine owner's clean reboot is not hindered
    m.stop(4).unwrap();
    assert_opens(&reboot_unlock(&m, 4, "10s"), "node4 reboot");
}

/// Issue scenario 4: the whole mesh powered off longer than the timeout:
/// nobody unlocks alone; an admin enters the passphrase on T nodes and
/// starts them, then approves the rest from one of them.
#[test]
fn after_a_whole_mesh_outage_a_person_restarts_three_and_approves_the_rest() {
    let _s = serial();
    let (lab, mut m, _logs) = lab_mesh!(5, opts(6, false));
    m.form().unwrap();
    for i in 0..5 {
        bind(&m, i, "3-of-4");
    }
    for i in 0..5 {
        m.kill(i); // power cut: no goodbye
    }
    std::thread::sleep(Duration::from_millis(7500));
    // power is back: every initramfs asks, nobody can answer
    for i in 0..5 {
        let o = reboot_unlock(&m, i, "1s");
        assert_refused(
            &o,
            &format!("node{i} after outage"),
            &["0 valid shares of 3 needed", "4 guardians unreachable"],
        );
    }
    // an admin types the passphrase on node0..node2 (the fallback keyslot)
    for i in 0..3 {
        let mut c = lab.command(i, "cryptsetup").unwrap();
        c.args(["open", "--test-passphrase", "--key-file"])
            .arg(m.dir(i).join("passphrase"))
            .arg(m.dir(i).join("disk.img"));
        let o = c.output().unwrap();
        assert!(o.status.success(), "passphrase on node{i}: {}", stderr(&o));
        m.start(i).unwrap();
    }
    // Addresses are written as they are learnt, so what a restarted node
    // knows of every other one was on disk before the power cut, however
    // fast the machine formed the mesh: nobody is left with no one to dial.
    for i in 0..3 {
        let v = m.status_direct(i).unwrap();
        for peer in &v.members {
            if peer.me {
                continue;
            }
            assert!(
                !peer.addrs.is_empty(),
                "node{i} restarted without an address for {}: {v}",
                peer.name
            );
        }
    }
    m.converge_among(&[0, 1, 2], Duration::from_secs(20))
        .unwrap();
    // the others still do not unlock by themselves
    for i in 3..5 {
        let o = reboot_unlock(&m, i, "2s");
        assert_refused(
            &o,
            &format!("node{i} before approve"),
            &[
                "0 valid shares of 3 needed",
                "3 guardians refused: not seen alive for",
                "keyward approve node",
                "1 guardian unreachable",
            ],
        );
    }
    // let gossip settle between the restarted nodes before the approvals
    std::thread::sleep(Duration::from_millis(1000));
    for i in 3..5 {
        m.cli_ok(1, &["approve", &format!("node{i}")]).unwrap();
    }
    for i in 3..5 {
        let o = reboot_unlock(&m, i, "20s");
        assert_opens(&o, &format!("node{i} after approve"));
        let r = latest_rule(&m, &[0, 1, 2], &format!("node{i}"), "released");
        assert_eq!(r, [0, 1, 2], "node{i}");
    }
    for i in 3..5 {
        m.start(i).unwrap();
    }
    m.converge(Duration::from_secs(20)).unwrap();
}

/// Issue scenario 5: a stranger with its own keys and a copied LUKS token
/// gets nothing, nor does a revoked former member.
#[test]
fn a_stranger_with_a_copied_token_and_a_revoked_member_are_refused() {
    let _s = serial();
    // node0..node4 form the mesh; node5 is the stranger's machine
    let (_lab, mut m, _logs) = lab_mesh!(6, opts(6, false));
    m.form_nodes(&[0, 1, 2, 3, 4]).unwrap();
    let init = m.cli_ok(5, &["init"]).unwrap();
    let stranger_id = init
        .lines()
        .find_map(|l| l.strip_prefix("node"))
        .map(|s| s.trim().to_string())
        .unwrap();
    bind(&m, 3, "3-of-4");
    bind(&m, 4, "3-of-4");
    let own_key = m.dir(5).join("boot.key");
    // (a) node4's image as is, asked with the stranger's own boot key
    let img = m.dir(5).join("copied.img");
    std::fs::copy(m.dir(4).join("disk.img"), &img).unwrap();
    let o = initramfs_unlock(&m, 5, &own_key, &img, "2s");
    assert_refused(
        &o,
        "stranger (copied token)",
        &[
            "0 valid shares of 3 needed",
            "4 guardians refused: request not signed by the owner's boot key",
        ],
    );
    // counted apart from the decisions (issue 20 L5), which the stranger
    // must not be able to flush
    assert_eq!(
        latest_stranger_rule(&m, &[0, 1, 2, 3], "node4", "bad-signature").len(),
        4
    );
    assert!(latest_rule(&m, &[0, 1, 2, 3], "node4", "bad-signature").is_empty());
    // (b) the token edited to name the stranger as owner
    let img2 = m.dir(5).join("forged.img");
    std::fs::copy(m.dir(4).join("disk.img"), &img2).unwrap();
    let dev = keyward_node::luks::Device::new(&img2);
    let (_, mut tok) = dev.token().unwrap().unwrap();
    tok.owner = stranger_id.clone();
    tok.name = "node5".into();
    dev.set_token(&tok).unwrap();
    let o = initramfs_unlock(&m, 5, &own_key, &img2, "2s");
    for g in 0..5 {
        assert!(
            m.exited(g).is_none(),
            "node{g}'s keywardd died while refusing a share request for a non-member owner: {:?}\n{}",
            m.exited(g),
            m.log(g).lines().rev().take(3).collect::<Vec<_>>().join("\n")
        );
    }
    assert_refused(
        &o,
        "stranger (forged token)",
        &[
            "0 valid shares of 3 needed",
            "4 guardians refused: not a member of this mesh's roster",
        ],
    );
    assert_eq!(
        latest_stranger_rule(&m, &[0, 1, 2, 3], &stranger_id, "not-member").len(),
        4
    );
    // a request about an owner a guardian holds nothing for must not
    // take the guardian down
    std::thread::sleep(Duration::from_millis(300));
    for g in 0..5 {
        assert!(
            m.exited(g).is_none(),
            "node{g}'s keywardd died after the stranger's requests: {:?}",
            m.exited(g)
        );
    }
    // (c) node3 is revoked, then its initramfs asks
    m.stop(3).unwrap();
    let out = m.cli_ok(0, &["revoke", "node3"]).unwrap();
    assert!(out.contains("revoked node3"), "{out}");
    m.wait_for(Duration::from_secs(10), || {
        Ok([0, 1, 2, 4].iter().all(|&i| {
            m.members(i)
                .is_ok_and(|v| !v.contains(&"node3".to_string()))
        }))
    })
    .unwrap();
    let o = reboot_unlock(&m, 3, "2s");
    assert_refused(
        &o,
        "revoked node3",
        &[
            "0 valid shares of 3 needed",
            "4 guardians refused: revoked from the mesh",
        ],
    );
}

/// Issue scenario 6: the owner reaches only T-1 guardians: a clear
/// failure; the partition heals during a running unlock: it succeeds.
#[test]
fn below_threshold_in_a_partition_then_the_partition_heals_during_unlock() {
    let _s = serial();
    // a longer timeout: both unlocks must fall within it after the stop
    let (lab, mut m, _logs) = lab_mesh!(5, opts(30, false));
    m.form().unwrap();
    bind(&m, 4, "3-of-4");
    m.stop(4).unwrap();
    // guardians of node4 are node0..node3; node0 and node1 are cut off
    lab.link_down(0).unwrap();
    lab.link_down(1).unwrap();
    let o = reboot_unlock(&m, 4, "6s");
    let e = stderr(&o);
    assert_refused(&o, "node4 in partition", &["2 valid shares of 3 needed"]);
    assert!(
        e.contains("2 guardians unreachable") || e.contains("2 guardians gave no answer"),
        "{e}"
    );
    // again, and the partition heals while it runs
    let img = m.dir(4).join("disk.img");
    let cfg = m.dir(4).join("initramfs-4.toml");
    let mut cmd = lab.command(4, bins().keyward.to_str().unwrap()).unwrap();
    cmd.env("KEYWARD_CONFIG", &cfg)
        .args(["unlock", "--check", "--timeout", "30s", "--device"])
        .arg(&img)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    lab.link_up(0).unwrap();
    let healed = Instant::now();
    let o = child.wait_with_output().unwrap();
    let after_heal = healed.elapsed();
    println!(
        "  unlock started {} ms before the heal, succeeded {} ms after it: {}",
        (healed - started).as_millis(),
        after_heal.as_millis(),
        stderr(&o).trim().replace('\n', " | ")
    );
    assert_opens(&o, "node4 after heal");
    // the client's backoff is capped at 5 s (plus one connection attempt)
    assert!(after_heal < Duration::from_secs(12), "{after_heal:?}");
    let r = latest_rule(&m, &[0, 2, 3], "node4", "released");
    assert!(r.contains(&0), "node0 (healed) released: {r:?}");
    lab.link_up(1).unwrap();
}

/// Issue scenario 7: lockdown from any node reaches every node within a
/// second and refuses every unlock; lifting (from any node) restores
/// service. Several origins in turn, each lift from another node.
#[test]
fn lockdown_from_any_node_reaches_every_node_within_a_second_and_lift_restores() {
    let _s = serial();
    let (_lab, mut m, _logs) = lab_mesh!(5, opts(20, false));
    m.form().unwrap();
    let all = [0, 1, 2, 3, 4];
    for i in all {
        bind(&m, i, "3-of-4");
    }
    // time from the command's start until every node shows the state
    let spread = |m: &Mesh, on: bool| -> Duration {
        let t = Instant::now();
        m.wait_for(Duration::from_secs(5), || {
            Ok(all
                .iter()
                .all(|&i| m.status_direct(i).is_ok_and(|v| v.lockdown.is_none() != on)))
        })
        .unwrap_or_else(|e| panic!("lockdown {on} not everywhere: {e}"));
        t.elapsed()
    };
    // (lockdown from, lift from)
    let rounds = [(2, 1), (0, 4), (4, 3), (3, 0)];
    for (round, (on_from, off_from)) in rounds.into_iter().enumerate() {
        let t = Instant::now();
        let out = m.cli_ok(on_from, &["lockdown"]).unwrap();
        assert!(out.contains("LOCKDOWN set mesh-wide"), "{out}");
        spread(&m, true);
        let took = t.elapsed();
        println!(
            "  lockdown from node{on_from} seen by all 5 nodes {} ms after the command started",
            took.as_millis()
        );
        assert!(
            took < Duration::from_secs(1),
            "from node{on_from}: {took:?}"
        );
        for i in all {
            let v = m.status_direct(i).unwrap();
            assert_eq!(
                v.lockdown.as_ref().and_then(|l| l.by_name.clone()),
                Some(format!("node{on_from}")),
                "node{i}"
            );
        }
        if round == 0 {
            // every owner's unlock is refused: each reboots in turn
            for i in all {
                let name = format!("node{i}");
                m.stop(i).unwrap();
                let o = reboot_unlock(&m, i, "2s");
                assert_refused(
                    &o,
                    &format!("{name} in lockdown"),
                    &[
                        "0 valid shares of 3 needed",
                        "the mesh is in lockdown",
                        "keyward lockdown --lift",
                    ],
                );
                let others: Vec<usize> = all.into_iter().filter(|&g| g != i).collect();
                assert_eq!(
                    latest_rule(&m, &others, &name, "lockdown"),
                    others,
                    "{name}"
                );
                m.start(i).unwrap();
            }
            m.converge(Duration::from_secs(20)).unwrap();
            // a restarted node still knows the lockdown
            spread(&m, true);
        } else {
            // one owner per round, another each time
            let i = (on_from + 1) % 5;
            m.stop(i).unwrap();
            assert_refused(
                &reboot_unlock(&m, i, "2s"),
                &format!("node{i} in lockdown from node{on_from}"),
                &["the mesh is in lockdown"],
            );
            m.start(i).unwrap();
            m.converge(Duration::from_secs(20)).unwrap();
        }
        let t = Instant::now();
        let out = m.cli_ok(off_from, &["lockdown", "--lift"]).unwrap();
        spread(&m, false);
        let took = t.elapsed();
        println!(
            "  lift from node{off_from} seen by all 5 nodes in {} ms: {}",
            took.as_millis(),
            out.trim()
        );
        assert!(
            took < Duration::from_secs(1),
            "lift from node{off_from}: {took:?}"
        );
    }
    // service is back for every owner
    for i in all {
        m.stop(i).unwrap();
        assert_opens(&reboot_unlock(&m, i, "10s"), &format!("node{i} after lift"));
        m.start(i).unwrap();
    }
}
