//! Issue 20's attacks on the release policy, performed against the core:
//! a clock stepped back (M3), approvals that outlive their boot or their
//! issuer (M4), a revoked guardian (L3), relayed and replayed requests (L2).

use super::*;

const HOUR: Millis = 60 * MIN;

/// Adds a member with `role` to the world's roster, admitted by the admin.
fn admit(w: &mut World, role: Role) -> NodeKey {
    admit_with_boot(w, role, &BootKey::generate())
}

fn admit_with_boot(w: &mut World, role: Role, boot: &BootKey) -> NodeKey {
    let k = NodeKey::generate();
    let mesh = w.roster.mesh().unwrap();
    let member = Member {
        id: k.id(),
        boot: boot.public(),
        name: format!("m{}", k.id().short()),
        role,
    };
    w.roster
        .merge(SignedOp::sign(
            OpBody::Admit {
                mesh,
                claim: member.claim(mesh, &k),
                member,
                invite: None,
                by: w.admin.id(),
                at: 0,
            },
            &w.admin,
        ))
        .unwrap();
    k
}

fn revoke(w: &mut World, node: NodeId) {
    let mesh = w.roster.mesh().unwrap();
    w.roster
        .merge(SignedOp::sign(
            OpBody::Revoke {
                mesh,
                node,
                by: w.admin.id(),
                reason: "test".into(),
                at: 0,
            },
            &w.admin,
        ))
        .unwrap();
    assert!(w.roster.is_revoked(&node));
}

fn approve(w: &mut World, by: NodeId, at: Millis) {
    let owner = w.owner.id();
    let r = w.roster.clone();
    w.g.handle(Event::Approve { owner, by, at }, &r);
}

fn deny(w: &mut World, by: NodeId, at: Millis) {
    let owner = w.owner.id();
    let r = w.roster.clone();
    w.g.handle(Event::Deny { owner, by, at }, &r);
}

/// Sends `req` on a connection authenticated by `conn`.
fn send(w: &mut World, req: ShareRequest, conn: Option<NodeId>, at: Millis) -> Result<(), Refusal> {
    let acts = w.g.handle(
        Event::Request {
            id: 1,
            req,
            conn,
            at,
        },
        &w.roster,
    );
    match acts.last().unwrap() {
        Action::Release { .. } => Ok(()),
        Action::Refuse { refusal, .. } => Err(refusal.clone()),
        a => panic!("unexpected {a:?}"),
    }
}

/// Sends `req` on the owner's own boot-key connection.
fn own(w: &mut World, req: ShareRequest, at: Millis) -> Result<(), Refusal> {
    let conn = w.conn();
    send(w, req, conn, at)
}

// ---- M3: the guardian's clock steps back ----

#[test]
fn a_clock_stepped_back_never_makes_an_owner_last_seen_in_the_future_fresh() {
    let mut w = world();
    // web1 runs until 2 h, shuts down cleanly and is seized.
    w.alive(2 * HOUR);
    w.bye(2 * HOUR);
    // An NTP step puts the guardian's clock an hour back: web1 was last
    // seen "in the future". Before the fix that read as 0 ms ago, and the
    // seized disk got its share.
    let e = w.ask(HOUR).unwrap_err();
    assert_eq!(e, Refusal::ClockNotSane { behind: HOUR });
    assert!(e.to_string().contains("clock is 60 min behind"), "{e}");
    assert!(!e.permanent(), "fixing the clock helps this boot");
    // Once the clock is past what it recorded, the normal rules apply.
    assert!(matches!(
        w.ask(2 * HOUR + 6 * MIN),
        Err(Refusal::NotSeen { .. })
    ));
}

#[test]
fn a_restart_with_a_clock_behind_refuses_until_it_caught_up() {
    let mut w = world();
    w.alive(2 * HOUR);
    w.bye(2 * HOUR);
    // The guardian restarts from its persisted state; its clock (no RTC
    // battery, a restored VM) says 1 h.
    let saved: Vec<(NodeId, OwnerState)> = w.g.owners().map(|(k, v)| (*k, v.clone())).collect();
    let mut g = Guardian::new(w.g.me(), Policy::default());
    g.restore(saved, None);
    assert_eq!(g.clock_floor(), 2 * HOUR);
    w.g = g;
    assert_eq!(w.ask(HOUR), Err(Refusal::ClockNotSane { behind: HOUR }));
    assert_eq!(
        w.ask(2 * HOUR + MIN),
        Ok(()),
        "a clean reboot within timeout"
    );
    // A clock earlier than the build date is refused too.
    w.g.set_clock_floor(10 * HOUR);
    assert_eq!(w.ask(9 * HOUR), Err(Refusal::ClockNotSane { behind: HOUR }));
}

