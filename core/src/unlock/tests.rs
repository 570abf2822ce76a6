//! The unlock client driven by hand, in the style of quinn-proto's
//! `tests/util.rs`: a test plays the network and the clock, with real
//! shares (split, sealed and signed as `keyward bind` does).

use super::*;
use crate::identity::NodeKey;

const EPOCH: u64 = 7;
const ADDR0: &str = "/ip4/127.0.0.1/tcp/7300";
const REFUSED: &str = "/ip4/192.0.2.1/tcp/7300: Connection refused (os error 111)";

/// An owner bound `t`-of-`n`, its guardians and their envelopes.
struct World {
    boot: BootKey,
    owner: NodeKey,
    ids: Vec<NodeId>,
    envs: Vec<ShareEnvelope>,
    secret: [u8; 32],
    plan: Plan,
}

fn world(t: usize, n: usize) -> World {
    let owner = NodeKey::from_seed([1; 32]);
    let boot = BootKey::from_seed([2; 32]);
    let ids: Vec<NodeId> = (0..n)
        .map(|i| NodeKey::from_seed([10 + i as u8; 32]).id())
        .collect();
    let secret = DiskSecret::from_bytes([42; 32]);
    let envs = shares::split(&secret, t, &ids, EPOCH, &owner, &boot.public()).unwrap();
    let plan = Plan {
        name: "web1".into(),
        owner: owner.id(),
        epoch: EPOCH,
        threshold: t,
        guardians: ids
            .iter()
            .enumerate()
            .map(|(i, id)| PlanGuardian {
                id: *id,
                name: format!("node{i}"),
                addrs: vec![format!("/ip4/127.0.0.1/tcp/{}", 7300 + i)],
            })
            .collect(),
        probes: Vec::new(),
    };
    World {
        boot,
        owner,
        ids,
        envs,
        secret: [42; 32],
        plan,
    }
}

impl World {
    fn client(&self, timeout: Millis) -> UnlockClient<&BootKey> {
        self.client_with(self.plan.clone(), timeout, true)
    }

    fn client_with(&self, plan: Plan, timeout: Millis, verbose: bool) -> UnlockClient<&BootKey> {
        let opts = ClientOptions {
            timeout,
            verbose,
            waited: 0,
        };
        UnlockClient::new(plan, opts, &self.boot, [3; 32], 0).unwrap()
    }

    fn share(&self, i: usize) -> Input {
        self.share_from(i, self.envs[i].clone())
    }

    fn share_from(&self, i: usize, env: ShareEnvelope) -> Input {
        Input::Response {
            guardian: self.ids[i],
            response: Response::Share(Box::new(env)),
        }
    }

    fn refuse(&self, i: usize, r: Refusal) -> Input {
        Input::Response {
            guardian: self.ids[i],
            response: Response::ShareRefused(r),
        }
    }

    fn fail(&self, i: usize, failure: Failure) -> Input {
        Input::RequestFailed {
            guardian: self.ids[i],
            failure,
        }
    }

    fn index(&self, id: &NodeId) -> usize {
        self.ids.iter().position(|x| x == id).unwrap()
    }
}

/// Everything the client asked for since the last drain.
#[derive(Default)]
struct Drained {
    /// (guardian, its addresses, the request)
    sends: Vec<(NodeId, Vec<String>, ShareRequest)>,
    probes: Vec<String>,
    prints: Vec<String>,
    done: Option<Result<DiskSecret, UnlockError>>,
}

fn drain<K: Borrow<BootKey>>(c: &mut UnlockClient<K>) -> Drained {
    let mut d = Drained::default();
    while let Some(o) = c.poll_output() {
        match o {
            Output::Send {
                guardian,
                addrs,
                request,
            } => match *request {
                Request::Share(r) => d.sends.push((guardian, addrs, r)),
                other => panic!("not a share request: {other:?}"),
            },
            Output::Probe { addr } => d.probes.push(addr),
            Output::Print(l) => d.prints.push(l),
            Output::Done(r) => {
                assert!(d.done.is_none(), "Done twice");
                d.done = Some(r);
            }
        }
    }
    d
}

/// What happened while the clock ran to `until`.
#[derive(Default)]
struct Run {
    /// (when, which guardian) of every request sent.
    sent: Vec<(Millis, usize)>,
    prints: Vec<String>,
    done: Option<(Millis, Result<DiskSecret, UnlockError>)>,
}

