//! `keyward-sim`: run one scenario and print a summary, or sweep a policy
//! parameter and plot availability against safety.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use keyward_core::guardian::Millis;
use keyward_sim::scenario::SEC;
use keyward_sim::sweep::{self, Param};
use keyward_sim::{Config, Scenario};

/// The world allocates and frees small objects by the hundred million
/// (frames, roster views, per-node state); glibc's malloc spent a fifth
/// of a 5,000-node day in its own bookkeeping (consolidating and
/// unlinking free chunks). mimalloc's per-size free lists cost a fraction
/// of that. Allocation order is not part of the simulation: the same
/// seed gives the same trace with either allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keyward-sim",
    version,
    about = "Deterministic simulator of a keyward mesh running real keyward-core nodes and unlock clients: same seed, same run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario and print a summary table (or JSON).
    Run {
        #[command(flatten)]
        sim: SimArgs,
        /// Print every event of the trace as it happens.
        #[arg(long)]
        trace: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Vary timeout or threshold and plot availability against safety (SVG).
    Sweep {
        #[command(flatten)]
        sim: SimArgs,
        /// The parameter to vary.
        #[arg(long, value_enum, default_value = "timeout")]
        param: Param,
        /// Values to try (seconds for timeout); default depends on --param.
        #[arg(long, value_delimiter = ',')]
        values: Vec<u64>,
        /// Seeds per value, starting at --seed.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Where to write the plot.
        #[arg(long, default_value = "sweep.svg")]
        out: PathBuf,
        /// Print the points as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct SimArgs {
    #[arg(long, value_enum, default_value = "churn")]
    scenario: Scenario,
    #[arg(long, default_value_t = 50)]
    nodes: usize,
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Guardians per owner (default min(5, nodes-1)).
    #[arg(long)]
    guardians: Option<usize>,
    /// Shares needed, T (default min(3, guardians)).
    #[arg(long)]
    threshold: Option<usize>,
    /// Release policy timeout. Durations are seconds, or take a unit:
    /// 1500ms, 90s, 5m, 2h.
    #[arg(long, value_parser = parse_ms)]
    timeout: Option<Millis>,
    /// Ping interval (duration).
    #[arg(long, value_parser = parse_ms)]
    interval: Option<Millis>,
    #[arg(long, value_parser = parse_ms)]
    extended_timeout: Option<Millis>,
    #[arg(long, value_parser = parse_ms)]
    approval_delay: Option<Millis>,
    /// How long an admin's approval stays good (duration).
    #[arg(long, value_parser = parse_ms)]
    approval_window: Option<Millis>,
    /// How recently a node must have answered to count as up (duration).
    #[arg(long, value_parser = parse_ms)]
    up_window: Option<Millis>,
    /// How often an admin reviews locked nodes (duration; 0: never).
    #[arg(long, value_parser = parse_ms)]
    admin_review: Option<Millis>,
    /// Testing hook: the timeout the invariants assume (duration), if not
    /// the policy's; printed in replay commands so a failure it provoked
    /// replays.
    #[arg(long, value_parser = parse_ms)]
    oracle_timeout: Option<Millis>,
    /// Latency range in ms, e.g. 1..60.
    #[arg(long)]
    latency_ms: Option<String>,
    /// Largest clock skew of a machine (duration).
    #[arg(long, value_parser = parse_ms)]
    skew: Option<Millis>,
    /// When the admins bind every machine (duration).
    #[arg(long, value_parser = parse_ms)]
    bind_at: Option<Millis>,
    /// Rolling partitions in any scenario (the partitions scenario has
    /// them).
    #[arg(long)]
    partitions: bool,
    /// Servers seized (seizure and hostile scenarios).
    #[arg(long)]
    seize: Option<usize>,
    /// Reboots per node per day.
    #[arg(long)]
    reboots: Option<f64>,
    /// Crashes per node per day.
    #[arg(long)]
    crashes: Option<f64>,
    /// Joins per day.
    #[arg(long)]
    joins: Option<f64>,
    /// Revocations per day.
    #[arg(long)]
    revocations: Option<f64>,
    /// Stranger requests per day.
    #[arg(long)]
    strangers: Option<f64>,
    /// Copied-boot-key attempts per day.
    #[arg(long)]
    copies: Option<f64>,
    /// Thefts per day (booted by the thief after a random delay).
    #[arg(long)]
    thefts: Option<f64>,
    /// Also run the strict checks (see the README of the crate).
    #[arg(long)]
    strict: bool,
    /// Verify every node's roster operations itself instead of once per
    /// world (same run, slower; see `Config::memo`).
    #[arg(long)]
    no_memo: bool,
}

impl SimArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::new(self.scenario, self.nodes, self.hours, self.seed);
        if let Some(g) = self.guardians {
            anyhow::ensure!(g >= 1 && g < self.nodes, "--guardians must be 1..nodes-1");
            c.guardians = g;
            c.threshold = c.threshold.min(g);
        }
        if let Some(t) = self.threshold {
            anyhow::ensure!(
                t >= 1 && t <= c.guardians,
                "--threshold must be 1..=guardians"
            );
            c.threshold = t;
        }
        let p = &mut c.policy;
        for (v, f) in [
            (self.timeout, &mut p.timeout),
            (self.interval.map(|v| v.max(1)), &mut p.interval),
            (self.extended_timeout, &mut p.extended_timeout),
            (self.approval_delay, &mut p.approval_delay),
            (self.approval_window, &mut p.approval_window),
            (self.up_window, &mut p.up_window),
            (self.admin_review, &mut c.admin_review),
            (self.skew, &mut c.skew),
            (self.bind_at, &mut c.bind_at),
        ] {
            if let Some(v) = v {
                *f = v;
            }
        }
        c.oracle_timeout = self.oracle_timeout;
        if let Some(r) = &self.latency_ms {
            let (a, b) = r
                .split_once("..")
                .ok_or_else(|| anyhow::anyhow!("--latency-ms wants MIN..MAX, e.g. 1..60"))?;
            c.latency_min = a.trim().parse()?;
            c.latency_max = b.trim().parse()?;
            anyhow::ensure!(
                c.latency_min <= c.latency_max,
                "--latency-ms MIN..MAX with MIN <= MAX"
            );
        }
        c.partitions |= self.partitions;
        if let Some(k) = self.seize {
            c.seize = k;
        }
        for (v, f) in [
            (self.reboots, &mut c.reboots),
            (self.crashes, &mut c.crashes),
            (self.joins, &mut c.joins),
            (self.revocations, &mut c.revocations),
            (self.strangers, &mut c.strangers),
            (self.copies, &mut c.copies),
            (self.thefts, &mut c.thefts),
        ] {
            if let Some(v) = v {
                *f = v;
            }
        }
        c.strict = self.strict;
        c.memo = !self.no_memo;
        anyhow::ensure!(c.nodes >= 2, "--nodes must be at least 2");
        anyhow::ensure!(
            c.scenario != Scenario::Hostile || c.nodes >= keyward_sim::world::hostile::MIN_NODES,
            "--scenario hostile needs --nodes {} or more (a founder, honest members, a hostile auditor and a hostile guardian)",
            keyward_sim::world::hostile::MIN_NODES
        );
        Ok(c)
    }
}

