//! Membership decisions: issuing an invite, admitting the node that
//! redeems it, planning a revocation, replacing this node's boot key.
//!
//! The invite's secret is single-use and expires; the joiner proves its
//! key on the connection and signs its own member record (its claim), and
//! only an active guardian admits. The driver reads the invite record from
//! disk, and writes the updated record before it answers: a crash between
//! the two must not let the same invite admit a second node.

use serde::{Deserialize, Serialize};

use crate::guardian::Millis;
use crate::identity::{BootPublic, NodeId, NodeKey, Sig};
use crate::proto::{Invite, InviteRecord};
use crate::roster::{check_name, Member, OpBody, Role, Roster, SignedOp};

/// Why this node cannot issue an invite. Travels to the CLI as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteError {
    #[error("this node is in no mesh yet: `keyward init --mesh NAME` founds one")]
    NoMesh,
    #[error("this node is not an active member and cannot invite")]
    NotMember,
    #[error("auditors do not invite: run `keyward invite` on a guardian")]
    Auditor,
    #[error("--expires must be between 1 s and 30 days")]
    ExpiresOutOfRange,
}

/// Why this node's revocation would not be made (or would not count).
/// Travels to the CLI as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeError {
    #[error("not in a mesh")]
    NotInMesh,
    #[error("the reason is {len} bytes; keep it under {max} (it travels in every roster sync)")]
    ReasonTooLong { len: usize, max: usize },
    #[error("the founder is the mesh's root of trust and cannot be revoked")]
    FounderIrrevocable,
    #[error("{who} is already revoked")]
    AlreadyRevoked { who: String },
    /// `able`: members whose revocation of `who` would count.
    #[error("{who} is more senior than this node (it is closer to the founder in the chain of invitations), so a revocation from here would not count; run `keyward revoke {who}` on one of: {}", .able.join(", "))]
    NotSenior { who: String, able: Vec<String> },
}

/// Longest an invite may stay valid.
pub const MAX_INVITE_SECS: u64 = 30 * 24 * 3600;

/// A new invite and the record the driver writes before handing it out.
pub struct NewInvite {
    pub invite: Invite,
    pub record: InviteRecord,
}

/// Issues an invite for `role`, valid `expires_secs` from `now`, naming
/// `addrs` (where the joiner reaches us); `secret` is fresh randomness.
pub fn invite(
    roster: &Roster,
    me: NodeId,
    role: Role,
    expires_secs: u64,
    addrs: Vec<String>,
    secret: [u8; 32],
    now: Millis,
) -> Result<NewInvite, InviteError> {
    let mesh = roster.mesh().ok_or(InviteError::NoMesh)?;
    match roster.member(&me) {
        None => return Err(InviteError::NotMember),
        Some(m) if m.role != Role::Guardian => return Err(InviteError::Auditor),
        Some(_) => {}
    }
    if expires_secs == 0 || expires_secs > MAX_INVITE_SECS {
        return Err(InviteError::ExpiresOutOfRange);
    }
    let expires = now / 1000 + expires_secs;
    let invite = Invite {
        mesh,
        mesh_name: roster.mesh_name().unwrap_or_default().into(),
        inviter: me,
        addrs,
        secret: serde_bytes::ByteArray::new(secret),
        expires,
        role,
    };
    Ok(NewInvite {
        invite,
        record: InviteRecord {
            role,
            expires,
            used_by: None,
        },
    })
}

/// What to do with a join request.
#[derive(Debug)]
pub enum Admission {
    /// The joiner is already in (it asked again after a lost answer):
    /// answer with the roster, write nothing.
    AlreadyIn,
    /// Admit: write `record` (now used), then merge and gossip `op`, then
    /// answer with the roster.
    Admit {
        record: InviteRecord,
        op: Box<SignedOp>,
    },
}

/// A join request arriving.
pub struct JoinRequest<'a> {
    /// The key of the connection it came on.
    pub conn: Option<NodeId>,
    pub member: &'a Member,
    pub claim: &'a Sig,
    /// The invite's id (hash of its secret) and the record this node
    /// wrote when it issued it, if any.
    pub invite_id: [u8; 32],
    pub record: Option<InviteRecord>,
}

