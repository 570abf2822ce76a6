//! Log pipeline costs in keyward-core, no IO: sealing 120-byte lines into
//! 1 MiB segments (age encryption + ed25519 signature), with and without
//! the journal frames of group commit; Merkle appends; checkpoints; and
//! reading segments back (decode + hash + signature check).
//! Run: `cargo bench -p keyward-core --bench logs` (prints a table).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use keyward_core::identity::NodeKey;
use keyward_core::log::line::{Line, Sender};
use keyward_core::log::merkle::MerkleLog;
use keyward_core::log::recipients::{Recipient, Recipients};
use keyward_core::log::segment::Segment;
use keyward_core::log::segmenter::{Limits, Segmenter, Source};

const LINES: usize = 1_000_000;
const MSG: usize = 120;

fn row(what: &str, n: usize, unit: &str, secs: f64, bytes: Option<usize>) {
    let mbs = bytes.map_or(String::from("-"), |b| {
        format!("{:.0}", b as f64 / secs / 1e6)
    });
    println!(
        "| {what:<52} | {n:>9} {unit:<8} | {:>8.3} s | {:>12.0} /s | {mbs:>6} MB/s |",
        secs,
        n as f64 / secs
    );
}

fn run_segmenter(
    key: &Arc<NodeKey>,
    recipients: &Arc<Recipients>,
    confidential: bool,
    group_commit: Option<usize>,
) -> (f64, usize, usize) {
    let mut s = Segmenter::new(
        key.clone(),
        recipients.clone(),
        Source {
            name: "bench".into(),
            confidential,
        },
        Limits::default(),
        0,
    )
    .unwrap();
    let mut rng = rand::rngs::OsRng;
    let mut line = Line {
        time: 0,
        sender: Sender {
            pid: Some(1234),
            uid: Some(33),
            gid: Some(33),
        },
        msg: vec![b'x'; MSG],
    };
    let (mut segments, mut journal) = (0usize, 0usize);
    let t0 = Instant::now();
    for i in 0..LINES {
        line.time = 1_700_000_000_000 + (i as u64 / 1000);
        line.msg[..8].copy_from_slice(&(i as u64).to_be_bytes());
        if s.push(line.time, &line, &mut rng).unwrap().is_some() {
            segments += 1;
        }
        if let Some(n) = group_commit {
            if i % n == n - 1 {
                journal += s
                    .take_journal()
                    .iter()
                    .map(|w| w.bytes.len())
                    .sum::<usize>();
            }
        }
    }
    if s.seal(u64::MAX / 2).unwrap().is_some() {
        segments += 1;
    }
    (t0.elapsed().as_secs_f64(), segments, journal)
}

fn main() {
    let key = Arc::new(NodeKey::generate_with(&mut rand::rngs::OsRng));
    let auditor = age::x25519::Identity::generate();
    let admin = age::x25519::Identity::generate();
    let recipients = Arc::new(
        Recipients::new(
            vec![Recipient::X25519(auditor.to_public())],
            Some(Recipient::X25519(admin.to_public())),
        )
        .unwrap(),
    );
    println!(
        "{LINES} lines of {MSG} bytes, segments of {} KiB plaintext\n",
        Limits::default().max_bytes / 1024
    );
    println!(
        "| {:<52} | {:>18} | {:>10} | {:>15} | {:>11} |",
        "what", "count", "time", "rate", "payload"
    );
    println!(
        "|{:-<54}|{:-<20}|{:-<12}|{:-<17}|{:-<13}|",
        "", "", "", "", ""
    );

    let (t, segs, _) = run_segmenter(&key, &recipients, true, None);
    row(
        &format!("seal, confidential, no journal ({segs} segments)"),
        LINES,
        "lines",
        t,
        Some(LINES * MSG),
    );
    for gc in [64usize, 1024] {
        let (t, segs, j) = run_segmenter(&key, &recipients, true, Some(gc));
        row(
            &format!("seal + journal frame every {gc} lines ({segs} seg)"),
            LINES,
            "lines",
            t,
            Some(LINES * MSG),
        );
        let _ = j;
    }
    let (t, segs, _) = run_segmenter(&key, &recipients, false, Some(1024));
    row(
        &format!("same, non-confidential (auditor + admin, {segs} seg)"),
        LINES,
        "lines",
        t,
        Some(LINES * MSG),
    );

    // Reading back: decode + SHA-256 + signature of every segment, then
    // decrypt + parse one.
    let mut s = Segmenter::new(
        key.clone(),
        recipients.clone(),
        Source {
            name: "bench".into(),
            confidential: true,
        },
        Limits::default(),
        0,
    )
    .unwrap();
    let line = Line {
        time: 1,
        sender: Sender::default(),
        msg: vec![b'y'; MSG],
    };
    let mut sealed = Vec::new();
    while sealed.len() < 20 {
        if let Some(x) = s.push(1, &line, &mut rand::rngs::OsRng).unwrap() {
            sealed.push(x);
        }
    }
    let bytes: usize = sealed.iter().map(|x| x.bytes.len()).sum();
    let t0 = Instant::now();
    for x in &sealed {
        Segment::decode(&x.bytes).unwrap();
    }
    row(
        "verify segment (decode, SHA-256, ed25519)",
        sealed.len(),
        "segments",
        t0.elapsed().as_secs_f64(),
        Some(bytes),
    );
    let seg = Segment::decode(&sealed[0].bytes).unwrap();
    let t0 = Instant::now();
    let n = seg.open(&auditor).unwrap().len();
    row(
        "open segment as auditor (age decrypt + parse)",
        n,
        "lines",
        t0.elapsed().as_secs_f64(),
        Some(seg.body.len()),
    );

    // Merkle: appends of segment-header-sized leaves, then checkpoints.
    let leaf = sealed[0].leaf.clone();
    let n = 1_000_000usize;
    let mut log = MerkleLog::new(key.id());
    let mut tiles = BTreeMap::new();
    let mut tile_bytes = 0usize;
    let t0 = Instant::now();
    let mut l = leaf.clone();
    for i in 0..n {
        l[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let (_, w) = log.append(&l).unwrap();
        for t in w {
            tile_bytes += t.bytes.len();
            if i >= n - 4096 {
                tiles.insert(t.path, t.bytes);
            }
        }
    }
    row(
        &format!("merkle append ({}-byte leaves, tiles built)", leaf.len()),
        n,
        "leaves",
        t0.elapsed().as_secs_f64(),
        None,
    );
    println!(
        "  (tile bytes returned for writing, one append at a time: {:.0} MB)",
        tile_bytes as f64 / 1e6
    );
    let mut log = MerkleLog::new(key.id());
    let leaves: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut l = leaf.clone();
            l[..8].copy_from_slice(&(i as u64).to_be_bytes());
            l
        })
        .collect();
    let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
    let mut tile_bytes = 0usize;
    let t0 = Instant::now();
    for chunk in refs.chunks(64) {
        let (_, w) = log.append_batch(chunk).unwrap();
        tile_bytes += w.iter().map(|t| t.bytes.len()).sum::<usize>();
    }
    row(
        "merkle append_batch, 64 leaves a batch",
        n,
        "leaves",
        t0.elapsed().as_secs_f64(),
        None,
    );
    println!(
        "  (tile bytes returned for writing, batches of 64: {:.0} MB)",
        tile_bytes as f64 / 1e6
    );
    let t0 = Instant::now();
    for i in 0..1000u64 {
        log.checkpoint(i, &key).unwrap();
    }
    row(
        "checkpoint (root + C2SP signed note)",
        1000,
        "notes",
        t0.elapsed().as_secs_f64(),
        None,
    );
}
