//! Reconnecting with backoff, and banning a peer that keeps sending
//! garbage, between real nodes.

use super::*;
use crate::node::peers::{BAN, MAX_STRIKES, REDIAL_MAX, REDIAL_MIN};
use crate::testkit::mesh;

#[test]
fn an_unreachable_member_is_redialled_with_doubling_backoff() {
    let mut net = Net::mesh(mesh(2));
    net.peers[1].down = true;
    net.advance(200_000);
    let b = net.peers[1].id();
    let times: Vec<Millis> = net.peers[0]
        .dials
        .iter()
        .filter(|(_, n)| *n == b)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(times.first(), Some(&T0), "dialled at start");
    let gaps: Vec<Millis> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let mut want = REDIAL_MIN;
    for g in &gaps {
        // the timer runs every second, so a gap is at most 1 s late
        assert!(*g >= want && *g < want + 1000, "gaps {gaps:?}");
        want = (want * 2).min(REDIAL_MAX);
    }
    assert!(gaps.len() >= 8, "still redialling: {gaps:?}");
    assert!(
        gaps.ends_with(&[REDIAL_MAX, REDIAL_MAX]),
        "capped: {gaps:?}"
    );
    // It answers again: connected at the next redial, and no more dials.
    net.peers[1].down = false;
    net.advance(REDIAL_MAX + 1000);
    assert!(net.linked(0, 1));
    let n = net.peers[0].dials.len();
    net.advance(60_000);
    assert_eq!(net.peers[0].dials.len(), n, "no dials while connected");
}

#[test]
fn a_peer_sending_garbage_is_cut_off_and_refused_until_its_ban_ends() {
    let mut net = Net::mesh(mesh(2));
    net.connect(0, 1);
    let b = net.peers[1].id();
    for i in 0..MAX_STRIKES {
        let r = net.ask(0, b, Request::Malformed(format!("junk {i}")));
        assert!(matches!(r, Some(Response::Refused { .. })));
    }
    assert!(
        !net.linked(0, 1),
        "disconnected after {MAX_STRIKES} strikes"
    );
    assert!(net.peers[0]
        .notes
        .iter()
        .any(|n| matches!(n, Note::Strike { banned: true, .. })));
    // It reconnects at once: sent away.
    net.connect(0, 1);
    assert!(!net.linked(0, 1));
    assert!(net.peers[0]
        .notes
        .iter()
        .any(|n| matches!(n, Note::RefusedBanned(p) if *p == b)));
    // After the ban (housekeeping runs every minute), it is welcome.
    net.advance(BAN + 60_000);
    net.connect(0, 1);
    assert!(net.linked(0, 1));
}
