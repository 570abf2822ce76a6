//! Tampering with replicated logs, end to end on real keywardd daemons on
//! loopback: a replica's copy edited and cut on disk is caught by the
//! auditor's tools (and the other replica's copy still verifies); an
//! origin restored from an old backup, which then reuses leaf indices its
//! replicas already hold and shows its witnesses a smaller checkpoint, is
//! refused by its replicas, which raise alerts and keep the evidence; and
//! a member whose node key an attacker holds, speaking keyward's protocol
//! with that key (`keyward_node::testing::ask_as`), neither gets its own
//! segments taken in another node's name nor shows two witnesses two
//! histories of its log unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use keyward_core::identity::NodeId;
use keyward_core::log::checkpoint;
use keyward_core::log::merkle::MerkleLog;
use keyward_core::log::replica::placement;
use keyward_core::log::replica::wire::{Push, RefusedCode};
use keyward_core::log::segment::Segment;
use keyward_core::log::witness::evidence::{Evidence, EvidenceKind};
use keyward_core::log::witness::request::AddCheckpoint;
use keyward_core::proto::{Request, Response};
use keyward_netns_tests::mesh::{LogsOnPanic, Mesh, MeshOptions};
use keyward_netns_tests::spool::decrypt_source;
use keyward_node::peer::{Libp2pKey, PeerIds};
use keyward_node::testing::ask_as;

const SOURCE: &str = "syslog";

/// stdout and stderr of a finished command, as text.
fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The auditor's identity as `keyward audit keygen` wrote it.
fn load_identity(path: &Path) -> age::x25519::Identity {
    let t = std::fs::read_to_string(path).unwrap();
    t.lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap_or_else(|| panic!("no secret key in {}", path.display()))
        .parse()
        .unwrap()
}

/// Where node `j` keeps its replica of `origin`'s log.
fn replica_dir(m: &Mesh, j: usize, origin: &str) -> PathBuf {
    m.dir(j).join("state/logs/replicas").join(origin)
}

fn spool(m: &Mesh, j: usize) -> PathBuf {
    m.dir(j).join("state/logs")
}

/// The segment files of a log directory (`segments/<20 digits>`), by leaf
/// index.
fn segment_files(dir: &Path) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir.join("segments")) else {
        return out;
    };
    for e in rd {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(b) = std::fs::read(e.path()) {
                out.insert(name.parse().unwrap(), b);
            }
        }
    }
    out
}

/// The size of the checkpoint in a log directory, if it has one.
fn checkpoint_size(dir: &Path, origin: &NodeId) -> Option<u64> {
    let note = std::fs::read(dir.join("checkpoint")).ok()?;
    checkpoint::open(&note, origin).ok().map(|(s, _)| s)
}

/// `logger` to the unix source at `sock`, retried until the socket takes
/// it (after a restart it may still be the old daemon's stale file).
fn logger(m: &Mesh, sock: &Path, msg: &str) {
    m.wait_for(Duration::from_secs(20), || {
        Ok(Command::new("logger")
            .arg("-u")
            .arg(sock)
            .args(["-t", "probe", msg])
            .stderr(std::process::Stdio::null())
            .status()?
            .success())
    })
    .unwrap_or_else(|e| panic!("logger to {}: {e}\n{}", sock.display(), m.log(0)));
}

/// Sends `msg` and waits until node 0 sealed it in a segment, so the next
/// line goes to another segment.
fn log_sealed(m: &Mesh, sock: &Path, id: &age::x25519::Identity, msg: &str) {
    logger(m, sock, msg);
    let sp = spool(m, 0);
    m.wait_for(Duration::from_secs(20), || {
        let lines = decrypt_source(&sp, SOURCE, id).unwrap_or_default();
        Ok(lines
            .iter()
            .any(|l| String::from_utf8_lossy(&l.msg).contains(msg)))
    })
    .unwrap_or_else(|e| panic!("{msg:?} was never sealed at the origin: {e}\n{}", m.log(0)));
}

/// Whether the lines of `source` in `dir` include every one of `msgs`.
fn holds_all(dir: &Path, id: &age::x25519::Identity, msgs: &[String]) -> bool {
    let lines = decrypt_source(dir, SOURCE, id).unwrap_or_default();
    msgs.iter().all(|m| {
        lines
            .iter()
            .any(|l| String::from_utf8_lossy(&l.msg).contains(m.as_str()))
    })
}

