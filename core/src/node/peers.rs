//! Connections as the node sees them: who is connected, who said goodbye
//! on its connection, when to redial a member or the bootstrap addresses
//! (exponential backoff), and strikes and bans for peers that send bad
//! messages.
//!
//! Generic over the peer's key; [`super::Node`] keys peers by node id
//! (a member's node key, or a boot key).

use std::collections::{BTreeMap, BTreeSet};

use crate::guardian::Millis;
use crate::identity::NodeId;

/// Strikes before a misbehaving peer is disconnected.
pub const MAX_STRIKES: u32 = 5;
/// How long a peer cut off for bad messages is refused.
pub const BAN: Millis = 60_000;
/// Redial of a member: first after this long, doubling up to `REDIAL_MAX`.
pub const REDIAL_MIN: Millis = 1000;
pub const REDIAL_MAX: Millis = 32_000;
/// Redial of the bootstrap addresses while no member is connected.
pub const BOOTSTRAP_MIN: Millis = 2000;
pub const BOOTSTRAP_MAX: Millis = 64_000;

/// What a strike did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// Counted: this many strikes now.
    Counted(u32),
    /// The last strike: disconnect the peer; it is refused for [`BAN`].
    Banned,
}

/// The node's view of its connections.
#[derive(Debug)]
pub struct Peers<P: Ord + Clone> {
    connected: BTreeSet<P>,
    /// When each connected peer's (first) connection came up.
    since: BTreeMap<P, Millis>,
    /// Peers that said goodbye on their current connection: a ping answer
    /// still in flight must not make them look up again.
    said_bye: BTreeSet<P>,
    last_seen: BTreeMap<NodeId, Millis>,
    /// Per member: (next redial, delay after it).
    backoff: BTreeMap<P, (Millis, Millis)>,
    /// Whom to keep connected (the node's wanted members).
    members: BTreeSet<P>,
    /// Members not connected, by when to look at them again, so a
    /// reconnect tick costs the redials that are due, not a walk over the
    /// whole mesh (1000 members, every second).
    due: BTreeSet<(Millis, P)>,
    queued: BTreeMap<P, Millis>,
    bootstrap: (Millis, Millis),
    strikes: BTreeMap<P, u32>,
    banned: BTreeMap<P, Millis>,
}

impl<P: Ord + Clone> Default for Peers<P> {
    fn default() -> Self {
        Peers {
            connected: BTreeSet::new(),
            since: BTreeMap::new(),
            said_bye: BTreeSet::new(),
            last_seen: BTreeMap::new(),
            backoff: BTreeMap::new(),
            members: BTreeSet::new(),
            due: BTreeSet::new(),
            queued: BTreeMap::new(),
            bootstrap: (0, BOOTSTRAP_MIN),
            strikes: BTreeMap::new(),
            banned: BTreeMap::new(),
        }
    }
}

impl<P: Ord + Clone> Peers<P> {
    /// A connection to `p` is up. False if `p` is banned: the driver
    /// closes it again.
    pub fn connected(&mut self, p: P, now: Millis) -> bool {
        if self.is_banned(&p, now) {
            return false;
        }
        self.backoff.remove(&p);
        self.unqueue(&p);
        self.said_bye.remove(&p);
        self.since.entry(p.clone()).or_insert(now);
        self.connected.insert(p);
        true
    }

    /// The last connection to `p` closed. Not a sign of going down:
    /// anyone on the path can reset a TCP connection; only a signed
    /// goodbye is.
    pub fn closed(&mut self, p: &P) {
        self.since.remove(p);
        if self.connected.remove(p) && self.members.contains(p) {
            self.queue(p.clone(), 0);
        }
    }

    /// The members to keep connected changed (the node's overlay): those
    /// not connected are dialled as their backoff allows; the others are
    /// no longer.
    pub fn set_members(&mut self, members: impl IntoIterator<Item = P>) {
        self.members = members.into_iter().collect();
        let gone: Vec<P> = self
            .queued
            .keys()
            .filter(|p| !self.members.contains(*p))
            .cloned()
            .collect();
        for p in gone {
            self.unqueue(&p);
        }
        let fresh: Vec<P> = self
            .members
            .iter()
            .filter(|p| !self.connected.contains(*p) && !self.queued.contains_key(*p))
            .cloned()
            .collect();
        for p in fresh {
            let at = self.backoff.get(&p).map_or(0, |b| b.0);
            self.queue(p, at);
        }
    }

    fn queue(&mut self, p: P, at: Millis) {
        self.unqueue(&p);
        self.due.insert((at, p.clone()));
        self.queued.insert(p, at);
    }

    fn unqueue(&mut self, p: &P) {
        if let Some(at) = self.queued.remove(p) {
            self.due.remove(&(at, p.clone()));
        }
    }

    pub fn is_connected(&self, p: &P) -> bool {
        self.connected.contains(p)
    }

