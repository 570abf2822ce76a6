//! `keyward audit verify DIR`: every origin of an audit directory checked
//! on its own (one origin's damage never hides another's): the spool
//! check `keyward logs verify` runs (checkpoint signature by the origin the
//! directory is named after, tiles, each segment's inclusion and
//! signature, sequence gaps), witness cosignatures, and the `.age` body
//! copies against their signed segments (so `age -d` by hand reads what
//! the log holds).

use std::collections::BTreeSet;
use std::path::Path;

use keyward_node::identity::NodeId;
use keyward_node::log::segment::BodyKind;
use keyward_node::log::verify::{Finding, Report};
use keyward_node::log::{checkpoint, merkle};
use keyward_node::logs::{layout, read};
use sha2::{Digest, Sha256};

use super::{dir, fetch, witnesses, AuditError};

/// `audit verify --json`: the whole directory.
#[derive(Debug, serde::Serialize)]
pub struct AuditReport {
    /// True when no origin has a finding.
    pub clean: bool,
    pub origins: Vec<OriginReport>,
}

/// One origin's result.
#[derive(Debug, Default, serde::Serialize)]
pub struct OriginReport {
    pub origin: String,
    /// Leaves in its checkpoint (0 when the checkpoint does not verify).
    pub size: u64,
    /// Segments that verified.
    pub segments: u64,
    /// Segments beyond the checkpoint: not verifiable yet, not a finding.
    pub unlogged: u64,
    pub sources: Vec<String>,
    /// Witnesses whose cosignature on the checkpoint verifies.
    pub cosigned_by: Vec<String>,
    /// Witnesses that cosigned an earlier checkpoint this log extends
    /// (`cosigned/` files): "<witness id> at <size>".
    pub cosigned_earlier: Vec<String>,
    /// Worth knowing, not wrong (a witness cosigned more than this
    /// directory holds: fetch again).
    pub notes: Vec<String>,
    pub findings: Vec<String>,
}

