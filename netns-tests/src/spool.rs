//! Reading a keywardd log spool from outside, as the tests and the log
//! bench check it: how many lines are durable, and every line decrypted
//! with the auditor's identity. Reads the files the daemon wrote, never
//! asks the daemon.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use keyward_core::codec::{self, Wire};
use keyward_core::log::journal::{self, Record};
use keyward_core::log::line::Line;
use keyward_core::log::segment::{Segment, SegmentHeader};
use serde::{Deserialize, Serialize};

/// A segment file read for its header alone: the body is skipped, not
/// hashed, and the signature not checked. Counting is all [`Durable`]
/// does (checking is [`decrypt_source`]'s and `keyward audit verify`'s
/// job), and the benches poll while keywardd works on the same two
/// cores: hashing every body again (3 GB in the audit bench) would count
/// the observer's work against the daemon.
#[derive(Serialize, Deserialize)]
struct HeaderOnly {
    header: SegmentHeader,
}

impl Wire for HeaderOnly {
    const KIND: &'static str = Segment::KIND;
    const MAX: usize = Segment::MAX;
}

/// Durable line counts of one spool, remembering the sealed segments it
/// already read. A segment file still being written does not decode and
/// is counted at a later call.
#[derive(Default)]
pub struct Durable {
    seen: HashMap<PathBuf, (String, u64, u32)>,
}

impl Durable {
    /// Lines of `source` that are durable: in sealed segments, or in
    /// journal frames of segments not sealed yet.
    pub fn lines(&mut self, spool: &Path, source: &str) -> Result<u64> {
        let mut sealed = HashSet::new();
        let mut total = 0u64;
        if let Ok(rd) = std::fs::read_dir(spool.join("segments")) {
            for e in rd {
                let p = e?.path();
                if !self.seen.contains_key(&p) {
                    let Ok(bytes) = std::fs::read(&p) else {
                        continue;
                    };
                    let Ok(HeaderOnly { header: h }) = codec::decode(&bytes) else {
                        continue; // being written
                    };
                    self.seen.insert(p.clone(), (h.source, h.seq, h.lines));
                }
                let (s, seq, lines) = &self.seen[&p];
                if s == source {
                    sealed.insert(*seq);
                    total += u64::from(*lines);
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(spool.join("journal")) {
            for e in rd {
                let Ok(bytes) = std::fs::read(e?.path()) else {
                    continue;
                };
                let Ok((records, _)) = journal::parse(&bytes) else {
                    continue;
                };
                let mut it = records.into_iter();
                let Some(Record::Open(open)) = it.next() else {
                    continue;
                };
                if open.source != source || sealed.contains(&open.seq) {
                    continue;
                }
                for r in it {
                    if let Record::Frame(f) = r {
                        total += u64::from(f.lines);
                    }
                }
            }
        }
        Ok(total)
    }
}

/// Every line of `source` in the spool's sealed segments, decrypted with
/// the auditor's identity, in segment order.
pub fn decrypt_source(spool: &Path, source: &str, id: &dyn age::Identity) -> Result<Vec<Line>> {
    let mut segs = Vec::new();
    for e in std::fs::read_dir(spool.join("segments"))? {
        let p = e?.path();
        let bytes = std::fs::read(&p)?;
        let seg = Segment::decode(&bytes).with_context(|| format!("{}", p.display()))?;
        if seg.header.source == source {
            segs.push(seg);
        }
    }
    segs.sort_by_key(|s| s.header.seq);
    let mut out = Vec::new();
    for s in segs {
        out.extend(
            s.open(id)
                .with_context(|| format!("{source} #{}", s.header.seq))?,
        );
    }
    Ok(out)
}
