//! Keeping the network layer in step with the roster: who the gate keeps
//! connected and lets past the stranger caps, and who may gossip with us.

use std::collections::BTreeSet;

use libp2p::PeerId;

use super::Daemon;
use crate::net;
use crate::peer::PeerIds;

impl Daemon {
    /// Called at start and after every roster change.
    pub(super) fn members_changed(&mut self) {
        let members: BTreeSet<PeerId> = self
            .roster
            .members()
            .filter_map(|m| m.id.peer_id())
            .collect();
        let boots: BTreeSet<PeerId> = self
            .roster
            .members()
            .filter_map(|m| m.boot.peer_id())
            .collect();
        let b = self.swarm.behaviour_mut();
        b.gate.set_members(members.clone(), boots);
        for p in self.peers.iter_connected() {
            net::set_gossip_member(&mut b.gossip, p, members.contains(p));
        }
        // a new member's addresses may not have been written yet
        for p in members {
            if self.book.contains(&p) {
                self.peers_dirty.insert(p);
            }
        }
    }

    /// Gossip is between members only: gossipsub already ignores
    /// non-members (their score is below its graylist threshold); this
    /// also refuses a message a member relays from a non-member author.
    pub(super) fn gossip_from_members(&self, via: &PeerId, m: &libp2p::gossipsub::Message) -> bool {
        let ok =
            self.is_member_peer(via) && m.source.as_ref().is_some_and(|a| self.is_member_peer(a));
        if !ok {
            tracing::debug!(via = %via, author = ?m.source, "gossip from a non-member ignored");
        }
        ok
    }
}
