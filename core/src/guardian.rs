//! The guardian's release policy as a sans-IO state machine.
//!
//! Events with a timestamp go in, actions come out: no sockets, no clock, no
//! tokio. The daemon feeds it from libp2p and the wall clock; the simulator
//! feeds it from a virtual network and a virtual clock. Same code, so what
//! the simulator proves about the policy holds for the daemon.
//!
//! A share is released only if every rule of docs/design.md's release policy
//! passes, checked in a fixed order so a refusal always names the first rule
//! that failed and what an admin can do about it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{self, Wire};
use crate::identity::{NodeId, Sig};
use crate::roster::{Role, Roster};
use crate::shares::ShareEnvelope;

mod replay;
pub use replay::{RecentNonces, MAX_NONCES, NONCE_TTL};

/// Milliseconds: wall clock in the daemon, virtual in the simulator.
pub type Millis = u64;

const REQUEST_DOMAIN: &str = "share request";

/// Release policy times in milliseconds; defaults are Mandos's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Longest gap between liveness checks of a member. The daemon pings
    /// every `up_window / 3` (capped by this), because the copied-boot-key
    /// check needs fresh answers.
    pub interval: Millis,
    /// Longest time since the owner last proved liveness for a release.
    pub timeout: Millis,
    /// After a release, the owner stays releasable this long (a boot that
    /// failed after getting its key can retry), as Mandos does.
    pub extended_timeout: Millis,
    /// If non-zero, a release waits this long for an admin's `deny`.
    pub approval_delay: Millis,
    /// How long an admin's `approve` stays usable.
    pub approval_window: Millis,
    /// A node-key connection that answered within this window means the
    /// owner is up right now, so its boot key must not be in use.
    pub up_window: Millis,
    /// How many distinct admins (active guardians) must approve before an
    /// approval releases: one person's machine, compromised, must not be
    /// enough in a large mesh. At least 1.
    #[serde(default = "one")]
    pub approvals: u32,
}

fn one() -> u32 {
    1
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            interval: 120_000,
            timeout: 300_000,
            extended_timeout: 900_000,
            approval_delay: 0,
            approval_window: 3_600_000,
            up_window: 10_000,
            approvals: 1,
        }
    }
}

/// A share request from an owner's initramfs, signed by its boot key and
/// bound to one guardian, so it cannot be replayed to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRequest {
    pub owner: NodeId,
    pub guardian: NodeId,
    pub epoch: u64,
    #[serde(with = "crate::identity::fixed")]
    pub nonce: [u8; 16],
    pub sig: Sig,
}

#[derive(Serialize)]
struct RequestBody<'a> {
    owner: &'a NodeId,
    guardian: &'a NodeId,
    epoch: u64,
    #[serde(with = "crate::identity::fixed")]
    nonce: [u8; 16],
}

impl ShareRequest {
    #[cfg(any(test, feature = "os-rng"))]
    pub fn new(
        owner: NodeId,
        guardian: NodeId,
        epoch: u64,
        boot: &crate::identity::BootKey,
    ) -> Self {
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        Self::with_nonce(owner, guardian, epoch, nonce, boot)
    }

    /// A request with a nonce chosen by the caller. The daemon uses `new`
    /// (a fresh OS-random nonce); the simulator passes nonces from its
    /// seeded RNG so that the same seed gives the same request bytes (the
    /// ed25519 signature is deterministic, so the whole request is).
    pub fn with_nonce(
        owner: NodeId,
        guardian: NodeId,
        epoch: u64,
        nonce: [u8; 16],
        boot: &crate::identity::BootKey,
    ) -> Self {
        let sig = boot.sign(
            REQUEST_DOMAIN,
            &Self::body(&owner, &guardian, epoch, &nonce),
        );
        ShareRequest {
            owner,
            guardian,
            epoch,
            nonce,
            sig,
        }
    }

    fn body(owner: &NodeId, guardian: &NodeId, epoch: u64, nonce: &[u8; 16]) -> Vec<u8> {
        codec::signing_bytes(&RequestBody {
            owner,
            guardian,
            epoch,
            nonce: *nonce,
        })
    }

    /// Whether `boot` signed this request. Public so a copied-boot-key
    /// alert's evidence can be checked by every node, not only the
    /// guardian that was asked.
    pub fn verify(&self, boot: &crate::identity::BootPublic) -> bool {
        boot.verify(
            REQUEST_DOMAIN,
            &Self::body(&self.owner, &self.guardian, self.epoch, &self.nonce),
            &self.sig,
        )
        .is_ok()
    }
}

impl Wire for ShareRequest {
    const KIND: &'static str = "share-request";
    const MAX: usize = 512;
}

/// Why a guardian would not release a share. Each says what an admin can do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// This guardian sees itself revoked: it keeps no duty to the mesh and
    /// releases nothing, whoever asks.
    GuardianRevoked,
    /// This guardian is not an active member of its own roster (not
    /// joined, or not synced yet), so it cannot judge a request.
    GuardianNotMember,
    NotMember,
    Revoked,
    BadSignature,
    WrongGuardian,
    /// The request came on a connection not authenticated by the owner's
    /// boot key: it was captured and relayed.
    WrongConnection,
    /// This request's nonce was already seen: a replay.
    Replayed,
    /// This guardian's clock is behind a time it already recorded (or its
    /// build date): it was stepped back or is not synced yet, and every
    /// liveness judgement would be wrong.
    ClockNotSane {
        behind: Millis,
    },
    Lockdown {
        by: NodeId,
        since: Millis,
        /// The setter's roster name, so the console says who to ask
        /// (empty from guardians that predate it, or an unknown setter).
        #[serde(default)]
        by_name: String,
    },
    Denied {
        by: NodeId,
        at: Millis,
        /// As in `Lockdown`.
        #[serde(default)]
        by_name: String,
    },
    OwnerUp {
        answered_ago: Millis,
    },
    NotSeen {
        seen_ago: Option<Millis>,
        timeout: Millis,
    },
    NoShare {
        epoch: u64,
    },
    /// Not a refusal for good: `approval_delay` is running.
    Waiting {
        remaining: Millis,
    },
}

impl Refusal {
    /// Short stable name, for counting and tests.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::GuardianRevoked => "guardian-revoked",
            Refusal::GuardianNotMember => "guardian-not-member",
            Refusal::NotMember => "not-member",
            Refusal::Revoked => "revoked",
            Refusal::BadSignature => "bad-signature",
            Refusal::WrongGuardian => "wrong-guardian",
            Refusal::WrongConnection => "wrong-connection",
            Refusal::Replayed => "replayed",
            Refusal::ClockNotSane { .. } => "clock-not-sane",
            Refusal::Lockdown { .. } => "lockdown",
            Refusal::Denied { .. } => "denied",
            Refusal::OwnerUp { .. } => "owner-up",
            Refusal::NotSeen { .. } => "not-seen",
            Refusal::NoShare { .. } => "no-share",
            Refusal::Waiting { .. } => "waiting",
        }
    }

    /// Whether retrying later can succeed without an admin.
    pub fn transient(&self) -> bool {
        matches!(self, Refusal::Waiting { .. })
    }

    /// Whether nothing an admin does in the mesh while this boot waits
    /// can change the answer (the request or the binding itself is wrong),
    /// so the unlock client stops asking this guardian. A guardian that
    /// does not know the owner yet (`NotMember`) may still sync its roster.
    pub fn permanent(&self) -> bool {
        permanent_rule(self.rule())
    }
}