/// Forms `m` (`n` nodes): node 0 logs a unix source at `sock` sealed to
/// `recipient` every second, with checkpoints every second and its
/// witnesses asked every 2 s; nodes 1.. are guardians except `auditor`,
/// which joins with an auditor invite.
fn form_logging_mesh(m: &mut Mesh, n: usize, auditor: Option<usize>, recipient: &str, sock: &Path) {
    m.append_config(
        0,
        &format!(
            "[logs]\nauditors = [\"{recipient}\"]\nsegment_secs = 1\ncheckpoint_secs = 1\nwitness_secs = 2\n\n[[logs.source]]\nname = \"{SOURCE}\"\nkind = \"unix\"\npath = \"{}\"\n",
            sock.display()
        ),
    )
    .unwrap();
    m.init(0, Some("test")).unwrap();
    for i in 1..n {
        m.init(i, None).unwrap();
    }
    for i in 0..n {
        m.start(i).unwrap();
    }
    for i in (1..n).filter(|i| Some(*i) != auditor) {
        m.join(i, 0).unwrap();
    }
    if let Some(a) = auditor {
        m.join_as_auditor(a, 0).unwrap();
    }
    m.converge(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log(0)));
    m.wait_for(Duration::from_secs(10), || Ok(sock.exists()))
        .unwrap();
}

/// Node 0's two replicas, as node indices, once it has chosen them.
fn replicas_of_origin(m: &Mesh, n: usize) -> Vec<usize> {
    let mut ids = Vec::new();
    m.wait_for(Duration::from_secs(20), || {
        ids = m
            .status(0)?
            .replication
            .map(|r| r.replicas.into_iter().map(|p| p.id).collect())
            .unwrap_or_default();
        Ok(ids.len() == 2)
    })
    .unwrap_or_else(|_| panic!("node 0 never chose 2 replicas: {ids:?}\n{}", m.log(0)));
    let node_ids: Vec<String> = (0..n).map(|j| m.status(j).unwrap().node.id).collect();
    ids.iter()
        .map(|id| {
            node_ids
                .iter()
                .position(|x| x == id)
                .unwrap_or_else(|| panic!("replica {id} is no node of the mesh"))
        })
        .collect()
}

/// What node `j`'s status says it keeps of `origin`: (held, witnessed).
fn kept(m: &Mesh, j: usize, origin: &str) -> Option<(u64, Option<u64>)> {
    m.status(j)
        .ok()?
        .replication?
        .kept
        .into_iter()
        .find(|k| k.origin == origin)
        .map(|k| (k.held, k.witnessed))
}

/// The evidence files node `j` keeps against `origin` whose name ends in
/// `-<what>` (`evidence/<origin>/<ms>-<what>`), sorted.
fn evidence_files(m: &Mesh, j: usize, origin: &NodeId, what: &str) -> Vec<PathBuf> {
    let dir = m
        .dir(j)
        .join("state/logs/evidence")
        .join(origin.to_string());
    let suffix = format!("-{what}");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(&suffix))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every node's id, by index.
fn node_ids(m: &Mesh, n: usize) -> Vec<NodeId> {
    (0..n)
        .map(|j| m.status(j).unwrap().node.id.parse().unwrap())
        .collect()
}

/// Sends `req` to node `to` on a connection authenticated by node
/// `from`'s node key (its daemon stopped: an attacker who took the
/// machine over and holds its key) and returns the answer.
fn ask_with_key_of(m: &Mesh, from: usize, to: usize, to_id: &NodeId, req: Request) -> Response {
    let key = m.node_key(from).unwrap();
    let port = m.listen_port(to).unwrap();
    let peer = to_id.peer_id().expect("a node id is an ed25519 key");
    let mut r = ask_as(key.libp2p_keypair(), port, peer, vec![req], 1).unwrap();
    r.pop()
        .expect("one answer per request")
        .unwrap_or_else(|e| panic!("node {to} did not answer: {e}\n{}", m.log(to)))
}

