//! The spool, sans IO: every source's segmenter, the origin's Merkle log,
//! checkpoint timing, disk accounting and the acknowledgements that wait
//! on the disk.
//!
//! The driver (keywardd's spool task) feeds lines with [`Spool::lines`],
//! calls [`Spool::commit`] once it gathered a group, performs the
//! [`Output`]s in order and reports each [`Output::Sync`] back with
//! [`Spool::written`] (or [`Spool::write_failed`]). Time is always an
//! argument; the spool never touches a file.
//!
//! Why two barriers per commit. The first `Sync` makes the journal frames,
//! the sealed segments and their tiles durable: the group's lines are then
//! on disk and are acknowledged. Only then is the checkpoint replaced
//! (second `Sync`), so a checkpoint never names a leaf whose segment or
//! tile could still vanish in a crash; and only after the checkpoint is
//! durable are the sealed segments' journals deleted, so until then a crash
//! leaves the journal to recover from (see [`resume`] for the rules that
//! make every crash point lose nothing acknowledged, duplicate nothing and
//! leave no gap in a source's sequence).
//!
//! Disk accounting and the quota live in [`quota`].

pub mod quota;
pub mod resume;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::journal::JournalWrite;
use super::line::{Line, MAX_MSG};
use super::merkle::{MerkleLog, TileWrite};
use super::recipients::Recipients;
use super::segment::Sealed;
use super::segmenter::{Limits, Segmenter, Source};
use super::LogError;
use crate::guardian::Millis;
use crate::identity::NodeKey;

pub use quota::{Usage, WhenFull};

/// Names a batch whose sender waits for an acknowledgement (the driver
/// keeps the channel to answer on).
pub type AckToken = u64;

/// Names one [`Output::Sync`] barrier.
pub type WriteId = u64;

/// How long to wait between two "spool full" warnings of one source.
const FULL_WARN_EVERY: Millis = 60_000;

/// One source as the spool keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePolicy {
    pub name: String,
    /// Sealed to the auditors only (default true).
    pub confidential: bool,
    /// Sealed segments older than this are deleted; 0 keeps them until
    /// the quota policy needs their room.
    pub retention_ms: Millis,
}

/// Everything the spool decides by.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub limits: Limits,
    /// Every source, keyward's own events included.
    pub sources: Vec<SourcePolicy>,
    pub quota_bytes: u64,
    /// Percentage of the quota at which the spool warns (1..=100).
    pub warn_percent: u8,
    pub when_full: WhenFull,
    /// A checkpoint is signed at least this often, even of an unchanged
    /// log (it shows the node alive); and after every commit that added a
    /// segment.
    pub checkpoint_ms: Millis,
}

/// Why a batch was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the log spool is full ({used} of {quota} bytes): lines are refused until space is freed"
    )]
    Full { used: u64, quota: u64 },
    #[error("unknown log source `{0}`")]
    UnknownSource(String),
    #[error("a line of {len} bytes is over the {MAX_MSG}-byte limit")]
    TooLong { len: usize },
    #[error("the log spool cannot write ({0}); restart keywardd once the disk is fixed")]
    Io(String),
}

/// What the operator should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The spool went over `warn_percent` of its quota.
    Nearing { used: u64, quota: u64, percent: u8 },
    /// Back under the warning threshold.
    Relieved { used: u64, quota: u64 },
    /// Lines of a source were refused because the spool is full (counted
    /// since the last such warning).
    Full { source: String, refused_lines: u64 },
    /// A crashed segment's journal was sealed as a segment.
    Recovered {
        source: String,
        seq: u64,
        lines: u32,
    },
    /// A journal held lines that were never acknowledged (their group
    /// commit did not finish); it was deleted.
    Unacknowledged { source: String, seq: u64 },
    /// A journal could not be read; kept aside as `<source>.<seq>.damaged`
    /// and the source's sequence moves past it (a visible gap).
    Damaged {
        source: String,
        seq: u64,
        why: String,
    },
    /// A segment beyond the checkpoint that cannot join the log (damaged,
    /// not ours, or after a hole) was deleted; its journal, if any, is
    /// recovered instead.
    Discarded { index: u64, why: String },
    /// A disk write failed: the spool refuses lines from now on.
    WriteFailed { why: String },
    /// A segment was deleted by retention or to make room.
    Deleted {
        index: u64,
        source: String,
        why: &'static str,
    },
}

