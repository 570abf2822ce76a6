//! What a world run is given: the scenario, the mesh size, the policy,
//! the network, the churn rates, and the acts a scenario schedules.

use keyward_core::guardian::{Millis, Policy};
use serde::Serialize;

use crate::scenario::{Scenario, HOUR, SEC};

/// One run's configuration; [`Config::new`] sets a scenario's defaults,
/// [`Config::world`] a bare churn world with no admin (the world tests
/// schedule their own acts). `replay` prints every field a run depends
/// on.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub scenario: Scenario,
    pub nodes: usize,
    pub hours: f64,
    pub seed: u64,
    pub policy: Policy,
    pub latency_min: Millis,
    pub latency_max: Millis,
    /// Each machine's clock is off by a uniform amount in +-skew.
    pub skew: Millis,
    /// Shares per owner (`keyward bind --shares`) and T.
    pub guardians: usize,
    pub threshold: usize,
    /// Clean reboots and crashes per node per day.
    pub reboots: f64,
    pub crashes: f64,
    /// Joins and revocations per day, for the whole mesh.
    pub joins: f64,
    pub revocations: f64,
    /// Per day for the whole mesh: requests with a copied boot key while
    /// its node runs (threat 7), and connections from strangers.
    pub copies: f64,
    pub strangers: f64,
    /// Servers stolen per day, booted by the thief after a random delay
    /// (mean 20 min; may be shorter than timeout: the sweeps).
    pub thefts: f64,
    /// When the admins bind every node (after the mesh connected).
    pub bind_at: Millis,
    /// Rolling partitions: split 10-30 min, heal 20-60 min, again.
    pub partitions: bool,
    /// Servers seized in the seizure and hostile scenarios.
    pub seize: usize,
    /// How often an admin looks at locked nodes, approves legitimate ones
    /// and types the passphrase where the keyscript gave up (0: never).
    pub admin_review: Millis,
    /// Also run the strict checks (behaviours the design may not intend).
    pub strict: bool,
    /// Verify each roster operation's signatures once per world and hand
    /// the result to every node that asks (`Output::Verify`), instead of
    /// once per node; and share every other signature check through
    /// `keyward_core::sig_memo`. Off: every node's request is verified
    /// anew. Same run either way (a test checks).
    pub memo: bool,
    /// Print every trace record.
    #[serde(skip)]
    pub trace: bool,
    /// Testing hook: the timeout the invariants assume, if not the
    /// policy's (a wrong assumption must be caught).
    #[serde(skip)]
    pub oracle_timeout: Option<Millis>,
}

/// The name the world tests and the bench use.
pub type WorldConfig = Config;

impl Config {
    /// A scenario's run: its churn rates, an admin who reviews locked
    /// nodes every hour, and what the scenario schedules (see
    /// `World::plan`).
    pub fn new(scenario: Scenario, nodes: usize, hours: f64, seed: u64) -> Config {
        let mut c = Config::world(nodes, hours, seed);
        c.scenario = scenario;
        if matches!(
            scenario,
            Scenario::Steady | Scenario::Seizure | Scenario::Outage
        ) {
            c.reboots = 0.2;
            c.crashes = 0.0;
            c.joins = 0.0;
            c.revocations = 0.0;
            c.copies = 0.0;
            c.strangers = 0.0;
        }
        c.partitions = scenario == Scenario::Partitions;
        c.seize = 3.min(nodes / 3).max(1);
        c.admin_review = HOUR;
        c
    }

    /// Churn on a founded mesh with no admin and nothing scheduled.
    pub fn world(nodes: usize, hours: f64, seed: u64) -> Config {
        let guardians = 5.min(nodes.saturating_sub(1)).max(1);
        Config {
            scenario: Scenario::Churn,
            nodes,
            hours,
            seed,
            policy: Policy::default(),
            latency_min: 1,
            latency_max: 60,
            skew: 30 * SEC,
            guardians,
            threshold: 3.min(guardians),
            reboots: 1.0,
            crashes: 0.5,
            joins: (nodes as f64 * 0.02).max(2.0),
            revocations: (nodes as f64 * 0.01).max(2.0),
            copies: 12.0,
            strangers: 12.0,
            thefts: 0.0,
            bind_at: 30 * SEC,
            partitions: false,
            seize: 0,
            admin_review: 0,
            strict: false,
            memo: true,
            trace: false,
            oracle_timeout: None,
        }
    }

