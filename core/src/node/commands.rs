//! The admin's commands (the control API): status, invites and joins,
//! revocation, boot-key rekeying, approvals, denials and lockdowns, and the
//! owner's deposits, drops and held queries fanned out to its guardians.

use std::collections::BTreeMap;

use base64::Engine;

use crate::codec;
use crate::control::{
    self, AdminSent, CtlError, CtlReply, CtlRequest, GuardianAnswer, Invited, Revoked, Status,
};
use crate::guardian::Millis;
use crate::identity::{BootPublic, NodeId};
use crate::lookup::FindError;
use crate::proto::{AdminBody, AdminKind, AdminMsg, Gossip, Invite, Request};
use crate::roster::{Member, Role};
use crate::shares::ShareEnvelope;

use super::io::{CtlId, Output, Write};
use super::machine::{Node, Then};
use super::members::{self, NewInvite, Revocation};
use super::notes::Note;

/// At most this many of an invite's addresses are kept.
pub const MAX_INVITE_ADDRS: usize = 8;

impl Node {
    pub(super) fn command(&mut self, id: CtlId, req: CtlRequest, now: Millis) {
        let r = match req {
            CtlRequest::Status => Ok(CtlReply::Status(Box::new(self.status(now)))),
            CtlRequest::Invite { role, expires_secs } => {
                return self.invite(id, role, expires_secs, now)
            }
            CtlRequest::Join { token } => return self.join(id, token, now),
            CtlRequest::Revoke {
                who,
                cascade,
                reason,
            } => self
                .revoke(&who, cascade, reason, now)
                .map(CtlReply::Revoked),
            CtlRequest::Approve { who } => self
                .admin_about(&who, |owner| AdminKind::Approve { owner }, now)
                .map(CtlReply::Admin),
            CtlRequest::Deny { who } => self
                .admin_about(&who, |owner| AdminKind::Deny { owner }, now)
                .map(CtlReply::Admin),
            CtlRequest::Lockdown => self.admin(AdminKind::Lockdown, now).map(CtlReply::Admin),
            CtlRequest::Lift => self.admin(AdminKind::Lift, now).map(CtlReply::Admin),
            CtlRequest::Deposit { envelopes } => return self.deposit(id, envelopes),
            CtlRequest::Rekey { sign, seal } => {
                self.rekey(&sign, &seal, now).map(|()| CtlReply::Rekeyed)
            }
            CtlRequest::Drop { epochs, guardians } => {
                let requests = guardians
                    .iter()
                    .filter_map(|g| g.parse::<NodeId>().ok())
                    .map(|g| {
                        let epochs = epochs.clone();
                        (g, Request::Drop { epochs })
                    })
                    .collect();
                return self.fan_out(id, requests, BTreeMap::new());
            }
            CtlRequest::Held => {
                // Every active guardian but this node: which of our
                // epochs does it hold?
                let requests = self
                    .roster
                    .guardians()
                    .filter(|m| m.id != self.me.id)
                    .map(|m| (m.id, Request::Held))
                    .collect();
                return self.fan_out(id, requests, BTreeMap::new());
            }
            CtlRequest::LogHolding { from } => {
                return self.audit_ask(id, &from, Request::LogHolding)
            }
            CtlRequest::LogFetch { from, origin, item } => {
                let Ok(origin) = origin.parse::<NodeId>() else {
                    let e = CtlError::BadRequest(format!("`{origin}` is not a node id"));
                    return self.reply(id, Err(e));
                };
                return self.audit_ask(id, &from, Request::LogFetch { origin, item });
            }
        };
        self.reply(id, r);
    }

    /// What `keyward status` shows. The transport's part (addresses per
    /// member, the gate's stranger counts) is the driver's to fill in.
    /// Logs part 2 for `keyward status`: None when this node neither
    /// logs nor keeps or witnesses other logs.
    fn replication_status(&self, now: Millis) -> Option<control::ReplicationStatus> {
        if self.logs.origin.is_none() && self.logs.store.is_none() && self.logs.witness.is_none() {
            return None;
        }
        let v = self.logs_view();
        let name = |id: &NodeId| self.roster.member(id).map(|m| m.name.clone());
        let replicas = v
            .replicas
            .iter()
            .map(|(id, held, cosigned)| control::ReplicaStatus {
                id: id.to_string(),
                name: name(id),
                held: *held,
                cosigned: *cosigned,
                cosigned_ms_ago: cosigned
                    .and(v.cosigned_at.get(id))
                    .map(|t| now.saturating_sub(*t)),
            })
            .collect();
        let mut kept: BTreeMap<NodeId, (u64, Option<u64>)> = BTreeMap::new();
        for (o, held) in &v.held {
            kept.entry(*o).or_default().0 = *held;
        }
        for (o, size) in &v.witnessed {
            kept.entry(*o).or_default().1 = Some(*size);
        }
        Some(control::ReplicationStatus {
            size: v.size,
            replicated: v.replicated,
            replicas,
            kept: kept
                .into_iter()
                .map(|(o, (held, witnessed))| control::KeptLogStatus {
                    origin: o.to_string(),
                    name: name(&o),
                    held,
                    witnessed,
                })
                .collect(),
        })
    }

