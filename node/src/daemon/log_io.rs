//! The node's log file IO, on a thread of its own: replica and witness
//! writes, reads of this node's own log for a push, and pieces read for
//! an auditor's fetch.
//!
//! Why: a push is up to a few megabytes of segments written and fsynced
//! (file, directory, checkpoint), and reading one for a peer or an
//! auditor is as large. Done on the event loop, every share request,
//! ping and gossip message waited behind that IO. The node waits for
//! [`Input::Written`] before it acknowledges a push or releases a
//! cosignature, and for [`Input::LogRead`] before it pushes, so the IO can
//! finish later. One thread taking the jobs in the order the node asked
//! keeps each origin's barriers in order (a checkpoint never lands before
//! the segments it names) and keeps what the node promised of
//! [`Output::Write`]: a piece read for an auditor is read after every
//! write asked before it, so the files the node says it holds are there.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use keyward_core::identity::NodeId;
use keyward_core::node::{InId, Input, LogData, LogRead, Output, ReadId, Write, WriteId};
use keyward_core::proto::Response;
use tokio::sync::mpsc;
use tracing::error;

use crate::logs::{replicas, serve};

/// One piece of log IO.
#[derive(Debug)]
pub enum Job {
    /// A replica or witness write; the node hears how it went if it gave
    /// an id.
    Write(Option<WriteId>, Write),
    /// A read of this node's own log.
    Read(ReadId, LogRead),
    /// A piece of a log file for an auditor's fetch.
    Serve {
        id: InId,
        origin: NodeId,
        own: bool,
        path: String,
        offset: u64,
    },
}

/// What a job gives back to the event loop.
#[derive(Debug)]
pub enum Done {
    /// For the node.
    Input(Input),
    /// For the swarm (an answer to an auditor).
    Output(Output),
}

/// The thread and its queue.
pub struct LogIo {
    queue: Option<std_mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl LogIo {
    /// Starts the thread working under the logs directory `dir`;
    /// results go to `done`.
    pub fn start(dir: PathBuf, done: mpsc::UnboundedSender<Done>) -> std::io::Result<LogIo> {
        let (queue, jobs) = std_mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("keyward-logio".into())
            .spawn(move || {
                for job in jobs {
                    if let Some(d) = run(&dir, job) {
                        // the daemon stopping drops the receiver: nothing
                        // waits for the answer any more
                        let _ = done.send(d);
                    }
                }
            })?;
        Ok(LogIo {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `job` behind those queued before it; hands it back if the
    /// thread is gone.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match &self.queue {
            Some(q) => q.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Lets the queued jobs finish, then ends the thread.
    pub fn stop(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LogIo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Does one job under the logs directory `dir`.
pub fn run(dir: &Path, job: Job) -> Option<Done> {
    match job {
        Job::Write(id, write) => {
            let result = apply(dir, &write);
            if let Err(e) = &result {
                error!("log replica/witness write failed: {e}");
            }
            id.map(|id| Done::Input(Input::Written { id, result }))
        }
        Job::Read(id, read) => {
            let result: Result<LogData, String> = replicas::read_log(dir, &read);
            Some(Done::Input(Input::LogRead { id, result }))
        }
        Job::Serve {
            id,
            origin,
            own,
            path,
            offset,
        } => {
            let response = match serve::read_piece(dir, &origin, own, &path, offset) {
                Ok((bytes, total)) => Response::LogFile { bytes, total },
                Err(e) => Response::Refused {
                    reason: format!("cannot read {path} of {origin}'s log: {e}"),
                },
            };
            Some(Done::Output(Output::Respond { id, response }))
        }
    }
}

/// Performs one replica or witness write.
fn apply(dir: &Path, write: &Write) -> Result<(), String> {
    match write {
        Write::Replica(ws) => replicas::apply_replica(dir, ws),
        Write::Witness(ws) => replicas::apply_witness(dir, ws),
        other => Err(format!(
            "{} is not a replica or witness write",
            other.what()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_core::log::replica::Write as ReplicaWrite;

    fn segment(path: &str, bytes: &[u8]) -> Job {
        Job::Write(
            None,
            Write::Replica(vec![
                ReplicaWrite::Segment {
                    path: path.into(),
                    bytes: bytes.to_vec(),
                },
                ReplicaWrite::Sync,
            ]),
        )
    }

    fn with_id(job: Job, id: u64) -> Job {
        match job {
            Job::Write(_, w) => Job::Write(Some(WriteId(id)), w),
            j => j,
        }
    }

    fn written(d: &Done) -> Option<(WriteId, Result<(), String>)> {
        match d {
            Done::Input(Input::Written { id, result }) => Some((*id, result.clone())),
            _ => None,
        }
    }

    /// Jobs are done in the order queued: writes with an id are answered
    /// once their files are on disk, those without silently, a piece read
    /// after a write sees it; stop finishes what was queued.
    #[test]
    fn jobs_are_done_in_order_and_writes_answered_when_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let origin = keyward_core::identity::NodeKey::generate().id();
        let odir = replica_dir(&origin);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut io = LogIo::start(d.path().to_path_buf(), tx).unwrap();
        let seg = |i: u32| format!("{odir}/segments/{i:020}");
        io.submit(with_id(segment(&seg(0), b"first"), 1)).unwrap();
        io.submit(Job::Write(
            None,
            Write::Replica(vec![ReplicaWrite::Delete { path: seg(0) }]),
        ))
        .unwrap();
        io.submit(with_id(segment(&seg(1), b"second"), 2)).unwrap();
        io.submit(Job::Serve {
            id: InId(7),
            origin,
            own: false,
            path: format!("segments/{:020}", 1),
            offset: 0,
        })
        .unwrap();
        // a path outside the directory is refused, and said so
        io.submit(with_id(segment("../escape", b"x"), 3)).unwrap();
        io.stop();
        let got: Vec<Done> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(written(&got[0]), Some((WriteId(1), Ok(()))));
        assert_eq!(written(&got[1]), Some((WriteId(2), Ok(()))));
        match &got[2] {
            Done::Output(Output::Respond {
                id,
                response: Response::LogFile { bytes, total },
            }) => {
                assert_eq!(*id, InId(7));
                assert_eq!((bytes.as_slice(), *total), (&b"second"[..], 6));
            }
            other => panic!("{other:?}"),
        }
        let (id, r) = written(&got[3]).unwrap();
        assert_eq!(id, WriteId(3));
        assert!(r.is_err_and(|e| e.contains("outside")));
        assert!(
            !d.path().join(seg(0)).exists(),
            "deleted after it was written"
        );
        assert!(!d.path().parent().unwrap().join("escape").exists());
        // after stop, jobs come back to be done elsewhere
        assert!(io.submit(segment(&seg(2), b"late")).is_err());
    }

    fn replica_dir(origin: &NodeId) -> String {
        keyward_core::log::replica::origin_dir(origin)
    }
}
