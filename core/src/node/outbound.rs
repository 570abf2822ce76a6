//! Requests this node sends and what waits on their answers: a join, the
//! guardians' answers to a deposit, a drop or a held query (fanned out and
//! gathered into one control reply), roster syncs and goodbyes.

use std::collections::BTreeMap;

use crate::control::{CtlError, CtlReply, CtlResponse, GuardianAnswer, GuardianResults, Joined};
use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::proto::{Request, Response};
use crate::roster::MeshId;

use super::entropy::SyncAnswer;
use super::io::{CtlId, OutId, Output};
use super::machine::Node;
use super::notes::Note;

/// What an outbound request's answer is for.
#[derive(Debug)]
enum Pending {
    Join {
        ctl: CtlId,
        mesh: MeshId,
    },
    /// One guardian's part of a control request fanned out to several.
    Fanout {
        batch: u64,
        guardian: NodeId,
        /// A deposit: its ack makes the guardian ours.
        deposit: bool,
    },
    /// A sync under this op-id prefix (empty: a whole-roster round).
    /// `proved`: it carried our admission chain (a refused round's
    /// second ask), so a refusal of it is not answered again.
    Sync {
        prefix: Vec<u8>,
        proved: bool,
    },
    GoingDown,
    /// A log push or an add-checkpoint.
    Logs(super::logs::Sent),
    /// An auditor's question to a member, for control request `ctl`.
    Audit {
        ctl: CtlId,
    },
}

/// A control request fanned out to several guardians.
#[derive(Debug)]
struct Fanout {
    ctl: CtlId,
    waiting: usize,
    /// Per guardian id: its answer.
    results: BTreeMap<String, GuardianAnswer>,
}

#[derive(Debug, Default)]
pub(super) struct Outbound {
    pending: BTreeMap<OutId, Pending>,
    fanouts: BTreeMap<u64, Fanout>,
    next_id: u64,
    next_batch: u64,
}

impl Outbound {
    pub(super) fn goodbyes_pending(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p, Pending::GoingDown))
    }
}

impl Node {
    fn send(&mut self, to: NodeId, req: Request, p: Pending) {
        let id = OutId(self.outbound.next_id);
        self.outbound.next_id += 1;
        self.outbound.pending.insert(id, p);
        self.push(Output::Send { id, to, req });
    }

    pub(super) fn reply(&mut self, id: CtlId, r: Result<CtlReply, CtlError>) {
        self.push(Output::Reply {
            id,
            response: CtlResponse::from(r),
        });
    }

    pub(super) fn send_sync_request(&mut self, p: NodeId, req: Request, prefix: Vec<u8>) {
        let proved = matches!(&req, Request::Sync { admitted, .. } if !admitted.is_empty());
        self.entropy.sent(p);
        self.send(p, req, Pending::Sync { prefix, proved });
    }

    pub(super) fn send_log(&mut self, p: NodeId, req: Request, sent: super::logs::Sent) {
        self.send(p, req, Pending::Logs(sent));
    }

    pub(super) fn send_audit(&mut self, p: NodeId, req: Request, ctl: CtlId) {
        self.send(p, req, Pending::Audit { ctl });
    }

    pub(super) fn say_goodbye(&mut self, p: NodeId) {
        self.send(p, Request::GoingDown, Pending::GoingDown);
    }

    pub(super) fn send_join(&mut self, ctl: CtlId, inviter: NodeId, req: Request, mesh: MeshId) {
        self.send(inviter, req, Pending::Join { ctl, mesh });
    }

    /// Sends one request per guardian and answers `ctl` with every
    /// guardian's result once all answered (or failed).
    pub(super) fn fan_out(
        &mut self,
        ctl: CtlId,
        requests: Vec<(NodeId, Request)>,
        results: BTreeMap<String, GuardianAnswer>,
    ) {
        let batch = self.outbound.next_batch;
        self.outbound.next_batch += 1;
        let waiting = requests.len();
        if waiting == 0 {
            return self.reply(ctl, Ok(CtlReply::Guardians(GuardianResults { results })));
        }
        self.outbound.fanouts.insert(
            batch,
            Fanout {
                ctl,
                waiting,
                results,
            },
        );
        for (guardian, req) in requests {
            let deposit = matches!(req, Request::Deposit(_));
            if deposit && self.overlay.depositing(guardian, true) {
                self.refresh_wanted();
            }
            let p = Pending::Fanout {
                batch,
                guardian,
                deposit,
            };
            self.send(guardian, req, p);
        }
    }

