//! Counters, the end-of-run summary (table or JSON) and failure reports.

use std::collections::BTreeMap;
use std::fmt;

use keyward_core::guardian::Millis;
use serde::Serialize;

use crate::invariants::{self, Violation};
use crate::net::NetStats;
use crate::sim::Sim;
use crate::trace::clock;

/// Decision rules, index 0 is a release; the rest are `Refusal::rule()`.
pub const RULES: [&str; 16] = [
    "released",
    "not-member",
    "revoked",
    "bad-signature",
    "wrong-guardian",
    "lockdown",
    "denied",
    "owner-up",
    "not-seen",
    "no-share",
    "waiting",
    "guardian-revoked",
    "guardian-not-member",
    "wrong-connection",
    "replayed",
    "clock-not-sane",
];

pub fn rule_index(rule: &str) -> u8 {
    RULES.iter().position(|r| *r == rule).unwrap_or(0) as u8
}

#[derive(Default)]
pub struct Stats {
    pub boots: u64,
    pub legit_boots: u64,
    pub unbound_boots: u64,
    pub unlocked: u64,
    pub unlocked_auto: u64,
    pub unlocked_approved: u64,
    pub passphrase: u64,
    pub unlock_ms: Vec<Millis>,
    /// Unlock times of boots that needed no admin.
    pub unlock_auto_ms: Vec<Millis>,
    /// Decisions on the nodes' own requests, by rule.
    pub own: [u64; 16],
    /// Decisions on requests by strangers.
    pub stranger: [u64; 16],
    /// Decisions on requests made with a copied boot key.
    pub copied: [u64; 16],
    pub decisions: u64,
    pub alerts: u64,
    pub chained_extended: u64,
    pub stranger_requests: u64,
    pub copy_attacks: u64,
    pub thefts: u64,
    pub thefts_unlocked: u64,
    pub reboots: u64,
    pub crashes: u64,
    pub joins: u64,
    pub revocations: u64,
    pub rebinds: u64,
    pub approvals: u64,
    pub partitions: u64,
    pub seized: u64,
    pub deposits_rejected: u64,
    pub ops_rejected: u64,
    /// Initramfs connection attempts to guardians that were down or cut off.
    pub dials_failed: u64,
}

impl Stats {
    pub fn count_release(&mut self, attacker: bool, copy: bool) {
        self.count_refusal(attacker, copy, 0)
    }

    pub fn count_refusal(&mut self, attacker: bool, copy: bool, rule: u8) {
        let t = match (attacker, copy) {
            (false, _) => &mut self.own,
            (true, true) => &mut self.copied,
            (true, false) => &mut self.stranger,
        };
        t[rule as usize] += 1;
    }
}

