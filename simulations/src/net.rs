//! The virtual network: per-message latency (so messages reorder), random
//! loss and partitions. It only decides whether and when a message arrives;
//! the simulator delivers it.

use keyward_core::guardian::Millis;
use rand::Rng;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct NetConfig {
    pub latency_min: Millis,
    pub latency_max: Millis,
    /// Probability that one message is lost, 0..1.
    pub loss: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_min: 1,
            latency_max: 60,
            loss: 0.01,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Dropped by a partition.
    pub cut: u64,
    /// Arrived at a node that was down.
    pub to_down: u64,
    /// Connection pings and their answers, not simulated one by one but
    /// counted (see `Sim::count_conn_pings`); not part of `sent`.
    pub liveness_pings: u64,
}

pub struct Net {
    pub cfg: NetConfig,
    /// Partition group of each node; nodes talk only within a group.
    group: Vec<u16>,
    split: bool,
    pub stats: NetStats,
}

/// The outside attacker is reachable from every partition.
pub const ATTACKER: u32 = u32::MAX;

impl Net {
    pub fn new(cfg: NetConfig, nodes: usize) -> Self {
        Net {
            cfg,
            group: vec![0; nodes],
            split: false,
            stats: NetStats::default(),
        }
    }

    pub fn add_node(&mut self) {
        self.group.push(0);
    }

    pub fn connected(&self, a: u32, b: u32) -> bool {
        a == ATTACKER || b == ATTACKER || self.group[a as usize] == self.group[b as usize]
    }

    pub fn is_split(&self) -> bool {
        self.split
    }

    /// Decides the fate of one message: its latency, or None if lost or cut.
    pub fn send(&mut self, rng: &mut impl Rng, a: u32, b: u32) -> Option<Millis> {
        self.stats.sent += 1;
        if !self.connected(a, b) {
            self.stats.cut += 1;
            return None;
        }
        if self.cfg.loss > 0.0 && rng.gen::<f64>() < self.cfg.loss {
            self.stats.lost += 1;
            return None;
        }
        Some(rng.gen_range(self.cfg.latency_min..=self.cfg.latency_max.max(self.cfg.latency_min)))
    }

    /// Splits the mesh: `group[i]` is node i's side.
    pub fn partition(&mut self, group: Vec<u16>) {
        debug_assert_eq!(group.len(), self.group.len());
        self.group = group;
        self.split = true;
    }

    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
        self.split = false;
    }
}
