//! Anti-entropy: a difference costs a few small answers, not the roster;
//! admin messages travel only when the two sides' differ; a hostile
//! answerer cannot make a node descend without end.

use serde_bytes::ByteArray;

use super::*;
use crate::control::CtlRequest;
use crate::node::entropy::MAX_DESCENT;
use crate::roster::reconcile::{self, LEAF_OPS};
use crate::testkit::mesh;

fn sync(digest: [u8; 32], prefix: Vec<u8>, admin: Option<[u8; 32]>) -> Request {
    Request::Sync {
        digest: ByteArray::new(digest),
        prefix,
        admin: admin.map(ByteArray::new),
        want: vec![],
        all: false,
        admitted: vec![],
    }
}

/// A whole-roster sync that shows the sender's admission chain.
fn sync_with_chain(digest: [u8; 32], chain: Vec<SignedOp>) -> Request {
    let mut req = sync(digest, vec![], None);
    if let Request::Sync { admitted, .. } = &mut req {
        *admitted = chain;
    }
    req
}

/// `by`'s admission of the (not yet member) `node`.
fn admission(
    mesh: crate::roster::MeshId,
    by: &crate::identity::NodeKey,
    node: &TestNode,
) -> SignedOp {
    SignedOp::sign(
        crate::roster::OpBody::Admit {
            mesh,
            member: node.member(),
            claim: node.member().claim(mesh, &node.key),
            invite: None,
            by: by.id(),
            at: 0,
        },
        by,
    )
}

/// `by`'s revocation of `node`.
fn revocation(
    mesh: crate::roster::MeshId,
    by: &crate::identity::NodeKey,
    node: NodeId,
) -> SignedOp {
    SignedOp::sign(
        crate::roster::OpBody::Revoke {
            mesh,
            node,
            by: by.id(),
            reason: "retired".into(),
            at: 0,
        },
        by,
    )
}

/// Nodes 0 and 1 of a 200-member mesh; node 1 lacks one admission.
fn one_missing() -> (Net, SignedOp) {
    let t = mesh(200);
    let ops = t.roster.ops();
    let missing = ops[150].clone();
    let fewer: Vec<SignedOp> = ops
        .iter()
        .filter(|o| o.id() != missing.id())
        .cloned()
        .collect();
    let mut nodes = t.nodes.into_iter();
    let (a, b) = (nodes.next().unwrap(), nodes.next().unwrap());
    (Net::new(vec![(a, ops), (b, fewer)]), missing)
}

#[test]
fn a_missed_operation_comes_back_in_two_small_answers() {
    let (mut net, missing) = one_missing();
    let asker = net.peers[1].id();
    let theirs = net.peers[1].node.roster().clone();
    assert_ne!(theirs.digest(), net.peers[0].node.roster().digest());
    // the whole-roster round: sixteen digests, no operation
    let Some(Response::Roster { ops, children, .. }) =
        net.ask(0, asker, sync(theirs.digest(), vec![], None))
    else {
        panic!("no roster answer")
    };
    assert!(
        ops.is_empty(),
        "{} ops in a round that differs by one",
        ops.len()
    );
    let children: Vec<[u8; 32]> = children.iter().map(|c| c.into_array()).collect();
    let differ = reconcile::differing(&theirs, &[], &children);
    assert_eq!(differ.len(), 1, "one child differs");
    // under it: ~200/16 operations, sent as they are, the missing one among them
    let (prefix, digest) = differ[0].clone();
    let Some(Response::Roster { ops, children, .. }) =
        net.ask(0, asker, sync(digest, prefix, None))
    else {
        panic!("no roster answer")
    };
    assert!(
        children.is_empty() && ops.len() <= LEAF_OPS,
        "{} ops",
        ops.len()
    );
    assert!(ops.iter().any(|o| o.id() == missing.id()));
    // equal digests: an empty answer
    let Some(Response::Roster { ops, children, .. }) = net.ask(
        0,
        asker,
        sync(net.peers[0].node.roster().digest(), vec![], None),
    ) else {
        panic!("no roster answer")
    };
    assert!(ops.is_empty() && children.is_empty());
    // a prefix that is no trie path is refused
    assert!(matches!(
        net.ask(0, asker, sync([0; 32], vec![16], None)),
        Some(Response::Refused { .. })
    ));
}

