//! What each scenario must show, beyond the invariants.

use keyward_sim::{Config, Scenario};

#[test]
fn seized_servers_stay_locked() {
    for seed in 0..6 {
        let mut c = Config::new(Scenario::Seizure, 12, 8.0, seed);
        c.seize = 2;
        let s = keyward_sim::run(c).unwrap();
        assert_eq!(s.seized, 2, "seed {seed}");
        // powered off longer than timeout, then booted: refused, not seen
        assert!(s.refusals.get("not-seen").copied().unwrap_or(0) > 0);
        assert_eq!(
            s.locked_at_end_by.get("seized"),
            Some(&2),
            "seed {seed}: {:?}",
            s.locked_at_end_by
        );
    }
}

#[test]
fn whole_mesh_outage_needs_an_admin_then_recovers() {
    for seed in 0..6 {
        let c = Config::new(Scenario::Outage, 10, 6.0, seed);
        let t = c.threshold as u64;
        let s = keyward_sim::run(c).unwrap();
        assert!(s.passphrase >= t, "seed {seed}: {s:?}");
        assert!(s.unlocked_after_approval > 0, "seed {seed}");
        assert_eq!(
            s.locked_at_end_by.get("legitimate"),
            None,
            "seed {seed}: {s:?}"
        );
    }
}

#[test]
fn lockdown_refuses_and_revoked_nodes_are_refused_forever() {
    let mut lockdown = 0;
    let mut revoked = 0;
    for seed in 0..4 {
        let mut c = Config::new(Scenario::Lockdown, 12, 6.0, seed);
        c.reboots = 12.0;
        c.revocations = 6.0;
        let s = keyward_sim::run(c).unwrap();
        lockdown += s.refusals.get("lockdown").copied().unwrap_or(0);
        revoked += s.refusals.get("revoked").copied().unwrap_or(0);
        // A stranger's connection is refused by the transport's gate: it
        // never reaches a node, so it never gets a share.
        assert_eq!(s.strangers_released, 0);
        assert!(s.locked_at_end_by.get("revoked").copied().unwrap_or(0) <= s.revocations);
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
    c.crashes = 12.0;
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
        c.copies = 24.0;
        let s = keyward_sim::run(c).unwrap();
        assert_eq!(s.copied_released, 0, "seed {seed}: {s:?}");
        // Every refusal raises an alert, but a guardian that already
        // holds the same alert (gossiped by another guardian first) does
        // not record it twice.
        let refused = s.copied_refused.get("owner-up").copied().unwrap_or(0);
        assert!(
            s.copy_alerts > 0 && s.copy_alerts <= refused,
            "seed {seed}: {s:?}"
        );
        copies += s.copy_attacks;
    }
    assert!(copies > 0);
}
