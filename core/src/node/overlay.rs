//! Whom a node keeps connections to: a small set that does not grow with
//! the mesh.
//!
//! A node needs few peers. Its guardians must see it alive (and see that
//! it is up, for the copied-boot-key rule); it must see its wards, the
//! owners whose shares it holds; and roster operations, lockdowns and
//! alerts must reach every member. So it wants:
//! - its wards (known from the guardian's own state);
//! - its guardians, as they said so: a deposit they acknowledged, or a
//!   sync or held answer listing epochs of ours they hold. Guardians dial
//!   their wards, so an owner that restarted learns them again as they
//!   reconnect; nothing needs to be written;
//! - its gossip neighbours: in each of [`RINGS`] orderings of the active
//!   members, the members just before and after it. Every member computes
//!   the same rings from the same roster, so the relation is symmetric
//!   (no one dials a peer that would close the connection again), costs
//!   nothing to agree on, and the union of a few random rings is a
//!   connected graph of small diameter (an expander with high
//!   probability): gossip crosses 5,000 nodes in a handful of hops.
//!
//! With logs on, it also wants its log peers (see `node::logs`): its
//! own log's replicas, the origins it keeps a replica of, and those
//! origins' other replicas (its fellow witnesses). The relation is
//! symmetric: an origin wants its replicas, a replica wants the origins
//! it holds and the other replicas of them.
//!
//! A neighbour that cannot be reached is skipped for [`DOWN_FOR`] (or
//! until it connects) and the next member around its ring takes its
//! place; meshes of up to [`FULL_MESH_UP_TO`] members are fully connected.
//!
//! Everyone else's connections are closed once they have been up for
//! [`PRUNE_AFTER`] (a request sent to a member outside the set, such as an
//! approval or a drop, dials it and gets its answer first), or
//! [`JOINED_GRACE`] after their peer was admitted if they came up before
//! it was a member.
//!
//! Liveness pings run only to guardians and wards
//! ([`Overlay::liveness`]): a guardian must see its wards alive, and up
//! within `up_window`, for the release policy; an owner sees its
//! guardians answer (its status says when each last did). Gossip
//! neighbours and everyone else are not pinged: nothing reads their
//! liveness.
//!
//! The ring keys are bytes of the node ids (public keys, so random for an
//! honest node). A member that grinds a key to sit next to a target gains
//! one gossip link of the target's six, not a say over what it accepts:
//! every message is signed and checked, and the other rings and the
//! guardian links still carry the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::guardian::Millis;
use crate::identity::NodeId;

/// Orderings of the members; each gives a node two gossip neighbours.
pub const RINGS: usize = 3;
/// Meshes this small are fully connected: every member is a gossip
/// neighbour (no more connections than the rings would give a big mesh,
/// and a rack of eight sees every member directly).
pub const FULL_MESH_UP_TO: usize = 8;
/// How long an unwanted connection may stay up before it is closed.
pub const PRUNE_AFTER: Millis = 30_000;
/// How long a connection that came up before its peer was a member (a
/// joiner's, to its inviter) stays once the peer is admitted, if neither
/// side wants it: the join was answered on it already, and the sync that
/// follows an admission takes well under a second. Holding it
/// [`PRUNE_AFTER`] instead put an inviter of a burst of joins past its
/// connection bound for half a minute.
pub const JOINED_GRACE: Millis = 5_000;
/// How long a gossip neighbour that could not be reached is skipped
/// before it is tried again (it comes back sooner by connecting).
pub const DOWN_FOR: Millis = 600_000;

/// The ring position of `id` in ring `ring`: 8 bytes of the id.
fn ring_key(id: &NodeId, ring: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[ring * 8..ring * 8 + 8]);
    u64::from_be_bytes(b)
}

