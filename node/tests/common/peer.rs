//! Hand-driven libp2p peers that talk to a real keywardd the way a hostile
//! or hijacked node would: over gossip, or answering its sync requests
//! with whatever the test wants. Requests sent with a chosen key are
//! `keyward_node::testing::ask_as`, in the library because netns-tests
//! sends them too.

use std::time::Duration;

use futures::StreamExt;
use keyward_node::codec;
use keyward_node::identity::NodeKey;
use keyward_node::net::{self, BehaviourEvent, SwarmOptions};
use keyward_node::peer::Libp2pKey;
use keyward_node::proto::{Gossip, Request, Response};
use keyward_node::roster::MeshId;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, request_response, Multiaddr, PeerId};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn addr(port: u16, daemon: PeerId) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}/p2p/{daemon}")
        .parse()
        .unwrap()
}

/// A swarm built exactly as keywardd builds its own.
pub fn daemon_like(key: &NodeKey) -> libp2p::Swarm<net::Behaviour> {
    net::daemon_swarm(
        key.libp2p_keypair(),
        &SwarmOptions {
            ping_interval: Duration::from_secs(1),
            mdns: false,
            quic: false,
        },
    )
    .unwrap()
}

/// What a hand-driven gossip peer saw while connected to a daemon.
pub struct GossipRun {
    /// The daemon told us it is subscribed to the mesh topic, i.e. the
    /// connection speaks gossipsub.
    pub subscribed: bool,
    /// Gossip messages that reached us.
    pub received: usize,
}

/// Connects to the daemon at `port` as `key` (a gossip peer of the mesh
/// topic), publishes `msgs` once the daemon's subscription arrived, runs
/// `meanwhile` and keeps listening for `linger`.
pub fn gossip_as(
    key: &NodeKey,
    port: u16,
    daemon: PeerId,
    mesh: MeshId,
    msgs: &[Gossip],
    meanwhile: impl FnOnce(),
    linger: Duration,
) -> GossipRun {
    runtime().block_on(async {
        let mut swarm = daemon_like(key);
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&net::topic(&mesh))
            .unwrap();
        swarm.dial(addr(port, daemon)).unwrap();
        let mut run = GossipRun {
            subscribed: false,
            received: 0,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(ev) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            if let SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Subscribed {
                peer_id,
                ..
            })) = ev
            {
                if peer_id == daemon {
                    run.subscribed = true;
                    break;
                }
            }
        }
        if !run.subscribed {
            return run;
        }
        for g in msgs {
            let bytes = codec::encode(g).unwrap();
            swarm
                .behaviour_mut()
                .gossip
                .publish(net::topic(&mesh), bytes)
                .unwrap();
        }
        meanwhile();
        let linger = tokio::time::Instant::now() + linger;
        while let Ok(ev) = tokio::time::timeout_at(linger, swarm.select_next_some()).await {
            if let SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                ..
            })) = ev
            {
                run.received += 1;
            }
        }
        run
    })
}

/// Connects as `key` and answers the daemon's sync requests with `answer`
/// until one was answered and `linger` passed (or 10 s without one).
/// Returns whether the daemon asked.
pub fn answer_sync_as(
    key: &NodeKey,
    port: u16,
    daemon: PeerId,
    answer: Response,
    linger: Duration,
) -> bool {
    runtime().block_on(async {
        let mut swarm = daemon_like(key);
        swarm.dial(addr(port, daemon)).unwrap();
        let mut deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut answered = false;
        while let Ok(ev) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            if let SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request: Request::Sync { .. },
                        channel,
                        ..
                    },
                ..
            })) = ev
            {
                let _ = swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, answer.clone());
                if !answered {
                    answered = true;
                    deadline = tokio::time::Instant::now() + linger;
                }
            }
        }
        answered
    })
}