    pub fn status(&self, now: Millis) -> Status {
        let texts = self.roster.member_texts();
        let members = self
            .roster
            .members()
            .zip(texts.iter())
            .map(|(m, (id, boot))| {
                let held = self.held_for(&m.id);
                control::MemberStatus {
                    id: id.clone(),
                    name: m.name.clone(),
                    role: m.role,
                    boot: boot.clone(),
                    me: m.id == self.me.id,
                    connected: m.id == self.me.id || self.peers.is_connected(&m.id),
                    guards_me: self.overlay.is_guardian(&m.id),
                    gossip: self.overlay.is_gossip(&m.id),
                    unreachable: self.overlay.is_down(&m.id),
                    addrs: vec![],
                    last_seen_ms_ago: self.peers.last_seen(&m.id).map(|t| now.saturating_sub(t)),
                    holds_shares_epochs: held,
                    up: self.guardian.is_up(&m.id, now),
                }
            })
            .collect();
        let lockdown = self.guardian.lockdown().map(|l| control::LockdownStatus {
            by: l.by.to_string(),
            by_name: self.roster.member(&l.by).map(|m| m.name.clone()),
            since_ms_ago: now.saturating_sub(l.at),
        });
        let s = self.decisions.strangers();
        let strangers = control::StrangersStatus {
            refused_requests: s.refused,
            last_refused_ms_ago: (s.refused > 0).then(|| now.saturating_sub(s.last_at)),
            last_rule: (s.refused > 0).then(|| s.last_rule.clone()),
            // the owner the last such request named, as decisions name it
            last_owner: s.last_owner.map(|o| self.name_of(&o)),
            connections: 0,
            refused_connections: 0,
        };
        Status {
            node: control::NodeStatus {
                id: self.me.id.to_string(),
                name: self.me.name.clone(),
                active: self.roster.is_active(&self.me.id),
                revoked: self.roster.is_revoked(&self.me.id),
            },
            mesh: self.roster.mesh().map(|m| control::MeshStatus {
                id: m.to_string(),
                name: self.roster.mesh_name().map(String::from),
                founder: self.roster.founder().map(|f| f.to_string()),
                digest: hex::encode(self.roster.digest()),
            }),
            listen: self.listen.clone(),
            lockdown,
            logs: None,
            replication: self.replication_status(now),
            members,
            revoked: self.roster.revoked().map(|r| r.to_string()).collect(),
            strangers,
            alerts: self
                .admin
                .alerts()
                .map(|(t, s)| control::AlertStatus {
                    at_ms: *t,
                    text: s.clone(),
                })
                .collect(),
            decisions: self
                .decisions
                .newest()
                .take(20)
                .map(|d| control::DecisionStatus {
                    at_ms: d.at,
                    owner: self.name_of(&d.owner),
                    released: d.released,
                    rule: d.rule.clone(),
                    reason: d.reason.clone(),
                })
                .collect(),
            policy: *self.guardian.policy(),
            clock: control::ClockStatus {
                sane: now >= self.guardian.clock_floor(),
                behind_ms: self.guardian.clock_floor().saturating_sub(now),
            },
        }
    }

