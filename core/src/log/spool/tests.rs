//! The spool's decisions, and a crash at every step of a run: whatever
//! the disk kept, a resumed spool loses no acknowledged line, logs none
//! twice and leaves no gap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::resume::{scan_segment, JournalFile, OnDisk};
use super::*;
use crate::log::line::Sender;
use crate::log::recipients::Recipient;
use crate::log::segment::{Segment, SegmentHeader};
use crate::log::verify::{verify_spool, Finding};

struct Fx {
    key: Arc<NodeKey>,
    auditor: age::x25519::Identity,
    recipients: Arc<Recipients>,
}

fn fx() -> Fx {
    let auditor = age::x25519::Identity::generate();
    let admin = age::x25519::Identity::generate();
    Fx {
        key: Arc::new(NodeKey::generate()),
        recipients: Arc::new(
            Recipients::new(
                vec![Recipient::X25519(auditor.to_public())],
                Some(Recipient::X25519(admin.to_public())),
            )
            .unwrap(),
        ),
        auditor,
    }
}

fn cfg() -> SpoolConfig {
    SpoolConfig {
        limits: Limits {
            max_bytes: 2048,
            max_lines: 4,
            max_age_ms: 1000,
        },
        sources: vec![
            SourcePolicy {
                name: "auth".into(),
                confidential: true,
                retention_ms: 0,
            },
            SourcePolicy {
                name: "web".into(),
                confidential: false,
                retention_ms: 0,
            },
        ],
        quota_bytes: 1 << 30,
        warn_percent: 80,
        when_full: WhenFull::Refuse,
        checkpoint_ms: 60_000,
    }
}

fn line(msg: &str) -> Line {
    Line {
        time: 1000,
        sender: Sender {
            pid: Some(1),
            uid: Some(0),
            gid: None,
        },
        msg: msg.as_bytes().to_vec(),
    }
}

/// A disk that keeps what was synced, and loses (all, none or some of)
/// what was not when it crashes.
#[derive(Default, Clone)]
struct Disk {
    durable: BTreeMap<String, Vec<u8>>,
    pending: Vec<(String, Option<Vec<u8>>, bool)>,
}

impl Disk {
    fn view(&self) -> BTreeMap<String, Vec<u8>> {
        let mut v = self.durable.clone();
        apply(&mut v, &self.pending, |_| true);
        v
    }
    fn sync(&mut self) {
        let p = std::mem::take(&mut self.pending);
        apply(&mut self.durable, &p, |_| true);
    }
    /// Keeps the pending writes `keep` picks (by position), in order; a
    /// file keeps only a prefix of its own writes (appends are not
    /// reordered within a file, only torn).
    fn crash(&mut self, keep: impl Fn(usize) -> bool) {
        let p = std::mem::take(&mut self.pending);
        let mut broken = BTreeSet::new();
        let mut kept = Vec::new();
        for (i, op) in p.iter().enumerate() {
            if broken.contains(&op.0) || !keep(i) {
                broken.insert(op.0.clone());
            } else {
                kept.push(op.clone());
            }
        }
        apply(&mut self.durable, &kept, |_| true);
    }
}

/// (path, Some(bytes) = write, None = delete, append?)
fn apply(
    files: &mut BTreeMap<String, Vec<u8>>,
    ops: &[(String, Option<Vec<u8>>, bool)],
    keep: impl Fn(usize) -> bool,
) {
    for (i, (path, bytes, append)) in ops.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        match bytes {
            Some(b) if *append => files.entry(path.clone()).or_default().extend_from_slice(b),
            Some(b) => {
                files.insert(path.clone(), b.clone());
            }
            None => {
                files.remove(path);
            }
        }
    }
}

fn seg_path(i: u64) -> String {
    format!("segments/{i:020}")
}

/// Runs a spool's outputs against a disk. Stops (crashes) after `budget`
/// outputs if given; returns false then.
struct Run {
    disk: Disk,
    acked: BTreeSet<AckToken>,
    refused: BTreeMap<AckToken, Refusal>,
    warnings: Vec<Warning>,
    budget: Option<usize>,
}

