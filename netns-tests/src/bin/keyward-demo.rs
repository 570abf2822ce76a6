//! keyward-demo: a local mesh of five real daemons on 127.0.0.1, a real
//! LUKS2 image bound 3-of-4, and the unlock path walked through: reboot,
//! copied boot key, seizure and approval, lockdown. Nothing leaves
//! loopback (mDNS is off) and everything is removed at the end.

use std::time::{Duration, Instant};

use anyhow::Result;
use keyward_netns_tests::mesh::{have_cryptsetup, Mesh, MeshOptions};

fn step(s: &str) {
    println!("\n\x1b[1m== {s}\x1b[0m");
}

fn show(o: &std::process::Output) {
    print!("{}", String::from_utf8_lossy(&o.stdout));
    for l in String::from_utf8_lossy(&o.stderr).lines() {
        println!("  | {l}");
    }
}

/// The demo's one system dependency: as root on Debian, installs
/// cryptsetup-bin (it says so first); otherwise says how.
fn ensure_cryptsetup() -> bool {
    if have_cryptsetup() {
        return true;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && std::path::Path::new("/usr/bin/apt-get").exists() {
        println!("cryptsetup is not installed: apt-get install cryptsetup-bin");
        let apt = |args: &[&str]| {
            std::process::Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        let install = [
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "cryptsetup-bin",
        ];
        // A fresh machine may have no package lists yet.
        let ok = apt(&install) || (apt(&["update", "-qq"]) && apt(&install));
        if ok && have_cryptsetup() {
            return true;
        }
    }
    println!("\ncryptsetup is not installed (as root: apt install cryptsetup-bin): skipping the disk part of the demo");
    false
}

fn main() -> Result<()> {
    let opts = MeshOptions {
        policy: "interval = 1\ntimeout = 5\nextended_timeout = 5\nup_window = 2\n".into(),
        mdns: false,
    };
    let mut m = Mesh::loopback(5, &opts)?;
    step("five nodes: `keyward init`, keywardd, `keyward invite` / `keyward join`");
    let t = Instant::now();
    m.form()?;
    println!(
        "mesh formed and converged in {} ms",
        t.elapsed().as_millis()
    );
    print!("{}", m.cli_ok(0, &["status"])?);

    if !ensure_cryptsetup() {
        return Ok(());
    }
    step("node4 binds its LUKS2 image: new random key, 3-of-4 shares sealed to its boot key");
    m.make_image(4)?;
    print!("{}", m.bind(4, &[])?);

    step("a copy of node4's boot key, used elsewhere while node4 runs, is refused and the mesh raises an alert");
    let (img, boot) = (m.dir(4).join("disk.img"), m.dir(4).join("boot.key"));
    let (img, boot) = (img.to_string_lossy(), boot.to_string_lossy());
    show(&m.cli(
        0,
        &[
            "unlock",
            "--check",
            "--timeout",
            "1s",
            "--device",
            &img,
            "--boot-key",
            &boot,
        ],
    )?);
    std::thread::sleep(Duration::from_millis(300));
    let v = m.status(0)?;
    for a in &v.alerts {
        println!("node0 alert: {}", a.text);
    }

    step("node4 reboots cleanly: its initramfs asks the guardians with only the boot key");
    m.stop(4)?;
    let t = Instant::now();
    let o = m.unlock(4, "10s")?;
    show(&o);
    println!(
        "unlock took {} ms (process start to key checked against the image)",
        t.elapsed().as_millis()
    );
    m.start(4)?;

    step("node4 is seized: off the network longer than the timeout (5 s), then booted");
    m.kill(4);
    std::thread::sleep(Duration::from_secs(6));
    show(&m.unlock(4, "1s")?);
    println!("an admin on node1 vouches for it: keyward approve node4");
    print!("{}", m.cli_ok(1, &["approve", "node4"])?);
    show(&m.unlock(4, "10s")?);

    step("lockdown from node2 refuses every unlock mesh-wide, until lifted");
    print!("{}", m.cli_ok(2, &["lockdown"])?);
    std::thread::sleep(Duration::from_millis(500));
    show(&m.unlock(4, "1s")?);
    print!("{}", m.cli_ok(3, &["lockdown", "--lift"])?);

    step("what node0 saw (keyward status)");
    print!("{}", m.cli_ok(0, &["status"])?);
    for i in 0..4 {
        m.stop(i)?;
    }
    println!("\ndemo done: daemons stopped, temporary files removed");
    Ok(())
}
