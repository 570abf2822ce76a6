//! keyward's own events as log lines of the `events_source` source: the
//! guardian's decisions (every release and refusal, with its rule and
//! reason, throttled journal lines or not), joins, revocations, lockdowns
//! and alerts. Sent into the spool's inbox without waiting: the daemon
//! never blocks on its log; a full inbox is counted and said.

use keyward_core::log::line::{Line, Sender};
use keyward_core::node::Note;
use tracing::warn;

use crate::logs::{Batch, Inbox};

/// The line a note becomes, if it is an event worth keeping.
pub(super) fn text(n: &Note) -> Option<String> {
    Some(match n {
        Note::Decision {
            decision: d,
            owner_name,
            requester,
            ..
        } => format!(
            "decision {} owner={owner_name} ({}) epoch={} requester={requester} rule={} reason={}",
            if d.released { "RELEASED" } else { "REFUSED" },
            d.owner,
            d.epoch,
            d.rule,
            d.reason
        ),
        Note::MemberAdmitted { id, name, role } => {
            format!("member admitted {name} ({id}) role={role}")
        }
        Note::AdmittedByInvite { id, name } => format!("member admitted by invite {name} ({id})"),
        Note::MemberRevoked { id, me } => format!(
            "member revoked {id}{}",
            if *me { " (this node)" } else { "" }
        ),
        Note::JoinRefused { peer, why } => format!("join refused peer={peer}: {why}"),
        Note::Lockdown { on, by } => {
            format!("lockdown {} by={by}", if *on { "SET" } else { "lifted" })
        }
        Note::AdminDecision { kind, by } => format!("admin decision {kind:?} by={by}"),
        Note::Alert(a) => format!(
            "ALERT owner={} reported_by={}: {}",
            a.owner,
            a.reported_by
                .map_or("this node".to_string(), |b| b.to_string()),
            a.text
        ),
        Note::LogAlert { text } => format!("ALERT {text}"),
        Note::DepositRefused { from, reason } => format!("deposit refused from={from}: {reason}"),
        Note::ClockBehind { by } => format!("clock behind by {by} ms: releases refused"),
        _ => return None,
    })
}

/// Hands an event line to the spool.
pub(super) fn send(inbox: &Inbox, source: &str, now: u64, msg: String, dropped: &mut u64) {
    let line = Line {
        time: now,
        sender: Sender {
            pid: Some(std::process::id()),
            uid: Some(unsafe { libc::getuid() }),
            gid: Some(unsafe { libc::getgid() }),
        },
        msg: msg.into_bytes(),
    };
    let b = Batch {
        source: source.to_string(),
        lines: vec![line],
        ack: None,
    };
    if inbox.try_send(b).is_err() {
        *dropped += 1;
        if dropped.is_power_of_two() {
            warn!("log spool inbox full: {dropped} keyward events not logged");
        }
    }
}

impl super::Daemon {
    /// A note as a log line, when logs are on.
    pub(super) fn log_event(&mut self, n: &Note) {
        let Some(h) = &self.logs else { return };
        if let Some(msg) = text(n) {
            let source = &self.cfg.logs.events_source;
            send(
                &h.inbox,
                source,
                super::now_ms(),
                msg,
                &mut self.events_dropped,
            );
        }
    }

    /// The spool's part of a status reply.
    pub(super) fn logs_status(&self) -> Option<keyward_core::control::LogsStatus> {
        let u = self.logs.as_ref()?.usage.borrow().clone();
        Some(keyward_core::control::LogsStatus {
            quota_bytes: u.quota_bytes,
            refused_lines: u.refused_lines,
            segments: u.segments,
            logged: u.logged,
            used_bytes: u.used_bytes,
            warning: u.warning.then(|| {
                format!(
                    "the log spool uses {} of {} bytes, over logs.warn_percent = {}%: raise logs.quota_bytes or shorten retention before lines are refused",
                    u.used_bytes, u.quota_bytes, u.warn_percent
                )
            }),
            warn_percent: u.warn_percent,
        })
    }
}
