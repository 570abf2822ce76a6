//! The world: real `Node`s and `UnlockClient`s over the virtual network,
//! clock and disk.

use keyward_sim::world::{Act, World, WorldConfig};

fn quiet(nodes: usize, hours: f64, seed: u64) -> WorldConfig {
    let mut c = WorldConfig::world(nodes, hours, seed);
    c.reboots = 0.0;
    c.crashes = 0.0;
    c.joins = 0.0;
    c.revocations = 0.0;
    c.copies = 0.0;
    c.strangers = 0.0;
    c
}

#[test]
fn a_small_mesh_binds_through_the_control_api_and_converges() {
    let s = World::new(quiet(6, 1.0, 1))
        .run()
        .unwrap_or_else(|v| panic!("{v:?}"));
    println!("{s:#?}");
    assert_eq!(s.binds, 6, "{s:?}");
    assert_eq!(s.bound_at_end, 6);
    assert_eq!(s.binds_failed, 0);
    assert!(s.traffic.pings > 0 && s.traffic.dials > 0);
}

#[test]
fn reboots_and_crashes_unlock_through_the_real_client() {
    let mut c = quiet(8, 3.0, 2);
    c.reboots = 12.0;
    c.crashes = 6.0;
    let s = World::new(c).run().unwrap_or_else(|v| panic!("{v:?}"));
    println!("{s:#?}");
    assert!(s.boots > 5, "{s:?}");
    assert!(s.unlocked > 0, "{s:?}");
    assert_eq!(s.binds, 8);
}

#[test]
fn same_seed_same_trace() {
    let mut c = WorldConfig::world(7, 2.0, 3);
    c.reboots = 12.0;
    c.crashes = 6.0;
    let a = World::new(c.clone()).run().unwrap();
    let b = World::new(c).run().unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    assert_eq!(a.traffic.messages(), b.traffic.messages());
}

#[test]
fn an_admin_whose_clock_runs_ahead_is_refused_by_the_skew_bound() {
    // Machine 1's clock is 5 min ahead: its lockdown is dated beyond
    // MAX_CLOCK_SKEW (2 min) on every other node's clock and refused
    // there, by gossip and again at every sync that carries it, until
    // their clocks are within the bound of its date (3 min later): then
    // a sync delivers it and it applies everywhere. The lockdown from a
    // machine within the bound is taken at once.
    let mut c = quiet(5, 1.0, 4);
    c.skew = 0;
    let mut w = World::new(c);
    w.machines[1].skew = 5 * 60_000;
    w.at(10 * 60_000, Act::Lockdown(1));
    let s = w.run().unwrap();
    assert!(s.admin_from_future >= 4, "{s:?}");
    assert_eq!(s.notes.get("Lockdown").copied(), Some(5), "{s:?}");
    let mut c = quiet(5, 1.0, 4);
    c.skew = 0;
    let mut w = World::new(c);
    w.machines[1].skew = 60_000;
    w.at(10 * 60_000, Act::Lockdown(1));
    let s = w.run().unwrap();
    assert_eq!(s.admin_from_future, 0, "{s:?}");
    assert!(s.notes.get("Lockdown").copied().unwrap_or(0) >= 5, "{s:?}");
}

#[test]
fn seized_servers_stay_locked_on_real_nodes() {
    for seed in 0..3 {
        let mut c = WorldConfig::world(12, 8.0, seed);
        c.reboots = 2.0;
        c.crashes = 0.0;
        let mut w = World::new(c);
        w.at(4 * 3_600_000, Act::Seize(3));
        w.at(4 * 3_600_000, Act::Seize(7));
        let s = w.run().unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
        assert_eq!(s.seized, 2, "seed {seed}");
        assert_eq!(s.seized_locked_at_end, 2, "seed {seed}: {s:?}");
        // off longer than timeout: refused as not seen
        assert!(
            s.refusals.get("not-seen").copied().unwrap_or(0) > 0,
            "{s:?}"
        );
        // checked at every unlock, and the run did not fail it
        assert!(s.invariant_checks["seizure.stays-locked"] > 0, "{s:?}");
    }
}

