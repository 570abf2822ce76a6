//! Messages between daemons (request-response and gossip) and invite
//! tokens. Encoded by `codec`, each with its own size limit.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;

/// A 32-byte secret on the wire (invite secrets).
pub type Secret32 = ByteArray<32>;

use crate::codec::{self, Wire};
use crate::guardian::{Millis, Refusal, ShareRequest};
use crate::identity::{NodeId, NodeKey, Sig};
use crate::log::fetch::{FetchItem, Holding};
use crate::log::replica::wire::{Ask, Held, Push, Refused, MAX_PUSH};
use crate::roster::{Member, MeshId, Role, SignedOp};
use crate::shares::ShareEnvelope;

/// The request-response protocol name. Bumped whenever a request,
/// response or gossip message changes meaning (the gossip topic follows it,
/// see `net::topic`), so nodes of different versions fail to negotiate
/// with a clear "unsupported protocol" instead of misreading each other.
/// `codec::VERSION` also guards the state database, so it moves only when
/// a frame or a stored record changes shape.
///
/// 2: sync answers carry signed peer records instead of bare addresses;
/// copied-boot-key alerts carry the signed request as evidence.
/// 3: anti-entropy descends a trie of op ids (`prefix`, `children`),
/// admin messages and peer records travel only when asked for.
/// 4: log replication (`LogPush` and its answers) and witnessing
/// (`AddCheckpoint`, `Cosigned`, `WitnessRefused`).
pub const RPC_PROTOCOL: &str = "/keyward/rpc/4";

/// Most members whose peer records one sync asks for.
pub const MAX_WANT_RECORDS: usize = 64;

/// Most bytes of signed peer records in one whole-roster sync answer
/// (the answerer's, the asker's gossip neighbours', at most
/// [`MAX_WANT_RECORDS`] asked for, then other members'), far inside the
/// answer's limit next to a full roster (checked in a test).
pub const SYNC_RECORDS_BUDGET: usize = 512 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// A joiner presents an invite's secret; the connection is
    /// authenticated by `member.id`.
    Join {
        secret: ByteArray<32>,
        member: Member,
        /// `member`'s own signature over its record, carried by its
        /// admission so no other member can ever rewrite the record.
        claim: Sig,
    },
    /// An owner deposits an envelope with this guardian.
    Deposit(Box<ShareEnvelope>),
    /// An owner asks to forget its envelopes of these epochs.
    Drop { epochs: Vec<u64> },
    /// An initramfs asks for a share (boot-key connection).
    Share(ShareRequest),
    /// Anti-entropy: the sender's digest of its operations under
    /// `prefix` (nibbles of op ids; empty: the whole roster, see
    /// `roster::reconcile`). Only the whole-roster round carries `admin`
    /// (the digest of the sender's lock decision and recent approvals:
    /// they are sent back only when the answerer's differ) and `want`
    /// (members the sender needs an address for: their signed peer
    /// records come back, with the sender's gossip neighbours').
    Sync {
        digest: ByteArray<32>,
        #[serde(default)]
        prefix: Vec<u8>,
        #[serde(default)]
        admin: Option<ByteArray<32>>,
        #[serde(default)]
        want: Vec<NodeId>,
        /// Every op under `prefix`, whatever the digests: the fallback of
        /// a descent that found differences everywhere.
        #[serde(default)]
        all: bool,
        /// The sender's admission chain (`Roster::admission_chain`, at
        /// most `roster::MAX_CHAIN`), sent only again after a
        /// whole-roster sync was refused: an answerer to whom the sender
        /// is a stranger answers with the founder's revocations of the
        /// chain's signers, so a node orphaned by `revoke --cascade`
        /// learns it is out (`roster::orphans`). Not written when empty,
        /// so every other sync is as it was.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        admitted: Vec<SignedOp>,
    },
    /// The sender shuts down cleanly; its boot key may be used next.
    GoingDown,
    /// An owner asks which epochs of its envelopes this guardian holds
    /// (`keyward epochs`: finding shares an interrupted bind left behind).
    Held,
    /// An origin pushes segments of its own log to one of its replicas
    /// (`log::replica::wire::Push`, checked again by the replica). The
    /// largest request: one segment of the largest size and a note.
    LogPush(Box<Push>),
    /// An origin asks one of its replicas, as a witness, to cosign its
    /// checkpoint: the C2SP tlog-witness add-checkpoint body
    /// (`log::witness::request::AddCheckpoint`, at most
    /// `request::MAX_BODY` bytes). The origin is the sender.
    AddCheckpoint {
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// An auditor member asks which origins' logs this node holds
    /// (`keyward audit fetch`); answered with [`Response::LogHolding`].
    LogHolding,
    /// An auditor member asks for one piece of an origin's log this node
    /// holds; answered with [`Response::LogFile`] or
    /// [`Response::LogNotes`] (for [`FetchItem::Cosigned`]).
    LogFetch { origin: NodeId, item: FetchItem },
    /// A witness tells a fellow witness of `origin` (another of its
    /// replicas) the checkpoint it last cosigned: the note with its
    /// cosignature (at most `checkpoint::MAX_NOTE` bytes). Answered with
    /// [`Response::LogSeen`]. Only the origin's signature matters: each
    /// side compares the other's note with what it cosigned, so two
    /// witnesses shown different histories find the fork.
    LogSeen {
        origin: NodeId,
        #[serde(with = "serde_bytes")]
        note: Vec<u8>,
    },
    /// Never on the wire: what the codec hands up when a peer's request
    /// did not decode (too large, malformed, unknown version), so the
    /// daemon can name and count the peer. libp2p drops failed reads
    /// silently otherwise.
    #[serde(skip)]
    Malformed(String),
}