#[test]
fn two_nodes_that_connect_converge_by_descent() {
    let (mut net, missing) = one_missing();
    net.connect(0, 1);
    assert!(net.peers[1].node.roster().knows(&missing.id()));
    assert_eq!(
        net.peers[0].node.roster().digest(),
        net.peers[1].node.roster().digest()
    );
    // a round, two descents' worth of syncs, not the whole roster
    let syncs = net.peers[1]
        .trace
        .iter()
        .filter(|k| *k == "send:sync")
        .count();
    assert!(
        (2..=4).contains(&syncs),
        "{syncs} syncs: {:?}",
        net.peers[1].trace
    );
}

/// Three operations missed, under three different branches of the trie:
/// they come in three descent answers and are merged once, together (one
/// write), not one at a time into states no other node holds.
#[test]
fn a_rounds_answers_are_merged_together_once_the_last_is_in() {
    let t = mesh(200);
    let ops = t.roster.ops();
    let mut missing: Vec<SignedOp> = vec![];
    for o in &ops[1..] {
        let first = o.id()[0] >> 4;
        if missing.iter().all(|m| m.id()[0] >> 4 != first) {
            missing.push(o.clone());
        }
        if missing.len() == 3 {
            break;
        }
    }
    let gone: BTreeSet<_> = missing.iter().map(|o| o.id()).collect();
    let fewer: Vec<SignedOp> = ops
        .iter()
        .filter(|o| !gone.contains(&o.id()))
        .cloned()
        .collect();
    let mut nodes = t.nodes.into_iter();
    let (a, b) = (nodes.next().unwrap(), nodes.next().unwrap());
    let mut net = Net::new(vec![(a, ops), (b, fewer)]);
    net.connect(0, 1);
    for m in &missing {
        assert!(net.peers[1].node.roster().knows(&m.id()));
    }
    let trace = &net.peers[1].trace;
    let syncs = trace.iter().filter(|k| *k == "send:sync").count();
    let writes = trace
        .iter()
        .filter(|k| *k == "write:roster operations")
        .count();
    assert!(syncs >= 4, "a round and three descents: {trace:?}");
    assert_eq!(writes, 1, "one merge: {trace:?}");
}

#[test]
fn admin_messages_come_back_only_when_the_sides_differ() {
    let mut net = Net::mesh(mesh(3));
    net.peers[1].down = true;
    net.peers[2].down = true;
    ok(net.control(0, CtlRequest::Lockdown));
    let asker = net.peers[1].id();
    let digest = net.peers[0].node.roster().digest();
    let Some(Response::Roster { admin, .. }) = net.ask(0, asker, sync(digest, vec![], None)) else {
        panic!("no roster answer")
    };
    assert_eq!(admin.len(), 1, "the lockdown, to an asker that has none");
    let same = crate::node::entropy::admin_digest(&admin);
    let Some(Response::Roster { admin, .. }) = net.ask(0, asker, sync(digest, vec![], Some(same)))
    else {
        panic!("no roster answer")
    };
    assert!(admin.is_empty(), "the asker holds the same messages");
}

