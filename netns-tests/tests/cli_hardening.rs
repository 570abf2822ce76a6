//! Real daemons on loopback, attacking the CLI's weak spots (issue 20):
//! - M5: two members share a name; a command naming it must refuse and
//!   list both by id instead of acting on whichever sorts first.
//! - M7: a boot-key change must announce the new key only once its shares
//!   are held, and the old key must keep the node bootable until the
//!   initramfs carries the new one and the old epoch is dropped.
//! - L4: an interrupted bind leaves shares and a keyslot nobody uses;
//!   `keyward epochs` lists them and drops them, `status` and `bind` say so.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use keyward_netns_tests::mesh::{bins, have_cryptsetup, Mesh, MeshOptions};
use keyward_netns_tests::{report_skip, LuksDump, Skip};
use keyward_node::control::MemberStatus;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn id(m: &Mesh, i: usize) -> String {
    m.status(i).unwrap().node.id
}

/// Node `i`'s view of `owner`'s roster record.
fn record(m: &Mesh, i: usize, owner_id: &str) -> Option<MemberStatus> {
    m.status(i).ok()?.member(owner_id).cloned()
}

/// Epochs of `owner`'s shares that node `i` holds as its guardian.
fn held_epochs(m: &Mesh, i: usize, owner_id: &str) -> Vec<u64> {
    record(m, i, owner_id)
        .map(|x| x.holds_shares_epochs)
        .unwrap_or_default()
}

/// Renames node `i` in its config (before `init`).
fn rename(m: &Mesh, i: usize, name: &str) {
    let cfg = m.dir(i).join("keyward.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        &format!("name = \"node{i}\""),
        &format!("name = \"{name}\""),
    );
    assert!(text.contains(&format!("name = \"{name}\"")), "{text}");
    std::fs::write(&cfg, text).unwrap();
}

#[test]
fn a_name_two_members_share_is_refused_with_both_ids_and_the_id_works() {
    let mut m = Mesh::loopback(5, &MeshOptions::default()).unwrap();
    m.form_nodes(&[0, 1, 2]).unwrap();
    rename(&m, 3, "web1");
    rename(&m, 4, "web1");
    m.init(3, None).unwrap();
    m.init(4, None).unwrap();
    // Two inviters that cannot see each other each admit a `web1`: the
    // inviter's own duplicate check cannot catch that, so the roster ends
    // up with two members of one name (an impostor can do the same).
    m.stop(1).unwrap();
    m.start(3).unwrap();
    m.join(3, 0).unwrap();
    let web1_a = id(&m, 3);
    m.wait_for(Duration::from_secs(10), || {
        Ok(record(&m, 2, &web1_a).is_some())
    })
    .unwrap();
    for i in [0, 2, 3] {
        m.stop(i).unwrap();
    }
    m.start(1).unwrap();
    m.start(4).unwrap();
    m.join(4, 1).unwrap();
    let web1_b = id(&m, 4);
    assert!(
        record(&m, 1, &web1_a).is_none(),
        "node1 never heard of the first web1"
    );
    for i in [0, 2, 3] {
        m.start(i).unwrap();
    }
    m.wait_for(Duration::from_secs(30), || {
        Ok((0..5).all(|i| m.status(i).map(|v| v.members.len() == 5).unwrap_or(false)))
    })
    .unwrap();
    assert!(record(&m, 2, &web1_a).unwrap().name == "web1");
    assert!(record(&m, 2, &web1_b).unwrap().name == "web1");

    let st = m.cli_ok(2, &["status"]).unwrap();
    assert!(st.contains("2 members are named web1"), "{st}");
    // Every command naming `web1` refuses, lists both by id, does nothing.
    for cmd in [
        vec!["deny", "web1"],
        vec!["approve", "web1"],
        vec!["revoke", "web1"],
    ] {
        let o = m.cli(2, &cmd).unwrap();
        let e = stderr(&o);
        assert!(!o.status.success(), "{cmd:?}: {e}");
        assert!(e.contains("`web1` names 2 nodes"), "{cmd:?}: {e}");
        assert!(e.contains("nothing was done"), "{cmd:?}: {e}");
        for full in [&web1_a, &web1_b] {
            assert!(e.contains(full.as_str()), "{cmd:?} lists {full}: {e}");
            assert!(e.contains(&full[full.len() - 8..]), "{cmd:?}: {e}");
        }
        assert!(e.contains("guardian") && e.contains("active"), "{e}");
    }
    assert_eq!(m.status(2).unwrap().revoked, Vec::<String>::new());
    // By id, each acts on exactly the node meant.
    let out = m.cli_ok(2, &["deny", &web1_b]).unwrap();
    assert!(out.contains(&format!("denied {web1_b}")), "{out}");
    let out = m.cli_ok(2, &["revoke", &web1_a]).unwrap();
    assert!(out.contains(&web1_a), "{out}");
    m.wait_for(Duration::from_secs(10), || {
        Ok(m.status(0)?.revoked.contains(&web1_a))
    })
    .unwrap();
    assert!(record(&m, 0, &web1_b).is_some(), "the other web1 stays");
    // With one left active, the name is unique again among active members.
    let out = m.cli_ok(0, &["approve", "web1"]).unwrap();
    assert!(out.contains("approved web1"), "{out}");
}

