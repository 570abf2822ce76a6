//! Answering peers: share requests (the guardian decides), deposits and
//! drops from owners, syncs, held queries, goodbyes and joins. A reply
//! that promises something durable (a share held, an invite spent) waits
//! for its write.

use crate::guardian::{self, Action, Event, Millis};
use crate::identity::NodeId;
use crate::proto::{self, AdminBody, AdminKind, AdminMsg, Gossip, Request, Response};
use crate::roster::{Member, SignedOp};

use super::decisions::Logged;
use super::io::{InId, Output, Write};
use super::machine::{Node, Then};
use super::members::{self, Admission, JoinRequest};
use super::notes::Note;

/// What the guardian's actions make of a request.
enum Answer {
    Now(Response),
    /// A write comes first; the answer follows it.
    AfterWrite,
    Nothing,
}

impl Node {
    pub(super) fn serve(&mut self, id: InId, from: NodeId, req: Request, now: Millis) {
        let member = self.roster.is_active(&from);
        let answer = match req {
            Request::Join {
                secret,
                member,
                claim,
            } => return self.admit(id, from, secret.into_array(), member, claim, now),
            Request::Share(sr) => {
                // The connection's key: the initramfs's boot key, checked
                // against the owner's, so a relayed request is refused.
                let acts = self.guardian.handle(
                    Event::Request {
                        id: 0,
                        req: sr,
                        conn: Some(from),
                        at: now,
                    },
                    &self.roster,
                );
                match self.run_actions(id, acts, from) {
                    Answer::Nothing => Answer::Now(Response::Refused {
                        reason: "internal: no decision".into(),
                    }),
                    a => a,
                }
            }
            Request::Deposit(envelope) if member => {
                let ev = Event::Deposit {
                    from,
                    envelope,
                    at: now,
                };
                let acts = self.guardian.handle(ev, &self.roster);
                let answer = self.run_actions(id, acts, from);
                // a ward taken or dropped
                self.refresh_wanted();
                answer
            }
            Request::Drop { epochs } if member => {
                let ev = Event::Drop {
                    from,
                    epochs,
                    at: now,
                };
                let acts = self.guardian.handle(ev, &self.roster);
                let answer = self.run_actions(id, acts, from);
                // a ward taken or dropped
                self.refresh_wanted();
                answer
            }
            Request::Sync {
                digest,
                prefix,
                admin,
                all,
                ..
            } if member => Answer::Now(self.answer_sync(
                from,
                digest.into_array(),
                prefix,
                admin.map(|a| a.into_array()),
                all,
                now,
            )),
            // A revoked node gets no roster, only what revokes it: members
            // refuse its syncs and send it no gossip, so without this it
            // would never learn it is out, and would go on holding (and
            // releasing to) a mesh of its own. The ops prove themselves.
            Request::Sync { .. } if self.roster.is_revoked(&from) => {
                Answer::Now(Response::Roster {
                    ops: self.roster.revocations_of(&from),
                    admin: vec![],
                    records: vec![],
                    held: vec![],
                    children: vec![],
                })
            }
            // A stranger showing its admission chain may be a node
            // orphaned by `revoke --cascade` (`roster::orphans`): it gets
            // the founder's revocations of the chain's signers, or the
            // stranger's refusal if there are none. A chain no honest
            // node sends (too long, a forged admission) is a strike, so a
            // stranger cannot keep this node checking signatures.
            Request::Sync { admitted, .. } if !admitted.is_empty() => {
                match self.roster.orphaning_revocations(&admitted) {
                    Ok(ops) if ops.is_empty() => Answer::Now(members_only()),
                    Ok(ops) => Answer::Now(Response::Roster {
                        ops,
                        admin: vec![],
                        records: vec![],
                        held: vec![],
                        children: vec![],
                    }),
                    Err(refused) => {
                        let reason = refused.to_string();
                        self.strike(from, reason.clone(), now);
                        Answer::Now(Response::Refused { reason })
                    }
                }
            }
            Request::Held if member => {
                let epochs = self.held_for(&from);
                Answer::Now(Response::Held { epochs })
            }
            Request::GoingDown => {
                if member {
                    self.note(Note::PeerGoingDown(from));
                    self.peers.said_bye(from);
                    let ev = Event::GoingDown {
                        node: from,
                        at: now,
                    };
                    self.guardian.handle(ev, &self.roster);
                    self.dirty.insert(from);
                    self.persist_dirty();
                }
                Answer::Now(Response::Ack)
            }
            Request::LogPush(push) if member => return self.serve_push(id, from, *push, now),
            Request::AddCheckpoint { body } if member => {
                return self.serve_add_checkpoint(id, from, &body, now)
            }
            Request::LogSeen { origin, note } if member => {
                return self.serve_log_seen(id, from, origin, note, now)
            }
            Request::LogHolding => return self.serve_log_holding(id, from),
            Request::LogFetch { origin, item } => {
                return self.serve_log_fetch(id, from, origin, item)
            }
            Request::Malformed(why) => {
                self.strike(from, why.clone(), now);
                Answer::Now(Response::Refused { reason: why })
            }
            Request::Deposit(_)
            | Request::Drop { .. }
            | Request::Sync { .. }
            | Request::Held
            | Request::LogPush(_)
            | Request::AddCheckpoint { .. }
            | Request::LogSeen { .. } => Answer::Now(members_only()),
        };
        match answer {
            Answer::Now(response) => self.push(Output::Respond { id, response }),
            Answer::Nothing => self.push(Output::Respond {
                id,
                response: Response::Ack,
            }),
            Answer::AfterWrite => {}
        }
    }

