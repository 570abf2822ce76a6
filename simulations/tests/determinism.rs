//! Same seed, same run, byte for byte.

use keyward_sim::{Config, Scenario};

fn cfg(scenario: Scenario, seed: u64) -> Config {
    let mut c = Config::new(scenario, 9, 4.0, seed);
    c.reboots = 6.0;
    c.crashes = 3.0;
    c.joins = 6.0;
    c.revocations = 3.0;
    c
}

fn json(s: &keyward_sim::Summary) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
fn same_seed_same_trace_and_summary() {
    for scenario in [
        Scenario::Churn,
        Scenario::Partitions,
        Scenario::Outage,
        Scenario::Hostile,
    ] {
        let (a, b) = (
            keyward_sim::run(cfg(scenario, 42)),
            keyward_sim::run(cfg(scenario, 42)),
        );
        let c = keyward_sim::run(cfg(scenario, 43));
        match (a, b, c) {
            (Ok(a), Ok(b), Ok(c)) => {
                assert_eq!(a.trace_hash, b.trace_hash, "{scenario:?}");
                assert_eq!(json(&a), json(&b), "{scenario:?}");
                assert_ne!(a.trace_hash, c.trace_hash, "another seed, another run");
            }
            // On real nodes the hostile scenario can fail roster.converge
            // (seed 43 here; see tests/hostile.rs and the issue 15
            // report): a failing run must replay the same failure.
            (a, b, Err(f)) if scenario == Scenario::Hostile => {
                let again = keyward_sim::run(cfg(scenario, 43)).unwrap_err();
                assert_eq!(f.violation.event, again.violation.event);
                assert_eq!(f.trace, again.trace);
                let (a, b) = (a.unwrap(), b.unwrap());
                assert_eq!(a.trace_hash, b.trace_hash, "{scenario:?}");
                assert_eq!(json(&a), json(&b), "{scenario:?}");
            }
            (a, b, c) => panic!("{scenario:?}: {:?} {:?} {:?}", a.err(), b.err(), c.err()),
        }
    }
}

#[test]
fn the_verification_memo_changes_nothing() {
    // The old model shared hash-consed roster replicas between nodes;
    // real nodes each keep their own roster, so that test has no subject
    // left. What the world shares is the verification of roster
    // operations (`Config::memo`): it must behave exactly like every
    // node verifying for itself.
    for scenario in [Scenario::Churn, Scenario::Hostile] {
        for seed in [1, 2, 3] {
            let a = keyward_sim::run(cfg(scenario, seed)).unwrap();
            let mut c = cfg(scenario, seed);
            c.memo = false;
            let b = keyward_sim::run(c).unwrap();
            assert_eq!(a.trace_hash, b.trace_hash, "{scenario:?} seed {seed}");
            assert_eq!(a.unlocked, b.unlocked);
            assert_eq!(a.events, b.events);
        }
    }
}
