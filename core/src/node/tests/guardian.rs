//! Serving as a guardian between real nodes: a deposit is acknowledged
//! only once it is on disk, and a flood of identical refusals is one
//! journal line per ten seconds.

use base64::Engine;

use super::*;
use crate::codec;
use crate::control::GuardianAnswer;
use crate::guardian::ShareRequest;
use crate::node::decisions::{Logged, REFUSAL_LOG_EVERY};
use crate::shares::{split, DiskSecret};
use crate::testkit::mesh;

/// Node 1's envelope for guardian 0, base64 of its frame.
fn envelope(net: &Net) -> String {
    let owner = &net.peers[1];
    let envs = split(
        &DiskSecret::generate(),
        1,
        &[net.peers[0].id()],
        1,
        &owner.key,
        &owner.boot.public(),
    )
    .unwrap();
    base64::engine::general_purpose::STANDARD.encode(codec::encode(&envs[0]).unwrap())
}

fn answer(r: CtlResponse, guardian: NodeId) -> GuardianAnswer {
    match ok(r) {
        CtlReply::Guardians(g) => g.results[&guardian.to_string()].clone(),
        r => panic!("not a fan-out reply: {r:?}"),
    }
}

#[test]
fn a_deposit_is_acknowledged_only_once_on_the_guardians_disk() {
    let mut net = Net::mesh(mesh(2));
    net.connect(0, 1);
    let g = net.peers[0].id();
    let env = envelope(&net);
    let r = net.control(
        1,
        CtlRequest::Deposit {
            envelopes: vec![env],
        },
    );
    assert_eq!(answer(r, g), GuardianAnswer::Ok);
    let t = &net.peers[0].trace;
    let written = t.iter().position(|k| k == "write:guardian state").unwrap();
    let acked = t.iter().position(|k| k == "respond:ack").unwrap();
    assert!(written < acked, "{t:?}");
    let owner = net.peers[1].id();
    assert!(net.peers[0].disk.iter().any(
        |w| matches!(w, Write::Owners(o) if o.iter().any(|(id, s)| *id == owner && s.envelopes.contains_key(&1)))
    ));
}

#[test]
fn a_deposit_the_guardian_could_not_write_is_refused_not_acknowledged() {
    let mut net = Net::mesh(mesh(2));
    net.connect(0, 1);
    net.peers[0].fail_writes = true;
    let g = net.peers[0].id();
    let env = envelope(&net);
    let r = net.control(
        1,
        CtlRequest::Deposit {
            envelopes: vec![env],
        },
    );
    match answer(r, g) {
        GuardianAnswer::Refused { reason } => {
            assert!(reason.contains("could not store the share"), "{reason}")
        }
        a => panic!("acknowledged without a write: {a:?}"),
    }
}

#[test]
fn identical_refusals_are_one_journal_line_per_ten_seconds() {
    // The owner is down (its node never answers): its boot key asks.
    let mut net = Net::mesh(mesh(2));
    net.peers[1].down = true;
    let g = net.peers[0].id();
    let owner = net.peers[1].id();
    let boot = net.peers[1].boot.public().as_node_id();
    let decisions = |net: &Net| -> Vec<Logged> {
        net.peers[0]
            .notes
            .iter()
            .filter_map(|n| match n {
                Note::Decision { logged, .. } => Some(logged.clone()),
                _ => None,
            })
            .collect()
    };
    // The owner's boot key asks for a share guardian 0 does not hold,
    // again and again: each is refused, one is logged.
    for i in 0..5u8 {
        let req = ShareRequest::with_nonce(owner, g, 1, [i; 16], &net.peers[1].boot);
        let r = net.ask(0, boot, Request::Share(req));
        assert!(matches!(r, Some(Response::ShareRefused(_))), "{r:?}");
        net.advance(100);
    }
    assert_eq!(
        decisions(&net),
        vec![Logged::Refused { unlogged: 0 }],
        "{:?}",
        net.peers[0].notes
    );
    net.advance(REFUSAL_LOG_EVERY);
    let req = ShareRequest::with_nonce(owner, g, 1, [9; 16], &net.peers[1].boot);
    net.ask(0, boot, Request::Share(req));
    assert_eq!(
        decisions(&net),
        vec![
            Logged::Refused { unlogged: 0 },
            Logged::Refused { unlogged: 4 }
        ]
    );
}
