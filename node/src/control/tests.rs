//! The control API's wire format: every reply and error survives a round
//! trip, `keyward status --json` keeps its field names, and a bad answer
//! line is an error, never a panic.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use super::*;
use crate::guardian::Policy;
use crate::identity::NodeKey;
use crate::lookup::{Candidate, FindError};
use crate::roster::Role;
use keyward_core::node::members::{InviteError, RevokeError};

fn status() -> Status {
    Status {
        alerts: vec![AlertStatus {
            at_ms: 7,
            text: "copied boot key".into(),
        }],
        clock: ClockStatus {
            behind_ms: 0,
            sane: true,
        },
        decisions: vec![DecisionStatus {
            at_ms: 9,
            owner: "web1".into(),
            reason: "owner up".into(),
            released: false,
            rule: "owner-up".into(),
        }],
        listen: vec!["/ip4/127.0.0.1/tcp/7300/p2p/x".into()],
        lockdown: Some(LockdownStatus {
            by: "id".into(),
            by_name: Some("a".into()),
            since_ms_ago: 3,
        }),
        members: vec![
            MemberStatus {
                addrs: vec!["/ip4/192.0.2.1/tcp/7300".into()],
                boot: "00".repeat(32),
                connected: true,
                guards_me: true,
                gossip: true,
                unreachable: false,
                holds_shares_epochs: vec![1, 2],
                id: "a-id".into(),
                last_seen_ms_ago: Some(5),
                me: false,
                name: "a".into(),
                role: Role::Guardian,
                up: true,
            },
            MemberStatus {
                addrs: vec![],
                boot: "11".repeat(32),
                connected: false,
                guards_me: false,
                gossip: false,
                unreachable: true,
                holds_shares_epochs: vec![],
                id: "b-id".into(),
                last_seen_ms_ago: None,
                me: true,
                name: "b".into(),
                role: Role::Auditor,
                up: false,
            },
        ],
        mesh: Some(MeshStatus {
            digest: "ab".repeat(32),
            founder: Some("a-id".into()),
            id: "cd".repeat(16),
            name: Some("lab".into()),
        }),
        node: NodeStatus {
            active: true,
            id: "b-id".into(),
            name: "b".into(),
            revoked: false,
        },
        policy: Policy::default(),
        logs: None,
        replication: None,
        revoked: vec!["c-id".into()],
        strangers: StrangersStatus {
            connections: 2,
            last_owner: Some("a".into()),
            last_refused_ms_ago: Some(10),
            last_rule: Some("bad-signature".into()),
            refused_connections: 4,
            refused_requests: 300,
        },
    }
}

fn replies() -> Vec<CtlReply> {
    let mut results = BTreeMap::new();
    results.insert("g1".to_string(), GuardianAnswer::Ok);
    results.insert("g2".into(), GuardianAnswer::Held { epochs: vec![3, 4] });
    results.insert(
        "g3".into(),
        GuardianAnswer::Refused {
            reason: "a node cannot guard its own share".into(),
        },
    );
    results.insert("g4".into(), GuardianAnswer::Unexpected);
    results.insert(
        "g5".into(),
        GuardianAnswer::Unreachable {
            reason: "timeout".into(),
        },
    );
    vec![
        CtlReply::Status(Box::new(status())),
        CtlReply::Invited(Invited {
            token: "kw1...".into(),
            expires_unix: 1_800_000_000,
            role: Role::Auditor,
        }),
        CtlReply::Joined(Joined {
            mesh: Some("cd".repeat(16)),
            mesh_name: Some("lab".into()),
            members: 3,
        }),
        CtlReply::Joined(Joined {
            mesh: None,
            mesh_name: None,
            members: 0,
        }),
        CtlReply::Revoked(Revoked {
            revoked: "c-id".into(),
            re_endorsed: vec!["d".into()],
            dropped: vec!["e".into()],
            revocations_kept: vec!["f-id".into()],
        }),
        CtlReply::Admin(AdminSent::default()),
        CtlReply::Admin(AdminSent {
            approvals_needed: Some(2),
            warning: Some("web1 is up right now".into()),
        }),
        CtlReply::Rekeyed,
        CtlReply::Guardians(GuardianResults { results }),
        CtlReply::LogHolding(vec![HeldLog {
            origin: "a-id".into(),
            size: 7,
        }]),
        CtlReply::LogPiece(LogPiece::File {
            data: "AAEC".into(),
            total: 3,
        }),
        CtlReply::LogPiece(LogPiece::Notes {
            notes: vec!["bm90ZQo=".into()],
        }),
    ]
}