/// The gossip neighbours of `me` among `members` (which may include it):
/// per ring, the nearest member before and after it (wrapping around)
/// that is not `down`. One pass over the members per ring, no allocation
/// per member.
pub fn ring_neighbours<'a>(
    me: &NodeId,
    members: impl Iterator<Item = &'a NodeId> + Clone,
    down: &BTreeMap<NodeId, Millis>,
) -> BTreeSet<NodeId> {
    let mut out = BTreeSet::new();
    if members.clone().count() <= FULL_MESH_UP_TO {
        // no one to take a down member's place: keep redialling it
        out.extend(members.filter(|m| *m != me));
        return out;
    }
    for ring in 0..RINGS {
        let k = ring_key(me, ring);
        // (distance, id): the nearest after (succ) and before (pred) `me`
        let mut succ: Option<(u64, NodeId)> = None;
        let mut pred: Option<(u64, NodeId)> = None;
        for m in members
            .clone()
            .filter(|m| *m != me && !down.contains_key(m))
        {
            let mk = ring_key(m, ring);
            let after = mk.wrapping_sub(k);
            let before = k.wrapping_sub(mk);
            if succ.is_none_or(|(d, id)| (after, *m) < (d, id)) {
                succ = Some((after, *m));
            }
            if pred.is_none_or(|(d, id)| (before, *m) < (d, id)) {
                pred = Some((before, *m));
            }
        }
        out.extend(succ.map(|s| s.1));
        out.extend(pred.map(|p| p.1));
    }
    out
}

/// This node's wanted peers, and what it learned of its guardians.
#[derive(Debug, Default)]
pub struct Overlay {
    /// Members that said they hold shares of ours.
    guardians: BTreeSet<NodeId>,
    /// Guardians a deposit of ours is on its way to, with how many: kept
    /// while they answer (a bind dials five new guardians at once; they
    /// are guardians from the moment they acknowledge).
    depositing: BTreeMap<NodeId, u32>,
    /// Gossip neighbours from the rings (recomputed on roster changes).
    gossip: BTreeSet<NodeId>,
    /// Owners whose shares this node holds.
    wards: BTreeSet<NodeId>,
    /// Log peers: replicas, origins kept here, fellow witnesses.
    logs: BTreeSet<NodeId>,
    /// Active members, this node included (the rings are recomputed from
    /// them when a neighbour goes down or comes back).
    members: Arc<BTreeSet<NodeId>>,
    me: Option<NodeId>,
    /// Gossip neighbours that could not be reached, since when: skipped,
    /// so the next member around the ring takes their place. After a
    /// whole-mesh outage the few nodes up find each other this way.
    down: BTreeMap<NodeId, Millis>,
}

impl Overlay {
    /// The roster's members changed: recompute the rings; forget
    /// guardians and wards that are no longer members.
    pub fn members_changed(&mut self, me: NodeId, members: Arc<BTreeSet<NodeId>>) {
        self.members = members;
        self.me = Some(me);
        let active = &self.members;
        self.guardians.retain(|g| active.contains(g));
        self.wards.retain(|w| active.contains(w));
        self.down.retain(|d, _| active.contains(d));
        self.rings();
    }

    fn rings(&mut self) {
        if let Some(me) = self.me {
            self.gossip = ring_neighbours(&me, self.members.iter(), &self.down);
        }
    }

    /// Gossip neighbour `n` could not be reached: skip it. True if that
    /// changed the neighbours.
    pub fn neighbour_down(&mut self, n: NodeId, now: Millis) -> bool {
        if self.members.len() <= FULL_MESH_UP_TO
            || !self.gossip.contains(&n)
            || self.down.contains_key(&n)
        {
            return false;
        }
        self.down.insert(n, now);
        self.recompute()
    }

    /// `n` connected: not down any more. True if that changed the
    /// neighbours.
    pub fn up(&mut self, n: &NodeId) -> bool {
        self.down.remove(n).is_some() && self.recompute()
    }

    /// Neighbours skipped for [`DOWN_FOR`] are tried again. True if that
    /// changed the neighbours.
    pub fn retry_down(&mut self, now: Millis) -> bool {
        let before = self.down.len();
        self.down
            .retain(|_, since| now.saturating_sub(*since) < DOWN_FOR);
        self.down.len() != before && self.recompute()
    }

    /// The rings again, after `down` changed: true if the neighbours did.
    fn recompute(&mut self) -> bool {
        let was = std::mem::take(&mut self.gossip);
        self.rings();
        was != self.gossip
    }

    /// The gossip neighbours now.
    pub fn gossip(&self) -> impl Iterator<Item = &NodeId> {
        self.gossip.iter()
    }

    /// The owners whose shares this node holds now.
    pub fn set_wards(&mut self, wards: impl IntoIterator<Item = NodeId>) {
        self.wards = wards.into_iter().collect();
    }