/// A formed mesh of 5 where node 4 has bound its image 3-of-4.
fn bound() -> Option<Mesh> {
    if !have_cryptsetup() {
        report_skip(&Skip("cryptsetup not installed".into()));
        return None;
    }
    let mut m = Mesh::loopback(5, &MeshOptions::default()).unwrap();
    m.form().unwrap();
    m.make_image(4).unwrap();
    let out = m.bind(4, &[]).unwrap();
    assert!(out.contains("3-of-4") && out.contains("epoch 1"), "{out}");
    Some(m)
}

fn keyslots(img: &Path) -> Vec<String> {
    let dump = Command::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata", s(img)])
        .output()
        .unwrap();
    let meta: LuksDump = serde_json::from_slice(&dump.stdout).unwrap();
    meta.keyslots.into_keys().collect()
}

/// What keyward's initramfs hook records after copying the boot key.
fn run_update_initramfs(boot_key: &Path) {
    let o = Command::new("sha256sum").arg(boot_key).output().unwrap();
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    let h = h.split_whitespace().next().unwrap();
    std::fs::write(
        format!("{}.initramfs", boot_key.display()),
        format!("{h}\n"),
    )
    .unwrap();
}

fn unlock_with(m: &Mesh, i: usize, img: &Path, boot: &Path, timeout: &str) -> std::process::Output {
    m.cli(
        i,
        &[
            "unlock",
            "--check",
            "--timeout",
            timeout,
            "--device",
            s(img),
            "--boot-key",
            s(boot),
        ],
    )
    .unwrap()
}