/// Every variant of [`CtlError`]; the match below fails to compile when
/// one is added and not listed here.
fn errors() -> Vec<CtlError> {
    let all = vec![
        CtlError::DaemonDown {
            socket: "/run/keyward/ctl.sock".into(),
            reason: "No such file or directory (os error 2)".into(),
        },
        CtlError::DaemonSilent {
            secs: 90,
            reason: "timed out".into(),
        },
        CtlError::DaemonBusy,
        CtlError::Garbled("EOF".into()),
        CtlError::TooLong { max: MAX_LINE },
        CtlError::WrongReply {
            request: "status".into(),
            reply: "rekeyed".into(),
        },
        CtlError::Io("broken pipe".into()),
        CtlError::BadRequest("unknown variant `frob`".into()),
        CtlError::Invite(InviteError::NoMesh),
        CtlError::NotInMesh,
        CtlError::Invite(InviteError::NotMember),
        CtlError::Invite(InviteError::Auditor),
        CtlError::NotGuardian,
        CtlError::Invite(InviteError::ExpiresOutOfRange),
        CtlError::BadToken("not a keyward invite".into()),
        CtlError::InvalidInviter,
        CtlError::Revoke(RevokeError::ReasonTooLong { len: 900, max: 256 }),
        CtlError::BadBootKey,
        CtlError::BadEnvelope("truncated".into()),
        CtlError::ForeignEnvelope,
        CtlError::UnknownNode { who: "x".into() },
        CtlError::NoActiveMember { who: "x".into() },
        CtlError::Ambiguous {
            who: "web1".into(),
            candidates: vec!["web1 a".into(), "web1 b".into()],
        },
        CtlError::AlreadyInMesh { same: true },
        CtlError::AlreadyInMesh { same: false },
        CtlError::InviteExpired,
        CtlError::JoinRefused {
            reason: "invite used".into(),
        },
        CtlError::InviterUnreachable {
            peer: "12D3".into(),
            reason: "dial failed".into(),
        },
        CtlError::InviterWrongMesh,
        CtlError::NotAdmitted,
        CtlError::InviterConfused,
        CtlError::PeerUnreachable {
            peer: "12D3".into(),
            reason: "dial failed".into(),
        },
        CtlError::PeerRefused {
            peer: "12D3".into(),
            reason: "only an active auditor member may fetch logs".into(),
        },
        CtlError::PeerConfused {
            peer: "12D3".into(),
        },
        CtlError::Revoke(RevokeError::NotInMesh),
        CtlError::Revoke(RevokeError::FounderIrrevocable),
        CtlError::Revoke(RevokeError::AlreadyRevoked { who: "c".into() }),
        CtlError::Revoke(RevokeError::NotSenior {
            who: "b".into(),
            able: vec!["a".into(), "f".into()],
        }),
        CtlError::Store("io error".into()),
    ];
    for e in &all {
        match e {
            CtlError::DaemonDown { .. }
            | CtlError::DaemonSilent { .. }
            | CtlError::DaemonBusy
            | CtlError::Garbled(_)
            | CtlError::TooLong { .. }
            | CtlError::WrongReply { .. }
            | CtlError::Io(_)
            | CtlError::BadRequest(_)
            | CtlError::Invite(_)
            | CtlError::NotInMesh
            | CtlError::NotGuardian
            | CtlError::BadToken(_)
            | CtlError::InvalidInviter
            | CtlError::Revoke(_)
            | CtlError::BadBootKey
            | CtlError::BadEnvelope(_)
            | CtlError::ForeignEnvelope
            | CtlError::UnknownNode { .. }
            | CtlError::NoActiveMember { .. }
            | CtlError::Ambiguous { .. }
            | CtlError::AlreadyInMesh { .. }
            | CtlError::InviteExpired
            | CtlError::JoinRefused { .. }
            | CtlError::InviterUnreachable { .. }
            | CtlError::InviterWrongMesh
            | CtlError::NotAdmitted
            | CtlError::InviterConfused
            | CtlError::PeerUnreachable { .. }
            | CtlError::PeerRefused { .. }
            | CtlError::PeerConfused { .. }
            | CtlError::Store(_) => {}
        }
    }
    all
}

