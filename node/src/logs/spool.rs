//! keywardd's spool task: drives `keyward_core::log::spool::Spool`.
//!
//! It runs on a thread of its own (file writes and fsyncs block, and the
//! daemon's runtime is single-threaded): batches in from the [`Inbox`],
//! group commit (gather for up to `commit_ms` or until the inbox is empty,
//! then the spool's writes, one fsync per journal file touched and per
//! directory whose entries changed), acknowledgements out, timers. Every
//! decision is the spool's; this file moves bytes and time.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keyward_core::identity::NodeKey;
use keyward_core::log::recipients::{Recipient, Recipients};
use keyward_core::log::segmenter::Limits;
use keyward_core::log::spool::resume::{scan_segment, JournalFile, OnDisk};
use keyward_core::log::spool::{
    AckToken, Output, Refusal, SourcePolicy, Spool, SpoolConfig, Usage, Warning, WhenFull,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::config::{self, LogsConfig};
use super::layout;
use super::{admin_key, Batch, Inbox, Refused, INBOX_BATCHES};

/// The latest durable checkpoint of this node's log: (size, note).
pub type Checkpoints = watch::Receiver<Option<(u64, Vec<u8>)>>;

/// The running spool task.
pub struct SpoolHandle {
    pub inbox: Inbox,
    /// The spool's disk use, for `keyward status`.
    pub usage: watch::Receiver<Usage>,
    /// The latest durable checkpoint (size, note), for replication.
    pub checkpoints: Checkpoints,
    /// What R replicas hold (logs part 2), told by the daemon.
    replicated: watch::Sender<u64>,
    stop: Option<oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SpoolHandle {
    /// R replicas hold the first `size` leaves of this node's log: acks
    /// that wait for replication are released, and `drop-oldest-replicated`
    /// may drop those segments.
    pub fn replicated(&self, size: u64) {
        self.replicated.send_if_modified(|r| {
            let grew = size > *r;
            *r = (*r).max(size);
            grew
        });
    }

    /// Seals every open segment, commits, checkpoints, and waits for the
    /// task to end.
    pub fn stop(mut self) {
        self.end(true)
    }

    /// Ends the task without sealing: what a crash leaves on disk (every
    /// acknowledged line is in a journal). For tests.
    pub fn abandon(mut self) {
        self.end(false)
    }

    fn end(&mut self, seal: bool) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(seal);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SpoolHandle {
    fn drop(&mut self) {
        self.end(true)
    }
}

/// The spool directory: the configured one or `<state_dir>/logs`.
pub fn spool_dir(cfg: &LogsConfig, state_dir: &Path) -> PathBuf {
    cfg.spool.clone().unwrap_or_else(|| state_dir.join("logs"))
}

/// The spool's rules from `[logs]`: every configured source plus
/// keyward's own events.
pub fn spool_config(cfg: &LogsConfig) -> SpoolConfig {
    let mut sources: Vec<SourcePolicy> = cfg
        .sources
        .iter()
        .map(|s| SourcePolicy {
            name: s.name.clone(),
            confidential: s.confidential,
            retention_ms: u64::from(s.retention_days) * 86_400_000,
        })
        .collect();
    sources.push(SourcePolicy {
        name: cfg.events_source.clone(),
        confidential: cfg.events_confidential,
        retention_ms: 0,
    });
    SpoolConfig {
        limits: Limits {
            max_bytes: cfg.segment_bytes,
            max_lines: cfg.segment_lines,
            max_age_ms: cfg.segment_secs.saturating_mul(1000),
        },
        sources,
        quota_bytes: cfg.quota_bytes,
        warn_percent: cfg.warn_percent,
        when_full: match cfg.when_full {
            config::WhenFull::Refuse => WhenFull::Refuse,
            config::WhenFull::DropOldestReplicated => WhenFull::DropOldestReplicated,
        },
        checkpoint_ms: cfg.checkpoint_secs.saturating_mul(1000),
    }
}

/// Opens the spool (resuming from what is on disk) and starts its task.
pub fn start(cfg: &LogsConfig, key: &NodeKey, state_dir: &Path) -> anyhow::Result<SpoolHandle> {
    cfg.check().map_err(anyhow::Error::msg)?;
    let dir = spool_dir(cfg, state_dir);
    let mut created = BTreeSet::new();
    layout::make_dir(&dir, &mut created)
        .with_context(|| format!("creating the log spool {}", dir.display()))?;
    let admin = admin_key::load_or_create(state_dir)?;
    let auditors = cfg
        .auditors
        .iter()
        .map(|a| a.parse::<Recipient>())
        .collect::<Result<Vec<_>, _>>()?;
    let recipients = Arc::new(Recipients::new(
        auditors,
        Some(Recipient::X25519(admin.to_public())),
    )?);
    drop(admin);
    let key = Arc::new(NodeKey::from_secret(&key.secret()));
    let me = key.id();
    let spool = open(&dir, key, recipients, spool_config(cfg))?;
    let (tx, rx) = mpsc::channel(INBOX_BATCHES);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (usage_tx, usage_rx) = watch::channel(spool.usage());
    let (cp_tx, cp_rx) = watch::channel(None);
    let (repl_tx, repl_rx) = watch::channel(0u64);
    let replicated_acks: BTreeSet<String> = spool
        .sources()
        .into_iter()
        .filter(|s| cfg.ack_of(s) == config::AckPolicy::Replicated)
        .map(String::from)
        .collect();
    let commit = Duration::from_millis(cfg.commit_ms);
    let thread = std::thread::Builder::new()
        .name("keyward-spool".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return error!("log spool: cannot start its runtime: {e}"),
            };
            let mut d = Driver {
                spool,
                io: Io::new(dir),
                waiting: BTreeMap::new(),
                next_token: 0,
                usage: usage_tx,
                repl: Replication {
                    me,
                    sources: replicated_acks,
                    tokens: BTreeMap::new(),
                    held: Vec::new(),
                    waiting_since: None,
                    sealed: BTreeMap::new(),
                    replicated: 0,
                    marked: 0,
                    checkpoint: None,
                    checkpoints: cp_tx,
                },
            };
            rt.block_on(d.run(rx, stop_rx, repl_rx, commit));
        })?;
    Ok(SpoolHandle {
        inbox: tx,
        usage: usage_rx,
        checkpoints: cp_rx,
        replicated: repl_tx,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Reads the spool directory and resumes the spool from it.
fn open(
    dir: &Path,
    key: Arc<NodeKey>,
    recipients: Arc<Recipients>,
    cfg: SpoolConfig,
) -> anyhow::Result<Spool> {
    let checkpoint = layout::read_checkpoint(dir)?;
    let (tiles, tiles_bytes) = layout::read_tiles(dir)?;
    let mut segments = Vec::new();
    for i in layout::segment_indexes(dir)? {
        let b = layout::read_bounded(&layout::segment_path(dir, i))?;
        segments.push(scan_segment(i, &b));
    }
    let mut journals = Vec::new();
    for (source, seq, p) in layout::journals(dir)? {
        journals.push(JournalFile {
            source,
            seq,
            bytes: layout::read_bounded(&p)?,
        });
    }
    let spool = Spool::resume(
        key,
        recipients,
        cfg,
        OnDisk {
            checkpoint,
            tiles: &tiles,
            tiles_bytes,
            segments,
            journals,
        },
        crate::clock::now(),
    )
    .with_context(|| format!("opening the log spool {}", dir.display()))?;
    Ok(spool)
}

/// The spool's writes, and what the next barrier must fsync.
struct Io {
    dir: PathBuf,
    /// Journal files appended to since the last barrier.
    files: BTreeSet<PathBuf>,
    /// Directories whose entries changed since the last barrier.
    dirs: BTreeSet<PathBuf>,
    /// The first write that failed since the last barrier.
    error: Option<String>,
}

impl Io {
    fn new(dir: PathBuf) -> Self {
        Io {
            dir,
            files: BTreeSet::new(),
            dirs: BTreeSet::new(),
            error: None,
        }
    }

    fn note(&mut self, what: &str, r: std::io::Result<()>) {
        if let Err(e) = r {
            if self.error.is_none() {
                self.error = Some(format!("{what}: {e}"));
            }
        }
    }

    fn append(&mut self, source: &str, seq: u64, create: bool, bytes: &[u8]) {
        let p = layout::journal_path(&self.dir, source, seq);
        let r = (|| {
            let jdir = self.dir.join(layout::JOURNAL);
            layout::make_dir(&jdir, &mut self.dirs)?;
            let mut o = OpenOptions::new();
            o.mode(0o600);
            if create {
                o.write(true).create(true).truncate(true);
                self.dirs.insert(jdir);
            } else {
                o.append(true);
            }
            o.open(&p)?.write_all(bytes)
        })();
        self.files.insert(p.clone());
        self.note(&format!("appending to {}", p.display()), r);
    }

    fn write(&mut self, p: &Path, bytes: &[u8]) {
        let r = layout::write_atomic(p, bytes, &mut self.dirs);
        self.note(&format!("writing {}", p.display()), r);
    }

    fn remove(&mut self, p: &Path) {
        match fs::remove_file(p) {
            Ok(()) => {
                if let Some(d) = p.parent() {
                    self.dirs.insert(d.to_path_buf());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("log spool: removing {}: {e}", p.display()),
        }
    }

    /// The barrier: fsync every journal appended to, then the directories.
    fn sync(&mut self) -> Result<(), String> {
        for f in std::mem::take(&mut self.files) {
            let r = OpenOptions::new()
                .append(true)
                .open(&f)
                .and_then(|f| f.sync_data());
            self.note(&format!("fsync {}", f.display()), r);
        }
        let mut dirs = std::mem::take(&mut self.dirs);
        // A directory created needs its parent's entry durable too.
        let parents: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| d.parent().map(Path::to_path_buf))
            .filter(|p| p.starts_with(&self.dir) || *p == self.dir)
            .collect();
        dirs.extend(parents);
        for d in dirs {
            let r = layout::sync_dir(&d);
            self.note(&format!("fsync {}", d.display()), r);
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

struct Driver {
    spool: Spool,
    io: Io,
    waiting: BTreeMap<AckToken, oneshot::Sender<Result<(), Refused>>>,
    next_token: AckToken,
    usage: watch::Sender<Usage>,
    repl: Replication,
}

/// The spool task's part of logs part 2: durable checkpoints out to the
/// daemon, the replicated size in, and the acks of `ack = "replicated"`
/// sources held until R peers hold their segment.
struct Replication {
    me: keyward_core::identity::NodeId,
    /// Sources whose acks wait for replication.
    sources: BTreeSet<String>,
    /// Tokens of batches of those sources, with their source.
    tokens: BTreeMap<AckToken, String>,
    /// Acks durable here, waiting: (token, source, the segment seq that
    /// holds the lines at the latest).
    held: Vec<(AckToken, String, u64)>,
    /// Since when acks wait for an open segment (it is sealed early).
    waiting_since: Option<u64>,
    /// Leaf index of each sealed segment of those sources not yet
    /// replicated.
    sealed: BTreeMap<(String, u64), u64>,
    /// Segments under this size are on R peers.
    replicated: u64,
    /// The spool was told `replicated(i)` for every i below this.
    marked: u64,
    /// A checkpoint written, durable at the next barrier.
    checkpoint: Option<Vec<u8>>,
    checkpoints: watch::Sender<Option<(u64, Vec<u8>)>>,
}

/// An ack held this long for a segment still open seals it, so a
/// replicated ack does not wait for the segment's time cut.
const SEAL_FOR_REPLICATION_MS: u64 = 1000;

impl Driver {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Batch>,
        mut stop: oneshot::Receiver<bool>,
        mut replicated: watch::Receiver<u64>,
        commit: Duration,
    ) {
        info!(
            size = self.spool.size(),
            "log spool open ({} sources)",
            self.spool.sources().len()
        );
        self.perform();
        let seal = loop {
            let now = crate::clock::now();
            if self.spool.poll_timeout().is_some_and(|t| t <= now) {
                self.spool.handle_timeout(now);
                self.perform();
            }
            self.seal_for_replication(now);
            let wait = self
                .spool
                .poll_timeout()
                .map_or(60_000, |t| t.saturating_sub(crate::clock::now()))
                .min(if self.repl.held.is_empty() {
                    60_000
                } else {
                    SEAL_FOR_REPLICATION_MS
                })
                .clamp(1, 60_000);
            tokio::select! {
                b = rx.recv() => match b {
                    Some(b) => {
                        self.feed(b);
                        let until = tokio::time::Instant::now() + commit;
                        // Gather a group: until the inbox runs dry or
                        // commit_ms have passed.
                        while tokio::time::Instant::now() < until {
                            match rx.try_recv() {
                                Ok(b) => self.feed(b),
                                Err(_) => break,
                            }
                        }
                        self.spool.commit(crate::clock::now());
                        self.perform();
                    }
                    None => break true,
                },
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                Ok(()) = replicated.changed() => {
                    let r = *replicated.borrow_and_update();
                    self.on_replicated(r);
                }
                s = &mut stop => break s.unwrap_or(true),
            }
        };
        if !seal {
            return;
        }
        // Lines already in the inbox are taken before sealing.
        rx.close();
        while let Ok(b) = rx.try_recv() {
            self.feed(b);
        }
        let now = crate::clock::now();
        self.spool.seal_all(now);
        self.perform();
        for (_, w) in std::mem::take(&mut self.waiting) {
            let _ = w.send(Err(Refused::ShuttingDown));
        }
        info!(size = self.spool.size(), "log spool closed");
    }

    fn feed(&mut self, b: Batch) {
        let token = b.ack.map(|a| {
            self.next_token += 1;
            self.waiting.insert(self.next_token, a);
            if self.repl.sources.contains(&b.source) {
                self.repl.tokens.insert(self.next_token, b.source.clone());
            }
            self.next_token
        });
        self.spool.lines(
            crate::clock::now(),
            &b.source,
            &b.lines,
            token,
            &mut rand::rngs::OsRng,
        );
        // Refusals come out at once; answer them before the commit.
        self.perform();
    }

    /// Carries out the spool's outputs, in order.
    fn perform(&mut self) {
        while let Some(o) = self.spool.poll_output() {
            let dir = self.io.dir.clone();
            match o {
                Output::AppendJournal(w) => self.io.append(&w.source, w.seq, w.create, &w.bytes),
                Output::WriteSegment {
                    index,
                    source,
                    seq,
                    bytes,
                } => {
                    // where a replicated ack's lines landed (the ack may
                    // come after the segment, in the same commit)
                    if self.repl.sources.contains(&source) {
                        self.repl.sealed.insert((source, seq), index);
                    }
                    self.io.write(&layout::segment_path(&dir, index), &bytes)
                }
                Output::WriteTile(t) => self.io.write(&dir.join(&t.path), &t.bytes),
                Output::ReplaceCheckpoint { note } => {
                    self.io.write(&dir.join(layout::CHECKPOINT), &note);
                    self.repl.checkpoint = Some(note);
                }
                Output::Sync { id } => match self.io.sync() {
                    Ok(()) => {
                        self.spool.written(crate::clock::now(), id);
                        self.checkpoint_durable();
                    }
                    Err(e) => {
                        error!("log spool: {e}");
                        self.repl.checkpoint = None;
                        self.spool.write_failed(id, &e)
                    }
                },
                Output::DeleteJournal { source, seq } => {
                    self.io.remove(&layout::journal_path(&dir, &source, seq))
                }
                Output::QuarantineJournal { source, seq } => {
                    let p = layout::journal_path(&dir, &source, seq);
                    let to = p.with_file_name(format!("{source}.{seq}.damaged"));
                    if let Err(e) = fs::rename(&p, &to) {
                        warn!("log spool: keeping {} aside: {e}", p.display());
                    }
                }
                Output::DeleteSegment { index } => {
                    self.io.remove(&layout::segment_path(&dir, index))
                }
                Output::Ack(t) => {
                    if let Some(source) = self.repl.tokens.remove(&t) {
                        // the lines are in the source's open segment or
                        // an earlier one: wait for the open one
                        let seq = self.spool.next_seq(&source).unwrap_or(1).saturating_sub(1);
                        if self.repl.held.is_empty() {
                            self.repl.waiting_since = Some(crate::clock::now());
                        }
                        self.repl.held.push((t, source, seq));
                    } else if let Some(w) = self.waiting.remove(&t) {
                        let _ = w.send(Ok(()));
                    }
                }
                Output::Refuse { token, why } => {
                    self.repl.tokens.remove(&token);
                    if let Some(w) = self.waiting.remove(&token) {
                        let _ = w.send(Err(refused(why)));
                    }
                }
                Output::Warn(w) => say(w),
            }
        }
        self.usage.send_replace(self.spool.usage());
        self.release_replicated();
    }

    /// The checkpoint written before the barrier that just completed is
    /// durable: the daemon may replicate up to it.
    fn checkpoint_durable(&mut self) {
        if let Some(note) = self.repl.checkpoint.take() {
            match keyward_core::log::checkpoint::open(&note, &self.repl.me) {
                Ok((size, _)) => {
                    self.repl.checkpoints.send_replace(Some((size, note)));
                }
                Err(e) => warn!("log spool: its own checkpoint does not open: {e}"),
            }
        }
    }

    /// R peers hold the first `size` leaves.
    fn on_replicated(&mut self, size: u64) {
        self.repl.replicated = self.repl.replicated.max(size);
        while self.repl.marked < self.repl.replicated {
            self.spool.replicated(self.repl.marked);
            self.repl.marked += 1;
        }
        self.release_replicated();
    }

    /// Answers the held acks whose segment R peers hold.
    fn release_replicated(&mut self) {
        let r = self.repl.replicated;
        let sealed = &self.repl.sealed;
        let mut done = Vec::new();
        self.repl.held.retain(|(t, source, seq)| {
            let ok = sealed.get(&(source.clone(), *seq)).is_some_and(|i| *i < r);
            if ok {
                done.push(*t);
            }
            !ok
        });
        for t in done {
            if let Some(w) = self.waiting.remove(&t) {
                let _ = w.send(Ok(()));
            }
        }
        // a segment R peers hold has no ack left waiting for it
        self.repl.sealed.retain(|_, i| *i >= r);
        if self.repl.held.is_empty() {
            self.repl.waiting_since = None;
        }
    }

    /// Acks waiting on a segment still open for a while: seal it now, so
    /// replication does not wait for the segment's time or size cut.
    fn seal_for_replication(&mut self, now: u64) {
        let Some(since) = self.repl.waiting_since else {
            return;
        };
        let open = self
            .repl
            .held
            .iter()
            .any(|(_, src, q)| !self.repl.sealed.contains_key(&(src.clone(), *q)));
        if open && now.saturating_sub(since) >= SEAL_FOR_REPLICATION_MS {
            self.repl.waiting_since = Some(now);
            self.spool.seal_all(now);
            self.perform();
        }
    }
}

fn refused(r: Refusal) -> Refused {
    match r {
        Refusal::Full { .. } => Refused::Full,
        Refusal::UnknownSource(s) => Refused::UnknownSource(s),
        Refusal::TooLong { .. } => Refused::Invalid(r.to_string()),
        Refusal::Io(e) => Refused::Io(e),
    }
}

fn say(w: Warning) {
    match w {
        Warning::Nearing {
            used,
            quota,
            percent,
        } => warn!(
            "log spool over {percent}% of its quota ({used} of {quota} bytes): raise logs.quota_bytes, shorten retention_days, or free the disk before lines are refused"
        ),
        Warning::Relieved { used, quota } => {
            info!("log spool back under its warning threshold ({used} of {quota} bytes)")
        }
        Warning::Full {
            source,
            refused_lines,
        } => warn!(
            source = %source,
            "log spool FULL: {refused_lines} lines refused (not lost silently: senders with acknowledgement were told; datagrams are counted); raise logs.quota_bytes or shorten retention"
        ),
        Warning::Recovered { source, seq, lines } => {
            info!(source = %source, seq, lines, "recovered an open segment from its journal after a crash")
        }
        Warning::Unacknowledged { source, seq } => warn!(
            source = %source,
            seq,
            "dropped a journal of lines never acknowledged (the node stopped inside their group commit)"
        ),
        Warning::Damaged { source, seq, why } => warn!(
            source = %source,
            seq,
            "journal {source}.{seq} cannot be read ({why}); kept as {source}.{seq}.damaged for the auditor, the source's sequence skips it"
        ),
        Warning::Discarded { index, why } => {
            warn!(index, "segment file beyond the checkpoint deleted: {why}")
        }
        Warning::WriteFailed { why } => error!(
            "log spool cannot write ({why}): lines are refused until keywardd restarts with the disk fixed"
        ),
        Warning::Deleted { index, source, why } => {
            info!(index, source = %source, "log segment deleted: {why}")
        }
    }
}
