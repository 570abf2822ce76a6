//! The logs scenario (logs part 2) on real nodes: every node logs and
//! replicates to 2 peers that witness it, under churn; two origins are
//! restored from an old backup. The invariants `logs.replicated-on-disk`,
//! `logs.witness-one-history` and `logs.rollback-reported` are checked
//! as the events happen (see `world::logs`).

use keyward_sim::{Config, Scenario};

#[test]
fn replication_and_witnessing_under_churn_and_restores_from_old_backups() {
    for seed in 1..=3u64 {
        let mut c = Config::new(Scenario::Logs, 8 + seed as usize * 2, 4.0, seed);
        c.reboots = 4.0;
        c.crashes = 2.0;
        let s = keyward_sim::run(c).unwrap_or_else(|f| panic!("\n{f}"));
        let l = s.logs.as_ref().expect("logs stats");
        eprintln!("seed {seed}: {l:?}");
        assert!(l.segments > 100, "seed {seed}: {l:?}");
        assert!(l.replicated_checks > 50, "seed {seed}: {l:?}");
        assert!(l.witness_records > 50, "seed {seed}: {l:?}");
        assert!(l.restores_judged >= 1, "seed {seed}: {l:?}");
        assert_eq!(l.reported, l.restores_judged, "seed {seed}: {l:?}");
        for inv in [
            "logs.replicated-on-disk",
            "logs.witness-one-history",
            "logs.rollback-reported",
        ] {
            assert!(
                s.invariant_checks[inv] > 0,
                "seed {seed}: {inv} never checked"
            );
        }
    }
}