impl Run {
    fn new(disk: Disk) -> Self {
        Run {
            disk,
            acked: BTreeSet::new(),
            refused: BTreeMap::new(),
            warnings: Vec::new(),
            budget: None,
        }
    }

    fn drive(&mut self, sp: &mut Spool, now: Millis) -> bool {
        while let Some(o) = sp.poll_output() {
            if let Some(b) = &mut self.budget {
                if *b == 0 {
                    return false;
                }
                *b -= 1;
            }
            let p = &mut self.disk.pending;
            match o {
                Output::AppendJournal(w) => {
                    let path = format!("journal/{}.{}", w.source, w.seq);
                    if w.create {
                        p.push((path.clone(), Some(Vec::new()), false));
                    }
                    p.push((path, Some(w.bytes), true));
                }
                Output::WriteSegment { index, bytes, .. } => {
                    p.push((seg_path(index), Some(bytes), false))
                }
                Output::WriteTile(t) => p.push((t.path, Some(t.bytes), false)),
                Output::ReplaceCheckpoint { note } => {
                    p.push(("checkpoint".into(), Some(note), false))
                }
                Output::Sync { id } => {
                    self.disk.sync();
                    sp.written(now, id);
                }
                Output::DeleteJournal { source, seq } => {
                    p.push((format!("journal/{source}.{seq}"), None, false))
                }
                Output::QuarantineJournal { source, seq } => {
                    let from = format!("journal/{source}.{seq}");
                    let b = self.disk.view().get(&from).cloned().unwrap_or_default();
                    let p = &mut self.disk.pending;
                    p.push((format!("{from}.damaged"), Some(b), false));
                    p.push((from, None, false));
                }
                Output::DeleteSegment { index } => p.push((seg_path(index), None, false)),
                Output::Ack(t) => {
                    self.acked.insert(t);
                }
                Output::Refuse { token, why } => {
                    self.refused.insert(token, why);
                }
                Output::Warn(w) => self.warnings.push(w),
            }
        }
        true
    }
}

fn resume(f: &Fx, files: &BTreeMap<String, Vec<u8>>, cfg: SpoolConfig, now: Millis) -> Spool {
    let tiles: BTreeMap<String, Vec<u8>> = files
        .iter()
        .filter(|(p, _)| p.starts_with("tile/"))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect();
    let segments = files
        .iter()
        .filter_map(|(p, b)| {
            let i: u64 = p.strip_prefix("segments/")?.parse().ok()?;
            Some(scan_segment(i, b))
        })
        .collect();
    let journals = files
        .iter()
        .filter_map(|(p, b)| {
            let name = p.strip_prefix("journal/")?;
            let (source, seq) = name.rsplit_once('.')?;
            Some(JournalFile {
                source: source.into(),
                seq: seq.parse().ok()?,
                bytes: b.clone(),
            })
        })
        .collect();
    Spool::resume(
        f.key.clone(),
        f.recipients.clone(),
        cfg,
        OnDisk {
            checkpoint: files.get("checkpoint").cloned(),
            tiles: &tiles,
            tiles_bytes: tiles.values().map(|b| b.len() as u64).sum(),
            segments,
            journals,
        },
        now,
    )
    .unwrap()
}

/// Every line of the spool's genuine segments, and the verification
/// findings.
fn read_back(f: &Fx, files: &BTreeMap<String, Vec<u8>>) -> (Vec<String>, Vec<Finding>) {
    let tiles: BTreeMap<String, Vec<u8>> = files
        .iter()
        .filter(|(p, _)| p.starts_with("tile/"))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect();
    let segments: BTreeMap<u64, Vec<u8>> = files
        .iter()
        .filter_map(|(p, b)| Some((p.strip_prefix("segments/")?.parse().ok()?, b.clone())))
        .collect();
    let r = verify_spool(
        &f.key.id(),
        files.get("checkpoint").expect("a checkpoint"),
        &tiles,
        &segments,
        0,
    )
    .unwrap();
    let mut lines = Vec::new();
    for i in r.verified.keys() {
        let seg = Segment::decode(&segments[i]).unwrap();
        for l in seg.open(&f.auditor).unwrap() {
            lines.push(String::from_utf8(l.msg).unwrap());
        }
    }
    (lines, r.findings)
}