impl Wire for Request {
    const KIND: &'static str = "rpc-request";
    /// A log push ([`MAX_PUSH`]) and its framing; every other request is
    /// at most 16 KiB ([`BootRequest`] keeps that limit).
    const MAX: usize = MAX_PUSH + 1024;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Joined {
        ops: Vec<SignedOp>,
    },
    Ack,
    Refused {
        reason: String,
    },
    Share(Box<ShareEnvelope>),
    ShareRefused(Refusal),
    /// Answer to `Held`: the epochs held for the asking owner.
    Held {
        epochs: Vec<u64>,
    },
    /// Sync answer. When the digests under the asked prefix differ:
    /// either the ops under it (`ops`) or its sixteen children's digests
    /// (`children`), see `roster::reconcile`; else both empty. For the
    /// whole-roster round also: the latest lockdown decision and recent
    /// approvals and denials when the asker's differ (so a guardian that
    /// was away catches up), and signed peer records (libp2p signed
    /// envelopes, each signed by the member it describes, so the
    /// answerer cannot put words in anyone's mouth; see `addr_book`).
    /// `held`: the epochs of the asker's shares the answerer holds, so an
    /// owner learns its guardians (and keeps their connections) from the
    /// sync each side sends when they connect.
    Roster {
        ops: Vec<SignedOp>,
        admin: Vec<AdminMsg>,
        records: Vec<serde_bytes::ByteBuf>,
        #[serde(default)]
        held: Vec<u64>,
        #[serde(default)]
        children: Vec<ByteArray<32>>,
    },
    /// A replica holds this much of the origin's log, durably.
    LogHeld(Held),
    /// A replica asks the origin to push from an index (a gap).
    LogAsk(Ask),
    /// A replica refused a push (checked with `Refused::check`).
    LogRefused(Refused),
    /// A witness cosigned: the checkpoint note with its `cosignature/v1`
    /// line (at most `checkpoint::MAX_NOTE` bytes), released only once
    /// the witness's state behind it is durable.
    Cosigned {
        #[serde(with = "serde_bytes")]
        note: Vec<u8>,
    },
    /// A witness did not cosign. `last_size`: a conflict, the size it last
    /// cosigned (the origin retries with a proof from there).
    WitnessRefused {
        last_size: Option<u64>,
        reason: String,
    },
    /// The origins whose logs this node holds (at most
    /// `fetch::MAX_HOLDING`).
    LogHolding(Vec<Holding>),
    /// Answer to [`Request::LogSeen`]: the checkpoint of that origin this
    /// witness last cosigned, if any, for the asker to compare in turn.
    LogSeen {
        #[serde(with = "serde_bytes")]
        note: Option<Vec<u8>>,
    },
    /// A piece of a file (at most `fetch::CHUNK` bytes from the asked
    /// offset) and the file's whole length.
    LogFile {
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        total: u64,
    },
    /// Notes of the origin with witness cosignatures (at most
    /// `fetch::MAX_NOTES`, each at most `checkpoint::MAX_NOTE` bytes).
    LogNotes(Vec<serde_bytes::ByteBuf>),
}

