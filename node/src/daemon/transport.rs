//! What only the transport knows: dialling by the addresses in the book,
//! the gate and gossip membership kept in step with the roster, and the
//! transport's part of a status reply.

use std::collections::BTreeSet;

use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId};
use tracing::warn;

use super::Daemon;
use crate::control::{CtlReply, CtlResponse};
use crate::identity::NodeId;
use crate::net;
use crate::peer::PeerIds;

impl Daemon {
    /// Adds what only the transport knows to a status reply: where each
    /// member is reached, and the gate's counts of strangers.
    pub(super) fn with_transport(&self, mut r: CtlResponse) -> CtlResponse {
        if let CtlResponse::Ok(CtlReply::Status(s)) = &mut r {
            for m in &mut s.members {
                if let Some(p) = m.id.parse::<NodeId>().ok().and_then(|n| n.peer_id()) {
                    m.addrs = self.book.confirmed(&p);
                }
            }
            let gate = &self.swarm.behaviour().gate;
            s.strangers.connections = gate.strangers();
            s.strangers.refused_connections = gate.refused();
            s.logs = self.logs_status();
        }
        r
    }

    /// Whether the node keeps a connection to `p` (its overlay).
    pub(super) fn wants_peer(&self, p: &PeerId) -> bool {
        self.node_of(p)
            .is_some_and(|n| self.node.overlay().wants(&n))
    }

    /// No member is connected: any member's address is worth a dial.
    pub(super) fn alone(&self) -> bool {
        !self.node.connected().any(|n| self.node.is_member(n))
    }

    pub(super) fn dial_node(&mut self, p: PeerId) {
        let addrs = self.book.dial_addrs(&p);
        let connected = self.node_of(&p).is_some_and(|n| self.node.is_connected(&n));
        if !connected && !addrs.is_empty() {
            // A fresh source port: with port reuse, two nodes dialling each
            // other at once from their listen ports merge into one TCP
            // connection on which both start noise as initiator, and fail.
            let opts = DialOpts::peer_id(p)
                .addresses(addrs)
                .allocate_new_port()
                .build();
            let _ = self.swarm.dial(opts);
        } else if !connected {
            // told to the node once this output is done (`drain`)
            self.no_address.extend(self.node_of(&p));
        }
    }

    /// Dials every static bootstrap address. Those without a /p2p/ part
    /// name no member, so the member backoff never covers them.
    pub(super) fn dial_bootstrap(&mut self) {
        for b in self.cfg.bootstrap.clone() {
            let Ok(ma) = b.parse::<Multiaddr>() else {
                continue;
            };
            let opts = DialOpts::unknown_peer_id()
                .address(ma.clone())
                .allocate_new_port()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                warn!("bootstrap {ma}: {e}");
            }
        }
    }

    /// Keeps the network layer in step with the roster: who the gate keeps
    /// connected and lets past the stranger caps, and who may gossip.
    pub(super) fn members_changed(&mut self, members: &BTreeSet<NodeId>, boots: &BTreeSet<NodeId>) {
        let members: BTreeSet<PeerId> = members.iter().filter_map(|m| m.peer_id()).collect();
        let boots: BTreeSet<PeerId> = boots.iter().filter_map(|b| b.peer_id()).collect();
        let connected: Vec<PeerId> = self.node.connected().filter_map(|n| n.peer_id()).collect();
        let b = self.swarm.behaviour_mut();
        b.gate.set_members(members.clone(), boots);
        self.dial_errors.retain(|p, _| members.contains(p));
        for p in &connected {
            net::set_gossip_member(&mut b.gossip, p, members.contains(p));
        }
        // a new member's addresses may not have been written yet
        for p in members {
            if self.book.contains(&p) {
                self.peers_dirty.insert(p);
            }
        }
    }
}
