//! How far and how fast a lockdown and a revocation spread (issue 19):
//! from the admin's command, the simulated time until each member that
//! was running shows it (`Note::Lockdown`, `Note::MemberRevoked`), and
//! the invariant that a lockdown reaches every member that kept running
//! and reachable until it was lifted.

use super::*;

/// One spreading admin action being timed.
#[derive(Debug)]
pub struct Reach {
    what: &'static str,
    /// The revoked node's id (revocations only).
    target: Option<NodeId>,
    issued: Millis,
    /// Machines running when it was issued (the admin's included).
    expect: BTreeSet<u32>,
    reached: BTreeMap<u32, Millis>,
}

/// How one spread went.
#[derive(Clone, Debug, Serialize)]
pub struct ReachStat {
    pub what: &'static str,
    pub nodes: usize,
    /// Simulated ms until 99 % of them showed it (None: fewer did).
    pub p99_ms: Option<Millis>,
    /// Until all of them did (None: some never did).
    pub all_ms: Option<Millis>,
}

impl Reach {
    fn stat(&self) -> ReachStat {
        let mut t: Vec<Millis> = self
            .reached
            .iter()
            .filter(|(m, _)| self.expect.contains(m))
            .map(|(_, t)| *t)
            .collect();
        t.sort_unstable();
        let n = self.expect.len();
        let need = (n * 99).div_ceil(100);
        ReachStat {
            what: self.what,
            nodes: n,
            p99_ms: (need > 0 && t.len() >= need).then(|| t[need - 1]),
            all_ms: (t.len() == n).then(|| t.last().copied().unwrap_or(0)),
        }
    }
}

impl World {
    fn running_set(&self, except: Option<u32>) -> BTreeSet<u32> {
        (0..self.machines.len() as u32)
            .filter(|m| Some(*m) != except)
            .filter(|m| {
                let mm = &self.machines[*m as usize];
                mm.running() && mm.legit() && !mm.leaving
            })
            .collect()
    }

    /// An admin's lockdown (`on`) or lift was just asked of `admin`.
    pub(super) fn lock_issued(&mut self, admin: u32, on: bool) {
        if let Some(r) = self.reach_lock.take() {
            self.check_lock_reached(&r, admin);
            self.stats.reach.push(r.stat());
        }
        if on {
            self.reach_lock = Some(Reach {
                what: "lockdown",
                target: None,
                issued: self.now(),
                expect: self.running_set(None),
                reached: BTreeMap::new(),
            });
        }
    }

    /// The founder was asked to revoke `v`.
    pub(super) fn revoke_issued(&mut self, v: u32) {
        self.push_revoke_reach();
        self.reach_revoke = Some(Reach {
            what: "revocation",
            target: Some(self.machines[v as usize].id),
            issued: self.now(),
            expect: self.running_set(Some(v)),
            reached: BTreeMap::new(),
        });
    }

    /// What a node said, for the spreads being timed.
    pub(super) fn reach_note(&mut self, m: u32, n: &keyward_core::node::Note) {
        let now = self.now();
        let r = match n {
            keyward_core::node::Note::Lockdown { on: true, .. } => self.reach_lock.as_mut(),
            keyward_core::node::Note::MemberRevoked { id, .. } => {
                self.reach_revoke.as_mut().filter(|r| r.target == Some(*id))
            }
            _ => None,
        };
        if let Some(r) = r {
            r.reached.entry(m).or_insert(now - r.issued);
        }
    }

    /// When a lockdown is lifted: every member that was running when it
    /// was set, has run since, and is on the admin's side of any partition
    /// now, showed it.
    fn check_lock_reached(&mut self, r: &Reach, admin: u32) {
        let missed: Vec<u32> = r
            .expect
            .iter()
            .copied()
            .filter(|m| !r.reached.contains_key(m))
            .filter(|m| {
                let mm = &self.machines[*m as usize];
                mm.running() && mm.running_since <= r.issued && self.net.same_side(admin, *m)
            })
            .collect();
        self.checks
            .check(inv::LOCK_REACHES_ALL, missed.is_empty(), &missed, || {
                format!(
                    "a lockdown set at {} never reached running members {missed:?}",
                    r.issued
                )
            });
    }

    /// A revocation that reached no one was refused (its target was
    /// already out, say): nothing to time.
    fn push_revoke_reach(&mut self) {
        if let Some(r) = self.reach_revoke.take().filter(|r| !r.reached.is_empty()) {
            self.stats.reach.push(r.stat());
        }
    }

    /// The spreads still open at the end.
    pub(super) fn reach_end(&mut self) {
        if let Some(r) = self.reach_lock.take() {
            self.stats.reach.push(r.stat());
        }
        self.push_revoke_reach();
    }
}
