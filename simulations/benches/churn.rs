//! Benchmark: wall time of N nodes x H simulated hours of churn on real
//! `keyward_core` nodes and unlock clients (`keyward_sim::world`).
//!
//! `cargo bench -p keyward-sim --bench churn` (release). Optional arguments:
//! `-- --nodes N --hours H --seed S --scenario NAME --no-memo`. Prints a
//! table with the wall time, events per second and what keywardd sends
//! per node per hour (dials, libp2p pings, requests and responses,
//! gossip); it never asserts a time. `--profile` adds where the wall
//! time went (verification, node handling, the rest).

use std::time::Instant;

use keyward_sim::{Config, Scenario};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes = arg(&args, "--nodes", 1000usize);
    let hours = arg(&args, "--hours", 24.0f64);
    let seed = arg(&args, "--seed", 7u64);
    let scenario = match arg(&args, "--scenario", "churn".to_string()).as_str() {
        "steady" => Scenario::Steady,
        "partitions" => Scenario::Partitions,
        "seizure" => Scenario::Seizure,
        "outage" => Scenario::Outage,
        "lockdown" => Scenario::Lockdown,
        "hostile" => Scenario::Hostile,
        _ => Scenario::Churn,
    };
    let mut cfg = Config::new(scenario, nodes, hours, seed);
    cfg.memo = !args.iter().any(|a| a == "--no-memo");
    let start = Instant::now();
    let s = match keyward_sim::run(cfg) {
        Ok(s) => s,
        Err(f) => {
            eprint!("{f}");
            std::process::exit(1);
        }
    };
    let wall = start.elapsed().as_secs_f64();
    println!(
        "keyward-sim benchmark (real nodes): {nodes} nodes x {hours} simulated hours of {}, seed {seed}",
        scenario.name()
    );
    println!("  {:<34} {:>14}", "metric", "value");
    println!("  {:<34} {:>13.2}s", "wall time", wall);
    println!("  {:<34} {:>14}", "events", s.events);
    println!(
        "  {:<34} {:>14.0}",
        "events per second",
        s.events as f64 / wall
    );
    println!(
        "  {:<34} {:>14}",
        "invariant checks", s.invariant_checks_total
    );
    println!("  {:<34} {:>14}", "boots", s.boots);
    println!("  {:<34} {:>14}", "unlocked with shares", s.unlocked);
    println!(
        "  {:<34} {:>14.1}",
        "messages per node per hour", s.messages_per_node_hour
    );
    for (k, v) in &s.per_node_hour {
        println!("  {:<34} {:>14.1}", format!("  of which {k}"), v);
    }
    println!("  {:<34} {:>14}", "trace hash", s.trace_hash);
    println!(
        "  goal (1000 nodes x 24 h): under 60 s on a 2-core machine -> {}",
        if nodes >= 1000 && hours >= 24.0 {
            if wall < 60.0 {
                "met"
            } else {
                "NOT met"
            }
        } else {
            "not this run"
        }
    );
}