fn line(r: &CtlResponse) -> Vec<u8> {
    let mut l = serde_json::to_vec(r).unwrap();
    l.push(b'\n');
    l
}

#[test]
fn every_reply_survives_the_wire() {
    for r in replies() {
        let l = line(&CtlResponse::Ok(r.clone()));
        assert!(!l[..l.len() - 1].contains(&b'\n'), "one line: {r:?}");
        assert_eq!(parse_response(&l).unwrap(), r);
    }
}

#[test]
fn every_error_survives_the_wire_with_its_message() {
    for e in errors() {
        let l = line(&CtlResponse::Err(e.clone()));
        let back = parse_response(&l).unwrap_err();
        assert_eq!(back, e);
        assert_eq!(back.to_string(), e.to_string());
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn every_request_survives_the_wire() {
    let reqs = [
        CtlRequest::Status,
        CtlRequest::Invite {
            role: Role::Guardian,
            expires_secs: 3600,
        },
        CtlRequest::Join { token: "t".into() },
        CtlRequest::Revoke {
            who: "c".into(),
            cascade: true,
            reason: "stolen".into(),
        },
        CtlRequest::Approve { who: "a".into() },
        CtlRequest::Deny { who: "a".into() },
        CtlRequest::Lockdown,
        CtlRequest::Lift,
        CtlRequest::Deposit {
            envelopes: vec!["AAAA".into()],
        },
        CtlRequest::Rekey {
            sign: "00".into(),
            seal: "11".into(),
        },
        CtlRequest::Drop {
            epochs: vec![1],
            guardians: vec!["g".into()],
        },
        CtlRequest::Held,
    ];
    for r in reqs {
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains(&format!("\"cmd\":\"{}\"", r.name())), "{s}");
        assert_eq!(serde_json::from_str::<CtlRequest>(&s).unwrap(), r);
    }
}

/// `keyward status --json` printed these names before the types existed;
/// scripts read them.
#[test]
fn status_json_keeps_its_field_names() {
    let v = serde_json::to_value(status()).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "alerts",
            "clock",
            "decisions",
            "listen",
            "lockdown",
            "members",
            "mesh",
            "node",
            "policy",
            "revoked",
            "strangers"
        ]
    );
    let s = serde_json::to_string(&status()).unwrap();
    for want in [
        r#""role":"guardian""#,
        r#""role":"auditor""#,
        r#""holds_shares_epochs":[1,2]"#,
        r#""last_seen_ms_ago":null"#,
        r#""by_name":"a""#,
        r#""refused_requests":300"#,
        r#""sane":true"#,
        r#""founder":"a-id""#,
    ] {
        assert!(s.contains(want), "{want} in {s}");
    }
    // an unknown role is refused, not guessed
    let bad = s.replace(r#""role":"auditor""#, r#""role":"king""#);
    assert!(serde_json::from_str::<Status>(&bad).is_err());
}

#[test]
fn guardian_answers_read_as_the_cli_always_printed_them() {
    let r = replies()
        .into_iter()
        .find_map(|reply| match reply {
            CtlReply::Guardians(r) => Some(r),
            _ => None,
        })
        .expect("the samples hold a guardians' results reply");
    assert!(r.acked("g1"));
    assert_eq!(r.why_not("g1"), "ok");
    assert!(!r.acked("g2"));
    assert_eq!(r.why_not("g2"), "no answer");
    assert_eq!(
        r.why_not("g3"),
        "refused: a node cannot guard its own share"
    );
    assert_eq!(r.why_not("g4"), "unexpected answer");
    assert_eq!(r.why_not("g5"), "unreachable: timeout");
    assert_eq!(r.why_not("nobody"), "no answer");
}

