//! The libp2p adapter: transport, behaviours and the CBOR request-response
//! codec with hard size limits.

use std::io;
use std::time::Duration;

use futures::prelude::*;
use libp2p::core::Transport;
#[cfg(feature = "daemon")]
use libp2p::swarm::{behaviour::toggle::Toggle, NetworkBehaviour};
#[cfg(feature = "daemon")]
use libp2p::tcp;
#[cfg(feature = "daemon")]
use libp2p::{connection_limits, gossipsub, identify, mdns, PeerId};
use libp2p::{identity::Keypair, noise, request_response, yamux, StreamProtocol, Swarm};

use crate::codec::{self, Wire};
use crate::dial::DialOnlyTcp;
#[cfg(feature = "daemon")]
use crate::gate::{Gate, GateLimits};
use crate::proto::{BootRequest, BootResponse, Request, Response, RPC_PROTOCOL};

#[cfg(feature = "daemon")]
pub mod liveness;

/// Reads one frame of at most `T::MAX` bytes; a longer stream is an error,
/// never an allocation.
async fn read_frame<T: Wire, R: AsyncRead + Unpin + Send>(io: &mut R) -> io::Result<T> {
    let mut buf = Vec::new();
    io.take(T::MAX as u64 + 1).read_to_end(&mut buf).await?;
    codec::decode(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_frame<T: Wire, W: AsyncWrite + Unpin + Send>(io: &mut W, msg: &T) -> io::Result<()> {
    let bytes = codec::encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    io.write_all(&bytes).await?;
    io.close().await
}

#[derive(Clone, Default)]
pub struct RpcCodec;

impl request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Request> {
        match read_frame(io).await {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Ok(Request::Malformed(e.to_string()))
            }
            Err(e) => Err(e),
        }
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Response> {
        read_frame(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Request,
    ) -> io::Result<()> {
        write_frame(io, &r).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Response,
    ) -> io::Result<()> {
        write_frame(io, &r).await
    }
}

pub type Rpc = request_response::Behaviour<RpcCodec>;

/// The boot client's codec: it writes share requests and reads the
/// answers to them ([`BootRequest`], [`BootResponse`]: the daemon's frames,
/// narrowed), so the initramfs binary holds no serde code for the rest of
/// the protocol. It is never asked to answer: its behaviour supports the
/// protocol outbound only.
#[derive(Clone, Default)]
pub struct BootCodec;

fn not_a_server() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the boot client answers no requests",
    )
}

impl request_response::Codec for BootCodec {
    type Protocol = StreamProtocol;
    type Request = BootRequest;
    type Response = BootResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<BootRequest> {
        Err(not_a_server())
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<BootResponse> {
        read_frame(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: BootRequest,
    ) -> io::Result<()> {
        write_frame(io, &r).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: BootResponse,
    ) -> io::Result<()> {
        Err(not_a_server())
    }
}

pub type BootRpc = request_response::Behaviour<BootCodec>;

/// Requests in flight on one connection, both ways. An unlock asks each
/// guardian once at a time and members exchange a handful; the bound keeps
/// one connection from tying up more than this many 16 KiB request buffers.
const MAX_STREAMS_PER_CONNECTION: usize = 32;

fn rpc(timeout: Duration) -> Rpc {
    request_response::Behaviour::with_codec(
        RpcCodec,
        [(
            StreamProtocol::new(RPC_PROTOCOL),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION),
    )
}

/// How long a connection nobody keeps alive stays open. Members' node-key
/// connections are kept alive by the [`Gate`] whatever this says (liveness
/// rides on them); an initramfs closes its own when done; a stranger's is
/// dropped this long after its last request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Caps that hold for everyone, members included: handshakes in progress
/// (before anyone's key is known) and connections of one peer (two members
/// dialling each other at once make two; a third is waste).
#[cfg(feature = "daemon")]
fn connection_limits() -> connection_limits::Behaviour {
    connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(128))
            .with_max_established_per_peer(Some(4))
            .with_max_established(Some(4096)),
    )
}

/// The gossip score of a peer that is not an active member. Below
/// gossipsub's graylist threshold: its subscriptions are noted but its
/// messages, grafts and gossip are ignored, nothing is published, forwarded
/// or gossiped to it, and it is never in our mesh. Members score 0.
#[cfg(feature = "daemon")]
pub const NON_MEMBER_SCORE: f64 = -1000.0;

/// Gossip scoring used only to keep non-members out (see
/// [`NON_MEMBER_SCORE`]): no topic scores, no IP colocation penalty
/// (members behind one NAT are fine), no behaviour penalties.
#[cfg(feature = "daemon")]
fn gossip_scoring() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let params = gossipsub::PeerScoreParams {
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: 0.0,
        slow_peer_weight: 0.0,
        ..Default::default()
    };
    (params, gossipsub::PeerScoreThresholds::default())
}

/// Sets the gossip score of a connected peer: 0 for a member, far below
/// every threshold otherwise. Called on every new connection and whenever
/// the roster changes.
#[cfg(feature = "daemon")]
pub fn set_gossip_member(gossip: &mut gossipsub::Behaviour, peer: &PeerId, member: bool) {
    let score = if member { 0.0 } else { NON_MEMBER_SCORE };
    gossip.set_application_score(peer, score);
}

/// The daemon's behaviours. The two gates come first, so a connection
/// they refuse costs the others nothing.
#[cfg(feature = "daemon")]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub gate: Gate,
    pub identify: identify::Behaviour,
    pub liveness: liveness::Liveness,
    pub rpc: Rpc,
    pub gossip: gossipsub::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

#[cfg(feature = "daemon")]
pub struct SwarmOptions {
    /// Between pings on a connection to a guardian or ward (no one else
    /// is pinged: [`liveness`]).
    pub ping_interval: Duration,
    pub mdns: bool,
    pub quic: bool,
}

