//! Scenarios and the run configuration.

use keyward_core::guardian::{Millis, Policy};
use serde::Serialize;

use crate::net::NetConfig;

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
    /// (an auditor and a guardian) that mint members, build chains of
    /// admissions, flood rekeys, revoke honest members and approve the
    /// seized servers, until an admin on the founder revokes them (see
    /// `hostile`).
    Hostile,
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
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Each owner picks its guardians at random among the members.
    Random,
    /// Each owner's guardians are the next members on a ring.
    Ring,
}

/// Churn rates. Per node per day for reboots and crashes; per day for the
/// whole mesh for the rest.
#[derive(Clone, Debug, Serialize)]
pub struct Rates {
    pub reboots: f64,
    pub crashes: f64,
    pub joins: f64,
    pub revocations: f64,
    /// Requests by nodes that were never members.
    pub strangers: f64,
    /// Requests with a copied boot key while its node runs (threat 7).
    pub copies: f64,
    /// Servers stolen and booted by a thief after a random delay, which may
    /// be shorter than timeout (for availability/safety sweeps).
    pub thefts: f64,
}

impl Rates {
    fn none() -> Rates {
        Rates {
            reboots: 0.0,
            crashes: 0.0,
            joins: 0.0,
            revocations: 0.0,
            strangers: 0.0,
            copies: 0.0,
            thefts: 0.0,
        }
    }

    fn churn(nodes: usize) -> Rates {
        let n = nodes as f64;
        Rates {
            reboots: 1.0,
            crashes: 0.5,
            joins: (n * 0.02).max(2.0),
            revocations: (n * 0.01).max(2.0),
            strangers: 12.0,
            copies: 12.0,
            thefts: 0.0,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub scenario: Scenario,
    pub nodes: usize,
    pub hours: f64,
    pub seed: u64,
    /// Guardians per owner.
    pub guardians: usize,
    pub threshold: usize,
    pub policy: Policy,
    pub net: NetConfig,
    pub rates: Rates,
    pub placement: Placement,
    /// Servers seized in the seizure and hostile scenarios.
    pub seize: usize,
    /// How often an admin looks at locked nodes and approves legitimate
    /// ones (0: never).
    pub admin_review: Millis,
    /// Roster anti-entropy period per node.
    pub sync_interval: Millis,
    /// Nodes each new roster operation is pushed to.
    pub fanout: usize,
    /// Also run the strict checks (behaviours the design may not intend).
    pub strict: bool,
    /// Share identical roster replicas (see `rosters`).
    pub dedup: bool,
    /// Print every trace record.
    pub trace: bool,
    /// Testing hook: the timeout the invariants assume, if not the policy's.
    #[serde(skip)]
    pub oracle_timeout: Option<Millis>,
}

impl Config {
    pub fn new(scenario: Scenario, nodes: usize, hours: f64, seed: u64) -> Config {
        let guardians = 5.min(nodes.saturating_sub(1)).max(1);
        let rates = match scenario {
            Scenario::Steady | Scenario::Seizure | Scenario::Outage => Rates {
                reboots: 0.2,
                ..Rates::none()
            },
            Scenario::Churn | Scenario::Partitions | Scenario::Lockdown | Scenario::Hostile => {
                Rates::churn(nodes)
            }
        };
        Config {
            scenario,
            nodes,
            hours,
            seed,
            guardians,
            threshold: 3.min(guardians),
            policy: Policy::default(),
            net: NetConfig::default(),
            rates,
            placement: Placement::Random,
            seize: 3.min(nodes / 3).max(1),
            admin_review: HOUR,
            sync_interval: 2 * MIN,
            fanout: 3,
            strict: false,
            dedup: true,
            trace: false,
            oracle_timeout: None,
        }
    }

    pub fn end(&self) -> Millis {
        (self.hours * HOUR as f64) as Millis
    }

    /// The command line that replays this run: every field a run depends
    /// on (durations in exact units), so the replay is the same run.
    pub fn replay(&self) -> String {
        let p = &self.policy;
        let loss = if (self.net.loss * 100.0) / 100.0 == self.net.loss {
            format!("--loss {}", self.net.loss * 100.0)
        } else {
            format!("--loss-prob {}", self.net.loss)
        };
        let mut s = format!(
            "keyward-sim run --scenario {} --nodes {} --hours {} --seed {} --guardians {} --threshold {} --timeout {} --interval {} --extended-timeout {} --approval-delay {} --approval-window {} --up-window {} --admin-review {} --sync-interval {} --fanout {} {loss} --latency-ms {}..{} --placement {}",
            self.scenario.name(),
            self.nodes,
            self.hours,
            self.seed,
            self.guardians,
            self.threshold,
            dur(p.timeout),
            dur(p.interval),
            dur(p.extended_timeout),
            dur(p.approval_delay),
            dur(p.approval_window),
            dur(p.up_window),
            dur(self.admin_review),
            dur(self.sync_interval),
            self.fanout,
            self.net.latency_min,
            self.net.latency_max,
            match self.placement {
                Placement::Random => "random",
                Placement::Ring => "ring",
            },
        );
        let r = &self.rates;
        s += &format!(
            " --reboots {} --crashes {} --joins {} --revocations {} --strangers {} --copies {} --thefts {}",
            r.reboots, r.crashes, r.joins, r.revocations, r.strangers, r.copies, r.thefts
        );
        s += &format!(" --seize {}", self.seize);
        if let Some(t) = self.oracle_timeout {
            s += &format!(" --oracle-timeout {}", dur(t));
        }
        if self.strict {
            s += " --strict";
        }
        if !self.dedup {
            s += " --no-dedup";
        }
        s
    }
}

/// A duration as the CLI reads it back exactly: seconds when whole.
fn dur(ms: Millis) -> String {
    if ms.is_multiple_of(SEC) {
        format!("{}s", ms / SEC)
    } else {
        format!("{ms}ms")
    }
}