fn by_rule(t: &[u64; 16]) -> BTreeMap<String, u64> {
    RULES
        .iter()
        .zip(t)
        .skip(1)
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (r.to_string(), *n))
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct Unlocks {
    /// Boots that reached the initramfs.
    pub attempts: u64,
    /// Boots of nodes that are not revoked, seized or stolen.
    pub legit_boots: u64,
    /// Unlocked with shares.
    pub granted: u64,
    /// ... of which with no admin involved.
    pub granted_auto: u64,
    pub granted_after_approval: u64,
    pub passphrase: u64,
    /// Virtual time from the initramfs's first request to the key, over
    /// every unlock with shares.
    pub median_ms: Millis,
    pub p99_ms: Millis,
    pub max_ms: Millis,
    /// The same over unlocks that needed no admin.
    pub auto_median_ms: Millis,
    pub auto_p99_ms: Millis,
    /// Still locked at the end, by why.
    pub locked_at_end: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Requests {
    pub released: u64,
    pub refused: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Probes {
    pub stranger_requests: u64,
    pub stranger_released: u64,
    pub copied_key_attempts: u64,
    pub copied_key_requests_released: u64,
    pub copied_key_refused: BTreeMap<String, u64>,
    pub boot_key_alerts: u64,
    pub thefts: u64,
    pub thefts_unlocked: u64,
    pub extended_chain_releases: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Churn {
    pub initramfs_dials_failed: u64,
    pub reboots: u64,
    pub crashes: u64,
    pub joins: u64,
    pub revocations: u64,
    pub rebinds: u64,
    pub admin_approvals: u64,
    pub partitions: u64,
    pub seized: u64,
    pub deposits_rejected: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RosterStats {
    pub ops: usize,
    pub ops_rejected: u64,
    pub merges_run: u64,
    pub merges_reused: u64,
    pub distinct_states: usize,
}

/// The end-of-run summary. It holds no wall time: a summary is a pure
/// function of the config, so `run` and `run --json` print the same bytes
/// for the same seed; the binary prints wall time and events per second
/// to stderr.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub nodes: usize,
    pub nodes_at_end: usize,
    pub hours: f64,
    pub seed: u64,
    pub events: u64,
    pub trace_hash: String,
    pub unlocks: Unlocks,
    pub requests: Requests,
    pub probes: Probes,
    pub churn: Churn,
    pub net: NetStats,
    pub messages_per_node_hour: f64,
    pub rosters: RosterStats,
    pub invariant_checks: BTreeMap<String, u64>,
    pub invariant_checks_total: u64,
    /// Fraction of owners whose key a boot-key thief could open with the
    /// help of a random 20 % of the nodes colluding (threshold sweeps).
    pub collusion_exposed: f64,
    /// What the hostile members did (hostile scenario only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostile: Option<crate::hostile::HostileStats>,
}

fn pct(v: &mut [Millis], q: f64) -> Millis {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

impl Sim {
    pub(crate) fn summary(mut self) -> Summary {
        let s = &mut self.stats;
        let mut ms = std::mem::take(&mut s.unlock_ms);
        let mut auto_ms = std::mem::take(&mut s.unlock_auto_ms);
        let mut locked = BTreeMap::new();
        for n in &self.nodes {
            if n.asking() || n.phase == crate::node::Phase::Booting {
                let why = if n.revoked {
                    "revoked"
                } else if n.seized {
                    "seized"
                } else if n.stolen {
                    "stolen"
                } else {
                    "legitimate"
                };
                *locked.entry(why.to_string()).or_default() += 1;
            }
        }
        let n0 = self.cfg.nodes;
        let n1 = self.nodes.len();
        let hours = self.q.now().min(self.cfg.end()) as f64 / 3_600_000.0;
        let mut checks: BTreeMap<String, u64> = invariants::ALL
            .iter()
            .map(|n| (n.to_string(), 0))
            .filter(|(n, _)| self.cfg.strict || !n.starts_with("strict."))
            .collect();
        for (k, v) in &self.checks.runs {
            checks.insert(k.to_string(), *v);
        }
        let exposed = self.collusion_exposed();
        let hostile = self.hostile.as_ref().map(|h| {
            let mut s = h.stats.clone();
            s.seized_opened = self.hostile_opened.len();
            s.roster_bound = self.rosters.bound();
            s
        });
        let s = &self.stats;
        Summary {
            scenario: self.cfg.scenario.name().into(),
            nodes: n0,
            nodes_at_end: n1,
            hours: self.cfg.hours,
            seed: self.cfg.seed,
            events: self.event,
            trace_hash: format!("{:016x}", self.trace.hash()),
            unlocks: Unlocks {
                attempts: s.boots,
                legit_boots: s.legit_boots,
                granted: s.unlocked,
                granted_auto: s.unlocked_auto,
                granted_after_approval: s.unlocked_approved,
                passphrase: s.passphrase,
                median_ms: pct(&mut ms, 0.5),
                p99_ms: pct(&mut ms, 0.99),
                max_ms: pct(&mut ms, 1.0),
                auto_median_ms: pct(&mut auto_ms, 0.5),
                auto_p99_ms: pct(&mut auto_ms, 0.99),
                locked_at_end: locked,
            },
            requests: Requests {
                released: s.own[0],
                refused: by_rule(&s.own),
            },
            probes: Probes {
                stranger_requests: s.stranger_requests,
                stranger_released: s.stranger[0],
                copied_key_attempts: s.copy_attacks,
                copied_key_requests_released: s.copied[0],
                copied_key_refused: by_rule(&s.copied),
                boot_key_alerts: s.alerts,
                thefts: s.thefts,
                thefts_unlocked: s.thefts_unlocked,
                extended_chain_releases: s.chained_extended,
            },
            churn: Churn {
                initramfs_dials_failed: s.dials_failed,
                reboots: s.reboots,
                crashes: s.crashes,
                joins: s.joins,
                revocations: s.revocations,
                rebinds: s.rebinds,
                admin_approvals: s.approvals,
                partitions: s.partitions,
                seized: s.seized,
                deposits_rejected: s.deposits_rejected,
            },
            messages_per_node_hour: (self.net.stats.sent + self.net.stats.liveness_pings) as f64
                / ((n0 + n1) as f64 / 2.0)
                / hours.max(1e-9),
            net: self.net.stats.clone(),
            rosters: RosterStats {
                ops: self.rosters.len_ops(),
                ops_rejected: s.ops_rejected,
                merges_run: self.rosters.merges,
                merges_reused: self.rosters.reused,
                distinct_states: self.rosters.states(),
            },
            invariant_checks_total: self.checks.total(),
            invariant_checks: checks,
            collusion_exposed: exposed,
            hostile,
        }
    }

    /// Owners with at least T guardians inside a random fifth of the nodes.
    fn collusion_exposed(&mut self) -> f64 {
        use rand::Rng;
        let n = self.nodes.len();
        let bad: Vec<bool> = (0..n).map(|_| self.rng.gen_bool(0.2)).collect();
        let owners: Vec<_> = self.nodes.iter().filter_map(|x| x.token.as_ref()).collect();
        let exposed = owners
            .iter()
            .filter(|t| t.guardians.iter().filter(|g| bad[**g as usize]).count() >= t.threshold)
            .count();
        exposed as f64 / owners.len().max(1) as f64
    }
}

impl Summary {
    pub fn table(&self) -> String {
        let mut o = String::new();
        let mut row = |k: &str, v: String| o += &format!("  {k:<38} {v}\n");
        row(
            "scenario",
            format!(
                "{} — {} nodes ({} at end), {} h, seed {}",
                self.scenario, self.nodes, self.nodes_at_end, self.hours, self.seed
            ),
        );
        let u = &self.unlocks;
        row("unlock attempts (boots)", u.attempts.to_string());
        row(
            "granted (unlocked with shares)",
            format!(
                "{} ({} by themselves, {} after an admin's approval)",
                u.granted, u.granted_auto, u.granted_after_approval
            ),
        );
        row("passphrase unlocks by an admin", u.passphrase.to_string());
        let secs = |ms: Millis| format!("{:.2} s", ms as f64 / 1e3);
        row(
            "unlock time, by themselves: median / p99",
            format!("{} / {}", secs(u.auto_median_ms), secs(u.auto_p99_ms)),
        );
        row(
            "unlock time, all: median / p99 / max",
            format!(
                "{} / {} / {}",
                secs(u.median_ms),
                secs(u.p99_ms),
                secs(u.max_ms)
            ),
        );
        row("still locked at end", fmt_map(&u.locked_at_end));
        row(
            "share requests released",
            self.requests.released.to_string(),
        );
        row(
            "share requests refused, by reason",
            fmt_map(&self.requests.refused),
        );
        let p = &self.probes;
        row(
            "strangers: requests / released",
            format!("{} / {}", p.stranger_requests, p.stranger_released),
        );
        row(
            "copied boot keys: attempts / shares out",
            format!(
                "{} / {} (refused: {}; alerts {})",
                p.copied_key_attempts,
                p.copied_key_requests_released,
                fmt_map(&p.copied_key_refused),
                p.boot_key_alerts
            ),
        );
        if p.thefts > 0 {
            row(
                "thefts: booted / unlocked",
                format!("{} / {}", p.thefts, p.thefts_unlocked),
            );
        }
        row(
            "releases via a renewed extended timeout",
            p.extended_chain_releases.to_string(),
        );
        let c = &self.churn;
        row(
            "churn",
            format!(
                "{} reboots, {} crashes, {} joins, {} revocations, {} rebinds, {} approvals, {} partitions, {} seized",
                c.reboots, c.crashes, c.joins, c.revocations, c.rebinds, c.admin_approvals, c.partitions, c.seized
            ),
        );
        row(
            "messages",
            format!(
                "{} sent, {} lost, {} cut by partitions, {} to down nodes",
                self.net.sent, self.net.lost, self.net.cut, self.net.to_down
            ),
        );
        row(
            "connection pings (counted, not simulated)",
            self.net.liveness_pings.to_string(),
        );
        row(
            "messages per node per hour (with pings)",
            format!("{:.1}", self.messages_per_node_hour),
        );
        if let Some(h) = &self.hostile {
            row(
                "hostile moves",
                format!(
                    "{}: {} minted by the auditor, {} sybils, {} endorsements, {} rekeys, {} revocations of honest members, {} approvals sent",
                    h.moves, h.auditor_mints, h.sybils_minted, h.endorsements, h.rekeys, h.revocations_of_honest, h.approvals_sent
                ),
            );
            row(
                "founder revoked the hostile members at",
                h.revoked_at.map_or("never".into(), clock),
            );
            row(
                "seized: releases on hostile approvals",
                format!(
                    "{} before the revocation was known ({} servers opened)",
                    h.seized_releases_on_hostile_approval, h.seized_opened
                ),
            );
            row(
                "roster ops: most on a replica / bound",
                format!("{} / {}", h.max_roster_ops, h.roster_bound),
            );
        }
        let r = &self.rosters;
        row(
            "roster ops / merges run / reused",
            format!("{} / {} / {}", r.ops, r.merges_run, r.merges_reused),
        );
        row(
            "invariant checks run",
            self.invariant_checks_total.to_string(),
        );
        for (k, v) in &self.invariant_checks {
            row(&format!("  {k}"), v.to_string());
        }
        row("events", self.events.to_string());
        row("trace hash", self.trace_hash.clone());
        o
    }
}

fn fmt_map(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A failed invariant: everything needed to understand and replay it.
#[derive(Debug)]
pub struct Failure {
    pub violation: Violation,
    pub seed: u64,
    pub replay: String,
    /// The last `sim::TRACE_TAIL` trace records touching the nodes the
    /// violation names (a window of the run, not a minimised trace).
    pub trace: Vec<String>,
    pub trace_hash: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.violation;
        writeln!(f, "INVARIANT FAILED: {}", v.name)?;
        writeln!(
            f,
            "  seed {}, event #{} at {}",
            self.seed,
            v.event,
            clock(v.at)
        )?;
        writeln!(f, "  {}", v.detail)?;
        writeln!(f, "  replay: {}", self.replay)?;
        writeln!(f, "          (add --trace to print every event)")?;
        let who: Vec<String> = v
            .nodes
            .iter()
            .map(|n| crate::trace::node_name(*n))
            .collect();
        writeln!(
            f,
            "  last {} trace records touching {} (not minimised):",
            self.trace.len(),
            who.join(", ")
        )?;
        for l in &self.trace {
            writeln!(f, "    {l}")?;
        }
        Ok(())
    }
}
