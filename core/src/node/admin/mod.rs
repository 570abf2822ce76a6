//! Signed admin messages (approve, deny, lockdown, lift, alert) as a node
//! takes them in, from gossip, from a sync answer or from its own CLI.
//!
//! What is decided here: whether a message is believed (mesh, signature,
//! an active signer, not dated in the future past the clock-skew bound,
//! an alert's evidence), what it changes in the guardian, what a sync
//! answer re-delivers (the lock state and the approvals and denials still
//! within the approval window, so a node that was away when an admin
//! approved a boot still learns of it), and which copied-boot-key alerts
//! are recorded (one per piece of evidence, one line per owner and minute).
//! What the driver does with the outcome: log it and write the lock
//! message or the owner's state to disk.

use std::collections::{HashMap, VecDeque};

use crate::guardian::{self, Event, Guardian, Millis, ShareRequest};
use crate::identity::NodeId;
use crate::proto::{AdminKind, AdminMsg};
use crate::roster::Roster;

/// How far in the future an admin message may be dated (clock skew):
/// lockdown and lift are ordered by the issuer's clock, so one from the
/// far future would pin the state until then.
pub const MAX_CLOCK_SKEW: Millis = 120_000;
/// Alerts kept for `keyward status`.
pub const MAX_ALERTS: usize = 100;
/// Approvals and denials kept for re-delivery by sync.
pub const MAX_RECENT_ADMIN: usize = 256;
/// An alert older than this is refused: alerts travel by gossip, live.
pub const MAX_ALERT_AGE: Millis = 10 * 60 * 1000;
/// Pieces of evidence remembered, so each raises one alert.
const MAX_EVIDENCE: usize = 1024;
/// The same alert text within this long is one alert.
const ALERT_DEDUP: Millis = 60_000;

/// Why an admin message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefusal {
    #[error("admin message refused (wrong mesh, bad signature or not a member)")]
    NotFromMember,
    #[error("admin message dated {ahead_s} s in the future refused; check NTP on that node")]
    FromTheFuture { by: NodeId, ahead_s: u64 },
    #[error("alert refused: {0}")]
    BadAlert(String),
}

/// What taking an admin message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The lock state changed: the driver writes this message (the lock
    /// state as it was left survives a restart) and logs it.
    Lock { on: bool, by: NodeId },
    /// Lockdown or lift that changed nothing (older, or already so).
    LockUnchanged,
    /// A new approval or denial: the driver writes the owner's state.
    Decision { owner: NodeId, by: NodeId },
    /// Seen before (gossip and sync deliver the same message twice).
    Repeat,
    /// A copied-boot-key alert was recorded: the driver logs the text.
    Alert(RecordedAlert),
    /// An alert about evidence already recorded, or a repeat within a
    /// minute.
    AlertRepeat,
}

/// A copied-boot-key alert as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAlert {
    pub owner: NodeId,
    pub at: Millis,
    /// Another node saw it; None if this guardian did.
    pub reported_by: Option<NodeId>,
    pub text: String,
}

/// A sync digest kept: (window, computed at, valid until, digest).
type KeptDigest = (Millis, Millis, Millis, [u8; 32]);

/// The admin messages a node keeps.
#[derive(Debug, Default)]
pub struct AdminState {
    /// The message that set the current lock state.
    lock_msg: Option<AdminMsg>,
    /// Approvals and denials, newest last, for re-delivery by sync.
    recent: VecDeque<AdminMsg>,
    /// Each of `recent` by its signature, as the count of messages pushed
    /// before it (its index is that minus `popped`): sync re-delivers up
    /// to 256 of them a round, each looked up here instead of compared
    /// with all 256.
    recent_by_sig: HashMap<[u8; 64], u64>,
    /// Messages dropped from the front of `recent`.
    popped: u64,
    alerts: VecDeque<(Millis, String)>,
    /// (owner, nonce) of the requests alerts were raised on.
    evidence: VecDeque<(NodeId, [u8; 16])>,
    /// The last [`Self::sync_digest`]: (window, computed at, valid
    /// until, the digest). Every sync a node answers or asks carries it;
    /// it changes only when a message is taken or one leaves the window.
    digest: std::cell::Cell<Option<KeptDigest>>,
}

