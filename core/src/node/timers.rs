//! The node's timed work, by name: the driver sleeps until
//! `Node::poll_timeout` and calls `Node::handle_timeout`.
//!
//! Two kinds. [`Timers`] holds the periodic ones (owner-state writes,
//! anti-entropy, housekeeping), whose periods are multiples of one
//! another so they fire together. The others are due when the node's
//! state says so and the node computes their deadline from that state: a
//! redial when a backoff ends, a prune when an unwanted connection has
//! been up long enough. An idle node then wakes twice a minute instead
//! of every second: what lets one machine simulate 5,000 of them.

use std::collections::BTreeMap;

use crate::guardian::Millis;

/// A named piece of timed work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Redial members and bootstrap addresses whose backoff ended (on
    /// demand).
    Reconnect,
    /// Write owner states changed since the last write (periodic: what
    /// changes between writes is liveness, and a guardian that restarts
    /// with a last-seen time up to a period old only refuses sooner).
    PersistOwners,
    /// Roster anti-entropy with one connected member (periodic: a backstop
    /// for what gossip missed; every new connection syncs at once too).
    AntiEntropy,
    /// Close a connection to a member outside the overlay once it has
    /// been up `overlay::PRUNE_AFTER`, or `overlay::JOINED_GRACE` after
    /// its peer was admitted on it (on demand).
    Prune,
    /// Strikes fade, bans end, strangers' addresses are forgotten, every
    /// address's times are written (periodic).
    Housekeeping,
    /// Logs part 2 (on demand, `node::logs`): a push tried again after
    /// its backoff, the witness interval, a replica's retention.
    Logs,
}

impl Timer {
    /// The periodic timers.
    pub const PERIODIC: [Timer; 3] = [
        Timer::PersistOwners,
        Timer::AntiEntropy,
        Timer::Housekeeping,
    ];

    /// The period of a periodic timer.
    pub fn period(self) -> Option<Millis> {
        match self {
            Timer::PersistOwners => Some(30_000),
            Timer::AntiEntropy => Some(30_000),
            Timer::Housekeeping => Some(60_000),
            Timer::Reconnect | Timer::Prune | Timer::Logs => None,
        }
    }
}

/// When each periodic timer fires next.
#[derive(Debug, Clone)]
pub struct Timers {
    next: BTreeMap<Timer, Millis>,
}

impl Timers {
    /// Every periodic timer one period after `now`.
    pub fn new(now: Millis) -> Self {
        Timers {
            next: Timer::PERIODIC
                .iter()
                .filter_map(|t| Some((*t, now.saturating_add(t.period()?))))
                .collect(),
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Millis {
        self.next.values().copied().min().unwrap_or(Millis::MAX)
    }

    /// The timers due at `now`, each rescheduled one period later (from
    /// `now`, so a stalled driver does not fire a burst to catch up).
    pub fn due(&mut self, now: Millis) -> Vec<Timer> {
        let mut out = vec![];
        for (t, at) in self.next.iter_mut() {
            if *at <= now {
                out.push(*t);
                *at = now.saturating_add(t.period().unwrap_or(Millis::MAX));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_timers_fire_at_their_periods_without_catching_up() {
        let mut t = Timers::new(0);
        assert_eq!(t.next_deadline(), 30_000, "nothing at start");
        let mut fired: BTreeMap<Timer, u32> = BTreeMap::new();
        let mut wakes = 0;
        let mut now = 0;
        while now < 600_000 {
            now = t.next_deadline();
            wakes += 1;
            for x in t.due(now) {
                *fired.entry(x).or_default() += 1;
            }
        }
        assert_eq!(fired[&Timer::PersistOwners], 20);
        assert_eq!(fired[&Timer::AntiEntropy], 20);
        assert_eq!(fired[&Timer::Housekeeping], 10);
        assert_eq!(fired.len(), 3, "on-demand timers are the node's: {fired:?}");
        assert_eq!(wakes, 20, "the periods line up: one wake fires them all");
        // a driver that stalled ten minutes gets each timer once
        assert_eq!(t.due(now + 600_000).len(), 3);
        assert!(t.due(now + 600_001).is_empty());
    }
}
