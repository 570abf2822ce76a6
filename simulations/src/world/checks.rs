//! The release checks, made at the guardian as it answers, against what
//! the world delivered to it (the oracle).

use super::*;

impl World {
    /// The release checks, at the guardian as it answers.
    pub(super) fn check_response(&mut self, g: u32, to: u32, r: &Response) {
        match r {
            Response::Share(env) => {
                self.stats.releases += 1;
                let owner = env.body.owner;
                let epoch = env.body.epoch;
                let o = self.ids.get(&owner).copied().unwrap_or(u32::MAX);
                self.rec(Kind::Release, g as u64, o as u64);
                let Some(node) = &self.machines[g as usize].node else {
                    return;
                };
                let (active, revoked) = (
                    node.roster().is_active(&owner),
                    node.roster().is_revoked(&owner),
                );
                let locked = node.guardian().lockdown().is_some();
                let nodes = [g, to];
                self.checks.check(inv::RELEASE_MEMBER, active, &nodes, || {
                    format!("guardian n{g} released a share of a node not active in its roster")
                });
                self.checks
                    .check(inv::RELEASE_NOT_REVOKED, !revoked, &nodes, || {
                        format!("guardian n{g} released a share of a revoked node")
                    });
                self.checks
                    .check(inv::RELEASE_NO_LOCKDOWN, !locked, &nodes, || {
                        format!("guardian n{g} released a share during a lockdown")
                    });
                let Some(o) = self.ids.get(&owner).copied() else {
                    return;
                };
                let p = self.cfg.policy;
                let now = self.local(g);
                let timeout = self.cfg.oracle_timeout.unwrap_or(p.timeout);
                let ground = self.oracle.ground(g, o, now, &p, timeout);
                let seen = self.oracle.seen(g, o).cloned().unwrap_or_default();
                self.checks
                    .check(inv::RELEASE_ALIVE, ground.is_some(), &[g, o], || {
                        format!(
                            "guardian n{g} released n{o}'s share at {now}: last liveness delivered {:?}, last release {:?}, approval {:?}",
                            seen.alive, seen.release, seen.approved
                        )
                    });
                if self.cfg.strict {
                    let chained = matches!(
                        ground,
                        Some(crate::oracle::Ground::Extended { chained: true })
                    );
                    self.checks
                        .check(inv::STRICT_EXT_CHAIN, !chained, &[g, o], || {
                            format!("guardian n{g} released n{o}'s share only because an extended release renewed the extended window")
                        });
                }
                let grounded =
                    ground.is_some_and(|x| !matches!(x, crate::oracle::Ground::Extended { .. }));
                // Judged on the approvals delivered so far, before the
                // release consumes them.
                if to != ATTACKER {
                    self.check_honest_approval(g, o, epoch);
                }
                self.oracle.released(g, o, now, grounded, &p);
            }
            Response::ShareRefused(r) => {
                self.rec(Kind::Refuse, g as u64, to as u64);
                *self.stats.refusals.entry(r.rule().to_string()).or_default() += 1;
            }
            _ => {}
        }
    }
}
