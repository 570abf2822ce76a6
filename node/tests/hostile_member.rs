//! A member whose machine was taken over (its node key in the attacker's
//! hands) and strangers, against real keywardd processes on 127.0.0.1:
//! forged copied-boot-key alerts, poisoned peer addresses in sync answers,
//! and a flood of share requests meant to push the real decisions out of
//! `keyward status`.

mod common;

use std::time::Duration;

use keyward_node::control::Status;
use keyward_node::guardian::{Refusal, ShareRequest};
use keyward_node::identity::{BootKey, NodeId, NodeKey};
use keyward_node::proto::{AdminBody, AdminKind, AdminMsg, Gossip, Request, Response};
use keyward_node::roster::MeshId;
use libp2p::core::SignedEnvelope;
use libp2p::identity::Keypair;
use libp2p::Multiaddr;

use common::peer::{answer_sync_as, gossip_as};
use common::{free_port, json, Node};
use keyward_node::keyfile::KeyFile;
use keyward_node::peer::{Libp2pKey, PeerIds};
use keyward_node::testing::ask_as;

fn members(v: &Status) -> usize {
    v.members.len()
}

fn id_of(n: &Node) -> NodeId {
    n.status().node.id.parse().unwrap()
}

fn mesh_of(n: &Node) -> MeshId {
    let mut mesh = [0u8; 16];
    hex::decode_to_slice(n.status().mesh.unwrap().id, &mut mesh).unwrap();
    MeshId(mesh)
}

/// a founds the mesh on `port`; b and c join by invites of a.
fn trio(d: &std::path::Path, port: u16) -> (Node, Node, Node) {
    let a = Node::start(
        &d.join("a"),
        &format!("/ip4/127.0.0.1/tcp/{port}"),
        false,
        Some("m"),
    );
    let b = Node::start(
        &d.join("b"),
        &format!("/ip4/127.0.0.1/tcp/{}", free_port(false)),
        false,
        None,
    );
    let c = Node::start(
        &d.join("c"),
        &format!("/ip4/127.0.0.1/tcp/{}", free_port(false)),
        false,
        None,
    );
    for n in [&b, &c] {
        n.join(&a);
    }
    for n in [&a, &b, &c] {
        n.wait_for(Duration::from_secs(20), "3 members", |v| members(v) == 3);
    }
    (a, b, c)
}

fn alerts(n: &Node) -> Vec<String> {
    n.status().alerts.into_iter().map(|a| a.text).collect()
}

/// Issue 20 L5: a member can no longer raise a copied-boot-key alert about
/// a node whose boot key nobody used. Each alert carries the signed
/// request; every node checks it before recording the alert.
#[test]
fn forged_copied_key_alerts_are_refused_and_their_sender_struck() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port(false);
    let (a, b, mut c) = trio(d.path(), port);
    let mesh = mesh_of(&a);
    let (a_id, b_id) = (id_of(&a), id_of(&b));
    let c_id = id_of(&c);
    c.stop();
    let c_key = NodeKey::load(&c.cfg.node_key_path()).unwrap();
    let b_boot = BootKey::load(&b.cfg.boot_key).unwrap();
    let alert = |evidence: ShareRequest| {
        Gossip::Admin(AdminMsg::sign(
            AdminBody {
                mesh,
                kind: AdminKind::Alert {
                    owner: b_id,
                    evidence,
                },
                by: c_id,
                at: keyward_node::daemon::now_ms(),
            },
            &c_key,
        ))
    };
    let msgs = [
        // evidence signed by some other boot key
        alert(ShareRequest::new(b_id, c_id, 1, &BootKey::generate())),
        // b's genuine request, but to another guardian (a), relayed by c
        alert(ShareRequest::new(b_id, a_id, 1, &b_boot)),
    ];
    let run = gossip_as(
        &c_key,
        port,
        a_id.peer_id().unwrap(),
        mesh,
        &msgs,
        || {},
        Duration::from_secs(2),
    );
    assert!(run.subscribed);
    let log = a.log();
    assert!(
        log.contains("alert refused: its evidence is not signed by the boot key of b"),
        "{log}"
    );
    assert!(
        log.contains("alert refused: its evidence is a request to another guardian"),
        "{log}"
    );
    assert!(alerts(&a).is_empty(), "{:?}", alerts(&a));
    assert!(alerts(&b).is_empty(), "{:?}", alerts(&b));
    // A genuine one (b's boot key, asking c) is believed by everyone: the
    // check refuses forgeries, not alerts.
    let genuine = [alert(ShareRequest::new(b_id, c_id, 1, &b_boot))];
    gossip_as(
        &c_key,
        port,
        a_id.peer_id().unwrap(),
        mesh,
        &genuine,
        || {},
        Duration::from_secs(1),
    );
    let want = "boot key of b used while b is running";
    for n in [&a, &b] {
        n.wait_for(Duration::from_secs(5), "the genuine alert", |v| {
            json(&v.alerts).contains(want)
        });
        assert_eq!(alerts(n).len(), 1, "{:?}", alerts(n));
    }
}

