//! Unit and property tests of the membership rule, including the attacks of
//! a hostile member (issue: hardening H1, H2, H3, M2, M6, L7).

use proptest::prelude::*;

use super::*;
use crate::codec;
use crate::identity::{BootKey, BootPublic};

const MESH: MeshId = MeshId([3; 16]);

fn member(k: &NodeKey, name: &str) -> Member {
    member_as(k, name, Role::Guardian)
}

fn member_as(k: &NodeKey, name: &str, role: Role) -> Member {
    Member {
        id: k.id(),
        boot: BootKey::generate().public(),
        name: name.into(),
        role,
    }
}

/// `by` admits `m`, whose key `mk` signs its own claim.
fn admit_by(by: &NodeKey, mk: &NodeKey, m: Member) -> SignedOp {
    SignedOp::sign(
        OpBody::Admit {
            mesh: MESH,
            claim: m.claim(MESH, mk),
            member: m,
            invite: Some(serde_bytes::ByteArray::new([1; 32])),
            by: by.id(),
            at: 0,
        },
        by,
    )
}

fn admit(by: &NodeKey, mk: &NodeKey, name: &str) -> SignedOp {
    admit_by(by, mk, member(mk, name))
}

fn revoke(by: &NodeKey, node: NodeId) -> SignedOp {
    SignedOp::sign(
        OpBody::Revoke {
            mesh: MESH,
            node,
            by: by.id(),
            reason: "test".into(),
            at: 0,
        },
        by,
    )
}

fn rekey(k: &NodeKey, seq: u64, boot: &BootPublic) -> SignedOp {
    SignedOp::sign(
        OpBody::Rekey {
            mesh: MESH,
            node: k.id(),
            boot: boot.clone(),
            seq,
        },
        k,
    )
}

fn keys<const N: usize>() -> [NodeKey; N] {
    std::array::from_fn(|_| NodeKey::generate())
}

fn founded(f: &NodeKey) -> (Roster, SignedOp) {
    Roster::found("m", MESH, member(f, "f"), f)
}

#[test]
fn admissions_chain_and_order_does_not_matter() {
    let [a, b, c] = keys();
    let (mut r, found) = founded(&a);
    let ab = admit(&a, &b, "b");
    let bc = admit(&b, &c, "c");
    assert_eq!(r.merge(bc.clone()), Err(RosterError::UnknownSigner(b.id())));
    r.merge(ab.clone()).unwrap();
    r.merge(bc.clone()).unwrap();
    assert!(r.is_active(&c.id()));
    let mut r2 = Roster::default();
    let rep = r2.merge_all(vec![bc, ab, found]);
    assert_eq!(rep.new.len(), 3, "{:?}", rep.errors);
    assert_eq!(r.digest(), r2.digest());
    assert_eq!(r2.find("c").unwrap(), c.id());
    assert_eq!(r2.level(&c.id()), Some(2));
}

#[test]
fn rekey_replaces_the_boot_key_and_only_the_node_can_do_it() {
    let [a, b] = keys();
    let (mut r, _) = founded(&a);
    r.merge(admit(&a, &b, "b")).unwrap();
    let k1 = BootKey::generate().public();
    let k2 = BootKey::generate().public();
    r.merge(rekey(&b, 2, &k2)).unwrap();
    assert_eq!(r.merge(rekey(&b, 1, &k1)), Ok(Merged::Known));
    assert_eq!(
        r.member(&b.id()).unwrap().boot,
        k2,
        "highest seq wins whatever the order"
    );
    let mut forged = rekey(&b, 3, &k1);
    forged.sig = a.sign("roster op", &codec::signing_bytes(&forged.body));
    assert_eq!(r.merge(forged), Err(RosterError::BadSignature));
    assert_eq!(r.member(&b.id()).unwrap().boot, k2);
    assert_eq!(r.next_rekey_seq(&b.id()), 3);
}

