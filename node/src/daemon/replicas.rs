//! The daemon's part of logs part 2: it hands the node what it loaded
//! (replicas, witness state) and this node's durable checkpoints, and
//! carries out the node's log outputs: replica and witness files with
//! their barriers, reads of this node's own log, the replicated size back
//! to the spool task, cosignatures and evidence kept as files. Every
//! decision is the node's (`keyward_core::node::logs`).

use std::path::PathBuf;

use keyward_core::node::{Input, LogsSetup, Output};
use tracing::{error, warn};

use super::log_io;
use crate::logs::replicas;

impl super::Daemon {
    /// The logs directory: the spool's (replicas live beside it).
    pub(super) fn logs_dir(&self) -> PathBuf {
        crate::logs::spool::spool_dir(&self.cfg.logs, &self.cfg.state_dir)
    }

    /// Loads replicas and witness state and turns the node's logs on;
    /// hands it the spool's durable checkpoint, if any.
    pub(super) fn start_replication(&mut self) {
        let dir = self.logs_dir();
        let loaded = replicas::load(&self.cfg.logs, &self.key, &dir);
        let replicas = if self.logs.is_some() {
            self.cfg.logs.replicas
        } else {
            0
        };
        let setup = LogsSetup {
            replicas,
            witness_interval: self.cfg.logs.witness_secs.saturating_mul(1000),
            store: loaded.store,
            witness: loaded.witness,
            silence_after: self.cfg.logs.silence_secs.saturating_mul(1000),
            problems: loaded.problems,
        };
        self.node.set_logs(setup, super::now_ms());
        self.drain();
        // the checkpoint the spool resumed from is durable: replicate up
        // to it now, not only after the spool's next one
        if self.logs.is_some() {
            match crate::logs::layout::read_checkpoint(&dir) {
                Ok(Some(note)) => {
                    let me = self.key.id();
                    if let Ok((size, _)) = keyward_core::log::checkpoint::open(&note, &me) {
                        self.input(Input::LogCheckpointed {
                            size,
                            checkpoint: note,
                        });
                    }
                }
                Ok(None) => {}
                Err(e) => warn!("reading the spool's checkpoint: {e}"),
            }
        }
        self.checkpoint_to_node();
    }

    /// The spool's latest durable checkpoint, to the node.
    pub(super) fn checkpoint_to_node(&mut self) {
        let Some(h) = &mut self.logs else { return };
        let cp = h.checkpoints.borrow_and_update().clone();
        if let Some((size, checkpoint)) = cp {
            self.input(Input::LogCheckpointed { size, checkpoint });
        }
    }

    /// Waits for the spool's next durable checkpoint (never, without a
    /// spool).
    pub(super) async fn next_checkpoint(rx: &mut Option<crate::logs::spool::Checkpoints>) {
        match rx {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// Hands a job to the log IO thread (`log_io`), or does it here if
    /// the thread is gone (the daemon is stopping).
    pub(super) fn log_job(&mut self, job: log_io::Job) {
        if let Err(job) = self.log_io.submit(job) {
            if let Some(done) = log_io::run(&self.logs_dir(), job) {
                self.log_io_done(done);
            }
        }
    }

    /// What the log IO thread finished.
    pub(super) fn log_io_done(&mut self, done: log_io::Done) {
        match done {
            log_io::Done::Input(i) => self.input(i),
            log_io::Done::Output(o) => self.output(o),
        }
    }

    /// The node's log outputs.
    pub(super) fn logs_output(&mut self, o: Output) {
        let dir = self.logs_dir();
        match o {
            Output::ReadLog { id, read } => self.log_job(log_io::Job::Read(id, read)),
            Output::ServeLog {
                id,
                origin,
                own,
                path,
                offset,
            } => self.log_job(log_io::Job::Serve {
                id,
                origin,
                own,
                path,
                offset,
            }),
            Output::Replicated(size) => {
                if let Some(h) = &self.logs {
                    h.replicated(size);
                }
            }
            Output::Cosigned { witness, note, .. } => {
                if let Err(e) =
                    replicas::keep(&dir, replicas::COSIGNED, &witness.to_string(), &note)
                {
                    warn!("keeping the cosignature of {witness}: {e}");
                }
            }
            Output::Evidence {
                origin,
                at,
                what,
                bytes,
            } => {
                let sub = format!("{}/{origin}", replicas::EVIDENCE);
                match replicas::keep(&dir, &sub, &format!("{at}-{what}"), &bytes) {
                    Ok(()) => warn!(
                        "evidence against {origin} ({what}) kept in {}/{sub}",
                        dir.display()
                    ),
                    Err(e) => error!("keeping evidence against {origin}: {e}"),
                }
            }
            _ => {}
        }
    }
}