#[test]
fn a_lockdown_refuses_then_an_approval_after_the_lift_opens_the_disk() {
    // Machine 4 crashes during a lockdown and boots: refused as locked
    // down. After the lift it has been gone longer than timeout, so its
    // guardians refuse it as not seen, until an admin approves it; the
    // approval travels as a signed admin message by gossip.
    let h = 3_600_000;
    let mut c = quiet(8, 3.0, 5);
    c.skew = 10_000;
    let mut w = World::new(c);
    w.at(h, Act::Lockdown(0));
    w.at(h + 5 * 60_000, Act::CrashNode(4, 60_000));
    w.at(h + 30 * 60_000, Act::Lift(0));
    w.at(h + 32 * 60_000, Act::Approve { admin: 0, owner: 4 });
    let s = w.run().unwrap_or_else(|v| panic!("{v:?}"));
    assert!(
        s.refusals.get("lockdown").copied().unwrap_or(0) > 0,
        "{s:?}"
    );
    assert!(
        s.refusals.get("not-seen").copied().unwrap_or(0) > 0,
        "{s:?}"
    );
    assert_eq!(s.boots, 1, "{s:?}");
    assert_eq!(s.unlocked, 1, "{s:?}");
    assert_eq!(s.locked_at_end, 0, "{s:?}");
    assert!(s.unlock_median_ms > 25 * 60_000, "{s:?}");
}

#[test]
fn churn_with_joins_and_revocations_over_a_few_seeds() {
    // Joins through invite and join on the control API, revocations by
    // an admin on the founder, owners rebound by an admin, reboots and
    // crashes: the release checks, key-correct, seizure and convergence
    // hold on every seed.
    let (mut joins, mut revoked, mut refused_revoked, mut unlocked) = (0, 0, 0, 0);
    let mut alive_checks = 0;
    for seed in 0..6 {
        let mut c = WorldConfig::world(7 + seed as usize, 4.0, seed);
        c.reboots = 8.0;
        c.crashes = 4.0;
        c.joins = 8.0;
        c.revocations = 8.0;
        let s = World::new(c)
            .run()
            .unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
        assert_eq!(s.ctl_failed, 0, "seed {seed}: {s:?}");
        joins += s.joins;
        revoked += s.revocations;
        refused_revoked += s.refusals.get("revoked").copied().unwrap_or(0);
        unlocked += s.unlocked;
        alive_checks += s.invariant_checks["release.alive-within-timeout"];
    }
    assert!(
        joins > 5 && revoked > 4 && unlocked > 20,
        "{joins} {revoked} {unlocked}"
    );
    assert!(refused_revoked > 0, "no revoked node asked again");
    assert!(
        alive_checks > 20,
        "release.alive-within-timeout ran {alive_checks} times"
    );
}

#[test]
fn rolling_partitions_with_churn() {
    let mut parts = 0;
    for seed in 0..3 {
        let mut c = WorldConfig::world(10, 5.0, seed);
        c.partitions = true;
        c.reboots = 6.0;
        c.crashes = 3.0;
        let s = World::new(c)
            .run()
            .unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
        parts += s.partitions;
        assert!(s.unlocked > 0, "seed {seed}: {s:?}");
    }
    assert!(parts >= 3, "{parts}");
}

#[test]
fn a_wrong_policy_assumption_is_caught_on_real_nodes() {
    // The invariants assume a 1-minute timeout while the guardians use
    // 5: a release to a node that crashed for a few minutes is flagged.
    let mut c = quiet(8, 6.0, 5);
    c.crashes = 12.0;
    c.oracle_timeout = Some(60_000);
    let v = World::new(c).run().unwrap_err();
    assert_eq!(v.violation.name, "release.alive-within-timeout", "{v}");
}

#[test]
fn a_few_dozen_seeds_of_small_meshes_on_real_nodes() {
    let mut checks = 0;
    for seed in 0..30u64 {
        let nodes = 5 + (seed as usize * 7) % 8;
        let mut c = WorldConfig::world(nodes, 3.0, seed);
        c.reboots = 6.0;
        c.crashes = 3.0;
        c.joins = 8.0;
        c.revocations = 4.0;
        c.partitions = seed % 2 == 1;
        let s = World::new(c)
            .run()
            .unwrap_or_else(|v| panic!("seed {seed} ({nodes} nodes): {v:?}"));
        checks += s.invariant_checks.values().sum::<u64>();
    }
    assert!(checks > 500, "only {checks} invariant checks ran");
}

#[test]
fn a_copied_boot_key_gets_nothing_while_its_node_runs_on_real_nodes() {
    // Threat 7: no partitions, so the attacked owner runs and its
    // connections answer pings; its guardians refuse it as up and raise
    // an alert, which they gossip signed with the request as evidence.
    let (mut attempts, mut up, mut alerts) = (0, 0, 0);
    for seed in 0..4 {
        let mut c = WorldConfig::world(10, 4.0, seed);
        c.copies = 24.0;
        let s = World::new(c)
            .run()
            .unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
        assert_eq!(s.copied_released, 0, "seed {seed}: {s:?}");
        attempts += s.copy_attacks;
        up += s.copied_refused.get("owner-up").copied().unwrap_or(0);
        alerts += s.notes.get("Alert").copied().unwrap_or(0);
    }
    assert!(
        attempts > 5 && up > 0 && alerts > 0,
        "{attempts} {up} {alerts}"
    );
}