#[test]
fn a_hostile_answerer_cannot_make_a_node_descend_without_end() {
    let t = mesh(40);
    let ops = t.roster.ops();
    let hostile = t.nodes[1].key.id();
    let mut nodes = t.nodes.into_iter();
    let mut net = Net::new(vec![(nodes.next().unwrap(), ops)]);
    let now = net.clock(0);
    let node = &mut net.peers[0].node;
    node.handle(now, Input::Connected { peer: hostile });
    let (mut rounds, mut descents, mut whole) = (0, 0, 0);
    let mut noise = 0u8;
    for _ in 0..10_000 {
        let Some(o) = node.poll_output() else { break };
        let Output::Send { id, to, req } = o else {
            continue;
        };
        assert_eq!(to, hostile);
        let Request::Sync { prefix, all, .. } = req else {
            continue;
        };
        match (prefix.is_empty(), all) {
            (true, false) => rounds += 1,
            (true, true) => whole += 1,
            (false, _) => descents += 1,
        }
        // sixteen digests that never match, at every level
        let children = (0..16)
            .map(|_| {
                noise = noise.wrapping_add(1);
                ByteArray::new([noise; 32])
            })
            .collect();
        let response = Response::Roster {
            ops: vec![],
            admin: vec![],
            records: vec![],
            held: vec![],
            children,
        };
        node.handle(
            now,
            Input::Response {
                id,
                from: hostile,
                result: Ok(response),
            },
        );
    }
    assert_eq!(rounds, 1);
    assert!(descents <= MAX_DESCENT as usize, "{descents} descents");
    assert!(whole <= 1, "the whole roster asked {whole} times");
}

/// A node revoked while it was away hears no gossip and no member syncs
/// with it; when it asks to sync it is answered with what revokes it, and
/// no more (no roster, no admin messages), so it learns it is out. A
/// stranger is still refused.
#[test]
fn a_revoked_node_asking_to_sync_is_answered_with_its_revocation() {
    let t = mesh(5);
    let founder = &t.nodes[0];
    let out = t.nodes[1].key.id();
    let revoke = revocation(t.mesh, &founder.key, out);
    let before = t.roster.ops();
    let mut after = before.clone();
    after.push(revoke.clone());
    let mut nodes = t.nodes.into_iter();
    let (a, b) = (nodes.next().unwrap(), nodes.next().unwrap());
    let mut net = Net::new(vec![(a, after), (b, before)]);
    assert!(net.peers[0].node.roster().is_revoked(&out));
    let digest = net.peers[1].node.roster().digest();
    let Some(Response::Roster {
        ops,
        admin,
        held,
        children,
        ..
    }) = net.ask(0, out, sync(digest, vec![], None))
    else {
        panic!("no roster answer")
    };
    assert_eq!(ops, vec![revoke]);
    assert!(admin.is_empty() && held.is_empty() && children.is_empty());
    // end to end: its own round brings the revocation home
    assert!(!net.peers[1].node.roster().is_revoked(&out));
    net.connect(0, 1);
    for _ in 0..20 {
        net.advance(30_000);
        if net.peers[1].node.roster().is_revoked(&out) {
            break;
        }
    }
    assert!(
        net.peers[1].node.roster().is_revoked(&out),
        "the revoked node never learnt it is out"
    );
    // a stranger, never a member, gets nothing
    let s = stranger("s");
    assert!(matches!(
        net.ask(0, s.key.id(), sync(digest, vec![], None)),
        Some(Response::Refused { .. })
    ));
}

