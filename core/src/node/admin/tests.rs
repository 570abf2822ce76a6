use super::*;
use crate::guardian::{Event, Guardian, Policy};
use crate::identity::NodeKey;
use crate::proto::AdminBody;
use crate::shares::{split, DiskSecret};
use crate::testkit::{mesh, TestMesh};

const NOW: Millis = 1_000_000_000;

fn msg(t: &TestMesh, signer: usize, kind: AdminKind, at: Millis) -> AdminMsg {
    AdminMsg::sign(
        AdminBody {
            mesh: t.mesh,
            kind,
            by: t.nodes[signer].key.id(),
            at,
        },
        &t.nodes[signer].key,
    )
}

fn guardian(t: &TestMesh, i: usize) -> Guardian {
    Guardian::new(t.nodes[i].key.id(), Policy::default())
}

/// Guardian `i` holding a share of node `owner`'s key: approvals are kept
/// only where the owner's shares are.
fn guardian_of(t: &TestMesh, i: usize, owner: usize) -> Guardian {
    let mut g = guardian(t, i);
    let o = &t.nodes[owner];
    let envs = split(
        &DiskSecret::generate(),
        1,
        &[t.nodes[i].key.id()],
        1,
        &o.key,
        &o.boot.public(),
    )
    .unwrap();
    let deposit = Event::Deposit {
        from: o.key.id(),
        envelope: Box::new(envs[0].clone()),
        at: NOW,
    };
    assert!(!g.handle(deposit, &t.roster).is_empty());
    assert!(g.owner(&o.key.id()).is_some());
    g
}

#[test]
fn admin_messages_dated_past_the_skew_bound_are_refused() {
    let t = mesh(3);
    let mut g = guardian(&t, 1);
    let mut s = AdminState::default();
    let far = msg(&t, 0, AdminKind::Lockdown, NOW + MAX_CLOCK_SKEW + 1000);
    assert!(matches!(
        s.apply(far, NOW, &t.roster, &mut g),
        Err(AdminRefusal::FromTheFuture { ahead_s: 121, .. })
    ));
    assert!(g.lockdown().is_none(), "a refused lockdown changes nothing");
    // Within the bound it is taken.
    let near = msg(&t, 0, AdminKind::Lockdown, NOW + MAX_CLOCK_SKEW);
    assert!(matches!(
        s.apply(near, NOW, &t.roster, &mut g),
        Ok(Applied::Lock { on: true, .. })
    ));
    assert!(g.lockdown().is_some());
}

#[test]
fn messages_from_strangers_or_forged_are_refused() {
    let t = mesh(3);
    let other = mesh(2);
    let mut g = guardian(&t, 1);
    let mut s = AdminState::default();
    // another mesh's member
    let m = msg(&other, 0, AdminKind::Lockdown, NOW);
    assert_eq!(
        s.apply(m, NOW, &t.roster, &mut g),
        Err(AdminRefusal::NotFromMember)
    );
    // signed by a key that is not the named signer's
    let mut m = msg(&t, 0, AdminKind::Lockdown, NOW);
    m.body.by = t.nodes[2].key.id();
    assert_eq!(
        s.apply(m, NOW, &t.roster, &mut g),
        Err(AdminRefusal::NotFromMember)
    );
    // a stranger to the roster
    let k = NodeKey::generate();
    let m = AdminMsg::sign(
        AdminBody {
            mesh: t.mesh,
            kind: AdminKind::Lockdown,
            by: k.id(),
            at: NOW,
        },
        &k,
    );
    assert_eq!(
        s.apply(m, NOW, &t.roster, &mut g),
        Err(AdminRefusal::NotFromMember)
    );
    assert!(g.lockdown().is_none());
}

