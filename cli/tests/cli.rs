//! The CLI's own checks, run on the real binary: key files, config errors,
//! and what it says when the daemon is not there.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn keyward(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .env("KEYWARD_CONFIG", cfg)
        .args(args)
        .output()
        .unwrap()
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("k.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"web1\"\nstate_dir = \"{0}/state\"\nboot_key = \"{0}/etc/boot.key\"\ncontrol_socket = \"{0}/ctl.sock\"\nmdns = false\n",
            d.path().display()
        ),
    )
    .unwrap();
    (d, cfg)
}

#[test]
fn init_makes_private_keys_and_refuses_readable_ones() {
    let (d, cfg) = setup();
    let o = keyward(&cfg, &["init", "--mesh", "lab"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("mesh      lab"), "{out}");
    for f in ["state/node.key", "etc/boot.key"] {
        let m = std::fs::metadata(d.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o600, "{f}");
    }
    // a second mesh is refused, keys are kept
    let o = keyward(&cfg, &["init", "--mesh", "other"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already in mesh `lab`"));
    // a world-readable boot key is refused with the fix
    std::fs::set_permissions(
        d.path().join("etc/boot.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let o = keyward(&cfg, &["init"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn config_errors_name_the_key_and_line() {
    let (d, cfg) = setup();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[policy]\ntimeout = 300\ninterval_s = 5\n");
    std::fs::write(&cfg, text).unwrap();
    let o = keyward(&cfg, &["status"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(e.contains("line 8") && e.contains("interval_s"), "{e}");
    drop(d);
}

#[test]
fn no_daemon_is_explained() {
    let (_d, cfg) = setup();
    let o = keyward(&cfg, &["status"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cannot reach keywardd") && e.contains("is it running"),
        "{e}"
    );
}

#[test]
fn unlock_of_an_unbound_or_missing_device_is_explained() {
    let (d, cfg) = setup();
    let img = d.path().join("nothing.img");
    let o = keyward(
        &cfg,
        &["unlock", "--device", img.to_str().unwrap(), "--check"],
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("nothing.img"), "{e}");
    let o = keyward(&cfg, &["unlock", "--device", img.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("say what to do with the key"));
}

/// The shell parts of the boot path (dist/): the keyscript against a fake
/// keyward and askpass, and the installer into temporary DESTDIRs.
#[test]
fn the_dist_scripts_pass_their_own_checks() {
    for script in ["test-keyscript.sh", "test-install.sh"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../dist")
            .join(script);
        let o = std::process::Command::new("sh")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