/// [`Refusal::permanent`] by the rule's name (what the simulator records).
pub fn permanent_rule(rule: &str) -> bool {
    matches!(
        rule,
        "revoked"
            | "bad-signature"
            | "wrong-guardian"
            | "no-share"
            | "guardian-revoked"
            | "wrong-connection"
    )
}

/// Human duration: "7 min", "42 s".
pub fn human(ms: Millis) -> String {
    let s = ms / 1000;
    if s >= 7200 {
        format!("{} h", s / 3600)
    } else if s >= 120 {
        format!("{} min", s / 60)
    } else if ms >= 1000 {
        format!("{s} s")
    } else {
        format!("{ms} ms")
    }
}

/// A node as an admin knows it: its roster name with a short id, or the
/// short id alone when the name is not known.
fn who(id: &NodeId, name: &str) -> String {
    if name.is_empty() {
        id.short()
    } else {
        format!("{name} ({})", id.short())
    }
}

/// `id`'s roster name for a refusal, or empty if the roster lacks it.
fn name_of(roster: &Roster, id: &NodeId) -> String {
    roster
        .member(id)
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::GuardianRevoked => write!(f, "this guardian was revoked from the mesh and releases nothing; rebind the owner with active guardians (keyward rebind on the owner, booted with the passphrase)"),
            Refusal::GuardianNotMember => write!(f, "this guardian is not an active member in its own roster (not joined or not synced yet) and releases nothing; check `keyward status` on it"),
            Refusal::WrongConnection => write!(f, "the request came on a connection not authenticated by the owner's boot key: it was captured and relayed, not sent by the owner's initramfs"),
            Refusal::Replayed => write!(f, "this request was already answered (its nonce was seen before): a replay; a real unlock signs a fresh request each time"),
            Refusal::ClockNotSane { behind } => write!(f, "this guardian's clock is {} behind the newest time it recorded (or its build date): it was stepped back or is not synced yet; it releases nothing until its clock is right (check `timedatectl` and NTP on the guardian)", human(*behind)),
            Refusal::NotMember => write!(f, "not a member of this mesh's roster; join it with an invite (keyward invite / keyward join)"),
            Refusal::Revoked => write!(f, "revoked from the mesh; revocation is final, a new identity must join with a new invite"),
            Refusal::BadSignature => write!(f, "request not signed by the owner's boot key; the boot key does not match the roster (run keyward rebind --new-boot-key on the owner)"),
            Refusal::WrongGuardian => write!(f, "request was made for another guardian"),
            Refusal::Lockdown { by, by_name, .. } => write!(f, "the mesh is in lockdown (set by {}); an admin lifts it with `keyward lockdown --lift`", who(by, by_name)),
            Refusal::Denied { by, by_name, .. } => write!(f, "an admin denied it (keyward deny on {}); `keyward approve` overrides", who(by, by_name)),
            Refusal::OwnerUp { answered_ago } => write!(f, "the owner is up and answered {} ago, so its boot key should not be in use: it may have been copied; run `keyward rebind --new-boot-key` on the owner", human(*answered_ago)),
            Refusal::NotSeen { seen_ago: Some(ago), timeout } => write!(f, "not seen alive for {}, timeout {}; ask an admin: keyward approve", human(*ago), human(*timeout)),
            Refusal::NotSeen { seen_ago: None, .. } => write!(f, "never seen alive by this guardian; ask an admin: keyward approve"),
            Refusal::NoShare { epoch } => write!(f, "this guardian holds no share of it for epoch {epoch}; run keyward rebind on the owner"),
            Refusal::Waiting { remaining } => write!(f, "waiting {} for an admin's deny (approval_delay)", human(*remaining)),
        }
    }
}

/// Events the guardian reacts to. `at` is the caller's clock.
#[derive(Clone, Debug)]
pub enum Event {
    /// A connection authenticated by `node`'s node key answered (ping or
    /// signed heartbeat). Boot-key connections never produce this.
    Alive {
        node: NodeId,
        at: Millis,
    },
    /// The node said, signed, that it is shutting down cleanly.
    GoingDown {
        node: NodeId,
        at: Millis,
    },
    /// An owner deposits an envelope over a connection authenticated by
    /// `from`'s node key.
    Deposit {
        from: NodeId,
        envelope: Box<ShareEnvelope>,
        at: Millis,
    },
    /// The owner tells us to forget its envelopes of these epochs (one
    /// per disk it unbound or rebound; other disks' epochs stay).
    Drop {
        from: NodeId,
        epochs: Vec<u64>,
        at: Millis,
    },
    /// A boot-key request for a share; `id` is the caller's handle.
    /// `conn` is the ed25519 key that authenticated the connection the
    /// request came on (the libp2p peer id's key; None if it was not an
    /// ed25519 key). The initramfs connects with its boot key, so only a
    /// request on a connection of the owner's own boot key is answered:
    /// a captured request relayed by anyone else is refused.
    Request {
        id: u64,
        req: ShareRequest,
        conn: Option<NodeId>,
        at: Millis,
    },
    Approve {
        owner: NodeId,
        by: NodeId,
        at: Millis,
    },
    Deny {
        owner: NodeId,
        by: NodeId,
        at: Millis,
    },
    Lockdown {
        by: NodeId,
        at: Millis,
    },
    Lift {
        by: NodeId,
        at: Millis,
    },
}

