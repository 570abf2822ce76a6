//! File tail: the driver of `keyward_core::log::ingest::{lines, tail}`.
//!
//! Polls every [`POLL`] (no inotify: the `notify` crate is not in the
//! dependency tree, and a poll also catches what inotify would need a
//! second look for). Reads what was appended, sends whole lines as one
//! batch with an ack, waits for the spool's answer, and only then saves
//! the position (`<spool>/tail/<source>`, written to a temporary file,
//! fsynced and renamed into place) so a restart resumes exactly past the
//! last durable line. A refused batch is sent again after [`RETRY`],
//! never skipped.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward_core::log::ingest::lines::{LineSplitter, Split};
use keyward_core::log::ingest::tail::{self as core_tail, FileId, Resume, Step, TailPos};
use keyward_core::log::line::Sender;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::oneshot;

use super::{line, MAX_BATCH_BYTES, MAX_BATCH_LINES};
use crate::logs::{Batch, Inbox};

/// How often the file is looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// Wait before sending a refused batch again.
pub const RETRY: Duration = Duration::from_secs(1);
/// Most directory entries searched for a file rotated while keywardd was
/// down.
const MAX_DIR_SCAN: usize = 4096;

/// One tailed source.
pub struct Tail {
    source: String,
    path: PathBuf,
    state: PathBuf,
}

