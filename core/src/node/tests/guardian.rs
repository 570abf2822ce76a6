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

#[test]
fn only_guardians_and_wards_are_pinged_and_the_marking_follows_bind_and_revoke() {
    let mut net = Net::mesh(mesh(3));
    net.connect(0, 1);
    net.connect(0, 2);
    net.connect(1, 2);
    let (g, owner) = (net.peers[0].id(), net.peers[1].id());
    // connected gossip neighbours, but no one guards anyone: no pings
    for p in &net.peers {
        assert!(p.node.liveness().is_empty());
        assert!(!p.trace.iter().any(|k| k == "liveness"), "{:?}", p.trace);
    }
    // node 1 binds with node 0 as its guardian: they ping each other,
    // node 2 (gossip neighbour of both) pings no one
    let env = envelope(&net);
    let r = net.control(
        1,
        CtlRequest::Deposit {
            envelopes: vec![env],
        },
    );
    assert_eq!(answer(r, g), GuardianAnswer::Ok);
    assert_eq!(**net.peers[0].node.liveness(), BTreeSet::from([owner]));
    assert_eq!(**net.peers[1].node.liveness(), BTreeSet::from([g]));
    assert!(net.peers[2].node.liveness().is_empty());
    for i in [0, 1] {
        let n = net.peers[i]
            .trace
            .iter()
            .filter(|k| *k == "liveness")
            .count();
        assert_eq!(n, 1, "node {i} said it once: {:?}", net.peers[i].trace);
    }
    assert!(net.peers[0].node.overlay().is_gossip(&net.peers[2].id()));
    // the ward is revoked: its guardian stops pinging it
    let r = net.control(
        0,
        CtlRequest::Revoke {
            who: "n1".into(),
            cascade: false,
            reason: "test".into(),
        },
    );
    assert!(matches!(r, CtlResponse::Ok(_)), "{r:?}");
    assert!(net.peers[0].node.liveness().is_empty());
    assert!(net.peers[2].node.liveness().is_empty());
    let n = net.peers[0]
        .trace
        .iter()
        .filter(|k| *k == "liveness")
        .count();
    assert_eq!(n, 2, "{:?}", net.peers[0].trace);
}

/// A member this node knows no address of (one that joined a big mesh a
/// moment ago) is picked only after those it does: its deposit would fail
/// and its token entry could not be dialled (CI's 20-node bind, which
/// picked a guardian whose peer record had not reached the owner yet).
#[test]
fn bind_picks_guardians_with_a_known_address_first() {
    let mut net = Net::mesh(mesh(6));
    let mut s = match ok(net.control(0, CtlRequest::Status)) {
        CtlReply::Status(s) => s,
        r => panic!("not a status: {r:?}"),
    };
    // what the daemon's transport adds: addresses of all but n2 and n4
    for m in &mut s.members {
        if m.name != "n2" && m.name != "n4" {
            m.addrs = vec!["/ip4/192.0.2.1/tcp/7300".into()];
        }
    }
    let cands = crate::bind::candidates(&s);
    let names: Vec<&str> = cands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(
        names[3..].contains(&"n2") && names[3..].contains(&"n4"),
        "{names:?}"
    );
    let plan = crate::bind::plan(&cands, Some(3), None).unwrap();
    assert!(plan.guardians.iter().all(|g| !g.addrs.is_empty()));
    // with nobody's address known (the simulator), rank alone orders them
    for m in &mut s.members {
        m.addrs.clear();
    }
    let mut by_rank = crate::bind::candidates(&s);
    assert!(by_rank.iter().all(|c| c.unaddressed));
    by_rank.sort_by_key(|c| c.rank);
    assert_eq!(crate::bind::candidates(&s), by_rank);
}
