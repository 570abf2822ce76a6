//! The log spool on real files: lines in, segments sealed and fsynced,
//! read back verified; tampering found; a crash recovered; a full spool
//! refusing; the auditor (and only the auditor) decrypting an exported
//! segment with the `age` CLI.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use keyward_node::identity::NodeKey;
use keyward_node::log::line::{Line, Sender};
use keyward_node::log::recipients::{Recipient, Recipients};
use keyward_node::log::segment::Segment;
use keyward_node::log::segmenter::{Limits, Segmenter, Source};
use keyward_node::logs::config::{LogsConfig, SourceConfig, SourceInput};
use keyward_node::logs::read::{self, Filter};
use keyward_node::logs::{admin_key, layout, spool, Batch, Refused};
use tokio::sync::oneshot;

struct Fx {
    dir: tempfile::TempDir,
    key: NodeKey,
    auditor: age::x25519::Identity,
    cfg: LogsConfig,
}

fn fx() -> Fx {
    let auditor = age::x25519::Identity::generate();
    let src = |name: &str, confidential| SourceConfig {
        name: name.into(),
        input: SourceInput::Pipe,
        confidential,
        retention_days: 0,
        ack: None,
    };
    let cfg = LogsConfig {
        auditors: vec![auditor.to_public().to_string()],
        segment_lines: 5,
        commit_ms: 2,
        sources: vec![src("web", false), src("auth", true)],
        ..LogsConfig::default()
    };
    Fx {
        dir: tempfile::tempdir().unwrap(),
        key: NodeKey::generate(),
        auditor,
        cfg,
    }
}

impl Fx {
    fn spool(&self) -> std::path::PathBuf {
        spool::spool_dir(&self.cfg, self.dir.path())
    }
    fn read(&self, f: &Filter) -> anyhow::Result<read::Reading> {
        let id = admin_key::load(self.dir.path()).unwrap();
        read::read(&self.spool(), &self.key.id(), &id, f)
    }
}

fn line(msg: &str) -> Line {
    Line {
        time: 1_700_000_000_000,
        sender: Sender {
            pid: Some(42),
            uid: Some(33),
            gid: Some(33),
        },
        msg: msg.as_bytes().to_vec(),
    }
}

/// Sends a batch and waits for its answer.
async fn send(h: &spool::SpoolHandle, source: &str, msgs: &[String]) -> Result<(), Refused> {
    let (tx, rx) = oneshot::channel();
    h.inbox
        .send(Batch {
            source: source.into(),
            lines: msgs.iter().map(|m| line(m)).collect(),
            ack: Some(tx),
        })
        .await
        .unwrap();
    rx.await.unwrap()
}

fn msgs(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i:03}")).collect()
}

/// 23 web lines and 7 auth lines, stopped cleanly.
async fn fill(f: &Fx) -> (Vec<String>, Vec<String>) {
    let h = spool::start(&f.cfg, &f.key, f.dir.path()).unwrap();
    let (mut web, mut auth) = (Vec::new(), Vec::new());
    for b in 0..5 {
        let w = msgs(&format!("GET /page{b}"), 4 + b % 2);
        send(&h, "web", &w).await.unwrap();
        web.extend(w);
        if b % 2 == 0 {
            let a = msgs(&format!("sshd login {b}"), 2 + b / 4);
            send(&h, "auth", &a).await.unwrap();
            auth.extend(a);
        }
    }
    tokio::task::spawn_blocking(move || h.stop()).await.unwrap();
    (web, auth)
}