/// A scripted run: batches of both sources with acks, commits, a timeout
/// seal, and a checkpoint. Returns the messages of each token.
fn script(sp: &mut Spool, run: &mut Run) -> (BTreeMap<AckToken, Vec<String>>, bool) {
    let mut rng = rand::rngs::OsRng;
    let mut tokens = BTreeMap::new();
    let mut now = 1000;
    for step in 0..9u64 {
        for (k, source) in ["auth", "web"].iter().enumerate() {
            if (step + k as u64) % 3 == 2 {
                continue;
            }
            let t = step * 10 + k as u64;
            let msgs: Vec<String> = (0..(1 + step % 3))
                .map(|i| format!("{source}-{step}-{i}"))
                .collect();
            let lines: Vec<Line> = msgs.iter().map(|m| line(m)).collect();
            sp.lines(now, source, &lines, Some(t), &mut rng);
            tokens.insert(t, msgs);
        }
        sp.commit(now);
        if !run.drive(sp, now) {
            return (tokens, false);
        }
        now += 400;
        if step == 5 {
            now += 2000;
        }
        if sp.poll_timeout().is_some_and(|t| t <= now) {
            sp.handle_timeout(now);
            if !run.drive(sp, now) {
                return (tokens, false);
            }
        }
    }
    (tokens, true)
}

fn finish(f: &Fx, files: BTreeMap<String, Vec<u8>>, now: Millis) -> BTreeMap<String, Vec<u8>> {
    let mut sp = resume(f, &files, cfg(), now);
    let mut run = Run::new(Disk {
        durable: files,
        pending: vec![],
    });
    assert!(run.drive(&mut sp, now));
    sp.seal_all(now);
    assert!(run.drive(&mut sp, now));
    sp.handle_timeout(now + 120_000);
    assert!(run.drive(&mut sp, now));
    assert!(!sp.busy());
    run.disk.sync();
    run.disk.durable
}

#[test]
fn a_clean_run_logs_every_line_once_in_order() {
    let f = fx();
    let mut sp = resume(&f, &BTreeMap::new(), cfg(), 0);
    let mut run = Run::new(Disk::default());
    let (tokens, done) = script(&mut sp, &mut run);
    assert!(done);
    assert_eq!(run.acked.len(), tokens.len());
    sp.seal_all(99_000);
    assert!(run.drive(&mut sp, 99_000));
    let files = run.disk.view();
    assert!(
        !files.keys().any(|p| p.starts_with("journal/")),
        "{:?}",
        files.keys()
    );
    let (lines, findings) = read_back(&f, &files);
    assert!(findings.is_empty(), "{findings:?}");
    let mut want: Vec<&String> = tokens.values().flatten().collect();
    want.sort();
    let mut got: Vec<&String> = lines.iter().collect();
    got.sort();
    assert_eq!(got, want);
    // per source, in the order they came
    for src in ["auth", "web"] {
        let of: Vec<&String> = lines.iter().filter(|l| l.starts_with(src)).collect();
        let mut sorted = of.clone();
        sorted.sort_by_key(|s| {
            let p: Vec<u64> = s.split('-').skip(1).map(|x| x.parse().unwrap()).collect();
            (p[0], p[1])
        });
        assert_eq!(of, sorted);
    }
}

#[test]
fn a_crash_at_any_step_loses_nothing_acknowledged_and_duplicates_nothing() {
    let f = fx();
    // how many outputs a full run has
    let total = {
        let mut sp = resume(&f, &BTreeMap::new(), cfg(), 0);
        let mut run = Run::new(Disk::default());
        run.budget = Some(usize::MAX);
        script(&mut sp, &mut run);
        usize::MAX - run.budget.unwrap()
    };
    assert!(total > 40, "{total}");
    for k in 0..total {
        // 0: lose every unsynced write; 1: keep all; 2, 3: keep alternate ones
        for mode in 0..4usize {
            let mut sp = resume(&f, &BTreeMap::new(), cfg(), 0);
            let mut run = Run::new(Disk::default());
            run.budget = Some(k);
            let (tokens, done) = script(&mut sp, &mut run);
            assert!(!done || k >= total);
            drop(sp);
            let mut disk = run.disk.clone();
            disk.crash(|i| match mode {
                0 => false,
                1 => true,
                m => i % 2 == m - 2,
            });
            let files = finish(&f, disk.durable, 50_000);
            let (lines, findings) = read_back(&f, &files);
            assert!(
                findings.is_empty(),
                "crash after {k} outputs, mode {mode}: {findings:?}"
            );
            let set: BTreeSet<&String> = lines.iter().collect();
            assert_eq!(
                set.len(),
                lines.len(),
                "crash after {k}, mode {mode}: a line logged twice"
            );
            for t in &run.acked {
                for m in &tokens[t] {
                    assert!(
                        set.contains(m),
                        "crash after {k}, mode {mode}: acknowledged {m} lost"
                    );
                }
            }
        }
    }
}

