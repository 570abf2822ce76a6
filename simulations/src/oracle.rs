//! What each guardian has been told, recorded by the simulator as it
//! delivers messages, independently of the guardian's own bookkeeping.
//! The invariants judge the guardian's decisions against this record.

use std::collections::BTreeMap;

use keyward_core::guardian::{LockState, Millis, Policy};
use keyward_core::identity::NodeId;

/// Approvals remembered per (guardian, owner) with their issuers.
pub const APPROVALS_KEPT: usize = 8;

/// What guardian g was told about owner o.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Last liveness proof delivered while o was active in g's roster.
    pub alive: Option<Millis>,
    /// When the last one was delivered (a connection ping's proof is
    /// older than its delivery).
    pub alive_delivered: Option<Millis>,
    pub bye: Option<Millis>,
    /// Last release.
    pub release: Option<Millis>,
    /// First release since the owner last proved liveness: where the
    /// extended timeout runs from (later releases do not renew it).
    pub window_start: Option<Millis>,
    /// Last release grounded in liveness or an approval (rather than only
    /// inside the extended timeout of an earlier release).
    pub grounded_release: Option<Millis>,
    pub approved: Option<Millis>,
    /// The approvals delivered since one was last used, with who issued
    /// them (newest last, at most `APPROVALS_KEPT`): `release.honest-approval`
    /// asks whether one of them was honest.
    pub approvals: Vec<(Millis, NodeId)>,
    /// Time of the last approval a release used up (an approval is good
    /// for one release; a replayed or older one is ignored).
    pub approval_used: Option<Millis>,
    /// First request of the boot session being answered: (session, time).
    pub first_request: Option<(u32, Millis)>,
}

/// Why a release was allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ground {
    Alive,
    Approved,
    /// Only inside the extended timeout of an earlier release; `chained`
    /// if only because a later, itself extended, release renewed it.
    Extended {
        chained: bool,
    },
}

#[derive(Default)]
pub struct Oracle {
    seen: Vec<BTreeMap<u32, Seen>>,
    lock: Vec<Option<LockState>>,
}

impl Oracle {
    pub fn add_node(&mut self) {
        self.seen.push(BTreeMap::new());
        self.lock.push(None);
    }

    pub fn seen(&self, g: u32, o: u32) -> Option<&Seen> {
        self.seen[g as usize].get(&o)
    }

    fn at(&mut self, g: u32, o: u32) -> &mut Seen {
        self.seen[g as usize].entry(o).or_default()
    }

    pub fn alive(&mut self, g: u32, o: u32, t: Millis, now: Millis) {
        let s = self.at(g, o);
        s.alive = Some(s.alive.map_or(t, |a| a.max(t)));
        s.alive_delivered = Some(now);
    }

    pub fn bye(&mut self, g: u32, o: u32, t: Millis) {
        self.at(g, o).bye = Some(t);
    }

    pub fn approve(&mut self, g: u32, o: u32, by: NodeId, t: Millis) {
        let s = self.at(g, o);
        if s.approval_used.is_none_or(|u| t > u) && s.approved.is_none_or(|a| t > a) {
            s.approved = Some(t);
        }
        // Sync re-delivers every recent approval each round: one taken
        // already is not a new one (and copies would push out others).
        if s.approval_used.is_none_or(|u| t > u) && !s.approvals.contains(&(t, by)) {
            if s.approvals.len() >= APPROVALS_KEPT {
                s.approvals.remove(0);
            }
            s.approvals.push((t, by));
        }
    }

    pub fn request(&mut self, g: u32, o: u32, session: u32, t: Millis) {
        let s = self.at(g, o);
        if s.first_request.is_none_or(|(sess, _)| sess != session) {
            s.first_request = Some((session, t));
        }
    }

    pub fn released(&mut self, g: u32, o: u32, t: Millis, grounded: bool, p: &Policy) {
        let s = self.at(g, o);
        s.release = Some(t);
        if s.window_start
            .is_none_or(|w| s.alive.is_some_and(|a| a > w))
        {
            s.window_start = Some(t);
        }
        if grounded {
            s.grounded_release = Some(t);
        }
        if let Some(a) = s
            .approved
            .filter(|a| t.saturating_sub(*a) <= p.approval_window)
        {
            s.approval_used = Some(a);
            s.approved = None;
            s.approvals.clear();
        }
    }

    /// Last writer wins by time; at equal times lockdown wins (as designed).
    pub fn lock(&mut self, g: u32, l: LockState) {
        let cur = &mut self.lock[g as usize];
        let newer = cur.is_none_or(|c| l.at > c.at || (l.at == c.at && l.on && !c.on));
        if newer {
            *cur = Some(l);
        }
    }

    pub fn locked(&self, g: u32) -> bool {
        self.lock[g as usize].is_some_and(|l| l.on)
    }

    /// Whether a release to o by g at t is justified by liveness, approval
    /// or the extended timeout, and by which.
    pub fn ground(&self, g: u32, o: u32, t: Millis, p: &Policy, timeout: Millis) -> Option<Ground> {
        let s = self.seen(g, o)?;
        if s.approved
            .is_some_and(|a| t.saturating_sub(a) <= p.approval_window)
        {
            return Some(Ground::Approved);
        }
        if s.alive.is_some_and(|a| t.saturating_sub(a) <= timeout) {
            return Some(Ground::Alive);
        }
        let within =
            |r: Option<Millis>| r.is_some_and(|r| t.saturating_sub(r) <= p.extended_timeout);
        let no_liveness_since = s
            .window_start
            .is_some_and(|w| s.alive.is_none_or(|a| a <= w));
        (within(s.window_start) && no_liveness_since).then_some(Ground::Extended {
            chained: !within(s.grounded_release),
        })
    }

    /// Until when `ground` stays `Some` if nothing more is delivered to g
    /// (None: it does not hold at t). `ground` is an "or" of windows that
    /// all contain t, so it holds until the latest of them closes. The
    /// per-event liveness check uses this to notice a quorum that lapsed
    /// by the mere passing of time, with no event touching it.
    ///
    /// This is the liveness side, so it counts an approval only as long as
    /// a guardian is bound to honour it: its issuer is still one that may
    /// approve (`valid`: an active guardian in g's roster) and the owner
    /// has not proved liveness since it was delivered (an approval is for
    /// one boot). The safety side (`ground`) counts every approval
    /// delivered.
    pub fn ground_until(
        &self,
        g: u32,
        o: u32,
        t: Millis,
        p: &Policy,
        timeout: Millis,
        valid: impl Fn(&NodeId) -> bool,
    ) -> Option<Millis> {
        let s = self.seen(g, o)?;
        let mut until: Option<Millis> = None;
        let mut hold = |end: Millis| {
            if t <= end {
                until = Some(until.map_or(end, |u| u.max(end)));
            }
        };
        for (a, by) in &s.approvals {
            if valid(by) && s.alive_delivered.is_none_or(|d| d < *a) {
                hold(a.saturating_add(p.approval_window));
            }
        }
        if let Some(a) = s.alive {
            hold(a.saturating_add(timeout));
        }
        if let Some(w) = s.window_start {
            if s.alive.is_none_or(|a| a <= w) {
                hold(w.saturating_add(p.extended_timeout));
            }
        }
        until
    }

    /// Whether g would consider o up right now (answered within up_window
    /// and no goodbye since).
    pub fn up(&self, g: u32, o: u32, t: Millis, p: &Policy) -> bool {
        self.seen(g, o).is_some_and(|s| {
            s.alive
                .is_some_and(|a| t.saturating_sub(a) <= p.up_window && s.bye.is_none_or(|b| b < a))
        })
    }
}
