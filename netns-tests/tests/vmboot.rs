//! Issue 16: a real kernel boots a real initramfs and opens its LUKS2 root
//! with a keyward mesh. keyward's `.deb` is installed into a cached Debian
//! chroot with `dpkg -i`, Debian's `update-initramfs` builds the initramfs
//! (keyward's hook adds the keyscript for the bound device by itself), and
//! qemu (TCG) boots it inside a namespace of a lab whose other nodes run
//! real keywardd guardians. The guest prints a marker read from the
//! decrypted root, so seeing it proves the data decrypted.
//!
//! One boot per scenario: all guardians up; T-1 reachable (the console
//! says why, the prompt is up within 2 s, a guardian started later
//! unlocks it in the background); seized (offline past the timeout:
//! refused, `keyward approve` unlocks it without a reboot); lockdown
//! (refused, lifted: unlocks); guardians moved while the node was off
//! (addresses on the kernel command line unlock it). Preparing the rig
//! installs, upgrades, removes and purges the package in the chroot
//! (see `keyward_netns_tests::vm_rig`). The benchmark of the same boots
//! is a binary of its own: `keyward-vmbench` (docs/boot.md).
//!
//! Skips (fails under KEYWARD_NETNS_REQUIRE=1) only without root, qemu or
//! the package mirror. Takes a few minutes: run alone with
//! `cargo test -p keyward-netns-tests --test vmboot -- --nocapture`.

use std::time::{Duration, Instant};

use keyward_netns_tests::or_skip;
use keyward_netns_tests::vm_rig::{Rig, GUARDIANS, OWNER, POLICY_TIMEOUT_S, PORT};

#[test]
fn a_real_boot_opens_the_root_through_the_mesh() {
    let t_all = Instant::now();
    let mut r = or_skip!(Rig::new());
    eprintln!("vmtest: prepared in {:?}", t_all.elapsed());
    let fwds = r.guardian_fwds(PORT);

    // 1. Seized: off longer than the timeout. Refused, with the hint to
    //    approve it by name; `keyward approve` unlocks without a reboot.
    let off = Duration::from_secs(POLICY_TIMEOUT_S + 2);
    if let Some(rest) = off.checked_sub(r.owner_stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    let mut v = r.boot(&r.initrd_keyward, "", &fwds).unwrap();
    let d = r.prompt_delay(&mut v, "seized").unwrap();
    assert!(
        d < Duration::from_secs(2),
        "seized: prompt {d:?} after the keyscript"
    );
    v.wait_for("not seen alive for", Duration::from_secs(30))
        .unwrap();
    v.wait_for(
        &format!("keyward approve node{OWNER}"),
        Duration::from_secs(30),
    )
    .unwrap();
    r.m.cli_ok(0, &["approve", &format!("node{OWNER}")])
        .unwrap();
    r.expect_marker(&mut v, "seized, then approved").unwrap();
    v.stop();
    eprintln!("vmtest: seized: refused, prompt {d:?}; approved: unlocked");

    // 2. All guardians up: unlocked by the mesh alone.
    r.owner_was_just_up().unwrap();
    let mut v = r.boot(&r.initrd_keyward, "", &fwds).unwrap();
    let t = r.expect_marker(&mut v, "all up").unwrap();
    let con = v.stop();
    // The prompt may be up already (after 0.5 s; under TCG the network and
    // the unlock take longer): the key ends it, nobody types.
    assert!(
        !con.contains("refused") && !con.contains("unreachable"),
        "all up:\n{con}"
    );
    eprintln!("vmtest: all up: marker after {t:?}");

    // 3. T-1 reachable: no unlock, the console says why, the prompt is up
    //    within 2 s; a guardian started later unlocks in the background.
    r.owner_was_just_up().unwrap();
    for i in 0..3 {
        r.m.stop(i).unwrap();
    }
    let mut v = r.boot(&r.initrd_keyward, "", &fwds).unwrap();
    let d = r.prompt_delay(&mut v, "T-1").unwrap();
    assert!(
        d < Duration::from_secs(2),
        "T-1: prompt {d:?} after the keyscript"
    );
    v.wait_for("guardian node0 unreachable", Duration::from_secs(30))
        .unwrap();
    r.m.start(0).unwrap();
    r.expect_marker(&mut v, "T-1, then a guardian came back")
        .unwrap();
    let con = v.stop();
    assert!(
        con.contains("2 valid shares of 3") || con.contains("unreachable"),
        "{con}"
    );
    r.m.start(1).unwrap();
    r.m.start(2).unwrap();
    eprintln!("vmtest: T-1: prompt {d:?} after the keyscript; unlocked once a guardian returned");

    // 4. Lockdown: refused, naming who set it; lifted: unlocks.
    r.owner_was_just_up().unwrap();
    r.lockdown().unwrap();
    let mut v = r.boot(&r.initrd_keyward, "", &fwds).unwrap();
    let d = r.prompt_delay(&mut v, "lockdown").unwrap();
    assert!(
        d < Duration::from_secs(2),
        "lockdown: prompt {d:?} after the keyscript"
    );
    v.wait_for(
        "the mesh is in lockdown (set by node1",
        Duration::from_secs(30),
    )
    .unwrap();
    r.m.cli_ok(1, &["lockdown", "--lift"]).unwrap();
    r.expect_marker(&mut v, "lockdown lifted").unwrap();
    v.stop();
    eprintln!("vmtest: lockdown: refused, prompt {d:?}; lifted: unlocked");

    // 5. The guardians moved (new port) while the node was off: the
    //    token's addresses fail; keyward.guardians= finds them.
    r.owner_was_just_up().unwrap();
    for i in 0..GUARDIANS {
        r.m.relisten(i, PORT + 1).unwrap();
    }
    let moved = r.guardian_fwds(PORT + 1);
    let given: Vec<String> = moved.iter().map(|(ip, p)| format!("{ip}:{p}")).collect();
    let both: Vec<_> = fwds.iter().chain(moved.iter()).cloned().collect();
    let mut v = r
        .boot(
            &r.initrd_keyward,
            &format!("keyward.guardians={}", given.join(",")),
            &both,
        )
        .unwrap();
    r.expect_marker(&mut v, "moved, addresses on the kernel command line")
        .unwrap();
    v.stop();
    for i in 0..GUARDIANS {
        r.m.relisten(i, PORT).unwrap();
    }
    eprintln!("vmtest: moved: unlocked with keyward.guardians=");

    eprintln!(
        "vmtest: all scenarios passed in {:?} (package install/upgrade/purge: {:?})",
        t_all.elapsed(),
        r.lifecycle
    );
}
