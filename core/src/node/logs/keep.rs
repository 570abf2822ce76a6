//! The replica and witness side: other origins' pushes and add-checkpoint
//! requests. An answer that promises something durable (`LogHeld`, a
//! cosignature) waits for its write, as every such answer of the node.

use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::log::replica::store::Refusal as PushRefusal;
use crate::log::replica::wire::Push;
use crate::log::witness::request::AddCheckpoint;
use crate::log::witness::Refusal as WitnessRefusal;
use crate::proto::Response;

use super::super::io::{InId, Output, Write};
use super::super::machine::{Node, Then};
use super::super::notes::Note;
use super::Kept;

impl Node {
    /// A push of `from`'s log (only an origin pushes its own).
    pub(in crate::node) fn serve_push(&mut self, id: InId, from: NodeId, push: Push, now: Millis) {
        let refuse = |reason: String| Response::Refused { reason };
        if let Some(why) = &self.logs.store_off {
            let r = refuse(format!(
                "this node stopped keeping replicas until it restarts: {why}"
            ));
            return self.push(Output::Respond { id, response: r });
        }
        let Some(store) = &mut self.logs.store else {
            let r = refuse("this node keeps no replicas of other nodes' logs".into());
            return self.push(Output::Respond { id, response: r });
        };
        match store.accept(now, from, &push) {
            Ok(acc) => {
                for n in acc.notices {
                    self.note(Note::Replica(n));
                }
                for f in acc.findings {
                    self.log_finding(f.against(), f.to_string(), None, now);
                }
                self.log_grew(from, acc.held.size, now);
                let ok = Response::LogHeld(acc.held);
                if acc.writes.is_empty() {
                    return self.push(Output::Respond { id, response: ok });
                }
                self.write_then(
                    Write::Replica(acc.writes),
                    Then::Kept {
                        id,
                        ok: Box::new(ok),
                        kept: Kept::Replica(from),
                    },
                );
            }
            Err(refusal) => {
                let response = match &refusal {
                    PushRefusal::Gap { .. } => match refusal.ask() {
                        Some(a) => Response::LogAsk(a),
                        None => Response::LogRefused(store.refused(&refusal)),
                    },
                    _ => Response::LogRefused(store.refused(&refusal)),
                };
                if let Some(f) = refusal.finding() {
                    let text = f.to_string();
                    let bytes = push.encode().ok();
                    let against = f.against();
                    self.log_finding(against, text, bytes.map(|b| ("push", b)), now);
                }
                self.push(Output::Respond { id, response });
            }
        }
    }

    /// A C2SP add-checkpoint from `from`, the origin of the checkpoint.
    pub(in crate::node) fn serve_add_checkpoint(
        &mut self,
        id: InId,
        from: NodeId,
        body: &[u8],
        now: Millis,
    ) {
        let refused =
            |last_size: Option<u64>, reason: String| Response::WitnessRefused { last_size, reason };
        if let Some(why) = &self.logs.witness_off {
            let r = refused(
                None,
                format!("this witness stopped until it restarts: {why}"),
            );
            return self.push(Output::Respond { id, response: r });
        }
        let Some(w) = &mut self.logs.witness else {
            let r = refused(None, "this node witnesses no logs".into());
            return self.push(Output::Respond { id, response: r });
        };
        let req = match AddCheckpoint::from_body(body) {
            Ok(r) => r,
            Err(e) => {
                let r = refused(None, e.to_string());
                return self.push(Output::Respond { id, response: r });
            }
        };
        match w.add_checkpoint(now, &from, &req) {
            Ok(pending) => {
                let writes = pending.writes().to_vec();
                // released only once `writes` are durable (Then::Kept)
                let cosigned = pending.committed();
                self.log_grew(from, cosigned.size, now);
                let ok = Response::Cosigned {
                    note: cosigned.cosignature.note,
                };
                self.write_then(
                    Write::Witness(writes),
                    Then::Kept {
                        id,
                        ok: Box::new(ok),
                        kept: Kept::Witness(from),
                    },
                );
            }
            Err(e) => {
                let reason = e.to_string();
                let last = match &e {
                    WitnessRefusal::Conflict { last_size, .. } => Some(*last_size),
                    _ => None,
                };
                match e {
                    WitnessRefusal::Rollback { evidence, .. }
                    | WitnessRefusal::Fork { evidence, .. } => {
                        self.report_witness_evidence(from, reason.clone(), &evidence, now);
                    }
                    _ => {}
                }
                self.push(Output::Respond {
                    id,
                    response: refused(last, reason),
                });
            }
        }
    }

    /// A replica or witness write is durable (or failed): answer.
    pub(in crate::node) fn logs_kept(
        &mut self,
        id: InId,
        ok: Response,
        kept: Kept,
        result: Result<(), String>,
    ) {
        match result {
            Ok(()) => {
                let gossip = match (&kept, &ok) {
                    (Kept::Witness(origin), Response::Cosigned { note }) => {
                        Some((*origin, note.clone()))
                    }
                    _ => None,
                };
                self.push(Output::Respond { id, response: ok });
                let origin = match kept {
                    Kept::Replica(o) | Kept::Witness(o) => o,
                };
                if !self.logs.peers.contains(&origin) {
                    self.logs_peers_changed();
                }
                if let Some((origin, note)) = gossip {
                    self.gossip_cosigned(origin, note);
                }
            }
            Err(e) => {
                let what = match kept {
                    Kept::Replica(_) => {
                        self.logs.store_off = Some(e.clone());
                        "keeping replicas"
                    }
                    Kept::Witness(_) => {
                        self.logs.witness_off = Some(e.clone());
                        "witnessing"
                    }
                };
                self.note(Note::LogProblem(format!(
                    "{what} stopped until a restart reloads the files: a write failed: {e}"
                )));
                let response = match kept {
                    Kept::Replica(_) => Response::Refused {
                        reason: format!("the replica's write failed: {e}"),
                    },
                    Kept::Witness(_) => Response::WitnessRefused {
                        last_size: None,
                        reason: format!("the witness's state write failed: {e}"),
                    },
                };
                self.push(Output::Respond { id, response });
            }
        }
    }
}