#[test]
fn an_ambiguous_name_reads_as_the_lookup_says_it() {
    let c = |name: &str| Candidate {
        id: NodeKey::generate().id(),
        name: name.into(),
        role: Role::Guardian,
        active: true,
        revoked: false,
    };
    let e = FindError::Ambiguous {
        who: "web1".into(),
        candidates: vec![c("web1"), c("web1")],
    };
    assert_eq!(CtlError::from(e.clone()).to_string(), e.to_string());
    let e = FindError::NotFound("x".into());
    assert_eq!(CtlError::from(e.clone()).to_string(), e.to_string());
}

#[test]
fn a_bad_answer_line_is_an_error_not_a_panic() {
    let garbled = |l: &[u8]| matches!(parse_response(l), Err(CtlError::Garbled(_)));
    assert!(garbled(b""));
    assert!(garbled(b"\n"));
    assert!(garbled(b"not json\n"));
    assert!(garbled(b"\xff\xfe\n"));
    assert!(garbled(br#"{"ok":{"status":{"node":"#));
    assert!(garbled(br#"{"ok":{"frobnicated":{}}}"#));
    assert!(garbled(br#"{"err":{"kind":"no_such_kind"}}"#));
    assert!(
        garbled(br#"{"ok":true,"data":{}}"#),
        "the old untyped shape"
    );
    let full = line(&CtlResponse::Ok(replies().remove(0)));
    for cut in [1, full.len() / 2, full.len() - 2] {
        assert!(garbled(&full[..cut]), "cut at {cut}");
    }
    let long = vec![b' '; MAX_LINE + 1];
    assert_eq!(
        parse_response(&long),
        Err(CtlError::TooLong { max: MAX_LINE })
    );
}

/// A fake daemon on a socket in a temporary directory: answers one
/// connection with `answer`, then closes it.
fn fake_daemon(answer: Vec<u8>) -> (tempfile::TempDir, Client, std::thread::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let l = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut req).unwrap();
        // the other end may give up reading an overlong answer
        let _ = s.write_all(&answer);
    });
    (dir, Client::new(path, Duration::from_secs(20)), t)
}

#[test]
fn the_client_reads_typed_replies_and_errors() {
    let (_d, c, t) = fake_daemon(line(&CtlResponse::Ok(CtlReply::Status(Box::new(status())))));
    assert_eq!(c.status().unwrap(), status());
    t.join().unwrap();

    let (_d, c, t) = fake_daemon(line(&CtlResponse::Err(CtlError::NotInMesh)));
    assert_eq!(c.lockdown(), Err(CtlError::NotInMesh));
    t.join().unwrap();

    // a reply of the wrong kind is named, not misread
    let (_d, c, t) = fake_daemon(line(&CtlResponse::Ok(CtlReply::Rekeyed)));
    assert_eq!(
        c.status(),
        Err(CtlError::WrongReply {
            request: "status".into(),
            reply: "rekeyed".into()
        })
    );
    t.join().unwrap();
}

#[test]
fn the_client_survives_a_daemon_that_misbehaves() {
    // closes without a word
    let (_d, c, t) = fake_daemon(vec![]);
    assert!(matches!(c.status(), Err(CtlError::Garbled(_))));
    t.join().unwrap();

    // answers far more than a line may hold, without a newline
    let (_d, c, t) = fake_daemon(vec![b'x'; MAX_LINE + 4096]);
    assert_eq!(c.status(), Err(CtlError::TooLong { max: MAX_LINE }));
    t.join().unwrap();

    // nobody listening
    let dir = tempfile::tempdir().unwrap();
    let c = Client::new(dir.path().join("none.sock"), Duration::from_secs(1));
    let e = c.status().unwrap_err();
    assert!(matches!(e, CtlError::DaemonDown { .. }), "{e:?}");
    assert!(e.to_string().contains("is it running?"), "{e}");
}