/// Encodes a libp2p PeerRecord (protobuf) naming `peer`, so a test can
/// sign one about somebody else, as an attacker would.
fn record_payload(peer: &libp2p::PeerId, seq: u64, addrs: &[Multiaddr]) -> Vec<u8> {
    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn bytes(tag: u8, b: &[u8], out: &mut Vec<u8>) {
        out.push(tag);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    let mut out = vec![];
    bytes(0x0a, &peer.to_bytes(), &mut out);
    out.push(0x10);
    varint(seq, &mut out);
    for a in addrs {
        let mut info = vec![];
        bytes(0x0a, &a.to_vec(), &mut info);
        bytes(0x1a, &info, &mut out);
    }
    out
}

fn envelope(key: &Keypair, payload: Vec<u8>) -> serde_bytes::ByteBuf {
    let env = SignedEnvelope::new(
        key,
        "libp2p-routing-state".into(),
        b"/libp2p/routing-state-record".to_vec(),
        payload,
    )
    .unwrap();
    serde_bytes::ByteBuf::from(env.into_protobuf_encoding())
}

fn addrs_of(n: &Node, id: &NodeId) -> Vec<String> {
    n.status().member(&id.to_string()).unwrap().addrs.clone()
}

/// Issue 20 M8: a member answering a sync can no longer put addresses
/// into another member's entry (they would end up in LUKS tokens) or
/// inflate lists. Only records signed by the member they describe count,
/// and those are bounded.
#[test]
fn poisoned_addresses_in_sync_answers_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port(false);
    let (a, b, mut c) = trio(d.path(), port);
    let (a_id, b_id, c_id) = (id_of(&a), id_of(&b), id_of(&c));
    let b_peer = b_id.peer_id().unwrap();
    let before = addrs_of(&a, &b_id);
    assert!(!before.is_empty());
    c.stop();
    let c_key = NodeKey::load(&c.cfg.node_key_path()).unwrap();
    let c_kp = c_key.libp2p_keypair();
    let far_future = u64::MAX / 2000;
    let poison: Vec<Multiaddr> = vec!["/ip4/127.0.0.2/tcp/7300".parse().unwrap()];
    let many: Vec<Multiaddr> = (1..=20)
        .map(|i| format!("/ip4/127.0.0.1/tcp/{i}").parse().unwrap())
        .collect();
    let records = vec![
        // "b is at 127.0.0.2", signed by c
        envelope(&c_kp, record_payload(&b_peer, far_future, &poison)),
        // c's own record, inflated past the bound
        envelope(
            &c_kp,
            record_payload(
                &c_key.libp2p_keypair().public().to_peer_id(),
                far_future,
                &many,
            ),
        ),
        // c's own record within bounds: c may say where c is
        envelope(
            &c_kp,
            record_payload(&c_kp.public().to_peer_id(), far_future, &many[..2]),
        ),
    ];
    let answered = answer_sync_as(
        &c_key,
        port,
        a_id.peer_id().unwrap(),
        Response::Roster {
            ops: vec![],
            admin: vec![],
            records,
            held: vec![],
            children: vec![],
        },
        Duration::from_secs(1),
    );
    assert!(answered, "the founder never asked c to sync");
    let log = a.log();
    assert!(
        log.contains("sync answer relayed 2 peer record(s) that do not check out"),
        "{log}"
    );
    let after = addrs_of(&a, &b_id);
    assert!(!after.iter().any(|x| x.contains("127.0.0.2")), "{after:?}");
    assert_eq!(after, before);
    let c_addrs = addrs_of(&a, &c_id);
    assert!(
        c_addrs.len() <= keyward_node::addr_book::MAX_ADDRS,
        "{c_addrs:?}"
    );
    assert!(
        c_addrs.contains(&"/ip4/127.0.0.1/tcp/2".to_string()),
        "{c_addrs:?}"
    );
}

