//! Who may hold a connection to this daemon, and for how long.
//!
//! Members and the boot keys of members are always let in and, for member
//! node keys, kept connected however idle the link is (liveness rides on
//! these connections). Everybody else is a stranger: an initramfs of a
//! node that is not ours, a joiner before its admission, an mDNS
//! neighbour of another mesh, or an attacker. Strangers are capped (in
//! total, per source IP, and in handshakes per source IP) and nothing keeps
//! their connections open, so the swarm's short idle timeout drops them.
//! Without these caps anyone who can reach the port could hold thousands of
//! connections and their buffers.
//!
//! The caps are per connection, not per peer id: a stranger can make a new
//! key for every connection for free.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::handler::ConnectionEvent;
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// The caps on strangers' connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateLimits {
    /// Established connections of strangers, all sources together.
    pub strangers: usize,
    /// Established connections of strangers from one IP address.
    pub strangers_per_ip: usize,
    /// Connections from one IP address still in their handshake (nobody's
    /// key is known yet, so members count here too, briefly).
    pub pending_per_ip: usize,
}

impl Default for GateLimits {
    fn default() -> Self {
        GateLimits {
            strangers: 64,
            strangers_per_ip: 8,
            pending_per_ip: 16,
        }
    }
}

/// Why a stranger's connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{limit} handshakes from {ip} are already in progress")]
    Pending { ip: IpAddr, limit: usize },
    #[error("{limit} connections of non-members from {ip} are already open")]
    PerIp { ip: IpAddr, limit: usize },
    #[error("{limit} connections of non-members are already open")]
    Total { limit: usize },
}

/// How a connection is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A member's node key: kept alive.
    Member,
    /// A member's boot key (its initramfs): let in, not kept alive.
    Boot,
    /// A non-member we dialled ourselves (mDNS, bootstrap): not capped.
    Dialled,
    Stranger,
}

#[derive(Default)]
pub struct Gate {
    limits: GateLimits,
    members: BTreeSet<PeerId>,
    boots: BTreeSet<PeerId>,
    /// Handshakes in progress: their source IP.
    pending: BTreeMap<ConnectionId, IpAddr>,
    /// Established connections: peer, kind and source IP (none for ours).
    conns: BTreeMap<ConnectionId, (PeerId, Kind, Option<IpAddr>)>,
    refused: u64,
    events: VecDeque<ToSwarm<Infallible, bool>>,
}