    /// When the connection to `p` came up (None: not connected).
    pub fn connected_since(&self, p: &P) -> Option<Millis> {
        self.since.get(p).copied()
    }

    pub fn iter_connected(&self) -> impl Iterator<Item = &P> {
        self.connected.iter()
    }

    /// How many peers are connected.
    pub fn connected_count(&self) -> usize {
        self.connected.len()
    }

    pub fn is_banned(&self, p: &P, now: Millis) -> bool {
        self.banned.get(p).is_some_and(|until| *until > now)
    }

    /// `p` said a signed goodbye on its current connection.
    pub fn said_bye(&mut self, p: P) {
        self.said_bye.insert(p);
    }

    /// `p` (node `node`) showed it is alive (connected, answered a ping).
    /// True if that counts: not after its goodbye on this connection, and
    /// only for members.
    pub fn alive(&mut self, p: &P, node: NodeId, member: bool, now: Millis) -> bool {
        if self.said_bye.contains(p) || !member {
            return false;
        }
        self.last_seen.insert(node, now);
        true
    }

    pub fn last_seen(&self, n: &NodeId) -> Option<Millis> {
        self.last_seen.get(n).copied()
    }

    /// A bad message from `p`.
    pub fn strike(&mut self, p: P, now: Millis) -> Strike {
        let n = self.strikes.entry(p.clone()).or_default();
        *n += 1;
        if *n < MAX_STRIKES {
            return Strike::Counted(*n);
        }
        self.strikes.remove(&p);
        self.banned.insert(p, now + BAN);
        Strike::Banned
    }

    /// Strikes fade, one a minute per peer (the driver calls this every
    /// minute), so a peer must keep misbehaving to be cut off; bans end.
    pub fn fade(&mut self, now: Millis) {
        self.strikes.retain(|_, n| {
            *n = n.saturating_sub(1);
            *n > 0
        });
        self.banned.retain(|_, until| *until > now);
    }

    /// `p` was dialled four times over seven seconds and is not
    /// connected: unreachable for now. Not sooner: the daemons of a rack
    /// that boots together come up seconds apart, and a neighbour marked
    /// down only because it started later would send its replacements
    /// connections it does not need.
    pub fn failing(&self, p: &P) -> bool {
        !self.connected.contains(p)
            && self
                .backoff
                .get(p)
                .is_some_and(|(_, delay)| *delay >= 16 * REDIAL_MIN)
    }

    /// The driver could not dial `p`: it knows no address of it. That
    /// dial does not count (a member unknown here is not unreachable: a
    /// neighbour skipped for it would not skip us, and the member that
    /// takes its place would prune us); it is tried again after
    /// [`REDIAL_MIN`].
    pub fn no_address(&mut self, p: &P, now: Millis) {
        if self.connected.contains(p) || !self.members.contains(p) {
            return;
        }
        self.backoff
            .insert(p.clone(), (now + REDIAL_MIN, REDIAL_MIN));
        self.queue(p.clone(), now + REDIAL_MIN);
    }

    /// The members to dial now: not connected and past their backoff
    /// (1 s, doubling to 32 s).
    pub fn redials(&mut self, now: Millis) -> Vec<P> {
        let mut out = vec![];
        while let Some((at, p)) = self.due.first().cloned() {
            if at > now {
                break;
            }
            self.unqueue(&p);
            if self.connected.contains(&p) || !self.members.contains(&p) {
                continue;
            }
            let (next, delay) = self.backoff.get(&p).copied().unwrap_or((0, REDIAL_MIN));
            if now < next {
                self.queue(p, next);
                continue;
            }
            self.backoff
                .insert(p.clone(), (now + delay, (delay * 2).min(REDIAL_MAX)));
            self.queue(p.clone(), now + delay);
            out.push(p);
        }
        out
    }

    /// When [`Peers::redials`] next has work to do.
    pub fn next_redial(&self) -> Option<Millis> {
        self.due.first().map(|(at, _)| *at)
    }

    /// When [`Peers::bootstrap_due`] next says yes: only while alone.
    pub fn next_bootstrap(&self, any_member: bool, have_bootstrap: bool) -> Option<Millis> {
        (have_bootstrap && !any_member).then_some(self.bootstrap.0)
    }

    /// A member connected: the next time this node is alone it starts
    /// over at the shortest bootstrap backoff.
    pub fn reset_bootstrap(&mut self) {
        self.bootstrap = (0, BOOTSTRAP_MIN);
    }

    /// Forgets every backoff: after joining, dial at once.
    pub fn reset_backoff(&mut self) {
        self.backoff.clear();
        let waiting: Vec<P> = self.queued.keys().cloned().collect();
        for p in waiting {
            self.queue(p, 0);
        }
    }