    /// Carries out the guardian's actions; says what to answer.
    /// The epochs of `owner`'s shares this node holds.
    pub(super) fn held_for(&self, owner: &NodeId) -> Vec<u64> {
        self.guardian
            .owner(owner)
            .map(|s| s.envelopes.keys().copied().collect())
            .unwrap_or_default()
    }

    fn run_actions(&mut self, id: InId, acts: Vec<Action>, peer: NodeId) -> Answer {
        let mut answer = Answer::Nothing;
        for a in acts {
            match a {
                Action::Release { envelope, .. } => answer = Answer::Now(Response::Share(envelope)),
                Action::Refuse { refusal, .. } => {
                    answer = Answer::Now(Response::ShareRefused(refusal))
                }
                Action::Store { envelope } => {
                    // Acknowledged only once the share is on disk.
                    let owner = envelope.body.owner;
                    let state = self.guardian.owner(&owner).cloned().unwrap_or_default();
                    self.dirty.remove(&owner);
                    let then = Then::Respond {
                        id,
                        ok: Box::new(Response::Ack),
                        failed: "guardian could not store the share",
                        note: Some(Note::Holding {
                            owner,
                            epoch: envelope.body.epoch,
                        }),
                    };
                    self.write_then(Write::Owners(vec![(owner, state)]), then);
                    answer = Answer::AfterWrite;
                }
                Action::RejectDeposit { reason, from } => {
                    self.note(Note::DepositRefused {
                        from,
                        reason: reason.clone(),
                    });
                    answer = Answer::Now(Response::Refused { reason });
                }
                Action::Persist { owner } => {
                    self.dirty.insert(owner);
                    self.persist_dirty();
                }
                Action::Forget { owner, epochs } => {
                    self.note(Note::Dropping { owner, epochs });
                    self.dirty.insert(owner);
                    self.persist_dirty();
                    answer = Answer::Now(Response::Ack);
                }
                Action::Alert(alert) => self.alert(alert),
                Action::Log(d) => self.log_decision(d, peer),
            }
        }
        answer
    }

    /// A copied boot key asked while its owner is up: recorded, and told
    /// to the mesh, signed by us.
    fn alert(&mut self, alert: guardian::Alert) {
        let guardian::Alert::BootKeyWhileUp {
            owner,
            at,
            evidence,
        } = alert;
        self.admin.first_evidence(&evidence);
        if let Some(a) = self.admin.record_alert(owner, at, None, &self.roster) {
            self.note(Note::Alert(a));
        }
        if let Some(mesh) = self.roster.mesh() {
            let body = AdminBody {
                mesh,
                kind: AdminKind::Alert {
                    owner,
                    evidence: *evidence,
                },
                by: self.me.id,
                at,
            };
            let m = AdminMsg::sign(body, &self.key);
            self.publish(Gossip::Admin(m));
        }
    }

    fn log_decision(&mut self, d: guardian::Decision, requester: NodeId) {
        let boot = self.roster.member(&d.owner).map(|m| m.boot.as_node_id());
        let from_boot = boot == Some(requester);
        let owner_name = self
            .roster
            .member(&d.owner)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| d.owner.short());
        let logged = self.decisions.record(d.clone(), from_boot, Some(requester));
        if matches!(logged, Logged::Quiet | Logged::Stranger(None)) {
            return;
        }
        self.note(Note::Decision {
            decision: d,
            owner_name,
            requester,
            logged,
        });
    }

    /// Inviter side of a join: the invite is spent on disk before anyone
    /// is admitted.
    fn admit(
        &mut self,
        id: InId,
        from: NodeId,
        secret: [u8; 32],
        member: Member,
        claim: crate::identity::Sig,
        now: Millis,
    ) {
        let invite_id = proto::invite_id(&secret);
        let req = JoinRequest {
            conn: Some(from),
            member: &member,
            claim: &claim,
            invite_id,
            record: self.invites.get(&invite_id).cloned(),
        };
        match members::admit(&self.roster, &self.key, req, now) {
            Err(why) => {
                self.note(Note::JoinRefused {
                    peer: from,
                    why: why.clone(),
                });
                let response = Response::Refused { reason: why };
                self.push(Output::Respond { id, response });
            }
            Ok(Admission::AlreadyIn) => {
                let response = Response::Joined {
                    ops: self.roster.ops(),
                };
                self.push(Output::Respond { id, response });
            }
            Ok(Admission::Admit { record, op }) => {
                // Spent here at once, so a second use is refused even
                // before the write lands.
                self.invites.insert(invite_id, record.clone());
                let write = Write::Invite {
                    id: invite_id,
                    record,
                };
                let who = (member.id, member.name.clone());
                self.write_then(write, Then::Admit { id, op, who });
            }
        }
    }

    /// The invite is spent on disk: admit, gossip, answer with the roster.
    pub(super) fn admit_spent(
        &mut self,
        id: InId,
        op: SignedOp,
        (joiner, name): (NodeId, String),
        now: Millis,
    ) {
        self.merge_ops(vec![op.clone()], now);
        self.publish(Gossip::Op(op));
        self.note(Note::AdmittedByInvite { id: joiner, name });
        let response = Response::Joined {
            ops: self.roster.ops(),
        };
        self.push(Output::Respond { id, response });
        // The joiner connected before it was a member, so neither side
        // synced on connecting: ask it now, for its signed peer record
        // (this node hands it on in its own sync answers, so the joiner's
        // gossip neighbours learn where to dial it).
        self.send_sync(joiner, now);
    }
}

/// The answer to a request only members may send.
fn members_only() -> Response {
    Response::Refused {
        reason: "only active mesh members may send this request".to_string(),
    }
}
