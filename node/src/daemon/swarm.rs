//! Swarm events as the node's inputs: connections, pings, identify and
//! mDNS (addresses, kept here), gossip and request-response messages.

use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, mdns};
use tracing::{debug, info};

use super::Daemon;
use crate::codec;
use crate::identity::NodeId;
use crate::net::{self, liveness, BehaviourEvent};
use crate::peer::FromPeerId;
use crate::proto::{Gossip, Request, Response, MAX_WANT_RECORDS};
use keyward_core::node::{GossipId, InId, Input};

impl Daemon {
    pub(super) fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.on_swarm_event(ev);
        // Addresses learnt by this event are on disk before the next one
        // is handled: a power cut a second after a mesh formed must not
        // leave a restarted node with nobody to dial.
        self.persist_addrs(false);
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        if let SwarmEvent::ConnectionClosed { connection_id, .. } = &ev {
            self.dialled.remove(connection_id);
        }
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!("listening on {address}/p2p/{}", self.peer_id());
                self.listen.push(address);
                self.listening();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen.retain(|a| *a != address);
                self.listening();
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: libp2p::swarm::ListenError::Denied { cause },
                ..
            } => self.input(Input::ConnectionRefused {
                from: send_back_addr.to_string(),
                cause: cause.to_string(),
            }),
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(p),
                error,
                ..
            } => {
                debug!(peer = %p, "dial failed: {error}");
                // a spare dial's failure while connected is nobody's reason
                if self.is_member_peer(&p) && !self.swarm.is_connected(&p) {
                    self.dial_errors.insert(p, dial_error_text(&error));
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                self.dial_errors.remove(&peer_id);
                // Members and boot keys are ed25519 keys; anything else
                // can be neither, and has nothing to say to a guardian.
                let Some(peer) = self.node_of(&peer_id) else {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                self.input(Input::Connected { peer });
                if !self.node.is_connected(&peer) {
                    return; // banned: the node sent it away
                }
                let member = self.node.is_member(&peer);
                net::set_gossip_member(&mut self.swarm.behaviour_mut().gossip, &peer_id, member);
                if endpoint.is_dialer() {
                    let a = endpoint.get_remote_address().clone();
                    self.on_reached(peer_id, connection_id, a);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(peer) = self.node_of(&peer_id) {
                    self.input(Input::Closed { peer });
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Liveness(liveness::Event {
                peer,
                result,
                ..
            })) => match result {
                Ok(_) => {
                    if let Some(peer) = self.node_of(&peer) {
                        self.input(Input::Pinged { peer });
                    }
                }
                Err(e) => debug!(peer = %peer, "ping: {e}"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                connection_id,
            })) => self.on_identify(peer_id, connection_id, &info.listen_addrs),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                for (p, a) in list {
                    if p != self.peer_id() && self.room_for(&p) {
                        self.book.candidate(p, &a);
                        // a member outside the overlay: its address only
                        if !self.is_member_peer(&p) || self.wants_peer(&p) || self.alone() {
                            self.dial_node(p);
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let via = self.node_of(&propagation_source);
                let author = message.source.as_ref().and_then(NodeId::from_peer_id);
                debug!(%message_id, from = %propagation_source, ?author, "gossip in");
                let Some(via) = via else {
                    let reject = gossipsub::MessageAcceptance::Reject;
                    let g = &mut self.swarm.behaviour_mut().gossip;
                    let _ = g.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        reject,
                    );
                    return;
                };
                let id = GossipId(self.fresh_id());
                self.gossip.insert(id, (message_id, propagation_source));
                let msg = codec::decode::<Gossip>(&message.data).map_err(|e| e.to_string());
                self.input(Input::Gossip {
                    id,
                    via,
                    author,
                    msg,
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(ev)) => self.on_rpc(ev),
            _ => {}
        }
    }

    /// Our listen addresses changed: the node's copy, our signed record.
    fn listening(&mut self) {
        let me = self.peer_id();
        let addrs = self
            .listen
            .iter()
            .map(|a| format!("{a}/p2p/{me}"))
            .collect();
        self.own_record_stale = true;
        self.refresh_own_record();
        self.input(Input::Listening(addrs));
    }

    fn on_rpc(&mut self, ev: request_response::Event<Request, Response>) {
        use request_response::{Event, Message, OutboundFailure};
        match ev {
            Event::Message { peer, message, .. } => {
                let Some(from) = self.node_of(&peer) else {
                    return;
                };
                match message {
                    Message::Request {
                        request, channel, ..
                    } => {
                        let id = InId(self.fresh_id());
                        let want = match &request {
                            Request::Sync { want, prefix, .. } if prefix.is_empty() => {
                                Some(want.iter().take(MAX_WANT_RECORDS).copied().collect())
                            }
                            _ => None,
                        };
                        self.inbound.insert(id, (channel, from, want));
                        self.input(Input::Request {
                            id,
                            from,
                            req: request,
                        });
                    }
                    Message::Response {
                        request_id,
                        mut response,
                    } => {
                        // The signed peer records are the transport's.
                        if let Response::Roster { records, .. } = &mut response {
                            let records = std::mem::take(records);
                            self.take_records(peer, records);
                        }
                        self.response(request_id, from, Ok(response));
                    }
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some(from) = self.node_of(&peer) else {
                    return;
                };
                // A response that did not decode is the peer's fault, as a
                // bad request is.
                if let OutboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        let what = format!("response: {e}");
                        self.input(Input::Misbehaved { peer: from, what });
                    }
                }
                // A bare "Failed to dial" says nothing an admin can act
                // on: say that we know no address of the member (its
                // peer record is asked for by now: `Input::NoAddress`),
                // or why its dial failed.
                let why = match error {
                    OutboundFailure::DialFailure if self.book.dial_addrs(&peer).is_empty() => {
                        "no address of it known here yet (asked the mesh for it; try again in a minute)".to_string()
                    }
                    OutboundFailure::DialFailure => match self.dial_errors.get(&peer) {
                        Some(e) => format!("could not connect: {e}"),
                        None => OutboundFailure::DialFailure.to_string(),
                    },
                    e => e.to_string(),
                };
                self.response(request_id, from, Err(why));
            }
            Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        if let Some(peer) = self.node_of(&peer) {
                            let what = e.to_string();
                            self.input(Input::Misbehaved { peer, what });
                        }
                        return;
                    }
                }
                debug!(peer = %peer, "inbound request failed: {error}");
            }
            _ => {}
        }
    }

    fn response(&mut self, rid: OutboundRequestId, from: NodeId, result: Result<Response, String>) {
        if let Some(id) = self.outbound.remove(&rid) {
            self.input(Input::Response { id, from, result });
        }
    }
}

