//! Attacks on a guardian's release decision, against real keywardd
//! processes on 127.0.0.1 (issue 20):
//! - M1: a connection that closes without the owner's signed goodbye (an
//!   injected TCP reset, a killed daemon) does not make a running owner
//!   look down, so a copied boot key is refused and raises the alert;
//! - L2: a captured share request is refused when replayed, and when
//!   relayed by a peer that is not the owner's boot key.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use keyward_node::codec;
use keyward_node::control::{GuardianAnswer, MemberStatus, Status};
use keyward_node::guardian::{Refusal, ShareRequest};
use keyward_node::identity::{BootKey, NodeId, NodeKey};
use keyward_node::net;
use keyward_node::proto::{Request, Response};
use keyward_node::shares::{split, DiskSecret};
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{identity::Keypair, Multiaddr, PeerId};

use common::{free_port, json, Node};
use keyward_node::keyfile::KeyFile;
use keyward_node::peer::{Libp2pKey, PeerIds};

/// Long enough that a loaded machine asks within it after the kill.
const UP_WINDOW_S: u64 = 8;

fn member<'a>(v: &'a Status, id: &str) -> Option<&'a MemberStatus> {
    v.member(id)
}

fn id_of(n: &Node) -> String {
    n.status().node.id
}

/// Founds a mesh on `a`, joins `b`, and waits until `a` counts `b` up.
fn pair(a: &Node, b: &Node) {
    b.join(a);
    let b_id = id_of(b);
    a.wait_for(Duration::from_secs(20), "b up", |v| {
        member(v, &b_id).is_some_and(|m| m.up)
    });
}

/// Sends one share request to the guardian at `addr` over a connection
/// authenticated by `key`, and returns its answer.
fn ask(key: Keypair, guardian: PeerId, addr: &Multiaddr, req: ShareRequest) -> Response {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut swarm = net::client_swarm(key, Duration::from_secs(5)).unwrap();
        swarm.behaviour_mut().send_request_with_addresses(
            &guardian,
            Request::Share(req),
            vec![addr.clone()],
        );
        let wait = async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    }) => return response,
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        error,
                        ..
                    }) => panic!("share request failed: {error}"),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .expect("the guardian answered in time")
    })
}

fn refusal(r: &Response) -> Option<&Refusal> {
    match r {
        Response::ShareRefused(r) => Some(r),
        _ => None,
    }
}

fn released(r: &Response) -> bool {
    matches!(r, Response::Share(_))
}

struct Mesh {
    _dir: tempfile::TempDir,
    a: Node,
    b: Node,
    a_peer: PeerId,
    a_addr: Multiaddr,
    b_node: NodeKey,
    b_boot: BootKey,
    b_id: String,
}

/// Guardian `a` and owner `b`, with `b`'s share for epoch 1 held by `a`.
fn mesh() -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!("interval = 1\ntimeout = 60\nup_window = {UP_WINDOW_S}\n");
    let a_port = free_port(false);
    let a_addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{a_port}").parse().unwrap();
    let a = Node::start_with_policy(
        &dir.path().join("a"),
        &a_addr.to_string(),
        false,
        Some("m"),
        &policy,
    );
    let b = Node::start_with_policy(
        &dir.path().join("b"),
        &format!("/ip4/127.0.0.1/tcp/{}", free_port(false)),
        false,
        None,
        &policy,
    );
    pair(&a, &b);
    let a_id: NodeId = id_of(&a).parse().unwrap();
    let b_node = NodeKey::load(&b.cfg.node_key_path()).unwrap();
    let b_boot = BootKey::load(&b.cfg.boot_key).unwrap();
    let envs = split(
        &DiskSecret::generate(),
        1,
        &[a_id],
        1,
        &b_node,
        &b_boot.public(),
    )
    .unwrap();
    use base64::Engine;
    let env = base64::engine::general_purpose::STANDARD.encode(codec::encode(&envs[0]).unwrap());
    let v = b.client().deposit(vec![env]).unwrap();
    assert_eq!(
        v.results.get(&a_id.to_string()),
        Some(&GuardianAnswer::Ok),
        "{}",
        json(&v)
    );
    let b_id = id_of(&b);
    Mesh {
        _dir: dir,
        a_peer: a_id.peer_id().unwrap(),
        a,
        b,
        a_addr,
        b_node,
        b_boot,
        b_id,
    }
}

impl Mesh {
    fn request(&self) -> ShareRequest {
        let a_id: NodeId = self.a_peer.to_string().parse().unwrap();
        ShareRequest::new(self.b_node.id(), a_id, 1, &self.b_boot)
    }

