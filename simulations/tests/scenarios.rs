//! What each scenario must show, beyond the invariants.

use keyward_sim::{Config, Scenario};

#[test]
fn seized_servers_stay_locked() {
    for seed in 0..6 {
        let mut c = Config::new(Scenario::Seizure, 12, 8.0, seed);
        c.seize = 2;
        let s = keyward_sim::run(c).unwrap();
        assert_eq!(s.churn.seized, 2, "seed {seed}");
        // powered off longer than timeout, then booted: refused, not seen
        assert!(s.requests.refused.get("not-seen").copied().unwrap_or(0) > 0);
        assert_eq!(
            s.unlocks.locked_at_end.get("seized"),
            Some(&2),
            "seed {seed}: {:?}",
            s.unlocks
        );
    }
}

#[test]
fn whole_mesh_outage_needs_an_admin_then_recovers() {
    for seed in 0..6 {
        let c = Config::new(Scenario::Outage, 10, 6.0, seed);
        let t = c.threshold as u64;
        let s = keyward_sim::run(c).unwrap();
        assert!(s.unlocks.passphrase >= t, "seed {seed}: {:?}", s.unlocks);
        assert!(s.unlocks.granted_after_approval > 0, "seed {seed}");
        assert_eq!(
            s.unlocks.locked_at_end.get("legitimate"),
            None,
            "seed {seed}: {:?}",
            s.unlocks
        );
    }
}

#[test]
fn lockdown_refuses_and_revoked_nodes_are_refused_forever() {
    let mut lockdown = 0;
    let mut revoked = 0;
    for seed in 0..4 {
        let mut c = Config::new(Scenario::Lockdown, 12, 6.0, seed);
        c.rates.reboots = 12.0;
        c.rates.revocations = 6.0;
        let s = keyward_sim::run(c).unwrap();
        lockdown += s.requests.refused.get("lockdown").copied().unwrap_or(0);
        revoked += s.requests.refused.get("revoked").copied().unwrap_or(0);
        assert_eq!(s.probes.stranger_released, 0);
        assert!(
            s.unlocks.locked_at_end.get("revoked").copied().unwrap_or(0) <= s.churn.revocations
        );
    }
    assert!(
        lockdown > 0 && revoked > 0,
        "lockdown {lockdown}, revoked {revoked}"
    );
}

#[test]
fn a_wrong_policy_assumption_is_caught_with_seed_event_and_trace() {
    // The invariants assume a 1-minute timeout while guardians use 5:
    // some release must be flagged, reported and replayable.
    let mut c = Config::new(Scenario::Churn, 8, 6.0, 5);
    c.rates.crashes = 12.0;
    c.oracle_timeout = Some(60_000);
    let f = keyward_sim::run(c.clone()).unwrap_err();
    assert_eq!(f.violation.name, "release.alive-within-timeout");
    let text = f.to_string();
    assert!(text.contains("seed 5, event #"), "{text}");
    assert!(
        text.contains("replay: keyward-sim run --scenario churn --nodes 8 --hours 6 --seed 5"),
        "{text}"
    );
    assert!(text.contains("RELEASE"), "{text}");
    let again = keyward_sim::run(c).unwrap_err();
    assert_eq!(
        again.violation.event, f.violation.event,
        "the seed replays it"
    );
    assert_eq!(again.trace, f.trace);
}

#[test]
fn a_copied_boot_key_gets_nothing_while_its_node_runs_and_answers() {
    // Threat 7: no partitions here, so every owner attacked is running and
    // connected to its guardians; its connection answers, so they refuse.
    let mut copies = 0;
    for seed in 0..4 {
        let mut c = Config::new(Scenario::Churn, 12, 6.0, seed);
        c.rates.copies = 24.0;
        let s = keyward_sim::run(c).unwrap();
        assert_eq!(
            s.probes.copied_key_requests_released, 0,
            "seed {seed}: {:?}",
            s.probes
        );
        assert_eq!(
            s.probes.copied_key_refused.get("owner-up").copied(),
            Some(s.probes.boot_key_alerts)
        );
        copies += s.probes.copied_key_attempts;
    }
    assert!(copies > 0);
}