/// A duration in ms: a bare number is seconds (as before), or a number
/// with a unit ms, s, m or h. Replay commands use ms where seconds would
/// round.
fn parse_ms(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: want a whole number with an optional unit ms, s, m or h"))?;
    let mult = match unit {
        "ms" => 1,
        "" | "s" => SEC,
        "m" => 60 * SEC,
        "h" => 3600 * SEC,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too long"))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyward-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().cmd {
        Cmd::Run { sim, trace, json } => {
            let mut cfg = sim.config()?;
            cfg.trace = trace;
            let start = Instant::now();
            match keyward_sim::run(cfg) {
                Ok(s) => {
                    // Wall time goes to stderr: stdout is a pure function of
                    // the config (same seed, same bytes).
                    let wall = start.elapsed().as_secs_f64();
                    eprintln!(
                        "wall time {wall:.2} s, {:.0} events per second",
                        s.events as f64 / wall.max(1e-9)
                    );
                    if json {
                        println!("{}", serde_json::to_string_pretty(&s)?);
                    } else {
                        print!("{}", s.table());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(f) => {
                    eprint!("{f}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Sweep {
            sim,
            param,
            values,
            seeds,
            out,
            json,
        } => {
            let base = sim.config()?;
            let points =
                sweep::sweep(&base, param, &values, seeds).map_err(|f| anyhow::anyhow!("{f}"))?;
            sweep::plot(&points, param, &base, &out)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&points)?);
            } else {
                print!("{}", sweep::table(&points, param));
                println!("plot written to {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
