//! The world's connections: which machine pairs have one open, since
//! when, as whom each end connected, and the pings fed so far.

use std::collections::{BTreeMap, BTreeSet};

use keyward_core::guardian::Millis;
use keyward_core::identity::NodeId;
use keyward_core::proto::Request;

use super::{Reply, Traffic};

/// One open connection between machines `ends[0] < ends[1]`.
#[derive(Clone, Debug)]
pub struct Conn {
    pub id: u64,
    pub ends: [u32; 2],
    /// Who each end is on this connection (node key or boot key).
    pub ids: [NodeId; 2],
    /// Both ends run keywardd: libp2p pings run on it.
    pub daemons: bool,
    /// Per end: since when it pings the other (its node marks the other
    /// for liveness, `Node::liveness`: a guardian or a ward); None: it
    /// does not.
    pub live: [Option<Millis>; 2],
    /// Per end: the last ping answer fed to its node.
    pub fed: [Millis; 2],
    /// Per end: it said goodbye on this connection (its pings no longer
    /// count as liveness at the other end).
    pub bye: [bool; 2],
}

impl Conn {
    pub fn side(&self, m: u32) -> usize {
        usize::from(self.ends[1] == m)
    }
}

#[derive(Default)]
pub struct Net {
    conns: BTreeMap<(u32, u32), Conn>,
    open: BTreeSet<u64>,
    adj: BTreeMap<u32, BTreeSet<u32>>,
    /// Dials under way, (from, to).
    pub dialing: BTreeSet<(u32, u32)>,
    /// Requests waiting for a connection, (from, to).
    pub waiting: BTreeMap<(u32, u32), Vec<(Request, Reply)>>,
    pub traffic: Traffic,
    /// Partition side of each machine (none: all on side 0); machines
    /// reach each other only on the same side.
    side: BTreeMap<u32, u16>,
    /// When the last partition healed (world time).
    pub healed_at: Millis,
}

fn key(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl Net {
    /// Whether a and b can reach each other across the partition.
    pub fn same_side(&self, a: u32, b: u32) -> bool {
        self.side.get(&a).copied().unwrap_or(0) == self.side.get(&b).copied().unwrap_or(0)
    }

    pub fn is_split(&self) -> bool {
        !self.side.is_empty()
    }

    /// Splits the machines: those in `minority` on side 1.
    pub fn split(&mut self, minority: impl IntoIterator<Item = u32>) {
        self.side = minority.into_iter().map(|m| (m, 1)).collect();
    }

    pub fn heal(&mut self, now: Millis) {
        self.side.clear();
        self.healed_at = now;
    }

    /// Open connections that cross the partition.
    pub fn crossing(&self) -> Vec<(u32, u32)> {
        self.conns
            .keys()
            .filter(|(a, b)| !self.same_side(*a, *b))
            .copied()
            .collect()
    }

    pub fn conn(&self, a: u32, b: u32) -> Option<&Conn> {
        self.conns.get(&key(a, b))
    }

    pub fn conn_mut(&mut self, a: u32, b: u32) -> Option<&mut Conn> {
        self.conns.get_mut(&key(a, b))
    }

    pub fn is_open(&self, id: u64) -> bool {
        self.open.contains(&id)
    }

    pub fn peers(&self, m: u32) -> Vec<u32> {
        self.adj
            .get(&m)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// How many machines m has a connection with.
    pub fn peer_count(&self, m: u32) -> usize {
        self.adj.get(&m).map_or(0, BTreeSet::len)
    }

    /// Opens a connection dialled by `from` (as `from_id`) to `to` (as
    /// `to_id`).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        id: u64,
        from: u32,
        to: u32,
        from_id: NodeId,
        to_id: NodeId,
        now: Millis,
        daemons: bool,
    ) {
        let (ends, ids) = if from < to {
            ([from, to], [from_id, to_id])
        } else {
            ([to, from], [to_id, from_id])
        };
        self.conns.insert(
            key(from, to),
            Conn {
                id,
                ends,
                ids,
                daemons,
                live: [None; 2],
                fed: [now; 2],
                bye: [false; 2],
            },
        );
        self.open.insert(id);
        self.adj.entry(from).or_default().insert(to);
        self.adj.entry(to).or_default().insert(from);
    }

    /// Closes it; its pings are counted: each end that pings the other
    /// does so every `period`, and the other answers.
    pub fn remove(&mut self, a: u32, b: u32, now: Millis, period: Millis) -> Option<Conn> {
        let c = self.conns.remove(&key(a, b))?;
        self.open.remove(&c.id);
        if let Some(s) = self.adj.get_mut(&a) {
            s.remove(&b);
        }
        if let Some(s) = self.adj.get_mut(&b) {
            s.remove(&a);
        }
        self.traffic.pings += pings(&c, now, period);
        Some(c)
    }

    /// Counts the pings of the connections still open at the end.
    pub fn close_all_for_count(&mut self, now: Millis, period: Millis) {
        for c in self.conns.values() {
            self.traffic.pings += pings(c, now, period);
        }
    }
}

/// The pings and answers on `c` until `now`: two per `period` for each
/// end that pings the other.
pub fn pings(c: &Conn, now: Millis, period: Millis) -> u64 {
    c.live
        .iter()
        .flatten()
        .map(|since| 2 * (now.saturating_sub(*since) / period))
        .sum()
}