/// A node out of the mesh only because the founder revoked the member
/// that admitted it (`revoke --cascade`) is a stranger to members: its
/// sync is refused, so it asks again with its admission chain, is
/// answered with the founder's revocation of its admitter, and by its own
/// roster is out (before, it kept its old roster, the revoked admitter
/// active in it, for good). A stranger showing a chain of standing
/// admitters is still refused.
#[test]
fn an_orphaned_node_learns_it_is_out_from_its_refused_sync() {
    let t = mesh(3);
    let (founder, h) = (&t.nodes[0], &t.nodes[1]);
    let orphan = stranger("o");
    let (o, h_id) = (orphan.key.id(), h.key.id());
    let admit_o = admission(t.mesh, &h.key, &orphan);
    let revoke_h = revocation(t.mesh, &founder.key, h_id);
    let mut stale = t.roster.ops();
    stale.push(admit_o);
    let mut after = stale.clone();
    after.push(revoke_h.clone());
    let mut nodes = t.nodes.into_iter();
    let mut net = Net::new(vec![(nodes.next().unwrap(), after), (orphan, stale)]);
    let (member, orphaned) = (net.peers[0].node.roster(), net.peers[1].node.roster());
    assert!(!member.is_active(&o) && !member.is_revoked(&o));
    assert!(orphaned.is_active(&o) && orphaned.is_active(&h_id));
    let digest = orphaned.digest();
    let chain = orphaned.admission_chain(&o);

    // a plain sync is refused; one with the chain gets the revocation
    assert!(matches!(
        net.ask(0, o, sync(digest, vec![], None)),
        Some(Response::Refused { .. })
    ));
    let proving = sync_with_chain(digest, chain);
    let Some(Response::Roster { ops, admin, .. }) = net.ask(0, o, proving) else {
        panic!("no roster answer to the chain")
    };
    assert_eq!(ops, vec![revoke_h]);
    assert!(admin.is_empty());

    // end to end: the orphan's own round brings the revocation home
    net.connect(0, 1);
    for _ in 0..20 {
        net.advance(30_000);
        if !net.peers[1].node.roster().is_active(&o) {
            break;
        }
    }
    let theirs = net.peers[1].node.roster();
    assert!(!theirs.is_active(&o), "the orphan never learnt it is out");
    assert!(theirs.is_revoked(&h_id));
    assert!(
        !net.peers[0]
            .notes
            .iter()
            .any(|n| matches!(n, Note::Strike { .. })),
        "an honest orphan's chain is no strike"
    );

    // a stranger whose admitters stand learns nothing
    let s = stranger("s");
    let standing = sync_with_chain(
        digest,
        net.peers[0]
            .node
            .roster()
            .admission_chain(&net.peers[0].id()),
    );
    assert!(matches!(
        net.ask(0, s.key.id(), standing),
        Some(Response::Refused { .. })
    ));
}

/// A stranger cannot keep a member checking signatures: a chain whose
/// admission, in the name of a member the founder revoked, does not
/// verify, or one longer than any honest node sends, is refused as what
/// it is and counted as a strike; after `MAX_STRIKES` the stranger is cut
/// off. It learns no revocation. (Before, every such sync cost up to
/// sixteen signature checks and was only refused.)
#[test]
fn a_stranger_sending_forged_admission_chains_is_struck_and_cut_off() {
    use crate::node::peers::MAX_STRIKES;
    let t = mesh(3);
    let (founder, h) = (&t.nodes[0], &t.nodes[1]);
    let forger = stranger("x");
    let (x, h_id) = (forger.key.id(), h.key.id());
    // an admission in h's name whose signature does not verify
    let mut forged = admission(t.mesh, &h.key, &forger);
    forged.sig.0[0] ^= 1;
    let mut ops = t.roster.ops();
    ops.push(revocation(t.mesh, &founder.key, h_id));
    let mut nodes = t.nodes.into_iter();
    let mut net = Net::new(vec![(nodes.next().unwrap(), ops)]);
    let digest = net.peers[0].node.roster().digest();

    for i in 0..MAX_STRIKES {
        let chain = if i % 2 == 0 {
            vec![forged.clone()]
        } else {
            vec![forged.clone(); crate::roster::MAX_CHAIN + 1]
        };
        let Some(Response::Refused { reason }) = net.ask(0, x, sync_with_chain(digest, chain))
        else {
            panic!("a forged chain was not refused")
        };
        let what = if i % 2 == 0 { "forged" } else { "at most" };
        assert!(reason.contains(what), "{reason}");
    }
    let strikes: Vec<_> = net.peers[0]
        .notes
        .iter()
        .filter_map(|n| match n {
            Note::Strike { peer, banned, .. } if *peer == x => Some(*banned),
            _ => None,
        })
        .collect();
    assert_eq!(strikes.len(), MAX_STRIKES as usize, "one strike a sync");
    assert_eq!(strikes.last(), Some(&true), "cut off after {MAX_STRIKES}");
}