#[test]
fn acks_wait_for_the_barrier_and_journals_for_the_checkpoint() {
    let f = fx();
    let mut sp = resume(&f, &BTreeMap::new(), cfg(), 0);
    let mut rng = rand::rngs::OsRng;
    sp.lines(10, "auth", &[line("a"), line("b")], Some(1), &mut rng);
    assert!(sp.poll_output().is_none(), "nothing before the commit");
    sp.commit(10);
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    assert!(matches!(outs[0], Output::AppendJournal(ref w) if w.create && w.source == "auth"));
    let Output::Sync { id } = outs.last().unwrap().clone() else {
        panic!("{outs:?}")
    };
    assert!(!outs.iter().any(|o| matches!(o, Output::Ack(_))));
    sp.written(11, id);
    assert_eq!(sp.poll_output(), Some(Output::Ack(1)));
    // fill the segment (4 lines): the fifth line seals it
    sp.lines(
        20,
        "auth",
        &[line("c"), line("d"), line("e")],
        Some(2),
        &mut rng,
    );
    sp.commit(20);
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    let kinds: Vec<&str> = outs
        .iter()
        .map(|o| match o {
            Output::AppendJournal(_) => "journal",
            Output::WriteSegment { .. } => "segment",
            Output::WriteTile(_) => "tile",
            Output::Sync { .. } => "sync",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["journal", "segment", "tile", "sync"]);
    let Output::Sync { id } = outs[3] else {
        panic!()
    };
    sp.written(21, id);
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    assert!(matches!(outs[0], Output::Ack(2)));
    assert!(matches!(outs[1], Output::ReplaceCheckpoint { .. }));
    let Output::Sync { id } = outs[2] else {
        panic!("{outs:?}")
    };
    assert_eq!(
        outs.len(),
        3,
        "the journal stays until the checkpoint is durable"
    );
    sp.written(22, id);
    assert_eq!(
        sp.poll_output(),
        Some(Output::DeleteJournal {
            source: "auth".into(),
            seq: 0
        })
    );
}

#[test]
fn refusals_say_why_and_take_nothing() {
    let f = fx();
    let mut c = cfg();
    c.quota_bytes = 4096;
    let mut sp = resume(&f, &BTreeMap::new(), c, 0);
    let mut rng = rand::rngs::OsRng;
    sp.lines(1, "nope", &[line("x")], Some(1), &mut rng);
    let big = Line {
        msg: vec![b'x'; MAX_MSG + 1],
        ..line("")
    };
    sp.lines(1, "auth", &[line("ok"), big], Some(2), &mut rng);
    // over the quota (it must fit twice)
    let many: Vec<Line> = (0..40).map(|i| line(&format!("{i:060}"))).collect();
    sp.lines(1, "auth", &many, Some(3), &mut rng);
    sp.lines(1, "auth", &many, None, &mut rng);
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    assert!(
        matches!(&outs[0], Output::Refuse { token: 1, why: Refusal::UnknownSource(s) } if s == "nope")
    );
    assert!(matches!(
        &outs[1],
        Output::Refuse {
            token: 2,
            why: Refusal::TooLong { .. }
        }
    ));
    assert!(matches!(
        &outs[2],
        Output::Refuse {
            token: 3,
            why: Refusal::Full { quota: 4096, .. }
        }
    ));
    assert!(matches!(
        &outs[3],
        Output::Warn(Warning::Full {
            refused_lines: 40,
            ..
        })
    ));
    // the datagram batch is counted, the warning throttled
    assert_eq!(outs.len(), 4);
    assert_eq!(sp.usage().refused_lines, 80);
    // nothing was taken: no journal to write
    sp.commit(2);
    assert!(sp.poll_output().is_none());
    assert_eq!(sp.next_seq("auth"), Some(0));
}

#[test]
fn drop_oldest_replicated_refuses_until_peers_hold_segments() {
    let f = fx();
    let mut c = cfg();
    c.when_full = WhenFull::DropOldestReplicated;
    c.limits.max_lines = 1;
    let mut sp = resume(&f, &BTreeMap::new(), c.clone(), 0);
    let mut run = Run::new(Disk::default());
    let mut rng = rand::rngs::OsRng;
    for i in 0..6 {
        sp.lines(i, "auth", &[line(&format!("{i:0200}"))], Some(i), &mut rng);
        sp.commit(i);
        run.drive(&mut sp, i);
    }
    sp.seal_all(10);
    run.drive(&mut sp, 10);
    assert_eq!(run.acked.len(), 6);
    let used = sp.usage().used_bytes;
    // shrink the quota to what is used: the next batch does not fit
    let files = run.disk.view();
    c.quota_bytes = used + 100;
    let mut sp = resume(&f, &files, c, 20);
    run.drive(&mut sp, 20);
    sp.lines(21, "auth", &[line("late")], Some(100), &mut rng);
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    assert!(
        matches!(
            outs[0],
            Output::Refuse {
                token: 100,
                why: Refusal::Full { .. }
            }
        ),
        "{outs:?}"
    );
    // peers hold segments 0..=4 now (5 is auth's newest: it stays)
    for i in 0..6 {
        sp.replicated(i);
    }
    sp.lines(22, "auth", &[line("late")], Some(101), &mut rng);
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    assert!(
        matches!(outs[0], Output::DeleteSegment { index: 0 }),
        "{outs:?}"
    );
    assert!(!outs.iter().any(|o| matches!(o, Output::Refuse { .. })));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::DeleteSegment { index: 5 })));
}

