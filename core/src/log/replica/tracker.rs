//! The origin side: which peers replicate this node's log, what each says
//! it holds, and what to push to each next.
//!
//! Catch-up is by index: a replica's [`Held`] (or its [`Ask`], or the size
//! in a [`Refused`]) says where it stands and the next push starts there,
//! however long it was away; nothing it holds is sent again. One push is
//! in flight per replica (the next waits for its answer, or for
//! [`ReplicationTracker::lost`] when the driver gives up on it).
//!
//! A replica's `Held` comes after its writes are durable, so
//! [`ReplicationTracker::replicated_size`] (the size R replicas hold) is
//! what an `ack = "replicated"` source waits for.
//!
//! When the roster changes, [`ReplicationTracker::set_members`] chooses
//! again ([`super::placement`]): replicas that stay keep their state, a new
//! one starts unknown and is probed (an empty push) so it says what it
//! holds, and one that left no longer counts.

use std::collections::BTreeMap;
use std::ops::Range;

use super::placement::replicas_for;
use super::wire::{Ask, Held, Refused, RefusedCode, MAX_BATCH};
use crate::identity::NodeId;
use crate::roster::Member;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Peer {
    /// What it said it holds; None until it answers.
    held: Option<u64>,
    /// How much of it is known to be this log as it is now: the largest
    /// checkpoint of this run a push carried and the replica's tree
    /// matched (`Held::matches`). Only that counts as replicated.
    confirmed: u64,
    in_flight: Option<Range<u64>>,
    /// It refused for its quota: (used, quota). Cleared when it answers
    /// again or the driver retries ([`ReplicationTracker::lost`]).
    full: Option<(u64, u64)>,
    /// The checkpoint size the last push to it carried: a replica that
    /// holds every leaf but has not seen the checkpoint covering them gets
    /// it in a probe, so it can check the root of what it holds.
    cp_sent: u64,
}

/// Something the origin should report about a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The replica's quota for this origin is full: the origin's lines
    /// are not replicated there until it frees room.
    Full { peer: NodeId, used: u64, quota: u64 },
    /// The replica refused a push as invalid or as evidence against this
    /// node: a bug, or this node's key is being misused.
    Refused { peer: NodeId, detail: String },
}

/// Replicas of this node's log and what they hold.
#[derive(Clone, Debug)]
pub struct ReplicationTracker {
    origin: NodeId,
    r: usize,
    replicas: Vec<NodeId>,
    peers: BTreeMap<NodeId, Peer>,
    /// Leaves covered by this node's durable checkpoint: what may be
    /// pushed.
    size: u64,
    /// The highest replicated size reported so far.
    reported: u64,
}

impl ReplicationTracker {
    /// A tracker for `origin`'s log, with `r` replicas wanted (and none
    /// chosen until [`ReplicationTracker::set_members`]).
    pub fn new(origin: NodeId, r: usize) -> Self {
        ReplicationTracker {
            origin,
            r,
            replicas: Vec::new(),
            peers: BTreeMap::new(),
            size: 0,
            reported: 0,
        }
    }