#[test]
fn forged_and_foreign_ops_are_refused() {
    let [a, x, y] = keys();
    let (mut r, _) = founded(&a);
    assert!(matches!(
        r.merge(admit(&x, &y, "y")),
        Err(RosterError::UnknownSigner(_))
    ));
    let mut forged = admit(&x, &y, "y");
    if let OpBody::Admit { by, .. } = &mut forged.body {
        *by = a.id();
    }
    assert_eq!(r.merge(forged), Err(RosterError::BadSignature));
    let ym = member(&y, "y");
    let other = SignedOp::sign(
        OpBody::Admit {
            mesh: MeshId([4; 16]),
            claim: ym.claim(MeshId([4; 16]), &y),
            member: ym,
            invite: None,
            by: a.id(),
            at: 0,
        },
        &a,
    );
    assert!(matches!(r.merge(other), Err(RosterError::OtherMesh { .. })));
    assert!(!r.is_active(&y.id()));
}

#[test]
fn revocation_cascades_unless_re_endorsed() {
    let [a, b, c, d] = keys();
    let (mut r, _) = founded(&a);
    r.merge(admit(&a, &b, "b")).unwrap();
    r.merge(admit(&b, &c, "c")).unwrap();
    r.merge(admit(&a, &d, "d")).unwrap();
    assert_eq!(r.dependents_of(&b.id()), vec![c.id()]);
    // c re-endorsed by a (with c's own claim) before b goes
    let (cm, claim) = r.claim(&c.id()).unwrap();
    r.merge(SignedOp::sign(
        OpBody::Admit {
            mesh: MESH,
            member: cm,
            claim,
            invite: None,
            by: a.id(),
            at: 1,
        },
        &a,
    ))
    .unwrap();
    r.merge(revoke(&d, b.id())).unwrap();
    assert!(!r.is_active(&b.id()) && r.is_revoked(&b.id()));
    assert!(r.is_active(&c.id()));
    // re-admitting a revoked node does not bring it back
    r.merge(admit(&a, &b, "b2")).unwrap();
    assert!(!r.is_active(&b.id()));
    // a revoked node's admissions count for nothing
    let e = NodeKey::generate();
    r.merge(admit(&b, &e, "e")).unwrap();
    assert!(!r.is_active(&e.id()));
    assert_eq!(
        r.merge(revoke(&d, a.id())),
        Err(RosterError::FounderRevoke(a.id()))
    );
}

/// A node orphaned by the founder's revocation of the member that
/// admitted it (directly, or through a member that member admitted)
/// shows its admission chain from its stale roster; a member's roster
/// answers with the founder's revocation of that admitter, and merging
/// it ends the orphan's membership in its own roster. A chain with a
/// forged or foreign admission, or whose admitters stand, gets nothing.
#[test]
fn an_orphaned_node_learns_its_admitter_was_revoked() {
    let [f, h, x, o, d] = keys();
    let (mut stale, _) = founded(&f);
    for op in [
        admit(&f, &h, "h"),
        admit(&h, &x, "x"),
        admit(&h, &o, "o"),
        admit(&x, &d, "d"),
    ] {
        stale.merge(op).unwrap();
    }
    let mut now = stale.clone();
    let by_founder = revoke(&f, h.id());
    now.merge(by_founder.clone()).unwrap();
    for n in [h.id(), x.id(), o.id(), d.id()] {
        assert!(!now.is_active(&n) && stale.is_active(&n));
    }
    // members dropped what the revoked member signed: the orphans are
    // strangers to them, not revoked
    assert!(!now.is_revoked(&o.id()) && now.revocations_of(&o.id()).is_empty());

    for orphan in [&o, &d] {
        let chain = stale.admission_chain(&orphan.id());
        assert!(!chain.is_empty() && chain.len() <= MAX_CHAIN);
        let told = now.orphaning_revocations(&chain).unwrap();
        assert_eq!(told, vec![by_founder.clone()], "{}", orphan.id());
        let mut theirs = stale.clone();
        theirs.merge_all(told);
        assert!(
            !theirs.is_active(&orphan.id()),
            "still a member by its roster"
        );
        assert!(!theirs.is_active(&h.id()) && theirs.is_revoked(&h.id()));
    }

    // a forged admission (the signature does not match) is refused,
    // and so is a chain longer than any honest node sends
    let mut forged = stale.admission_chain(&o.id());
    forged[0].sig = revoke(&o, d.id()).sig;
    assert_eq!(
        now.orphaning_revocations(&forged),
        Err(ChainRefused::Forged(h.id()))
    );
    let long = vec![stale.admission_chain(&o.id())[0].clone(); MAX_CHAIN + 1];
    assert_eq!(
        now.orphaning_revocations(&long),
        Err(ChainRefused::TooLong(MAX_CHAIN + 1))
    );
    // nor one of another mesh
    let (other, om) = (MeshId([9; 16]), member(&o, "o"));
    let foreign = SignedOp::sign(
        OpBody::Admit {
            mesh: other,
            claim: om.claim(other, &o),
            member: om,
            invite: None,
            by: h.id(),
            at: 0,
        },
        &h,
    );
    assert_eq!(now.orphaning_revocations(&[foreign]), Ok(vec![]));
    // nor a chain whose admitters stand
    assert_eq!(
        now.orphaning_revocations(&now.admission_chain(&f.id())),
        Ok(vec![])
    );
    let e = NodeKey::generate();
    now.merge(admit(&f, &e, "e")).unwrap();
    assert_eq!(
        now.orphaning_revocations(&now.admission_chain(&e.id())),
        Ok(vec![])
    );
}