impl Wire for Response {
    const KIND: &'static str = "rpc-response";
    /// A full roster (`roster::MAX_OPS` of the largest ops) fits; a test
    /// checks it.
    const MAX: usize = 20 * 1024 * 1024;
}

/// What the boot client sends: [`Request::Share`] alone, encoded byte for
/// byte as it (same kind, same variant name). A client that serializes only
/// this does not carry serde code for every request it never makes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BootRequest {
    Share(ShareRequest),
}

impl Wire for BootRequest {
    const KIND: &'static str = <Request as Wire>::KIND;
    /// Every request but a log push fits 16 KiB, a share request far less.
    const MAX: usize = 16 * 1024;
}

/// The answers a guardian gives to a share request, as the boot client
/// decodes them: the [`Response`] variants a daemon sends to a boot-key
/// connection, with the same names and fields, so a frame of one decodes
/// as the other. `Joined` and `Roster` (the big ones: signed ops, admin
/// messages, peer records) are missing, so the initramfs binary carries no
/// deserializer for them; a guardian sending one is a malformed answer,
/// as any frame that is not a response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum BootResponse {
    Ack,
    Refused { reason: String },
    Share(Box<ShareEnvelope>),
    ShareRefused(Refusal),
    Held { epochs: Vec<u64> },
}

impl Wire for BootResponse {
    const KIND: &'static str = <Response as Wire>::KIND;
    /// A share envelope is at most `ShareEnvelope::MAX` (2 KiB) and a
    /// refusal names a node or says why in a line; the request limit
    /// (16 KiB) bounds what the boot client buffers, not the 20 MiB a sync
    /// answer may need.
    const MAX: usize = 16 * 1024;
}

impl From<BootResponse> for Response {
    fn from(r: BootResponse) -> Response {
        match r {
            BootResponse::Ack => Response::Ack,
            BootResponse::Refused { reason } => Response::Refused { reason },
            BootResponse::Share(e) => Response::Share(e),
            BootResponse::ShareRefused(r) => Response::ShareRefused(r),
            BootResponse::Held { epochs } => Response::Held { epochs },
        }
    }
}