/// What the driver does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Append to `journal/<source>.<seq>` (create it, truncating, first if
    /// `create`).
    AppendJournal(JournalWrite),
    /// Write `segments/<index>` (a new file, atomically: tmp + rename).
    /// `source` and `seq` are the segment's, from its header, so a driver
    /// need not decode the bytes to know what it writes.
    WriteSegment {
        index: u64,
        source: String,
        seq: u64,
        bytes: Vec<u8>,
    },
    /// Write a tile at its C2SP path (atomically; same bytes if it exists).
    WriteTile(TileWrite),
    /// Replace `checkpoint` atomically (tmp + fsync + rename).
    ReplaceCheckpoint {
        note: Vec<u8>,
    },
    /// Make every write above durable: fsync each file written and each
    /// directory where a file was created or renamed; then report
    /// [`Spool::written`] (or [`Spool::write_failed`]).
    Sync {
        id: WriteId,
    },
    DeleteJournal {
        source: String,
        seq: u64,
    },
    /// Rename `journal/<source>.<seq>` to `<source>.<seq>.damaged`.
    QuarantineJournal {
        source: String,
        seq: u64,
    },
    DeleteSegment {
        index: u64,
    },
    /// The batch's lines are durable.
    Ack(AckToken),
    Refuse {
        token: AckToken,
        why: Refusal,
    },
    Warn(Warning),
}

/// What a barrier in flight releases once durable.
enum Stage {
    /// Journals, segments and tiles of one commit.
    Commit {
        acks: Vec<AckToken>,
        /// Journals of the segments sealed in it.
        sealed: Vec<(String, u64)>,
    },
    /// A checkpoint; then the journals of the segments it covers go.
    Checkpoint {
        size: u64,
        journals: Vec<(String, u64)>,
    },
}

/// The spool of one node.
pub struct Spool {
    key: Arc<NodeKey>,
    cfg: SpoolConfig,
    segmenters: BTreeMap<String, Segmenter>,
    log: MerkleLog,
    disk: quota::Disk,
    /// Tokens of the lines fed since the last commit.
    acks: Vec<AckToken>,
    /// Segments sealed since the last commit.
    sealed: Vec<Sealed>,
    /// Lines fed since the last commit (their journal frames are due).
    dirty: bool,
    stages: BTreeMap<WriteId, Stage>,
    next_id: WriteId,
    out: VecDeque<Output>,
    /// Size of the last durable checkpoint, and when it was signed.
    checkpointed: u64,
    last_checkpoint: Option<Millis>,
    /// Journals of sealed segments that wait for a checkpoint covering
    /// them.
    awaiting_checkpoint: Vec<(String, u64)>,
    /// Refused datagram/ack lines per source since the last warning.
    refused: BTreeMap<String, (u64, Millis)>,
    refused_total: u64,
    /// Once a write failed, everything is refused with this reason.
    failed: Option<String>,
}

impl Spool {
    fn build(
        key: Arc<NodeKey>,
        recipients: Arc<Recipients>,
        cfg: SpoolConfig,
        log: MerkleLog,
        next_seq: &BTreeMap<String, u64>,
        disk: quota::Disk,
    ) -> Result<Self, LogError> {
        if cfg.warn_percent == 0 || cfg.warn_percent > 100 {
            return Err(LogError::Config(format!(
                "warn_percent {} must be 1 to 100",
                cfg.warn_percent
            )));
        }
        if cfg.checkpoint_ms == 0 {
            return Err(LogError::Config(
                "checkpoint interval must be positive".into(),
            ));
        }
        let mut segmenters = BTreeMap::new();
        for s in &cfg.sources {
            let seg = Segmenter::new(
                key.clone(),
                recipients.clone(),
                Source {
                    name: s.name.clone(),
                    confidential: s.confidential,
                },
                cfg.limits,
                next_seq.get(&s.name).copied().unwrap_or(0),
            )?;
            if segmenters.insert(s.name.clone(), seg).is_some() {
                return Err(LogError::Config(format!(
                    "source `{}` is configured twice",
                    s.name
                )));
            }
        }
        let size = log.size();
        Ok(Spool {
            key,
            cfg,
            segmenters,
            log,
            disk,
            acks: Vec::new(),
            sealed: Vec::new(),
            dirty: false,
            stages: BTreeMap::new(),
            next_id: 0,
            out: VecDeque::new(),
            checkpointed: size,
            last_checkpoint: None,
            awaiting_checkpoint: Vec::new(),
            refused: BTreeMap::new(),
            refused_total: 0,
            failed: None,
        })
    }