#[test]
fn the_warning_comes_once_each_way() {
    let f = fx();
    let mut c = cfg();
    c.quota_bytes = 20_000;
    c.warn_percent = 10;
    let mut sp = resume(&f, &BTreeMap::new(), c, 0);
    let mut run = Run::new(Disk::default());
    let mut rng = rand::rngs::OsRng;
    for i in 0..3 {
        sp.lines(i, "web", &[line(&format!("{i:0800}"))], Some(i), &mut rng);
        sp.commit(i);
        run.drive(&mut sp, i);
    }
    let nearing = run
        .warnings
        .iter()
        .filter(|w| matches!(w, Warning::Nearing { percent: 10, .. }))
        .count();
    assert_eq!(nearing, 1, "{:?}", run.warnings);
    assert!(sp.usage().warning);
}

#[test]
fn retention_deletes_old_logged_segments_but_keeps_each_sources_newest() {
    let f = fx();
    let mut c = cfg();
    c.limits.max_lines = 1;
    c.sources[0].retention_ms = 10_000;
    let mut sp = resume(&f, &BTreeMap::new(), c, 0);
    let mut run = Run::new(Disk::default());
    let mut rng = rand::rngs::OsRng;
    for i in 0..4 {
        sp.lines(i, "auth", &[line(&format!("a{i}"))], Some(i), &mut rng);
        sp.lines(i, "web", &[line(&format!("w{i}"))], Some(10 + i), &mut rng);
        sp.commit(i);
        run.drive(&mut sp, i);
    }
    sp.seal_all(5);
    run.drive(&mut sp, 5);
    let due = sp.poll_timeout().unwrap();
    assert!(due <= 10_010, "{due}");
    sp.handle_timeout(20_000);
    run.drive(&mut sp, 20_000);
    let files = run.disk.view();
    let segs: Vec<SegmentHeader> = files
        .iter()
        .filter(|(p, _)| p.starts_with("segments/"))
        .map(|(_, b)| Segment::decode(b).unwrap().header)
        .collect();
    let auth: Vec<u64> = segs
        .iter()
        .filter(|h| h.source == "auth")
        .map(|h| h.seq)
        .collect();
    assert_eq!(auth, [3], "only auth's newest remains");
    assert_eq!(segs.iter().filter(|h| h.source == "web").count(), 4);
    // a restart continues auth's sequence from its newest segment
    let sp = resume(&f, &files, cfg(), 30_000);
    assert_eq!(sp.next_seq("auth"), Some(4));
}

