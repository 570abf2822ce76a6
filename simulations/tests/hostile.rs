//! The hostile scenario over a few hundred seeds of small meshes: a
//! hostile auditor and a hostile guardian mint members, build chains of
//! admissions, flood rekeys, revoke honest members and approve seized
//! servers until the founder revokes them. Every invariant is on; the
//! ones this scenario is about are `release.honest-approval`,
//! `revocation.takes-effect`, `hostile.minted-never-active`,
//! `hostile.out-after-revocation`, `roster.bounded` and `roster.converge`.

use keyward_sim::{Config, Scenario};

fn small(seed: u64) -> Config {
    let nodes = 5 + (seed as usize * 7) % 8;
    let mut c = Config::new(Scenario::Hostile, nodes, 3.0, seed);
    c.reboots = 6.0;
    c.crashes = 3.0;
    c.joins = 8.0;
    c.revocations = 4.0;
    c
}

#[test]
#[ignore = "all 200 seeds pass (2026-12-05; release build: 84 s): too slow for the debug test run; `cargo test --release -p keyward-sim --test hostile -- --ignored`"]
fn a_few_hundred_seeds_of_hostile_members() {
    let (mut runs, mut moves, mut rekeys, mut approvals) = (0, 0, 0, 0);
    let (mut out_checks, mut honest_checks, mut converge) = (0, 0, 0);
    let (mut seized, mut opened, mut revoked) = (0, 0, 0);
    for seed in 0..200u64 {
        let s = keyward_sim::run(small(seed)).unwrap_or_else(|f| panic!("\n{f}"));
        let h = s.hostile.as_ref().expect("hostile stats");
        // The revocation waits for the founder's node to run.
        revoked += h.revoked_at.is_some() as u64;
        assert!(
            h.max_roster_ops <= h.roster_bound,
            "seed {seed}: {} ops on a replica, bound {}",
            h.max_roster_ops,
            h.roster_bound
        );
        seized += s.seized;
        opened += h.seized_opened;
        let c = |k: &str| s.invariant_checks.get(k).copied().unwrap_or(0);
        out_checks += c("hostile.out-after-revocation");
        honest_checks += c("release.honest-approval");
        converge += c("roster.converge");
        moves += h.moves;
        rekeys += h.rekeys;
        approvals += h.approvals_sent;
        runs += 1;
    }
    assert_eq!(runs, 200);
    // The revocation waits for the founder's node to be up: 178 of the
    // 200 runs on 2026-12-05 (180 was the bar before seed 134's fix moved
    // the traces).
    assert!(
        revoked >= 170,
        "the founder revoked them in only {revoked} runs"
    );
    // The attack really ran, and the invariants about it were evaluated.
    assert!(
        moves > 2_000 && rekeys > 20_000 && approvals > 1_000,
        "{moves} {rekeys} {approvals}"
    );
    assert!(seized > 100, "only {seized} servers seized");
    assert!(
        out_checks > 200,
        "hostile.out-after-revocation ran {out_checks} times"
    );
    assert!(converge > 10_000, "roster.converge ran {converge} times");
    println!("{runs} runs ({revoked} with the founder's revocation): {moves} hostile moves, {rekeys} rekeys, {approvals} approvals; {honest_checks} releases to seized servers judged; {seized} seized, {opened} opened by a hostile approval before its revocation was known");
}

#[test]
fn a_flood_of_rekeys_leaves_one_per_node_and_the_revocation_clears_the_roster() {
    // Seed 4: a run in which replicas write states after the founder's
    // revocations of both hostile members reached them, so the checks
    // below have states to judge (which seeds do moves with the run's
    // trajectory: seed 8 did before pings were modelled on liveness
    // connections only, the 2-minute anti-entropy activity and the
    // patient unlock retries; seed 7 before the bounded overlay).
    let mut c = Config::new(Scenario::Hostile, 12, 6.0, 4);
    c.revocations = 0.0;
    let s = keyward_sim::run(c).unwrap();
    let h = s.hostile.unwrap();
    assert!(h.rekeys > 500, "{h:?}");
    assert!(h.sybils_minted > 0 && h.auditor_mints > 0, "{h:?}");
    // Hundreds of rekeys, yet no replica ever held more than the founding,
    // the admissions and revocations issued and one rekey per node.
    assert!(h.max_roster_ops <= h.roster_bound, "{h:?}");
    assert!((h.max_roster_ops as u64) < h.rekeys / 4, "{h:?}");
    assert!(s.invariant_checks["hostile.out-after-revocation"] > 0);
    assert!(s.invariant_checks["hostile.minted-never-active"] > 0);
    assert!(s.invariant_checks["revocation.takes-effect"] > 0);
}

/// Honest members revoked by the hostile ones (before the founder revoked
/// those) never heard of it: members refused their syncs and sent them no
/// gossip, so they kept an old roster, believed themselves members and
/// formed a group of their own (`roster.converge` failed on these seeds of
/// a 12-node mesh). A revoked node that asks to sync is now answered with
/// its revocations; every member by its own roster converges.
#[test]
fn honest_members_revoked_by_hostile_ones_learn_it() {
    for seed in [11u64, 74, 79, 142] {
        let mut c = Config::new(Scenario::Hostile, 12, 6.0, seed);
        c.reboots = 1.0;
        c.crashes = 0.5;
        c.joins = 2.0;
        c.revocations = 0.0;
        let s = keyward_sim::run(c).unwrap_or_else(|f| panic!("\n{f}"));
        let h = s.hostile.as_ref().expect("hostile stats");
        assert!(h.moves > 0, "seed {seed}: no hostile move");
        assert!(
            s.invariant_checks["roster.converge"] > 100,
            "seed {seed}: roster.converge ran {} times",
            s.invariant_checks["roster.converge"]
        );
    }
}

/// Seed 134 (7 nodes): n7 joins with an invite from H2's keywardd, so the
/// founder's `keyward revoke --cascade` of H2 takes it out too. It is no
/// member to the others, nor revoked itself, so its syncs are refused;
/// it asks again with its admission chain and is answered with the
/// founder's revocation of H2 (`roster::orphans`), so it stops counting
/// itself (and H2) in: `hostile.revocation-reaches-members` is judged on
/// it and holds. Before, n7 kept the roster in which H2 was still active
/// for good (the invariant fails with the second ask taken out). The
/// world counts it out with H2 as the admin's command meant, so
/// `roster.converge` does not take its roster for a member's.
#[test]
fn a_member_invited_by_a_hostile_one_leaves_with_it() {
    let s = keyward_sim::run(small(134)).unwrap_or_else(|f| panic!("\n{f}"));
    let h = s.hostile.as_ref().expect("hostile stats");
    assert!(h.revoked_at.is_some());
    assert_eq!(h.honest_dropped_by_cascade, 1);
    assert!(s.invariant_checks["hostile.revocation-reaches-members"] > 0);
}
