//! The guardian's decision history (`keyward status`) and what of it
//! reaches the journal.
//!
//! Anyone can send a share request naming any owner. Those that do not
//! come from the owner's boot key (the unlock client connects with it)
//! are counted apart instead of filling the history, so a stranger's flood
//! cannot push out the decisions an admin needs to see. The same refusal
//! to the same requester is logged once per 10 s: a retrying initramfs or
//! a flood must not drown the journal. Every release is logged.

use std::collections::{BTreeMap, VecDeque};

use crate::guardian::{Decision, Millis};
use crate::identity::NodeId;

/// Decisions kept for `keyward status`.
pub const MAX_DECISIONS: usize = 200;
/// Refusal keys remembered for the throttle before it starts afresh.
const MAX_THROTTLE_KEYS: usize = 4096;
/// One journal line per (requester, owner, rule) refusal this often.
pub const REFUSAL_LOG_EVERY: Millis = 10_000;
/// At most one journal line per this long about strangers.
pub const STRANGER_LOG_EVERY: Millis = 10_000;

/// What the driver writes to the journal about one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// A release: always logged.
    Released,
    /// A refusal to log; `unlogged` identical ones were held back since the
    /// last line about it.
    Refused { unlogged: u32 },
    /// A refusal repeated within the throttle: counted, not logged.
    Quiet,
    /// A request not from the owner's boot key: counted apart. `Some(n)`:
    /// log one line now, `n` more such came since the last line.
    Stranger(Option<u64>),
}

/// Strangers' refused requests and connections.
#[derive(Debug, Default, Clone)]
pub struct Strangers {
    pub refused: u64,
    pub last_at: Millis,
    pub last_rule: String,
    pub last_owner: Option<NodeId>,
    logged_at: Millis,
    unlogged: u64,
    conn_logged_at: Millis,
    conn_unlogged: u64,
}

/// The decision history and its journal throttle.
#[derive(Debug, Default)]
pub struct DecisionLog {
    recent: VecDeque<Decision>,
    /// (requester, owner, rule) → (last logged, held back since).
    throttle: BTreeMap<(Option<NodeId>, NodeId, String), (Millis, u32)>,
    strangers: Strangers,
}

impl DecisionLog {
    /// Records one decision. `from_owners_boot_key`: the request came over
    /// a connection authenticated by the owner's boot key; `requester` is
    /// that connection's key.
    pub fn record(
        &mut self,
        d: Decision,
        from_owners_boot_key: bool,
        requester: Option<NodeId>,
    ) -> Logged {
        if !d.released && !from_owners_boot_key {
            return Logged::Stranger(self.stranger(&d));
        }
        let mut out = Logged::Released;
        if !d.released {
            if self.throttle.len() > MAX_THROTTLE_KEYS {
                self.throttle.clear();
            }
            let last = self
                .throttle
                .entry((requester, d.owner, d.rule.clone()))
                .or_insert((0, 0));
            if last.0 != 0 && d.at.saturating_sub(last.0) < REFUSAL_LOG_EVERY {
                last.1 += 1;
                out = Logged::Quiet;
            } else {
                out = Logged::Refused { unlogged: last.1 };
                *last = (d.at, 0);
            }
        }
        self.recent.push_back(d);
        while self.recent.len() > MAX_DECISIONS {
            self.recent.pop_front();
        }
        out
    }

    fn stranger(&mut self, d: &Decision) -> Option<u64> {
        let s = &mut self.strangers;
        s.refused += 1;
        s.last_at = d.at;
        s.last_rule.clone_from(&d.rule);
        s.last_owner = Some(d.owner);
        if d.at.saturating_sub(s.logged_at) < STRANGER_LOG_EVERY {
            s.unlogged += 1;
            return None;
        }
        s.logged_at = d.at;
        Some(std::mem::take(&mut s.unlogged))
    }

    /// A connection the gate refused: `Some(n)` to log one line now, with
    /// `n` more refused since the last one.
    pub fn connection_refused(&mut self, now: Millis) -> Option<u64> {
        let s = &mut self.strangers;
        if now.saturating_sub(s.conn_logged_at) < STRANGER_LOG_EVERY {
            s.conn_unlogged += 1;
            return None;
        }
        s.conn_logged_at = now;
        Some(std::mem::take(&mut s.conn_unlogged))
    }

    /// Decisions, newest first.
    pub fn newest(&self) -> impl Iterator<Item = &Decision> {
        self.recent.iter().rev()
    }

    pub fn strangers(&self) -> &Strangers {
        &self.strangers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeKey;

    fn refusal(at: Millis, owner: NodeId, rule: &str) -> Decision {
        Decision {
            at,
            owner,
            epoch: 1,
            released: false,
            rule: rule.into(),
            reason: "no".into(),
        }
    }

    #[test]
    fn the_same_refusal_is_logged_once_per_ten_seconds() {
        let owner = NodeKey::generate().id();
        let boot = Some(NodeKey::generate().id());
        let mut l = DecisionLog::default();
        assert_eq!(
            l.record(refusal(1000, owner, "lockdown"), true, boot),
            Logged::Refused { unlogged: 0 }
        );
        for t in 1..10 {
            assert_eq!(
                l.record(refusal(1000 + t * 1000, owner, "lockdown"), true, boot),
                Logged::Quiet
            );
        }
        // another rule is its own line
        assert_eq!(
            l.record(refusal(5000, owner, "denied"), true, boot),
            Logged::Refused { unlogged: 0 }
        );
        // past 10 s: logged, saying how many were held back
        assert_eq!(
            l.record(refusal(11_000, owner, "lockdown"), true, boot),
            Logged::Refused { unlogged: 9 }
        );
        // every one is in the history, newest first
        assert_eq!(l.newest().count(), 12);
        assert_eq!(l.newest().next().unwrap().at, 11_000);
        // releases are always logged
        let mut d = refusal(11_001, owner, "alive");
        d.released = true;
        assert_eq!(l.record(d, true, boot), Logged::Released);
    }

    #[test]
    fn strangers_are_counted_apart_and_cannot_flush_the_history() {
        let owner = NodeKey::generate().id();
        let mut l = DecisionLog::default();
        l.record(refusal(1, owner, "lockdown"), true, None);
        let mut lines = 0;
        for t in 0..10_000u64 {
            if let Logged::Stranger(Some(_)) =
                l.record(refusal(2 + t * 10, owner, "not-owner"), false, None)
            {
                lines += 1;
            }
        }
        assert_eq!(l.newest().count(), 1, "the admin's decision is still there");
        assert_eq!(l.strangers().refused, 10_000);
        assert!(lines <= 11, "{lines} journal lines for 100 s of flood");
        // a release from a stranger's connection still counts as a decision
        let mut d = refusal(200_000, owner, "alive");
        d.released = true;
        assert_eq!(l.record(d, false, None), Logged::Released);
        assert_eq!(l.newest().count(), 2);
    }

    #[test]
    fn history_is_bounded() {
        let owner = NodeKey::generate().id();
        let mut l = DecisionLog::default();
        for t in 0..(MAX_DECISIONS as u64 + 50) {
            l.record(refusal(t * 20_000, owner, "x"), true, None);
        }
        assert_eq!(l.newest().count(), MAX_DECISIONS);
    }
}