/// Whether this node (`me`, signing with `key`) admits the joiner.
pub fn admit(
    roster: &Roster,
    key: &NodeKey,
    req: JoinRequest<'_>,
    now: Millis,
) -> Result<Admission, String> {
    let me = key.id();
    let member = req.member;
    let mesh = roster.mesh().ok_or("this node is not in a mesh")?;
    if req.conn != Some(member.id) {
        return Err(
            "the joining connection's key does not match the member it claims to be".into(),
        );
    }
    if !member.verify_claim(mesh, req.claim) {
        return Err("the joiner's record is not signed by its own key".into());
    }
    check_name(&member.name)?;
    if !roster.is_active(&me) {
        return Err("this node is no longer an active member and cannot admit anyone".into());
    }
    let mut rec = req.record.ok_or(
        "unknown invite: this node did not issue it (ask the inviter for a new one: keyward invite)",
    )?;
    if let Some(u) = rec.used_by {
        if u == member.id && roster.is_active(&u) {
            return Ok(Admission::AlreadyIn);
        }
        return Err(format!(
            "invite already used by {}; ask for a new one: keyward invite",
            u.short()
        ));
    }
    if rec.expires < now / 1000 {
        return Err("invite expired; ask for a new one: keyward invite --expires 1h".into());
    }
    if roster.is_revoked(&member.id) {
        return Err("this node was revoked; revocation is final, make a new identity (keyward init on a clean state dir)".into());
    }
    if let Some(other) = roster
        .members()
        .find(|m| m.name == member.name && m.id != member.id)
    {
        return Err(format!(
            "the name `{}` is taken by {}; set another `name` in the joiner's config",
            member.name,
            other.id.short()
        ));
    }
    if member.role != rec.role {
        return Err(format!(
            "the invite is for an {}, but the joiner claims the role {}; ask for a new invite with the right --role",
            rec.role, member.role
        ));
    }
    rec.used_by = Some(member.id);
    let op = SignedOp::sign(
        OpBody::Admit {
            mesh,
            member: member.clone(),
            claim: *req.claim,
            invite: Some(serde_bytes::ByteArray::new(req.invite_id)),
            by: me,
            at: now,
        },
        key,
    );
    Ok(Admission::Admit {
        record: rec,
        op: Box::new(op),
    })
}

/// A revocation as planned: the operations to merge and gossip, in
/// order, and what they do.
#[derive(Debug)]
pub struct Revocation {
    pub ops: Vec<SignedOp>,
    /// Members the revoked node admitted, endorsed again from here so they
    /// stay (names).
    pub endorsed: Vec<String>,
    /// Members that go with it (`cascade`, or this node itself).
    pub dropped: Vec<String>,
    /// Nodes the revoked member had revoked, revoked again from here so
    /// they stay out.
    pub re_signed: Vec<NodeId>,
}

/// Plans this node's revocation of `node` (`who` is how the admin named
/// it). A revoked member's admissions and revocations count for nothing,
/// so the members it admitted are endorsed again from here (unless
/// `cascade`), and the nodes it revoked are revoked again from here.
pub fn revoke(
    roster: &Roster,
    key: &NodeKey,
    (node, who): (NodeId, &str),
    cascade: bool,
    reason: String,
    now: Millis,
) -> Result<Revocation, RevokeError> {
    let me = key.id();
    let mesh = roster.mesh().ok_or(RevokeError::NotInMesh)?;
    if reason.len() > crate::roster::MAX_REASON {
        return Err(RevokeError::ReasonTooLong {
            len: reason.len(),
            max: crate::roster::MAX_REASON,
        });
    }
    if Some(node) == roster.founder() {
        return Err(RevokeError::FounderIrrevocable);
    }
    if roster.is_revoked(&node) {
        return Err(RevokeError::AlreadyRevoked { who: who.into() });
    }
    if !roster.may_revoke(&me, &node) {
        // Seniority (docs/design.md, "Membership"): a member cannot
        // revoke a member closer to the founder than itself.
        let t = roster.level(&node).unwrap_or(u32::MAX);
        let able: Vec<String> = roster
            .members()
            .filter(|m| roster.level(&m.id).is_some_and(|l| l <= t) && m.id != node)
            .map(|m| m.name.clone())
            .collect();
        return Err(RevokeError::NotSenior {
            who: who.into(),
            able,
        });
    }
    let mut out = Revocation {
        ops: vec![],
        endorsed: vec![],
        dropped: vec![],
        re_signed: vec![],
    };
    for d in roster.dependents_of(&node) {
        let Some((m, claim)) = roster.claim(&d) else {
            continue;
        };
        if cascade || d == me {
            out.dropped.push(m.name);
            continue;
        }
        out.ops.push(SignedOp::sign(
            OpBody::Admit {
                mesh,
                member: m.clone(),
                claim,
                invite: None,
                by: me,
                at: now,
            },
            key,
        ));
        out.endorsed.push(m.name);
    }
    for t in roster.revoked_by(&node) {
        if t == me || !roster.is_revoked(&t) || !roster.may_revoke(&me, &t) {
            continue;
        }
        out.ops.push(SignedOp::sign(
            OpBody::Revoke {
                mesh,
                node: t,
                by: me,
                reason: "kept: revoked before its revoker was".into(),
                at: now,
            },
            key,
        ));
        out.re_signed.push(t);
    }
    out.ops.push(SignedOp::sign(
        OpBody::Revoke {
            mesh,
            node,
            by: me,
            reason,
            at: now,
        },
        key,
    ));
    Ok(out)
}

