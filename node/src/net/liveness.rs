//! Liveness pings, only to the peers the node names.
//!
//! libp2p's `ping::Behaviour` pings every connection. keyward needs
//! liveness only between an owner and its guardians (the release policy:
//! a guardian must have seen its ward alive within `timeout`, and up
//! within `up_window` for the copied-boot-key rule), so a mesh's pings
//! would otherwise grow with its gossip connections for nothing. The core
//! says whom to ping (`Output::Liveness`); [`Liveness::set_watched`] turns
//! pinging on or off on every connection to a peer whose marking changed,
//! without reconnecting (a gossip neighbour that becomes a guardian after
//! a bind starts being pinged on the connection it already has).
//!
//! The wire protocol is libp2p's ping (`/ipfs/ping/1.0.0`: 32 random
//! bytes, echoed), so either side may run libp2p's own. Every connection
//! answers pings, watched or not: the other side decides what it needs
//! (a guardian pings its ward, which may not know yet that it is one).
//!
//! Pings keep no connection open: their streams are ignored for
//! keep-alive, as libp2p's are. Members' connections are kept open by the
//! [`crate::gate::Gate`], whatever is pinged.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, Stream, StreamProtocol, StreamUpgradeError, SubstreamProtocol,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// libp2p's ping protocol: the same bytes on the wire.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");

/// A ping's payload, echoed by the other side.
const PAYLOAD: usize = 32;

/// Why a ping got no good answer.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is not the ping echoed")]
    Mismatch,
    #[error("the peer does not speak the ping protocol")]
    Unsupported,
    #[error("ping stream: {0}")]
    Io(#[from] io::Error),
}

/// A ping's outcome on one connection to `peer`.
#[derive(Debug)]
pub struct Event {
    pub peer: PeerId,
    pub connection: ConnectionId,
    /// The round trip, or why there was none.
    pub result: Result<Duration, PingError>,
}

/// Pings the watched peers every `interval` on each connection to them;
/// answers everyone's pings.
pub struct Liveness {
    interval: Duration,
    timeout: Duration,
    watched: BTreeSet<PeerId>,
    conns: BTreeMap<PeerId, BTreeSet<ConnectionId>>,
    events: VecDeque<ToSwarm<Event, bool>>,
}

impl Liveness {
    /// A ping every `interval` on watched connections, each failing after
    /// `timeout` without an answer.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Liveness {
            interval,
            timeout,
            watched: BTreeSet::new(),
            conns: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Pings these peers from now on, on the connections they have and
    /// the ones they make, and no one else.
    pub fn set_watched(&mut self, peers: impl IntoIterator<Item = PeerId>) {
        let watched: BTreeSet<PeerId> = peers.into_iter().collect();
        for p in self.watched.symmetric_difference(&watched) {
            let on = watched.contains(p);
            for c in self.conns.get(p).into_iter().flatten() {
                self.events.push_back(ToSwarm::NotifyHandler {
                    peer_id: *p,
                    handler: NotifyHandler::One(*c),
                    event: on,
                });
            }
        }
        self.watched = watched;
    }

    /// Whether `peer` is pinged.
    pub fn is_watched(&self, peer: &PeerId) -> bool {
        self.watched.contains(peer)
    }

    fn handler(&mut self, peer: PeerId, id: ConnectionId) -> Handler {
        self.conns.entry(peer).or_default().insert(id);
        Handler::new(self.interval, self.timeout, self.watched.contains(&peer))
    }
}