/// H1: an auditor (or any member) minting a guardian without an invite.
#[test]
fn auditors_admit_nobody_and_cannot_mint_a_guardian() {
    let [f, aud, minted] = keys();
    let (mut r, _) = founded(&f);
    r.merge(admit_by(&f, &aud, member_as(&aud, "aud", Role::Auditor)))
        .unwrap();
    let err = r.merge(admit(&aud, &minted, "minted")).unwrap_err();
    assert!(
        matches!(err, RosterError::NotAuthorised(ref why) if why.contains("auditors admit nobody")),
        "{err}"
    );
    assert!(!r.is_active(&minted.id()));
    // Even if such an op reached a roster some other way, resolving never
    // counts it: build the index by hand.
    let mut raw = (*r).clone();
    let v = admit(&aud, &minted, "minted").verify().unwrap();
    raw.insert(v);
    raw.recompute();
    assert!(!raw.is_active(&minted.id()));
}

/// M6: a member overwriting another member's record.
#[test]
fn nobody_but_the_member_can_write_its_record() {
    let [f, evil, victim] = keys();
    let (mut r, _) = founded(&f);
    r.merge(admit(&f, &evil, "evil")).unwrap();
    r.merge(admit(&f, &victim, "victim")).unwrap();
    let real = r.member(&victim.id()).unwrap().clone();
    // evil re-admits victim with its own boot key: the claim cannot be
    // made without victim's key.
    let mut forged_member = real.clone();
    forged_member.boot = BootKey::generate().public();
    forged_member.role = Role::Auditor;
    let forged = SignedOp::sign(
        OpBody::Admit {
            mesh: MESH,
            member: forged_member.clone(),
            // evil cannot sign as victim; any signature it makes is wrong
            claim: evil.sign("roster member claim", b"victim's record"),
            invite: None,
            by: evil.id(),
            at: 0,
        },
        &evil,
    );
    assert_eq!(r.merge(forged), Err(RosterError::BadClaim(victim.id())));
    // Reusing the victim's real claim with another record fails the same way.
    let (_, claim) = r.claim(&victim.id()).unwrap();
    let replay = SignedOp::sign(
        OpBody::Admit {
            mesh: MESH,
            member: forged_member,
            claim,
            invite: None,
            by: evil.id(),
            at: 0,
        },
        &evil,
    );
    assert_eq!(r.merge(replay), Err(RosterError::BadClaim(victim.id())));
    assert_eq!(r.member(&victim.id()), Some(&real));
}

/// H2: a member filling the roster with its own rekeys.
#[test]
fn a_rekey_flood_keeps_one_op_and_revocation_still_works() {
    let [f, evil, honest] = keys();
    let (mut r, _) = founded(&f);
    r.merge(admit(&f, &evil, "evil")).unwrap();
    r.merge(admit(&f, &honest, "honest")).unwrap();
    let boot = BootKey::generate().public();
    let flood: Vec<SignedOp> = (1..=20_000).map(|s| rekey(&evil, s, &boot)).collect();
    let before = r.len_ops();
    let rep = r.merge_all(flood);
    assert_eq!(r.len_ops(), before + 1, "superseded rekeys are not kept");
    assert!(rep.errors.is_empty());
    r.merge(revoke(&honest, evil.id())).unwrap();
    assert!(r.is_revoked(&evil.id()));
}