/// This node's new boot key in the roster: a rekey with the next sequence
/// number, so it supersedes every earlier one. None outside a mesh.
pub fn rekey(roster: &Roster, key: &NodeKey, boot: BootPublic) -> Option<SignedOp> {
    let mesh = roster.mesh()?;
    Some(SignedOp::sign(
        OpBody::Rekey {
            mesh,
            node: key.id(),
            boot,
            seq: roster.next_rekey_seq(&key.id()),
        },
        key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::BootKey;
    use crate::proto::invite_id;
    use crate::testkit::mesh;

    const NOW: Millis = 1_700_000_000_000;

    fn joiner(role: Role) -> (NodeKey, Member) {
        let k = NodeKey::generate();
        let m = Member {
            id: k.id(),
            boot: BootKey::generate().public(),
            name: "new".into(),
            role,
        };
        (k, m)
    }

    #[test]
    fn an_invite_admits_its_holder_once() {
        let mut t = mesh(3);
        let inviter = &t.nodes[1];
        let new = invite(
            &t.roster,
            inviter.key.id(),
            Role::Guardian,
            3600,
            vec![],
            [9; 32],
            NOW,
        )
        .unwrap();
        let (k, m) = joiner(Role::Guardian);
        let claim = m.claim(t.mesh, &k);
        let req = |record| JoinRequest {
            conn: Some(k.id()),
            member: &m,
            claim: &claim,
            invite_id: invite_id(&[9; 32]),
            record,
        };
        let Admission::Admit { record, op } = admit(
            &t.roster,
            &inviter.key,
            req(Some(new.record.clone())),
            NOW + 1000,
        )
        .unwrap() else {
            panic!("not admitted")
        };
        assert_eq!(record.used_by, Some(k.id()));
        t.roster.merge(*op).unwrap();
        assert!(t.roster.is_active(&k.id()));
        // asked again by the same node (a lost answer): the roster again
        assert!(matches!(
            admit(
                &t.roster,
                &inviter.key,
                req(Some(record.clone())),
                NOW + 2000
            ),
            Ok(Admission::AlreadyIn)
        ));
        // by anyone else: refused
        let (k2, m2) = joiner(Role::Guardian);
        let c2 = m2.claim(t.mesh, &k2);
        let e = admit(
            &t.roster,
            &inviter.key,
            JoinRequest {
                conn: Some(k2.id()),
                member: &m2,
                claim: &c2,
                invite_id: invite_id(&[9; 32]),
                record: Some(record),
            },
            NOW + 3000,
        )
        .unwrap_err();
        assert!(e.contains("already used"), "{e}");
    }

    #[test]
    fn joins_that_do_not_prove_themselves_are_refused() {
        let t = mesh(2);
        let g = &t.nodes[0];
        let rec = invite(
            &t.roster,
            g.key.id(),
            Role::Auditor,
            60,
            vec![],
            [1; 32],
            NOW,
        )
        .unwrap()
        .record;
        let (k, m) = joiner(Role::Auditor);
        let claim = m.claim(t.mesh, &k);
        let try_with = |conn, m: &Member, claim: &Sig, rec: Option<InviteRecord>, at| {
            admit(
                &t.roster,
                &g.key,
                JoinRequest {
                    conn,
                    member: m,
                    claim,
                    invite_id: invite_id(&[1; 32]),
                    record: rec,
                },
                at,
            )
            .unwrap_err()
        };
        // another connection than the member's key
        let e = try_with(Some(g.key.id()), &m, &claim, Some(rec.clone()), NOW);
        assert!(e.contains("does not match"), "{e}");
        // a claim not signed by the member
        let mut other = m.clone();
        other.name = "someone".into();
        let forged = other.claim(t.mesh, &k);
        let e = try_with(Some(k.id()), &m, &forged, Some(rec.clone()), NOW);
        assert!(e.contains("not signed by its own key"), "{e}");
        // an invite this node never issued
        let e = try_with(Some(k.id()), &m, &claim, None, NOW);
        assert!(e.contains("unknown invite"), "{e}");
        // expired
        let e = try_with(Some(k.id()), &m, &claim, Some(rec.clone()), NOW + 61_000);
        assert!(e.contains("expired"), "{e}");
        // a role other than the invite's
        let (k3, mut m3) = joiner(Role::Guardian);
        m3.name = "other".into();
        let c3 = m3.claim(t.mesh, &k3);
        let e = try_with(Some(k3.id()), &m3, &c3, Some(rec.clone()), NOW);
        assert!(e.contains("the invite is for an auditor"), "{e}");
        // a name taken by a member
        let (k4, mut m4) = joiner(Role::Auditor);
        m4.name = "n1".into();
        let c4 = m4.claim(t.mesh, &k4);
        let e = try_with(Some(k4.id()), &m4, &c4, Some(rec), NOW);
        assert!(e.contains("is taken"), "{e}");
    }

    #[test]
    fn only_active_guardians_invite() {
        let t = mesh(2);
        let stranger = NodeKey::generate();
        let e = invite(
            &t.roster,
            stranger.id(),
            Role::Guardian,
            60,
            vec![],
            [0; 32],
            NOW,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("not an active member"), "{e}");
        let e = invite(
            &t.roster,
            t.nodes[0].key.id(),
            Role::Guardian,
            0,
            vec![],
            [0; 32],
            NOW,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("between 1 s and 30 days"), "{e}");
    }

    #[test]
    fn revocations_respect_seniority_and_keep_what_the_revoked_did() {
        let mut t = mesh(3);
        let (founder, a, b) = (&t.nodes[0], &t.nodes[1], &t.nodes[2]);
        // the founder cannot be revoked, a junior cannot revoke a senior
        let e = revoke(
            &t.roster,
            &a.key,
            (founder.key.id(), "n0"),
            false,
            "x".into(),
            NOW,
        )
        .unwrap_err();
        assert!(e.to_string().contains("root of trust"), "{e}");
        // a admits c; b then revokes a without cascade: c is endorsed again
        let inv = invite(
            &t.roster,
            a.key.id(),
            Role::Guardian,
            60,
            vec![],
            [4; 32],
            NOW,
        )
        .unwrap();
        let (ck, cm) = joiner(Role::Guardian);
        let claim = cm.claim(t.mesh, &ck);
        let Admission::Admit { op, .. } = admit(
            &t.roster,
            &a.key,
            JoinRequest {
                conn: Some(ck.id()),
                member: &cm,
                claim: &claim,
                invite_id: invite_id(&[4; 32]),
                record: Some(inv.record),
            },
            NOW,
        )
        .unwrap() else {
            panic!()
        };
        t.roster.merge(*op).unwrap();
        // c (level 2) cannot revoke b (level 1)
        let e = revoke(&t.roster, &ck, (b.key.id(), "n2"), false, "x".into(), NOW).unwrap_err();
        let RevokeError::NotSenior { able, .. } = &e else {
            panic!("{e}")
        };
        assert!(able.contains(&"n0".to_string()), "{e}");
        let r = revoke(
            &t.roster,
            &b.key,
            (a.key.id(), "n1"),
            false,
            "gone".into(),
            NOW,
        )
        .unwrap();
        assert_eq!(r.endorsed, vec!["new".to_string()]);
        assert!(r.dropped.is_empty());
        for op in r.ops {
            t.roster.merge(op).unwrap();
        }
        assert!(t.roster.is_revoked(&a.key.id()));
        assert!(t.roster.is_active(&ck.id()), "endorsed again, it stays");
        let e = revoke(
            &t.roster,
            &b.key,
            (a.key.id(), "n1"),
            false,
            "x".into(),
            NOW,
        )
        .unwrap_err();
        assert!(e.to_string().contains("already revoked"), "{e}");
        // a reason that would bloat every sync is refused
        let long = "x".repeat(crate::roster::MAX_REASON + 1);
        assert!(revoke(&t.roster, &b.key, (ck.id(), "new"), false, long, NOW).is_err());
    }

    #[test]
    fn each_rekey_supersedes_the_last() {
        let mut t = mesh(2);
        let k = &t.nodes[1].key;
        for _ in 0..3 {
            let boot = BootKey::generate().public();
            let op = rekey(&t.roster, k, boot.clone()).unwrap();
            t.roster.merge(op).unwrap();
            assert_eq!(t.roster.member(&k.id()).unwrap().boot, boot);
        }
    }
}
