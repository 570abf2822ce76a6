//! A peer that sends oversize, malformed or unknown-version messages is
//! warned about by name and disconnected; the daemon keeps serving.

mod common;

use std::io;
use std::time::Duration;

use common::Node;
use futures::prelude::*;
use keyward_node::peer::PeerIds;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol};

/// Writes whatever bytes it is given, as a hostile peer would.
#[derive(Clone, Default)]
struct Raw;

impl request_response::Codec for Raw {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;
    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        io.take(1 << 20).read_to_end(&mut v).await?;
        Ok(v)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        self.read_request(p, io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&r).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        self.write_request(p, io, r).await
    }
}

/// Whether the connection to `peer` closes within `limit`.
async fn closed_within<B: libp2p::swarm::NetworkBehaviour>(
    swarm: &mut libp2p::Swarm<B>,
    peer: libp2p::PeerId,
    limit: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionClosed { peer_id, .. }) if peer_id == peer => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn misbehaving_peers_are_disconnected_and_the_daemon_survives() {
    let d = tempfile::tempdir().unwrap();
    let port = common::free_port(false);
    let mut node = Node::start(
        &d.path().join("a"),
        &format!("/ip4/127.0.0.1/tcp/{port}"),
        false,
        Some("m"),
    );

    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                Raw,
                [(
                    StreamProtocol::new(keyward_node::proto::RPC_PROTOCOL),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let peer = node
        .status()
        .node
        .id
        .parse::<keyward_node::identity::NodeId>()
        .unwrap()
        .peer_id()
        .unwrap();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    // garbage, a frame from a future version, and an oversize frame
    let future = {
        let mut v = vec![0xa3, 0x61, b'v', 0x09, 0x61, b'k', 0x6b];
        v.extend_from_slice(b"rpc-request");
        v.extend_from_slice(&[0x61, b'b', 0xf6]);
        v
    };
    let payloads = [
        b"\xff\x00garbage".to_vec(),
        future,
        vec![0u8; 20_000],
        b"x".to_vec(),
        vec![0xa0],
        b"\x9f".to_vec(),
    ];
    for p in payloads {
        swarm
            .behaviour_mut()
            .send_request_with_addresses(&peer, p, vec![addr.clone()]);
    }
    if !closed_within(&mut swarm, peer, Duration::from_secs(15)).await {
        panic!(
            "the daemon did not disconnect a peer sending garbage; log:\n{}",
            node.log()
        );
    }
    // A banned peer that comes straight back is cut off again at once.
    swarm
        .behaviour_mut()
        .send_request_with_addresses(&peer, vec![0xa0], vec![addr.clone()]);
    assert!(
        closed_within(&mut swarm, peer, Duration::from_secs(10)).await,
        "a banned peer's new connection was kept"
    );
    // it still serves its control socket
    let v = node.client().status().unwrap();
    assert_eq!(v.mesh.as_ref().and_then(|m| m.name.as_deref()), Some("m"));
    node.stop();
    let log = node.log();
    let me = swarm.local_peer_id().to_string();
    assert!(
        log.contains("bad message from peer") && log.contains(&me),
        "{log}"
    );
    assert!(log.contains("disconnecting peer"), "{log}");
    assert!(log.contains("refusing a banned peer"), "{log}");
}
