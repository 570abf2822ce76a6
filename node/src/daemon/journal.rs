//! The node's notes in keywardd's journal: the level and the words for
//! each. Whether something is said at all (throttles, first sightings)
//! was decided in `keyward_core::node`.

use tracing::{debug, info, warn};

use crate::guardian;
use keyward_core::node::decisions::Logged;
use keyward_core::node::Note;

pub(super) fn write(n: Note) {
    match n {
        Note::ClockBehind { by } => warn!(
            "the system clock is {} behind the newest time this guardian recorded (or its build date): share releases are refused until it is right; start keywardd after time sync (systemd: After=time-sync.target)",
            guardian::human(by)
        ),
        Note::StoredOpIgnored(e) => warn!("stored roster operation ignored: {e}"),
        Note::Strike {
            peer,
            strikes,
            what,
            banned,
        } => {
            warn!(peer = %peer, strikes, "bad message from peer: {what}");
            if banned {
                warn!(peer = %peer, "disconnecting peer after {strikes} bad messages; refusing it for 60 s");
            }
        }
        Note::RefusedBanned(p) => debug!(peer = %p, "refusing a banned peer"),
        Note::ConnectionRefused { from, cause, more } => {
            warn!("connection from {from} refused: {cause} ({more} more refused since the last line)")
        }
        Note::GossipFromStranger { via, author } => {
            debug!(via = %via, author = ?author.map(|a| a.to_string()), "gossip from a non-member ignored")
        }
        Note::OpNotMerged(e) => debug!("roster op not merged: {e}"),
        Note::MemberAdmitted { id, name, role } => {
            info!(member = %id, name = %name, role = %role, "member admitted")
        }
        Note::MemberRevoked { id, me } => {
            warn!(member = %id, "member revoked");
            if me {
                warn!("this node was revoked from the mesh; it gets no shares and holds none");
            }
        }
        Note::Synced { peer, received } => debug!(peer = %peer, received, "roster sync"),
        Note::SyncFailed { peer, why } => debug!(peer = %peer, "sync failed: {why}"),
        Note::AdminRefused { why, loud: true } => warn!("{why}"),
        Note::AdminRefused { why, loud: false } => debug!("{why}"),
        Note::Lockdown { on: true, by } => {
            warn!(by = %by, "LOCKDOWN: every share request is refused until lifted")
        }
        Note::Lockdown { on: false, by } => info!(by = %by, "lockdown lifted"),
        Note::AdminDecision { kind, by } => info!(kind = ?kind, by = %by, "admin decision"),
        Note::Alert(a) => {
            warn!(owner = %a.owner, reported_by = ?a.reported_by.map(|b| b.to_string()), "ALERT: {}", a.text)
        }
        Note::Holding { owner, epoch } => info!(owner = %owner, epoch, "holding share"),
        Note::DepositRefused { from, reason } => warn!(from = %from, "deposit refused: {reason}"),
        Note::Dropping { owner, epochs } => info!(owner = %owner, ?epochs, "dropping shares"),
        Note::Decision {
            decision: d,
            owner_name: name,
            requester,
            logged,
        } => {
            let (rule, reason, epoch, owner) = (d.rule, d.reason, d.epoch, d.owner);
            let req = requester.to_string();
            match logged {
                Logged::Released => {
                    info!(target: "keyward::decision", owner = %name, epoch, requester = %req, "share RELEASED: {reason}")
                }
                Logged::Refused { unlogged } => {
                    if unlogged > 0 {
                        warn!(target: "keyward::decision", owner = %name, requester = %req, rule = %rule, "{unlogged} more identical refusals not logged");
                    }
                    warn!(target: "keyward::decision", owner = %name, epoch, requester = %req, rule = %rule, "share REFUSED: {reason}")
                }
                Logged::Quiet | Logged::Stranger(None) => {}
                Logged::Stranger(Some(more)) => {
                    warn!(target: "keyward::decision", requester = %req, owner = %owner, rule = %rule,
                        "share request not from the owner's boot key REFUSED: {reason} ({more} more such since the last line)")
                }
            }
        }
        Note::JoinRefused { peer, why } => warn!(peer = %peer, "join refused: {why}"),
        Note::AdmittedByInvite { id, name } => {
            info!(member = %id, name = %name, "admitted by invite")
        }
        Note::InviteIssued { role, expires_in_s } => {
            info!(role = %role, expires_in_s, "invite issued")
        }
        Note::BootKeyReplaced => info!("boot key replaced in the roster"),
        Note::PeerGoingDown(n) => info!(node = %n, "peer going down cleanly"),
        Note::WriteFailed { what, why } => warn!("persisting {what}: {why}"),
        Note::LogProblem(why) => warn!("logs: {why}"),
        Note::Replica(n) => info!("log replica: {n:?}"),
        Note::LogAlert { text } => tracing::error!("ALERT {text}"),
    }
}
