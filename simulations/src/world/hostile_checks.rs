//! The hostile scenario's checks (see `hostile`): `release.honest-approval`
//! at the first release of each (guardian, owner, epoch) to a seized
//! server, `hostile.minted-never-active` and
//! `hostile.out-after-revocation` on every replica state, and
//! `hostile.revocation-reaches-members` every `watch::TICK`.

use keyward_core::roster::{OpBody, OpId, Role};

use super::*;

impl World {
    /// The founder's revocation ops of H1 and H2, once some node wrote
    /// them.
    fn hostile_revocations(&self) -> Vec<(u32, OpId)> {
        let Some(h) = &self.hostile else {
            return vec![];
        };
        let ids = [
            (h.auditor, self.machines[h.auditor as usize].id),
            (h.guardian, self.machines[h.guardian as usize].id),
        ];
        ids.iter()
            .filter_map(|(m, id)| {
                self.watch
                    .revocations
                    .iter()
                    .find(|rv| rv.node == *id)
                    .map(|rv| (*m, rv.id))
            })
            .collect()
    }

    /// `release.honest-approval`, at a release by guardian g to seized o.
    pub(super) fn check_honest_approval(&mut self, g: u32, o: u32, epoch: u64) {
        let Some(&seized_at) = self.seizures.get(&o) else {
            return;
        };
        if self.machines[g as usize].hostile {
            return;
        }
        if let Some(h) = &mut self.hostile {
            if !h.judged.insert((g, o, epoch)) {
                return;
            }
        } else if !self.machines[o as usize].seized {
            return;
        }
        let now = self.local(g);
        // Approvals carry their issuer's clock: allow the skew.
        let seized_local = self
            .local_at(g, seized_at)
            .saturating_sub(2 * self.cfg.skew);
        let window = self.cfg.policy.approval_window + 2 * self.cfg.skew;
        let revs = self.hostile_revocations();
        let Some(node) = self.machines[g as usize].node.as_ref() else {
            return;
        };
        let approvals = self
            .oracle
            .seen(g, o)
            .map(|s| s.approvals.clone())
            .unwrap_or_default();
        let (mut honest, mut hostile_ok) = (false, false);
        for (t, by) in &approvals {
            let fresh = *t >= seized_local && now.saturating_sub(*t) <= window;
            if !fresh {
                continue;
            }
            let root = self.hostile.as_ref().and_then(|h| h.taint.get(by).copied());
            let known = root.is_some_and(|root| {
                revs.iter()
                    .any(|(r, id)| *r == root && node.roster().knows(id))
            });
            match root {
                None => honest = true,
                Some(_) if !known => hostile_ok = true,
                Some(_) => {}
            }
        }
        let n = approvals.len();
        self.checks.check(
            inv::RELEASE_HONEST_APPROVAL,
            honest || hostile_ok,
            &[g, o],
            || {
                format!(
                    "guardian n{g} released a share of n{o} (epoch {epoch}), seized at {}, with no honest approval ({n} approvals delivered)",
                    crate::trace::clock(seized_at)
                )
            },
        );
        if hostile_ok && !honest {
            if let Some(h) = &mut self.hostile {
                h.opened.insert(o);
                h.stats.seized_releases_on_hostile_approval += 1;
            }
        }
    }

    /// `hostile.minted-never-active` and `hostile.out-after-revocation`
    /// on machine i's replica.
    pub(super) fn check_hostile_membership(&mut self, i: u32) {
        let Some(h) = &self.hostile else { return };
        let Some(node) = self.machines[i as usize].node.as_ref() else {
            return;
        };
        let r = node.roster();
        let h1 = self.machines[h.auditor as usize].id;
        let minted_out = h.auditor_mints.iter().find(|m| r.is_active(m)).copied();
        let h1_guardian = r.member(&h1).is_some_and(|m| m.role != Role::Auditor);
        let detail = match (minted_out, h1_guardian) {
            (Some(m), _) => format!(
                "n{i}'s roster counts {}, minted by the auditor n{}, as active",
                m.short(),
                h.auditor
            ),
            (None, true) => format!(
                "n{i}'s roster counts the auditor n{} as a guardian",
                h.auditor
            ),
            _ => String::new(),
        };
        let (ha, hg) = (h.auditor, h.guardian);
        let revs = self.hostile_revocations();
        let after = revs.len() == 2 && revs.iter().all(|(_, id)| r.knows(id));
        let mut why = None;
        if after {
            if let Some(id) = h.taint.keys().find(|id| r.is_active(id)) {
                why = Some(format!("counts hostile {} as active", id.short()));
            }
            if why.is_none() {
                if let Some(m) = self
                    .machines
                    .iter()
                    .find(|m| !m.hostile && !m.revoked && r.is_revoked(&m.id))
                {
                    why = Some(format!(
                        "counts honest {} as revoked, which no admin did",
                        m.me.name
                    ));
                }
            }
            if why.is_none() {
                for op in r.ops() {
                    let signer = op.body.signer();
                    let of = match &op.body {
                        OpBody::Admit { member, .. } => Some(member.id),
                        _ => None,
                    };
                    if h.taint.contains_key(&signer) || of.is_some_and(|m| h.taint.contains_key(&m))
                    {
                        why = Some(format!(
                            "still holds an operation signed by or admitting hostile {}",
                            of.filter(|m| h.taint.contains_key(m))
                                .unwrap_or(signer)
                                .short()
                        ));
                        break;
                    }
                }
            }
        }
        let len = r.len_ops();
        if let Some(h) = &mut self.hostile {
            h.stats.max_roster_ops = h.stats.max_roster_ops.max(len);
        }
        self.checks.check(
            inv::MINTED_NEVER_ACTIVE,
            minted_out.is_none() && !h1_guardian,
            &[i, ha],
            || detail,
        );
        if after {
            self.checks
                .check(inv::HOSTILE_OUT, why.is_none(), &[i, ha, hg], || {
                    format!(
                        "n{i}'s roster holds the founder's revocation of n{ha} and n{hg} but {}",
                        why.clone().unwrap_or_default()
                    )
                });
        }
    }

    /// `hostile.revocation-reaches-members` (see `invariants`), every
    /// `watch::TICK`.
    pub(super) fn check_hostile_reached(&mut self, now: Millis) {
        let Some(h) = &self.hostile else { return };
        let Some(at) = h.stats.revoked_at else { return };
        let whole = !self.net.is_split() && self.net.healed_at + 30 * MIN <= now;
        if !whole || at + 30 * MIN > now {
            return;
        }
        let hostile = [h.auditor, h.guardian];
        let ids = hostile.map(|v| self.machines[v as usize].id);
        let mut judged = 0;
        let mut stale = None;
        for (i, m) in self.machines.iter().enumerate() {
            let Some(node) = m.node.as_ref().filter(|_| m.running()) else {
                continue;
            };
            let r = node.roster();
            if m.hostile || m.running_since + 30 * MIN > now || !r.is_active(&m.id) {
                continue;
            }
            judged += 1;
            if let Some(k) = ids.iter().position(|id| r.is_active(id)) {
                stale = Some((i as u32, hostile[k]));
                break;
            }
        }
        self.checks.passed(inv::HOSTILE_REACHED, judged);
        if let Some((i, k)) = stale {
            let (ha, hg) = (hostile[0], hostile[1]);
            self.checks.check(inv::HOSTILE_REACHED, false, &[i, ha, hg], || {
                format!(
                    "n{i} counts itself a member and hostile n{k} as active, 30 min after the founder revoked n{ha} and n{hg}"
                )
            });
        }
    }
}