fn ip_of(a: &Multiaddr) -> Option<IpAddr> {
    a.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl Gate {
    pub fn new(limits: GateLimits) -> Self {
        Gate {
            limits,
            ..Gate::default()
        }
    }

    /// The current members' node-key and boot-key peer ids. Open
    /// connections are re-counted: a joiner's connection stops counting as
    /// a stranger's and is kept alive from now on, a revoked member's is
    /// no longer kept alive.
    pub fn set_members(&mut self, members: BTreeSet<PeerId>, boots: BTreeSet<PeerId>) {
        self.members = members;
        self.boots = boots;
        let ids: Vec<ConnectionId> = self.conns.keys().copied().collect();
        for id in ids {
            let (peer, old, ip) = self.conns[&id];
            let new = match self.kind(&peer) {
                // only inbound connections carry a source IP
                Kind::Stranger if ip.is_none() => Kind::Dialled,
                k => k,
            };
            if new != old {
                self.conns.insert(id, (peer, new, ip));
                if (new == Kind::Member) != (old == Kind::Member) {
                    self.events.push_back(ToSwarm::NotifyHandler {
                        peer_id: peer,
                        handler: NotifyHandler::One(id),
                        event: new == Kind::Member,
                    });
                }
            }
        }
    }

    /// Strangers' connections open now.
    pub fn strangers(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.1 == Kind::Stranger)
            .count()
    }

    /// Strangers' connections refused since start.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    fn kind(&self, p: &PeerId) -> Kind {
        if self.members.contains(p) {
            Kind::Member
        } else if self.boots.contains(p) {
            Kind::Boot
        } else {
            Kind::Stranger
        }
    }

    fn deny(&mut self, why: Refused) -> ConnectionDenied {
        self.refused += 1;
        ConnectionDenied::new(why)
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = KeepAlive;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        let n = self.pending.values().filter(|i| **i == ip).count();
        if n >= self.limits.pending_per_ip {
            let limit = self.limits.pending_per_ip;
            return Err(self.deny(Refused::Pending { ip, limit }));
        }
        self.pending.insert(id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending.remove(&id);
        let ip = ip_of(remote);
        let kind = self.kind(&peer);
        if kind == Kind::Stranger {
            if self.strangers() >= self.limits.strangers {
                let limit = self.limits.strangers;
                return Err(self.deny(Refused::Total { limit }));
            }
            if let Some(ip) = ip {
                let from_ip = self
                    .conns
                    .values()
                    .filter(|c| c.1 == Kind::Stranger && c.2 == Some(ip))
                    .count();
                if from_ip >= self.limits.strangers_per_ip {
                    let limit = self.limits.strangers_per_ip;
                    return Err(self.deny(Refused::PerIp { ip, limit }));
                }
            }
        }
        self.conns.insert(id, (peer, kind, ip));
        Ok(KeepAlive(kind == Kind::Member))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Ours: we chose to dial, so no cap; counted only to be re-kinded.
        let kind = match self.kind(&peer) {
            Kind::Stranger => Kind::Dialled,
            k => k,
        };
        self.conns.insert(id, (peer, kind, None));
        Ok(KeepAlive(kind == Kind::Member))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(c) => {
                self.conns.remove(&c.connection_id);
            }
            FromSwarm::ListenFailure(f) => {
                self.pending.remove(&f.connection_id);
                self.conns.remove(&f.connection_id);
            }
            FromSwarm::DialFailure(f) => {
                self.conns.remove(&f.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}

/// Speaks no protocol; only says whether its connection is kept open.
pub struct KeepAlive(bool);

impl ConnectionHandler for KeepAlive {
    type FromBehaviour = bool;
    type ToBehaviour = Infallible;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        self.0
    }

    fn on_behaviour_event(&mut self, keep: bool) {
        self.0 = keep;
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        _: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        // DeniedUpgrade negotiates nothing, so nothing arrives here that
        // needs an answer.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/1").parse().unwrap()
    }

    fn conn(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    fn inbound(g: &mut Gate, n: usize, peer: PeerId, ip: &str) -> Result<(), String> {
        let a = addr(ip);
        g.handle_pending_inbound_connection(conn(n), &a, &a)
            .map_err(|e| e.to_string())?;
        g.handle_established_inbound_connection(conn(n), peer, &a, &a)
            .map(|_| ())
            .map_err(|e| match e.downcast::<Refused>() {
                Ok(r) => r.to_string(),
                Err(e) => format!("{e:?}"),
            })
    }

    #[test]
    fn strangers_are_capped_per_ip_and_in_total_members_never() {
        let limits = GateLimits {
            strangers: 5,
            strangers_per_ip: 3,
            pending_per_ip: 100,
        };
        let mut g = Gate::new(limits);
        let member = PeerId::random();
        let boot = PeerId::random();
        g.set_members([member].into(), [boot].into());
        for i in 0..3 {
            inbound(&mut g, i, PeerId::random(), "192.0.2.1").unwrap();
        }
        let e = inbound(&mut g, 3, PeerId::random(), "192.0.2.1").unwrap_err();
        assert!(e.contains("from 192.0.2.1"), "{e}");
        inbound(&mut g, 4, PeerId::random(), "192.0.2.2").unwrap();
        inbound(&mut g, 5, PeerId::random(), "192.0.2.3").unwrap();
        let e = inbound(&mut g, 6, PeerId::random(), "192.0.2.4").unwrap_err();
        assert!(e.contains("5 connections of non-members"), "{e}");
        // members and members' initramfs still get in
        for i in 10..20 {
            inbound(&mut g, i, member, "192.0.2.1").unwrap();
            inbound(&mut g, i + 100, boot, "192.0.2.1").unwrap();
        }
        assert_eq!(g.strangers(), 5);
        assert_eq!(g.refused(), 2);
    }

    #[test]
    fn handshakes_per_ip_are_capped() {
        let mut g = Gate::new(GateLimits {
            pending_per_ip: 2,
            ..GateLimits::default()
        });
        let a = addr("192.0.2.9");
        g.handle_pending_inbound_connection(conn(1), &a, &a)
            .unwrap();
        g.handle_pending_inbound_connection(conn(2), &a, &a)
            .unwrap();
        assert!(g
            .handle_pending_inbound_connection(conn(3), &a, &a)
            .is_err());
        let other = addr("192.0.2.10");
        g.handle_pending_inbound_connection(conn(4), &other, &other)
            .unwrap();
    }

    #[test]
    fn a_stranger_admitted_later_is_kept_alive_and_frees_its_slot() {
        let mut g = Gate::new(GateLimits {
            strangers: 1,
            ..GateLimits::default()
        });
        let joiner = PeerId::random();
        inbound(&mut g, 1, joiner, "192.0.2.1").unwrap();
        assert!(inbound(&mut g, 2, PeerId::random(), "192.0.2.2").is_err());
        g.set_members([joiner].into(), BTreeSet::new());
        assert!(matches!(
            g.events.pop_front(),
            Some(ToSwarm::NotifyHandler { event: true, .. })
        ));
        assert_eq!(g.strangers(), 0);
        inbound(&mut g, 3, PeerId::random(), "192.0.2.2").unwrap();
        // revoked: no longer kept alive
        g.set_members(BTreeSet::new(), BTreeSet::new());
        assert!(matches!(
            g.events.pop_front(),
            Some(ToSwarm::NotifyHandler { event: false, .. })
        ));
    }
}