impl AdminState {
    /// The state at start: the lock message written before a restart.
    /// It was checked when it arrived, and a lockdown must not lapse at a
    /// restart because its issuer was revoked since; only a lift by an
    /// active guardian ends it. Returns the guardian's lock state.
    pub fn restore(
        lock_msg: Option<AdminMsg>,
        roster: &Roster,
    ) -> (Self, Option<guardian::LockState>) {
        let lock_msg = lock_msg.filter(|m| m.verify() && Some(m.body.mesh) == roster.mesh());
        let lock = lock_msg.as_ref().map(|m| guardian::LockState {
            by: m.body.by,
            at: m.body.at,
            on: matches!(m.body.kind, AdminKind::Lockdown),
        });
        let s = AdminState {
            lock_msg,
            ..Default::default()
        };
        (s, lock)
    }

    /// Why an alert must not be believed, or `Ok` (also for other admin
    /// messages, which prove themselves by their signer's role). An alert
    /// carries the signed share request that triggered it: signed by the
    /// named owner's boot key and addressed to the alert's author.
    pub fn check_alert(m: &AdminMsg, roster: &Roster, now: Millis) -> Result<(), AdminRefusal> {
        if let AdminKind::LogAlert { origin, evidence } = &m.body.kind {
            log_evidence_text(origin, evidence)?;
            if now.saturating_sub(m.body.at) > MAX_ALERT_AGE {
                return Err(AdminRefusal::BadAlert("it is older than 10 minutes".into()));
            }
            return Ok(());
        }
        let AdminKind::Alert { owner, evidence } = &m.body.kind else {
            return Ok(());
        };
        let bad = |s: String| Err(AdminRefusal::BadAlert(s));
        if evidence.owner != *owner {
            return bad("its evidence is a request of another node".into());
        }
        if evidence.guardian != m.body.by {
            return bad(
                "its evidence is a request to another guardian than the alert's author".into(),
            );
        }
        let Some(member) = roster.member(owner) else {
            return bad(format!("{owner} is not an active member"));
        };
        if !evidence.verify(&member.boot) {
            return bad(format!(
                "its evidence is not signed by the boot key of {}",
                member.name
            ));
        }
        if now.saturating_sub(m.body.at) > MAX_ALERT_AGE {
            return bad("it is older than 10 minutes".into());
        }
        Ok(())
    }