/// A decision record for the log: who, what, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub at: Millis,
    pub owner: NodeId,
    pub epoch: u64,
    pub released: bool,
    pub rule: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alert {
    /// The owner's boot key was used while the owner is up; `evidence` is
    /// the signed request, so peers told of the alert can check it.
    BootKeyWhileUp {
        owner: NodeId,
        at: Millis,
        evidence: Box<ShareRequest>,
    },
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alert::BootKeyWhileUp { owner, .. } => write!(
                f,
                "boot key of {owner} used while {owner} is running: it may have been copied; run `keyward rebind --new-boot-key` on it"
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Release {
        id: u64,
        envelope: Box<ShareEnvelope>,
    },
    Refuse {
        id: u64,
        refusal: Refusal,
    },
    /// Persist this envelope durably, then acknowledge the deposit.
    Store {
        envelope: Box<ShareEnvelope>,
    },
    /// The deposit was refused; tell the sender why.
    RejectDeposit {
        from: NodeId,
        reason: String,
    },
    /// Persist the owner's state: these epochs' envelopes were dropped
    /// (the ones it did not hold are in `epochs` too; dropping is idempotent).
    Forget {
        owner: NodeId,
        epochs: Vec<u64>,
    },
    /// The owner's state changed (a release, an approval-delay wait
    /// began): write it. Refusals that change nothing say nothing, so a
    /// flood of requests is not a flood of fsyncs.
    Persist {
        owner: NodeId,
    },
    Alert(Alert),
    Log(Decision),
}

/// What a guardian knows of one owner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerState {
    pub last_alive: Option<Millis>,
    pub going_down: Option<Millis>,
    pub last_release: Option<Millis>,
    /// Unused approvals, by issuer: when each was issued (issuer's clock).
    /// An approval is an authorisation for one boot: it ends when a
    /// release uses it, when the owner proves liveness again, or when its
    /// issuer is no longer an active guardian (checked when it is used).
    #[serde(default)]
    pub approvals: BTreeMap<NodeId, Millis>,
    /// Time of the newest approval that ended (used by a release, or voided
    /// by the owner's liveness), so a replayed (re-gossiped) approval
    /// cannot arm again.
    #[serde(default)]
    pub approval_used: Option<Millis>,
    pub denied: Option<(NodeId, Millis)>,
    pub pending_since: Option<Millis>,
    /// Envelopes held, by epoch.
    pub envelopes: BTreeMap<u64, ShareEnvelope>,
}

impl OwnerState {
    /// Whether this guardian holds a share of the owner's key: what makes
    /// the owner its ward, and the only case an approval can matter.
    pub fn holds_shares(&self) -> bool {
        !self.envelopes.is_empty()
    }