fn id_of(m: &std::fs::Metadata) -> FileId {
    FileId {
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// The open file being read.
struct Open {
    file: File,
    id: FileId,
    split: LineSplitter,
}

impl Tail {
    /// Checks that the position directory can be made; the file itself may
    /// appear later.
    pub fn new(source: &str, path: &Path, spool_dir: &Path) -> Result<Tail, String> {
        let dir = spool_dir.join("tail");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if path.file_name().is_none() {
            return Err(format!("path {} names no file", path.display()));
        }
        Ok(Tail {
            source: source.to_string(),
            path: path.to_path_buf(),
            state: dir.join(source),
        })
    }

    /// The saved position; a damaged position file is reported and the
    /// file read from its start (duplicates over loss).
    fn saved(&self) -> Option<TailPos> {
        let b = std::fs::read(&self.state).ok()?;
        match TailPos::decode(&b) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(
                    "logs.source `{}`: {}: {e}",
                    self.source,
                    self.state.display()
                );
                None
            }
        }
    }

    async fn save(&self, pos: TailPos) -> std::io::Result<()> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let tmp = state.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&pos.encode())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &state)?;
            if let Some(dir) = state.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn open_at(&self, path: &Path, offset: u64) -> std::io::Result<Open> {
        let mut file = File::open(path).await?;
        let id = id_of(&file.metadata().await?);
        file.seek(SeekFrom::Start(offset)).await?;
        Ok(Open {
            file,
            id,
            split: LineSplitter::at(offset),
        })
    }

    /// Finds the rotated copy of `id` beside the path (`access.log.1`).
    fn find_rotated(&self, id: FileId) -> Option<PathBuf> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::read_dir(dir)
            .ok()?
            .take(MAX_DIR_SCAN)
            .flatten()
            .find(|e| {
                std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_file() && id_of(&m) == id)
            })
            .map(|e| e.path())
    }

    /// Sends lines until the spool takes them; false once the spool is
    /// gone.
    async fn deliver(&self, inbox: &Inbox, lines: &[Split]) -> bool {
        loop {
            let (tx, rx) = oneshot::channel();
            let batch = Batch {
                source: self.source.clone(),
                lines: lines
                    .iter()
                    .map(|l| line(l.msg.clone(), Sender::default()))
                    .collect(),
                ack: Some(tx),
            };
            if inbox.send(batch).await.is_err() {
                return false;
            }
            match rx.await {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => {
                    tracing::warn!(
                        "logs.source `{}`: lines refused ({e}); retrying",
                        self.source
                    );
                    tokio::time::sleep(RETRY).await;
                }
                Err(_) => return false,
            }
        }
    }

    /// Reads the open file to its end (bounded per batch), delivering and
    /// saving as it goes. Returns whether any byte was read, or None once
    /// the spool is gone.
    async fn drain(&self, o: &mut Open, inbox: &Inbox, finish: bool) -> Option<bool> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut any = false;
        loop {
            let mut lines = Vec::new();
            let mut bytes = 0;
            let mut eof = false;
            while lines.len() < MAX_BATCH_LINES && bytes < MAX_BATCH_BYTES {
                match o.file.read(&mut buf).await {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        any = true;
                        bytes += n;
                        o.split.push(&buf[..n], &mut lines);
                    }
                    Err(e) => {
                        tracing::warn!(
                            "logs.source `{}`: read {}: {e}",
                            self.source,
                            self.path.display()
                        );
                        eof = true;
                        break;
                    }
                }
            }
            if eof && finish {
                lines.extend(o.split.finish());
            }
            if !lines.is_empty() {
                if !self.deliver(inbox, &lines).await {
                    return None;
                }
                let pos = TailPos {
                    file: o.id,
                    offset: o.split.line_offset(),
                };
                if let Err(e) = self.save(pos).await {
                    tracing::warn!(
                        "logs.source `{}`: cannot save the position to {}: {e}",
                        self.source,
                        self.state.display()
                    );
                }
            }
            if eof {
                return Some(any);
            }
        }
    }

    /// Follows the file until the spool closes.
    pub async fn run(self, inbox: Inbox) {
        let mut warned = false;
        let mut open = loop {
            match self.start(&inbox).await {
                Ok(Some(o)) => break o,
                Ok(None) => return,
                Err(e) => {
                    if !warned {
                        tracing::warn!(
                            "logs.source `{}`: {}: {e}; waiting for it",
                            self.source,
                            self.path.display()
                        );
                        warned = true;
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        loop {
            let Some(read) = self.drain(&mut open, &inbox, false).await else {
                return;
            };
            let size = match open.file.metadata().await {
                Ok(m) => m.len(),
                Err(_) => open.split.read_offset(),
            };
            let at_path = std::fs::metadata(&self.path).ok().map(|m| id_of(&m));
            match core_tail::step(open.id, size, open.split.read_offset(), at_path, !read) {
                Step::Wait => tokio::time::sleep(POLL).await,
                Step::Truncated => {
                    tracing::info!(
                        "logs.source `{}`: {} was truncated; reading it from its start",
                        self.source,
                        self.path.display()
                    );
                    if open.file.seek(SeekFrom::Start(0)).await.is_err() {
                        tokio::time::sleep(POLL).await;
                    }
                    open.split = LineSplitter::at(0);
                }
                Step::Switch => {
                    if self.drain(&mut open, &inbox, true).await.is_none() {
                        return;
                    }
                    match self.open_at(&self.path, 0).await {
                        Ok(o) => {
                            tracing::info!(
                                "logs.source `{}`: {} was rotated; following the new file",
                                self.source,
                                self.path.display()
                            );
                            open = o;
                            let _ = self
                                .save(TailPos {
                                    file: open.id,
                                    offset: 0,
                                })
                                .await;
                        }
                        Err(_) => tokio::time::sleep(POLL).await,
                    }
                }
            }
        }
    }

    /// Opens where the saved position says, finishing a copy rotated while
    /// keywardd was down first.
    async fn start(&self, inbox: &Inbox) -> std::io::Result<Option<Open>> {
        let m = std::fs::metadata(&self.path)?;
        match core_tail::resume(self.saved(), id_of(&m), m.len()) {
            Resume::At(offset) => Ok(Some(self.open_at(&self.path, offset).await?)),
            Resume::Rotated(p) => {
                if let Some(old) = self.find_rotated(p.file) {
                    tracing::info!(
                        "logs.source `{}`: finishing {} (rotated while keywardd was down)",
                        self.source,
                        old.display()
                    );
                    let mut o = self.open_at(&old, p.offset).await?;
                    if self.drain(&mut o, inbox, true).await.is_none() {
                        return Ok(None);
                    }
                }
                let o = self.open_at(&self.path, 0).await?;
                let _ = self
                    .save(TailPos {
                        file: o.id,
                        offset: 0,
                    })
                    .await;
                Ok(Some(o))
            }
        }
    }
}