    /// The log peers now (`node::logs`).
    pub fn set_logs(&mut self, peers: BTreeSet<NodeId>) {
        self.logs = peers;
    }

    pub fn is_log_peer(&self, n: &NodeId) -> bool {
        self.logs.contains(n)
    }

    /// `g` said whether it holds shares of ours. True if that changed
    /// what this node wants.
    pub fn guardian_says(&mut self, g: NodeId, holds: bool) -> bool {
        if holds {
            self.guardians.insert(g)
        } else {
            self.guardians.remove(&g)
        }
    }

    /// A deposit to `g` was sent (`true`) or answered (`false`). True if
    /// that changed what this node wants.
    pub fn depositing(&mut self, g: NodeId, sent: bool) -> bool {
        let was = self.wants(&g);
        if sent {
            *self.depositing.entry(g).or_default() += 1;
        } else if let Some(n) = self.depositing.get_mut(&g) {
            *n -= 1;
            if *n == 0 {
                self.depositing.remove(&g);
            }
        }
        was != self.wants(&g)
    }

    pub fn is_guardian(&self, n: &NodeId) -> bool {
        self.guardians.contains(n)
    }

    pub fn is_ward(&self, n: &NodeId) -> bool {
        self.wards.contains(n)
    }

    /// A gossip neighbour this node could not reach (skipped for now).
    pub fn is_down(&self, n: &NodeId) -> bool {
        self.down.contains_key(n)
    }

    pub fn is_gossip(&self, n: &NodeId) -> bool {
        self.gossip.contains(n)
    }

    /// Whether connections to `n` are pinged: a guardian of ours or a
    /// ward (see [`Overlay::liveness`]).
    pub fn needs_liveness(&self, n: &NodeId) -> bool {
        self.is_guardian(n) || self.is_ward(n)
    }

    /// The peers whose liveness this node follows, so the transport pings
    /// them and no one else: its wards (the release policy needs each
    /// ward seen alive within `timeout`, and seen up within `up_window`
    /// for the copied-boot-key rule) and its guardians (an owner's status
    /// says when each last answered). A guardian a deposit is still on
    /// its way to is not one yet.
    pub fn liveness(&self) -> BTreeSet<NodeId> {
        self.guardians.union(&self.wards).copied().collect()
    }

    /// Whether this node keeps a connection to `n`.
    pub fn wants(&self, n: &NodeId) -> bool {
        self.is_guardian(n)
            || self.depositing.contains_key(n)
            || self.is_ward(n)
            || self.is_gossip(n)
            || self.is_log_peer(n)
    }

    /// Everyone this node keeps connections to.
    pub fn wanted(&self) -> BTreeSet<NodeId> {
        self.guardians
            .iter()
            .chain(self.depositing.keys())
            .chain(&self.wards)
            .chain(&self.gossip)
            .chain(&self.logs)
            .copied()
            .collect()
    }