    /// Asks on the connection of b's boot key, as its initramfs does.
    fn ask_as_boot(&self, req: ShareRequest) -> Response {
        ask(self.b_boot.libp2p_keypair(), self.a_peer, &self.a_addr, req)
    }

    fn alerts(&self) -> String {
        json(&self.a.status().alerts)
    }
}

#[test]
fn a_connection_closed_without_goodbye_does_not_make_the_owner_look_down() {
    let mut m = mesh();
    // b's keywardd dies without its signed goodbye (as after an injected
    // TCP reset, the connection just closes). Before the fix the closed
    // connection counted as b's goodbye: a copied boot key got the share
    // at once, with no alert.
    m.b.stop();
    let killed = Instant::now();
    let b_id = m.b_id.clone();
    m.a.wait_for(Duration::from_secs(5), "b's connection closed", |v| {
        member(v, &b_id).is_some_and(|x| !x.connected)
    });
    let r = m.ask_as_boot(m.request());
    let asked_after = killed.elapsed();
    assert!(
        asked_after < Duration::from_secs(UP_WINDOW_S),
        "inconclusive: the request took {asked_after:?}, longer than up_window"
    );
    match refusal(&r) {
        Some(Refusal::OwnerUp { .. }) => {}
        _ => panic!("a boot-key request {asked_after:?} after b's connection closed without a goodbye was answered {r:?}; log:\n{}", m.a.log()),
    }
    m.a.wait_for(Duration::from_secs(5), "the copied-boot-key alert", |v| {
        json(&v.alerts).contains("used while b is running")
    });
    assert!(
        m.alerts().contains("rebind --new-boot-key"),
        "{}",
        m.alerts()
    );

    // A real crash reboots fine once up_window passed since b last answered.
    let deadline = Instant::now() + Duration::from_secs(UP_WINDOW_S + 20);
    let r = loop {
        let r = m.ask_as_boot(m.request());
        if released(&r) || Instant::now() > deadline {
            break r;
        }
        assert!(
            matches!(refusal(&r), Some(Refusal::OwnerUp { .. })),
            "{r:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(released(&r), "not released after up_window: {r:?}");
    assert!(killed.elapsed() >= Duration::from_secs(UP_WINDOW_S - 2));
}

#[test]
fn a_clean_goodbye_still_releases_at_once() {
    let mut m = mesh();
    // SIGTERM: keywardd signs its goodbye over the node-key connection.
    m.b.terminate();
    let r = m.ask_as_boot(m.request());
    assert!(
        released(&r),
        "a planned reboot was delayed: {r:?}; log:\n{}",
        m.a.log()
    );
    assert!(!m.alerts().contains("used while"), "{}", m.alerts());
}

#[test]
fn a_captured_request_is_refused_when_replayed_or_relayed() {
    let mut m = mesh();
    m.b.terminate();
    let captured = m.request();
    assert!(released(&m.ask_as_boot(captured.clone())));
    // The same request again, even on the boot key's own connection.
    let r = m.ask_as_boot(captured);
    assert_eq!(refusal(&r), Some(&Refusal::Replayed), "{r:?}");
    // A request relayed by a stranger's connection...
    let fresh = m.request();
    let r = ask(
        Keypair::generate_ed25519(),
        m.a_peer,
        &m.a_addr,
        fresh.clone(),
    );
    assert_eq!(refusal(&r), Some(&Refusal::WrongConnection), "{r:?}");
    assert!(r_text(&r).contains("relayed"), "{r:?}");
    // ...did not burn it: the owner's initramfs still gets it.
    assert!(released(&m.ask_as_boot(fresh.clone())));
    // Relayed on the owner's node-key connection: refused too (and that
    // connection makes b look up again, which is why it comes last).
    let r = ask(m.b_node.libp2p_keypair(), m.a_peer, &m.a_addr, fresh);
    assert_eq!(refusal(&r), Some(&Refusal::WrongConnection), "{r:?}");
    // And the rules are named: the replay (on the owner's boot-key
    // connection) in the decisions, the relays (on other connections) in
    // the strangers' counter, which keeps them out of the decision history.
    let st = m.a.status();
    let rules = json(&st.decisions);
    assert!(rules.contains("replayed"), "{rules}");
    let strangers = json(&st.strangers);
    assert!(strangers.contains("wrong-connection"), "{strangers}");
}

fn r_text(r: &Response) -> String {
    refusal(r).map(|x| x.to_string()).unwrap_or_default()
}