/// A node that was away when an admin approved a boot learns of it from
/// a peer's sync answer; one past the approval window is not re-sent.
#[test]
fn sync_redelivers_approvals_within_the_window() {
    let t = mesh(3);
    let owner = t.nodes[2].key.id();
    let (mut ga, mut gb) = (guardian_of(&t, 0, 2), guardian_of(&t, 1, 2));
    let (mut a, mut b) = (AdminState::default(), AdminState::default());
    let window = Policy::default().approval_window;
    let old = msg(&t, 0, AdminKind::Deny { owner }, NOW - window - 1);
    let approve = msg(&t, 0, AdminKind::Approve { owner }, NOW);
    assert_eq!(
        a.apply(old, NOW, &t.roster, &mut ga),
        Ok(Applied::Decision {
            owner,
            by: t.nodes[0].key.id()
        })
    );
    a.apply(approve.clone(), NOW, &t.roster, &mut ga).unwrap();
    let lock = msg(&t, 1, AdminKind::Lockdown, NOW - window - 5);
    a.apply(lock.clone(), NOW, &t.roster, &mut ga).unwrap();

    let sent = a.for_sync(NOW + 1000, window);
    // the lock state always, the approval still in its window, not the
    // old denial
    assert_eq!(sent, vec![lock, approve.clone()]);
    for m in sent {
        b.apply(m, NOW + 1000, &t.roster, &mut gb).unwrap();
    }
    assert!(gb.lockdown().is_some());
    assert!(gb
        .owner(&owner)
        .unwrap()
        .approvals
        .contains_key(&t.nodes[0].key.id()));
    // delivered again (gossip and sync both): a repeat, no second write
    assert_eq!(
        b.apply(approve, NOW + 2000, &t.roster, &mut gb),
        Ok(Applied::Repeat)
    );
}

#[test]
fn a_lock_state_that_does_not_change_is_not_written_again() {
    let t = mesh(2);
    let mut g = guardian(&t, 1);
    let mut s = AdminState::default();
    let on = msg(&t, 0, AdminKind::Lockdown, NOW);
    assert!(matches!(
        s.apply(on.clone(), NOW, &t.roster, &mut g),
        Ok(Applied::Lock { on: true, .. })
    ));
    assert_eq!(
        s.apply(on, NOW, &t.roster, &mut g),
        Ok(Applied::LockUnchanged)
    );
    // an older lift does not undo a newer lockdown
    let old_lift = msg(&t, 0, AdminKind::Lift, NOW - 10);
    assert_eq!(
        s.apply(old_lift, NOW, &t.roster, &mut g),
        Ok(Applied::LockUnchanged)
    );
    assert!(g.lockdown().is_some());
    // the restored state is the one written
    let (_, lock) = AdminState::restore(s.lock_msg().cloned(), &t.roster);
    assert!(lock.is_some_and(|l| l.on));
}

#[test]
fn alerts_prove_themselves_and_count_once() {
    let t = mesh(3);
    let owner = &t.nodes[2];
    let author = &t.nodes[1];
    let mut g = guardian(&t, 0);
    let mut s = AdminState::default();
    let evidence =
        ShareRequest::with_nonce(owner.key.id(), author.key.id(), 1, [3; 16], &owner.boot);
    let alert = |evidence: ShareRequest, at| {
        msg(
            &t,
            1,
            AdminKind::Alert {
                owner: owner.key.id(),
                evidence,
            },
            at,
        )
    };
    let Ok(Applied::Alert(a)) = s.apply(alert(evidence.clone(), NOW), NOW, &t.roster, &mut g)
    else {
        panic!("alert not recorded")
    };
    assert_eq!(a.reported_by, Some(author.key.id()));
    assert!(a.text.contains("n2"), "{}", a.text);
    // the same evidence relayed again raises nothing
    assert_eq!(
        s.apply(alert(evidence, NOW + 5), NOW + 5, &t.roster, &mut g),
        Ok(Applied::AlertRepeat)
    );
    // evidence not signed by the owner's boot key: refused
    let forged =
        ShareRequest::with_nonce(owner.key.id(), author.key.id(), 1, [4; 16], &author.boot);
    assert!(matches!(
        s.apply(alert(forged, NOW), NOW, &t.roster, &mut g),
        Err(AdminRefusal::BadAlert(_))
    ));
    // evidence addressed to another guardian: refused
    let other =
        ShareRequest::with_nonce(owner.key.id(), t.nodes[0].key.id(), 1, [5; 16], &owner.boot);
    assert!(matches!(
        s.apply(alert(other, NOW), NOW, &t.roster, &mut g),
        Err(AdminRefusal::BadAlert(_))
    ));
    // too old
    let stale = ShareRequest::with_nonce(owner.key.id(), author.key.id(), 1, [6; 16], &owner.boot);
    assert!(matches!(
        s.apply(
            alert(stale, NOW - MAX_ALERT_AGE - 1),
            NOW,
            &t.roster,
            &mut g
        ),
        Err(AdminRefusal::BadAlert(_))
    ));
    assert_eq!(s.alerts().count(), 1);
}