    pub(super) fn on_response(
        &mut self,
        id: OutId,
        from: NodeId,
        r: Result<Response, String>,
        now: Millis,
    ) {
        let Some(p) = self.outbound.pending.remove(&id) else {
            return;
        };
        match p {
            Pending::Join { ctl, mesh } => {
                let r = self.joined(from, mesh, r, now);
                self.reply(ctl, r);
            }
            Pending::Fanout {
                batch,
                guardian,
                deposit,
            } => {
                if deposit && self.overlay.depositing(guardian, false) {
                    self.refresh_wanted();
                }
                match &r {
                    Ok(Response::Ack) if deposit => self.guardian_says(guardian, true),
                    Ok(Response::Held { epochs }) => {
                        self.guardian_says(guardian, !epochs.is_empty())
                    }
                    _ => {}
                }
                let res = match r {
                    Ok(Response::Ack) => GuardianAnswer::Ok,
                    Ok(Response::Held { epochs }) => GuardianAnswer::Held { epochs },
                    Ok(Response::Refused { reason }) => GuardianAnswer::Refused { reason },
                    Ok(_) => GuardianAnswer::Unexpected,
                    Err(reason) => GuardianAnswer::Unreachable { reason },
                };
                let Some(f) = self.outbound.fanouts.get_mut(&batch) else {
                    return;
                };
                f.results.insert(guardian.to_string(), res);
                f.waiting -= 1;
                if f.waiting == 0 {
                    let f = self.outbound.fanouts.remove(&batch).expect("present");
                    let results = GuardianResults { results: f.results };
                    self.reply(f.ctl, Ok(CtlReply::Guardians(results)));
                }
            }
            Pending::Sync { prefix, proved } => match r {
                Ok(Response::Roster {
                    ops,
                    admin,
                    held,
                    children,
                    ..
                }) => {
                    let answer = SyncAnswer {
                        ops,
                        admin,
                        held,
                        children,
                    };
                    self.synced(from, prefix, answer, now);
                }
                Ok(Response::Refused { .. }) if prefix.is_empty() && !proved => {
                    self.prove_admission(from);
                    self.sync_answered(from, now);
                }
                Ok(_) => self.sync_answered(from, now),
                Err(why) => {
                    self.note(Note::SyncFailed { peer: from, why });
                    self.sync_answered(from, now);
                }
            },
            Pending::GoingDown => {}
            Pending::Logs(sent) => self.on_log_response(sent, r, now),
            Pending::Audit { ctl } => self.audit_answer(ctl, from, r),
        }
    }

    /// The inviter's answer to our join.
    fn joined(
        &mut self,
        from: NodeId,
        mesh: MeshId,
        r: Result<Response, String>,
        now: Millis,
    ) -> Result<CtlReply, CtlError> {
        match r {
            Ok(Response::Joined { ops }) => {
                if ops.first().map(|o| o.body.mesh()) != Some(mesh) {
                    return Err(CtlError::InviterWrongMesh);
                }
                self.merge_ops(ops, now);
                if !self.roster.is_active(&self.me.id) {
                    return Err(CtlError::NotAdmitted);
                }
                self.peers.reset_backoff();
                self.send_sync(from, now);
                Ok(CtlReply::Joined(Joined {
                    mesh: self.roster.mesh().map(|m| m.to_string()),
                    mesh_name: self.roster.mesh_name().map(String::from),
                    members: self.roster.members().count(),
                }))
            }
            Ok(Response::Refused { reason }) => Err(CtlError::JoinRefused { reason }),
            Ok(_) => Err(CtlError::InviterConfused),
            Err(reason) => Err(CtlError::InviterUnreachable {
                peer: from.to_string(),
                reason,
            }),
        }
    }
}