    /// The next output to perform, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Size of the Merkle log (segments sealed and logged).
    pub fn size(&self) -> u64 {
        self.log.size()
    }

    /// Disk use against the quota, for `keyward status`.
    pub fn usage(&self) -> Usage {
        let mut u = self.disk.usage(&self.cfg, self.refused_total);
        u.logged = self.log.size();
        u
    }

    /// Lines of one source. `token` is answered (Ack or Refuse) once they
    /// are durable, after the [`Spool::commit`] that follows; None for a
    /// source without acknowledgement (a refusal is then only counted and
    /// warned about). A batch is taken whole or refused whole.
    pub fn lines(
        &mut self,
        now: Millis,
        source: &str,
        lines: &[Line],
        token: Option<AckToken>,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) {
        if let Some(why) = self.check_batch(source, lines) {
            return self.refuse(now, source, lines.len() as u64, token, why);
        }
        let need = quota::batch_bytes(lines);
        if let Err(why) = self.make_room(now, need) {
            return self.refuse(now, source, lines.len() as u64, token, why);
        }
        let seg = self.segmenters.get_mut(source).expect("checked above");
        for l in lines {
            match seg.push(now, l, rng) {
                Ok(Some(s)) => {
                    self.disk.sealed_one(source, &s);
                    self.sealed.push(s);
                }
                Ok(None) => {}
                Err(e) => {
                    // Only encryption can fail here (lengths were checked):
                    // nothing sane can follow.
                    self.fail(format!("sealing a segment of {source}: {e}"));
                    if let Some(t) = token {
                        self.out.push_back(Output::Refuse {
                            token: t,
                            why: Refusal::Io(e.to_string()),
                        });
                    }
                    return;
                }
            }
            self.disk.line_in(source, l);
        }
        self.dirty |= !lines.is_empty();
        if let Some(t) = token {
            self.acks.push(t);
        }
        self.check_warning();
    }

    fn check_batch(&self, source: &str, lines: &[Line]) -> Option<Refusal> {
        if let Some(why) = &self.failed {
            return Some(Refusal::Io(why.clone()));
        }
        if !self.segmenters.contains_key(source) {
            return Some(Refusal::UnknownSource(source.chars().take(64).collect()));
        }
        lines
            .iter()
            .find(|l| l.msg.len() > MAX_MSG)
            .map(|l| Refusal::TooLong { len: l.msg.len() })
    }

    /// Frees room for `need` more bytes if the policy allows, or says why
    /// not.
    fn make_room(&mut self, now: Millis, need: u64) -> Result<(), Refusal> {
        if self.disk.fits(&self.cfg, need) {
            return Ok(());
        }
        if self.cfg.when_full == WhenFull::DropOldestReplicated {
            for (index, source) in self.disk.oldest_replicated(self.checkpointed) {
                if self.disk.fits(&self.cfg, need) {
                    break;
                }
                self.delete_segment(index, source, "the spool is full and peers hold it");
            }
            if self.disk.fits(&self.cfg, need) {
                return Ok(());
            }
        }
        let _ = now;
        let u = self.disk.usage(&self.cfg, self.refused_total);
        Err(Refusal::Full {
            used: u.used_bytes,
            quota: u.quota_bytes,
        })
    }

