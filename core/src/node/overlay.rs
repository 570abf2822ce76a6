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

/// The gossip neighbours of `me` among `members` (which may include it).
/// See [`RingOrder::neighbours`]; this builds the order first.
pub fn ring_neighbours<'a>(
    me: &NodeId,
    members: impl Iterator<Item = &'a NodeId>,
    down: &BTreeMap<NodeId, Millis>,
) -> BTreeSet<NodeId> {
    RingOrder::new(members).neighbours(me, down)
}

/// The active members sorted in each ring's order, by (ring key, id).
/// Every member computes the same order from the same roster, so the
/// roster builds it once per change and shares it
/// (`Roster::member_rings`): a node then finds its neighbours by binary
/// search instead of a pass over every member per ring, which at 5,000
/// members and every node redoing it on each roster change was the
/// largest single cost of a simulated day (13 % of it, 2026-12-04).
#[derive(Debug, Default)]
pub struct RingOrder {
    rings: [Vec<(u64, NodeId)>; RINGS],
}

impl RingOrder {
    pub fn new<'a>(members: impl Iterator<Item = &'a NodeId>) -> RingOrder {
        let ids: BTreeSet<NodeId> = members.copied().collect();
        let rings = std::array::from_fn(|ring| {
            let mut v: Vec<(u64, NodeId)> = ids.iter().map(|m| (ring_key(m, ring), *m)).collect();
            v.sort_unstable();
            v
        });
        RingOrder { rings }
    }

    /// Members, `me` included if it is one.
    pub fn len(&self) -> usize {
        self.rings[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.rings[0].is_empty()
    }

    /// The gossip neighbours of `me`: per ring, the nearest member before
    /// and after it (wrapping around) that is not `down`, the smaller id
    /// first among members at the same distance. Meshes of up to
    /// [`FULL_MESH_UP_TO`] members are fully connected.
    pub fn neighbours(&self, me: &NodeId, down: &BTreeMap<NodeId, Millis>) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        let n = self.len();
        if n <= FULL_MESH_UP_TO {
            // no one to take a down member's place: keep redialling it
            out.extend(self.rings[0].iter().map(|(_, m)| *m).filter(|m| m != me));
            return out;
        }
        let ok = |m: &NodeId| m != me && !down.contains_key(m);
        for (ring, v) in self.rings.iter().enumerate() {
            let k = ring_key(me, ring);
            // after: the first eligible member from the first key >= k on
            let start = v.partition_point(|(mk, _)| *mk < k);
            if let Some((_, m)) = (0..n).map(|i| &v[(start + i) % n]).find(|(_, m)| ok(m)) {
                out.insert(*m);
            }
            // before: walking down from the last key <= k, the first
            // eligible member's key; among members with that key, the
            // smallest eligible id
            let end = v.partition_point(|(mk, _)| *mk <= k);
            let mut pred: Option<(u64, NodeId)> = None;
            for i in 1..=n {
                let (mk, m) = v[(end + n - i) % n];
                match pred {
                    Some((pk, _)) if mk != pk => break,
                    _ if ok(&m) => pred = Some((mk, m)),
                    _ => {}
                }
            }
            out.extend(pred.map(|(_, m)| m));
        }
        out
    }
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
    /// The same members in ring order (shared with every node in the
    /// same roster state).
    order: Arc<RingOrder>,
    me: Option<NodeId>,
    /// Gossip neighbours that could not be reached, since when: skipped,
    /// so the next member around the ring takes their place. After a
    /// whole-mesh outage the few nodes up find each other this way.
    down: BTreeMap<NodeId, Millis>,
}

impl Overlay {
    /// The roster's members changed: recompute the rings; forget
    /// guardians and wards that are no longer members.
    pub fn members_changed(
        &mut self,
        me: NodeId,
        members: Arc<BTreeSet<NodeId>>,
        order: Arc<RingOrder>,
    ) {
        self.members = members;
        self.order = order;
        self.me = Some(me);
        let active = &self.members;
        self.guardians.retain(|g| active.contains(g));
        self.wards.retain(|w| active.contains(w));
        self.down.retain(|d, _| active.contains(d));
        self.rings();
    }

    fn rings(&mut self) {
        if let Some(me) = self.me {
            self.gossip = self.order.neighbours(&me, &self.down);
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

    pub(super) fn changed(o: &mut Overlay, me: NodeId, members: BTreeSet<NodeId>) {
        let order = Arc::new(RingOrder::new(members.iter()));
        o.members_changed(me, Arc::new(members), order);
    }

    /// The neighbours by a pass over every member per ring: what
    /// [`RingOrder::neighbours`] must give.
    fn by_scan(
        me: &NodeId,
        members: &[NodeId],
        down: &BTreeMap<NodeId, Millis>,
    ) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        if members.len() <= FULL_MESH_UP_TO {
            out.extend(members.iter().filter(|m| *m != me));
            return out;
        }
        for ring in 0..RINGS {
            let k = ring_key(me, ring);
            let mut succ: Option<(u64, NodeId)> = None;
            let mut pred: Option<(u64, NodeId)> = None;
            for m in members.iter().filter(|m| *m != me && !down.contains_key(m)) {
                let mk = ring_key(m, ring);
                let (after, before) = (mk.wrapping_sub(k), k.wrapping_sub(mk));
                if succ.is_none_or(|s| (after, *m) < s) {
                    succ = Some((after, *m));
                }
                if pred.is_none_or(|p| (before, *m) < p) {
                    pred = Some((before, *m));
                }
            }
            out.extend(succ.map(|s| s.1));
            out.extend(pred.map(|p| p.1));
        }
        out
    }

    proptest::proptest! {
        /// Binary search over the shared order finds what a scan of every
        /// member finds, with members down, `me` in or out of the set, and
        /// ring keys that collide (ids sharing 8-byte prefixes).
        #[test]
        fn the_ring_order_finds_the_neighbours_a_scan_finds(
            raw in proptest::collection::vec((0u8..4, proptest::prelude::any::<[u8; 32]>()), 1..40),
            down_mask in proptest::prelude::any::<u64>(),
            me_in in proptest::prelude::any::<bool>(),
        ) {
            // a few distinct prefixes, so keys often collide
            let members: Vec<NodeId> = raw
                .iter()
                .map(|(p, b)| {
                    let mut b = *b;
                    // p 0, 1: the same ring keys; p 2: keys 1 apart at most
                    let n = if *p < 2 { 8 } else { 7 };
                    if *p < 3 {
                        for r in 0..RINGS {
                            b[r * 8..r * 8 + n].fill(*p);
                        }
                    }
                    NodeId(b)
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let me = members[0];
            let members: Vec<NodeId> = if me_in { members } else { members[1..].to_vec() };
            let down: BTreeMap<NodeId, Millis> = members
                .iter()
                .enumerate()
                .filter(|(i, _)| down_mask >> (i % 64) & 1 == 1)
                .map(|(_, m)| (*m, 0))
                .collect();
            let order = RingOrder::new(members.iter());
            proptest::prop_assert_eq!(order.neighbours(&me, &down), by_scan(&me, &members, &down));
        }
    }

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
        changed(&mut o, me, all.clone().into_iter().collect());
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
        changed(&mut o, me, rest.into_iter().collect());
        assert!(!o.wants(&far));
        assert!(o.bound() <= 2 * RINGS);
    }
}

#[cfg(test)]
mod down_tests {
    use super::tests::changed;
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
        changed(&mut o, all[2], all.clone().into_iter().collect());
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
        changed(&mut o, all[0], all.into_iter().collect());
        assert_eq!(o.bound(), FULL_MESH_UP_TO - 1);
    }
}