    /// Takes one admin message into the guardian.
    pub fn apply(
        &mut self,
        m: AdminMsg,
        now: Millis,
        roster: &Roster,
        guardian: &mut Guardian,
    ) -> Result<Applied, AdminRefusal> {
        // The very message taken before (sync re-delivers the recent
        // ones to every peer, every round): nothing to check or do again.
        if self.lock_msg.as_ref() == Some(&m) {
            return Ok(Applied::LockUnchanged);
        }
        if self.is_recent(&m) {
            return Ok(Applied::Repeat);
        }
        // An alert whose evidence is already recorded changes nothing,
        // whoever signed it: the two signature checks below are skipped
        // (sync and gossip re-deliver alerts to every peer).
        if let AdminKind::Alert { evidence, .. } = &m.body.kind {
            if self.evidence.contains(&(evidence.owner, evidence.nonce)) {
                return Ok(Applied::AlertRepeat);
            }
        }
        if Some(m.body.mesh) != roster.mesh() || !m.verify() || !roster.is_active(&m.body.by) {
            return Err(AdminRefusal::NotFromMember);
        }
        if m.body.at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(AdminRefusal::FromTheFuture {
                by: m.body.by,
                ahead_s: (m.body.at - now) / 1000,
            });
        }
        let (by, at) = (m.body.by, m.body.at);
        let ev = match &m.body.kind {
            AdminKind::Approve { owner } => Event::Approve {
                owner: *owner,
                by,
                at,
            },
            AdminKind::Deny { owner } => Event::Deny {
                owner: *owner,
                by,
                at,
            },
            AdminKind::Lockdown => Event::Lockdown { by, at },
            AdminKind::Lift => Event::Lift { by, at },
            AdminKind::LogAlert { origin, evidence } => {
                Self::check_alert(&m, roster, now)?;
                if !self.first_log_evidence(origin, evidence) {
                    return Ok(Applied::AlertRepeat);
                }
                let text = log_evidence_text(origin, evidence)?;
                if !self.record_log_alert(at, text.clone()) {
                    return Ok(Applied::AlertRepeat);
                }
                return Ok(Applied::Alert(RecordedAlert {
                    owner: *origin,
                    at,
                    reported_by: Some(by),
                    text,
                }));
            }
            AdminKind::Alert { owner, evidence } => {
                Self::check_alert(&m, roster, now)?;
                if !self.first_evidence(evidence) {
                    return Ok(Applied::AlertRepeat);
                }
                return Ok(self
                    .record_alert(*owner, at, Some(by), roster)
                    .map_or(Applied::AlertRepeat, Applied::Alert));
            }
        };
        let before = guardian.lock_state();
        guardian.handle(ev, roster);
        match m.body.kind {
            AdminKind::Lockdown | AdminKind::Lift => {
                if guardian.lock_state() == before {
                    return Ok(Applied::LockUnchanged);
                }
                let on = matches!(m.body.kind, AdminKind::Lockdown);
                self.lock_msg = Some(m);
                self.digest.set(None);
                Ok(Applied::Lock { on, by })
            }
            AdminKind::Approve { owner } | AdminKind::Deny { owner } => {
                if self.is_recent(&m) {
                    return Ok(Applied::Repeat);
                }
                let pushed = self.popped + self.recent.len() as u64;
                self.recent_by_sig.insert(m.sig.0, pushed);
                self.recent.push_back(m);
                while self.recent.len() > MAX_RECENT_ADMIN {
                    if let Some(old) = self.recent.pop_front() {
                        self.recent_by_sig.remove(&old.sig.0);
                    }
                    self.popped += 1;
                }
                self.digest.set(None);
                Ok(Applied::Decision { owner, by })
            }
            AdminKind::Alert { .. } | AdminKind::LogAlert { .. } => unreachable!("handled above"),
        }
    }

    /// Whether this log evidence was not yet the evidence of a recorded
    /// alert (by its hash, with the origin).
    pub fn first_log_evidence(&mut self, origin: &NodeId, evidence: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        let h: [u8; 32] = Sha256::digest(evidence).into();
        let mut k = [0u8; 16];
        k.copy_from_slice(&h[..16]);
        self.first_key((*origin, k))
    }

    /// Whether this request was not yet the evidence of a recorded alert.
    pub fn first_evidence(&mut self, r: &ShareRequest) -> bool {
        self.first_key((r.owner, r.nonce))
    }

    /// Remembers evidence key `k` (the last [`MAX_EVIDENCE`]); false if
    /// it was already there.
    fn first_key(&mut self, k: (NodeId, [u8; 16])) -> bool {
        if self.evidence.contains(&k) {
            return false;
        }
        self.evidence.push_back(k);
        while self.evidence.len() > MAX_EVIDENCE {
            self.evidence.pop_front();
        }
        true
    }

    /// Records a copied-boot-key alert once per owner and minute, whether
    /// this guardian saw it or a peer reported it. None if it repeats one.
    pub fn record_alert(
        &mut self,
        owner: NodeId,
        at: Millis,
        reported_by: Option<NodeId>,
        roster: &Roster,
    ) -> Option<RecordedAlert> {
        let name = roster
            .member(&owner)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| owner.to_string());
        let text = format!(
            "boot key of {name} used while {name} is running: it may have been copied; run `keyward rebind --new-boot-key` on {name}"
        );
        if self
            .alerts
            .iter()
            .any(|(t, s)| t.abs_diff(at) < ALERT_DEDUP && *s == text)
        {
            return None;
        }
        self.alerts.push_back((at, text.clone()));
        while self.alerts.len() > MAX_ALERTS {
            self.alerts.pop_front();
        }
        Some(RecordedAlert {
            owner,
            at,
            reported_by,
            text,
        })
    }

    /// Records an alert about a log (a finding of a replica or a
    /// witness), once per text and minute. Whether it was recorded.
    pub fn record_log_alert(&mut self, at: Millis, text: String) -> bool {
        if self
            .alerts
            .iter()
            .any(|(t, s)| t.abs_diff(at) < ALERT_DEDUP && *s == text)
        {
            return false;
        }
        self.alerts.push_back((at, text));
        while self.alerts.len() > MAX_ALERTS {
            self.alerts.pop_front();
        }
        true
    }

    /// Whether `m` is one of the recent approvals and denials. The
    /// signatures are compared first: they differ in their first bytes
    /// between any two messages, where the bodies share their mesh and
    /// often their signer (sync re-delivers up to 256 of them a round).
    fn is_recent(&self, m: &AdminMsg) -> bool {
        self.recent_by_sig
            .get(&m.sig.0)
            .and_then(|pushed| self.recent.get((pushed - self.popped) as usize))
            .is_some_and(|r| r == m)
    }

    /// What a sync answer carries: the lock state and the approvals and
    /// denials still within `window`.
    pub fn for_sync(&self, now: Millis, window: Millis) -> Vec<AdminMsg> {
        self.iter_sync(now, window).cloned().collect()
    }

    /// The digest of [`Self::for_sync`] (`entropy::admin_digest`),
    /// computed again only when the set may have changed: a message
    /// taken, one leaving the window, or the clock going back.
    pub fn sync_digest(&self, now: Millis, window: Millis) -> [u8; 32] {
        if let Some((w, at, until, d)) = self.digest.get() {
            if w == window && at <= now && now < until {
                return d;
            }
        }
        let d = crate::node::entropy::admin_digest(self.iter_sync(now, window));
        // The first message to leave the window leaves it at at + window + 1.
        let until = self
            .recent_in(now, window)
            .map(|m| m.body.at.saturating_add(window).saturating_add(1))
            .min()
            .unwrap_or(Millis::MAX);
        self.digest.set(Some((window, now, until, d)));
        d
    }

    /// [`Self::for_sync`] without the copies (its digest is all a sync
    /// request carries).
    pub fn iter_sync(&self, now: Millis, window: Millis) -> impl Iterator<Item = &AdminMsg> {
        self.lock_msg.iter().chain(self.recent_in(now, window))
    }

    /// The approvals and denials still within `window` of `now`.
    fn recent_in(&self, now: Millis, window: Millis) -> impl Iterator<Item = &AdminMsg> {
        self.recent
            .iter()
            .filter(move |m| now.saturating_sub(m.body.at) <= window)
    }

    /// The message that set the current lock state.
    pub fn lock_msg(&self) -> Option<&AdminMsg> {
        self.lock_msg.as_ref()
    }

    /// Recorded alerts, oldest first: (when, text).
    pub fn alerts(&self) -> impl Iterator<Item = &(Millis, String)> {
        self.alerts.iter()
    }
}

/// What checked log evidence against `origin` proves, as an alert's
/// text; a refusal if it proves nothing (forged, damaged, another origin).
pub fn log_evidence_text(origin: &NodeId, evidence: &[u8]) -> Result<String, AdminRefusal> {
    use crate::log::witness::evidence::{Evidence, EvidenceKind};
    let bad = |s: String| AdminRefusal::BadAlert(s);
    let e = Evidence::decode(evidence).map_err(|e| bad(e.to_string()))?;
    let kind = e.check().map_err(|e| bad(e.to_string()))?;
    Ok(match kind {
        EvidenceKind::Fork { origin: o, a, b } if o == *origin => format!(
            "logs of {origin}: it signed two histories (checkpoints of sizes {a} and {b} that cannot both be true): a fork, proven by evidence a witness holds"
        ),
        EvidenceKind::Rollback {
            origin: o,
            cosigned,
            offered,
        } if o == *origin => format!(
            "logs of {origin}: it offered a checkpoint of size {offered} after signing size {cosigned}: a rollback, proven by evidence a witness holds"
        ),
        _ => return Err(bad("its evidence is against another origin".into())),
    })
}

#[cfg(test)]
mod tests;