/// H2 with sybils: the flood is cut to a fair share, and an honest
/// member's revocation is never refused or cut.
#[test]
fn a_sybil_flood_cannot_refuse_a_revocation() {
    let [f, evil, honest] = keys();
    let (mut r, _) = founded(&f);
    r.merge(admit(&f, &evil, "evil")).unwrap();
    r.merge(admit(&f, &honest, "honest")).unwrap();
    // evil mints 64 sybils, each revoking 600 fresh ids... of sybils.
    let sybils: Vec<NodeKey> = (0..64).map(|_| NodeKey::generate()).collect();
    let mut ops: Vec<SignedOp> = sybils
        .iter()
        .enumerate()
        .map(|(i, s)| admit(&evil, s, &format!("s{i}")))
        .collect();
    // each sybil admits 600 more (chained minting)
    let mut minted = vec![];
    for (i, s) in sybils.iter().enumerate() {
        for j in 0..600 {
            let k = NodeKey::generate();
            ops.push(admit(s, &k, &format!("m{i}-{j}")));
            minted.push(k.id());
        }
    }
    r.merge_all(ops);
    // the cap, plus the founding op and the founder's own two admissions
    assert!(r.len_ops() <= MAX_OPS + 3, "held {}", r.len_ops());
    let rep = r.merge_all(vec![revoke(&honest, evil.id())]);
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert!(r.is_revoked(&evil.id()));
    // Revoking evil drops its sybils and what they minted.
    assert!(sybils.iter().all(|s| !r.is_active(&s.id())));
    assert!(minted.iter().all(|m| !r.is_active(m)));
    // The founder's revocation compacts the flood away for good.
    r.merge(revoke(&f, evil.id())).unwrap();
    assert!(r.len_ops() <= 5, "held {}", r.len_ops());
}

/// M2: a revoked member's revocations count for nothing, and a member
/// cannot undo its revoker by revoking it back.
#[test]
fn a_revoked_members_revocations_count_for_nothing() {
    let [f, a, evil, c, d] = keys();
    let (mut r, _) = founded(&f);
    for (k, n) in [(&a, "a"), (&evil, "evil"), (&c, "c"), (&d, "d")] {
        r.merge(admit(&f, k, n)).unwrap();
    }
    // evil revokes everyone it can, pre-emptively.
    for k in [&a, &c, &d] {
        r.merge(revoke(&evil, k.id())).unwrap();
    }
    assert!(!r.is_active(&a.id()) && !r.is_active(&c.id()));
    // The founder revokes evil: everything evil signed is void.
    r.merge(revoke(&f, evil.id())).unwrap();
    assert!(r.is_revoked(&evil.id()));
    for k in [&a, &c, &d] {
        assert!(r.is_active(&k.id()), "restored");
    }
}

#[test]
fn revoking_your_revoker_does_not_save_you() {
    let [f, a, evil] = keys();
    let (mut r, _) = founded(&f);
    r.merge(admit(&f, &a, "a")).unwrap();
    r.merge(admit(&a, &evil, "evil")).unwrap(); // evil is junior to a
    r.merge(revoke(&a, evil.id())).unwrap();
    r.merge(revoke(&evil, a.id())).unwrap();
    assert!(r.is_revoked(&evil.id()));
    assert!(r.is_active(&a.id()), "a junior cannot revoke its senior");
    assert!(!r.may_revoke(&evil.id(), &a.id()));
    // Between equals a standoff removes both, until a senior decides.
    let [g, h] = keys();
    r.merge(admit(&f, &g, "g")).unwrap();
    r.merge(admit(&f, &h, "h")).unwrap();
    r.merge(revoke(&g, h.id())).unwrap();
    r.merge(revoke(&h, g.id())).unwrap();
    assert!(!r.is_active(&g.id()) && !r.is_active(&h.id()));
    r.merge(revoke(&f, h.id())).unwrap();
    assert!(r.is_active(&g.id()) && !r.is_active(&h.id()));
}