/// A replica's copy edited (one byte of a segment's body) and cut (one
/// segment deleted) on its disk while its daemon runs: `keyward audit fetch
/// --from` that replica cannot fetch the deleted segment (exit non-zero),
/// `keyward audit verify` exits non-zero naming both segments, and
/// `keyward audit decrypt` shows none of their lines (and exits 1). The
/// other replica's copy, fetched into a fresh directory, verifies clean
/// (with that replica's witness cosignature) and decrypts whole. The
/// tampered replica, restarted, refuses to build on its copy: it sets it
/// aside whole as evidence, raises an alert, and the origin pushes its log
/// to it again.
#[test]
fn a_replica_copy_edited_or_cut_on_disk_is_reported_by_the_auditor_and_never_accepted() {
    const N: usize = 5;
    const AUD: usize = 4;
    const LINES: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log");
    let key = dir.path().join("auditor.key");
    let mut m = Mesh::loopback(N, &MeshOptions::default()).unwrap();
    let recipient = m.auditor_keygen(AUD, &key).unwrap();
    let id = load_identity(&key);
    form_logging_mesh(&mut m, N, Some(AUD), &recipient, &sock);
    let _logs = LogsOnPanic::of(&m, N, 40);
    let origin = m.status(0).unwrap().node.id;
    let origin_id: NodeId = origin.parse().unwrap();
    let reps = replicas_of_origin(&m, N);
    assert!(
        !reps.contains(&AUD),
        "an auditor keeps no replica: {reps:?}"
    );

    // one line per segment
    let msgs: Vec<String> = (0..LINES)
        .map(|i| format!("tamper probe line #{i:03}#"))
        .collect();
    for msg in &msgs {
        log_sealed(&m, &sock, &id, msg);
    }
    for &j in &reps {
        let rd = replica_dir(&m, j, &origin);
        m.wait_for(Duration::from_secs(60), || {
            Ok(holds_all(&rd, &id, &msgs)
                && checkpoint_size(&rd, &origin_id).unwrap_or(0)
                    >= segment_files(&rd).keys().max().map_or(1, |i| i + 1))
        })
        .unwrap_or_else(|e| panic!("node {j} never held every line: {e}\n{}", m.log(j)));
    }
    // and each witnessed (cosigned) the checkpoint it holds
    m.wait_for(Duration::from_secs(30), || {
        Ok(reps.iter().all(|&j| {
            let cp = checkpoint_size(&replica_dir(&m, j, &origin), &origin_id);
            kept(&m, j, &origin).is_some_and(|(_, w)| w.is_some() && w == cp)
        }))
    })
    .unwrap_or_else(|e| {
        panic!(
            "the replicas never cosigned what they hold: {e}: {:?}",
            reps.iter()
                .map(|&j| (
                    kept(&m, j, &origin),
                    checkpoint_size(&replica_dir(&m, j, &origin), &origin_id)
                ))
                .collect::<Vec<_>>()
        )
    });

    // R: the first replica. Pick two segments of our source past index 0
    // (the lowest index on disk is where a reader starts, as after
    // retention): edit the body of one, delete the other.
    let (r, other) = (reps[0], reps[1]);
    let r_id = m.status(r).unwrap().node.id;
    let other_id = m.status(other).unwrap().node.id;
    let rd = replica_dir(&m, r, &origin);
    let held = segment_files(&rd);
    let ours: Vec<u64> = held
        .iter()
        .filter(|(i, b)| **i > 0 && Segment::decode(b).is_ok_and(|s| s.header.source == SOURCE))
        .map(|(i, _)| *i)
        .collect();
    assert!(
        ours.len() >= 3,
        "replica node {r} holds too few segments of {SOURCE}: {:?}",
        held.keys().collect::<Vec<_>>()
    );
    let (edited, deleted) = (ours[0], ours[ours.len() - 1]);
    let cp = checkpoint_size(&rd, &origin_id).unwrap();
    assert!(
        deleted < cp,
        "segment {deleted} is under R's checkpoint ({cp})"
    );
    let lines_of = |b: &[u8]| -> Vec<String> {
        Segment::decode(b)
            .unwrap()
            .open(&id)
            .unwrap()
            .iter()
            .map(|l| String::from_utf8_lossy(&l.msg).into_owned())
            .collect()
    };
    let edited_lines: Vec<String> = msgs
        .iter()
        .filter(|msg| {
            lines_of(&held[&edited])
                .iter()
                .any(|l| l.contains(msg.as_str()))
        })
        .cloned()
        .collect();
    let deleted_lines: Vec<String> = msgs
        .iter()
        .filter(|msg| {
            lines_of(&held[&deleted])
                .iter()
                .any(|l| l.contains(msg.as_str()))
        })
        .cloned()
        .collect();
    assert!(!edited_lines.is_empty() && !deleted_lines.is_empty());
    let mut bytes = held[&edited].clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert!(
        Segment::decode(&bytes).is_err(),
        "the flipped byte is in the signed body"
    );
    let seg_path = |i: u64| rd.join("segments").join(format!("{i:020}"));
    std::fs::write(seg_path(edited), &bytes).unwrap();
    std::fs::remove_file(seg_path(deleted)).unwrap();
    println!(
        "  replica node {r}: edited segment {edited}, deleted segment {deleted} (of {} held, checkpoint {cp})",
        held.len()
    );

    // the auditor fetches from R only
    let audit = dir.path().join("audit-from-r");
    let a = audit.to_str().unwrap();
    let o = m
        .cli(AUD, &["audit", "fetch", "--out", a, "--from", &r_id])
        .unwrap();
    let (fout, ferr) = text(&o);
    println!("  fetch --from node {r}: {}\n{fout}{ferr}", o.status);
    assert!(
        !o.status.success(),
        "a fetch that could not get segment {deleted} succeeded:\n{fout}{ferr}"
    );
    assert!(
        ferr.contains(&format!("{origin}: segment {deleted}: ")),
        "{ferr}"
    );
    assert!(
        ferr.contains("could not be fetched from any holder"),
        "{ferr}"
    );
    assert!(fout.contains(&origin), "{fout}");
    // fetch trusts nothing: the edited bytes are what it wrote
    let fetched = segment_files(&audit.join(&origin));
    assert_eq!(fetched.get(&edited), Some(&bytes));
    assert!(!fetched.contains_key(&deleted));

    let v = m.cli(AUD, &["audit", "verify", a]).unwrap();
    let (vout, verr) = text(&v);
    println!("  verify:\n{vout}{verr}");
    assert!(
        !v.status.success(),
        "verify passed a tampered copy:\n{vout}"
    );
    assert!(
        vout.contains(&format!("FINDING {origin}: segment {edited} was edited: ")),
        "{vout}"
    );
    assert!(
        vout.contains(&format!("FINDING {origin}: segment {deleted} is missing")),
        "{vout}"
    );
    assert!(!vout.contains("ok: every origin verifies"), "{vout}");
    assert!(verr.contains("2 findings"), "{verr}");
    let vj = m.cli(AUD, &["audit", "verify", a, "--json"]).unwrap();
    assert!(!vj.status.success());
    let report: serde_json::Value = serde_json::from_slice(&vj.stdout).unwrap();
    assert_eq!(report["clean"], false, "{report}");
    let findings: Vec<String> = report["origins"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(findings.len(), 2, "{findings:?}");
    // R's cosignature (as witness) came with its copy and still verifies
    assert_eq!(
        report["origins"][0]["cosigned_by"],
        serde_json::json!([r_id]),
        "{report}"
    );

    let d = m
        .cli(AUD, &["audit", "decrypt", a, "-i", key.to_str().unwrap()])
        .unwrap();
    let (dout, derr) = text(&d);
    println!("  decrypt: {}\n{derr}", d.status);
    assert_eq!(d.status.code(), Some(1), "{derr}");
    for l in edited_lines.iter().chain(&deleted_lines) {
        assert!(
            !dout.contains(l.as_str()),
            "decrypt showed {l:?} of a segment that does not verify:\n{dout}"
        );
    }
    // the rest of our lines are shown
    for l in msgs
        .iter()
        .filter(|l| !edited_lines.contains(l) && !deleted_lines.contains(l))
    {
        assert!(dout.contains(l.as_str()), "{l:?} missing:\n{dout}");
    }
    assert!(
        derr.contains(&format!("FINDING {origin}: segment {edited} was edited: "))
            && derr.contains("its lines are not shown"),
        "{derr}"
    );
    assert!(
        derr.contains(&format!("FINDING {origin}: segment {deleted} is missing")),
        "{derr}"
    );

    // the other replica's copy is whole
    let audit2 = dir.path().join("audit-from-other");
    let a2 = audit2.to_str().unwrap();
    let o = m
        .cli(AUD, &["audit", "fetch", "--out", a2, "--from", &other_id])
        .unwrap();
    let (fout, ferr) = text(&o);
    assert!(
        o.status.success(),
        "fetch --from node {other}: {fout}{ferr}"
    );
    assert!(fout.contains(&origin), "{fout}");
    println!("  fetch --from node {other}:\n{fout}{ferr}");
    let v = m.cli(AUD, &["audit", "verify", a2]).unwrap();
    let (vout, verr) = text(&v);
    println!("  verify:\n{vout}{verr}");
    assert!(v.status.success(), "{vout}{verr}");
    assert!(vout.contains("ok: every origin verifies"), "{vout}");
    assert!(!vout.contains(&format!("FINDING {origin}")), "{vout}");
    let vj = m.cli(AUD, &["audit", "verify", a2, "--json"]).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&vj.stdout).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(
        report["origins"][0]["cosigned_by"],
        serde_json::json!([other_id]),
        "{report}"
    );
    let fetched2 = segment_files(&audit2.join(&origin));
    assert_eq!(fetched2.get(&edited), Some(&held[&edited]));
    assert_eq!(fetched2.get(&deleted), Some(&held[&deleted]));
    let d = m
        .cli(AUD, &["audit", "decrypt", a2, "-i", key.to_str().unwrap()])
        .unwrap();
    let (dout, derr) = text(&d);
    assert!(d.status.success(), "{derr}");
    for l in &msgs {
        assert!(dout.contains(l.as_str()), "{l:?} missing:\n{dout}");
    }

    // R itself, restarted, refuses to build on its edited copy: it sets
    // the copy aside whole (evidence), says so, and holds the origin's log
    // afresh, which the origin pushes again
    m.stop(r).unwrap();
    m.start(r).unwrap();
    let refused =
        format!("the replica of {origin_id}: segment {edited} is not the one its log holds");
    m.wait_for(Duration::from_secs(10), || {
        Ok(m.log(r)
            .lines()
            .any(|l| l.contains(&refused) && l.contains("moved it to")))
    })
    .unwrap_or_else(|_| panic!("node {r} took its edited copy:\n{}", m.log(r)));
    for l in m.log(r).lines().filter(|l| l.contains(&refused)) {
        println!("  node {r}: {l}");
    }
    let st = m.status(r).unwrap();
    assert!(
        st.alerts.iter().any(|a| a.text.contains(&refused)
            && a.text.contains("replicas-damaged")
            && a.text.contains("holds")
            && a.text.contains("afresh")),
        "node {r}: `keyward status` says what became of its copy: {:?}",
        st.alerts
    );
    let damaged = m.dir(r).join("state/logs/replicas-damaged");
    let aside: Vec<PathBuf> = std::fs::read_dir(&damaged)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let kept_aside = segment_files(&aside[0]);
    assert_eq!(
        kept_aside.get(&edited),
        Some(&bytes),
        "the evidence is kept as found"
    );
    assert!(!kept_aside.contains_key(&deleted));
    // the origin's next push finds R holding nothing (R answers it with
    // the gap) and pushes its log again: R holds the genuine segments
    let after = "tamper probe line after the restart".to_string();
    log_sealed(&m, &sock, &id, &after);
    m.wait_for(Duration::from_secs(60), || {
        let now = segment_files(&rd);
        Ok(kept(&m, r, &origin).is_some_and(|(h, _)| h >= cp)
            && now.get(&edited) == Some(&held[&edited])
            && now.get(&deleted) == Some(&held[&deleted]))
    })
    .unwrap_or_else(|e| {
        panic!(
            "node {r} never held the origin's log again: {e}: {:?}\n{}",
            kept(&m, r, &origin),
            m.log(r)
        )
    });
    assert!(holds_all(&rd, &id, &msgs) && holds_all(&rd, &id, &[after]));
    for i in 0..N {
        m.stop(i).unwrap();
    }
}