/// Checks one origin's directory.
pub fn check_origin(origin: &NodeId, path: &Path) -> OriginReport {
    let mut r = OriginReport {
        origin: origin.to_string(),
        ..OriginReport::default()
    };
    let c = match read::check(path, origin) {
        Ok(c) => c,
        Err(e) => {
            r.findings.push(format!("{e:#}"));
            return r;
        }
    };
    r.size = c.report.size;
    r.segments = c.report.verified.len() as u64;
    r.sources = c
        .report
        .verified
        .values()
        .map(|h| h.source.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for f in &c.report.findings {
        match f {
            Finding::Unlogged { .. } => r.unlogged += 1,
            f => r.findings.push(f.to_string()),
        }
    }
    let w = witnesses::check(&c.note);
    r.cosigned_by = w.valid.iter().map(|(id, _)| id.to_string()).collect();
    r.findings.extend(w.invalid);
    if c.report
        .findings
        .iter()
        .all(|f| matches!(f, Finding::Unlogged { .. }))
    {
        check_cosigned(origin, path, &c.report, &mut r);
    }
    for (&i, h) in &c.report.verified {
        if h.body_kind != BodyKind::Age {
            continue;
        }
        let p = path.join(layout::SEGMENTS).join(format!("{i:020}.age"));
        let copy = match layout::read_bounded(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                r.findings.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        // The header was verified with its segment above (signed, its
        // body's hash checked): a copy with that hash is that body,
        // without decoding and checking the segment a second time.
        let same = copy.len() as u64 == h.body_len
            && <[u8; 32]>::from(Sha256::digest(&copy)) == h.body_hash;
        if !same {
            r.findings.push(format!(
                "{} is not the body of the signed segment {i}: do not decrypt it by hand",
                p.display()
            ));
        }
    }
    r
}

/// Most `cosigned/` files read per origin.
const MAX_COSIGNED: usize = 1024;

/// Each cosigned checkpoint kept beside the log (`cosigned/<file>`, as
/// `keyward audit fetch` writes them) against the log: signed by the
/// origin, its cosignatures valid, and the log's first `size` leaves
/// having its root (`merkle::prove_prefix` over the tiles). Another root
/// is a fork: the origin signed two histories.
fn check_cosigned(origin: &NodeId, path: &Path, report: &Report, r: &mut OriginReport) {
    let dir = path.join(fetch::COSIGNED);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    let tiles = match layout::read_tiles(path) {
        Ok((t, _)) => t,
        Err(e) => return r.findings.push(format!("reading the tiles: {e}")),
    };
    for e in rd.take(MAX_COSIGNED).flatten() {
        let p = e.path();
        let name = p.display();
        let note = match layout::read_bounded(&p) {
            Ok(n) => n,
            Err(e) => {
                r.findings.push(format!("{name}: {e}"));
                continue;
            }
        };
        let (size, root) = match checkpoint::open(&note, origin) {
            Ok(x) => x,
            Err(e) => {
                r.findings
                    .push(format!("{name}: not a checkpoint of this origin: {e}"));
                continue;
            }
        };
        let w = witnesses::check(&note);
        r.findings
            .extend(w.invalid.into_iter().map(|f| format!("{name}: {f}")));
        if w.valid.is_empty() || size == 0 {
            continue;
        }
        let who: Vec<String> = w.valid.iter().map(|(id, _)| id.to_string()).collect();
        if size > report.size {
            r.notes.push(format!(
                "{} cosigned size {size}, more than the {} leaves here: fetch again from other holders",
                who.join(", "),
                report.size
            ));
            continue;
        }
        match merkle::prove_prefix(size, report.size, report.root, &tiles) {
            Ok((prefix, _)) if prefix == root => r
                .cosigned_earlier
                .extend(who.into_iter().map(|id| format!("{id} at {size}"))),
            Ok(_) => r.findings.push(format!(
                "fork: the origin signed a checkpoint of size {size} (cosigned by {}, {name}) whose root is not the root of this log's first {size} leaves: it signed two histories",
                who.join(", ")
            )),
            Err(e) => r.notes.push(format!(
                "{name}: cannot check size {size} against the log: {e}"
            )),
        }
    }
}

/// Runs `audit verify`: prints the table (or JSON) and the findings.
pub fn run(dir_path: &Path, json: bool) -> Result<(), AuditError> {
    let origins = dir::origins(dir_path)?;
    let reports: Vec<OriginReport> = origins.iter().map(|(id, p)| check_origin(id, p)).collect();
    let findings: usize = reports.iter().map(|r| r.findings.len()).sum();
    let report = AuditReport {
        clean: findings == 0,
        origins: reports,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if findings > 0 {
        return Err(AuditError::Findings(findings));
    }
    Ok(())
}

fn print_table(report: &AuditReport) {
    println!(
        "{:<52} {:>8} {:>8} {:<24} {:>11} {:>8}",
        "ORIGIN", "SIZE", "SEGMENTS", "SOURCES", "COSIGNED BY", "FINDINGS"
    );
    for r in &report.origins {
        let segs = if r.unlogged > 0 {
            format!("{}+{}", r.segments, r.unlogged)
        } else {
            r.segments.to_string()
        };
        println!(
            "{:<52} {:>8} {:>8} {:<24} {:>11} {:>8}",
            r.origin,
            r.size,
            segs,
            r.sources.join(","),
            r.cosigned_by.len() + r.cosigned_earlier.len(),
            r.findings.len()
        );
    }
    for r in &report.origins {
        for f in &r.findings {
            println!("FINDING {}: {f}", r.origin);
        }
        for n in &r.notes {
            println!("note {}: {n}", r.origin);
        }
        if r.unlogged > 0 {
            println!(
                "note {}: {} segments sealed after the checkpoint are not verifiable yet",
                r.origin, r.unlogged
            );
        }
    }
    if report.clean {
        println!("ok: every origin verifies");
    }
}