/// Runs the clock from timer to timer up to `until`; every request sent
/// at `t` is answered at once by `answer(t, guardian)` (None: never).
fn run(
    w: &World,
    c: &mut UnlockClient<&BootKey>,
    first: Drained,
    until: Millis,
    mut answer: impl FnMut(Millis, usize) -> Option<Input>,
) -> Run {
    let mut r = Run::default();
    let mut pending = first;
    let mut t = 0;
    loop {
        r.prints.append(&mut pending.prints);
        if let Some(d) = pending.done.take() {
            r.done = Some((t, d));
            assert!(c.poll_timeout().is_none());
            return r;
        }
        let sends = std::mem::take(&mut pending.sends);
        let mut inputs = Vec::new();
        for (g, _, _) in sends {
            let i = w.index(&g);
            r.sent.push((t, i));
            inputs.extend(answer(t, i));
        }
        if !inputs.is_empty() {
            for input in inputs {
                c.handle(t, input);
            }
            pending = drain(c);
            continue;
        }
        match c.poll_timeout() {
            Some(next) if next <= until => {
                assert!(next >= t, "a timer in the past: {next} < {t}");
                t = next;
                c.handle_timeout(t);
                pending = drain(c);
            }
            _ => return r,
        }
    }
}

fn sends_to(r: &Run, i: usize) -> Vec<Millis> {
    r.sent
        .iter()
        .filter(|(_, g)| *g == i)
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn enough_valid_shares_give_the_secret() {
    let w = world(3, 4);
    let mut c = w.client(60_000);
    let d = drain(&mut c);
    // every guardian is asked at once, with a fresh signed request each
    assert_eq!(d.sends.len(), 4);
    for (i, (g, addrs, req)) in d.sends.iter().enumerate() {
        assert_eq!(*g, w.ids[i]);
        assert_eq!(addrs, &[format!("/ip4/127.0.0.1/tcp/{}", 7300 + i)]);
        assert_eq!(
            (req.owner, req.guardian, req.epoch),
            (w.owner.id(), w.ids[i], EPOCH)
        );
        assert!(req.verify(&w.boot.public()), "signed by the boot key");
    }
    let mut nonces: Vec<[u8; 16]> = d.sends.iter().map(|s| s.2.nonce).collect();
    nonces.dedup();
    assert_eq!(nonces.len(), 4, "nonces repeat");
    assert!(d.prints.is_empty() && d.done.is_none());
    assert_eq!(
        c.poll_timeout(),
        Some(60_000),
        "nothing due before the deadline"
    );

    c.handle(10, w.share(0));
    c.handle(11, w.share(2));
    let d = drain(&mut c);
    assert!(d.done.is_none() && d.sends.is_empty() && d.prints.is_empty());
    c.handle(12, w.share(3));
    let d = drain(&mut c);
    let secret = d.done.expect("done").expect("the key");
    assert_eq!(secret.as_bytes(), &w.secret);
    assert!(d.prints.is_empty());
    assert!(c.is_done() && c.poll_timeout().is_none());
    // a late answer changes nothing
    c.handle(13, w.share(1));
    c.handle_timeout(70_000);
    assert!(c.poll_output().is_none());
}

#[test]
fn the_same_seed_sends_the_same_requests() {
    let w = world(2, 3);
    let a = drain(&mut w.client(1000)).sends;
    let b = drain(&mut w.client(1000)).sends;
    assert_eq!(
        a.iter().map(|s| &s.2).collect::<Vec<_>>(),
        b.iter().map(|s| &s.2).collect::<Vec<_>>()
    );
}

#[test]
fn a_permanent_refusal_is_printed_once_and_not_asked_again() {
    let w = world(2, 3);
    let mut c = w.client(60_000);
    let first = drain(&mut c);
    let r = run(&w, &mut c, first, 20_000, |_, i| match i {
        0 => Some(w.refuse(
            0,
            Refusal::Lockdown {
                by: w.ids[2],
                since: 1,
                by_name: "node2".into(),
            },
        )),
        1 => Some(w.refuse(1, Refusal::Revoked)),
        // node2 waits on approval_delay: asked again when it says
        _ => Some(w.refuse(2, Refusal::Waiting { remaining: 1_500 })),
    });
    // revoked is final: one request, one line, and with node1 out, two
    // of three can still answer: not hopeless
    assert_eq!(sends_to(&r, 1), [0]);
    // lockdown can be lifted while the boot waits: asked again with
    // backoff, printed once
    assert_eq!(
        sends_to(&r, 0),
        [0, 250, 750, 1750, 3750, 7750, 12750, 17750]
    );
    // waiting: asked again when the delay runs out
    assert_eq!(
        sends_to(&r, 2),
        (0..14).map(|k| k * 1_500).collect::<Vec<_>>()
    );
    assert_eq!(
        r.prints,
        [
            "keyward: guardian node0 refused: the mesh is in lockdown (set by node2 ("
                .to_string()
                + &w.ids[2].short()
                + ")); an admin lifts it with `keyward lockdown --lift`",
            "keyward: guardian node1 refused: revoked from the mesh; revocation is final, a new identity must join with a new invite".into(),
            "keyward: guardian node2 refused: waiting 1 s for an admin's deny (approval_delay)".into(),
            "keyward: no key from the mesh for web1 yet; type the passphrase, or run `keyward approve web1` on another node (still asking)".into(),
        ]
    );
    assert!(r.done.is_none());
}

#[test]
fn an_unreachable_guardian_is_retried_with_backoff_until_the_timeout() {
    let w = world(2, 2);
    let mut c = w.client(20_000);
    let first = drain(&mut c);
    let mut timeouts = 0;
    let r = run(&w, &mut c, first, u64::MAX, |_, i| {
        if i == 0 {
            // no cause from the dial came first
            Some(w.fail(0, Failure::Dial))
        } else {
            timeouts += 1;
            Some(w.fail(1, Failure::Timeout))
        }
    });
    let backoff = [0, 250, 750, 1750, 3750, 7750, 12750, 17750];
    assert_eq!(sends_to(&r, 0), backoff);
    assert_eq!(sends_to(&r, 1), backoff);
    assert_eq!(timeouts, 8);
    assert_eq!(
        r.prints,
        [
            "keyward: guardian node0 unreachable: could not connect",
            "keyward: guardian node1 unreachable: connection: no answer within 5 s",
            "keyward: no key from the mesh for web1 yet; type the passphrase, or run `keyward approve web1` on another node (still asking)",
        ]
    );
    let (at, res) = r.done.expect("the timeout ends it");
    assert_eq!(at, 20_000);
    match res {
        Err(UnlockError::Failed(s)) => assert_eq!(
            s,
            "0 valid shares of 2 needed; 2 guardians unreachable (node0: could not connect; node1: connection: no answer within 5 s)"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dial_causes_are_named_with_the_address() {
    let w = world(1, 1);
    let mut c = w.client(20_000);
    drain(&mut c);
    let mut prints = Vec::new();
    for t in [0, 250] {
        if t > 0 {
            c.handle_timeout(t);
            let mut d = drain(&mut c);
            assert_eq!(d.sends.len(), 1, "asked again at {t}");
            prints.append(&mut d.prints);
        }
        c.handle(
            t,
            Input::DialFailed {
                peer: Some(w.ids[0]),
                probe: None,
                error: REFUSED.into(),
            },
        );
        c.handle(t, w.fail(0, Failure::Dial));
    }
    prints.append(&mut drain(&mut c).prints);
    assert_eq!(
        prints,
        [
            format!("keyward: guardian node0 unreachable: {REFUSED}"),
            "keyward: no key from the mesh for web1 yet; type the passphrase, or run `keyward approve web1` on another node (still asking)".into(),
        ],
        "the same cause twice is one line"
    );
    assert_eq!(c.poll_timeout(), Some(750));
    // it answers at last, at a known address: the share is taken
    c.handle_timeout(750);
    assert_eq!(drain(&mut c).sends.len(), 1);
    c.handle(
        760,
        Input::Connected {
            peer: Some(w.ids[0]),
            addr: ADDR0.into(),
            probe: None,
        },
    );
    c.handle(770, w.share(0));
    let d = drain(&mut c);
    assert_eq!(d.done.unwrap().unwrap().as_bytes(), &w.secret);
}

#[test]
fn too_few_hopeful_guardians_end_early_as_hopeless() {
    let w = world(2, 3);
    // the last guardian answers during the grace: done at once
    let mut c = w.client(60_000);
    drain(&mut c);
    c.handle(100, w.refuse(0, Refusal::Revoked));
    let d = drain(&mut c);
    assert!(d.done.is_none() && d.sends.is_empty());
    c.handle(200, w.refuse(1, Refusal::NoShare { epoch: EPOCH }));
    let d = drain(&mut c);
    assert_eq!(
        d.prints[1],
        "keyward: the mesh will not give the key of web1 on this boot (see above); type the passphrase"
    );
    assert!(d.done.is_none(), "node2's answer is still awaited");
    assert_eq!(c.poll_timeout(), Some(2_200));
    c.handle(
        500,
        w.refuse(
            2,
            Refusal::NotSeen {
                seen_ago: None,
                timeout: 1,
            },
        ),
    );
    let d = drain(&mut c);
    let e = d.done.expect("done at node2's answer").unwrap_err();
    assert!(matches!(e, UnlockError::Hopeless(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "0 valid shares of 2 needed; \
             1 guardian refused: this guardian holds no share of it for epoch {EPOCH}; run keyward rebind on the owner; \
             1 guardian refused: never seen alive by this guardian; ask an admin: keyward approve web1; \
             1 guardian refused: revoked from the mesh; revocation is final, a new identity must join with a new invite; \
             retrying will not help on this boot"
        )
    );
    // one line for node2's refusal; no "no key yet" hint after the hopeless one
    assert_eq!(d.prints.len(), 1, "{:?}", d.prints);

    // the last guardian never answers: done after the grace, asked no more
    let mut c = w.client(60_000);
    drain(&mut c);
    c.handle(100, w.refuse(0, Refusal::Revoked));
    c.handle(200, w.refuse(1, Refusal::GuardianRevoked));
    drain(&mut c);
    c.handle_timeout(2_199);
    assert!(c.poll_output().is_none());
    c.handle_timeout(2_200);
    let d = drain(&mut c);
    assert!(d.sends.is_empty());
    match d.done.unwrap() {
        Err(UnlockError::Hopeless(s)) => {
            assert!(
                s.starts_with("0 valid shares of 2 needed; 1 guardian gave no answer; "),
                "{s}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_shares_are_named_and_the_others_used() {
    let w = world(2, 4);
    let mut c = w.client(60_000);
    drain(&mut c);
    c.handle(
        1,
        Input::Connected {
            peer: Some(w.ids[0]),
            addr: ADDR0.into(),
            probe: None,
        },
    );
    // node0 damaged what it holds; node1 sends node2's envelope
    let mut bad = w.envs[0].clone();
    let k = bad.body.sealed.len() / 2;
    bad.body.sealed[k] ^= 0x55;
    c.handle(2, w.share_from(0, bad));
    c.handle(3, w.share_from(1, w.envs[2].clone()));
    let d = drain(&mut c);
    assert_eq!(
        d.prints,
        [
            format!("keyward: guardian node0 at {ADDR0} sent a share that has a bad signature; using the others"),
            format!(
                "keyward: guardian node1 sent a share that was made for guardian {}, not the sender; using the others",
                w.ids[2].short()
            ),
        ]
    );
    assert!(d.done.is_none());
    // neither is asked again
    for t in [1_000, 10_000] {
        c.handle_timeout(t);
        assert!(drain(&mut c).sends.is_empty());
    }
    c.handle(10_001, w.share(2));
    c.handle(10_002, w.share(3));
    assert_eq!(drain(&mut c).done.unwrap().unwrap().as_bytes(), &w.secret);

    // too few good ones: the summary names the guardian and the defect
    let w = world(3, 4);
    let mut c = w.client(3_000);
    drain(&mut c);
    let mut bad = w.envs[0].clone();
    bad.body.sealed[0] ^= 1;
    c.handle(1, w.share_from(0, bad));
    c.handle(2, w.share(1));
    c.handle(3, w.share(2));
    c.handle(4, w.fail(3, Failure::Other("connection reset".into())));
    drain(&mut c);
    c.handle_timeout(3_000);
    match drain(&mut c).done.unwrap() {
        Err(UnlockError::Failed(s)) => assert_eq!(
            s,
            format!(
                "2 valid shares of 3 needed; 1 guardian sent a share that has a bad signature (guardian {}); 1 guardian unreachable (node3: connection reset)",
                w.ids[0].short()
            )
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_share_of_another_boot_key_makes_a_guardian_hopeless() {
    // sealed to an older boot key: this boot can never open it
    let w = world(1, 1);
    let old = BootKey::from_seed([9; 32]);
    let env = shares::split(
        &DiskSecret::from_bytes(w.secret),
        1,
        &w.ids,
        EPOCH,
        &w.owner,
        &old.public(),
    )
    .unwrap()
    .remove(0);
    let mut c = w.client(60_000);
    drain(&mut c);
    c.handle(5, w.share_from(0, env));
    let d = drain(&mut c);
    assert!(
        d.prints[0].contains("sent a share that cannot be opened with this boot key"),
        "{:?}",
        d.prints
    );
    assert!(matches!(d.done, Some(Err(UnlockError::Hopeless(_)))));
}

#[test]
fn duplicate_and_unasked_answers_are_ignored() {
    let w = world(2, 3);
    let mut c = w.client(60_000);
    drain(&mut c);
    c.handle(1, w.share(0));
    // the same share again, and one from a node nobody asked
    c.handle(2, w.share(0));
    c.handle(
        3,
        Input::Response {
            guardian: NodeKey::from_seed([99; 32]).id(),
            response: Response::Share(Box::new(w.envs[1].clone())),
        },
    );
    // a refusal after the share does not undo it
    c.handle(4, w.refuse(0, Refusal::Revoked));
    c.handle(5, w.fail(0, Failure::Timeout));
    let d = drain(&mut c);
    assert!(d.prints.is_empty() && d.done.is_none() && d.sends.is_empty());
    // a refusal answered twice is one line and one retry
    c.handle(6, w.refuse(1, Refusal::NotMember));
    c.handle(7, w.refuse(1, Refusal::NotMember));
    let d = drain(&mut c);
    assert_eq!(d.prints.len(), 1);
    assert_eq!(c.poll_timeout(), Some(6 + RETRY_FIRST));
    c.handle(8, w.share(2));
    assert_eq!(drain(&mut c).done.unwrap().unwrap().as_bytes(), &w.secret);
}

#[test]
fn addresses_given_at_boot_are_probed_and_given_to_the_guardian_there() {
    let w = world(1, 2);
    let probe = "/ip4/192.0.2.9/tcp/7300".to_string();
    let stranger = "/ip4/192.0.2.10/tcp/7300".to_string();
    let mut plan = w.plan.clone();
    plan.probes = vec![probe.clone(), stranger.clone(), probe.clone()];
    let mut c = w.client_with(plan, 60_000, true);
    let d = drain(&mut c);
    assert_eq!(
        d.probes,
        [probe.clone(), stranger.clone()],
        "each address once"
    );
    assert_eq!(d.sends.len(), 2);
    // node0 is down at its token address; the probe fails, is retried
    // after the backoff and fails the same way: one line
    c.handle(10, w.fail(0, Failure::Other("down".into())));
    let probe_failed = Input::DialFailed {
        peer: None,
        probe: Some(probe.clone()),
        error: REFUSED.into(),
    };
    c.handle(20, probe_failed.clone());
    let d = drain(&mut c);
    assert_eq!(
        d.prints,
        [
            "keyward: guardian node0 unreachable: down".to_string(),
            format!("keyward: address {probe} (given at boot) unreachable: {REFUSED}"),
        ]
    );
    assert_eq!(c.poll_timeout(), Some(260), "node0's retry");
    c.handle_timeout(260);
    let d = drain(&mut c);
    assert_eq!((d.sends.len(), d.probes.len()), (1, 0));
    c.handle(265, w.fail(0, Failure::Other("down".into())));
    assert_eq!(c.poll_timeout(), Some(270), "the probe's retry");
    c.handle_timeout(270);
    let d = drain(&mut c);
    assert_eq!((d.sends.len(), d.probes), (0, vec![probe.clone()]));
    c.handle(280, probe_failed);
    assert!(drain(&mut c).prints.is_empty(), "the same cause twice");
    // a stranger answers at the other address
    c.handle(
        300,
        Input::Connected {
            peer: Some(NodeKey::from_seed([99; 32]).id()),
            addr: stranger.clone(),
            probe: Some(stranger.clone()),
        },
    );
    let d = drain(&mut c);
    assert_eq!(
        d.prints,
        [format!("keyward: address {stranger} (given at boot) answers as a node that guards no share of this disk")]
    );
    // node0 answers at the probed address: asked there at once, that
    // address first, although its backoff runs until 1766
    assert_eq!(c.poll_timeout(), Some(765));
    c.handle_timeout(765);
    assert_eq!(drain(&mut c).sends.len(), 1);
    c.handle(766, w.fail(0, Failure::Other("down".into())));
    assert_eq!(c.poll_timeout(), Some(780));
    c.handle_timeout(780);
    let d = drain(&mut c);
    assert_eq!((d.sends.len(), d.probes), (0, vec![probe.clone()]));
    c.handle(
        790,
        Input::Connected {
            peer: Some(w.ids[0]),
            addr: probe.clone(),
            probe: Some(probe.clone()),
        },
    );
    let d = drain(&mut c);
    assert_eq!(d.sends.len(), 1);
    assert_eq!(d.sends[0].0, w.ids[0]);
    assert_eq!(d.sends[0].1, [probe.clone(), ADDR0.to_string()]);
    c.handle(800, w.share(0));
    assert_eq!(drain(&mut c).done.unwrap().unwrap().as_bytes(), &w.secret);
}

#[test]
fn quiet_prints_nothing_but_ends_the_same() {
    let w = world(2, 2);
    let mut c = w.client_with(w.plan.clone(), 60_000, false);
    drain(&mut c);
    c.handle(1, w.refuse(0, Refusal::Revoked));
    c.handle(2, w.refuse(1, Refusal::BadSignature));
    let d = drain(&mut c);
    assert!(d.prints.is_empty());
    assert!(matches!(d.done, Some(Err(UnlockError::Hopeless(_)))));
}

#[test]
fn damaged_plans_are_refused() {
    let w = world(2, 3);
    let opts = || ClientOptions {
        timeout: 1,
        verbose: true,
        waited: 0,
    };
    for t in [0, 4] {
        let mut p = w.plan.clone();
        p.threshold = t;
        let e = UnlockClient::new(p, opts(), &w.boot, [0; 32], 0)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!("the LUKS token is damaged: threshold {t} with 3 guardians; bind again")
        );
    }
    let mut p = w.plan.clone();
    p.guardians[2].id = p.guardians[0].id;
    let e = UnlockClient::new(p, opts(), &w.boot, [0; 32], 0)
        .err()
        .unwrap();
    assert!(matches!(e, UnlockError::BadToken(_)), "{e}");
}

#[test]
fn a_guardian_that_keeps_refusing_is_asked_less_often_after_a_while() {
    let w = world(1, 1);
    let mut c = w.client(3_600_000);
    drain(&mut c);
    let not_seen = || {
        w.refuse(
            0,
            Refusal::NotSeen {
                seen_ago: None,
                timeout: 300_000,
            },
        )
    };
    // while the boot is young: backoff up to RETRY_CAP
    let mut now = 1;
    let mut waits = vec![];
    while now < PATIENT_AFTER {
        c.handle(now, not_seen());
        let next = c.poll_timeout().unwrap();
        waits.push(next - now);
        c.handle_timeout(next);
        assert_eq!(drain(&mut c).sends.len(), 1, "asked again at {next}");
        now = next + 1;
    }
    assert_eq!(waits[0], RETRY_FIRST);
    assert!(waits.iter().all(|w| *w <= RETRY_CAP), "{waits:?}");
    assert_eq!(*waits.last().unwrap(), RETRY_CAP);
    // then every PATIENT_RETRY
    for _ in 0..3 {
        c.handle(now, not_seen());
        let next = c.poll_timeout().unwrap();
        assert_eq!(next - now, PATIENT_RETRY);
        c.handle_timeout(next);
        assert_eq!(drain(&mut c).sends.len(), 1);
        now = next + 1;
    }
    // an unreachable guardian is still tried every RETRY_CAP
    c.handle(now, w.fail(0, Failure::Timeout));
    assert_eq!(c.poll_timeout(), Some(now + RETRY_CAP));
    // and a share still opens the disk
    c.handle_timeout(now + RETRY_CAP);
    assert_eq!(drain(&mut c).sends.len(), 1);
    c.handle(now + RETRY_CAP + 1, w.share(0));
    assert_eq!(drain(&mut c).done.unwrap().unwrap().as_bytes(), &w.secret);
}
