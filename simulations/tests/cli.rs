//! The built binary: same seed, same stdout, byte for byte, for every
//! scenario, in table and JSON form. Wall time goes to stderr, so it does
//! not break this.

use std::process::Command;

fn run(args: &[&str]) -> (Vec<u8>, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_keyward-sim"))
        .args(args)
        .output()
        .expect("the binary runs");
    (out.stdout, out.status.success())
}

#[test]
fn same_seed_same_stdout_for_every_scenario() {
    for scenario in [
        "steady",
        "churn",
        "partitions",
        "seizure",
        "outage",
        "lockdown",
    ] {
        for json in [false, true] {
            let mut args = vec![
                "run",
                "--scenario",
                scenario,
                "--nodes",
                "10",
                "--hours",
                "3",
                "--seed",
                "11",
                "--reboots",
                "6",
            ];
            if json {
                args.push("--json");
            }
            let (a, ok) = run(&args);
            assert!(ok, "{scenario}: {}", String::from_utf8_lossy(&a));
            assert!(!a.is_empty());
            let (b, _) = run(&args);
            assert!(
                a == b,
                "{scenario} (json {json}) differs between two runs:\n{}\n----\n{}",
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b)
            );
        }
    }
}