#[test]
fn resume_refuses_a_tampered_log_and_discards_strays() {
    let f = fx();
    let mut sp = resume(&f, &BTreeMap::new(), cfg(), 0);
    let mut run = Run::new(Disk::default());
    script(&mut sp, &mut run);
    sp.seal_all(9000);
    run.drive(&mut sp, 9000);
    let files = run.disk.view();
    // the level-0 tiles edited
    let mut bad = files.clone();
    for (_, b) in bad.iter_mut().filter(|(p, _)| p.starts_with("tile/0/")) {
        b[0] ^= 1;
    }
    let r = Spool::resume(
        f.key.clone(),
        f.recipients.clone(),
        cfg(),
        OnDisk {
            checkpoint: bad.get("checkpoint").cloned(),
            tiles: &bad
                .iter()
                .filter(|(p, _)| p.starts_with("tile/"))
                .map(|(p, b)| (p.clone(), b.clone()))
                .collect::<BTreeMap<_, _>>(),
            tiles_bytes: 0,
            segments: vec![],
            journals: vec![],
        },
        0,
    );
    assert!(matches!(r, Err(resume::ResumeError::Merkle(_))));
    // a stray segment file beyond the checkpoint, not a valid one
    let mut stray = files.clone();
    let n = stray.keys().filter(|p| p.starts_with("segments/")).count() as u64;
    stray.insert(seg_path(n), b"junk".to_vec());
    stray.insert(seg_path(n + 5), files[&seg_path(0)].clone());
    let mut sp = resume(&f, &stray, cfg(), 10_000);
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    assert!(outs.contains(&Output::DeleteSegment { index: n }));
    assert!(outs.contains(&Output::DeleteSegment { index: n + 5 }));
    // a journal that cannot be parsed is kept aside and leaves a gap
    let mut dmg = files.clone();
    dmg.insert(
        "journal/auth.99".into(),
        vec![0, 0, 0, 1, 0xff, 0, 0, 0, 3, 1],
    );
    let next = resume(&f, &files, cfg(), 0).next_seq("auth").unwrap();
    dmg.insert(
        format!("journal/auth.{next}"),
        vec![0, 0, 0, 2, 0xff, 0xff, 0, 0, 0, 1, 1],
    );
    let mut sp = resume(&f, &dmg, cfg(), 10_000);
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    assert!(outs.contains(&Output::QuarantineJournal {
        source: "auth".into(),
        seq: next
    }));
    assert!(outs.contains(&Output::DeleteJournal {
        source: "auth".into(),
        seq: 99
    }));
    assert_eq!(sp.next_seq("auth"), Some(next + 1));
}

#[test]
fn a_failed_write_refuses_its_lines_and_what_follows() {
    let f = fx();
    let mut sp = resume(&f, &BTreeMap::new(), cfg(), 0);
    let mut rng = rand::rngs::OsRng;
    sp.lines(1, "auth", &[line("a")], Some(1), &mut rng);
    sp.commit(1);
    let id = std::iter::from_fn(|| sp.poll_output())
        .find_map(|o| match o {
            Output::Sync { id } => Some(id),
            _ => None,
        })
        .unwrap();
    sp.write_failed(id, "No space left on device");
    let outs: Vec<Output> = std::iter::from_fn(|| sp.poll_output()).collect();
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Refuse {
            token: 1,
            why: Refusal::Io(_)
        }
    )));
    sp.lines(2, "auth", &[line("b")], Some(2), &mut rng);
    assert!(matches!(
        sp.poll_output(),
        Some(Output::Refuse {
            token: 2,
            why: Refusal::Io(_)
        })
    ));
}
