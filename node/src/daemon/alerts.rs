//! Copied-boot-key alerts that prove themselves, and share requests from
//! strangers kept out of the decision history.
//!
//! An alert carries the signed share request that triggered it. Every node
//! checks that the request is signed by the named owner's boot key and was
//! addressed to the alerting guardian before it records the alert, so a
//! member cannot raise an alert about a node whose boot key nobody used;
//! one that tries is struck like any peer sending bad messages.
//!
//! Anyone can send a share request naming any owner. Those that do not
//! come from the owner's boot key (the unlock client connects with it) are
//! counted here instead of filling `keyward status`'s recent decisions, so
//! a stranger's flood cannot push out the decisions an admin needs to see.

use libp2p::PeerId;
use tracing::warn;

use super::{now_ms, Daemon};
use crate::guardian::{Decision, Millis, ShareRequest};
use crate::identity::NodeId;
use crate::proto::{AdminKind, AdminMsg};

/// An alert older than this is refused: alerts travel by gossip, live.
const MAX_ALERT_AGE: Millis = 10 * 60 * 1000;
/// Pieces of evidence remembered, so each raises one alert.
const MAX_EVIDENCE: usize = 1024;
/// At most one journal line per this long about strangers' requests.
const STRANGER_LOG_EVERY: Millis = 10_000;

/// Share requests refused because they were not from the owner's boot key.
#[derive(Default)]
pub(super) struct StrangerRefusals {
    count: u64,
    last_at: Millis,
    last_rule: String,
    last_owner: Option<NodeId>,
    logged_at: Millis,
    unlogged: u64,
    /// Connections refused by the gate, for the journal's rate limit.
    conn_logged_at: Millis,
    conn_unlogged: u64,
}

impl Daemon {
    /// Why an alert must not be believed, or `Ok` (also for other admin
    /// messages, which prove themselves by their signer's role).
    pub(super) fn check_alert(&self, m: &AdminMsg) -> Result<(), String> {
        let AdminKind::Alert { owner, evidence } = &m.body.kind else {
            return Ok(());
        };
        if evidence.owner != *owner {
            return Err("its evidence is a request of another node".into());
        }
        if evidence.guardian != m.body.by {
            return Err(
                "its evidence is a request to another guardian than the alert's author".into(),
            );
        }
        let Some(member) = self.roster.member(owner) else {
            return Err(format!("{owner} is not an active member"));
        };
        if !evidence.verify(&member.boot) {
            return Err(format!(
                "its evidence is not signed by the boot key of {}",
                member.name
            ));
        }
        if now_ms().saturating_sub(m.body.at) > MAX_ALERT_AGE {
            return Err("it is older than 10 minutes".into());
        }
        Ok(())
    }

    /// Whether this request was not yet the evidence of a recorded alert.
    pub(super) fn first_evidence(&mut self, r: &ShareRequest) -> bool {
        let k = (r.owner, r.nonce);
        if self.alert_evidence.contains(&k) {
            return false;
        }
        self.alert_evidence.push_back(k);
        while self.alert_evidence.len() > MAX_EVIDENCE {
            self.alert_evidence.pop_front();
        }
        true
    }

    /// Whether a share request came over a connection authenticated by
    /// the owner's boot key.
    pub(super) fn is_owners_boot_key(&self, owner: &NodeId, peer: Option<&PeerId>) -> bool {
        let boot = self.roster.member(owner).and_then(|m| m.boot.peer_id());
        peer.is_some_and(|p| boot.as_ref() == Some(p))
    }

    /// Counts a stranger's refused request; one journal line per 10 s.
    pub(super) fn stranger_refused(&mut self, d: &Decision, peer: Option<&PeerId>) {
        let s = &mut self.strangers;
        s.count += 1;
        s.last_at = d.at;
        s.last_rule.clone_from(&d.rule);
        s.last_owner = Some(d.owner);
        if d.at.saturating_sub(s.logged_at) < STRANGER_LOG_EVERY {
            s.unlogged += 1;
            return;
        }
        let more = std::mem::take(&mut s.unlogged);
        s.logged_at = d.at;
        let requester = peer.map(|p| p.to_string()).unwrap_or_default();
        warn!(target: "keyward::decision", %requester, owner = %d.owner, rule = %d.rule,
            "share request not from the owner's boot key REFUSED: {} ({more} more such since the last line)", d.reason);
    }

    /// A connection the gate or the connection limits refused.
    pub(super) fn connection_refused(
        &mut self,
        from: &libp2p::Multiaddr,
        cause: &libp2p::swarm::ConnectionDenied,
    ) {
        let now = now_ms();
        let s = &mut self.strangers;
        if now.saturating_sub(s.conn_logged_at) < STRANGER_LOG_EVERY {
            s.conn_unlogged += 1;
            return;
        }
        let more = std::mem::take(&mut s.conn_unlogged);
        s.conn_logged_at = now;
        warn!("connection from {from} refused: {cause} ({more} more refused since the last line)");
    }

    pub(super) fn strangers_status(&self, now: Millis) -> crate::control::StrangersStatus {
        let s = &self.strangers;
        let gate = &self.swarm.behaviour().gate;
        crate::control::StrangersStatus {
            refused_requests: s.count,
            last_refused_ms_ago: (s.count > 0).then(|| now.saturating_sub(s.last_at)),
            last_rule: (s.count > 0).then(|| s.last_rule.clone()),
            // the owner the last such request named, as decisions name it
            last_owner: s.last_owner.map(|o| {
                self.roster
                    .member(&o)
                    .map(|m| m.name.clone())
                    .unwrap_or_else(|| o.to_string())
            }),
            connections: gate.strangers(),
            refused_connections: gate.refused(),
        }
    }
}