    /// The connection bound for this node now: its wanted peers, and the
    /// peers that may want it (the same set: every relation is symmetric).
    pub fn bound(&self) -> usize {
        self.wanted().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn ids(n: usize, seed: u64) -> Vec<NodeId> {
        use rand::{RngCore, SeedableRng};
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut b = [0u8; 32];
                r.fill_bytes(&mut b);
                NodeId(b)
            })
            .collect()
    }

    #[test]
    fn neighbours_are_symmetric_bounded_and_connect_everyone_in_few_hops() {
        for n in [2usize, 3, 7, 50, 500, 2000] {
            let all = ids(n, n as u64);
            let nb: BTreeMap<NodeId, BTreeSet<NodeId>> = all
                .iter()
                .map(|m| (*m, ring_neighbours(m, all.iter(), &BTreeMap::new())))
                .collect();
            for (m, set) in &nb {
                assert!(set.len() <= 2 * RINGS, "{n}: {}", set.len());
                assert!(!set.contains(m));
                for o in set {
                    assert!(nb[o].contains(m), "{n}: not symmetric");
                }
            }
            // breadth-first from the first: everyone, in few hops
            let mut depth = BTreeMap::from([(all[0], 0u32)]);
            let mut q = VecDeque::from([all[0]]);
            while let Some(x) = q.pop_front() {
                let d = depth[&x];
                for y in &nb[&x] {
                    if !depth.contains_key(y) {
                        depth.insert(*y, d + 1);
                        q.push_back(*y);
                    }
                }
            }
            assert_eq!(depth.len(), n, "{n}: connected");
            let diameter = depth.values().max().copied().unwrap_or(0);
            assert!(diameter <= 12, "{n} nodes: {diameter} hops");
        }
    }

    #[test]
    fn a_single_member_has_no_neighbours_and_two_see_each_other() {
        let all = ids(2, 9);
        assert!(ring_neighbours(&all[0], all[..1].iter(), &BTreeMap::new()).is_empty());
        assert_eq!(
            ring_neighbours(&all[0], all.iter(), &BTreeMap::new()),
            BTreeSet::from([all[1]])
        );
    }

    #[test]
    fn guardians_and_wards_are_wanted_until_they_leave() {
        let all = ids(40, 1);
        let me = all[0];
        let mut o = Overlay::default();
        o.members_changed(me, Arc::new(all.clone().into_iter().collect()));
        let far = *all[1..].iter().find(|x| !o.is_gossip(x)).unwrap();
        assert!(!o.wants(&far));
        assert!(o.guardian_says(far, true));
        assert!(!o.guardian_says(far, true), "no change");
        assert!(o.wants(&far));
        assert!(o.guardian_says(far, false));
        assert!(!o.wants(&far));
        o.set_wards([far]);
        assert!(o.wants(&far));
        // revoked: neither guardian nor ward any more
        o.guardian_says(far, true);
        let rest: Vec<NodeId> = all.iter().copied().filter(|x| *x != far).collect();
        o.members_changed(me, Arc::new(rest.into_iter().collect()));
        assert!(!o.wants(&far));
        assert!(o.bound() <= 2 * RINGS);
    }
}

#[cfg(test)]
mod down_tests {
    use super::*;

    fn id(i: u8, key: u64) -> NodeId {
        let mut b = [i; 32];
        for r in 0..RINGS {
            b[r * 8..r * 8 + 8].copy_from_slice(&key.to_be_bytes());
        }
        NodeId(b)
    }

    #[test]
    fn a_neighbour_that_is_down_is_skipped_until_it_connects_or_its_time_is_up() {
        // one ring order for all: 0 < 1 < ... < 11 (keys 10..120)
        let all: Vec<NodeId> = (0..12u8).map(|i| id(i, 10 * (u64::from(i) + 1))).collect();
        let mut o = Overlay::default();
        o.members_changed(all[2], Arc::new(all.clone().into_iter().collect()));
        let set = |o: &Overlay| o.gossip().copied().collect::<BTreeSet<_>>();
        assert_eq!(set(&o), BTreeSet::from([all[1], all[3]]));
        assert!(o.neighbour_down(all[3], 1000));
        assert_eq!(set(&o), BTreeSet::from([all[1], all[4]]), "3 skipped");
        assert!(!o.neighbour_down(all[9], 1000), "not a neighbour");
        assert!(o.neighbour_down(all[1], 1000));
        assert_eq!(set(&o), BTreeSet::from([all[0], all[4]]));
        assert!(o.neighbour_down(all[0], 1000));
        // around the ring: before 0 comes 11
        assert_eq!(set(&o), BTreeSet::from([all[11], all[4]]));
        assert!(o.up(&all[1]), "1 connected");
        assert!(o.neighbour_down(all[4], 1000));
        assert_eq!(set(&o), BTreeSet::from([all[1], all[5]]));
        assert!(o.up(&all[3]), "3 connected");
        assert_eq!(set(&o), BTreeSet::from([all[1], all[3]]));
        assert!(!o.retry_down(1000 + DOWN_FOR - 1));
        assert!(
            !o.retry_down(1000 + DOWN_FOR),
            "0 and 4 back, but 1 and 3 are nearer"
        );
        assert!(o.down.is_empty());
    }

    #[test]
    fn a_small_mesh_is_fully_connected() {
        let all: Vec<NodeId> = (0..FULL_MESH_UP_TO as u8)
            .map(|i| id(i, u64::from(i)))
            .collect();
        let mut o = Overlay::default();
        o.members_changed(all[0], Arc::new(all.into_iter().collect()));
        assert_eq!(o.bound(), FULL_MESH_UP_TO - 1);
    }
}