    pub fn end(&self) -> Millis {
        (self.hours * HOUR as f64) as Millis
    }

    /// keywardd's libp2p ping interval (node/src/daemon.rs).
    pub fn ping_period(&self) -> Millis {
        let p = &self.policy;
        (p.up_window / 3).clamp(500, p.interval.max(500))
    }

    /// The command line that replays this run: every field a run depends
    /// on (durations in exact units), so the replay is the same run.
    pub fn replay(&self) -> String {
        let p = &self.policy;
        let mut s = format!(
            "keyward-sim run --scenario {} --nodes {} --hours {} --seed {} --guardians {} --threshold {} --timeout {} --interval {} --extended-timeout {} --approval-delay {} --approval-window {} --up-window {} --admin-review {} --latency-ms {}..{} --skew {} --bind-at {}",
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
            self.latency_min,
            self.latency_max,
            dur(self.skew),
            dur(self.bind_at),
        );
        s += &format!(
            " --reboots {} --crashes {} --joins {} --revocations {} --strangers {} --copies {} --thefts {} --seize {}",
            self.reboots, self.crashes, self.joins, self.revocations, self.strangers, self.copies, self.thefts, self.seize
        );
        if self.partitions && self.scenario != Scenario::Partitions {
            s += " --partitions";
        }
        if let Some(t) = self.oracle_timeout {
            s += &format!(" --oracle-timeout {}", dur(t));
        }
        if self.strict {
            s += " --strict";
        }
        if !self.memo {
            s += " --no-memo";
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

/// What the world does at a time, besides messages and timers.
#[derive(Clone, Debug)]
pub enum Act {
    Reboot,
    Crash,
    /// A running member invites a new machine, which joins (and is bound
    /// by an admin a little later).
    Join,
    /// An admin on the founder revokes a member; owners it guarded are
    /// rebound by an admin.
    Revoke,
    /// An admin runs `keyward bind` (or `rebind`) on this machine.
    Bind(u32),
    /// An admin runs `keyward lockdown` / `lift` on this machine.
    Lockdown(u32),
    Lift(u32),
    /// The lockdown scenario: an admin on a running guardian locks the
    /// mesh down (`true`) or lifts it; an hour later it lifts it and
    /// reviews the locked nodes.
    AdminLock(bool),
    /// An admin runs `keyward approve <owner>` on machine `admin`.
    Approve {
        admin: u32,
        owner: u32,
    },
    /// An admin types the passphrase at machine's prompt.
    Passphrase(u32),
    /// Power goes off at this machine (no goodbye), back after `down`.
    CrashNode(u32, Millis),
    /// A running server is seized: off longer than timeout (10 min to
    /// 3 h more), then the thief boots it on the same network.
    Seize(u32),
    /// `cfg.seize` running, legitimate servers are seized at once.
    SeizeSome,
    /// A running server is stolen and booted by the thief after an
    /// exponential delay (mean 20 min); an hour later an admin revokes it.
    Theft,
    /// Every machine loses power for longer than timeout.
    Outage,
    PowerBack,
    /// After the outage: the admin types the passphrase on T guardians of
    /// one owner, then approves everyone still locked every 2 minutes.
    AdminOutage,
    ApproveLoop,
    /// The admin's review of locked nodes (periodic: again after
    /// `admin_review`; only nodes locked for 20 min or more).
    Review {
        periodic: bool,
    },
    /// An admin on the founder revokes this machine.
    RevokeNode(u32),
    /// The network splits (a minority or half the machines on one side);
    /// connections across close, dials across fail.
    Partition,
    Heal,
    /// Someone with a copy of a running node's boot key asks its
    /// guardians for shares.
    Copy,
    /// A stranger (no member, no member's boot key) connects to a
    /// guardian: the transport's gate refuses it.
    Stranger,
    /// The hostile scenario (see `world::hostile`).
    Hostile,
    HostileBurst,
    RevokeHostile,
    /// The logs scenario: a running machine whose witnesses cosigned a
    /// few checkpoints is restored from an old backup (see `world::logs`).
    RestoreLog,
}
