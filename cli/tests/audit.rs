//! `keyward audit` on the real binary and real files: a node's spool made
//! with keyward-core's segmenter and Merkle log, exported with `keyward
//! logs export`, then verified and decrypted with the auditor identity
//! `keyward audit keygen` made; then tampered with, one way at a time.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use keyward_node::identity::{NodeId, NodeKey};
use keyward_node::keyfile::KeyFile;
use keyward_node::log::line::{Line, Sender};
use keyward_node::log::merkle::MerkleLog;
use keyward_node::log::recipients::{Recipient, Recipients};
use keyward_node::log::segmenter::{Limits, Segmenter, Source};
use keyward_node::log::witness::cosign;
use keyward_node::logs::layout;

/// Lines per segment, so a few dozen lines make several segments.
const PER_SEGMENT: u32 = 4;
/// Time of the first line (2025-12-02T10:00:00Z).
const T0: u64 = 1_764_669_600_000;

fn keyward(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .env("KEYWARD_CONFIG", cfg)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Lab {
    _d: tempfile::TempDir,
    root: PathBuf,
    cfg: PathBuf,
    origin: NodeId,
    witness: NodeKey,
    /// Every line written: (source, message).
    lines: Vec<(String, String)>,
}

impl Lab {
    fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }
    fn origin_dir(&self) -> PathBuf {
        self.audit_dir().join(self.origin.to_string())
    }
    fn key(&self) -> String {
        self.root.join("auditor.key").display().to_string()
    }
    fn audit(&self, args: &[&str]) -> Output {
        keyward(&self.cfg, args)
    }
    fn verify(&self) -> Output {
        self.audit(&["audit", "verify", self.audit_dir().to_str().unwrap()])
    }
    fn decrypt(&self, extra: &[&str]) -> Output {
        let dir = self.audit_dir();
        let key = self.key();
        let mut a = vec!["audit", "decrypt", dir.to_str().unwrap(), "-i", &key];
        a.extend_from_slice(extra);
        self.audit(&a)
    }
}

/// A node with a key (`keyward init`), an auditor identity (`keyward audit
/// keygen`), a spool of two sources (`auth` confidential with kernel
/// credentials, `web` not) whose checkpoint a witness cosigned, exported
/// to `<root>/audit` with `keyward logs export`.
fn lab() -> Lab {
    lab_with(Vec::new())
}