/// Issue 20 L5: share requests that do not come from the owner's boot key
/// (anyone can send them, naming any owner) are counted apart and do not
/// push the real decisions out of `keyward status`.
#[test]
fn strangers_share_requests_do_not_flush_the_decision_history() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port(false);
    let (a, b, _c) = trio(d.path(), port);
    let (a_id, b_id) = (id_of(&a), id_of(&b));
    let a_peer = a_id.peer_id().unwrap();
    // b's own initramfs asks while b runs: a real decision (owner up)
    let b_boot = BootKey::load(&b.cfg.boot_key).unwrap();
    let r = ask_as(
        b_boot.libp2p_keypair(),
        port,
        a_peer,
        vec![Request::Share(ShareRequest::new(b_id, a_id, 1, &b_boot))],
        1,
    )
    .unwrap();
    assert!(
        matches!(&r[0], Ok(Response::ShareRefused(Refusal::OwnerUp { .. }))),
        "{r:?}"
    );
    // a stranger floods requests naming b
    let flood: Vec<Request> = (0..300)
        .map(|_| Request::Share(ShareRequest::new(b_id, a_id, 1, &BootKey::generate())))
        .collect();
    let r = ask_as(Keypair::generate_ed25519(), port, a_peer, flood, 16).unwrap();
    let refused = r
        .iter()
        .filter(|x| matches!(x, Ok(Response::ShareRefused(Refusal::BadSignature))))
        .count();
    assert_eq!(refused, 300, "{:?}", r.iter().find(|x| x.is_err()));
    let v = a.status();
    let decisions = &v.decisions;
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0].rule, "owner-up", "{decisions:?}");
    assert_eq!(v.strangers.refused_requests, 300, "{}", json(&v.strangers));
    assert_eq!(v.strangers.last_rule.as_deref(), Some("bad-signature"));
    assert_eq!(v.strangers.last_owner.as_deref(), Some("b"));
    // and the journal got a handful of lines, not 300
    let lines = a
        .log()
        .matches("not from the owner's boot key REFUSED")
        .count();
    assert!((1..=3).contains(&lines), "{lines} lines");
}