    /// Chooses the replicas among the roster's active members again.
    /// Returns the peers added and the peers dropped.
    pub fn set_members<'a>(
        &mut self,
        members: impl IntoIterator<Item = &'a Member>,
    ) -> (Vec<NodeId>, Vec<NodeId>) {
        let chosen = replicas_for(&self.origin, members, self.r);
        self.set_replicas(chosen)
    }

    /// Sets the replicas (as [`replicas_for`] chose them).
    pub fn set_replicas(&mut self, chosen: Vec<NodeId>) -> (Vec<NodeId>, Vec<NodeId>) {
        let added: Vec<NodeId> = chosen
            .iter()
            .filter(|p| !self.replicas.contains(p))
            .copied()
            .collect();
        let dropped: Vec<NodeId> = self
            .replicas
            .iter()
            .filter(|p| !chosen.contains(p))
            .copied()
            .collect();
        for p in &dropped {
            self.peers.remove(p);
        }
        for p in &added {
            self.peers.insert(*p, Peer::default());
        }
        self.replicas = chosen;
        (added, dropped)
    }

    /// The current replicas, highest rank first.
    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    /// What `peer` said it holds, if it is a replica that answered.
    pub fn held_by(&self, peer: &NodeId) -> Option<u64> {
        self.peers.get(peer).and_then(|p| p.held)
    }

    /// This node's checkpoint now covers `size` leaves (durable): they
    /// may be pushed.
    pub fn checkpointed(&mut self, size: u64) {
        self.size = self.size.max(size);
    }

    /// The range of leaf indices to push to `peer` next (at most
    /// [`MAX_BATCH`]; the driver may pack fewer, see
    /// [`super::wire::Push::pack`], and reports what it sent with
    /// [`ReplicationTracker::sent`]). An empty range is a probe: a push of
    /// no segment, with the checkpoint, that the replica answers with what
    /// it holds, and what carries a newer checkpoint to a replica that
    /// holds every leaf already. None: nothing to send now (up to date, a
    /// push in flight, its quota full, or not a replica).
    pub fn next_push(&self, peer: &NodeId) -> Option<Range<u64>> {
        let p = self.peers.get(peer)?;
        if p.in_flight.is_some() || p.full.is_some() {
            return None;
        }
        match p.held {
            None => Some(0..0),
            Some(h) if h < self.size => Some(h..self.size.min(h.saturating_add(MAX_BATCH as u64))),
            Some(h) if p.cp_sent < self.size => Some(h..h),
            Some(_) => None,
        }
    }

    /// A push of `range`, with the checkpoint of the size given to
    /// [`ReplicationTracker::checkpointed`] last, went to `peer`.
    pub fn sent(&mut self, peer: &NodeId, range: Range<u64>) {
        let size = self.size;
        if let Some(p) = self.peers.get_mut(peer) {
            p.in_flight = Some(range);
            p.cp_sent = size;
        }
    }

    /// The push to `peer` got no answer (connection lost, timed out, or
    /// the driver retries a full replica): it may be sent again.
    pub fn lost(&mut self, peer: &NodeId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.in_flight = None;
            p.full = None;
        }
    }

    fn set_held(&mut self, peer: &NodeId, size: u64) {
        let cap = self.size;
        if let Some(p) = self.peers.get_mut(peer) {
            // A replica cannot hold more than this node checkpointed; a
            // smaller size than before (a replica that lost its disk) is
            // believed: the next push starts there.
            p.held = Some(size.min(cap));
            p.in_flight = None;
        }
    }

    /// `peer` holds `held.size` leaves. Returns the indices that became
    /// replicated (held by R replicas) with it, for acks and for the
    /// spool's `drop-oldest-replicated` ([`super::super::spool::Spool::replicated`]).
    pub fn on_held(&mut self, peer: &NodeId, held: &Held) -> Option<Range<u64>> {
        if held.origin != self.origin {
            return None;
        }
        self.set_held(peer, held.size);
        let cap = self.size;
        if let Some(p) = self.peers.get_mut(peer) {
            p.full = None;
            p.confirmed = p.confirmed.max(held.matches.min(cap));
        }
        self.newly_replicated()
    }

    /// `peer` asks to catch up from an index.
    pub fn on_ask(&mut self, peer: &NodeId, ask: &Ask) {
        if ask.origin == self.origin {
            self.set_held(peer, ask.from_index);
        }
    }

    /// `peer` refused a push: what to report, if anything.
    pub fn on_refused(&mut self, peer: &NodeId, r: &Refused) -> Option<Problem> {
        if r.origin != self.origin || !self.peers.contains_key(peer) {
            return None;
        }
        match r.code {
            RefusedCode::Gap | RefusedCode::Full { .. } => self.set_held(peer, r.size),
            // It took none of the push because it is not genuine or not
            // on the history it holds (this node was restored from an old
            // backup, or its log forked): what it holds is not this log,
            // so its size counts for nothing. Counting it acknowledged
            // the new history's lines as replicated while no replica held
            // them (the simulator's logs scenario found it).
            RefusedCode::Invalid | RefusedCode::Evidence => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.in_flight = None;
                }
            }
        }
        match r.code {
            RefusedCode::Gap => None,
            RefusedCode::Full { used, quota } => {
                if let Some(p) = self.peers.get_mut(peer) {
                    p.full = Some((used, quota));
                }
                Some(Problem::Full {
                    peer: *peer,
                    used,
                    quota,
                })
            }
            RefusedCode::Invalid | RefusedCode::Evidence => Some(Problem::Refused {
                peer: *peer,
                detail: r.detail.clone(),
            }),
        }
    }

    /// The size the R replicas hold: every leaf under it is on R peers'
    /// disks besides this node's, and each of them matched a checkpoint
    /// of this log as it is now (`Held::matches`), so a replica holding
    /// another history of this node's key (it was restored from an old
    /// backup) never counts. With fewer eligible peers than R, all
    /// of them must hold it; with none, 0 (nothing is ever replicated: an
    /// `ack = "replicated"` source waits, and says why in the status).
    pub fn replicated_size(&self) -> u64 {
        let k = self.r.min(self.replicas.len());
        if k == 0 {
            return 0;
        }
        let mut held: Vec<u64> = self
            .replicas
            .iter()
            .map(|p| {
                self.peers
                    .get(p)
                    .map_or(0, |x| x.held.unwrap_or(0).min(x.confirmed))
            })
            .collect();
        held.sort_unstable_by(|a, b| b.cmp(a));
        held[k - 1]
    }

    fn newly_replicated(&mut self) -> Option<Range<u64>> {
        let now = self.replicated_size();
        if now > self.reported {
            let r = self.reported..now;
            self.reported = now;
            Some(r)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 32])
    }

    fn held(size: u64) -> Held {
        Held {
            origin: id(0),
            size,
            matches: size,
        }
    }

    #[test]
    fn pushes_by_index_and_counts_r_copies() {
        let mut t = ReplicationTracker::new(id(0), 2);
        t.set_replicas(vec![id(1), id(2), id(3)]);
        t.checkpointed(1000);
        // unknown: probe first
        assert_eq!(t.next_push(&id(1)), Some(0..0));
        assert_eq!(t.next_push(&id(9)), None);
        t.sent(&id(1), 0..0);
        assert_eq!(t.next_push(&id(1)), None);
        assert_eq!(t.on_held(&id(1), &held(700)), None);
        // catch-up starts at what it holds, one batch at a time
        assert_eq!(t.next_push(&id(1)), Some(700..700 + MAX_BATCH as u64));
        assert_eq!(t.on_held(&id(2), &held(500)), Some(0..500));
        assert_eq!(t.replicated_size(), 500);
        assert_eq!(t.on_held(&id(3), &held(1000)), Some(500..700));
        // it holds everything but never got the checkpoint: a probe
        assert_eq!(t.next_push(&id(3)), Some(1000..1000));
        t.sent(&id(3), 1000..1000);
        t.on_held(&id(3), &held(1000));
        assert_eq!(t.next_push(&id(3)), None);
        t.on_ask(
            &id(2),
            &Ask {
                origin: id(0),
                from_index: 300,
            },
        );
        assert_eq!(t.next_push(&id(2)), Some(300..556));
        // a replica cannot claim more than was checkpointed
        t.on_held(&id(1), &held(5000));
        assert_eq!(t.held_by(&id(1)), Some(1000));
        assert_eq!(t.replicated_size(), 1000);
        // another origin's answer is ignored
        assert_eq!(
            t.on_held(
                &id(2),
                &Held {
                    origin: id(7),
                    size: 1000,
                    matches: 1000
                }
            ),
            None
        );
    }

    #[test]
    fn rechoice_resets_only_the_newcomer() {
        let mut t = ReplicationTracker::new(id(0), 2);
        t.set_replicas(vec![id(1), id(2)]);
        t.checkpointed(10);
        t.on_held(&id(1), &held(10));
        t.on_held(&id(2), &held(10));
        assert_eq!(t.replicated_size(), 10);
        let (added, dropped) = t.set_replicas(vec![id(1), id(3)]);
        assert_eq!((added, dropped), (vec![id(3)], vec![id(2)]));
        assert_eq!(t.held_by(&id(1)), Some(10));
        assert_eq!(t.held_by(&id(3)), None);
        assert_eq!(t.next_push(&id(3)), Some(0..0));
        assert_eq!(t.replicated_size(), 0);
        // the newcomer says what it holds; only the rest is pushed
        t.on_held(&id(3), &held(4));
        assert_eq!(t.next_push(&id(3)), Some(4..10));
    }

    #[test]
    fn full_and_refusals_are_reported() {
        let mut t = ReplicationTracker::new(id(0), 1);
        t.set_replicas(vec![id(1)]);
        t.checkpointed(10);
        let r = Refused::new(id(0), 3, RefusedCode::Full { used: 9, quota: 10 }, "full");
        assert_eq!(
            t.on_refused(&id(1), &r),
            Some(Problem::Full {
                peer: id(1),
                used: 9,
                quota: 10
            })
        );
        assert_eq!(t.next_push(&id(1)), None);
        t.lost(&id(1));
        assert_eq!(t.next_push(&id(1)), Some(3..10));
        let r = Refused::new(id(0), 2, RefusedCode::Gap, "gap");
        assert_eq!(t.on_refused(&id(1), &r), None);
        assert_eq!(t.next_push(&id(1)), Some(2..10));
        let r = Refused::new(id(0), 2, RefusedCode::Evidence, "fork");
        assert!(matches!(
            t.on_refused(&id(1), &r),
            Some(Problem::Refused { .. })
        ));
    }

    /// A replica that holds leaves but never matched a checkpoint of this
    /// run (a probe's checkpoint ran ahead of what it holds, or it holds
    /// another history) drives what to push but counts for nothing yet.
    #[test]
    fn only_leaves_matched_to_a_checkpoint_of_this_log_count() {
        let mut t = ReplicationTracker::new(id(0), 1);
        t.set_replicas(vec![id(1)]);
        t.checkpointed(120);
        let h = Held {
            origin: id(0),
            size: 96,
            matches: 0,
        };
        assert_eq!(t.on_held(&id(1), &h), None);
        assert_eq!(t.held_by(&id(1)), Some(96));
        assert_eq!(t.next_push(&id(1)), Some(96..120));
        assert_eq!(t.replicated_size(), 0);
        // the push up to the checkpoint matched: all of it counts
        t.sent(&id(1), 96..120);
        let h = Held {
            origin: id(0),
            size: 120,
            matches: 120,
        };
        assert_eq!(t.on_held(&id(1), &h), Some(0..120));
    }

    /// An origin restored from an old backup: its replicas hold another
    /// history (larger than what it logged since), and refuse its pushes
    /// with evidence. What they hold counts for nothing, now or as its
    /// new log grows past their size: no new line is taken as replicated.
    #[test]
    fn a_replica_refusing_with_evidence_holds_nothing_of_this_log() {
        let mut t = ReplicationTracker::new(id(0), 1);
        t.set_replicas(vec![id(1)]);
        t.checkpointed(50);
        let r = Refused::new(id(0), 96, RefusedCode::Evidence, "rollback");
        assert!(t.on_refused(&id(1), &r).is_some());
        assert_eq!(t.held_by(&id(1)), None);
        assert_eq!(t.replicated_size(), 0);
        t.checkpointed(120);
        let r = Refused::new(id(0), 96, RefusedCode::Evidence, "fork");
        t.on_refused(&id(1), &r);
        assert_eq!(t.replicated_size(), 0);
        let r = Refused::new(id(0), 96, RefusedCode::Invalid, "not genuine");
        t.on_refused(&id(1), &r);
        assert_eq!(t.replicated_size(), 0);
    }

    #[test]
    fn fewer_peers_than_r_need_all_of_them() {
        let mut t = ReplicationTracker::new(id(0), 3);
        assert_eq!(t.replicated_size(), 0);
        t.set_replicas(vec![id(1)]);
        t.checkpointed(5);
        t.on_held(&id(1), &held(5));
        assert_eq!(t.replicated_size(), 5);
    }
}