    fn refuse(&mut self, now: Millis, source: &str, n: u64, token: Option<AckToken>, why: Refusal) {
        if let Some(t) = token {
            self.out.push_back(Output::Refuse {
                token: t,
                why: why.clone(),
            });
        }
        if !matches!(why, Refusal::Full { .. }) {
            return;
        }
        self.refused_total += n;
        let e = self
            .refused
            .entry(source.to_string())
            .or_insert((0, Millis::MAX));
        e.0 += n;
        let due = e.1 == Millis::MAX || now.saturating_sub(e.1) >= FULL_WARN_EVERY;
        if due {
            let refused_lines = std::mem::take(&mut e.0);
            e.1 = now;
            self.out.push_back(Output::Warn(Warning::Full {
                source: source.to_string(),
                refused_lines,
            }));
        }
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            self.out
                .push_back(Output::Warn(Warning::WriteFailed { why: why.clone() }));
            self.failed = Some(why);
        }
    }

    fn check_warning(&mut self) {
        if let Some(w) = self.disk.warning(&self.cfg) {
            self.out.push_back(Output::Warn(w));
        }
    }

    /// Group commit: the journal frames of every line fed since the last
    /// commit, the segments sealed since, their tiles, then a barrier.
    /// Call it once the driver gathered a group (commit_ms, or the inbox
    /// ran dry).
    pub fn commit(&mut self, now: Millis) {
        let _ = now;
        let mut writes: Vec<JournalWrite> = Vec::new();
        if self.dirty {
            for s in self.segmenters.values_mut() {
                writes.extend(s.take_journal());
            }
            self.dirty = false;
        }
        let sealed = std::mem::take(&mut self.sealed);
        let acks = std::mem::take(&mut self.acks);
        if writes.is_empty() && sealed.is_empty() {
            // Nothing to make durable: an empty batch, say.
            self.out.extend(acks.into_iter().map(Output::Ack));
            return;
        }
        for w in writes {
            self.disk.journal_write(&w);
            self.out.push_back(Output::AppendJournal(w));
        }
        let keys = match self.append_sealed(sealed) {
            Ok(k) => k,
            Err(e) => {
                self.fail(format!("appending to the Merkle log: {e}"));
                for t in acks {
                    self.out.push_back(Output::Refuse {
                        token: t,
                        why: Refusal::Io(e.to_string()),
                    });
                }
                return;
            }
        };
        let id = self.barrier();
        self.stages.insert(id, Stage::Commit { acks, sealed: keys });
        self.check_warning();
    }

    /// Adds sealed segments to the log and emits their files. Returns the
    /// journals they replace.
    fn append_sealed(&mut self, sealed: Vec<Sealed>) -> Result<Vec<(String, u64)>, LogError> {
        if sealed.is_empty() {
            return Ok(Vec::new());
        }
        let leaves: Vec<&[u8]> = sealed.iter().map(|s| s.leaf.as_slice()).collect();
        let (first, tiles) = self
            .log
            .append_batch(&leaves)
            .map_err(|e| LogError::Header(e.to_string()))?;
        let mut keys = Vec::with_capacity(sealed.len());
        for (i, s) in sealed.into_iter().enumerate() {
            let index = first + i as u64;
            keys.push((s.header.source.clone(), s.header.seq));
            self.disk
                .segment_written(index, &s.header, s.bytes.len() as u64);
            self.out.push_back(Output::WriteSegment {
                index,
                source: s.header.source,
                seq: s.header.seq,
                bytes: s.bytes,
            });
        }
        for t in tiles {
            self.disk.tile_written(&t);
            self.out.push_back(Output::WriteTile(t));
        }
        Ok(keys)
    }

    fn barrier(&mut self) -> WriteId {
        self.next_id += 1;
        let id = self.next_id;
        self.out.push_back(Output::Sync { id });
        id
    }

    /// A barrier's writes are durable.
    pub fn written(&mut self, now: Millis, id: WriteId) {
        match self.stages.remove(&id) {
            Some(Stage::Commit { acks, sealed }) => {
                self.out.extend(acks.into_iter().map(Output::Ack));
                self.awaiting_checkpoint.extend(sealed);
                if self.log.size() > self.checkpointed {
                    self.checkpoint(now);
                }
            }
            Some(Stage::Checkpoint { size, journals }) => {
                self.checkpointed = self.checkpointed.max(size);
                for (source, seq) in journals {
                    if self.disk.journal_deleted(&source, seq) {
                        self.out.push_back(Output::DeleteJournal { source, seq });
                    }
                }
                self.retention(now);
            }
            None => {}
        }
    }

    /// A barrier's writes failed: its lines are refused, and every later
    /// batch too (the state on disk is unknown until a restart resumes
    /// from it).
    pub fn write_failed(&mut self, id: WriteId, why: &str) {
        match self.stages.remove(&id) {
            Some(Stage::Commit { acks, .. }) => {
                self.fail(why.to_string());
                for t in acks {
                    self.out.push_back(Output::Refuse {
                        token: t,
                        why: Refusal::Io(why.to_string()),
                    });
                }
            }
            Some(Stage::Checkpoint { journals, .. }) => {
                // The journals stay; the next checkpoint takes them along.
                self.awaiting_checkpoint.extend(journals);
                self.out.push_back(Output::Warn(Warning::WriteFailed {
                    why: format!("replacing the checkpoint: {why}"),
                }));
            }
            None => {}
        }
    }

    fn checkpoint(&mut self, now: Millis) {
        match self.log.checkpoint(now, &self.key) {
            Ok(c) => {
                self.disk.checkpoint_written(c.note.len() as u64);
                self.out
                    .push_back(Output::ReplaceCheckpoint { note: c.note });
                self.last_checkpoint = Some(now);
                let journals = std::mem::take(&mut self.awaiting_checkpoint);
                let id = self.barrier();
                self.stages.insert(
                    id,
                    Stage::Checkpoint {
                        size: c.size,
                        journals,
                    },
                );
            }
            Err(e) => self.fail(format!("signing a checkpoint: {e}")),
        }
    }

    /// When [`Spool::handle_timeout`] is due next: a segment's age limit,
    /// the checkpoint interval, or a retention expiry.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let seal = self
            .segmenters
            .values()
            .filter_map(Segmenter::poll_timeout)
            .min();
        let cp = Some(
            self.last_checkpoint
                .map_or(0, |t| t.saturating_add(self.cfg.checkpoint_ms)),
        );
        let ret = self.disk.next_expiry(&self.cfg, self.checkpointed);
        [seal, cp, ret].into_iter().flatten().min()
    }

    /// Seals segments whose time is up, signs the periodic checkpoint,
    /// applies retention. Follow with [`Spool::commit`] if it sealed any.
    pub fn handle_timeout(&mut self, now: Millis) {
        for (name, seg) in self.segmenters.iter_mut() {
            match seg.handle_timeout(now) {
                Ok(Some(s)) => {
                    self.disk.sealed_one(name, &s);
                    self.sealed.push(s);
                }
                Ok(None) => {}
                Err(e) => {
                    let why = format!("sealing a segment of {name}: {e}");
                    self.failed.get_or_insert(why.clone());
                    self.out
                        .push_back(Output::Warn(Warning::WriteFailed { why }));
                }
            }
        }
        if !self.sealed.is_empty() {
            self.commit(now);
        }
        let due = self
            .last_checkpoint
            .is_none_or(|t| now >= t.saturating_add(self.cfg.checkpoint_ms));
        if due && !self.checkpoint_in_flight() {
            self.checkpoint(now);
        }
        self.retention(now);
    }

    fn checkpoint_in_flight(&self) -> bool {
        self.stages
            .values()
            .any(|s| matches!(s, Stage::Checkpoint { .. }))
    }

    /// Seals every open segment (shutdown); follow with [`Spool::commit`].
    pub fn seal_all(&mut self, now: Millis) {
        for (name, seg) in self.segmenters.iter_mut() {
            match seg.seal(now) {
                Ok(Some(s)) => {
                    self.disk.sealed_one(name, &s);
                    self.sealed.push(s);
                }
                Ok(None) => {}
                Err(e) => {
                    let why = format!("sealing a segment of {name}: {e}");
                    self.failed.get_or_insert(why.clone());
                    self.out
                        .push_back(Output::Warn(Warning::WriteFailed { why }));
                }
            }
        }
        self.dirty = true;
        self.commit(now);
    }

    /// Whether barriers are still in flight (shutdown waits for them).
    pub fn busy(&self) -> bool {
        !self.stages.is_empty() || !self.out.is_empty()
    }

    /// Peers hold segment `index` (logs part 2): the `drop-oldest-replicated`
    /// policy may delete it when the spool is full.
    pub fn replicated(&mut self, index: u64) {
        self.disk.mark_replicated(index);
    }

    fn retention(&mut self, now: Millis) {
        for (index, source) in self.disk.expired(&self.cfg, now, self.checkpointed) {
            self.delete_segment(index, source, "older than the source's retention");
        }
        self.check_warning();
    }

    fn delete_segment(&mut self, index: u64, source: String, why: &'static str) {
        self.disk.segment_deleted(index);
        self.out.push_back(Output::DeleteSegment { index });
        self.out
            .push_back(Output::Warn(Warning::Deleted { index, source, why }));
    }

    /// The source names the spool takes lines of.
    pub fn sources(&self) -> BTreeSet<&str> {
        self.segmenters.keys().map(String::as_str).collect()
    }

    /// Sequence number the next segment of `source` gets.
    pub fn next_seq(&self, source: &str) -> Option<u64> {
        self.segmenters.get(source).map(Segmenter::next_seq)
    }
}

#[cfg(test)]
mod tests;
