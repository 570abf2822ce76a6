//! Whom the logs keep connections to: the overlay's log peers. An
//! origin pushes to its replicas and asks them to cosign every witness
//! interval; a replica answers it and gossips with the origin's other
//! replicas. Without them in the overlay, those connections were pruned
//! after half a minute and dialled again a minute later, and counted
//! against no bound. All of them follow from the roster by the same
//! placement every member computes (`replica::placement`), so the
//! relation is symmetric and costs nothing to agree on.

use std::collections::BTreeSet;

use crate::identity::NodeId;
use crate::log::replica::placement;

use super::super::machine::Node;

impl Node {
    /// Recomputes the log peers (on roster changes, and when this node
    /// first keeps something of an origin); refreshes what the overlay
    /// wants if they changed.
    pub(in crate::node) fn logs_peers_changed(&mut self) {
        let me = self.me.id;
        let mut peers = BTreeSet::new();
        if let Some(o) = &self.logs.origin {
            peers.extend(o.tracker.replicas().iter().copied());
        }
        let mut kept: BTreeSet<NodeId> = BTreeSet::new();
        if let Some(s) = &self.logs.store {
            kept.extend(s.origins().copied());
        }
        if let Some(w) = &self.logs.witness {
            kept.extend(w.origins().copied());
        }
        for o in kept {
            if o == me || !self.roster.is_active(&o) {
                continue;
            }
            let replicas = placement::replicas_in(&self.roster, &o, self.logs.origin_replicas);
            if replicas.contains(&me) {
                peers.insert(o);
                peers.extend(replicas.into_iter().filter(|p| *p != me));
            }
        }
        if peers != self.logs.peers {
            self.logs.peers = peers;
            self.refresh_wanted();
        }
    }
}