    /// A member's name, or its full id when it is not (or no longer) one.
    fn name_of(&self, n: &NodeId) -> String {
        self.roster
            .member(n)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| n.to_string())
    }

    fn invite(&mut self, ctl: CtlId, role: Role, expires_secs: u64, now: Millis) {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut self.rng, &mut secret);
        // Addresses a joiner can dial: not the unspecified ones.
        let addrs: Vec<String> = self
            .listen
            .iter()
            .filter(|a| !a.starts_with("/ip4/0.0.0.0/") && !a.starts_with("/ip6/::/"))
            .take(MAX_INVITE_ADDRS)
            .cloned()
            .collect();
        let made = members::invite(
            &self.roster,
            self.me.id,
            role,
            expires_secs,
            addrs,
            secret,
            now,
        );
        let NewInvite { invite, record } = match made {
            Ok(n) => n,
            Err(e) => return self.reply(ctl, Err(e.into())),
        };
        let invited = Invited {
            token: invite.to_token(),
            expires_unix: record.expires,
            role,
        };
        self.invites.insert(invite.id(), record.clone());
        let write = Write::Invite {
            id: invite.id(),
            record,
        };
        let then = Then::Invited {
            ctl,
            invited,
            expires_secs,
        };
        self.write_then(write, then);
    }

    fn join(&mut self, ctl: CtlId, token: String, now: Millis) {
        let inv = match Invite::from_token(&token) {
            Ok(i) => i,
            Err(e) => return self.reply(ctl, Err(CtlError::BadToken(e))),
        };
        if let Some(m) = self.roster.mesh() {
            let same = m == inv.mesh;
            return self.reply(ctl, Err(CtlError::AlreadyInMesh { same }));
        }
        if inv.expires < now / 1000 {
            return self.reply(ctl, Err(CtlError::InviteExpired));
        }
        let inviter = inv.inviter;
        // on disk before the join is even sent: the token is used up
        let addrs = inv.addrs.iter().take(MAX_INVITE_ADDRS).cloned().collect();
        self.push(Output::Pin {
            peer: inviter,
            addrs,
        });
        // The record this node claims for itself: the invite fixes the role.
        let me = Member {
            role: inv.role,
            ..self.me.clone()
        };
        let claim = me.claim(inv.mesh, &self.key);
        let req = Request::Join {
            secret: inv.secret,
            member: me,
            claim,
        };
        self.send_join(ctl, inviter, req, inv.mesh);
    }

    /// An active member by id or name, else any node ever admitted (to
    /// revoke one that is already out). A name that fits several nodes
    /// is refused with the candidates listed, never resolved by order.
    fn find(&self, who: &str) -> Result<NodeId, CtlError> {
        match self.roster.find(who) {
            Ok(id) => Ok(id),
            Err(FindError::NotFound(_)) => Ok(self.roster.find_any(who)?),
            Err(e) => Err(e.into()),
        }
    }

    fn revoke(
        &mut self,
        who: &str,
        cascade: bool,
        reason: String,
        now: Millis,
    ) -> Result<Revoked, CtlError> {
        let node = self.find(who)?;
        let Revocation {
            ops,
            endorsed,
            dropped,
            re_signed,
        } = members::revoke(&self.roster, &self.key, (node, who), cascade, reason, now)?;
        self.merge_ops(ops.clone(), now);
        for op in ops {
            self.publish(Gossip::Op(op));
        }
        Ok(Revoked {
            revoked: node.to_string(),
            re_endorsed: endorsed,
            dropped,
            revocations_kept: re_signed.iter().map(|n| n.to_string()).collect(),
        })
    }

    fn rekey(&mut self, sign: &str, seal: &str, now: Millis) -> Result<(), CtlError> {
        let key = |h: &str| -> Result<[u8; 32], CtlError> {
            let mut b = [0u8; 32];
            hex::decode_to_slice(h, &mut b).map_err(|_| CtlError::BadBootKey)?;
            Ok(b)
        };
        let boot = BootPublic {
            sign: key(sign)?,
            seal: key(seal)?,
        };
        let op =
            members::rekey(&self.roster, &self.key, boot.clone()).ok_or(CtlError::NotInMesh)?;
        self.merge_ops(vec![op.clone()], now);
        self.publish(Gossip::Op(op));
        self.me.boot = boot;
        self.note(Note::BootKeyReplaced);
        Ok(())
    }

    fn admin_about(
        &mut self,
        who: &str,
        kind: impl Fn(NodeId) -> AdminKind,
        now: Millis,
    ) -> Result<AdminSent, CtlError> {
        let owner = self.roster.find(who).map_err(|e| match e {
            FindError::NotFound(_) => CtlError::NoActiveMember { who: who.into() },
            e => e.into(),
        })?;
        let kind = kind(owner);
        let approve = matches!(kind, AdminKind::Approve { .. });
        let up = approve && self.guardian.is_up(&owner, now);
        let mut v = self.admin(kind, now)?;
        if approve {
            v.approvals_needed = Some(self.guardian.policy().approvals);
        }
        if up {
            v.warning = Some(format!(
                "{who} is up right now: an approval ends when its owner proves it is alive, so this one is void; approve once {who} is down and asking for its key"
            ));
        }
        Ok(v)
    }

    fn admin(&mut self, kind: AdminKind, now: Millis) -> Result<AdminSent, CtlError> {
        let mesh = self.roster.mesh().ok_or(CtlError::NotInMesh)?;
        let role = self.roster.member(&self.me.id).map(|m| m.role);
        if matches!(kind, AdminKind::Approve { .. } | AdminKind::Lift)
            && role != Some(Role::Guardian)
        {
            return Err(CtlError::NotGuardian);
        }
        let body = AdminBody {
            mesh,
            kind,
            by: self.me.id,
            at: now,
        };
        let m = AdminMsg::sign(body, &self.key);
        self.apply_admin(m.clone(), now);
        self.publish(Gossip::Admin(m));
        Ok(AdminSent::default())
    }

    /// Delivers this node's envelopes (base64 of their frames) to their
    /// guardians and waits for each one's durable acknowledgement.
    fn deposit(&mut self, ctl: CtlId, envelopes: Vec<String>) {
        let mut requests = Vec::new();
        let mut refused = BTreeMap::new();
        for e in envelopes {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(e)
                .map_err(|e| e.to_string())
                .and_then(|b| codec::decode::<ShareEnvelope>(&b).map_err(|e| e.to_string()));
            let env = match decoded {
                Ok(env) if env.body.owner == self.me.id => env,
                Ok(_) => return self.reply(ctl, Err(CtlError::ForeignEnvelope)),
                Err(e) => return self.reply(ctl, Err(CtlError::BadEnvelope(e))),
            };
            let g = env.body.guardian;
            if g == self.me.id {
                let reason = "a node cannot guard its own share".into();
                refused.insert(g.to_string(), GuardianAnswer::Refused { reason });
            } else {
                requests.push((g, Request::Deposit(Box::new(env))));
            }
        }
        self.fan_out(ctl, requests, refused);
    }
}