/// Logs part 2: a member whose node key an attacker holds pushes its own
/// genuine segments (signed by itself) in another member's name. The
/// replica takes none of it: it holds nothing of the named origin, raises
/// an alert naming the sender, and keeps the push as evidence.
#[test]
fn a_member_pushing_its_own_segments_in_another_nodes_name_is_refused_with_evidence() {
    use keyward_node::log::replica::wire::Push;
    let d = tempfile::tempdir().unwrap();
    let port = free_port(false);
    let a = Node::start(
        &d.path().join("a"),
        &format!("/ip4/127.0.0.1/tcp/{port}"),
        false,
        Some("m"),
    );
    let b = Node::start(
        &d.path().join("b"),
        &format!("/ip4/127.0.0.1/tcp/{}", free_port(false)),
        false,
        None,
    );
    // c logs (a unix source), so it has genuine segments of its own
    let sock = d.path().join("c-log.sock");
    let auditor = age::x25519::Identity::generate();
    let mut c = Node::start_with_policy(
        &d.path().join("c"),
        &format!("/ip4/127.0.0.1/tcp/{}", free_port(false)),
        false,
        None,
        &format!(
            "interval = 1\ntimeout = 6\nup_window = 3\n[logs]\nauditors = [\"{}\"]\nsegment_secs = 1\ncheckpoint_secs = 1\n[[logs.source]]\nname = \"syslog\"\nkind = \"unix\"\npath = \"{}\"\n",
            auditor.to_public(),
            sock.display()
        ),
    );
    for n in [&b, &c] {
        n.join(&a);
    }
    for n in [&a, &b, &c] {
        n.wait_for(Duration::from_secs(20), "3 members", |v| members(v) == 3);
    }
    let (a_id, b_id, c_id) = (id_of(&a), id_of(&b), id_of(&c));
    let spool = d.path().join("c/state/logs");
    let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let sealed = || {
        std::fs::read(spool.join("checkpoint"))
            .ok()
            .and_then(|n| keyward_node::log::checkpoint::open(&n, &c_id).ok())
            .is_some_and(|(size, _)| size > 0)
    };
    while !sealed() {
        assert!(
            std::time::Instant::now() < deadline,
            "c never sealed a segment:\n{}",
            c.log()
        );
        let _ = s.send_to(b"<13>Dec  3 18:00:00 probe[1]: a line of c", &sock);
        std::thread::sleep(Duration::from_millis(200));
    }
    c.stop();
    let checkpoint = std::fs::read(spool.join("checkpoint")).unwrap();
    let (size, _) = keyward_node::log::checkpoint::open(&checkpoint, &c_id).unwrap();
    let segs: Vec<Vec<u8>> = (0..size)
        .map(|i| std::fs::read(spool.join(format!("segments/{i:020}"))).unwrap())
        .collect();
    assert!(!segs.is_empty());
    let c_key = NodeKey::load(&c.cfg.node_key_path()).unwrap();
    let push = Push::pack(b_id, 0, checkpoint, segs);
    let r = ask_as(
        c_key.libp2p_keypair(),
        port,
        a_id.peer_id().unwrap(),
        vec![Request::LogPush(Box::new(push))],
        1,
    )
    .unwrap();
    assert!(
        matches!(
            &r[0],
            Ok(Response::LogRefused(_)) | Ok(Response::Refused { .. })
        ),
        "{r:?}"
    );
    let want = format!("{c_id} pushed segments in the name of {b_id}");
    a.wait_for(Duration::from_secs(5), "the alert", |v| {
        json(&v.alerts).contains(&want)
    });
    let kept = a.status().replication.map(|r| r.kept).unwrap_or_default();
    assert!(
        kept.iter()
            .all(|k| k.origin != b_id.to_string() || k.held == 0),
        "a took something in b's name: {kept:?}"
    );
    let evidence = d.path().join("a/state/logs/evidence");
    let files: Vec<_> = walk(&evidence);
    assert!(
        !files.is_empty(),
        "no evidence kept under {}",
        evidence.display()
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Logs part 2: a member whose node key an attacker holds shows one
/// history of its log to one witness and another to the other, each
/// consistent on its own, so neither witness can refuse it. The
/// witnesses tell each other what they cosigned; both report the fork
/// with evidence that re-verifies, and keep it.
#[test]
fn an_origin_showing_two_witnesses_different_histories_is_found_out() {
    use keyward_node::log::merkle::MerkleLog;
    use keyward_node::log::witness::evidence::{Evidence, EvidenceKind};
    use keyward_node::log::witness::request::AddCheckpoint;
    let d = tempfile::tempdir().unwrap();
    let port_a = free_port(false);
    let (a, b, mut c) = trio(d.path(), port_a);
    let port_b: u16 = b.cfg.listen[0]
        .rsplit('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("b listens on a tcp port");
    let (a_id, b_id, c_id) = (id_of(&a), id_of(&b), id_of(&c));
    c.stop();
    let c_key = NodeKey::load(&c.cfg.node_key_path()).unwrap();
    // two histories of three leaves, both signed by c
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let history = |salt: u8| {
        let mut log = MerkleLog::new(c_id);
        // a witness sees only the signed checkpoint: any leaves do
        for seq in 0..3u64 {
            log.append(format!("segment {seq} of history {salt}").as_bytes())
                .unwrap();
        }
        log.checkpoint(now, &c_key).unwrap().note
    };
    for (port, peer, note) in [(port_a, a_id, history(0)), (port_b, b_id, history(1))] {
        let body = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note,
        }
        .to_body()
        .unwrap();
        let r = ask_as(
            c_key.libp2p_keypair(),
            port,
            peer.peer_id().unwrap(),
            vec![Request::AddCheckpoint { body }],
            1,
        )
        .unwrap();
        assert!(matches!(&r[0], Ok(Response::Cosigned { .. })), "{r:?}");
    }
    for (n, name) in [(&a, "a"), (&b, "b")] {
        n.wait_for(Duration::from_secs(20), "the fork alert", |v| {
            v.alerts
                .iter()
                .any(|al| al.text.contains(&c_id.to_string()) && al.text.contains("fork"))
        });
        let dir = d.path().join(format!("{name}/state/logs/evidence/{c_id}"));
        let forks: Vec<_> = walk(&dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with("-fork"))
            .collect();
        assert!(
            !forks.is_empty(),
            "{name} kept no fork evidence:\n{}",
            n.log()
        );
        let e = Evidence::decode(&std::fs::read(&forks[0]).unwrap()).unwrap();
        assert!(
            matches!(e.check(), Ok(EvidenceKind::Fork { .. })),
            "{:?}",
            e.check()
        );
    }
}