/// An origin restored from an old backup: node 0 logs, is backed up
/// (stopped, its state dir copied), logs more (its replicas hold and
/// witness the longer log), then is restored from the backup and logs
/// other lines. Its log now reuses leaf indices the replicas hold with
/// other segments (equivocation) and its checkpoint is smaller than the one
/// its witnesses cosigned (rollback). Each replica refuses: what it holds
/// and has witnessed stays as it was, file for file; it raises alerts and
/// keeps the evidence (the offending push, and the witness's rollback
/// evidence, which re-verifies on its own). The witness's rollback alert
/// also reaches a member that is neither replica.
#[test]
fn an_origin_restored_from_an_old_backup_is_reported_by_its_replicas_with_evidence() {
    const N: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log");
    let id = age::x25519::Identity::generate();
    let mut m = Mesh::loopback(N, &MeshOptions::default()).unwrap();
    form_logging_mesh(&mut m, N, None, &id.to_public().to_string(), &sock);
    let _logs = LogsOnPanic::of(&m, N, 60);
    let origin = m.status(0).unwrap().node.id;
    let origin_id: NodeId = origin.parse().unwrap();
    let reps = replicas_of_origin(&m, N);
    let bystander = (1..N).find(|j| !reps.contains(j)).unwrap();

    // replicated and witnessed up to `target` by both replicas
    let replicated = |m: &Mesh, target: u64| {
        m.wait_for(Duration::from_secs(60), || {
            let r = m
                .status(0)?
                .replication
                .ok_or_else(|| anyhow::anyhow!("no replication status"))?;
            Ok(r.replicas.len() == 2
                && r.replicas.iter().all(|p| {
                    p.held.is_some_and(|h| h >= target) && p.cosigned.is_some_and(|c| c >= target)
                }))
        })
        .unwrap_or_else(|_| {
            panic!(
                "never replicated and cosigned up to {target}: {:?}",
                m.status(0).map(|s| s.replication)
            )
        });
    };
    let own_size = |m: &Mesh| {
        m.status(0)
            .ok()
            .and_then(|s| s.replication)
            .map_or(0, |r| r.size)
    };

    // before the backup
    for i in 0..3 {
        log_sealed(&m, &sock, &id, &format!("before the backup #{i:03}#"));
    }
    m.wait_for(Duration::from_secs(20), || Ok(own_size(&m) >= 3))
        .unwrap();
    replicated(&m, own_size(&m));
    m.stop(0).unwrap();
    let backup = dir.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    let state = m.dir(0).join("state");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&state)
        .arg(&backup)
        .status()
        .unwrap();
    assert!(st.success());
    let s1 = checkpoint_size(&backup.join("state/logs"), &origin_id).unwrap();
    m.start(0).unwrap();

    // after it: the log grows well past the backup's
    let mut i = 0;
    m.wait_for(Duration::from_secs(90), || {
        log_sealed(&m, &sock, &id, &format!("after the backup #{i:03}#"));
        i += 1;
        Ok(own_size(&m) >= s1 + 8)
    })
    .unwrap();
    replicated(&m, s1 + 8);
    m.stop(0).unwrap();

    // what each replica holds and witnessed, file by file
    let mut before = BTreeMap::new();
    for &j in &reps {
        let rd = replica_dir(&m, j, &origin);
        let (held, witnessed) = kept(&m, j, &origin).unwrap();
        let witnessed = witnessed.unwrap();
        assert!(
            held >= s1 + 8 && witnessed >= s1 + 8,
            "node {j}: {held} {witnessed}"
        );
        let files = segment_files(&rd);
        assert_eq!(files.len() as u64, held, "node {j}");
        let cp = std::fs::read(rd.join("checkpoint")).unwrap();
        before.insert(j, (held, witnessed, files, cp));
    }
    println!(
        "  backup at size {s1}; replicas held {:?} before the restore",
        before
            .iter()
            .map(|(j, b)| (j, b.0, b.1))
            .collect::<Vec<_>>()
    );

    // restore the old state and log other lines
    std::fs::remove_dir_all(&state).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(backup.join("state"))
        .arg(m.dir(0))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(checkpoint_size(&spool(&m, 0), &origin_id), Some(s1));
    m.start(0).unwrap();
    for i in 0..2 {
        log_sealed(&m, &sock, &id, &format!("after the restore #{i:03}#"));
    }

    // each replica: alerts for the rollback (as witness) and the
    // equivocation (as replica), with evidence files
    let ev_dir = |j: usize| m.dir(j).join("state/logs/evidence").join(&origin);
    let ev_files = |j: usize, what: &str| evidence_files(&m, j, &origin_id, what);
    let rollback_alert = format!("logs of {origin}: checkpoint of size ");
    let equivocation = "signed two different segments at index ";
    for &j in &reps {
        let ok = m.wait_for(Duration::from_secs(60), || {
            let alerts = m.status(j)?.alerts;
            let rb = alerts.iter().any(|a| {
                a.text.starts_with(&rollback_alert)
                    && a.text
                        .contains("which this witness already cosigned: a rollback")
            });
            let eq = alerts.iter().any(|a| {
                a.text.starts_with(&format!("logs of {origin}: "))
                    && a.text.contains(equivocation)
                    && a.text.ends_with(": equivocation")
            });
            Ok(rb && eq && !ev_files(j, "rollback").is_empty() && !ev_files(j, "push").is_empty())
        });
        if ok.is_err() {
            panic!(
                "node {j}: alerts {:#?}\nevidence: {:?}\norigin's log:\n{}\nnode {j}'s log:\n{}",
                m.status(j).map(|s| s.alerts),
                std::fs::read_dir(ev_dir(j)).map(|rd| rd
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect::<Vec<_>>()),
                m.log(0),
                m.log(j)
            );
        }
    }

    for &j in &reps {
        let (held, witnessed, files, cp) = &before[&j];
        let alerts = m.status(j).unwrap().alerts;
        for a in &alerts {
            println!("  node {j} alert: {}", a.text);
        }
        // the rollback: offered sizes between the backup's and what it
        // cosigned, and evidence that proves exactly that
        let rb = ev_files(j, "rollback");
        for p in &rb {
            let e = Evidence::decode(&std::fs::read(p).unwrap()).unwrap();
            match e.check().unwrap() {
                EvidenceKind::Rollback {
                    origin: o,
                    cosigned,
                    offered,
                } => {
                    assert_eq!(o, origin_id);
                    assert_eq!(cosigned, *witnessed, "{}", p.display());
                    assert!(offered >= s1 && offered < cosigned, "{offered}");
                }
                k => panic!("{}: {k:?}", p.display()),
            }
        }
        let first_offered = match Evidence::decode(&std::fs::read(&rb[0]).unwrap())
            .unwrap()
            .check()
            .unwrap()
        {
            EvidenceKind::Rollback { offered, .. } => offered,
            k => panic!("{k:?}"),
        };
        assert!(
            alerts.iter().any(|a| a.text
                == format!(
                    "logs of {origin}: checkpoint of size {first_offered} is smaller than size {witnessed}, which this witness already cosigned: a rollback (or a stale copy); refused, evidence attached"
                )),
            "node {j}: {alerts:#?}"
        );
        // the equivocation: the offending push carries, at an index the
        // replica holds, another segment signed by the origin
        let pushes = ev_files(j, "push");
        let mut equivocated = Vec::new();
        for p in &pushes {
            let push = Push::decode(&std::fs::read(p).unwrap()).unwrap();
            assert_eq!(push.origin, origin_id);
            let (cp_size, _) = checkpoint::open(&push.checkpoint, &origin_id).unwrap();
            assert!(cp_size < *held, "a push of size {cp_size}");
            let mut differs = None;
            for (k, b) in push.segments.iter().enumerate() {
                let index = push.from_index + k as u64;
                let seg = Segment::decode(b).expect("a segment the origin signed");
                assert_eq!(seg.header.origin, origin_id);
                if files.get(&index).is_some_and(|h| h[..] != b[..]) && differs.is_none() {
                    differs = Some(index);
                }
            }
            let index = differs
                .unwrap_or_else(|| panic!("{}: no segment differs from those held", p.display()));
            assert!(index >= s1 && index < *held, "{index}");
            equivocated.push(index);
        }
        for index in &equivocated {
            assert!(
                alerts
                    .iter()
                    .any(|a| a.text.starts_with(&format!("logs of {origin}: "))
                        && a.text
                            .ends_with(&format!("{equivocation}{index}: equivocation"))),
                "node {j}: index {index}: {alerts:#?}"
            );
        }
        println!(
            "  node {j}: rollback evidence {:?}, equivocation at {equivocated:?}",
            rb.iter()
                .map(|p| p.file_name().unwrap())
                .collect::<Vec<_>>()
        );
        // nothing it held changed
        let rd = replica_dir(&m, j, &origin);
        assert_eq!(
            kept(&m, j, &origin),
            Some((*held, Some(*witnessed))),
            "node {j} moved to the rolled-back history"
        );
        let now = segment_files(&rd);
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            files.keys().collect::<Vec<_>>(),
            "node {j}"
        );
        for (i, b) in files {
            assert!(now[i] == *b, "node {j}: segment {i} changed");
        }
        assert!(
            std::fs::read(rd.join("checkpoint")).unwrap() == *cp,
            "node {j}: its checkpoint of the origin changed"
        );
    }

    // the witnesses' rollback evidence spreads to the other members
    m.wait_for(Duration::from_secs(30), || {
        Ok(m.status(bystander)?.alerts.iter().any(|a| {
            a.text.starts_with(&format!(
                "logs of {origin}: it offered a checkpoint of size "
            )) && a
                .text
                .contains(": a rollback, proven by evidence a witness holds")
        }))
    })
    .unwrap_or_else(|_| {
        panic!(
            "node {bystander} (no replica) never heard of the rollback: {:#?}",
            m.status(bystander).map(|s| s.alerts)
        )
    });
    for i in 0..N {
        m.stop(i).unwrap();
    }
}

