//! Auditor fetches (`keyward audit fetch`), both ends.
//!
//! Holder: only an active member whose role is auditor is served (the
//! segments' bodies are encrypted to the auditor anyway, but their signed
//! headers (sources, times, line counts) are not for every member). It
//! learns which origins this node holds (its own log at its durable
//! checkpoint, and every replica), and asks for one bounded piece at a
//! time; files are read by the driver ([`Output::ServeLog`]), cosigned
//! notes come from memory.
//!
//! Auditor: the CLI asks its own daemon to ask a member
//! ([`CtlRequest::LogHolding`], [`CtlRequest::LogFetch`]); the answer comes
//! back as the control reply, unchecked: `keyward audit verify` checks
//! everything.
//!
//! [`CtlRequest::LogHolding`]: crate::control::CtlRequest::LogHolding
//! [`CtlRequest::LogFetch`]: crate::control::CtlRequest::LogFetch

use base64::Engine;

use crate::control::{CtlError, CtlReply, HeldLog, LogPiece};
use crate::identity::NodeId;
use crate::log::fetch::{FetchItem, Holding, MAX_HOLDING, MAX_NOTES};
use crate::proto::{Request, Response};
use crate::roster::Role;

use super::super::io::{CtlId, InId, Output};
use super::super::machine::Node;

/// Why an auditor's fetch is refused, as the auditor reads it.
const NOT_AUDITOR: &str =
    "only an active auditor member may fetch logs (keyward invite --role auditor)";

impl Node {
    /// Whether `peer` may fetch logs from this node.
    fn is_auditor(&self, peer: &NodeId) -> bool {
        self.roster.is_active(peer)
            && self
                .roster
                .member(peer)
                .is_some_and(|m| m.role == Role::Auditor)
    }

    /// The origins this node holds: its own log, then its replicas.
    pub(in crate::node) fn log_holding(&self) -> Vec<Holding> {
        let mut v = Vec::new();
        if let Some(size) = self.logs.own_size {
            v.push(Holding {
                origin: self.me.id,
                size,
            });
        }
        if let Some(s) = &self.logs.store {
            v.extend(s.origins().take(MAX_HOLDING - 1).map(|o| Holding {
                origin: *o,
                size: s.held(o).size,
            }));
        }
        v
    }

    /// An auditor's "what do you hold?".
    pub(in crate::node) fn serve_log_holding(&mut self, id: InId, from: NodeId) {
        let response = if self.is_auditor(&from) {
            Response::LogHolding(self.log_holding())
        } else {
            Response::Refused {
                reason: NOT_AUDITOR.into(),
            }
        };
        self.push(Output::Respond { id, response });
    }

    /// An auditor's request for one piece of `origin`'s log.
    pub(in crate::node) fn serve_log_fetch(
        &mut self,
        id: InId,
        from: NodeId,
        origin: NodeId,
        item: FetchItem,
    ) {
        let refuse = |reason: String| Response::Refused { reason };
        let response = if !self.is_auditor(&from) {
            refuse(NOT_AUDITOR.into())
        } else if let Err(e) = item.check() {
            refuse(format!("bad fetch request: {e}"))
        } else {
            let own = origin == self.me.id;
            let held = if own {
                self.logs.own_size
            } else {
                self.logs
                    .store
                    .as_ref()
                    .filter(|s| s.origins().any(|o| *o == origin))
                    .map(|s| s.held(&origin).size)
            };
            match (held, item) {
                (None, _) => refuse(format!("this node holds no log of {origin}")),
                (Some(size), FetchItem::Segment { index, .. }) if index >= size => refuse(format!(
                    "this node holds {size} leaves of {origin}'s log: no segment {index}"
                )),
                (Some(_), item) => match item.path() {
                    Some(path) => {
                        return self.push(Output::ServeLog {
                            id,
                            origin,
                            own,
                            path,
                            offset: item.offset(),
                        })
                    }
                    None => Response::LogNotes(
                        self.cosigned_notes(&origin)
                            .into_iter()
                            .take(MAX_NOTES)
                            .map(serde_bytes::ByteBuf::from)
                            .collect(),
                    ),
                },
            }
        };
        self.push(Output::Respond { id, response });
    }

    /// Notes of `origin` with witness cosignatures this node knows: for
    /// its own log, each witness's latest; for another origin, this
    /// node's own cosignature as its witness.
    fn cosigned_notes(&self, origin: &NodeId) -> Vec<Vec<u8>> {
        if *origin == self.me.id {
            return self
                .logs
                .origin
                .iter()
                .flat_map(|o| o.witnesses.values())
                .filter(|w| !w.note.is_empty())
                .map(|w| w.note.clone())
                .collect();
        }
        self.logs
            .witness
            .iter()
            .filter_map(|w| w.last(origin))
            .map(|r| r.note.clone())
            .collect()
    }

    /// The auditor's side: ask member `from` for what it holds, or for a
    /// piece; the control request `ctl` gets the answer.
    pub(in crate::node) fn audit_ask(&mut self, ctl: CtlId, from: &str, req: Request) {
        let Ok(peer) = from.parse::<NodeId>() else {
            let e = CtlError::BadRequest(format!("`{from}` is not a node id"));
            return self.reply(ctl, Err(e));
        };
        if peer == self.me.id {
            let e = CtlError::BadRequest("an auditor fetches from other members".into());
            return self.reply(ctl, Err(e));
        }
        if !self.roster.is_active(&peer) {
            return self.reply(
                ctl,
                Err(CtlError::NoActiveMember {
                    who: peer.to_string(),
                }),
            );
        }
        self.send_audit(peer, req, ctl);
    }

    /// A member's answer to an auditor request, as the control reply.
    pub(in crate::node) fn audit_answer(
        &mut self,
        ctl: CtlId,
        from: NodeId,
        r: Result<Response, String>,
    ) {
        let peer = from.to_string();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let reply = match r {
            Ok(Response::LogHolding(h)) => Ok(CtlReply::LogHolding(
                h.into_iter()
                    .take(MAX_HOLDING)
                    .map(|h| HeldLog {
                        origin: h.origin.to_string(),
                        size: h.size,
                    })
                    .collect(),
            )),
            Ok(Response::LogFile { bytes, total }) => Ok(CtlReply::LogPiece(LogPiece::File {
                data: b64(&bytes),
                total,
            })),
            Ok(Response::LogNotes(notes)) => Ok(CtlReply::LogPiece(LogPiece::Notes {
                notes: notes.iter().take(MAX_NOTES).map(|n| b64(n)).collect(),
            })),
            Ok(Response::Refused { reason }) => Err(CtlError::PeerRefused {
                peer,
                reason: crate::text::prefix(&reason, 1024).to_string(),
            }),
            Ok(_) => Err(CtlError::PeerConfused { peer }),
            Err(reason) => Err(CtlError::PeerUnreachable { peer, reason }),
        };
        self.reply(ctl, reply);
    }
}
