//! Witnesses of one origin compare what they cosigned (C2SP tlog-witness
//! gossip). A witness refuses a checkpoint inconsistent with the last one
//! *it* cosigned, but an origin can show one history to one witness and
//! another to a second, each seeing a consistent log. So, once a
//! cosignature is durable, the witness sends the cosigned note to the
//! origin's other replicas (its fellow witnesses, from the same placement
//! the origin uses), and each answers with the note it last cosigned.
//! Both sides compare ([`Witness::observe`]):
//!
//! - same size, other root: a fork, with the two signed notes as evidence;
//! - different sizes: the side whose cosigned checkpoint is the larger
//!   proves the smaller's size from its replica's tiles (the driver reads
//!   them, [`LogRead::Prefix`]); a proof that verifies with another prefix
//!   root is a fork, with the proof in the evidence;
//! - the other side, which got this side's note in the exchange, does the
//!   same, so whichever holds the larger tree settles it.
//!
//! Only the origin's signature is trusted: a member that gossips an old
//! genuine checkpoint shows a prefix, which is consistent; one that
//! gossips a forged note is ignored (the note does not verify). Reads are
//! one at a time per origin, at most one per [`PROOF_EVERY`], and only up
//! to what this replica holds, so gossip cannot make a node read more
//! than its own replica, nor often.

use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::log::merkle::Hash;
use crate::log::replica::placement;
use crate::log::witness::{Observation, PrefixProof};
use crate::proto::{Request, Response};

use super::super::io::{InId, LogData, LogRead, Output};
use super::super::machine::Node;
use super::super::notes::Note;
use super::{Read, Sent};

/// Prefix proofs read for one origin at most this often. Fellow
/// witnesses gossip once per witness interval (a minute by default), so
/// an honest comparison skipped here is made at the next one.
pub const PROOF_EVERY: Millis = 10_000;

impl Node {
    /// A cosignature of `origin`'s checkpoint is durable: tell the
    /// origin's other witnesses.
    pub(in crate::node) fn gossip_cosigned(&mut self, origin: NodeId, note: Vec<u8>) {
        let me = self.me.id;
        let fellows: Vec<NodeId> =
            placement::replicas_in(&self.roster, &origin, self.logs.origin_replicas)
                .into_iter()
                .filter(|p| *p != me && *p != origin)
                .collect();
        for peer in fellows {
            let req = Request::LogSeen {
                origin,
                note: note.clone(),
            };
            self.send_log(peer, req, Sent::Seen { peer, origin });
        }
    }

    /// A fellow witness's [`Request::LogSeen`]: answer with what this
    /// witness cosigned, then compare.
    pub(in crate::node) fn serve_log_seen(
        &mut self,
        id: InId,
        from: NodeId,
        origin: NodeId,
        note: Vec<u8>,
        now: Millis,
    ) {
        let mine = self
            .logs
            .witness
            .as_ref()
            .and_then(|w| w.last(&origin))
            .map(|r| r.note.clone());
        self.push(Output::Respond {
            id,
            response: Response::LogSeen { note: mine },
        });
        self.compare_seen(from, origin, &note, now);
    }

    /// The answer to this witness's [`Request::LogSeen`].
    pub(in crate::node) fn on_seen_answer(
        &mut self,
        peer: NodeId,
        origin: NodeId,
        r: Result<Response, String>,
        now: Millis,
    ) {
        if let Ok(Response::LogSeen { note: Some(note) }) = r {
            self.compare_seen(peer, origin, &note, now);
        }
    }

    /// Compares a checkpoint of `origin` that `peer` cosigned with the one
    /// this witness cosigned.
    fn compare_seen(&mut self, peer: NodeId, origin: NodeId, note: &[u8], now: Millis) {
        if origin == self.me.id || self.logs.witness_off.is_some() {
            return;
        }
        let Some(w) = &self.logs.witness else {
            return;
        };
        let seen = match w.observe(&origin, note) {
            Ok(o) => o,
            Err(e) => {
                return self.note(Note::LogProblem(format!(
                    "{peer} passed on a checkpoint of {origin} that proves nothing: {e}"
                )))
            }
        };
        match seen {
            Observation::NoState | Observation::Consistent => {}
            Observation::Fork(evidence) => {
                let text = format!(
                    "two checkpoints it signed cannot both be true: this witness cosigned one, {peer} another (a fork, shown to different witnesses); evidence attached"
                );
                self.report_witness_evidence(origin, text, &evidence, now);
            }
            Observation::NeedProof { from, to } => {
                let Some(last) = w.last(&origin) else {
                    return;
                };
                // the peer has this witness's note too: the side with the
                // larger checkpoint proves
                if last.size != to {
                    return;
                }
                let held = self.logs.store.as_ref().map_or(0, |s| s.held(&origin).size);
                if held < to || self.logs.store_off.is_some() {
                    return self.note(Note::LogProblem(format!(
                        "cannot compare the checkpoint of {origin} that {peer} cosigned (size {from}) with this witness's (size {to}): this replica holds only {held} of its leaves; compared again after the next cosignature"
                    )));
                }
                // one read at a time per origin, and at most one per
                // PROOF_EVERY: a member replaying old genuine notes cannot
                // keep this node reading its tiles
                let recent = self
                    .logs
                    .proved_at
                    .get(&origin)
                    .is_some_and(|t| now.saturating_sub(*t) < PROOF_EVERY);
                if recent || !self.logs.proving.insert(origin) {
                    return;
                }
                self.logs.proved_at.insert(origin, now);
                let read = LogRead::Prefix {
                    origin,
                    from,
                    size: to,
                    root: Hash(last.root),
                };
                self.read_log(
                    read,
                    Read::Prefix {
                        origin,
                        peer,
                        note: note.to_vec(),
                    },
                );
            }
        }
    }

    /// The driver read a prefix proof from this node's replica of
    /// `origin`: settle the comparison with `peer`'s `note`.
    pub(in crate::node) fn prefix_read(
        &mut self,
        origin: NodeId,
        peer: NodeId,
        note: Vec<u8>,
        result: Result<LogData, String>,
        now: Millis,
    ) {
        self.logs.proving.remove(&origin);
        let Some(w) = &self.logs.witness else {
            return;
        };
        let proof: PrefixProof = match result {
            Ok(LogData::Prefix(p)) => p,
            Ok(_) => {
                return self.note(Note::LogProblem(
                    "the driver read something else than the prefix proof asked".into(),
                ))
            }
            Err(e) => {
                return self.note(Note::LogProblem(format!(
                    "cannot prove from this replica of {origin} what {peer} cosigned: {e}"
                )))
            }
        };
        match w.observe_with_proof(&origin, &note, &proof) {
            Ok(Observation::Fork(evidence)) => {
                let text = format!(
                    "two checkpoints it signed cannot both be true: this witness cosigned one, {peer} another on a different history (a fork, shown to different witnesses); evidence attached"
                );
                self.report_witness_evidence(origin, text, &evidence, now);
            }
            Ok(_) => {}
            Err(e) => self.note(Note::LogProblem(format!(
                "comparing the checkpoint of {origin} that {peer} cosigned: {e}"
            ))),
        }
    }
}