impl NetworkBehaviour for Liveness {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, id))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, id))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(c) = event {
            if let Some(set) = self.conns.get_mut(&c.peer_id) {
                set.remove(&c.connection_id);
                if set.is_empty() {
                    self.conns.remove(&c.peer_id);
                }
            }
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        result: THandlerOutEvent<Self>,
    ) {
        self.events.push_back(ToSwarm::GenerateEvent(Event {
            peer,
            connection,
            result,
        }));
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

type PingFuture = BoxFuture<'static, Result<(Stream, Duration), PingError>>;
type PongFuture = BoxFuture<'static, io::Result<Stream>>;

/// Our side of the pings on one connection.
enum Outbound {
    /// No stream: one is asked for when the next ping is due.
    Closed,
    /// A stream was asked for.
    Opening,
    /// Between pings.
    Idle(Stream),
    Pinging(PingFuture),
}

/// One connection's pings: ours when switched on, and answers to the
/// other side's always.
pub struct Handler {
    interval: Duration,
    timeout: Duration,
    /// Whether we ping on this connection (the peer is watched).
    on: bool,
    /// The peer does not speak ping: we stop asking.
    unsupported: bool,
    outbound: Outbound,
    /// When the next ping is due (None: now).
    next: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Answering the other side's pings on its stream.
    inbound: Option<PongFuture>,
    /// Outcomes not handed to the behaviour yet.
    results: VecDeque<Result<Duration, PingError>>,
}

impl Handler {
    fn new(interval: Duration, timeout: Duration, on: bool) -> Self {
        Handler {
            interval,
            timeout,
            on,
            unsupported: false,
            outbound: Outbound::Closed,
            next: None,
            inbound: None,
            results: VecDeque::new(),
        }
    }

    fn wait(&mut self) {
        self.next = Some(Box::pin(tokio::time::sleep(self.interval)));
    }

    /// Whether the next ping is due (registers the waker if not).
    fn due(&mut self, cx: &mut Context<'_>) -> bool {
        match self.next.as_mut() {
            None => true,
            Some(t) => t.as_mut().poll(cx).is_ready(),
        }
    }
}

/// Reads a ping and echoes it.
async fn pong(mut s: Stream) -> io::Result<Stream> {
    let mut buf = [0u8; PAYLOAD];
    s.read_exact(&mut buf).await?;
    s.write_all(&buf).await?;
    s.flush().await?;
    Ok(s)
}

/// Sends a ping and waits up to `timeout` for its echo.
async fn ping(mut s: Stream, timeout: Duration) -> Result<(Stream, Duration), PingError> {
    let payload: [u8; PAYLOAD] = rand::random();
    let started = Instant::now();
    let exchange = async {
        s.write_all(&payload).await?;
        s.flush().await?;
        let mut back = [0u8; PAYLOAD];
        s.read_exact(&mut back).await?;
        Ok::<_, io::Error>(back)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(PingError::Timeout(timeout)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(back)) if back != payload => Err(PingError::Mismatch),
        Ok(Ok(_)) => Ok((s, started.elapsed())),
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = bool;
    type ToBehaviour = Result<Duration, PingError>;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
    }

    /// Switched on (the peer became a guardian or a ward) or off: off
    /// drops our stream, so the other side sees no more pings.
    fn on_behaviour_event(&mut self, on: bool) {
        if on == self.on {
            return;
        }
        self.on = on;
        self.outbound = Outbound::Closed;
        self.next = None;
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        if let Some(r) = self.results.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(r));
        }
        if let Some(f) = self.inbound.as_mut() {
            match f.poll_unpin(cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(s)) => self.inbound = Some(pong(s).boxed()),
                Poll::Ready(Err(_)) => self.inbound = None,
            }
        }
        if !self.on || self.unsupported {
            return Poll::Pending;
        }
        loop {
            match std::mem::replace(&mut self.outbound, Outbound::Closed) {
                Outbound::Pinging(mut f) => match f.poll_unpin(cx) {
                    Poll::Pending => {
                        self.outbound = Outbound::Pinging(f);
                        return Poll::Pending;
                    }
                    Poll::Ready(r) => {
                        self.wait();
                        let r = r.map(|(s, rtt)| {
                            self.outbound = Outbound::Idle(s);
                            rtt
                        });
                        return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(r));
                    }
                },
                Outbound::Idle(s) => {
                    if !self.due(cx) {
                        self.outbound = Outbound::Idle(s);
                        return Poll::Pending;
                    }
                    self.outbound = Outbound::Pinging(ping(s, self.timeout).boxed());
                }
                Outbound::Opening => {
                    self.outbound = Outbound::Opening;
                    return Poll::Pending;
                }
                Outbound::Closed => {
                    if !self.due(cx) {
                        return Poll::Pending;
                    }
                    self.outbound = Outbound::Opening;
                    let protocol = SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ());
                    return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol,
                    });
                }
            }
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: mut s,
                ..
            }) => {
                s.ignore_for_keep_alive();
                self.inbound = Some(pong(s).boxed());
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut s,
                ..
            }) => {
                s.ignore_for_keep_alive();
                // A stream asked for before we were switched off is dropped.
                if self.on && matches!(self.outbound, Outbound::Opening) {
                    self.outbound = Outbound::Pinging(ping(s, self.timeout).boxed());
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                if matches!(self.outbound, Outbound::Opening) {
                    self.outbound = Outbound::Closed;
                }
                self.wait();
                let e = match error {
                    StreamUpgradeError::NegotiationFailed => {
                        self.unsupported = true;
                        PingError::Unsupported
                    }
                    StreamUpgradeError::Timeout => PingError::Timeout(self.timeout),
                    StreamUpgradeError::Io(e) => PingError::Io(e),
                    StreamUpgradeError::Apply(e) => match e {},
                };
                self.results.push_back(Err(e));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{noise, tcp, yamux, Swarm};

    fn swarm() -> Swarm<Liveness> {
        libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| Liveness::new(Duration::from_millis(100), Duration::from_secs(2)))
            .unwrap()
            // nothing else keeps the test's connection open
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    }

    /// What each side saw while both ran for `d`: answered pings of a,
    /// of b, and connections closed.
    async fn run(a: &mut Swarm<Liveness>, b: &mut Swarm<Liveness>, d: Duration) -> [usize; 3] {
        let end = tokio::time::Instant::now() + d;
        let mut seen = [0; 3];
        fn count(seen: &mut [usize; 3], e: SwarmEvent<Event>, who: usize) {
            match e {
                SwarmEvent::Behaviour(Event { result: Ok(_), .. }) => seen[who] += 1,
                SwarmEvent::ConnectionClosed { .. } => seen[2] += 1,
                _ => {}
            }
        }
        loop {
            tokio::select! {
                e = a.select_next_some() => count(&mut seen, e, 0),
                e = b.select_next_some() => count(&mut seen, e, 1),
                _ = tokio::time::sleep_until(end) => return seen,
            }
        }
    }

    #[tokio::test]
    async fn only_watched_peers_are_pinged_and_switching_keeps_the_connection() {
        let (mut a, mut b) = (swarm(), swarm());
        let (pa, pb) = (*a.local_peer_id(), *b.local_peer_id());
        a.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = a.select_next_some().await {
                break address;
            }
        };
        a.behaviour_mut().set_watched([pb]);
        b.dial(addr).unwrap();
        let [na, nb, closed] = run(&mut a, &mut b, Duration::from_millis(800)).await;
        assert!(a.is_connected(&pb) && closed == 0);
        assert!(na >= 3, "a pings b: {na}");
        assert_eq!(nb, 0, "b answers, and pings no one");
        // b takes up pinging a and a stops, on the same connection
        b.behaviour_mut().set_watched([pa]);
        a.behaviour_mut().set_watched([]);
        assert!(b.behaviour().is_watched(&pa) && !a.behaviour().is_watched(&pb));
        let [na, nb, closed] = run(&mut a, &mut b, Duration::from_millis(800)).await;
        assert_eq!(closed, 0, "no reconnect");
        assert!(nb >= 3, "b pings a: {nb}");
        assert!(na <= 1, "at most an answer in flight: {na}");
    }
}