/// Signed admin decisions spread by gossip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminKind {
    Approve {
        owner: NodeId,
    },
    Deny {
        owner: NodeId,
    },
    Lockdown,
    Lift,
    /// A guardian saw a boot-key request while the owner was up. The
    /// request itself is the evidence: signed by the owner's boot key and
    /// addressed to the alerting guardian, so a member cannot raise an
    /// alert about a node whose boot key nobody used.
    Alert {
        owner: NodeId,
        evidence: ShareRequest,
    },
    /// A witness holds evidence that `origin` forked or rolled back its
    /// log: the `log-evidence` frame (`log::witness::evidence`), which
    /// every receiver checks on its own (`Evidence::check`), so a member
    /// cannot raise it about an honest origin. Spread only when the
    /// message fits its 1 KiB limit (two notes do; a long proof does
    /// not, and stays with the witness that found it).
    LogAlert {
        origin: NodeId,
        #[serde(with = "serde_bytes")]
        evidence: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminBody {
    pub mesh: MeshId,
    pub kind: AdminKind,
    pub by: NodeId,
    pub at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminMsg {
    pub body: AdminBody,
    pub sig: Sig,
}

const ADMIN_DOMAIN: &str = "admin message";

impl Wire for AdminMsg {
    const KIND: &'static str = "admin";
    /// The largest is a log alert: a witness's fork evidence (two signed
    /// checkpoint notes and a consistency proof of up to
    /// `witness::MAX_PROOF` hashes) must fit, so every member can check
    /// a fork found between witnesses of a long log. Still well inside a
    /// gossip message ([`Gossip`]'s 4 KiB).
    const MAX: usize = 3072;
}

impl AdminMsg {
    pub fn sign(body: AdminBody, key: &NodeKey) -> Self {
        let sig = key.sign(ADMIN_DOMAIN, &codec::signing_bytes(&body));
        AdminMsg { body, sig }
    }

    pub fn verify(&self) -> bool {
        self.body
            .by
            .verify(ADMIN_DOMAIN, &codec::signing_bytes(&self.body), &self.sig)
            .is_ok()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Gossip {
    Op(SignedOp),
    Admin(AdminMsg),
}

impl Wire for Gossip {
    const KIND: &'static str = "gossip";
    const MAX: usize = 4096;
}

/// A one-time invite. The inviter keeps only the hash of `secret`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Invite {
    pub mesh: MeshId,
    pub mesh_name: String,
    pub inviter: NodeId,
    pub addrs: Vec<String>,
    pub secret: ByteArray<32>,
    /// Unix seconds.
    pub expires: u64,
    pub role: Role,
}

/// Everything but the secret, so a debug log never holds a usable token.
impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("mesh", &self.mesh)
            .field("mesh_name", &self.mesh_name)
            .field("inviter", &self.inviter)
            .field("addrs", &self.addrs)
            .field("expires", &self.expires)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Wire for Invite {
    const KIND: &'static str = "invite";
    const MAX: usize = 4096;
}

const TOKEN_PREFIX: &str = "kw1-";

impl Invite {
    pub fn id(&self) -> [u8; 32] {
        invite_id(&self.secret)
    }

    pub fn to_token(&self) -> String {
        use base64::Engine;
        let bytes = codec::encode(self).expect("invites are small");
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    pub fn from_token(token: &str) -> Result<Invite, String> {
        use base64::Engine;
        let t = token.trim();
        let body = t
            .strip_prefix(TOKEN_PREFIX)
            .ok_or("not a keyward invite token (they start with `kw1-`); copy the whole line `keyward invite` printed")?;
        if body.len() > 8192 {
            return Err("invite token is too long".into());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| "invite token is damaged (bad base64); copy it again")?;
        codec::decode(&bytes).map_err(|e| format!("invite token is damaged: {e}"))
    }
}

pub fn invite_id(secret: &[u8; 32]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"keyward/v1/invite\0");
    h.update(secret);
    h.finalize().into()
}

/// What the inviter remembers of an invite it issued.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InviteRecord {
    pub role: Role,
    pub expires: u64,
    pub used_by: Option<NodeId>,
}

impl Wire for InviteRecord {
    const KIND: &'static str = "invite-record";
    const MAX: usize = 256;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A roster at its op limit, every op as large as the roster allows,
    /// still fits one sync response: otherwise sync would fail for good
    /// once a mesh grew that far.
    #[test]
    fn a_full_roster_fits_one_sync_response() {
        use crate::identity::BootKey;
        use crate::roster::{OpBody, MAX_OPS, MAX_REASON};
        let k = NodeKey::generate();
        let mesh = MeshId([7; 16]);
        let member = Member {
            id: k.id(),
            boot: BootKey::generate().public(),
            name: "n".repeat(63),
            role: Role::Auditor,
        };
        let bodies = [
            OpBody::Admit {
                mesh,
                claim: member.claim(mesh, &k),
                member,
                invite: Some(ByteArray::new([0xff; 32])),
                by: k.id(),
                at: u64::MAX,
            },
            OpBody::Revoke {
                mesh,
                node: k.id(),
                by: k.id(),
                reason: "r".repeat(MAX_REASON),
                at: u64::MAX,
            },
            OpBody::Rekey {
                mesh,
                node: k.id(),
                boot: BootKey::generate().public(),
                seq: u64::MAX,
            },
        ];
        let largest = bodies
            .into_iter()
            .map(|b| codec::signing_bytes(&SignedOp::sign(b, &k)).len())
            .max()
            .unwrap();
        // admin messages (the lockdown and at most 256 recent decisions)
        // and members' signed peer records ride along: 1.5 MiB for them
        const {
            assert!(
                SYNC_RECORDS_BUDGET + 257 * <AdminMsg as Wire>::MAX <= 3 << 19,
                "signed peer records and admin messages outgrew their 1.5 MiB"
            )
        };
        assert!(
            MAX_OPS * largest + (3 << 19) <= <Response as Wire>::MAX,
            "{MAX_OPS} ops of {largest} bytes do not fit {} bytes",
            <Response as Wire>::MAX
        );
    }

    #[test]
    fn tokens_round_trip_and_damage_is_explained() {
        let inv = Invite {
            mesh: MeshId([1; 16]),
            mesh_name: "lab".into(),
            inviter: NodeKey::generate().id(),
            addrs: vec!["/ip4/127.0.0.1/tcp/7300".into()],
            secret: ByteArray::new([9; 32]),
            expires: 1,
            role: Role::Guardian,
        };
        let t = inv.to_token();
        assert_eq!(Invite::from_token(&t).unwrap().id(), inv.id());
        assert!(Invite::from_token("hello").unwrap_err().contains("kw1-"));
        let mut bad = t.clone();
        bad.truncate(t.len() - 5);
        assert!(Invite::from_token(&bad).unwrap_err().contains("damaged"));
    }

    /// The boot client's narrow types read and write exactly the frames
    /// of the daemon's: a share request encodes to the same bytes, every
    /// answer to a share request decodes to the same value, and the
    /// answers left out are an error, not a panic or a wrong variant.
    #[test]
    fn boot_types_speak_the_daemons_frames() {
        use crate::identity::BootKey;
        use crate::shares::{self, DiskSecret};
        let owner = NodeKey::generate();
        let guardian = NodeKey::generate();
        let boot = BootKey::generate();
        let req = ShareRequest::new(owner.id(), guardian.id(), 7, &boot);
        assert_eq!(
            codec::encode(&BootRequest::Share(req.clone())).unwrap(),
            codec::encode(&Request::Share(req.clone())).unwrap()
        );
        let BootRequest::Share(back) =
            codec::decode::<BootRequest>(&codec::encode(&Request::Share(req.clone())).unwrap())
                .unwrap();
        assert_eq!(back, req);

        let secret = DiskSecret::generate();
        let env = shares::split(&secret, 1, &[guardian.id()], 7, &owner, &boot.public())
            .unwrap()
            .remove(0);
        let mut answers = vec![
            Response::Ack,
            Response::Refused {
                reason: "rate limited".into(),
            },
            Response::Share(Box::new(env)),
            Response::Held { epochs: vec![1, 7] },
        ];
        answers.extend(
            [
                Refusal::GuardianRevoked,
                Refusal::NotMember,
                Refusal::Replayed,
                Refusal::ClockNotSane { behind: 9 },
                Refusal::Lockdown {
                    by: owner.id(),
                    since: 3,
                    by_name: "n1".into(),
                },
            ]
            .map(Response::ShareRefused),
        );
        for a in answers {
            let wire = codec::encode(&a).unwrap();
            let narrow: BootResponse = codec::decode(&wire).unwrap();
            assert_eq!(codec::encode(&narrow).unwrap(), wire, "{a:?}");
            assert_eq!(format!("{:?}", Response::from(narrow)), format!("{a:?}"));
        }
        for left_out in [
            Response::Joined { ops: vec![] },
            Response::Roster {
                ops: vec![],
                admin: vec![],
                records: vec![],
                held: vec![],
                children: vec![],
            },
        ] {
            let e = codec::decode::<BootResponse>(&codec::encode(&left_out).unwrap()).unwrap_err();
            assert!(matches!(e, codec::CodecError::Malformed { .. }), "{e}");
        }
        // a request is not an answer
        assert!(matches!(
            codec::decode::<BootResponse>(&codec::encode(&Request::Held).unwrap()),
            Err(codec::CodecError::Kind { .. })
        ));
        assert!(matches!(
            codec::decode::<BootResponse>(&vec![0; <BootResponse as Wire>::MAX + 1]),
            Err(codec::CodecError::TooLarge { .. })
        ));
    }

    /// The log messages round-trip, and a push keeps its bound: a
    /// request over the limit is refused before anything is decoded.
    #[test]
    fn log_messages_round_trip_and_are_bounded() {
        assert!(matches!(
            codec::decode::<Request>(&vec![0; <Request as Wire>::MAX + 1]),
            Err(codec::CodecError::TooLarge { .. })
        ));
        // a share request's client still stops at 16 KiB
        assert_eq!(<BootRequest as Wire>::MAX, 16 * 1024);
    }

    /// A sync's admission chain round-trips, and a sync without one is
    /// written as before the field existed (no key at all), so the
    /// rounds every member sends cost not one byte more, and a sync from
    /// a node built before it decodes with an empty chain.
    #[test]
    fn a_sync_carries_its_admission_chain_only_when_there_is_one() {
        let t = crate::testkit::mesh(3);
        let sync = |admitted: Vec<SignedOp>| Request::Sync {
            digest: ByteArray::new([1; 32]),
            prefix: vec![],
            admin: Some(ByteArray::new([2; 32])),
            want: vec![],
            all: false,
            admitted,
        };
        let chain = t.roster.admission_chain(&t.nodes[2].key.id());
        assert_eq!(chain.len(), 1);
        let with = sync(chain.clone());
        let back: Request = codec::decode(&codec::encode(&with).unwrap()).unwrap();
        assert!(matches!(back, Request::Sync { admitted, .. } if admitted == chain));

        /// A sync as written before the chain existed.
        #[derive(Serialize, Deserialize)]
        enum Before {
            Sync {
                digest: ByteArray<32>,
                prefix: Vec<u8>,
                admin: Option<ByteArray<32>>,
                want: Vec<NodeId>,
                all: bool,
            },
        }
        impl Wire for Before {
            const KIND: &'static str = <Request as Wire>::KIND;
            const MAX: usize = <Request as Wire>::MAX;
        }
        let before = codec::encode(&Before::Sync {
            digest: ByteArray::new([1; 32]),
            prefix: vec![],
            admin: Some(ByteArray::new([2; 32])),
            want: vec![],
            all: false,
        })
        .unwrap();
        assert_eq!(codec::encode(&sync(vec![])).unwrap(), before);
        let old: Request = codec::decode(&before).unwrap();
        assert!(matches!(old, Request::Sync { admitted, .. } if admitted.is_empty()));
    }

    fn node_id() -> impl Strategy<Value = NodeId> {
        any::<[u8; 32]>().prop_map(|s| NodeKey::from_seed(s).id())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn log_requests_and_responses_round_trip(
            origin in node_id(),
            from in any::<u64>(),
            size in any::<u64>(),
            segs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
            note in proptest::collection::vec(any::<u8>(), 0..256),
            detail in ".{0,64}",
            last in proptest::option::of(any::<u64>()),
        ) {
            use crate::log::replica::wire::RefusedCode;
            let reqs = [
                Request::LogPush(Box::new(Push {
                    origin,
                    from_index: from,
                    segments: segs.iter().cloned().map(serde_bytes::ByteBuf::from).collect(),
                    checkpoint: note.clone(),
                })),
                Request::AddCheckpoint { body: note.clone() },
                Request::LogSeen { origin, note: note.clone() },
            ];
            for r in reqs {
                let b = codec::encode(&r).unwrap();
                let back: Request = codec::decode(&b).unwrap();
                prop_assert_eq!(format!("{back:?}"), format!("{r:?}"));
            }
            let resps = [
                Response::LogHeld(Held { origin, size, matches: from }),
                Response::LogAsk(Ask { origin, from_index: from }),
                Response::LogRefused(Refused::new(origin, size, RefusedCode::Full { used: from, quota: size }, &detail)),
                Response::LogRefused(Refused::new(origin, size, RefusedCode::Evidence, &detail)),
                Response::Cosigned { note: note.clone() },
                Response::WitnessRefused { last_size: last, reason: detail.clone() },
                Response::LogSeen { note: Some(note.clone()) },
                Response::LogSeen { note: None },
            ];
            for r in resps {
                let b = codec::encode(&r).unwrap();
                let back: Response = codec::decode(&b).unwrap();
                prop_assert_eq!(format!("{back:?}"), format!("{r:?}"));
            }
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = codec::decode::<Request>(&bytes);
            let _ = codec::decode::<Response>(&bytes);
            let _ = codec::decode::<BootRequest>(&bytes);
            let _ = codec::decode::<BootResponse>(&bytes);
            let _ = codec::decode::<Gossip>(&bytes);
            let _ = codec::decode::<Invite>(&bytes);
            let _ = Invite::from_token(&String::from_utf8_lossy(&bytes));
        }
    }
}