    /// Whether to dial the bootstrap addresses again now: only while no
    /// member is connected (alone at start, or after an outage), with
    /// backoff 2 s .. 64 s. The driver dials them once at start itself.
    pub fn bootstrap_due(&mut self, now: Millis, any_member: bool, have_bootstrap: bool) -> bool {
        if any_member {
            self.reset_bootstrap();
            return false;
        }
        if !have_bootstrap || now < self.bootstrap.0 {
            return false;
        }
        let (next, delay) = self.bootstrap;
        self.bootstrap = (now + delay, (delay * 2).min(BOOTSTRAP_MAX));
        next != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_redialled_with_exponential_backoff() {
        let mut p = Peers::<u8>::default();
        p.set_members([1]);
        let mut dials = vec![];
        for now in (0..120_000).step_by(1000) {
            if !p.redials(now).is_empty() {
                dials.push(now);
            }
        }
        assert_eq!(
            dials,
            vec![0, 1000, 3000, 7000, 15_000, 31_000, 63_000, 95_000]
        );
        // connected: no dial, and the backoff starts afresh after
        assert!(p.connected(1, 120_000));
        assert!(p.redials(121_000).is_empty());
        p.closed(&1);
        assert_eq!(p.redials(121_000), vec![1]);
        assert!(p.redials(121_500).is_empty());
        assert_eq!(p.redials(122_000), vec![1]);
    }

    #[test]
    fn a_member_without_an_address_is_redialled_but_never_failing() {
        let mut p = Peers::<u8>::default();
        p.set_members([1]);
        for now in (0..20_000).step_by(1000) {
            if !p.redials(now).is_empty() {
                p.no_address(&1, now);
            }
            assert!(!p.failing(&1), "at {now}");
        }
        // its address is known from now on: each second, then backing off
        let mut dials = vec![];
        for now in (20_000..40_000).step_by(1000) {
            if !p.redials(now).is_empty() {
                dials.push(now);
            }
        }
        assert_eq!(dials, vec![20_000, 21_000, 23_000, 27_000, 35_000]);
        assert!(p.failing(&1));
        // not a member: nothing changes
        p.no_address(&2, 40_000);
        assert!(p.redials(40_000).is_empty());
    }

    #[test]
    fn only_members_are_redialled_and_a_join_dials_at_once() {
        let mut p = Peers::<u8>::default();
        p.set_members([1, 2]);
        assert_eq!(p.redials(0), vec![1, 2]);
        assert_eq!(p.redials(1000), vec![1, 2]);
        // 2 is revoked: no more dials to it; 3 joins: dialled at once
        p.set_members([1, 3]);
        assert_eq!(p.redials(1500), vec![3]);
        assert_eq!(p.redials(3000), vec![3, 1]);
        // a stranger's connection closing queues nothing
        assert!(p.connected(9, 3000));
        p.closed(&9);
        assert!(p.redials(3000).is_empty());
        // after a join, every waiting member is dialled at once
        p.reset_backoff();
        assert_eq!(p.redials(3100), vec![1, 3]);
    }

    #[test]
    fn bootstrap_is_redialled_only_while_alone() {
        let mut p = Peers::<u8>::default();
        let mut dials = vec![];
        for now in (0..100_000).step_by(1000) {
            if p.bootstrap_due(now, false, true) {
                dials.push(now);
            }
        }
        // the driver dialled at start; then 2, 4, 8, ... s later
        assert_eq!(dials, vec![2000, 6000, 14_000, 30_000, 62_000]);
        assert!(!p.bootstrap_due(200_000, true, true));
        // after an outage, the schedule starts again
        assert!(!p.bootstrap_due(201_000, false, true));
        assert!(p.bootstrap_due(203_000, false, true));
        assert!(
            !p.bootstrap_due(300_000, false, false),
            "no bootstrap given"
        );
    }

    #[test]
    fn strikes_ban_and_fade() {
        let mut p = Peers::<u8>::default();
        for n in 1..MAX_STRIKES {
            assert_eq!(p.strike(9, 0), Strike::Counted(n));
        }
        assert_eq!(p.strike(9, 0), Strike::Banned);
        assert!(!p.connected(9, 1000), "a banned peer is refused");
        assert!(p.connected(9, BAN + 1), "for a minute");
        // strikes fade one a minute
        p.strike(8, 0);
        p.strike(8, 0);
        p.fade(60_000);
        assert_eq!(p.strike(8, 60_000), Strike::Counted(2));
    }

    #[test]
    fn a_goodbye_stops_liveness_until_the_next_connection() {
        let mut p = Peers::<u8>::default();
        let n = crate::identity::NodeId([1; 32]);
        p.connected(1, 0);
        assert!(p.alive(&1, n, true, 10));
        p.said_bye(1);
        assert!(!p.alive(&1, n, true, 20), "a ping in flight after goodbye");
        assert_eq!(p.last_seen(&n), Some(10));
        p.connected(1, 30);
        assert!(p.alive(&1, n, true, 40));
        assert!(!p.alive(&1, n, false, 50), "non-members are not tracked");
    }
}
