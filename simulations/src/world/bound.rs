//! The connection bound (issue 19): a node's keywardd connections stay
//! within what its overlay wants (guardians, wards, gossip neighbours;
//! `keyward_core::node::overlay`) plus a few transient ones: a request
//! to a member outside it (a drop to an old guardian, an approval), a
//! peer whose roster differs for a moment. Judged at every connection
//! that opens, at both ends.

use super::*;

/// Connections beyond the overlay a node may hold for a moment.
pub const TRANSIENT: usize = 8;

impl World {
    pub(super) fn check_conn_bound(&mut self, m: u32) {
        let Some(node) = &self.machines[m as usize].node else {
            return;
        };
        let count = self.daemon_conns(m);
        let wanted = node.overlay().bound();
        let s = &mut self.stats;
        s.peak_connections = s.peak_connections.max(count as u64);
        s.peak_wanted = s.peak_wanted.max(wanted as u64);
        let bound = wanted + TRANSIENT;
        self.checks
            .check(inv::CONN_BOUND, count <= bound, &[m], || {
                format!("n{m} holds {count} keywardd connections; its overlay wants {wanted}")
            });
    }

    /// Machine m's connections between keywardds (not an initramfs's).
    fn daemon_conns(&self, m: u32) -> usize {
        self.net
            .peers(m)
            .into_iter()
            .filter(|p| self.net.conn(m, *p).is_some_and(|c| c.daemons))
            .count()
    }

    /// keywardd connections per running node now: (mean, most).
    pub(super) fn connections_now(&self) -> (f64, usize) {
        let counts: Vec<usize> = (0..self.machines.len() as u32)
            .filter(|m| self.machines[*m as usize].running())
            .map(|m| self.daemon_conns(m))
            .collect();
        let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
        (mean, counts.iter().copied().max().unwrap_or(0))
    }
}