fn shown(r: &read::Reading) -> Vec<String> {
    r.lines
        .iter()
        .map(|l| String::from_utf8(l.line.msg.clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn lines_in_segments_sealed_shown_in_order_confidential_refused() {
    let f = fx();
    let (web, _auth) = fill(&f).await;
    let r = f.read(&Filter::default()).unwrap();
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.unlogged, 0);
    assert_eq!(shown(&r), web, "non-confidential lines, all, in order");
    assert!(r.confidential >= 2, "auth segments are not shown");
    assert_eq!(r.lines[0].line.sender.uid, Some(33));
    let e = f
        .read(&Filter {
            source: Some("auth".into()),
            ..Filter::default()
        })
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("source auth is confidential: only the auditor's key can read it"),
        "{e}"
    );
    // modes: files 0600, directories 0700, no journal left
    let sp = f.spool();
    for p in [sp.clone(), sp.join(layout::SEGMENTS), sp.join("tile")] {
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700,
            "{}",
            p.display()
        );
    }
    for i in layout::segment_indexes(&sp).unwrap() {
        let m = std::fs::metadata(layout::segment_path(&sp, i)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::metadata(sp.join("checkpoint"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(layout::journals(&sp).unwrap().is_empty());
    let m = std::fs::metadata(admin_key::path(f.dir.path())).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    // a restart continues the log
    let (web2, _) = fill(&f).await;
    let r = f.read(&Filter::default()).unwrap();
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(shown(&r), [web, web2].concat());
}

/// The web segments' indexes.
fn web_segments(sp: &Path) -> Vec<u64> {
    layout::segment_indexes(sp)
        .unwrap()
        .into_iter()
        .filter(|i| {
            let b = std::fs::read(layout::segment_path(sp, *i)).unwrap();
            Segment::decode(&b).unwrap().header.source == "web"
        })
        .collect()
}

#[tokio::test]
async fn edited_truncated_reordered_and_replaced_segments_are_found() {
    let f = fx();
    let (web, _) = fill(&f).await;
    let sp = f.spool();
    let segs = web_segments(&sp);
    assert!(segs.len() >= 5, "{segs:?}");
    let path = |i: u64| layout::segment_path(&sp, i);
    // edited: one byte of the body
    let mut b = std::fs::read(path(segs[0])).unwrap();
    let n = b.len();
    b[n - 20] ^= 1;
    std::fs::write(path(segs[0]), &b).unwrap();
    // truncated
    let b = std::fs::read(path(segs[1])).unwrap();
    std::fs::write(path(segs[1]), &b[..b.len() / 2]).unwrap();
    // reordered: two segments swapped
    let (x, y) = (
        std::fs::read(path(segs[2])).unwrap(),
        std::fs::read(path(segs[3])).unwrap(),
    );
    std::fs::write(path(segs[2]), &y).unwrap();
    std::fs::write(path(segs[3]), &x).unwrap();
    // replaced: a validly signed segment that is not in the log
    let recipients = Arc::new(
        Recipients::new(
            vec![Recipient::X25519(f.auditor.to_public())],
            Some(Recipient::X25519(
                admin_key::load(f.dir.path()).unwrap().to_public(),
            )),
        )
        .unwrap(),
    );
    let mut s = Segmenter::new(
        Arc::new(NodeKey::from_secret(&f.key.secret())),
        recipients,
        Source {
            name: "web".into(),
            confidential: false,
        },
        Limits::default(),
        0,
    )
    .unwrap();
    s.push(1, &line("FORGED"), &mut rand::rngs::OsRng).unwrap();
    std::fs::write(path(segs[4]), s.seal(2).unwrap().unwrap().bytes).unwrap();
    let r = f.read(&Filter::default()).unwrap();
    let all = r.findings.join("\n");
    for want in [
        format!("segment {} was edited", segs[0]),
        format!("segment {} is truncated", segs[1]),
        format!("segment {} holds the log's segment {}", segs[2], segs[3]),
        format!("segment {} was replaced", segs[4]),
    ] {
        assert!(all.contains(&want), "{want} not in:\n{all}");
    }
    let got = shown(&r);
    assert!(!got.iter().any(|l| l == "FORGED"));
    // only lines of the untouched segments are shown
    assert!(got.len() < web.len());
    assert!(got.iter().all(|l| web.contains(l)));
}

fn age_cli() -> bool {
    std::process::Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn the_auditor_decrypts_an_exported_body_with_age_and_the_node_cannot() {
    if !age_cli() {
        eprintln!("SKIP: the age CLI is not installed (apt-get install age)");
        return;
    }
    let f = fx();
    fill(&f).await;
    let sp = f.spool();
    let out = tempfile::tempdir().unwrap();
    let key_file = out.path().join("auditor.key");
    std::fs::write(&key_file, f.auditor.to_string().expose_secret()).unwrap();
    let admin_file = admin_key::path(f.dir.path());
    let mut tried = 0;
    for i in layout::segment_indexes(&sp).unwrap() {
        let seg = Segment::decode(&std::fs::read(layout::segment_path(&sp, i)).unwrap()).unwrap();
        // what `keyward logs export` writes next to each segment
        let body = out.path().join(format!("{i:020}.age"));
        std::fs::write(&body, &seg.body).unwrap();
        let run = |id: &Path| {
            std::process::Command::new("age")
                .arg("-d")
                .arg("-i")
                .arg(id)
                .arg(&body)
                .output()
                .unwrap()
        };
        let o = run(&key_file);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout.starts_with(b"KWL\x01"));
        let o = run(&admin_file);
        assert_eq!(
            o.status.success(),
            !seg.header.confidential,
            "the node's admin key reads only non-confidential bodies"
        );
        tried += 1;
    }
    assert!(tried >= 5);
}

#[tokio::test]
async fn a_crash_recovers_every_acknowledged_line() {
    let f = fx();
    let mut cfg = f.cfg.clone();
    cfg.segment_lines = 1000;
    let f = Fx { cfg, ..f };
    let h = spool::start(&f.cfg, &f.key, f.dir.path()).unwrap();
    let mut acked = Vec::new();
    for b in 0..6 {
        let m = msgs(&format!("batch {b}"), 3);
        send(&h, "web", &m).await.unwrap();
        acked.extend(m);
    }
    // no seal: journals only
    tokio::task::spawn_blocking(move || h.abandon())
        .await
        .unwrap();
    assert_eq!(layout::journals(&f.spool()).unwrap().len(), 1);
    assert!(layout::segment_indexes(&f.spool()).unwrap().is_empty());
    // restart: the journal is sealed as a segment and logged
    let h = spool::start(&f.cfg, &f.key, f.dir.path()).unwrap();
    let more = msgs("after", 2);
    send(&h, "web", &more).await.unwrap();
    tokio::task::spawn_blocking(move || h.stop()).await.unwrap();
    let r = f.read(&Filter::default()).unwrap();
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(shown(&r), [acked, more].concat());
    assert!(layout::journals(&f.spool()).unwrap().is_empty());
}

#[tokio::test]
async fn a_full_spool_refuses_and_loses_nothing_it_took() {
    let f = fx();
    let mut cfg = f.cfg.clone();
    cfg.quota_bytes = 24 * 1024;
    cfg.segment_lines = 50;
    let f = Fx { cfg, ..f };
    let h = spool::start(&f.cfg, &f.key, f.dir.path()).unwrap();
    let mut acked = Vec::new();
    let mut refused = 0;
    // Whether the warning was up at some point as the spool filled: a
    // seal right after the last refusal may bring usage back under the
    // warning level (it did once in CI: 79.99 %), which is right. And
    // admission is conservative (a batch must fit twice, beside what the
    // open segments will add), so refusals may start before usage ever
    // reaches the warning level (19,605 of 24,576 bytes once): the
    // warning is owed only if a snapshot showed usage at or over it.
    let mut warned = false;
    let mut over = false;
    for b in 0..60 {
        let m: Vec<String> = (0..4)
            .map(|i| format!("{b:03}-{i} {}", "x".repeat(100)))
            .collect();
        match send(&h, "web", &m).await {
            Ok(()) => acked.extend(m),
            Err(Refused::Full) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        let u = h.usage.borrow().clone();
        warned |= u.warning;
        over |= u.used_bytes * 100 >= u.quota_bytes * u64::from(u.warn_percent);
    }
    assert!(refused > 0, "the quota was never reached");
    assert!(!acked.is_empty());
    let usage = h.usage.borrow().clone();
    assert!(usage.refused_lines > 0, "{usage:?}");
    assert!(
        warned || !over,
        "usage reached the warning level unwarned: {usage:?}"
    );
    assert!(usage.used_bytes <= usage.quota_bytes);
    tokio::task::spawn_blocking(move || h.stop()).await.unwrap();
    let r = f.read(&Filter::default()).unwrap();
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(
        shown(&r),
        acked,
        "every line taken is there, none refused is"
    );
}

/// `ack = "replicated"`: a batch is answered only once the daemon says R
/// peers hold its segment; the spool seals the open segment for it
/// instead of waiting for its time cut, and hands the daemon its durable
/// checkpoint to replicate.
#[tokio::test]
async fn a_replicated_ack_waits_until_peers_hold_the_segment() {
    use keyward_node::logs::config::AckPolicy;
    let mut f = fx();
    f.cfg.sources[1].ack = Some(AckPolicy::Replicated);
    f.cfg.segment_secs = 3600;
    let h = spool::start(&f.cfg, &f.key, f.dir.path()).unwrap();
    // a durable-ack source is answered at once
    send(&h, "web", &msgs("GET /", 2)).await.unwrap();
    let (tx, mut rx) = oneshot::channel();
    h.inbox
        .send(Batch {
            source: "auth".into(),
            lines: vec![line("sshd login")],
            ack: Some(tx),
        })
        .await
        .unwrap();
    // the segment is sealed for it within about a second, and its
    // checkpoint comes out durable
    let mut cps = h.checkpoints.clone();
    let size = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            cps.changed().await.unwrap();
            let cp = cps.borrow_and_update().clone();
            if let Some((size, note)) = cp {
                let (s, _) = keyward_node::log::checkpoint::open(&note, &f.key.id()).unwrap();
                assert_eq!(s, size);
                if size >= 1 {
                    return size;
                }
            }
        }
    })
    .await
    .expect("a checkpoint covering the sealed segment");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "not acked before replication");
    h.replicated(size);
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), rx)
        .await
        .expect("acked once replicated");
    assert!(matches!(r, Ok(Ok(()))), "{r:?}");
    tokio::task::spawn_blocking(move || h.stop()).await.unwrap();
}
