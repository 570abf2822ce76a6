//! The node's periodic work, by name: the driver sleeps until
//! [`Timers::next_deadline`] and runs whatever [`Timers::due`] returns.

use std::collections::BTreeMap;

use crate::guardian::Millis;

/// A named periodic task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Redial members and bootstrap addresses past their backoff; write
    /// changed addresses; re-sign our peer record if our addresses moved.
    Reconnect,
    /// Write owner states changed since the last write.
    PersistOwners,
    /// Roster anti-entropy with one connected member.
    AntiEntropy,
    /// Close connections to members outside the overlay (after
    /// `overlay::PRUNE_AFTER`; a few seconds late is fine).
    Prune,
    /// Strikes fade, bans end, strangers' addresses are forgotten, every
    /// address's times are written.
    Housekeeping,
}

impl Timer {
    pub const ALL: [Timer; 5] = [
        Timer::Reconnect,
        Timer::PersistOwners,
        Timer::AntiEntropy,
        Timer::Prune,
        Timer::Housekeeping,
    ];

    pub fn period(self) -> Millis {
        match self {
            Timer::Reconnect => 1000,
            Timer::PersistOwners => 5000,
            Timer::AntiEntropy => 10_000,
            Timer::Prune => 5000,
            Timer::Housekeeping => 60_000,
        }
    }
}

/// When each timer fires next.
#[derive(Debug, Clone)]
pub struct Timers {
    next: BTreeMap<Timer, Millis>,
}

impl Timers {
    /// Reconnect fires at once (a restarted node dials its members before
    /// they move on), every other timer one period after `now`.
    pub fn new(now: Millis) -> Self {
        Timers {
            next: Timer::ALL
                .iter()
                .map(|t| match t {
                    Timer::Reconnect => (*t, now),
                    _ => (*t, now.saturating_add(t.period())),
                })
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
                *at = now.saturating_add(t.period());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_at_their_periods_without_catching_up() {
        let mut t = Timers::new(0);
        assert_eq!(t.next_deadline(), 0, "reconnect at start");
        assert_eq!(t.due(0), vec![Timer::Reconnect]);
        let mut fired: BTreeMap<Timer, u32> = BTreeMap::new();
        let mut now = 0;
        while now < 60_000 {
            now = t.next_deadline();
            for x in t.due(now) {
                *fired.entry(x).or_default() += 1;
            }
        }
        assert_eq!(
            fired[&Timer::Reconnect],
            60,
            "at 1 s .. 60 s, after the one at start"
        );
        assert_eq!(fired[&Timer::PersistOwners], 12);
        assert_eq!(fired[&Timer::AntiEntropy], 6);
        assert_eq!(fired[&Timer::Prune], 12);
        assert_eq!(fired[&Timer::Housekeeping], 1);
        // a driver that stalled ten minutes gets each timer once
        assert_eq!(t.due(now + 600_000).len(), 5);
        assert!(t.due(now + 600_001).is_empty());
    }
}