// ---- M4: approvals are for one boot, by admins who still are ----

#[test]
fn an_approval_ends_when_the_owner_proves_liveness_again() {
    let mut w = world();
    let admin = w.admin.id();
    // web1 was off for long; an admin approves it at 60 min...
    approve(&mut w, admin, 60 * MIN);
    // ...but it comes up by other means (the passphrase at its console)
    // and runs, then is shut down and seized.
    w.alive(61 * MIN);
    w.bye(62 * MIN);
    // The thief boots it after the timeout, within the approval window.
    // Before the fix the unused approval released the share.
    assert!(matches!(w.ask(70 * MIN), Err(Refusal::NotSeen { .. })));
    // The same approval arriving again (gossip, sync) does not re-arm.
    approve(&mut w, admin, 60 * MIN);
    assert!(matches!(w.ask(71 * MIN), Err(Refusal::NotSeen { .. })));
    // Nor does one issued before that liveness, delivered late.
    let g2 = admit(&mut w, Role::Guardian).id();
    approve(&mut w, g2, 60 * MIN + 30_000);
    assert!(matches!(w.ask(72 * MIN), Err(Refusal::NotSeen { .. })));
    // A new approval, for this boot, works once.
    approve(&mut w, admin, 73 * MIN);
    assert_eq!(w.ask(73 * MIN), Ok(()));
    assert!(w.g.owner(&w.owner.id()).unwrap().approvals.is_empty());
}

#[test]
fn an_approval_by_a_guardian_revoked_since_does_not_count() {
    let mut w = world();
    let g2 = admit(&mut w, Role::Guardian);
    approve(&mut w, g2.id(), 60 * MIN);
    // g2 turns out to be compromised and is revoked before web1 boots.
    revoke(&mut w, g2.id());
    assert!(matches!(w.ask(61 * MIN), Err(Refusal::NotSeen { .. })));
    // an active guardian's approval still works
    let admin = w.admin.id();
    approve(&mut w, admin, 62 * MIN);
    assert_eq!(w.ask(62 * MIN), Ok(()));
}

#[test]
fn two_approvals_needed_means_two_distinct_active_guardians() {
    let mut w = world();
    w.g.policy.approvals = 2;
    let admin = w.admin.id();
    let g2 = admit(&mut w, Role::Guardian).id();
    let aud = admit(&mut w, Role::Auditor).id();
    approve(&mut w, admin, 60 * MIN);
    assert!(matches!(w.ask(60 * MIN), Err(Refusal::NotSeen { .. })));
    // the same person approving twice is still one person
    approve(&mut w, admin, 61 * MIN);
    assert!(matches!(w.ask(61 * MIN), Err(Refusal::NotSeen { .. })));
    // an auditor is not an admin
    approve(&mut w, aud, 61 * MIN);
    assert!(matches!(w.ask(61 * MIN), Err(Refusal::NotSeen { .. })));
    approve(&mut w, g2, 62 * MIN);
    let acts = {
        let req = ShareRequest::new(w.owner.id(), w.g.me(), 7, &w.boot);
        let conn = w.conn();
        w.g.handle(
            Event::Request {
                id: 1,
                req,
                conn,
                at: 62 * MIN,
            },
            &w.roster,
        )
    };
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Log(d) if d.released && d.reason == "approved by 2 admins")));
    // both were used up by that boot
    assert!(w.g.owner(&w.owner.id()).unwrap().approvals.is_empty());
}

#[test]
fn a_deny_holds_until_enough_newer_approvals() {
    let mut w = world();
    w.g.policy.approvals = 2;
    let admin = w.admin.id();
    let g2 = admit(&mut w, Role::Guardian).id();
    approve(&mut w, g2, 59 * MIN);
    deny(&mut w, admin, 60 * MIN);
    assert!(matches!(w.ask(60 * MIN), Err(Refusal::Denied { .. })));
    // the approval older than the deny is void; one newer is not enough
    approve(&mut w, admin, 61 * MIN);
    assert!(matches!(w.ask(61 * MIN), Err(Refusal::Denied { .. })));
    approve(&mut w, g2, 62 * MIN);
    assert_eq!(w.ask(62 * MIN), Ok(()));
}

// ---- L3: a guardian that sees itself revoked ----

