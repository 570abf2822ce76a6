//! What a replica or a witness finds against an origin (a fork, a
//! rollback, an equivocation, a segment not genuine or in another node's
//! name, a sequence gap): an alert in `keyward status` and the journal,
//! and its evidence kept as a file by the driver, once per piece of
//! evidence.

use sha2::{Digest, Sha256};

use crate::codec::{self, Wire};
use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::log::witness::evidence::Evidence;
use crate::proto::{AdminBody, AdminKind, AdminMsg, Gossip};

use super::super::io::Output;
use super::super::machine::Node;
use super::super::notes::Note;

/// Pieces of evidence remembered, so each is reported once.
const MAX_REPORTED: usize = 4096;

impl Node {
    /// Reports a finding: `text` for people, `evidence` (what it is, and
    /// its bytes) for the auditor.
    pub(in crate::node) fn log_finding(
        &mut self,
        origin: NodeId,
        text: String,
        evidence: Option<(&'static str, Vec<u8>)>,
        now: Millis,
    ) {
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(text.as_bytes());
            if let Some((what, b)) = &evidence {
                h.update(what.as_bytes());
                h.update(b);
            }
            h.finalize().into()
        };
        if !self.logs.reported.insert(key) {
            return;
        }
        if self.logs.reported.len() > MAX_REPORTED {
            if let Some(first) = self.logs.reported.iter().next().copied() {
                if first != key {
                    self.logs.reported.remove(&first);
                }
            }
        }
        if let Some((what, bytes)) = evidence {
            self.push(Output::Evidence {
                origin,
                at: now,
                what,
                bytes,
            });
        }
        let text = format!("logs of {origin}: {text}");
        if self.admin.record_log_alert(now, text.clone()) {
            self.note(Note::LogAlert { text });
        }
    }
}

impl Node {
    /// A witness's self-verifying evidence against `origin` (a fork or a
    /// rollback, found by an add-checkpoint or by a fellow witness's
    /// gossip): an alert with `text`, the evidence kept, and spread to the
    /// mesh for every member to check.
    pub(in crate::node) fn report_witness_evidence(
        &mut self,
        origin: NodeId,
        text: String,
        evidence: &Evidence,
        now: Millis,
    ) {
        let what = match evidence {
            Evidence::Fork(_) => "fork",
            Evidence::Rollback(_) => "rollback",
        };
        let bytes = evidence.encode().ok();
        self.log_finding(origin, text, bytes.clone().map(|b| (what, b)), now);
        if let Some(b) = bytes {
            self.spread_log_evidence(origin, b, now);
        }
    }

    /// Spreads a witness's evidence against `origin` to the mesh as a
    /// signed admin alert, which every member checks on its own; evidence
    /// too large for an admin message stays here (with its file).
    pub(in crate::node) fn spread_log_evidence(
        &mut self,
        origin: NodeId,
        evidence: Vec<u8>,
        now: Millis,
    ) {
        let Some(mesh) = self.roster.mesh() else {
            return;
        };
        if !self.admin.first_log_evidence(&origin, &evidence) {
            return;
        }
        let body = AdminBody {
            mesh,
            kind: AdminKind::LogAlert { origin, evidence },
            by: self.me.id,
            at: now,
        };
        let m = AdminMsg::sign(body, &self.key);
        if codec::encode(&m).is_ok_and(|b| b.len() <= <AdminMsg as Wire>::MAX) {
            self.publish(Gossip::Admin(m));
        }
    }
}
