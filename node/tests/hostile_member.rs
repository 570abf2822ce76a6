//! A member whose machine was taken over (its node key in the attacker's
//! hands) and strangers, against real keywardd processes on 127.0.0.1:
//! forged copied-boot-key alerts, poisoned peer addresses in sync answers,
//! and a flood of share requests meant to push the real decisions out of
//! `keyward status`. Such a member's attacks on the replicated logs (a
//! push in another node's name, a forked history shown to its witnesses)
//! are in netns-tests/tests/logs_tamper.rs, with the other log tampering.

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
