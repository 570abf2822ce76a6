//! The driver's side of alerts and strangers: which connection a share
//! request came on, the gate's refusals in the journal, and the strangers
//! part of `keyward status`. What is believed and counted is decided in
//! `keyward_core::node::{admin, decisions}`.

use libp2p::PeerId;
use tracing::warn;

use super::{now_ms, Daemon};
use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::peer::PeerIds;

impl Daemon {
    /// Whether a share request came over a connection authenticated by
    /// the owner's boot key.
    pub(super) fn is_owners_boot_key(&self, owner: &NodeId, peer: Option<&PeerId>) -> bool {
        let boot = self.roster.member(owner).and_then(|m| m.boot.peer_id());
        peer.is_some_and(|p| boot.as_ref() == Some(p))
    }

    /// A connection the gate or the connection limits refused.
    pub(super) fn connection_refused(
        &mut self,
        from: &libp2p::Multiaddr,
        cause: &libp2p::swarm::ConnectionDenied,
    ) {
        if let Some(more) = self.decisions.connection_refused(now_ms()) {
            warn!(
                "connection from {from} refused: {cause} ({more} more refused since the last line)"
            );
        }
    }

    pub(super) fn strangers_status(&self, now: Millis) -> crate::control::StrangersStatus {
        let s = self.decisions.strangers();
        let gate = &self.swarm.behaviour().gate;
        crate::control::StrangersStatus {
            refused_requests: s.refused,
            last_refused_ms_ago: (s.refused > 0).then(|| now.saturating_sub(s.last_at)),
            last_rule: (s.refused > 0).then(|| s.last_rule.clone()),
            // the owner the last such request named, as decisions name it
            last_owner: s.last_owner.map(|o| {
                self.roster
                    .member(&o)
                    .map(|m| m.name.clone())
                    .unwrap_or_else(|| o.to_string())
            }),
            connections: gate.strangers(),
            refused_connections: gate.refused(),
        }
    }
}
