//! The roster and admin messages as they spread: gossip in, sync answers
//! in, merging and what a merge changes (who is a member, what is
//! written), and admin messages applied.

use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::proto::{AdminMsg, Gossip};
use crate::roster::{MergeReport, SignedOp};

use super::admin::{AdminRefusal, AdminState, Applied};
use super::io::{GossipId, Output, Write};
use super::machine::Node;
use super::notes::Note;

/// A sync answer with more unknown ops than this is verified by the
/// driver off its event loop ([`Output::Verify`]), so a large (or hostile)
/// roster never stalls unlocks.
pub const VERIFY_INLINE: usize = 64;

impl Node {
    pub(super) fn on_gossip(
        &mut self,
        id: GossipId,
        via: NodeId,
        author: Option<NodeId>,
        msg: Result<Gossip, String>,
        now: Millis,
    ) {
        let accept = self.take_gossip(via, author, msg, now);
        self.push(Output::Verdict { id, accept });
    }

    /// Gossip is between members only: the transport already ignores
    /// non-members; this also refuses a message a member relays from a
    /// non-member author.
    fn take_gossip(
        &mut self,
        via: NodeId,
        author: Option<NodeId>,
        msg: Result<Gossip, String>,
        now: Millis,
    ) -> bool {
        if !(self.is_member(&via) && author.as_ref().is_some_and(|a| self.is_member(a))) {
            self.note(Note::GossipFromStranger { via, author });
            return false;
        }
        match msg {
            Err(e) => {
                // Strict signing: `author` signed what did not decode.
                if let Some(a) = author {
                    self.strike(a, format!("gossip: {e}"), now);
                }
                false
            }
            Ok(Gossip::Op(op)) => {
                self.merge_ops(vec![op], now);
                true
            }
            Ok(Gossip::Admin(m)) => {
                // A forged alert is the author's doing: it signed it.
                if let Err(why) = AdminState::check_alert(&m, &self.roster, now) {
                    if let Some(a) = author {
                        self.strike(a, why.to_string(), now);
                    }
                    return false;
                }
                self.apply_admin(m, now);
                true
            }
        }
    }

    pub(super) fn publish(&mut self, msg: Gossip) {
        if let Some(mesh) = self.roster.mesh() {
            self.push(Output::Publish { mesh, msg });
        }
    }

    /// Merges roster ops, writes the new ones, and subscribes if we just
    /// learnt our mesh.
    pub(super) fn merge_ops(&mut self, ops: Vec<SignedOp>, now: Millis) {
        if ops.is_empty() {
            return;
        }
        let rep = self.merge_roster(ops, vec![]);
        self.after_merge(rep, now)
    }

    /// Merges a sync answer: a few new ops here, many verified by the
    /// driver first (signature checks are the cost; the merge itself is
    /// near-linear).
    pub(super) fn merge_fresh(&mut self, ops: Vec<SignedOp>, now: Millis) {
        let fresh: Vec<SignedOp> = ops
            .into_iter()
            .filter(|o| !self.roster.knows(&o.id()))
            .collect();
        if fresh.len() <= VERIFY_INLINE {
            self.merge_ops(fresh, now);
        } else {
            self.push(Output::Verify(fresh));
        }
    }

    /// Writes what a merge changed and reports membership changes.
    pub(super) fn after_merge(&mut self, rep: MergeReport, now: Millis) {
        for e in &rep.errors {
            self.note(Note::OpNotMerged(e.to_string()));
        }
        if rep.new.is_empty() && rep.dropped.is_empty() {
            return;
        }
        self.entropy.changed(now);
        self.write(Write::Roster {
            put: rep.new,
            remove: rep.dropped,
        });
        // Who came and who went: the roster's merge found it, once per
        // merge however many nodes take it from the memo.
        for id in rep.joined {
            let Some(m) = self.roster.member(&id) else {
                continue;
            };
            let (name, role) = (m.name.clone(), m.role);
            self.note(Note::MemberAdmitted { id, name, role });
            if self.peers.is_connected(&id) {
                self.joined_while_connected(id, now);
                self.alive(id, now);
            }
        }
        for id in rep.left {
            let me = id == self.me.id;
            self.note(Note::MemberRevoked { id, me });
        }
        self.members_changed();
        self.subscribe();
    }

    /// Takes an admin message (gossip, sync, our own admin) and does what
    /// the admin state says: note it, write the lock message or the
    /// owner's state.
    pub(super) fn apply_admin(&mut self, m: AdminMsg, now: Millis) {
        let kind = m.body.kind.clone();
        match self.admin.apply(m, now, &self.roster, &mut self.guardian) {
            Err(why) => {
                let loud = matches!(why, AdminRefusal::FromTheFuture { .. });
                self.note(Note::AdminRefused { why, loud });
            }
            Ok(Applied::Lock { on, by }) => {
                self.entropy.changed(now);
                self.note(Note::Lockdown { on, by });
                // The message that set it, as the admin state now holds it.
                if let Some(m) = self.admin.lock_msg().cloned() {
                    self.write(Write::Lock(Box::new(m)));
                }
            }
            Ok(Applied::Decision { owner, by }) => {
                self.entropy.changed(now);
                self.note(Note::AdminDecision { kind, by });
                self.dirty.insert(owner);
                self.persist_dirty();
            }
            Ok(Applied::Alert(a)) => self.note(Note::Alert(a)),
            Ok(Applied::LockUnchanged | Applied::Repeat | Applied::AlertRepeat) => {}
        }
    }
}