#[test]
fn a_rebind_whose_deposit_fails_announces_no_new_boot_key_and_the_node_still_boots() {
    let Some(mut m) = bound() else { return };
    let d = m.dir(4).to_path_buf();
    let (img, pass) = (d.join("disk.img"), d.join("passphrase"));
    let me = id(&m, 4);
    let before = record(&m, 0, &me).unwrap().boot;
    // one of the four guardians is down: the deposit cannot complete
    m.stop(3).unwrap();
    let o = m
        .cli(
            4,
            &[
                "rebind",
                "--new-boot-key",
                "--shares",
                "4",
                "--device",
                s(&img),
                "--key-file",
                s(&pass),
            ],
        )
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("did not store their share"), "{e}");
    // why, as the dial said it (not request-response's bare "Failed to dial")
    assert!(
        e.contains("node3: unreachable: could not connect: /ip4/")
            && e.contains("Connection refused"),
        "{e}"
    );
    assert!(e.contains("no new boot key was announced"), "{e}");
    assert!(!e.contains("announced to the mesh"), "{e}");
    // nothing changed in the mesh: the roster still has the old boot key
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..3 {
        assert_eq!(record(&m, i, &me).unwrap().boot, before, "node{i}");
        assert_eq!(held_epochs(&m, i, &me), [1], "node{i} dropped epoch 2");
    }
    assert!(d.join("boot.key.new").exists(), "kept for the next run");
    assert_eq!(keyslots(&img).len(), 2);
    // the next reboot unlocks with the boot key the initramfs has
    m.start(3).unwrap();
    m.converge(Duration::from_secs(20)).unwrap();
    m.stop(4).unwrap();
    let o = m.unlock(4, "10s").unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn rebind_with_a_new_boot_key_keeps_the_old_key_working_until_its_epoch_is_dropped() {
    let Some(mut m) = bound() else { return };
    let d = m.dir(4).to_path_buf();
    let (img, pass, boot) = (d.join("disk.img"), d.join("passphrase"), d.join("boot.key"));
    let copied = d.join("copied-boot.key");
    std::fs::copy(&boot, &copied).unwrap();
    let me = id(&m, 4);
    let before = record(&m, 0, &me).unwrap().boot;
    let out = m
        .cli(
            4,
            &[
                "rebind",
                "--new-boot-key",
                "--device",
                s(&img),
                "--key-file",
                s(&pass),
            ],
        )
        .unwrap();
    let e = stderr(&out);
    assert!(out.status.success(), "{e}");
    assert!(e.contains("update-initramfs -u"), "{e}");
    assert!(e.contains("keyward drop-epoch 1"), "{e}");
    assert!(!d.join("boot.key.new").exists());
    // the mesh learnt the new key (after the shares were held)
    m.wait_for(Duration::from_secs(10), || {
        Ok((0..4).all(|i| record(&m, i, &me).is_some_and(|r| r.boot != before)))
    })
    .unwrap();
    // status says what is left to do; retiring early is refused
    let st = m.cli_ok(4, &["status"]).unwrap();
    assert!(
        st.contains("TO DO") && st.contains("update-initramfs -u"),
        "{st}"
    );
    let o = m
        .cli(4, &["drop-epoch", "1", "--key-file", s(&pass)])
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("update-initramfs -u` first"),
        "{}",
        stderr(&o)
    );
    let o = m
        .cli(4, &["drop-epoch", "2", "--key-file", s(&pass)])
        .unwrap();
    assert!(stderr(&o).contains("is what"), "{}", stderr(&o));

    // Until then the old key (the one in the initramfs) still opens the
    // disk: a reboot now must not be refused. The new one opens it too.
    m.stop(4).unwrap();
    let o = unlock_with(&m, 4, &img, &copied, "10s");
    assert!(
        o.status.success(),
        "old key before the drop: {}",
        stderr(&o)
    );
    let o = m.unlock(4, "10s").unwrap();
    assert!(o.status.success(), "new key: {}", stderr(&o));

    // update-initramfs ran: status now points at the drop
    run_update_initramfs(&boot);
    m.start(4).unwrap();
    m.converge(Duration::from_secs(20)).unwrap();
    let st = m.cli_ok(4, &["status"]).unwrap();
    assert!(st.contains("run `keyward drop-epoch 1`"), "{st}");
    // a thief's copy of the disk taken before the drop
    let stolen = d.join("stolen.img");
    std::fs::copy(&img, &stolen).unwrap();
    let out = m
        .cli_ok(4, &["drop-epoch", "1", "--key-file", s(&pass)])
        .unwrap();
    assert!(out.contains("dropped epoch 1"), "{out}");
    m.wait_for(Duration::from_secs(5), || {
        Ok((0..4).all(|i| !held_epochs(&m, i, &me).contains(&1)))
    })
    .unwrap();
    assert_eq!(keyslots(&img).len(), 2, "passphrase + the new keyward slot");
    let st = m.cli_ok(4, &["status"]).unwrap();
    assert!(!st.contains("TO DO"), "{st}");

    // now the copied boot key is worthless, on the disk and on the copy
    m.stop(4).unwrap();
    let o = unlock_with(&m, 4, &img, &copied, "1s");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not signed by the owner's boot key"),
        "{}",
        stderr(&o)
    );
    // (the guardians no longer hold epoch 1, so the request is checked
    // against the roster's key, the new one)
    let o = unlock_with(&m, 4, &stolen, &copied, "1s");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not signed by the owner's boot key"),
        "{}",
        stderr(&o)
    );
    // the node's new boot key works
    let o = m.unlock(4, "10s").unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn an_interrupted_bind_is_noticed_listed_and_cleaned_by_keyward_epochs() {
    let Some(mut m) = bound() else { return };
    let d = m.dir(4).to_path_buf();
    let pass = d.join("passphrase");
    let img2 = d.join("disk2.img");
    std::fs::File::create(&img2)
        .unwrap()
        .set_len(20 << 20)
        .unwrap();
    let dev2 = keyward_node::luks::Device::new(&img2);
    dev2.format_for_tests(&std::fs::read(&pass).unwrap())
        .unwrap();
    let me = id(&m, 4);
    // A guardian hangs, so the bind waits in its deposit step with the
    // other guardians already holding their shares; then the bind dies
    // (power cut, Ctrl-C).
    m.signal(3, libc::SIGSTOP).unwrap();
    let mut child = Command::new(&bins().keyward)
        .env("KEYWARD_CONFIG", d.join("keyward.toml"))
        // a one-machine mesh, as `Mesh::cli` runs every other command
        .env("KEYWARD_ALLOW_LOOPBACK", "true")
        .args(["bind", "--device", s(&img2), "--key-file", s(&pass)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let waited = m.wait_for(Duration::from_secs(20), || {
        Ok((0..3).all(|i| held_epochs(&m, i, &me) == [1, 2]))
    });
    let _ = child.kill();
    let _ = child.wait();
    m.signal(3, libc::SIGCONT).unwrap();
    waited.unwrap();
    // what a run killed right after adding its keyslot leaves on the disk
    let orphan_slot = dev2
        .add_key(&std::fs::read(&pass).unwrap(), &[9u8; 32])
        .unwrap();
    m.wait_for(Duration::from_secs(10), || Ok(m.status(3).is_ok()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // status and bind notice it and say what to run
    let st = m.cli_ok(4, &["status"]).unwrap();
    assert!(
        st.contains("did not finish") && st.contains("keyward epochs"),
        "{st}"
    );
    let o = m
        .cli(4, &["bind", "--device", s(&img2), "--key-file", s(&pass)])
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("epochs --drop-orphans"),
        "{}",
        stderr(&o)
    );
    // epochs lists the orphan epoch with its holders, and the keyslot
    let out = m.cli_ok(4, &["epochs"]).unwrap();
    let line2 = out
        .lines()
        .find(|l| l.starts_with("2 "))
        .unwrap_or_default();
    assert!(line2.contains("orphan") && line2.contains("node0"), "{out}");
    let line1 = out
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_default();
    assert!(
        line1.contains("bound") && line1.contains("disk.img"),
        "{out}"
    );
    assert!(
        out.contains(&format!("orphan keyslot(s) {orphan_slot}")),
        "{out}"
    );
    // and drops them
    let out = m
        .cli_ok(4, &["epochs", "--drop-orphans", "--key-file", s(&pass)])
        .unwrap();
    assert!(out.contains("dropped orphan epoch 2"), "{out}");
    assert!(
        out.contains(&format!("removed orphan keyslot {orphan_slot}")),
        "{out}"
    );
    m.wait_for(Duration::from_secs(5), || {
        Ok((0..4).all(|i| held_epochs(&m, i, &me) == [1]))
    })
    .unwrap();
    assert_eq!(keyslots(&img2), ["0"]);
    let st = m.cli_ok(4, &["status"]).unwrap();
    assert!(!st.contains("TO DO"), "{st}");
    let out = m.cli_ok(4, &["epochs"]).unwrap();
    assert!(!out.contains("orphan"), "{out}");
    // the bind now goes through, on a fresh epoch
    let out = m
        .cli_ok(4, &["bind", "--device", s(&img2), "--key-file", s(&pass)])
        .unwrap();
    assert!(out.contains("epoch 3"), "{out}");
    // the existing disk was never touched
    m.stop(4).unwrap();
    let o = m.unlock(4, "10s").unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}