/// gossipsub's maximum transmit size. A message's own bound is
/// [`Gossip`]'s (`Wire::MAX`, 4 KiB): the daemon decodes what arrives
/// with it and strikes the author of anything larger. This one must
/// be far above it, because libp2p-gossipsub 0.50.1 checks the whole
/// read buffer against it, not one frame: a partial frame plus up to
/// 8 KiB read at once. At 4 KiB a burst of small messages (a revocation
/// with its re-endorsements: 16 messages, 6 KiB) made every peer drop
/// the stream and all of the burst with it; anti-entropy brought them
/// 20-30 s later. With 64 KiB, a buffer of our frames (at most about
/// 4.3 KiB each) never reaches it. (`node/tests/gossip_burst.rs`.)
///
/// [`Gossip`]: crate::proto::Gossip
pub const GOSSIP_READ_MAX: usize = 64 * 1024;

/// Message ids in one IHAVE or IWANT (gossipsub's default is 5,000).
/// gossipsub refuses a frame whose control part is over 16 KiB (its
/// `max_control_message_size`, per frame) and, as with the transmit
/// limit, drops the stream and everything buffered in it. An IHAVE lists
/// the ids of up to three heartbeats' messages in one frame, and an id
/// is the author's peer id in base58 (52 characters for our ed25519
/// keys) and a decimal sequence number (at most 20): at the default, an
/// IHAVE after a burst of about 220 messages (a cascade over a big
/// subtree) was refused whole. 192 ids always fit; the messages it
/// leaves out reach the node by the mesh's own forwarding, the next
/// heartbeats' IHAVEs, or anti-entropy. An IWANT is bounded by the same
/// number.
pub const GOSSIP_IDS_MAX: usize = 192;

/// gossipsub's limit on the control part of one frame (its default, set
/// here so the check below holds whatever the default becomes).
const GOSSIP_CONTROL_MAX: usize = 16 * 1024;
/// The longest message id: a base58 ed25519 peer id and a u64 in
/// decimal, with protobuf's tag and length bytes.
const GOSSIP_ID_MAX_LEN: usize = 52 + 20 + 2;
/// An IHAVE's other fields: its tags and lengths, and the topic (ours is
/// `keyward/`, a mesh id in hex and `/v2`: 43 bytes).
const GOSSIP_IHAVE_OVERHEAD: usize = 256;
const _: () =
    assert!(GOSSIP_IDS_MAX * GOSSIP_ID_MAX_LEN + GOSSIP_IHAVE_OVERHEAD <= GOSSIP_CONTROL_MAX);

#[cfg(feature = "daemon")]
pub fn daemon_swarm(key: Keypair, opts: &SwarmOptions) -> anyhow::Result<Swarm<Behaviour>> {
    let build = |key: &Keypair| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
        let gcfg = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(500))
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Nothing is forwarded before the daemon decoded it, so a bad
            // message is pinned on its author, never on members relaying it.
            .validate_messages()
            .max_transmit_size(GOSSIP_READ_MAX)
            .max_control_messages_sent(GOSSIP_IDS_MAX)
            .max_control_message_size(GOSSIP_CONTROL_MAX)
            .flood_publish(true)
            .build()?;
        let mut gossip =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gcfg)?;
        let (params, thresholds) = gossip_scoring();
        gossip.with_peer_score(params, thresholds)?;
        let mdns = if opts.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                key.public().to_peer_id(),
            )?)
        } else {
            None
        };
        Ok(Behaviour {
            limits: connection_limits(),
            gate: Gate::new(GateLimits::default()),
            identify: identify::Behaviour::new(
                identify::Config::new("/keyward/1".into(), key.public())
                    // a node that moved tells its peers at once
                    .with_push_listen_addr_updates(true),
            ),
            liveness: liveness::Liveness::new(opts.ping_interval, Duration::from_secs(5)),
            rpc: rpc(Duration::from_secs(10)),
            gossip,
            mdns: Toggle::from(mdns),
        })
    };
    let idle = IDLE_TIMEOUT;
    if opts.quic {
        Ok(libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_behaviour(build)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build())
    } else {
        Ok(libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(build)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build())
    }
}

/// A swarm that only dials ([`DialOnlyTcp`]: no listener, so no interface
/// watching), with noise and yamux as the daemon's TCP transport, and
/// `behaviour`.
fn dialer_swarm<B: libp2p::swarm::NetworkBehaviour>(
    key: Keypair,
    behaviour: B,
) -> anyhow::Result<Swarm<B>> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                DialOnlyTcp
                    .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })?
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build())
}

/// The boot client's swarm: share requests only, over connections
/// authenticated by the boot key (so guardians can tell it from a live
/// node), dialled, never accepted.
pub fn boot_swarm(key: Keypair, timeout: Duration) -> anyhow::Result<Swarm<BootRpc>> {
    let rpc = request_response::Behaviour::with_codec(
        BootCodec,
        [(
            StreamProtocol::new(RPC_PROTOCOL),
            request_response::ProtocolSupport::Outbound,
        )],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION),
    );
    dialer_swarm(key, rpc)
}

/// A dialling swarm that may send any request: for tests that play an
/// initramfs (or a stranger) sending what a boot client never would.
pub fn client_swarm(key: Keypair, timeout: Duration) -> anyhow::Result<Swarm<Rpc>> {
    dialer_swarm(key, rpc(timeout))
}

/// The mesh's gossip topic; its version follows [`RPC_PROTOCOL`]'s.
#[cfg(feature = "daemon")]
pub fn topic(mesh: &crate::roster::MeshId) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("keyward/{mesh}/v2"))
}