    /// The newest time this guardian recorded about the owner on its own
    /// clock (approvals and denials carry their issuer's clock).
    pub fn newest_local(&self) -> Option<Millis> {
        [
            self.last_alive,
            self.going_down,
            self.last_release,
            self.pending_since,
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

impl Wire for OwnerState {
    const KIND: &'static str = "owner-state";
    const MAX: usize = 64 * 1024;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    pub by: NodeId,
    pub at: Millis,
    pub on: bool,
}

impl Wire for LockState {
    const KIND: &'static str = "lock-state";
    const MAX: usize = 128;
}

/// Most envelopes held per owner. Every bound disk of the owner has its own
/// epoch, and a rebind holds old and new for a moment. A deposit beyond this
/// is refused rather than evicting an older epoch, which would silently make
/// another of the owner's disks unopenable.
pub const MAX_EPOCHS: usize = 16;

/// Most unused approvals kept per owner (one per issuer); past it the
/// oldest is dropped. `policy.approvals` is bounded well below it.
pub const MAX_APPROVALS: usize = 64;

/// Ends every unused approval of an owner, remembering the newest so a
/// replay of any of them cannot arm again. True if there was one.
fn end_approvals(s: &mut OwnerState) -> bool {
    let Some(newest) = s.approvals.values().max().copied() else {
        return false;
    };
    s.approval_used = Some(s.approval_used.map_or(newest, |u| u.max(newest)));
    s.approvals.clear();
    true
}

/// Whether `by` may issue an admin message that makes a release possible
/// (approve, lift a lockdown). Auditors can stop releases (deny, lockdown)
/// but never cause one: an auditor's machine is there to read logs.
fn may_loosen(roster: &Roster, by: &NodeId) -> bool {
    roster.member(by).is_some_and(|m| m.role == Role::Guardian)
}

#[derive(Clone, Debug)]
pub struct Guardian {
    me: NodeId,
    policy: Policy,
    owners: BTreeMap<NodeId, OwnerState>,
    lock: Option<LockState>,
    /// No `now` before this is believed: the newest local time restored
    /// from disk, or what the caller knows (the build date).
    clock_floor: Millis,
    /// Nonces of recent share requests, per owner (not persisted).
    nonces: BTreeMap<NodeId, RecentNonces>,
}

impl Guardian {
    pub fn new(me: NodeId, policy: Policy) -> Self {
        Guardian {
            me,
            policy,
            owners: BTreeMap::new(),
            lock: None,
            clock_floor: 0,
            nonces: BTreeMap::new(),
        }
    }

    /// Restores persisted state (daemon restart). The newest local time in
    /// it becomes the clock floor: until the caller's clock passed it, the
    /// clock was stepped back and every release is refused.
    pub fn restore(
        &mut self,
        owners: impl IntoIterator<Item = (NodeId, OwnerState)>,
        lock: Option<LockState>,
    ) {
        for (id, s) in owners {
            if let Some(t) = s.newest_local() {
                self.clock_floor = self.clock_floor.max(t);
            }
            self.owners.insert(id, s);
        }
        self.lock = lock;
    }

    /// Raises the clock floor: a `now` earlier than `floor` is a clock
    /// that is wrong (stepped back, or not synced yet at boot), and the
    /// guardian refuses every release with [`Refusal::ClockNotSane`].
    pub fn set_clock_floor(&mut self, floor: Millis) {
        self.clock_floor = self.clock_floor.max(floor);
    }

    pub fn clock_floor(&self) -> Millis {
        self.clock_floor
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn owner(&self, id: &NodeId) -> Option<&OwnerState> {
        self.owners.get(id)
    }

    pub fn owners(&self) -> impl Iterator<Item = (&NodeId, &OwnerState)> {
        self.owners.iter()
    }

    pub fn lockdown(&self) -> Option<LockState> {
        self.lock.filter(|l| l.on)
    }

    pub fn lock_state(&self) -> Option<LockState> {
        self.lock
    }

    /// Whether `node` counts as up right now (a node-key connection
    /// answered recently and it did not say goodbye since).
    pub fn is_up(&self, node: &NodeId, now: Millis) -> bool {
        self.owners
            .get(node)
            .is_some_and(|s| self.up(s, now).is_some())
    }

    fn up(&self, s: &OwnerState, now: Millis) -> Option<Millis> {
        let last = s.last_alive?;
        let ago = now.saturating_sub(last);
        let said_bye = s.going_down.is_some_and(|g| g >= last);
        (ago <= self.policy.up_window && !said_bye).then_some(ago)
    }

    pub fn handle(&mut self, ev: Event, roster: &Roster) -> Vec<Action> {
        match ev {
            Event::Alive { node, at } => {
                if roster.is_active(&node) {
                    let s = self.owners.entry(node).or_default();
                    s.last_alive = Some(s.last_alive.map_or(at, |l| l.max(at)));
                    // The owner proved it is up: approvals given while it
                    // was down were for a boot that is over (or never
                    // came), so they end; a seizure after this needs new
                    // ones.
                    if end_approvals(s) {
                        return vec![Action::Persist { owner: node }];
                    }
                }
                vec![]
            }
            Event::GoingDown { node, at } => {
                if let Some(s) = self.owners.get_mut(&node) {
                    s.going_down = Some(at);
                }
                vec![]
            }
            Event::Deposit { from, envelope, at } => self.deposit(from, *envelope, at, roster),
            Event::Drop { from, epochs, .. } => {
                if let Some(s) = self.owners.get_mut(&from) {
                    s.envelopes.retain(|e, _| !epochs.contains(e));
                }
                vec![Action::Forget {
                    owner: from,
                    epochs,
                }]
            }
            Event::Request { id, req, conn, at } => self.request(id, req, conn, at, roster),
            Event::Approve { owner, by, at } => {
                // Kept only where the owner's shares are: an approval lets a
                // guardian release, and one holding nothing of the owner's
                // has nothing to release. Every node keeping every owner's
                // approvals made each node's state grow with the mesh (the
                // simulator's 5,000 nodes: gigabytes over a day).
                let held = self.owners.get_mut(&owner).filter(|s| s.holds_shares());
                if let Some(s) =
                    held.filter(|_| may_loosen(roster, &by) && roster.is_active(&owner))
                {
                    // Not one already used or voided (a replay by gossip or
                    // sync), not older than this issuer's last one, not
                    // issued before the owner last proved liveness (that
                    // boot is over), not older than a deny.
                    let fresh = s.approval_used.is_none_or(|u| at > u)
                        && s.approvals.get(&by).is_none_or(|a| at > *a)
                        && s.last_alive.is_none_or(|l| at > l)
                        && s.denied.is_none_or(|(_, d)| d <= at);
                    if fresh {
                        s.approvals.insert(by, at);
                        if s.approvals.len() > MAX_APPROVALS {
                            let oldest =
                                s.approvals.iter().min_by_key(|(_, a)| **a).map(|(b, _)| *b);
                            if let Some(b) = oldest {
                                s.approvals.remove(&b);
                            }
                        }
                        return vec![Action::Persist { owner }];
                    }
                }
                vec![]
            }
            Event::Deny { owner, by, at } => {
                if roster.is_active(&by) {
                    if let Some(s) = self.owners.get_mut(&owner) {
                        // Approvals issued before the deny are void; newer
                        // ones override it, once there are enough of them.
                        s.approvals.retain(|_, a| *a >= at);
                        if s.denied.is_none_or(|(_, d)| d <= at) {
                            s.denied = Some((by, at));
                        }
                        s.pending_since = None;
                        return vec![Action::Persist { owner }];
                    }
                }
                vec![]
            }
            Event::Lockdown { by, at } => self.set_lock(by, at, true, roster),
            Event::Lift { by, at } => {
                if !may_loosen(roster, &by) {
                    return vec![];
                }
                self.set_lock(by, at, false, roster)
            }
        }
    }

    /// Last writer wins by time; at equal times lockdown wins.
    /// Callers bound `at` against their own clock (a message from the far
    /// future would otherwise pin the state).
    fn set_lock(&mut self, by: NodeId, at: Millis, on: bool, roster: &Roster) -> Vec<Action> {
        if !roster.is_active(&by) {
            return vec![];
        }
        let newer = match self.lock {
            None => true,
            Some(l) => at > l.at || (at == l.at && on && !l.on),
        };
        if newer {
            self.lock = Some(LockState { by, at, on });
        }
        vec![]
    }

    fn deposit(
        &mut self,
        from: NodeId,
        env: ShareEnvelope,
        _at: Millis,
        roster: &Roster,
    ) -> Vec<Action> {
        let reject = |reason: String| vec![Action::RejectDeposit { from, reason }];
        if roster.is_revoked(&self.me) {
            return reject(
                "this guardian was revoked from the mesh and takes no shares; bind with active guardians (keyward status shows them)"
                    .into(),
            );
        }
        if !roster.is_active(&self.me) {
            return reject(
                "this guardian is not an active member in its own roster (not joined or not synced yet) and takes no shares"
                    .into(),
            );
        }
        if roster
            .member(&self.me)
            .is_some_and(|m| m.role != Role::Guardian)
        {
            return reject(
                "this node is an auditor and holds no shares; choose guardians (keyward status shows roles)"
                    .into(),
            );
        }
        if !roster.is_active(&from) {
            return reject(format!(
                "{} is not an active member of this mesh",
                from.short()
            ));
        }
        if env.body.owner != from {
            return reject("an envelope may only be deposited by its owner".into());
        }
        if env.body.guardian != self.me {
            return reject(format!(
                "envelope was made for guardian {}, not this one",
                env.body.guardian.short()
            ));
        }
        if env.verify().is_err() {
            return reject("envelope signature does not verify".into());
        }
        let s = self.owners.entry(from).or_default();
        if let Some(old) = s.envelopes.get(&env.body.epoch) {
            if *old == env {
                return vec![Action::Store {
                    envelope: Box::new(env),
                }];
            }
            return reject(format!(
                "already holding a different share for epoch {}; shares are never overwritten, bind a new epoch",
                env.body.epoch
            ));
        }
        if s.envelopes.len() >= MAX_EPOCHS {
            return reject(format!(
                "already holding {MAX_EPOCHS} epochs of this owner's shares; unbind disks that are gone (keyward unbind) before binding more"
            ));
        }
        s.envelopes.insert(env.body.epoch, env.clone());
        vec![Action::Store {
            envelope: Box::new(env),
        }]
    }

    /// The release policy. Rules are checked in this order, and the first
    /// failing one is the answer: first whether the request is authentic
    /// and meant for this guardian on this connection, then the policy.
    pub fn check(
        &self,
        req: &ShareRequest,
        conn: Option<NodeId>,
        at: Millis,
        roster: &Roster,
    ) -> Result<(), Refusal> {
        self.check_request(req, conn, at, roster)?;
        self.check_policy(req, at, roster)
    }

    /// Whether this guardian may answer at all, and whether the request is
    /// the owner's, for this guardian, on the owner's boot-key connection,
    /// and not seen before.
    fn check_request(
        &self,
        req: &ShareRequest,
        conn: Option<NodeId>,
        at: Millis,
        roster: &Roster,
    ) -> Result<(), Refusal> {
        if roster.is_revoked(&self.me) {
            return Err(Refusal::GuardianRevoked);
        }
        if !roster.is_active(&self.me) {
            return Err(Refusal::GuardianNotMember);
        }
        let owner = req.owner;
        if roster.is_revoked(&owner) {
            return Err(Refusal::Revoked);
        }
        let Some(member) = roster.member(&owner) else {
            return Err(Refusal::NotMember);
        };
        // The boot key this epoch's share was sealed to (recorded in the
        // envelope, signed by the owner's node key) answers for it; the
        // roster's key only for envelopes that do not record one. So a
        // boot-key change never strands the initramfs still carrying the old
        // key: its epoch opens with it until the owner drops that epoch.
        let boot = self
            .owners
            .get(&owner)
            .and_then(|s| s.envelopes.get(&req.epoch))
            .and_then(|e| e.body.boot.as_ref())
            .unwrap_or(&member.boot);
        if !req.verify(boot) {
            return Err(Refusal::BadSignature);
        }
        if req.guardian != self.me {
            return Err(Refusal::WrongGuardian);
        }
        // The initramfs connects with its boot key: a request signed by it
        // but arriving on anyone else's connection was captured and relayed.
        if conn != Some(NodeId(boot.sign)) {
            return Err(Refusal::WrongConnection);
        }
        if self
            .nonces
            .get(&owner)
            .is_some_and(|n| n.contains(&req.nonce, at))
        {
            return Err(Refusal::Replayed);
        }
        Ok(())
    }

    /// Approvals that count at `at`: issued by a member that is still an
    /// active guardian, within the approval window, and (with `after`)
    /// not older than that time. One per issuer, so this counts people.
    fn valid_approvals(
        &self,
        s: &OwnerState,
        roster: &Roster,
        at: Millis,
        after: Option<Millis>,
    ) -> usize {
        s.approvals
            .iter()
            .filter(|(by, a)| {
                may_loosen(roster, by)
                    && at.saturating_sub(**a) <= self.policy.approval_window
                    && after.is_none_or(|d| **a >= d)
            })
            .count()
    }

    fn approvals_needed(&self) -> usize {
        self.policy.approvals.max(1) as usize
    }

    fn check_policy(&self, req: &ShareRequest, at: Millis, roster: &Roster) -> Result<(), Refusal> {
        let owner = req.owner;
        if let Some(l) = self.lockdown() {
            return Err(Refusal::Lockdown {
                by: l.by,
                since: l.at,
                by_name: name_of(roster, &l.by),
            });
        }
        // Borrowed, not cloned: a refusal must stay cheap, since a locked
        // node asks every few seconds and strangers may ask at will.
        let none = OwnerState::default();
        let s = self.owners.get(&owner).unwrap_or(&none);
        // A time recorded "in the future" means this clock went back: an
        // owner last seen then would look alive 0 ms ago. Refuse until the
        // clock is past every time this guardian wrote.
        let floor = self.clock_floor.max(s.newest_local().unwrap_or(0));
        if at < floor {
            return Err(Refusal::ClockNotSane { behind: floor - at });
        }
        let needed = self.approvals_needed();
        if let Some((by, d)) = s.denied {
            if self.valid_approvals(s, roster, at, Some(d)) < needed {
                return Err(Refusal::Denied {
                    by,
                    at: d,
                    by_name: name_of(roster, &by),
                });
            }
        }
        if let Some(ago) = self.up(s, at) {
            return Err(Refusal::OwnerUp { answered_ago: ago });
        }
        if !s.envelopes.contains_key(&req.epoch) {
            return Err(Refusal::NoShare { epoch: req.epoch });
        }
        if self.valid_approvals(s, roster, at, None) >= needed {
            return Ok(());
        }
        let alive_ok = s
            .last_alive
            .is_some_and(|l| at.saturating_sub(l) <= self.policy.timeout);
        // As Mandos: a release extends the deadline once, until the owner
        // proves liveness again (its boot completed). Later releases in the
        // window do not renew it, so a node that keeps failing to come up
        // does not stay releasable forever.
        let extended_ok = s.last_release.is_some_and(|r| {
            at.saturating_sub(r) <= self.policy.extended_timeout
                && s.last_alive.is_none_or(|l| l <= r)
        });
        if !alive_ok && !extended_ok {
            return Err(Refusal::NotSeen {
                seen_ago: s.last_alive.map(|l| at.saturating_sub(l)),
                timeout: self.policy.timeout,
            });
        }
        if self.policy.approval_delay > 0 {
            let since = self.pending_start(s, at);
            let waited = at.saturating_sub(since);
            if waited < self.policy.approval_delay {
                return Err(Refusal::Waiting {
                    remaining: self.policy.approval_delay - waited,
                });
            }
        }
        Ok(())
    }

    /// When the current approval-delay wait began. A wait belongs to one
    /// boot: it is stale once the owner proved liveness after it began, or
    /// when the owner stopped asking long ago; then a new wait starts, so an
    /// old one can never skip the delay.
    fn pending_start(&self, s: &OwnerState, at: Millis) -> Millis {
        match s.pending_since {
            Some(p)
                if s.last_alive.is_none_or(|l| l <= p)
                    && at.saturating_sub(p) <= self.policy.approval_delay + self.policy.timeout =>
            {
                p
            }
            _ => at,
        }
    }

    fn request(
        &mut self,
        id: u64,
        req: ShareRequest,
        conn: Option<NodeId>,
        at: Millis,
        roster: &Roster,
    ) -> Vec<Action> {
        let owner = req.owner;
        let result = match self.check_request(&req, conn, at, roster) {
            Err(r) => Err(r),
            Ok(()) => {
                // Authentic and new: remember its nonce whatever the
                // policy says, so the same request is never answered twice.
                if !self.nonces.contains_key(&owner) {
                    self.nonces.retain(|_, n| !n.expire(at));
                }
                self.nonces.entry(owner).or_default().insert(req.nonce, at);
                self.check_policy(&req, at, roster)
            }
        };
        let needed = self.approvals_needed();
        let approved = self
            .owners
            .get(&owner)
            .is_some_and(|s| self.valid_approvals(s, roster, at, None) >= needed);
        let mut out = Vec::new();
        let decision = |released: bool, rule: &str, reason: String| {
            Action::Log(Decision {
                at,
                owner,
                epoch: req.epoch,
                released,
                rule: rule.into(),
                reason,
            })
        };
        match result {
            Ok(()) => {
                let s = self.owners.get_mut(&owner).expect("checked above");
                let env = s.envelopes.get(&req.epoch).cloned().expect("checked above");
                let how = match (approved, needed) {
                    (false, _) => "alive within timeout".to_string(),
                    (true, 1) => "approved by an admin".to_string(),
                    (true, n) => format!("approved by {n} admins"),
                };
                // Approvals authorise one boot: this one. A deny they
                // overrode is settled by it too.
                end_approvals(s);
                s.denied = None;
                if s.last_release
                    .is_none_or(|r| s.last_alive.is_some_and(|l| l > r))
                {
                    s.last_release = Some(at);
                }
                s.pending_since = None;
                out.push(Action::Persist { owner });
                out.push(decision(true, "released", how));
                out.push(Action::Release {
                    id,
                    envelope: Box::new(env),
                });
            }
            Err(refusal) => {
                if let Refusal::Waiting { .. } = refusal {
                    let start = self.pending_start(
                        self.owners.get(&owner).unwrap_or(&OwnerState::default()),
                        at,
                    );
                    let s = self.owners.entry(owner).or_default();
                    if s.pending_since != Some(start) {
                        s.pending_since = Some(start);
                        out.push(Action::Persist { owner });
                    }
                }
                if let Refusal::OwnerUp { .. } = refusal {
                    out.push(Action::Alert(Alert::BootKeyWhileUp {
                        owner,
                        at,
                        evidence: Box::new(req.clone()),
                    }));
                }
                out.push(decision(false, refusal.rule(), refusal.to_string()));
                out.push(Action::Refuse { id, refusal });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{BootKey, NodeKey};
    use crate::roster::{Member, MeshId, OpBody, Role, SignedOp};
    use crate::shares::{split, DiskSecret};

    const MIN: Millis = 60_000;

    mod hardening;

    struct World {
        roster: Roster,
        g: Guardian,
        owner: NodeKey,
        boot: BootKey,
        admin: NodeKey,
        env: ShareEnvelope,
    }

    fn world() -> World {
        let admin = NodeKey::generate();
        let owner = NodeKey::generate();
        let gk = NodeKey::generate();
        let boot = BootKey::generate();
        let mesh = MeshId([1; 16]);
        let m = |k: &NodeKey, n: &str, b: &BootKey| Member {
            id: k.id(),
            boot: b.public(),
            name: n.into(),
            role: Role::Guardian,
        };
        let (mut roster, _) =
            Roster::found("t", mesh, m(&admin, "admin", &BootKey::generate()), &admin);
        for (k, n, b) in [(&owner, "web1", &boot), (&gk, "g", &BootKey::generate())] {
            roster
                .merge(SignedOp::sign(
                    OpBody::Admit {
                        mesh,
                        member: m(k, n, b),
                        claim: m(k, n, b).claim(mesh, k),
                        invite: None,
                        by: admin.id(),
                        at: 0,
                    },
                    &admin,
                ))
                .unwrap();
        }
        let envs = split(
            &DiskSecret::generate(),
            1,
            &[gk.id()],
            7,
            &owner,
            &boot.public(),
        )
        .unwrap();
        let mut g = Guardian::new(gk.id(), Policy::default());
        let acts = g.handle(
            Event::Deposit {
                from: owner.id(),
                envelope: Box::new(envs[0].clone()),
                at: 0,
            },
            &roster,
        );
        assert!(matches!(acts[0], Action::Store { .. }));
        World {
            roster,
            g,
            owner,
            boot,
            admin,
            env: envs[0].clone(),
        }
    }

    impl World {
        fn ask(&mut self, at: Millis) -> Result<(), Refusal> {
            let req = ShareRequest::new(self.owner.id(), self.g.me(), 7, &self.boot);
            let acts = self.g.handle(
                Event::Request {
                    id: 1,
                    req,
                    conn: self.conn(),
                    at,
                },
                &self.roster,
            );
            assert!(
                acts.iter().any(|a| matches!(a, Action::Log(_))),
                "every decision is logged"
            );
            match acts.last().unwrap() {
                Action::Release { envelope, .. } => {
                    assert_eq!(**envelope, self.env);
                    Ok(())
                }
                Action::Refuse { refusal, .. } => Err(refusal.clone()),
                a => panic!("unexpected {a:?}"),
            }
        }
        /// The connection of the owner's initramfs: its boot key.
        fn conn(&self) -> Option<NodeId> {
            Some(NodeId(self.boot.public().sign))
        }
        fn alive(&mut self, at: Millis) {
            self.g.handle(
                Event::Alive {
                    node: self.owner.id(),
                    at,
                },
                &self.roster,
            );
        }
        fn bye(&mut self, at: Millis) {
            self.g.handle(
                Event::GoingDown {
                    node: self.owner.id(),
                    at,
                },
                &self.roster,
            );
        }
    }

    #[test]
    fn timeout_boundaries() {
        let mut w = world();
        w.alive(0);
        w.bye(1);
        assert_eq!(w.ask(5 * MIN), Ok(()), "exactly at timeout still releases");
        let mut w = world();
        w.alive(0);
        w.bye(1);
        let e = w.ask(5 * MIN + 1).unwrap_err();
        assert_eq!(
            e,
            Refusal::NotSeen {
                seen_ago: Some(5 * MIN + 1),
                timeout: 5 * MIN
            }
        );
        assert!(
            e.to_string()
                .contains("not seen alive for 5 min, timeout 5 min; ask an admin: keyward approve"),
            "{e}"
        );
        let mut w = world();
        assert!(matches!(
            w.ask(0),
            Err(Refusal::NotSeen { seen_ago: None, .. })
        ));
    }

    #[test]
    fn extended_timeout_after_a_release() {
        let mut w = world();
        w.alive(0);
        w.bye(0);
        assert_eq!(w.ask(4 * MIN), Ok(()));
        // boot failed; retry after the plain timeout but within extended
        assert_eq!(w.ask(4 * MIN + 15 * MIN), Ok(()));
        assert!(matches!(
            w.ask(4 * MIN + 30 * MIN + 1),
            Err(Refusal::NotSeen { .. })
        ));
    }

    #[test]
    fn owner_up_is_refused_and_alerts() {
        let mut w = world();
        w.alive(100);
        let req = ShareRequest::new(w.owner.id(), w.g.me(), 7, &w.boot);
        let acts = w.g.handle(
            Event::Request {
                id: 9,
                req: req.clone(),
                conn: w.conn(),
                at: 5_000,
            },
            &w.roster,
        );
        // the alert carries the signed request as its evidence
        assert!(acts.contains(&Action::Alert(Alert::BootKeyWhileUp {
            owner: w.owner.id(),
            at: 5_000,
            evidence: Box::new(req),
        })));
        assert!(matches!(
            acts.last(),
            Some(Action::Refuse {
                refusal: Refusal::OwnerUp { .. },
                ..
            })
        ));
        // just past the up window: a crash (no goodbye) is a normal reboot
        assert_eq!(w.ask(100 + 10_001), Ok(()));
        // boundary: exactly at the up window still counts as up
        let mut w = world();
        w.alive(0);
        assert!(matches!(w.ask(10_000), Err(Refusal::OwnerUp { .. })));
        // a clean goodbye lifts it at once
        w.bye(10_000);
        assert_eq!(w.ask(10_000), Ok(()));
    }

    /// An approval is kept only where the owner's shares are: a guardian
    /// holding none of the admin's own shares keeps no state for it.
    #[test]
    fn an_approval_for_an_owner_whose_shares_are_not_here_is_not_kept() {
        let mut w = world();
        let admin = w.admin.id();
        let r = w.roster.clone();
        // the admin is a member whose shares this guardian does not hold
        let out = w.g.handle(
            Event::Approve {
                owner: admin,
                by: admin,
                at: MIN,
            },
            &r,
        );
        assert!(out.is_empty());
        assert!(w.g.owner(&admin).is_none(), "no state kept for it");
        // the owner whose shares it holds: kept and persisted
        let owner = w.owner.id();
        let out = w.g.handle(
            Event::Approve {
                owner,
                by: admin,
                at: MIN,
            },
            &r,
        );
        assert_eq!(out, vec![Action::Persist { owner }]);
        assert_eq!(w.g.owner(&owner).unwrap().approvals.get(&admin), Some(&MIN));
    }

    #[test]
    fn approve_overrides_not_seen_and_deny_blocks() {
        let mut w = world();
        let (admin, owner) = (w.admin.id(), w.owner.id());
        assert!(matches!(w.ask(60 * MIN), Err(Refusal::NotSeen { .. })));
        w.g.handle(
            Event::Approve {
                owner,
                by: admin,
                at: 61 * MIN,
            },
            &w.roster.clone(),
        );
        assert_eq!(w.ask(62 * MIN), Ok(()));
        // the approval was consumed, the extended timeout now covers retries
        assert_eq!(w.ask(63 * MIN), Ok(()));
        w.g.handle(
            Event::Deny {
                owner,
                by: admin,
                at: 64 * MIN,
            },
            &w.roster.clone(),
        );
        assert!(matches!(w.ask(65 * MIN), Err(Refusal::Denied { .. })));
        // a stale approval does not undo a later deny
        w.g.handle(
            Event::Approve {
                owner,
                by: admin,
                at: 63 * MIN,
            },
            &w.roster.clone(),
        );
        assert!(matches!(w.ask(65 * MIN), Err(Refusal::Denied { .. })));
        w.g.handle(
            Event::Approve {
                owner,
                by: admin,
                at: 66 * MIN,
            },
            &w.roster.clone(),
        );
        assert_eq!(w.ask(66 * MIN), Ok(()));
        // approvals expire
        let mut w = world();
        w.g.handle(
            Event::Approve {
                owner: w.owner.id(),
                by: w.admin.id(),
                at: 0,
            },
            &w.roster.clone(),
        );
        assert_eq!(w.ask(60 * MIN), Ok(()));
        let mut w = world();
        w.g.handle(
            Event::Approve {
                owner: w.owner.id(),
                by: w.admin.id(),
                at: 0,
            },
            &w.roster.clone(),
        );
        assert!(matches!(w.ask(60 * MIN + 1), Err(Refusal::NotSeen { .. })));
    }

    #[test]
    fn a_replayed_approval_releases_only_once() {
        let mut w = world();
        let (admin, owner) = (w.admin.id(), w.owner.id());
        w.g.policy.extended_timeout = 0;
        w.g.handle(
            Event::Approve {
                owner,
                by: admin,
                at: 60 * MIN,
            },
            &w.roster.clone(),
        );
        assert_eq!(w.ask(61 * MIN), Ok(()));
        // the same approval arrives again by gossip or sync
        w.g.handle(
            Event::Approve {
                owner,
                by: admin,
                at: 60 * MIN,
            },
            &w.roster.clone(),
        );
        assert_eq!(w.ask(62 * MIN).map_err(|r| r.rule()), Err("not-seen"));
        // a new approval works
        w.g.handle(
            Event::Approve {
                owner,
                by: admin,
                at: 62 * MIN,
            },
            &w.roster.clone(),
        );
        assert_eq!(w.ask(62 * MIN), Ok(()));
    }

    #[test]
    fn a_stale_wait_never_skips_the_approval_delay() {
        let mut w = world();
        w.g.policy.approval_delay = MIN;
        w.alive(0);
        w.bye(0);
        assert!(matches!(w.ask(1000), Err(Refusal::Waiting { .. })));
        // the owner came up by other means (passphrase), then reboots later
        w.alive(2 * MIN);
        w.bye(2 * MIN);
        assert_eq!(w.ask(3 * MIN), Err(Refusal::Waiting { remaining: MIN }));
    }

    #[test]
    fn the_extended_window_ends_with_new_liveness_and_is_not_renewed() {
        let mut w = world();
        w.alive(0);
        w.bye(0);
        assert_eq!(w.ask(4 * MIN), Ok(()));
        // retries within the window do not move it
        assert_eq!(w.ask(10 * MIN), Ok(()));
        assert_eq!(w.ask(19 * MIN), Ok(()));
        assert!(matches!(w.ask(19 * MIN + 1), Err(Refusal::NotSeen { .. })));
        // once the owner proved liveness, only the plain timeout counts
        let mut w = world();
        w.alive(0);
        w.bye(0);
        assert_eq!(w.ask(4 * MIN), Ok(()));
        w.alive(5 * MIN);
        w.bye(5 * MIN);
        assert!(matches!(w.ask(11 * MIN), Err(Refusal::NotSeen { .. })));
    }

    #[test]
    fn approval_delay_waits_for_deny() {
        let mut w = world();
        w.g.policy.approval_delay = MIN;
        w.alive(0);
        w.bye(0);
        assert_eq!(w.ask(1000), Err(Refusal::Waiting { remaining: MIN }));
        assert_eq!(
            w.ask(1000 + MIN - 1),
            Err(Refusal::Waiting { remaining: 1 })
        );
        assert_eq!(w.ask(1000 + MIN), Ok(()));
        // a deny during the delay refuses
        let mut w = world();
        w.g.policy.approval_delay = MIN;
        w.alive(0);
        w.bye(0);
        assert!(w.ask(1000).is_err());
        w.g.handle(
            Event::Deny {
                owner: w.owner.id(),
                by: w.admin.id(),
                at: 2000,
            },
            &w.roster.clone(),
        );
        assert!(matches!(w.ask(1000 + MIN), Err(Refusal::Denied { .. })));
    }

    #[test]
    fn lockdown_and_lift_last_writer_wins() {
        let mut w = world();
        let admin = w.admin.id();
        w.alive(0);
        w.bye(0);
        w.g.handle(Event::Lockdown { by: admin, at: 10 }, &w.roster.clone());
        assert!(matches!(w.ask(20), Err(Refusal::Lockdown { .. })));
        w.g.handle(Event::Lift { by: admin, at: 5 }, &w.roster.clone());
        assert!(
            matches!(w.ask(20), Err(Refusal::Lockdown { .. })),
            "an older lift loses"
        );
        w.g.handle(Event::Lift { by: admin, at: 30 }, &w.roster.clone());
        assert_eq!(w.ask(40), Ok(()));
        // a stranger cannot lock the mesh
        w.g.handle(
            Event::Lockdown {
                by: NodeKey::generate().id(),
                at: 50,
            },
            &w.roster.clone(),
        );
        assert!(w.g.lockdown().is_none());
    }

    #[test]
    fn membership_signature_and_share_rules() {
        let mut w = world();
        w.alive(0);
        w.bye(0);
        // wrong boot key
        let req = ShareRequest::new(w.owner.id(), w.g.me(), 7, &BootKey::generate());
        assert_eq!(
            w.g.check(&req, w.conn(), 1, &w.roster),
            Err(Refusal::BadSignature)
        );
        // request for another guardian
        let req = ShareRequest::new(w.owner.id(), w.admin.id(), 7, &w.boot);
        assert_eq!(
            w.g.check(&req, w.conn(), 1, &w.roster),
            Err(Refusal::WrongGuardian)
        );
        // unknown epoch
        let req = ShareRequest::new(w.owner.id(), w.g.me(), 8, &w.boot);
        assert_eq!(
            w.g.check(&req, w.conn(), 1, &w.roster),
            Err(Refusal::NoShare { epoch: 8 })
        );
        // a stranger
        let req = ShareRequest::new(NodeKey::generate().id(), w.g.me(), 7, &w.boot);
        assert_eq!(
            w.g.check(&req, w.conn(), 1, &w.roster),
            Err(Refusal::NotMember)
        );
        // revoked
        let mesh = w.roster.mesh().unwrap();
        w.roster
            .merge(SignedOp::sign(
                OpBody::Revoke {
                    mesh,
                    node: w.owner.id(),
                    by: w.admin.id(),
                    reason: "x".into(),
                    at: 0,
                },
                &w.admin,
            ))
            .unwrap();
        assert_eq!(w.ask(1), Err(Refusal::Revoked));
    }

    #[test]
    fn deposits_are_checked_and_never_overwritten() {
        let mut w = world();
        let other = NodeKey::generate();
        let acts = w.g.handle(
            Event::Deposit {
                from: other.id(),
                envelope: Box::new(w.env.clone()),
                at: 0,
            },
            &w.roster,
        );
        assert!(
            matches!(&acts[0], Action::RejectDeposit { reason, .. } if reason.contains("not an active member"))
        );
        let mut bad = w.env.clone();
        bad.body.epoch = 8;
        let acts = w.g.handle(
            Event::Deposit {
                from: w.owner.id(),
                envelope: Box::new(bad),
                at: 0,
            },
            &w.roster,
        );
        assert!(
            matches!(&acts[0], Action::RejectDeposit { reason, .. } if reason.contains("signature"))
        );
        // same envelope again is an idempotent ack
        let acts = w.g.handle(
            Event::Deposit {
                from: w.owner.id(),
                envelope: Box::new(w.env.clone()),
                at: 0,
            },
            &w.roster,
        );
        assert!(matches!(acts[0], Action::Store { .. }));
        // a different share for a held epoch is refused, even at the same index
        let other = split(
            &DiskSecret::generate(),
            1,
            &[w.g.me()],
            7,
            &w.owner,
            &w.boot.public(),
        )
        .unwrap();
        let acts = w.g.handle(
            Event::Deposit {
                from: w.owner.id(),
                envelope: Box::new(other[0].clone()),
                at: 0,
            },
            &w.roster,
        );
        assert!(
            matches!(&acts[0], Action::RejectDeposit { reason, .. } if reason.contains("never overwritten"))
        );
        assert_eq!(w.g.owner(&w.owner.id()).unwrap().envelopes[&7], w.env);
    }

    fn deposit_epoch(w: &mut World, epoch: u64) -> Vec<Action> {
        let env = split(
            &DiskSecret::generate(),
            1,
            &[w.g.me()],
            epoch,
            &w.owner,
            &w.boot.public(),
        )
        .unwrap();
        w.g.handle(
            Event::Deposit {
                from: w.owner.id(),
                envelope: Box::new(env[0].clone()),
                at: 0,
            },
            &w.roster,
        )
    }

    #[test]
    fn disks_of_one_owner_keep_their_own_epochs() {
        let mut w = world();
        // a second disk bound with its own epoch leaves the first alone
        assert!(matches!(deposit_epoch(&mut w, 9)[0], Action::Store { .. }));
        let epochs = |w: &World| -> Vec<u64> {
            w.g.owner(&w.owner.id())
                .unwrap()
                .envelopes
                .keys()
                .copied()
                .collect()
        };
        assert_eq!(epochs(&w), vec![7, 9]);
        // rebinding disk 9 drops exactly 9, never 7
        w.g.handle(
            Event::Drop {
                from: w.owner.id(),
                epochs: vec![9],
                at: 1,
            },
            &w.roster,
        );
        assert_eq!(epochs(&w), vec![7]);
        w.alive(0);
        w.bye(0);
        assert_eq!(w.ask(1), Ok(()));
        // past the cap, deposits are refused, nothing is evicted
        for e in 100..100 + MAX_EPOCHS as u64 - 1 {
            assert!(matches!(deposit_epoch(&mut w, e)[0], Action::Store { .. }));
        }
        assert!(matches!(
            &deposit_epoch(&mut w, 999)[0],
            Action::RejectDeposit { reason, .. } if reason.contains("unbind")
        ));
        assert!(epochs(&w).contains(&7));
    }

    /// Adds an auditor-role member to the world's roster.
    fn auditor(w: &mut World) -> NodeKey {
        let k = NodeKey::generate();
        let mesh = w.roster.mesh().unwrap();
        let member = Member {
            id: k.id(),
            boot: BootKey::generate().public(),
            name: "audit".into(),
            role: Role::Auditor,
        };
        w.roster
            .merge(SignedOp::sign(
                OpBody::Admit {
                    mesh,
                    claim: member.claim(mesh, &k),
                    member,
                    invite: None,
                    by: w.admin.id(),
                    at: 0,
                },
                &w.admin,
            ))
            .unwrap();
        k
    }

    #[test]
    fn auditors_can_stop_releases_but_never_cause_one() {
        let mut w = world();
        let a = auditor(&mut w).id();
        let r = w.roster.clone();
        let owner = w.owner.id();
        // long offline: only an approval would release, and an auditor's does not
        w.g.handle(
            Event::Approve {
                owner,
                by: a,
                at: 60 * MIN,
            },
            &r,
        );
        assert!(matches!(w.ask(60 * MIN), Err(Refusal::NotSeen { .. })));
        // an auditor's lockdown holds, and its lift is ignored
        w.g.handle(
            Event::Lockdown {
                by: a,
                at: 61 * MIN,
            },
            &r,
        );
        w.g.handle(
            Event::Lift {
                by: a,
                at: 62 * MIN,
            },
            &r,
        );
        assert!(matches!(w.ask(62 * MIN), Err(Refusal::Lockdown { .. })));
        // a guardian lifts it; an auditor's deny then still refuses
        w.g.handle(
            Event::Lift {
                by: w.admin.id(),
                at: 63 * MIN,
            },
            &r,
        );
        w.g.handle(
            Event::Approve {
                owner,
                by: w.admin.id(),
                at: 63 * MIN,
            },
            &r,
        );
        w.g.handle(
            Event::Deny {
                owner,
                by: a,
                at: 64 * MIN,
            },
            &r,
        );
        assert!(matches!(w.ask(64 * MIN), Err(Refusal::Denied { .. })));
    }

    #[test]
    fn an_auditor_holds_no_shares() {
        let mut w = world();
        let a = auditor(&mut w);
        let mut g = Guardian::new(a.id(), Policy::default());
        let env = split(
            &DiskSecret::generate(),
            1,
            &[a.id()],
            1,
            &w.owner,
            &w.boot.public(),
        )
        .unwrap();
        let acts = g.handle(
            Event::Deposit {
                from: w.owner.id(),
                envelope: Box::new(env[0].clone()),
                at: 0,
            },
            &w.roster,
        );
        assert!(
            matches!(&acts[0], Action::RejectDeposit { reason, .. } if reason.contains("auditor"))
        );
    }
}