/// A failed dial in a line an admin reads: each address tried and the
/// innermost cause ("Connection refused (os error 111)"), not libp2p's
/// nested "Failed to negotiate transport protocol(s): [(…: : …)]".
fn dial_error_text(e: &libp2p::swarm::DialError) -> String {
    fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
        let mut e = e;
        while let Some(s) = e.source() {
            e = s;
        }
        e.to_string()
    }
    match e {
        libp2p::swarm::DialError::Transport(tried) if !tried.is_empty() => tried
            .iter()
            .map(|(a, e)| format!("{a}: {}", innermost(e)))
            .collect::<Vec<_>>()
            .join("; "),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use libp2p::core::transport::TransportError;
    use libp2p::swarm::DialError;

    #[test]
    fn a_failed_dial_reads_as_each_address_and_its_cause() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            std::io::Error::from_raw_os_error(111),
        );
        let a: libp2p::Multiaddr = "/ip4/10.0.0.3/tcp/7300".parse().unwrap();
        let e = DialError::Transport(vec![(a, TransportError::Other(refused))]);
        assert_eq!(
            super::dial_error_text(&e),
            "/ip4/10.0.0.3/tcp/7300: Connection refused (os error 111)"
        );
        let e = DialError::NoAddresses;
        assert_eq!(super::dial_error_text(&e), e.to_string());
    }
}
