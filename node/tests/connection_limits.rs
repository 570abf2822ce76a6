//! Issue 20 L6: strangers opening many connections to a real keywardd are
//! capped and dropped once idle, while members stay connected and are
//! served.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keyward_node::control::Status;
use keyward_node::gate::GateLimits;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr};

use common::{free_port, json, Node};
use keyward_node::peer::PeerIds;

fn connected(v: &Status, id: &str) -> bool {
    v.members.iter().any(|m| m.id == id && m.connected)
}

const STRANGERS: usize = 40;

#[test]
fn a_stranger_opening_many_connections_is_capped_and_members_are_served() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port(false);
    let a = Node::start(
        &d.path().join("a"),
        &format!("/ip4/127.0.0.1/tcp/{port}"),
        false,
        Some("m"),
    );
    let mut b = Node::start(
        &d.path().join("b"),
        &format!("/ip4/127.0.0.1/tcp/{}", free_port(false)),
        false,
        None,
    );
    b.join(&a);
    let a_id = a.status().node.id;
    let b_id = b.status().node.id;
    a.wait_for(Duration::from_secs(20), "b connected", |v| {
        connected(v, &b_id)
    });
    let a_peer = a_id
        .parse::<keyward_node::identity::NodeId>()
        .unwrap()
        .peer_id()
        .unwrap();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{a_peer}")
        .parse()
        .unwrap();

    // 40 strangers, each with its own key, keep whatever connection they
    // get as long as the daemon lets them (their own idle timeout is long).
    let open: Arc<Vec<AtomicBool>> =
        Arc::new((0..STRANGERS).map(|_| AtomicBool::new(false)).collect());
    let ever = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run_for = Duration::from_secs(20);
    for i in 0..STRANGERS {
        let (open, ever, addr) = (open.clone(), ever.clone(), addr.clone());
        rt.spawn(async move {
            let mut s = libp2p::SwarmBuilder::with_new_identity()
                .with_tokio()
                .with_tcp(
                    tcp::Config::default(),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .unwrap()
                .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
                .build();
            s.dial(addr).unwrap();
            let deadline = tokio::time::Instant::now() + run_for;
            while let Ok(ev) = tokio::time::timeout_at(deadline, s.select_next_some()).await {
                match ev {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        open[i].store(true, Ordering::SeqCst);
                        ever.fetch_add(1, Ordering::SeqCst);
                    }
                    SwarmEvent::ConnectionClosed {
                        num_established: 0, ..
                    } => {
                        open[i].store(false, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        });
    }
    let count =
        |open: &Arc<Vec<AtomicBool>>| open.iter().filter(|o| o.load(Ordering::SeqCst)).count();
    std::thread::sleep(Duration::from_secs(3));
    let limits = GateLimits::default();
    let held = count(&open);
    let v = a.status();
    println!(
        "strangers holding a connection after 3 s: {held} of {STRANGERS}; daemon says {}",
        json(&v.strangers)
    );
    assert!(
        held >= 1,
        "no stranger got in at all: {}",
        json(&v.strangers)
    );
    assert!(
        held <= limits.strangers_per_ip,
        "{held} strangers from one address hold connections (cap {})",
        limits.strangers_per_ip
    );
    assert!(v.strangers.connections as u64 <= limits.strangers_per_ip as u64);
    assert!(
        v.strangers.refused_connections >= (STRANGERS - held) as u64,
        "{}",
        json(&v.strangers)
    );
    assert!(
        a.log().contains("connection from /ip4/127.0.0.1/"),
        "{}",
        a.log()
    );
    // A member is served meanwhile: b restarts and is let in at once.
    b.restart();
    a.wait_for(
        Duration::from_secs(10),
        "b back while strangers hold slots",
        |v| connected(v, &b_id),
    );
    b.wait_for(Duration::from_secs(10), "a seen from b", |v| {
        connected(v, &a_id)
    });
    // Strangers are dropped once idle; the member stays.
    let t = std::time::Instant::now();
    while count(&open) > 0 && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count(&open), 0, "idle strangers still connected after 15 s");
    println!(
        "idle strangers dropped {} ms after the member came back",
        t.elapsed().as_millis()
    );
    let v = a.status();
    assert!(
        connected(&v, &b_id),
        "the member was dropped too: {}",
        json(&v)
    );
    assert_eq!(v.strangers.connections, 0);
    rt.shutdown_timeout(Duration::from_secs(1));
}
