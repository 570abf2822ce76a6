//! keywardd refuses to start with a clear message when its setup is wrong.

use keyward_node::keyfile::KeyFile;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn keywardd(cfg: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keywardd"))
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

fn config(d: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let cfg = d.join("k.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{0}/state\"\nboot_key = \"{0}/boot.key\"\ncontrol_socket = \"{0}/ctl.sock\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\n{extra}",
            d.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn bad_config_exits_2_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let o = keywardd(&config(d.path(), "listen_on = 3\n"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown field `listen_on`"));
    let o = keywardd(&d.path().join("missing.toml"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read config"));
}

#[test]
fn missing_or_readable_keys_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), "");
    let o = keywardd(&cfg);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("run `keyward init` first"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let k = keyward_node::identity::NodeKey::generate();
    k.save(&d.path().join("state/node.key")).unwrap();
    keyward_node::identity::BootKey::generate()
        .save(&d.path().join("boot.key"))
        .unwrap();
    std::fs::set_permissions(
        d.path().join("state/node.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let o = keywardd(&cfg);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