#[test]
fn an_id_is_admitted_once_and_keeps_its_claimed_role() {
    let [f, g, aud] = keys();
    let (mut r, _) = founded(&f);
    r.merge(admit(&f, &g, "g")).unwrap();
    let am = member_as(&aud, "aud", Role::Auditor);
    r.merge(admit_by(&f, &aud, am.clone())).unwrap();
    // g endorses aud with aud's real claim: the role stays auditor.
    let (m, claim) = r.claim(&aud.id()).unwrap();
    r.merge(SignedOp::sign(
        OpBody::Admit {
            mesh: MESH,
            member: m,
            claim,
            invite: None,
            by: g.id(),
            at: 0,
        },
        &g,
    ))
    .unwrap();
    assert_eq!(r.member(&aud.id()).unwrap().role, Role::Auditor);
}

/// H3: a long chain merges in one pass whatever the order.
#[test]
fn a_reversed_chain_merges_in_one_batch() {
    let [f] = keys();
    let (mut r, found) = founded(&f);
    let mut prev = f;
    let mut chain = vec![];
    for i in 0..1200 {
        let k = NodeKey::generate();
        chain.push(admit(&prev, &k, &format!("n{i}")));
        prev = k;
    }
    chain.reverse();
    let rep = r.merge_all(chain.clone());
    assert!(rep.errors.is_empty(), "{:?}", &rep.errors[..1]);
    assert!(r.is_active(&prev.id()));
    let mut r2 = Roster::default();
    chain.push(found);
    r2.merge_all(chain);
    assert_eq!(r.digest(), r2.digest());
}

#[test]
fn endorsements_per_member_are_bounded() {
    let [f, v] = keys();
    let (mut r, _) = founded(&f);
    r.merge(admit(&f, &v, "v")).unwrap();
    let others: Vec<NodeKey> = (0..10).map(|_| NodeKey::generate()).collect();
    for (i, o) in others.iter().enumerate() {
        r.merge(admit(&f, o, &format!("o{i}"))).unwrap();
    }
    let (m, claim) = r.claim(&v.id()).unwrap();
    for o in &others {
        let _ = r.merge(SignedOp::sign(
            OpBody::Admit {
                mesh: MESH,
                member: m.clone(),
                claim,
                invite: None,
                by: o.id(),
                at: 0,
            },
            o,
        ));
    }
    assert_eq!(r.admits_of[&v.id()].len(), 1 + MAX_ENDORSEMENTS);
}

// ---- property: random honest and hostile interleavings converge ----