/// A member whose node key an attacker holds (node 0, which logs) pushes
/// its own genuine segments, under its own signed checkpoint, in another
/// member's name (node 2's) to node 1. Node 1 takes none of it: it refuses
/// citing evidence, holds nothing of node 2 and its copy of node 0's log
/// is unchanged; it raises an alert naming the sender and the node it
/// pushed as, and keeps the push, as it came, as evidence against the
/// sender (none against node 2).
#[test]
fn a_member_pushing_its_own_segments_in_another_nodes_name_is_refused_with_evidence() {
    const N: usize = 3;
    const LIAR: usize = 0;
    const TARGET: usize = 1;
    const NAMED: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log");
    let id = age::x25519::Identity::generate();
    let mut m = Mesh::loopback(N, &MeshOptions::default()).unwrap();
    form_logging_mesh(&mut m, N, None, &id.to_public().to_string(), &sock);
    let _logs = LogsOnPanic::of(&m, N, 40);
    let ids = node_ids(&m, N);
    let (liar, named) = (ids[LIAR], ids[NAMED]);

    // genuine segments of the liar, under a checkpoint it signed
    for i in 0..2 {
        log_sealed(&m, &sock, &id, &format!("pushed as another #{i:03}#"));
    }
    let sp = spool(&m, LIAR);
    m.wait_for(Duration::from_secs(20), || {
        Ok(checkpoint_size(&sp, &liar).unwrap_or(0) >= 2)
    })
    .unwrap_or_else(|e| panic!("node {LIAR} never checkpointed 2 segments: {e}"));
    m.stop(LIAR).unwrap();
    let cp = std::fs::read(sp.join("checkpoint")).unwrap();
    let size = checkpoint_size(&sp, &liar).unwrap();
    let files = segment_files(&sp);
    let segs: Vec<Vec<u8>> = (0..size)
        .map(|i| {
            files
                .get(&i)
                .unwrap_or_else(|| panic!("segment {i} under the checkpoint ({size}) is missing"))
                .clone()
        })
        .collect();
    let push = Push::pack(named, 0, cp, segs);
    assert!(!push.segments.is_empty());
    let replica_before = segment_files(&replica_dir(&m, TARGET, &liar.to_string()));

    let r = ask_with_key_of(
        &m,
        LIAR,
        TARGET,
        &ids[TARGET],
        Request::LogPush(Box::new(push.clone())),
    );
    match &r {
        Response::LogRefused(refused) => {
            assert_eq!(refused.code, RefusedCode::Evidence, "{refused:?}")
        }
        r => panic!("a push in node {NAMED}'s name was answered {r:?}"),
    }
    let want = format!(
        "logs of {liar}: {liar} pushed segments in the name of {named}: only an origin pushes its own log"
    );
    m.wait_for(Duration::from_secs(10), || {
        Ok(m.status(TARGET)?.alerts.iter().any(|a| a.text == want))
    })
    .unwrap_or_else(|_| {
        panic!(
            "no alert {want:?}: {:#?}",
            m.status(TARGET).map(|s| s.alerts)
        )
    });
    // the push, as it came, against its sender
    let kept_push = evidence_files(&m, TARGET, &liar, "push");
    assert_eq!(kept_push.len(), 1, "{kept_push:?}");
    let p = Push::decode(&std::fs::read(&kept_push[0]).unwrap()).unwrap();
    assert_eq!(p, push, "the evidence is the push as it came");
    assert!(
        !m.dir(TARGET)
            .join("state/logs/evidence")
            .join(named.to_string())
            .exists(),
        "evidence against the node named, which pushed nothing"
    );
    // nothing taken in node 2's name, nothing of node 0's copy changed
    let st = m.status(TARGET).unwrap();
    let kept = st.replication.map(|r| r.kept).unwrap_or_default();
    assert!(
        kept.iter()
            .all(|k| k.origin != named.to_string() || k.held == 0),
        "node {TARGET} took something in node {NAMED}'s name: {kept:?}"
    );
    let named_dir = replica_dir(&m, TARGET, &named.to_string());
    assert!(segment_files(&named_dir).is_empty());
    assert!(!named_dir.join("checkpoint").exists());
    assert_eq!(
        segment_files(&replica_dir(&m, TARGET, &liar.to_string())),
        replica_before,
        "node {TARGET}'s copy of node {LIAR}'s log changed"
    );
    for i in 0..N {
        m.stop(i).unwrap();
    }
}