/// [`lab`], with more auditor recipients for the segments.
fn lab_with(more: Vec<Recipient>) -> Lab {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_path_buf();
    let cfg = root.join("k.toml");
    let base = format!(
        "name = \"web1\"\nstate_dir = \"{0}/state\"\nboot_key = \"{0}/etc/boot.key\"\ncontrol_socket = \"{0}/ctl.sock\"\nmdns = false\n",
        root.display()
    );
    std::fs::write(&cfg, &base).unwrap();

    // The auditor's identity, made the way the auditor makes it.
    let key = root.join("auditor.key");
    let o = keyward(&cfg, &["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let recipient = text(&o.stdout).trim().to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    std::fs::write(
        &cfg,
        format!("{base}[logs]\nauditors = [\"{recipient}\"]\n"),
    )
    .unwrap();
    let o = keyward(&cfg, &["init", "--mesh", "lab"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let node = Arc::new(NodeKey::load(&root.join("state/node.key")).unwrap());
    let origin = node.id();

    // `web` is not confidential: also sealed to a local admin recipient.
    let admin = age::x25519::Identity::generate().to_public();
    let recipients = Arc::new(
        Recipients::new(
            std::iter::once(Recipient::X25519(recipient.parse().unwrap()))
                .chain(more)
                .collect(),
            Some(Recipient::X25519(admin)),
        )
        .unwrap(),
    );
    let seg = |name: &str, confidential: bool| {
        Segmenter::new(
            node.clone(),
            recipients.clone(),
            Source {
                name: name.into(),
                confidential,
            },
            Limits {
                max_lines: PER_SEGMENT,
                ..Limits::default()
            },
            0,
        )
        .unwrap()
    };
    let (mut auth, mut web) = (seg("auth", true), seg("web", false));
    let mut log = MerkleLog::new(origin);
    let spool = root.join("state/logs");
    let mut dirs = BTreeSet::new();
    let mut lines = Vec::new();
    let mut rng = rand::rngs::OsRng;
    let mut sealed = Vec::new();
    // 10 auth lines and 10 web lines, interleaved, one second apart.
    for i in 0..20u64 {
        let (s, name) = if i % 2 == 0 {
            (&mut auth, "auth")
        } else {
            (&mut web, "web")
        };
        let msg = format!("{name} line {i}");
        let sender = if name == "auth" {
            Sender {
                pid: Some(1000 + i as u32),
                uid: Some(0),
                gid: Some(4),
            }
        } else {
            Sender::default()
        };
        let l = Line {
            time: T0 + i * 1000,
            sender,
            msg: msg.clone().into_bytes(),
        };
        sealed.extend(s.push(T0 + i * 1000, &l, &mut rng).unwrap());
        lines.push((name.to_string(), msg));
    }
    sealed.extend(auth.seal(T0 + 30_000).unwrap());
    sealed.extend(web.seal(T0 + 30_000).unwrap());
    for s in &sealed {
        let (i, writes) = log.append(&s.leaf).unwrap();
        for w in writes {
            layout::write_atomic(&spool.join(&w.path), &w.bytes, &mut dirs).unwrap();
        }
        layout::write_atomic(&layout::segment_path(&spool, i), &s.bytes, &mut dirs).unwrap();
    }
    let note = log.checkpoint(T0 + 31_000, &node).unwrap().note;
    let witness = NodeKey::generate();
    let cosigned = cosign::cosign(&witness, &note, T0 / 1000 + 32)
        .unwrap()
        .note;
    layout::write_atomic(&spool.join(layout::CHECKPOINT), &cosigned, &mut dirs).unwrap();

    let out = root.join("audit");
    let o = keyward(&cfg, &["logs", "export", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    Lab {
        _d: d,
        root,
        cfg,
        origin,
        witness,
        lines,
    }
}

fn segment_files(lab: &Lab) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(lab.origin_dir().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none())
        .collect();
    v.sort();
    v
}

/// The messages of `audit decrypt` output lines, in order.
fn messages(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.rsplit_once("] ").unwrap().1.to_string())
        .collect()
}

#[test]
fn a_clean_export_verifies_and_decrypts_every_line_once() {
    let lab = lab();
    let o = lab.verify();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", text(&o.stderr));
    let id = lab.origin.to_string();
    let row = out.lines().find(|l| l.starts_with(&id)).unwrap();
    // 3 auth segments (4+4+2) and 3 web segments: size 6, both sources,
    // cosigned by one witness, no findings.
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1..], ["6", "6", "auth,web", "1", "0"], "{row}");

    let o = lab.audit(&[
        "audit",
        "verify",
        lab.audit_dir().to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], true);
    assert_eq!(
        v["origins"][0]["cosigned_by"][0],
        lab.witness.id().to_string()
    );

    // Every line exactly once, each source in its order, with its fields.
    let o = lab.decrypt(&[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let got = messages(&out);
    assert_eq!(got.len(), lab.lines.len(), "{out}");
    let all: BTreeSet<&String> = got.iter().collect();
    assert_eq!(all.len(), got.len(), "a line printed twice: {out}");
    for src in ["auth", "web"] {
        let want: Vec<&String> = lab
            .lines
            .iter()
            .filter(|(s, _)| s == src)
            .map(|(_, m)| m)
            .collect();
        let have: Vec<&String> = got.iter().filter(|m| m.starts_with(src)).collect();
        assert_eq!(have, want);
    }
    let first = out.lines().find(|l| l.ends_with("] auth line 0")).unwrap();
    assert!(
        first.starts_with(&format!("<13>1 2025-12-02T10:00:00.000Z {id} auth 1000 - [keyward@32473 origin=\"{id}\" source=\"auth\" segment=\"")),
        "{first}"
    );
    assert!(
        first.contains("pid=\"1000\" uid=\"0\" gid=\"4\"]"),
        "{first}"
    );

    // JSON, and the filters.
    let o = lab.decrypt(&["--format", "json", "--source", "web"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let js: Vec<serde_json::Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(js.len(), 10);
    assert!(js
        .iter()
        .all(|j| j["source"] == "web" && j["origin"] == id.as_str()));
    assert_eq!(js[0]["msg"], "web line 1");
    // Lines 4..=9 are at T0+4s .. T0+9s: since inclusive, until exclusive.
    let o = lab.decrypt(&[
        "--since",
        "2025-12-02T10:00:04Z",
        "--until",
        &((T0 + 10_000) / 1000).to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut got = messages(&text(&o.stdout));
    got.sort();
    let mut want: Vec<String> = (4..10)
        .map(|i| format!("{} line {i}", if i % 2 == 0 { "auth" } else { "web" }))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let short = &id[id.len() - 8..];
    let o = lab.decrypt(&["--origin", short, "--source", "auth"]);
    assert_eq!(messages(&text(&o.stdout)).len(), 10);
    let o = lab.decrypt(&["--origin", "nosuchorigin"]);
    assert!(!o.status.success());
    let o = lab.decrypt(&["--since", "yesterday-ish"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("RFC 3339"), "{}", text(&o.stderr));

    // keygen never overwrites.
    let o = lab.audit(&["audit", "keygen", "--out", &lab.key()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("never overwrites"));
}

#[test]
fn the_real_age_opens_a_body_and_an_age_keygen_identity_decrypts() {
    let lab = lab();
    if Command::new("age").arg("--version").output().is_err() {
        eprintln!(
            "NOTE: `age` is not installed; skipping the by-hand decryption (.ci/run installs it)"
        );
        return;
    }
    let body = lab
        .origin_dir()
        .join("segments")
        .join(format!("{:020}.age", 0));
    let o = Command::new("age")
        .args(["-d", "-i", &lab.key(), body.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The plaintext is the line body: magic, then lines with the message.
    assert!(o.stdout.starts_with(b"KWL\x01"));
    assert!(o.stdout.windows(11).any(|w| w == b"auth line 0"));

    // An identity made by age-keygen is the same format: decrypt takes it
    // (it is not a recipient of these segments, so it opens nothing, and
    // says so per segment).
    let other = lab.root.join("age-keygen.key");
    let o = Command::new("age-keygen")
        .args(["-o", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let dir = lab.audit_dir();
    let o = lab.audit(&[
        "audit",
        "decrypt",
        dir.to_str().unwrap(),
        "-i",
        other.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    assert!(
        text(&o.stderr).contains("does not open"),
        "{}",
        text(&o.stderr)
    );
}

/// The verify output and exit status after a tamper, and the lines
/// decrypt still prints.
fn after(lab: &Lab) -> (String, Vec<String>) {
    let o = lab.verify();
    assert!(!o.status.success(), "{}", text(&o.stdout));
    let v = text(&o.stdout);
    let o = lab.decrypt(&[]);
    assert!(!o.status.success());
    (
        format!("{v}{}", text(&o.stderr)),
        messages(&text(&o.stdout)),
    )
}

#[test]
fn an_edited_segment_is_reported_and_skipped() {
    let lab = lab();
    let p = &segment_files(&lab)[1];
    let mut b = std::fs::read(p).unwrap();
    let n = b.len() - 10;
    b[n] ^= 1;
    std::fs::write(p, b).unwrap();
    let (report, lines) = after(&lab);
    assert!(report.contains("segment 1 was edited"), "{report}");
    // Segment 1 held web lines 1..7: the other 16 lines still show.
    assert_eq!(lines.len(), 16, "{lines:?}");
    assert!(!lines.iter().any(|m| m == "web line 1"));
}

#[test]
fn a_deleted_segment_is_reported_and_skipped() {
    let lab = lab();
    std::fs::remove_file(&segment_files(&lab)[2]).unwrap();
    let (report, lines) = after(&lab);
    assert!(report.contains("segment 2 is missing"), "{report}");
    assert_eq!(lines.len(), 16, "{lines:?}");
}

#[test]
fn an_edited_tile_is_reported() {
    let lab = lab();
    let tile = lab.origin_dir().join("tile/0/000.p/6");
    let mut b = std::fs::read(&tile).unwrap();
    b[0] ^= 1;
    std::fs::write(&tile, b).unwrap();
    let (report, lines) = after(&lab);
    assert!(report.contains("FINDING"), "{report}");
    // Without trusted tiles no segment can be placed in the log.
    assert!(lines.is_empty());
}

#[test]
fn a_forged_cosignature_is_reported() {
    let lab = lab();
    let cp = lab.origin_dir().join("checkpoint");
    let note = std::fs::read(&cp).unwrap();
    // Another witness's name on the real witness's signature bytes.
    let impostor = NodeKey::generate().id();
    let text_note = String::from_utf8(note).unwrap();
    let real = format!("keyward/witness/{}", lab.witness.id());
    let line = text_note
        .lines()
        .find(|l| l.contains(&real))
        .unwrap()
        .replace(&real, &format!("keyward/witness/{impostor}"));
    std::fs::write(&cp, format!("{text_note}{line}\n")).unwrap();
    let o = lab.verify();
    assert!(!o.status.success());
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!("cosignature by witness {impostor}")),
        "{out}"
    );
    // The real cosignature still counts.
    let id = lab.origin.to_string();
    let row = out.lines().find(|l| l.starts_with(&id)).unwrap();
    assert_eq!(row.split_whitespace().nth(4), Some("1"), "{row}");
    // Decrypt trusts the origin's signature, not witnesses: lines show.
    let o = lab.decrypt(&[]);
    assert_eq!(messages(&text(&o.stdout)).len(), 20);
}

#[test]
fn an_edited_age_copy_is_reported() {
    let lab = lab();
    let p = lab.origin_dir().join(format!("segments/{:020}.age", 3));
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len() - 1;
    b[n] ^= 1;
    std::fs::write(&p, b).unwrap();
    let o = lab.verify();
    assert!(!o.status.success());
    assert!(
        text(&o.stdout).contains("is not the body of the signed segment 3"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn a_segment_beyond_the_checkpoint_is_noted_not_a_finding() {
    let lab = lab();
    let segs = lab.origin_dir().join("segments");
    std::fs::copy(
        segs.join(format!("{:020}", 5)),
        segs.join(format!("{:020}", 6)),
    )
    .unwrap();
    let o = lab.verify();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}");
    let id = lab.origin.to_string();
    let row = out.lines().find(|l| l.starts_with(&id)).unwrap();
    assert_eq!(row.split_whitespace().nth(2), Some("6+1"), "{row}");
    assert!(out.contains("not verifiable yet"), "{out}");
    let o = lab.decrypt(&[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(messages(&text(&o.stdout)).len(), 20);
}

#[test]
fn an_ssh_identity_decrypts() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()])
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("NOTE: ssh-keygen is not installed; skipping the SSH identity test");
        return;
    }
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let r: age::ssh::Recipient = public.trim().parse().unwrap();
    let lab = lab_with(vec![Recipient::Ssh(r)]);
    let dir = lab.audit_dir();
    let o = lab.audit(&[
        "audit",
        "decrypt",
        dir.to_str().unwrap(),
        "-i",
        key.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().count(), 20);
}