#[test]
fn a_revoked_guardian_refuses_deposits_and_share_requests() {
    let mut w = world();
    w.alive(0);
    w.bye(0);
    let me = w.g.me();
    revoke(&mut w, me);
    // Before the fix it released the share it still held.
    let e = w.ask(MIN).unwrap_err();
    assert_eq!(e, Refusal::GuardianRevoked);
    assert!(e.permanent() && e.to_string().contains("revoked"), "{e}");
    let acts = deposit_epoch(&mut w, 9);
    assert!(
        matches!(&acts[0], Action::RejectDeposit { reason, .. } if reason.contains("this guardian was revoked")),
        "{acts:?}"
    );
    // A guardian missing from its own roster answers nothing either.
    let mut w = world();
    w.alive(0);
    w.bye(0);
    let outsider = NodeKey::generate().id();
    w.g.me = outsider;
    let req = ShareRequest::new(w.owner.id(), outsider, 7, &w.boot);
    assert_eq!(own(&mut w, req, MIN), Err(Refusal::GuardianNotMember));
    assert!(matches!(
        &deposit_epoch(&mut w, 9)[0],
        Action::RejectDeposit { reason, .. } if reason.contains("not an active member")
    ));
}

// ---- L2: relayed and replayed requests ----

#[test]
fn a_replayed_request_is_refused() {
    let mut w = world();
    w.alive(0);
    w.bye(0);
    let captured = ShareRequest::new(w.owner.id(), w.g.me(), 7, &w.boot);
    assert_eq!(own(&mut w, captured.clone(), MIN), Ok(()));
    // The same bytes again, even on the owner's own boot-key connection.
    let e = own(&mut w, captured.clone(), MIN + 1).unwrap_err();
    assert_eq!(e, Refusal::Replayed);
    assert!(e.to_string().contains("replay"), "{e}");
    // A refused request's nonce is remembered as well.
    let (admin, r) = (w.admin.id(), w.roster.clone());
    w.g.handle(Event::Lockdown { by: admin, at: 1 }, &r);
    let r2 = ShareRequest::new(w.owner.id(), w.g.me(), 7, &w.boot);
    assert!(matches!(
        own(&mut w, r2.clone(), 2 * MIN),
        Err(Refusal::Lockdown { .. })
    ));
    w.g.handle(Event::Lift { by: admin, at: 2 }, &r);
    assert_eq!(own(&mut w, r2, 2 * MIN), Err(Refusal::Replayed));
    // a fresh request of the real client still works
    assert_eq!(w.ask(3 * MIN), Ok(()));
}

#[test]
fn a_relayed_request_is_refused_and_does_not_burn_the_nonce() {
    let mut w = world();
    w.alive(0);
    w.bye(0);
    let captured = ShareRequest::new(w.owner.id(), w.g.me(), 7, &w.boot);
    // Relayed by another peer (its own key authenticates the connection),
    // by the owner's node key, or on a non-ed25519 connection.
    for conn in [Some(NodeKey::generate().id()), Some(w.owner.id()), None] {
        let e = send(&mut w, captured.clone(), conn, MIN).unwrap_err();
        assert_eq!(e, Refusal::WrongConnection);
        assert!(e.permanent() && e.to_string().contains("relayed"), "{e}");
    }
    assert_eq!(own(&mut w, captured, MIN), Ok(()));
}

#[test]
fn remembered_nonces_stay_bounded_under_a_flood() {
    let mut w = world();
    for i in 0..(3 * MAX_NONCES) as u64 {
        let req = ShareRequest::new(w.owner.id(), w.g.me(), 7, &w.boot);
        let _ = own(&mut w, req, i);
    }
    assert_eq!(w.g.nonces[&w.owner.id()].len(), MAX_NONCES);
    // strangers and bad signatures leave nothing behind
    let stranger = BootKey::generate();
    let req = ShareRequest::new(NodeKey::generate().id(), w.g.me(), 7, &stranger);
    let conn = Some(NodeId(stranger.public().sign));
    assert_eq!(send(&mut w, req, conn, 0), Err(Refusal::NotMember));
    assert_eq!(w.g.nonces.len(), 1);
    // an owner's nonces go once they expired and another owner asks
    let other = BootKey::generate();
    let o2 = admit_with_boot(&mut w, Role::Guardian, &other);
    let req = ShareRequest::new(o2.id(), w.g.me(), 7, &other);
    let _ = send(
        &mut w,
        req,
        Some(NodeId(other.public().sign)),
        10 * NONCE_TTL,
    );
    assert!(!w.g.nonces.contains_key(&w.owner.id()));
    assert_eq!(w.g.nonces[&o2.id()].len(), 1);
}
