//! The replay command printed with a failure reproduces the exact config:
//! run through the binary, it gives the library run's summary, byte for
//! byte, even with durations that are not whole seconds.

use std::process::Command;

use keyward_sim::{Config, Scenario};

#[test]
fn replay_command_reproduces_the_exact_run() {
    let mut c = Config::new(Scenario::Partitions, 9, 3.0, 17);
    c.policy.timeout = 250_500;
    c.policy.interval = 7_500;
    c.policy.up_window = 20_250;
    c.policy.approval_window = 601_000;
    c.admin_review = 45 * 60_000 + 500;
    // The old model's sync interval, fanout, message loss and guardian
    // placement are gone: real nodes run their own sync timer, gossip
    // floods, libp2p runs over TCP (a connection drops, a message is not
    // lost alone), and guardians are chosen as `keyward bind` chooses
    // them. The world's own knobs take their place here.
    c.skew = 12_345;
    c.bind_at = 40_500;
    c.latency_min = 3;
    c.latency_max = 45;
    c.reboots = 5.5;
    let want = serde_json::to_string_pretty(&keyward_sim::run(c.clone()).unwrap()).unwrap();
    let replay = c.replay();
    let args: Vec<&str> = replay
        .strip_prefix("keyward-sim ")
        .expect("starts with the binary")
        .split_whitespace()
        .chain(["--json"])
        .collect();
    assert!(replay.contains("--timeout 250500ms"), "{replay}");
    assert!(replay.contains("--skew 12345ms"), "{replay}");
    let out = Command::new(env!("CARGO_BIN_EXE_keyward-sim"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{replay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        want,
        "{replay}"
    );
}

#[test]
fn replay_of_a_failure_names_the_oracle_timeout() {
    let mut c = Config::new(Scenario::Churn, 8, 6.0, 5);
    c.crashes = 12.0;
    c.oracle_timeout = Some(60_000);
    let f = keyward_sim::run(c).unwrap_err();
    assert!(f.replay.contains("--oracle-timeout 60s"), "{}", f.replay);
    let args: Vec<&str> = f
        .replay
        .strip_prefix("keyward-sim ")
        .unwrap()
        .split_whitespace()
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_keyward-sim"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("event #{}", f.violation.event)),
        "{err}"
    );
}
