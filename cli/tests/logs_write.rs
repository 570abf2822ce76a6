//! `keyward logs write` on the real binary against keywardd's pipe
//! listener (a stand-in spool acks here; the spool itself is tested with
//! keywardd).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use keyward_node::logs::listen::pipe;
use keyward_node::logs::{Batch, Refused};

/// Runs `keyward logs write --source SOURCE` with `input` on stdin.
fn write(cfg: &std::path::Path, source: &str, input: &[u8]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .env("KEYWARD_CONFIG", cfg)
        .args(["logs", "write", "--source", source])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn logs_write_exits_0_only_when_every_line_is_durable() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("logs.sock");
    let cfg = d.path().join("k.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"web1\"\nstate_dir = \"{0}/state\"\ncontrol_socket = \"{0}/ctl.sock\"\nmdns = false\n[logs]\npipe_socket = \"{1}\"\n",
            d.path().display(),
            sock.display()
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(16);
    let (ltx, lrx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        while let Some(b) = rx.recv().await {
            let refuse = b.lines.iter().any(|l| l.msg == b"refuse me");
            for l in b.lines {
                let _ = ltx.send(l);
            }
            let _ = b
                .ack
                .unwrap()
                .send(if refuse { Err(Refused::Full) } else { Ok(()) });
        }
    });
    let l = rt.block_on(async { pipe::bind(&sock) }).unwrap();
    rt.spawn(pipe::run(l, vec!["apache".into()], tx));

    let o = write(
        &cfg,
        "apache",
        b"127.0.0.1 - - \"GET / HTTP/1.1\" 200\nsecond\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<_> = (0..2)
        .map(|_| lrx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(got[1].msg, b"second");
    assert!(got[0].sender.uid.is_some() && got[0].sender.pid.is_some());

    let o = write(&cfg, "mail", b"x\n");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("`mail` is not a pipe source") && e.contains("apache"),
        "{e}"
    );

    let o = write(&cfg, "apache", b"refuse me\n");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("spool is full"));
}