#[test]
fn the_sync_digest_is_of_the_set_and_follows_every_change() {
    use crate::node::entropy::admin_digest;
    let t = mesh(4);
    let window = 600_000;
    let approve = |i: usize, at| {
        msg(
            &t,
            i,
            AdminKind::Approve {
                owner: t.nodes[3].key.id(),
            },
            at,
        )
    };
    let (a, b) = (approve(0, NOW), approve(1, NOW + 1000));
    let mut g = guardian(&t, 2);
    let (mut s1, mut s2) = (AdminState::default(), AdminState::default());
    let empty = s1.sync_digest(NOW, window);
    s1.apply(a.clone(), NOW, &t.roster, &mut g).unwrap();
    let one = s1.sync_digest(NOW + 1000, window);
    assert_ne!(one, empty, "a message taken changes the digest");
    s1.apply(b.clone(), NOW + 1000, &t.roster, &mut g).unwrap();
    // the same two messages in the other order: the same digest
    s2.apply(b.clone(), NOW + 1000, &t.roster, &mut g).unwrap();
    s2.apply(a.clone(), NOW + 1000, &t.roster, &mut g).unwrap();
    let both = s1.sync_digest(NOW + 2000, window);
    assert_eq!(both, s2.sync_digest(NOW + 2000, window));
    assert_eq!(both, admin_digest([&a, &b]));
    // asked again within the window: the same, as computed afresh
    assert_eq!(s1.sync_digest(NOW + window, window), both);
    // `a` leaves the window one millisecond later, `b` a second after
    let only_b = s1.sync_digest(NOW + window + 1, window);
    assert_eq!(only_b, admin_digest([&b]));
    assert_eq!(s1.sync_digest(NOW + window + 1001, window), empty);
    // the clock went back: both are in the window again
    assert_eq!(s1.sync_digest(NOW + 2000, window), both);
    // a lockdown taken is part of the set at once
    let l = msg(&t, 0, AdminKind::Lockdown, NOW + 3000);
    s1.apply(l.clone(), NOW + 3000, &t.roster, &mut g).unwrap();
    assert_eq!(
        s1.sync_digest(NOW + 3000, window),
        admin_digest([&l, &a, &b])
    );
}

#[test]
fn the_sync_digest_follows_a_new_window() {
    let t = mesh(3);
    let mut g = guardian(&t, 1);
    let mut s = AdminState::default();
    let a = msg(
        &t,
        0,
        AdminKind::Approve {
            owner: t.nodes[2].key.id(),
        },
        NOW,
    );
    s.apply(a, NOW, &t.roster, &mut g).unwrap();
    let wide = s.sync_digest(NOW + 5_000, 600_000);
    let narrow = s.sync_digest(NOW + 5_000, 1_000);
    assert_ne!(wide, narrow, "the approval is outside a 1 s window");
    assert_eq!(narrow, crate::node::entropy::admin_digest([]));
}

/// The recent approvals are the last [`MAX_RECENT_ADMIN`]: each of them
/// delivered again is a repeat, the one pushed out is taken anew.
#[test]
fn only_the_last_recent_approvals_are_repeats() {
    let t = mesh(3);
    let owner = t.nodes[2].key.id();
    let mut g = guardian_of(&t, 0, 2);
    let mut a = AdminState::default();
    let msgs: Vec<AdminMsg> = (0..=MAX_RECENT_ADMIN as u64)
        .map(|i| msg(&t, 0, AdminKind::Approve { owner }, NOW + i))
        .collect();
    for m in &msgs {
        let got = a.apply(m.clone(), NOW + 1000, &t.roster, &mut g);
        assert!(matches!(got, Ok(Applied::Decision { .. })), "{got:?}");
    }
    for m in &msgs[1..] {
        assert_eq!(
            a.apply(m.clone(), NOW + 1000, &t.roster, &mut g),
            Ok(Applied::Repeat)
        );
    }
    let got = a.apply(msgs[0].clone(), NOW + 1000, &t.roster, &mut g);
    assert!(matches!(got, Ok(Applied::Decision { .. })), "{got:?}");
    assert_eq!(a.recent.len(), MAX_RECENT_ADMIN);
}
