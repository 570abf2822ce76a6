//! Hand-driven libp2p peers that talk to a real keywardd the way a hostile
//! or hijacked node would: over gossip, with requests, or answering its
//! sync requests with whatever the test wants.

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

fn daemon_like(key: &NodeKey) -> libp2p::Swarm<net::Behaviour> {
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

/// Sends `reqs` to the daemon from a fresh connection authenticated by
/// `key` (an initramfs uses its boot key), at most `window` in flight, and
/// returns the answers in order (an error text for a failed request).
pub fn ask_as(
    key: libp2p::identity::Keypair,
    port: u16,
    daemon: PeerId,
    reqs: Vec<Request>,
    window: usize,
) -> Vec<Result<Response, String>> {
    runtime().block_on(async {
        let mut swarm = net::client_swarm(key, Duration::from_secs(10)).unwrap();
        let a = addr(port, daemon);
        let mut out: Vec<Option<Result<Response, String>>> = vec![None; reqs.len()];
        let mut ids = std::collections::BTreeMap::new();
        let mut queue = reqs.into_iter().enumerate();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            while ids.len() < window {
                let Some((i, r)) = queue.next() else { break };
                let id =
                    swarm
                        .behaviour_mut()
                        .send_request_with_addresses(&daemon, r, vec![a.clone()]);
                ids.insert(id, i);
            }
            if ids.is_empty() {
                break;
            }
            let Ok(ev) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await else {
                break;
            };
            match ev {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) => {
                    if let Some(i) = ids.remove(&request_id) {
                        out[i] = Some(Ok(response));
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) => {
                    if let Some(i) = ids.remove(&request_id) {
                        out[i] = Some(Err(error.to_string()));
                    }
                }
                _ => {}
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err("no answer in 60 s".into())))
            .collect()
    })
}
