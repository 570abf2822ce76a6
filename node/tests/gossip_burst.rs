//! A burst of gossip arrives whole. Two swarms built exactly as the
//! daemon builds its own (`net::daemon_swarm`) on 127.0.0.1: one
//! publishes 600 messages at once (what `keyward revoke --cascade` of a
//! member that admitted 600 others publishes, or a revocation with one
//! re-endorsement per dependent), the other must receive every one.
//!
//! libp2p-gossipsub 0.50.1 checks the whole read buffer, not one frame,
//! against its maximum transmit size; the reader takes up to 8 KiB at a
//! time, so with the maximum at 4 KiB a burst of small messages killed
//! the inbound stream and every message in it (CI's 20-node test: all 15
//! re-endorsements and the revocation lost on every peer, repaired only
//! by anti-entropy 20-30 s later).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use keyward_node::identity::NodeKey;
use keyward_node::net::{self, BehaviourEvent};
use keyward_node::roster::MeshId;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, Multiaddr, Swarm};

fn swarm() -> Swarm<net::Behaviour> {
    common::peer::daemon_like(&NodeKey::generate())
}

#[test]
fn a_burst_of_gossip_arrives_whole() {
    const N: usize = 600;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let topic = net::topic(&MeshId([9; 16]));
        let (mut a, mut b) = (swarm(), swarm());
        a.behaviour_mut().gossip.subscribe(&topic).unwrap();
        b.behaviour_mut().gossip.subscribe(&topic).unwrap();
        b.listen_on("/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().unwrap())
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // b's address, then a dials and waits until b's subscription came
        let at = loop {
            let ev = tokio::time::timeout_at(deadline, b.select_next_some())
                .await
                .expect("b listens");
            if let SwarmEvent::NewListenAddr { address, .. } = ev {
                break address;
            }
        };
        let b_id = *b.local_peer_id();
        a.dial(at.with(libp2p::multiaddr::Protocol::P2p(b_id)))
            .unwrap();
        loop {
            tokio::select! {
                ev = a.select_next_some() => {
                    if let SwarmEvent::Behaviour(BehaviourEvent::Gossip(
                        gossipsub::Event::Subscribed { peer_id, .. },
                    )) = ev
                    {
                        if peer_id == b_id {
                            break;
                        }
                    }
                }
                _ = b.select_next_some() => {}
                _ = tokio::time::sleep_until(deadline) => panic!("no subscription from b"),
            }
        }
        // the burst: messages of the size of a signed roster operation
        // (about 400 bytes), each distinct
        for i in 0..N {
            let mut body = vec![0u8; 400];
            body[..8].copy_from_slice(&(i as u64).to_be_bytes());
            a.behaviour_mut()
                .gossip
                .publish(topic.clone(), body)
                .expect("published");
        }
        let mut got = BTreeSet::new();
        while got.len() < N {
            tokio::select! {
                ev = b.select_next_some() => {
                    if let SwarmEvent::Behaviour(BehaviourEvent::Gossip(
                        gossipsub::Event::Message { message, message_id, propagation_source },
                    )) = ev
                    {
                        let mut i = [0u8; 8];
                        i.copy_from_slice(&message.data[..8]);
                        got.insert(u64::from_be_bytes(i));
                        // as the daemon does once it decoded the message
                        let _ = b.behaviour_mut().gossip.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Accept,
                        );
                    }
                }
                _ = a.select_next_some() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        assert_eq!(
            got.len(),
            N,
            "of {N} messages published at once, these arrived: {got:?}"
        );
    });
}
