//! `keyward bind` / `rebind` as an admin runs it on a machine, over the
//! real control API: status, guardians chosen as cli/src/bind.rs chooses
//! them, `CtlRequest::Deposit` of the new epoch's envelopes, then (every
//! guardian acknowledged) the token and `CtlRequest::Drop` of the old
//! epoch; otherwise the disk is not changed and the guardians that stored
//! a share of the abandoned epoch are told to drop it. Nothing is retried:
//! the product does not, an admin runs it again.

use base64::Engine;
use keyward_core::bind::{self, BindPlan};
use keyward_core::codec;
use keyward_core::control::{CtlReply, CtlRequest, CtlResponse};
use keyward_core::identity::NodeId;
use keyward_core::node::CtlId;
use keyward_core::shares::{split_with_rng, DiskSecret};
use rand::Rng;

use super::machine::{Ctl, Token};
use super::{Act, World};
use crate::scenario::{MIN, SEC};
use crate::trace::Kind;

impl World {
    /// Step 1: ask the daemon for its status.
    pub(super) fn bind(&mut self, m: u32) {
        self.control(m, CtlRequest::Status, Ctl::BindStatus);
    }

    pub(super) fn on_reply(&mut self, m: u32, id: CtlId, r: CtlResponse) {
        let Some(what) = self.machines[m as usize].ctl.remove(&id) else {
            return;
        };
        match (what, r) {
            (Ctl::BindStatus, CtlResponse::Ok(CtlReply::Status(s))) => {
                // As the CLI: keyward-core's plan over the status.
                let cands = bind::candidates(&s);
                let n = self.cfg.guardians.min(cands.len());
                let t = self.cfg.threshold.min(n);
                match bind::plan(&cands, Some(n), Some(t)) {
                    Ok(plan) => self.deposit(m, plan),
                    Err(_) => self.stats.binds_failed += 1,
                }
            }
            (Ctl::BindDeposit(token, plan), CtlResponse::Ok(CtlReply::Guardians(res))) => {
                let abandoned = bind::abandoned(&plan, &res);
                if let Some(stored) = abandoned {
                    self.stats.binds_failed += 1;
                    if !stored.is_empty() {
                        let req = CtlRequest::Drop {
                            epochs: vec![token.epoch],
                            guardians: stored,
                        };
                        self.control(m, req, Ctl::Drop);
                    }
                } else {
                    self.stats.binds += 1;
                    self.rec(Kind::Bound, m as u64, token.epoch);
                    let old = self.machines[m as usize].token.replace(token);
                    if let Some(old) = old {
                        let guardians = old.guardians.iter().map(|g| g.1.to_string()).collect();
                        let req = CtlRequest::Drop {
                            epochs: vec![old.epoch],
                            guardians,
                        };
                        self.control(m, req, Ctl::Drop);
                    }
                }
            }
            (Ctl::BindStatus | Ctl::BindDeposit(..), _) => self.stats.binds_failed += 1,
            (Ctl::Invite(k), CtlResponse::Ok(CtlReply::Invited(inv))) => {
                let req = CtlRequest::Join { token: inv.token };
                self.control(k, req, Ctl::Join);
            }
            (Ctl::Join, CtlResponse::Ok(CtlReply::Joined(_))) => {
                self.stats.joins += 1;
                self.rec(Kind::Joined, m as u64, 0);
                // The admin binds the new node's disk once it has met
                // the mesh.
                let d = self.uniform(30 * SEC, 2 * MIN);
                self.at(self.now() + d, Act::Bind(m));
            }
            (Ctl::Revoke(v), CtlResponse::Ok(CtlReply::Revoked(_))) => {
                self.stats.revocations += 1;
                self.machines[v as usize].revoked = true;
                self.rec(Kind::Revoked, m as u64, v as u64);
                // Owners whose token names it: an admin rebinds them.
                let owners: Vec<u32> = (0..self.machines.len() as u32)
                    .filter(|&o| {
                        self.machines[o as usize]
                            .token
                            .as_ref()
                            .is_some_and(|t| t.guardians.iter().any(|g| g.0 == v))
                    })
                    .collect();
                for o in owners {
                    let d = self.uniform(MIN, 30 * MIN);
                    self.at(self.now() + d, Act::Bind(o));
                }
            }
            (Ctl::Invite(_) | Ctl::Join | Ctl::Revoke(_), _) => self.stats.ctl_failed += 1,
            (Ctl::Drop | Ctl::Admin, _) => {}
        }
    }

    /// Step 2: split a new key over the chosen guardians and deposit.
    fn deposit(&mut self, m: u32, plan: BindPlan) {
        let ids: Vec<NodeId> = plan
            .guardians
            .iter()
            .filter_map(|c| c.id.parse().ok())
            .collect();
        let Some(guardians): Option<Vec<(u32, NodeId, String)>> = plan
            .guardians
            .iter()
            .zip(&ids)
            .map(|(c, id)| self.ids.get(id).map(|g| (*g, *id, c.name.clone())))
            .collect()
        else {
            self.stats.binds_failed += 1;
            return;
        };
        let mm = &self.machines[m as usize];
        let Ok(epoch) = bind::next_epoch(mm.last_epoch, mm.token.as_ref().map(|t| t.epoch), [])
        else {
            self.stats.binds_failed += 1;
            return;
        };
        // `last-epoch` is written before any share leaves.
        self.machines[m as usize].last_epoch = epoch;
        let t = plan.threshold;
        let secret: [u8; 32] = self.rng.gen();
        let mm = &self.machines[m as usize];
        let envs = match split_with_rng(
            &DiskSecret::from_bytes(secret),
            t,
            &ids,
            epoch,
            &mm.key,
            &mm.boot_key.public(),
            &mut self.rng,
        ) {
            Ok(e) => e,
            Err(_) => {
                self.stats.binds_failed += 1;
                return;
            }
        };
        let envelopes: Vec<String> = envs
            .iter()
            .filter_map(|e| codec::encode(e).ok())
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
            .collect();
        let token = Token {
            epoch,
            threshold: t,
            guardians,
            secret,
        };
        self.control(
            m,
            CtlRequest::Deposit { envelopes },
            Ctl::BindDeposit(token, plan),
        );
    }
}
