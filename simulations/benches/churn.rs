//! Benchmark: wall time of 1000 nodes x 24 simulated hours of churn.
//!
//! `cargo bench -p keyward-sim --bench churn` (release). Optional arguments:
//! `-- --nodes N --hours H --seed S --scenario NAME`. Prints a table with the
//! wall time and events per second; it never asserts a time. With
//! `--world`, the same churn (reboots, crashes, joins, revocations) runs
//! on real `keyward_core` nodes (`keyward_sim::world`) instead.

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
    if args.iter().any(|a| a == "--world") {
        return world(nodes, hours, seed);
    }
    let start = Instant::now();
    let s = match keyward_sim::run(Config::new(scenario, nodes, hours, seed)) {
        Ok(s) => s,
        Err(f) => {
            eprint!("{f}");
            std::process::exit(1);
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let eps = s.events as f64 / wall;
    println!(
        "keyward-sim benchmark: {} nodes x {} simulated hours of {}, seed {seed}",
        nodes,
        hours,
        scenario.name()
    );
    println!("  {:<28} {:>14}", "metric", "value");
    println!("  {:<28} {:>13.2}s", "wall time", wall);
    println!("  {:<28} {:>14}", "events", s.events);
    println!("  {:<28} {:>14.0}", "events per second", eps);
    println!(
        "  {:<28} {:>14}",
        "invariant checks", s.invariant_checks_total
    );
    println!("  {:<28} {:>14}", "unlock attempts", s.unlocks.attempts);
    println!("  {:<28} {:>14}", "unlocked with shares", s.unlocks.granted);
    println!(
        "  {:<28} {:>14.1}",
        "messages per node per hour", s.messages_per_node_hour
    );
    println!("  {:<28} {:>14}", "trace hash", s.trace_hash);
    println!(
        "  goal: under 60 s on a 2-core machine -> {}",
        if wall < 60.0 { "met" } else { "NOT met" }
    );
}

/// The churn on real nodes: wall and CPU-bound figures of the world.
fn world(nodes: usize, hours: f64, seed: u64) {
    let cfg = keyward_sim::world::WorldConfig::new(nodes, hours, seed);
    let start = Instant::now();
    let s = match keyward_sim::world::World::new(cfg).run() {
        Ok(s) => s,
        Err(v) => {
            eprintln!(
                "invariant {} failed at event #{}: {}",
                v.name, v.event, v.detail
            );
            std::process::exit(1);
        }
    };
    let wall = start.elapsed().as_secs_f64();
    println!("keyward-sim benchmark (world: real nodes): {nodes} nodes x {hours} simulated hours of churn, seed {seed}");
    println!("  {:<28} {:>13.2}s", "wall time", wall);
    println!("  {:<28} {:>14}", "events", s.events);
    println!(
        "  {:<28} {:>14.0}",
        "events per second",
        s.events as f64 / wall
    );
    println!("  {:<28} {:>14}", "boots", s.boots);
    println!("  {:<28} {:>14}", "unlocked with shares", s.unlocked);
    println!(
        "  {:<28} {:>14.1}",
        "messages per node per hour", s.messages_per_node_hour
    );
    println!("  {:<28} {:>14}", "trace hash", s.trace_hash);
}
