//! Reading a spool back on the node (`keyward logs`): verified against
//! its checkpoint as it is read, only lines of genuine segments shown,
//! every finding reported, confidential sources refused.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use keyward_core::guardian::Millis;
use keyward_core::identity::NodeId;
use keyward_core::log::line::Line;
use keyward_core::log::segment::Segment;
use keyward_core::log::verify::{verify_spool, Finding, Report};

use super::layout;

/// One line shown, with where it came from.
#[derive(Clone, Debug)]
pub struct Shown {
    pub index: u64,
    pub source: String,
    pub seq: u64,
    pub line: Line,
}

/// What a read found.
#[derive(Debug, Default)]
pub struct Reading {
    /// Leaves in the checkpoint.
    pub size: u64,
    /// Genuine segments (all sources).
    pub genuine: u64,
    pub lines: Vec<Shown>,
    /// What is wrong with the spool; segments sealed after the checkpoint
    /// are not among them (see `unlogged`).
    pub findings: Vec<String>,
    /// Segments sealed since the last checkpoint: not shown yet.
    pub unlogged: u64,
    /// Segments of confidential sources skipped.
    pub confidential: u64,
}

/// What to show.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub source: Option<String>,
    pub since: Option<Millis>,
    /// Only lines before this time (`keyward audit decrypt --until`).
    pub until: Option<Millis>,
    /// Open confidential sources too: the auditor's identity can, the
    /// local admin's cannot (`keyward logs` leaves this off and refuses).
    pub confidential: bool,
    /// Only segments from this leaf index on (`--follow`).
    pub from_index: u64,
}

/// The message for a confidential source.
pub fn confidential_msg(source: &str) -> String {
    format!("source {source} is confidential: only the auditor's key can read it")
}

/// A spool (or one origin of an audit directory: the same layout) read
/// from disk and checked against its checkpoint: what `keyward logs
/// verify`, `logs show`, `audit verify` and `audit decrypt` all start from.
#[derive(Debug)]
pub struct Checked {
    /// The checkpoint note as on disk (with any cosignature lines).
    pub note: Vec<u8>,
    /// The encoded segments on disk, by leaf index.
    pub segments: BTreeMap<u64, Vec<u8>>,
    pub report: Report,
}

/// Reads the checkpoint, tiles and segments of `origin` at `spool` (each
/// file bounded by [`layout::read_bounded`]) and verifies them.
pub fn check(spool: &Path, origin: &NodeId) -> anyhow::Result<Checked> {
    let Some(note) = layout::read_checkpoint(spool)? else {
        bail!(
            "{} has no checkpoint yet: keywardd signs one when the first segment is sealed",
            spool.display()
        );
    };
    let (tiles, _) = layout::read_tiles(spool)?;
    let mut segments = BTreeMap::new();
    for i in layout::segment_indexes(spool)? {
        let p = layout::segment_path(spool, i);
        segments.insert(
            i,
            layout::read_bounded(&p).with_context(|| format!("reading {}", p.display()))?,
        );
    }
    let from = segments.keys().next().copied().unwrap_or(0);
    let report = verify_spool(origin, &note, &tiles, &segments, from)
        .with_context(|| format!("verifying {} against its checkpoint", spool.display()))?;
    Ok(Checked {
        note,
        segments,
        report,
    })
}

/// Reads and verifies the spool of `origin` at `spool`; opens what
/// `identity` may read (the local admin's, or the auditor's with
/// `filter.confidential`).
pub fn read(
    spool: &Path,
    origin: &NodeId,
    identity: &dyn age::Identity,
    filter: &Filter,
) -> anyhow::Result<Reading> {
    let Checked {
        segments, report, ..
    } = check(spool, origin)?;
    let mut r = Reading {
        size: report.size,
        genuine: report.verified.len() as u64,
        ..Reading::default()
    };
    for f in &report.findings {
        match f {
            Finding::Unlogged { .. } => r.unlogged += 1,
            f => r.findings.push(f.to_string()),
        }
    }
    for (&index, h) in report.verified.range(filter.from_index..) {
        if filter.source.as_deref().is_some_and(|s| s != h.source) {
            continue;
        }
        if h.confidential && !filter.confidential {
            if filter.source.is_some() {
                bail!(confidential_msg(&h.source));
            }
            r.confidential += 1;
            continue;
        }
        // Verified above, so it decodes; a failure here is reported, never
        // a panic.
        let opened = segments
            .get(&index)
            .ok_or_else(|| anyhow::anyhow!("not on disk"))
            .and_then(|b| Ok(Segment::decode(b)?))
            .and_then(|seg| Ok(seg.open(identity)?));
        match opened {
            Ok(lines) => r.lines.extend(
                lines
                    .into_iter()
                    .filter(|l| filter.since.is_none_or(|s| l.time >= s))
                    .filter(|l| filter.until.is_none_or(|u| l.time < u))
                    .map(|line| Shown {
                        index,
                        source: h.source.clone(),
                        seq: h.seq,
                        line,
                    }),
            ),
            Err(e) => r.findings.push(format!(
                "segment {index} ({} #{}) does not open: {e}",
                h.source, h.seq
            )),
        }
    }
    Ok(r)
}
