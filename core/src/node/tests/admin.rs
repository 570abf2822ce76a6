//! Signed admin messages between real nodes: the clock-skew bound, and
//! approvals a node missed reaching it by sync.

use base64::Engine;

use super::*;
use crate::codec;
use crate::node::admin::{AdminRefusal, MAX_CLOCK_SKEW};
use crate::shares::{split, DiskSecret};
use crate::testkit::mesh;

#[test]
fn a_lockdown_from_a_clock_past_the_skew_bound_is_refused_and_not_written() {
    let mut net = Net::mesh(mesh(2));
    net.connect(0, 1);
    net.peers[0].skew = (MAX_CLOCK_SKEW + 10_000) as i64;
    ok(net.control(0, CtlRequest::Lockdown));
    assert!(net.peers[0].node.guardian().lockdown().is_some());
    assert!(
        net.peers[1].node.guardian().lockdown().is_none(),
        "a message dated past the bound changes nothing"
    );
    assert!(net.peers[1].notes.iter().any(|n| matches!(
        n,
        Note::AdminRefused {
            why: AdminRefusal::FromTheFuture { .. },
            loud: true
        }
    )));
    assert!(!net.peers[1]
        .disk
        .iter()
        .any(|w| matches!(w, Write::Lock(_))));
}

#[test]
fn a_lockdown_within_the_skew_bound_is_taken_and_written() {
    let mut net = Net::mesh(mesh(2));
    net.connect(0, 1);
    net.peers[0].skew = (MAX_CLOCK_SKEW - 1000) as i64;
    ok(net.control(0, CtlRequest::Lockdown));
    assert!(net.peers[1].node.guardian().lockdown().is_some());
    assert!(net.peers[1]
        .disk
        .iter()
        .any(|w| matches!(w, Write::Lock(_))));
    // and a lift from a member's clock behind by as much ends it
    net.peers[0].skew = 0;
    net.advance(MAX_CLOCK_SKEW);
    ok(net.control(0, CtlRequest::Lift));
    assert!(net.peers[1].node.guardian().lockdown().is_none());
}

#[test]
fn an_approval_missed_while_away_arrives_by_sync() {
    // node 2 (the owner) is bound to guardians 0 and 1 (approvals are
    // kept only where its shares are); then nodes 0 and 1 run and node 2
    // is down, asking for its key
    let mut net = Net::mesh(mesh(3));
    net.connect(0, 2);
    net.connect(1, 2);
    let o = &net.peers[2];
    let envs = split(
        &DiskSecret::generate(),
        1,
        &[net.peers[0].id(), net.peers[1].id()],
        1,
        &o.key,
        &o.boot.public(),
    )
    .unwrap();
    let envelopes = envs
        .iter()
        .map(|e| base64::engine::general_purpose::STANDARD.encode(codec::encode(e).unwrap()))
        .collect();
    ok(net.control(2, CtlRequest::Deposit { envelopes }));
    net.peers[2].down = true;
    net.peers[1].down = true;
    // the approval is for a boot after the owner was last seen alive
    net.advance(60_000);
    let owner = net.peers[2].id();
    let by = net.peers[0].id();
    ok(net.control(0, CtlRequest::Approve { who: "n2".into() }));
    let approved = |net: &Net, i: usize| {
        net.peers[i]
            .node
            .guardian()
            .owner(&owner)
            .is_some_and(|s| s.approvals.contains_key(&by))
    };
    assert!(approved(&net, 0));
    assert!(!approved(&net, 1), "node 1 was away");
    // Node 1 comes back; node 0's redial reaches it and they sync.
    net.peers[1].down = false;
    net.advance(40_000);
    assert!(net.linked(0, 1));
    assert!(
        approved(&net, 1),
        "the approval came with the sync answer: {:?} {:?}",
        net.peers[1].trace,
        net.peers[1].notes
    );
    assert!(net.peers[1].disk.iter().any(
        |w| matches!(w, Write::Owners(o) if o.iter().any(|(id, s)| *id == owner && s.approvals.contains_key(&by)))
    ));
}

#[test]
fn an_approval_older_than_its_window_is_not_sent_again() {
    let mut net = Net::mesh(mesh(3));
    net.peers[1].down = true;
    net.peers[2].down = true;
    let owner = net.peers[2].id();
    ok(net.control(0, CtlRequest::Approve { who: "n2".into() }));
    let window = Policy::default().approval_window;
    net.advance(window + 1000);
    net.peers[1].down = false;
    net.advance(40_000);
    assert!(net.linked(0, 1));
    assert!(net.peers[1]
        .node
        .guardian()
        .owner(&owner)
        .is_none_or(|s| s.approvals.is_empty()));
}
