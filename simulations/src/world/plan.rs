//! What a scenario schedules at the start of a run (see
//! `crate::scenario::Scenario`): the churn processes every scenario has
//! at its rates, and the scenario's own events.

use super::*;
use crate::scenario::Scenario;

impl World {
    pub(super) fn plan(&mut self) {
        for a in [
            Act::Reboot,
            Act::Crash,
            Act::Join,
            Act::Revoke,
            Act::Copy,
            Act::Stranger,
            Act::Theft,
        ] {
            self.next_churn(a);
        }
        if self.cfg.partitions {
            let d = self.uniform(10 * MIN, 30 * MIN);
            self.q.at(d, Ev::Act(Act::Partition));
        }
        let end = self.cfg.end();
        let p = self.cfg.policy;
        let seize_at = (4 * HOUR).min(end / 4);
        match self.cfg.scenario {
            Scenario::Seizure => self.q.at(seize_at, Ev::Act(Act::SeizeSome)),
            Scenario::Outage => {
                let at = (end / 4).max(p.up_window + MIN);
                self.q.at(at, Ev::Act(Act::Outage))
            }
            Scenario::Lockdown => self.q.at(end / 3, Ev::Act(Act::AdminLock(true))),
            Scenario::Hostile => {
                self.q.at(seize_at, Ev::Act(Act::SeizeSome));
                let d = self.uniform(MIN, 5 * MIN);
                self.q.at(d, Ev::Act(Act::Hostile));
                let b = self.uniform(30 * SEC, 2 * MIN);
                self.q.at(seize_at + b, Ev::Act(Act::HostileBurst));
                let r = self.uniform(2 * MIN, p.timeout + 5 * MIN);
                self.q.at(seize_at + r, Ev::Act(Act::RevokeHostile));
            }
            Scenario::Logs => {
                for at in [end / 3, end / 2] {
                    self.q.at(at, Ev::Act(Act::RestoreLog));
                }
            }
            Scenario::Steady | Scenario::Churn | Scenario::Partitions => {}
        }
        if self.cfg.admin_review > 0 {
            self.q.at(
                self.cfg.admin_review,
                Ev::Act(Act::Review { periodic: true }),
            );
        }
        // The time-based invariants look every `watch::TICK`.
        self.q.at(watch::TICK, Ev::Watch);
    }
}