#[derive(Clone, Debug)]
enum Step {
    Admit { by: usize, who: usize },
    Revoke { by: usize, who: usize },
    Rekey { who: usize, seq: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..8usize, 1..8usize).prop_map(|(by, who)| Step::Admit { by, who }),
        (0..8usize, 0..8usize).prop_map(|(by, who)| Step::Revoke { by, who }),
        (0..8usize, 0..4u64).prop_map(|(who, seq)| Step::Rekey { who, seq }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_interleaving_converges_and_obeys_the_rules(
        steps in proptest::collection::vec(step(), 1..40),
        roles in proptest::collection::vec(any::<bool>(), 8),
        order in Just(()).prop_perturb(|_, mut rng| rng.next_u64()),
    ) {
        // Node 0 founds; nodes 1.. claim a role each. Every op anyone could
        // sign is signed (honest or not), then delivered in two orders.
        let ks: Vec<NodeKey> = (0..8).map(|_| NodeKey::generate()).collect();
        let boots: Vec<BootPublic> = (0..8).map(|_| BootKey::generate().public()).collect();
        let ms: Vec<Member> = (0..8).map(|i| Member {
            id: ks[i].id(),
            boot: boots[i].clone(),
            name: format!("n{i}"),
            role: if i == 0 || roles[i] { Role::Guardian } else { Role::Auditor },
        }).collect();
        let (_, found) = Roster::found("m", MESH, ms[0].clone(), &ks[0]);
        let mut ops = vec![found];
        for s in &steps {
            ops.push(match *s {
                Step::Admit { by, who } => SignedOp::sign(OpBody::Admit {
                    mesh: MESH, member: ms[who].clone(), claim: ms[who].claim(MESH, &ks[who]),
                    invite: None, by: ks[by].id(), at: 0 }, &ks[by]),
                Step::Revoke { by, who } => revoke(&ks[by], ks[who].id()),
                Step::Rekey { who, seq } => rekey(&ks[who], seq, &BootKey::generate().public()),
            });
        }
        let mut fwd = Roster::default();
        for o in &ops {
            let _ = fwd.merge(o.clone());
        }
        // A different order, one op at a time, then a full sync both ways.
        let mut shuffled = ops.clone();
        let mut x = order;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut other = Roster::default();
        for o in &shuffled {
            let _ = other.merge(o.clone());
        }
        // The same two orders through one shared memo, one op at a time:
        // every report and state as without it (the second order finds
        // the first's states, live in the memo, by their digest).
        let memo = MergeMemo::default();
        for order in [&ops, &shuffled] {
            let (mut shared, mut plain) = (Roster::default(), Roster::default());
            for o in order.iter() {
                let r = shared.merge_shared(vec![o.clone()], vec![], &memo);
                let p = plain.merge_all(vec![o.clone()]);
                let ids = |r: &MergeReport| r.new.iter().map(|o| o.id()).collect::<BTreeSet<_>>();
                prop_assert_eq!(ids(&r), ids(&p));
                prop_assert_eq!(&r.dropped, &p.dropped);
                prop_assert_eq!(&r.errors, &p.errors);
                prop_assert_eq!((&r.joined, &r.left), (&p.joined, &p.left));
                prop_assert_eq!(shared.digest(), plain.digest());
            }
            // and a roster loading all of it at once, founding included
            let mut load = Roster::default();
            let r = load.merge_shared(shared.ops(), vec![], &memo);
            prop_assert!(r.errors.is_empty());
            prop_assert_eq!(load.digest(), shared.digest());
        }
        other.merge_all(fwd.ops());
        fwd.merge_all(other.ops());
        prop_assert_eq!(fwd.digest(), other.digest());
        let a: Vec<_> = fwd.members().cloned().collect();
        let b: Vec<_> = other.members().cloned().collect();
        prop_assert_eq!(&a, &b);
        // Authorisation: every active non-founder was admitted by an active
        // guardian at the level above, with the record it claimed itself.
        for m in fwd.members() {
            prop_assert_eq!(&m.name, &ms.iter().find(|x| x.id == m.id).unwrap().name);
            if m.id == ks[0].id() { continue; }
            let lvl = fwd.level(&m.id).unwrap();
            let ok = fwd.admits_of[&m.id].iter().any(|id| {
                let by = fwd.ops[id].body.signer();
                fwd.member(&by).is_some_and(|b| b.role == Role::Guardian)
                    && fwd.level(&by) == Some(lvl - 1)
            });
            prop_assert!(ok, "{} active without an authorised admission", m.name);
        }
        // The founder's revocations always take effect (those of a node
        // not yet admitted when they arrived are refused, as the CLI
        // never signs one).
        for o in &fwd.ops() {
            if let OpBody::Revoke { node, by, .. } = &o.body {
                if *by == ks[0].id() && *node != ks[0].id() {
                    prop_assert!(!fwd.is_active(node));
                }
            }
        }
    }
}

/// The simulator's merge memo: a roster in the same state merging the
/// same batch takes the first one's result, and shares its state; a
/// roster in another state, or merging another batch, computes its own;
/// a forged op is refused alike from the memo.
#[test]
fn the_merge_memo_shares_states_and_changes_no_outcome() {
    let [f, a, b] = keys();
    let (r0, _) = founded(&f);
    let memo = MergeMemo::default();
    let batch = vec![admit(&f, &a, "a")];
    let (mut x, mut y, mut plain) = (r0.clone(), r0.clone(), r0.clone());
    let held = batch.clone();
    let rx = x.merge_shared(batch.clone(), vec![], &memo);
    assert_eq!(memo.len(), 1);
    let ry = y.merge_shared(batch.clone(), vec![], &memo);
    assert_eq!(memo.len(), 1, "the second took the first's result");
    let rp = plain.merge_all(batch);
    for r in [&rx, &ry] {
        assert_eq!(r.new.len(), rp.new.len());
        assert_eq!(r.errors, rp.errors);
    }
    assert!(std::ptr::eq(&*x, &*y), "one state, shared");
    assert_eq!(x.digest(), plain.digest());
    assert!(x.is_active(&a.id()) && y.is_active(&a.id()));
    // nothing new: no entry, no change
    let again = x.merge_shared(held, vec![], &memo);
    assert!(again.new.is_empty() && again.errors.is_empty());
    assert_eq!(memo.len(), 1);
    // another batch from the same state: its own entry
    let mut z = r0.clone();
    z.merge_shared(vec![admit(&f, &b, "b")], vec![], &memo);
    assert_eq!(memo.len(), 2);
    assert!(z.is_active(&b.id()) && !z.is_active(&a.id()));
    // a forged op: refused from the memo as when computed
    let mut forged = admit(&f, &b, "b2");
    forged.sig.0[0] ^= 1;
    let (mut p, mut q) = (r0.clone(), r0.clone());
    let e1 = p.merge_shared(vec![forged.clone()], vec![], &memo);
    let e2 = q.merge_shared(vec![forged], vec![], &memo);
    assert_eq!(e1.errors, vec![RosterError::BadSignature]);
    assert_eq!(e2.errors, e1.errors);
    assert!(!q.is_active(&b.id()));
}

#[test]
fn rosters_that_reach_the_same_operations_by_other_batches_share_one_state() {
    let [f, a, b] = keys();
    let (r0, _) = founded(&f);
    let memo = MergeMemo::default();
    let (oa, ob) = (admit(&f, &a, "a"), admit(&f, &b, "b"));
    // x takes both in one merge, y one after the other
    let (mut x, mut y) = (r0.clone(), r0.clone());
    x.merge_shared(vec![oa.clone(), ob.clone()], vec![], &memo);
    y.merge_shared(vec![oa], vec![], &memo);
    assert!(!std::ptr::eq(&*x, &*y));
    y.merge_shared(vec![ob], vec![], &memo);
    assert_eq!(x.digest(), y.digest());
    assert!(std::ptr::eq(&*x, &*y), "one state, shared");
    assert!(y.is_active(&a.id()) && y.is_active(&b.id()));
}

/// A roster that catches up by a batch of its own, which no memo entry
/// has, takes the state another roster holds with exactly those
/// operations, and the report a merge would have given.
#[test]
fn catching_up_to_a_state_held_elsewhere_takes_it_with_the_merges_report() {
    let [f, a, b] = keys();
    let (r0, _) = founded(&f);
    let memo = MergeMemo::default();
    let (oa, ob) = (admit(&f, &a, "a"), admit(&f, &b, "b"));
    let mut ahead = r0.clone();
    ahead.merge_shared(vec![oa.clone()], vec![], &memo);
    ahead.merge_shared(vec![ob.clone()], vec![], &memo);
    // behind holds only ob (say, from a sync) and now gets oa
    let mut behind = r0.clone();
    behind.merge_shared(vec![ob.clone()], vec![], &memo);
    let entries = memo.len();
    let mut plain = behind.clone();
    let rep = behind.merge_shared(vec![oa.clone()], vec![], &memo);
    assert!(std::ptr::eq(&*behind, &*ahead), "the state held ahead");
    let want = plain.merge_all(vec![oa.clone()]);
    assert_eq!(
        rep.new.iter().map(SignedOp::id).collect::<Vec<_>>(),
        vec![oa.id()]
    );
    assert_eq!((rep.joined, rep.left), (want.joined, want.left));
    assert!(rep.dropped.is_empty() && rep.errors.is_empty());
    assert_eq!(memo.len(), entries + 1, "kept for the next one");
    assert_eq!(plain.digest(), behind.digest());
    // a roster loaded from scratch (founding and all) takes it too
    let mut fresh = Roster::default();
    let all = ahead.ops();
    let rep = fresh.merge_shared(all.clone(), vec![], &memo);
    assert!(std::ptr::eq(&*fresh, &*ahead));
    assert_eq!(rep.new.len(), all.len());
    assert_eq!(rep.joined.len(), 3);
    // a batch that ends somewhere no one is: computed as before
    let (k, _) = founded(&NodeKey::generate());
    let mut alone = k.clone();
    let r = alone.merge_shared(vec![admit(&f, &a, "a")], vec![], &memo);
    assert!(!r.errors.is_empty() && !std::ptr::eq(&*alone, &*ahead));
}
