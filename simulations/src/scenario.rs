//! Scenarios, and the time units. A scenario is a [`Config`] preset
//! and what `World::plan` schedules for it; every scenario runs on real
//! nodes (`world`).

use keyward_core::guardian::Millis;
use serde::Serialize;

pub use crate::world::Config;

pub const SEC: Millis = 1000;
pub const MIN: Millis = 60 * SEC;
pub const HOUR: Millis = 60 * MIN;
pub const DAY: Millis = 24 * HOUR;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Everything up; only rare planned reboots.
    Steady,
    /// Reboots, crashes, joins and revocations at the configured rates,
    /// plus strangers and copied boot keys asking for shares.
    Churn,
    /// Churn under rolling partitions (one heals, the next one starts).
    Partitions,
    /// At 04:00, k servers are seized: off longer than timeout, then booted
    /// by the thief on the same network.
    Seizure,
    /// Every node loses power for longer than timeout; an admin
    /// passphrase-unlocks a few nodes and approves the others.
    Outage,
    /// Churn with a one-hour lockdown in the middle.
    Lockdown,
    /// Churn, a seizure, and two hostile members admitted by the founder
    /// (an auditor and a guardian) that publish signed roster operations
    /// and admin messages of their own making, until an admin on the
    /// founder revokes them (see `world::hostile`).
    Hostile,
    /// Churn with every node logging (logs part 2): each seals a segment
    /// every few minutes, replicated to 2 peers that witness it; two
    /// origins are restored from an old backup (a rollback, then a
    /// forked history). See `world::logs`.
    Logs,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Steady,
        Scenario::Churn,
        Scenario::Partitions,
        Scenario::Seizure,
        Scenario::Outage,
        Scenario::Lockdown,
        Scenario::Hostile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Churn => "churn",
            Scenario::Partitions => "partitions",
            Scenario::Seizure => "seizure",
            Scenario::Outage => "outage",
            Scenario::Lockdown => "lockdown",
            Scenario::Hostile => "hostile",
            Scenario::Logs => "logs",
        }
    }
}