/// A member whose node key an attacker holds (node 2, its daemon
/// stopped) shows one history of its log to one of its witnesses and
/// another to the other, each consistent on its own, so each cosigns. Its
/// witnesses are its replicas (rendezvous placement over the roster), the
/// peers that compare what they cosigned: both raise a fork alert against
/// node 2 and keep evidence that re-verifies as a fork of node 2's, and
/// the evidence spreads to the member that is neither (the bystander),
/// which checks it and raises the alert too.
#[test]
fn an_origin_showing_two_witnesses_different_histories_is_found_out() {
    const N: usize = 4;
    const LIAR: usize = 2;
    const LEAVES: u64 = 3;
    let mut m = Mesh::loopback(N, &MeshOptions::default()).unwrap();
    let _logs = LogsOnPanic::of(&m, N, 40);
    m.form().unwrap_or_else(|e| panic!("{e}"));
    let ids = node_ids(&m, N);
    let liar = ids[LIAR];
    // the liar's replicas, which every node computes alike: witnesses
    // gossip what they cosigned to the origin's other replicas only
    let mut others: Vec<usize> = (0..N).filter(|&j| j != LIAR).collect();
    others.sort_by_key(|&j| std::cmp::Reverse(placement::rank(&liar, &ids[j])));
    let bystander = others.split_off(placement::DEFAULT_REPLICAS)[0];
    let witnesses = others;
    println!("  node {LIAR} lies; its witnesses: nodes {witnesses:?}; bystander: node {bystander}");
    m.stop(LIAR).unwrap();
    let key = m.node_key(LIAR).unwrap();

    // two histories of LEAVES leaves, both signed by the liar
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let history = |salt: u8| {
        let mut log = MerkleLog::new(liar);
        // a witness sees only the signed checkpoint: any leaves do
        for seq in 0..LEAVES {
            log.append(format!("segment {seq} of history {salt}").as_bytes())
                .unwrap();
        }
        log.checkpoint(now, &key).unwrap().note
    };
    for (salt, &w) in witnesses.iter().enumerate() {
        let body = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: history(salt as u8),
        }
        .to_body()
        .unwrap();
        let r = ask_with_key_of(&m, LIAR, w, &ids[w], Request::AddCheckpoint { body });
        assert!(
            matches!(&r, Response::Cosigned { .. }),
            "witness node {w}: {r:?}"
        );
    }

    let fork = EvidenceKind::Fork {
        origin: liar,
        a: LEAVES,
        b: LEAVES,
    };
    for &w in &witnesses {
        // each names the fellow witness that cosigned the other history
        let fellow = witnesses
            .iter()
            .find(|&&f| f != w)
            .map(|&f| ids[f])
            .unwrap();
        let found = format!(
            "logs of {liar}: two checkpoints it signed cannot both be true: this witness cosigned one, {fellow} another"
        );
        m.wait_for(Duration::from_secs(20), || {
            let alerts = m.status(w)?.alerts;
            Ok(alerts.iter().any(|a| {
                a.text.starts_with(&found)
                    && a.text.contains("(a fork, shown to different witnesses)")
            }) && !evidence_files(&m, w, &liar, "fork").is_empty())
        })
        .unwrap_or_else(|_| {
            panic!(
                "witness node {w} never reported the fork: {:#?}\n{}",
                m.status(w).map(|s| s.alerts),
                m.log(w)
            )
        });
        for p in evidence_files(&m, w, &liar, "fork") {
            let e = Evidence::decode(&std::fs::read(&p).unwrap()).unwrap();
            assert_eq!(e.check().unwrap(), fork, "{}", p.display());
        }
        for a in m.status(w).unwrap().alerts {
            println!("  witness node {w} alert: {}", a.text);
        }
    }
    let spread = format!(
        "logs of {liar}: it signed two histories (checkpoints of sizes {LEAVES} and {LEAVES} that cannot both be true): a fork, proven by evidence a witness holds"
    );
    m.wait_for(Duration::from_secs(30), || {
        Ok(m.status(bystander)?.alerts.iter().any(|a| a.text == spread))
    })
    .unwrap_or_else(|_| {
        panic!(
            "node {bystander} (no witness) never heard of the fork: {:#?}",
            m.status(bystander).map(|s| s.alerts)
        )
    });
    for i in 0..N {
        m.stop(i).unwrap();
    }
}
