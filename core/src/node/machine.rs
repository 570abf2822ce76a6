//! [`Node`]: one keyward node's decisions, sans IO. A driver feeds it
//! [`Input`]s with the time, runs [`Node::handle_timeout`] when
//! [`Node::poll_timeout`] says, and carries out every [`Output`] it polls,
//! in order. keywardd and the simulator drive this same type.
//!
//! The concerns live in their own files as `impl Node` blocks: serving
//! peers' requests (`serve`), the roster and admin messages as they
//! spread (`spread`), the admin's commands (`commands`), requests this
//! node sends and waits on (`outbound`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::guardian::{Event, Guardian, Millis, OwnerState, Policy};
use crate::identity::{NodeId, NodeKey};
use crate::proto::{AdminMsg, InviteRecord};
use crate::roster::{Member, MergeMemo, MergeReport, Roster, SignedOp, Verified};

use super::admin::AdminState;
use super::decisions::DecisionLog;
use super::io::{Input, Output, Write, WriteId};
use super::notes::Note;
use super::outbound::Outbound;
use super::overlay::{Overlay, JOINED_GRACE, PRUNE_AFTER};
use super::peers::{Peers, Strike, MAX_STRIKES};
use super::timers::{Timer, Timers};

/// Who this node is and how it runs.
pub struct NodeConfig {
    pub key: NodeKey,
    /// Its roster record as it would claim it (id, boot key, name, role).
    pub me: Member,
    pub policy: Policy,
    /// No clock reading earlier than this is believed (the build's date).
    pub clock_floor: Millis,
    /// Whether bootstrap addresses are configured.
    pub bootstrap: bool,
    /// Seeds the node's own randomness (invite secrets, anti-entropy
    /// partners): the OS RNG in keywardd, the run's seed in the simulator.
    pub seed: [u8; 32],
    /// Merge results shared with other nodes of the same process (the
    /// simulator's; `roster::MergeMemo`). keywardd: `None`.
    pub merges: Option<Arc<MergeMemo>>,
}

/// What a previous run wrote ([`Write`]), read back at start.
#[derive(Default)]
pub struct Stored {
    /// Roster operations, their signatures checked when the node starts.
    pub roster: Vec<SignedOp>,
    /// Roster operations the driver already checked (the simulator checks
    /// each operation once per world, not once per node and restart).
    pub verified: Vec<Verified>,
    pub owners: Vec<(NodeId, OwnerState)>,
    pub lock: Option<AdminMsg>,
    pub invites: Vec<([u8; 32], InviteRecord)>,
}

/// What happens once a write the node waits on is durable.
pub(super) enum Then {
    /// Answer a peer's request: `ok` once written, a refusal saying
    /// `failed` otherwise; `note` goes to the journal on success.
    Respond {
        id: super::io::InId,
        ok: Box<crate::proto::Response>,
        failed: &'static str,
        note: Option<Note>,
    },
    /// An invite was spent on disk: admit its holder.
    Admit {
        id: super::io::InId,
        op: Box<SignedOp>,
        /// The joiner's id and name, for the journal.
        who: (NodeId, String),
    },
    /// A replica's or the witness's files are durable: answer the push or
    /// the add-checkpoint with `ok`.
    Kept {
        id: super::io::InId,
        ok: Box<crate::proto::Response>,
        kept: super::logs::Kept,
    },
    /// An invite was written: hand it to the admin.
    Invited {
        ctl: super::io::CtlId,
        invited: crate::control::Invited,
        expires_secs: u64,
    },
}

pub struct Node {
    pub(super) key: NodeKey,
    pub(super) me: Member,
    pub(super) roster: Roster,
    pub(super) guardian: Guardian,
    /// Lock state, recent approvals and denials, alerts.
    pub(super) admin: AdminState,
    /// The guardian's decision history and its journal throttle.
    pub(super) decisions: DecisionLog,
    /// Connections, liveness, backoff, strikes and bans.
    pub(super) peers: Peers<NodeId>,
    /// Whom this node keeps connections to.
    pub(super) overlay: Overlay,
    pub(super) timers: Timers,
    /// Invites this node issued, by id (the secret's hash).
    pub(super) invites: BTreeMap<[u8; 32], InviteRecord>,
    /// Owners whose guardian state changed since it was last written.
    pub(super) dirty: BTreeSet<NodeId>,
    /// Connected members outside the overlay, not yet told to go: kept
    /// as connections and the overlay change, so the driver's look at
    /// the next deadline after every event costs nothing.
    unwanted: BTreeSet<NodeId>,
    /// Members told to disconnect whose connection has not closed yet.
    pruning: BTreeSet<NodeId>,
    /// Connected peers that became members while connected (a joiner,
    /// at its inviter; the inviter, at the joiner), and when: if unwanted
    /// they go [`JOINED_GRACE`] after that, not [`PRUNE_AFTER`] after the
    /// connection came up.
    joined: BTreeMap<NodeId, Millis>,
    /// The peers the transport pings ([`Output::Liveness`]).
    liveness: Arc<BTreeSet<NodeId>>,
    pub(super) subscribed: bool,
    /// Our listen addresses as others dial them.
    pub(super) listen: Vec<String>,
    pub(super) bootstrap: bool,
    /// Requests sent and control requests waiting on them.
    pub(super) outbound: Outbound,
    next_write: u64,
    pub(super) awaiting: BTreeMap<WriteId, Then>,
    /// Shutting down: members that connect are told so.
    pub(super) leaving: bool,
    pub(super) rng: StdRng,
    /// Anti-entropy's rounds, descents and wanted peer records.
    pub(super) entropy: super::entropy::Entropy,
    out: VecDeque<Output>,
    merges: Option<Arc<MergeMemo>>,
    /// Logs part 2: this node's log replicated and witnessed, other
    /// origins' logs kept and witnessed.
    pub(super) logs: super::logs::Logs,
}

impl Node {
    /// A node as a previous run left it (or new, from `Stored::default()`).
    pub fn new(cfg: NodeConfig, stored: Stored, now: Millis) -> Node {
        let mut roster = Roster::default();
        let loaded = match &cfg.merges {
            Some(m) => roster.merge_shared(stored.roster, stored.verified, m),
            None => roster.merge_checked(stored.roster, stored.verified),
        };
        let mut guardian = Guardian::new(cfg.key.id(), cfg.policy);
        // The lock state as it was left: the message was checked when it
        // arrived, and a lockdown must not lapse at a restart because its
        // issuer was revoked since; only a lift by an active guardian ends it.
        let (admin, lock) = AdminState::restore(stored.lock, &roster);
        guardian.restore(stored.owners, lock);
        // A clock earlier than the build, or than a time this guardian
        // already wrote down, is wrong (no RTC battery, restored VM, not
        // synced yet): the guardian refuses releases until it is right.
        guardian.set_clock_floor(cfg.clock_floor);
        let mut n = Node {
            merges: cfg.merges,
            key: cfg.key,
            me: cfg.me,
            roster,
            guardian,
            admin,
            decisions: DecisionLog::default(),
            peers: Peers::default(),
            overlay: Overlay::default(),
            timers: Timers::new(now),
            invites: stored.invites.into_iter().collect(),
            dirty: BTreeSet::new(),
            unwanted: BTreeSet::new(),
            pruning: BTreeSet::new(),
            joined: BTreeMap::new(),
            liveness: Arc::new(BTreeSet::new()),
            subscribed: false,
            listen: vec![],
            bootstrap: cfg.bootstrap,
            outbound: Outbound::default(),
            next_write: 0,
            awaiting: BTreeMap::new(),
            leaving: false,
            rng: StdRng::from_seed(cfg.seed),
            entropy: Default::default(),
            out: VecDeque::new(),
            logs: Default::default(),
        };
        for e in loaded.errors {
            n.note(Note::StoredOpIgnored(e.to_string()));
        }
        if now < n.guardian.clock_floor() {
            let by = n.guardian.clock_floor() - now;
            n.note(Note::ClockBehind { by });
        }
        n.members_changed();
        n.subscribe();
        n
    }

    /// Takes one event.
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.logs.now = now;
        match input {
            Input::Listening(addrs) => self.listen = addrs,
            Input::Connected { peer } => self.on_connected(peer, now),
            Input::Closed { peer } => {
                // Not a sign of going down: anyone on the path can reset a
                // TCP connection, and a closed connection would then lift
                // the owner-up check for a copied boot key. Only the signed
                // goodbye (Request::GoingDown) does; a node that crashed
                // without one is releasable once `up_window` passed.
                self.pruning.remove(&peer);
                self.unwanted.remove(&peer);
                self.joined.remove(&peer);
                self.peers.closed(&peer)
            }
            Input::NoAddress { peer } => self.no_address(peer, now),
            Input::Pinged { peer } => self.alive(peer, now),
            Input::Request { id, from, req } => self.serve(id, from, req, now),
            Input::Response { id, from, result } => self.on_response(id, from, result, now),
            Input::Gossip {
                id,
                via,
                author,
                msg,
            } => self.on_gossip(id, via, author, msg, now),
            Input::ConnectionRefused { from, cause } => {
                if let Some(more) = self.decisions.connection_refused(now) {
                    self.note(Note::ConnectionRefused { from, cause, more });
                }
            }
            Input::Misbehaved { peer, what } => self.strike(peer, what, now),
            Input::Verified(vs) => {
                let rep = self.merge_roster(vec![], vs);
                self.after_merge(rep, now);
            }
            Input::Control { id, req } => self.command(id, req, now),
            Input::Written { id, result } => self.written(id, result, now),
            Input::LogCheckpointed { size, checkpoint } => {
                self.logs_checkpointed(size, checkpoint, now)
            }
            Input::LogRead { id, result } => self.logs_read(id, result, now),
        }
    }

    /// The next output to carry out, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Node::handle_timeout`] is next due: the first periodic
    /// timer, or work the node's state makes due (a redial, a prune); see
    /// [`super::timers`]. It can move earlier after any input, so a
    /// driver asks again after each one.
    pub fn poll_timeout(&self) -> Millis {
        self.timers
            .next_deadline()
            .min(self.reconnect_at())
            .min(self.prune_at())
            .min(self.logs.next_deadline())
    }

    /// Runs the timed work that is due.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.logs.now = now;
        for t in self.timers.due(now) {
            match t {
                Timer::PersistOwners => self.persist_dirty(),
                Timer::AntiEntropy => self.anti_entropy(now),
                Timer::Housekeeping => {
                    self.peers.fade(now);
                    if self.overlay.retry_down(now) {
                        self.refresh_wanted();
                    }
                    self.push(Output::Housekeeping);
                }
                Timer::Reconnect | Timer::Prune | Timer::Logs => {}
            }
        }
        if self.logs.next_deadline() <= now {
            self.logs_timeout(now);
        }
        if self.reconnect_at() <= now {
            self.reconnect(now);
        }
        if self.prune_at() <= now {
            self.prune(now);
        }
    }

    /// When a member's or the bootstrap addresses' backoff ends.
    fn reconnect_at(&self) -> Millis {
        let alone = !self.peers.iter_connected().any(|p| self.is_member(p));
        let redial = self.peers.next_redial().unwrap_or(Millis::MAX);
        let boot = self
            .peers
            .next_bootstrap(!alone, self.bootstrap)
            .unwrap_or(Millis::MAX);
        redial.min(boot)
    }

    /// When the first unwanted member connection is due to be closed.
    fn prune_at(&self) -> Millis {
        self.unwanted
            .iter()
            .filter_map(|p| self.prune_due(p))
            .min()
            .unwrap_or(Millis::MAX)
    }

    /// When the connection to `p` is closed if unwanted: [`JOINED_GRACE`]
    /// after `p` was admitted if it came up before that, else
    /// [`PRUNE_AFTER`] after it came up. None: not connected.
    fn prune_due(&self, p: &NodeId) -> Option<Millis> {
        match self.joined.get(p) {
            Some(t) => Some(t.saturating_add(JOINED_GRACE)),
            None => self
                .peers
                .connected_since(p)
                .map(|t| t.saturating_add(PRUNE_AFTER)),
        }
    }

    /// Connected `p` became a member at `now` (it connected before).
    pub(super) fn joined_while_connected(&mut self, p: NodeId, now: Millis) {
        self.joined.insert(p, now);
    }

    /// Whether a connection to `p` is one to prune: a member outside the
    /// overlay, not yet told to go.
    fn is_unwanted(&self, p: &NodeId) -> bool {
        // cheapest first: the overlay's sets are small, the roster is not
        !self.overlay.wants(p) && !self.pruning.contains(p) && self.roster.is_active(p)
    }

    /// Looks at every connection again (the overlay or the roster moved).
    fn recheck_unwanted(&mut self) {
        self.unwanted = self
            .peers
            .iter_connected()
            .filter(|p| self.is_unwanted(p))
            .copied()
            .collect();
    }

    /// Starts a clean shutdown: every connected member (and any that
    /// connects from now on) is told this node goes down, so guardians
    /// know its boot key may ask for shares without it being a copy.
    pub fn goodbye(&mut self) {
        self.leaving = true;
        for p in self.connected_members() {
            self.say_goodbye(p);
        }
        self.persist_dirty();
    }

    /// Writes what changed since the last write now (at shutdown).
    pub fn persist(&mut self) {
        self.persist_dirty();
    }

    /// Whether goodbyes are still unanswered.
    pub fn saying_goodbye(&self) -> bool {
        self.outbound.goodbyes_pending()
    }

    // --- what drivers may read ---

    pub fn id(&self) -> NodeId {
        self.me.id
    }

    pub fn me(&self) -> &Member {
        &self.me
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    pub fn guardian(&self) -> &Guardian {
        &self.guardian
    }

    /// An active member of the mesh.
    pub fn is_member(&self, n: &NodeId) -> bool {
        self.roster.is_active(n)
    }

    /// The members connected now, in id order.
    pub(super) fn connected_members(&self) -> Vec<NodeId> {
        self.peers
            .iter_connected()
            .filter(|p| self.is_member(p))
            .copied()
            .collect()
    }

    pub fn is_connected(&self, n: &NodeId) -> bool {
        self.peers.is_connected(n)
    }

    pub fn connected(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.iter_connected()
    }

    /// Whom this node keeps connections to, and why.
    pub fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    /// The peers whose connections the transport pings (the last
    /// [`Output::Liveness`]): guardians and wards.
    pub fn liveness(&self) -> &Arc<BTreeSet<NodeId>> {
        &self.liveness
    }

    // --- shared by the concerns ---

    pub(super) fn push(&mut self, o: Output) {
        self.out.push_back(o);
    }

    pub(super) fn note(&mut self, n: Note) {
        self.out.push_back(Output::Note(n));
    }

    /// Asks for a write and remembers what follows it.
    pub(super) fn write_then(&mut self, write: Write, then: Then) {
        let id = WriteId(self.next_write);
        self.next_write += 1;
        self.awaiting.insert(id, then);
        self.push(Output::Write {
            id: Some(id),
            write,
        });
    }

    pub(super) fn write(&mut self, write: Write) {
        self.push(Output::Write { id: None, write });
    }

    pub(super) fn random_index(&mut self, len: usize) -> usize {
        (self.rng.next_u32() as usize) % len.max(1)
    }

    /// Merges roster operations (`ops` checked here, `verified` by the
    /// driver), through the shared memo when there is one.
    pub(super) fn merge_roster(
        &mut self,
        ops: Vec<SignedOp>,
        verified: Vec<Verified>,
    ) -> MergeReport {
        match &self.merges {
            Some(m) => self.roster.merge_shared(ops, verified, m),
            None => self.roster.merge_checked(ops, verified),
        }
    }

    pub(super) fn strike(&mut self, peer: NodeId, what: String, now: Millis) {
        match self.peers.strike(peer, now) {
            Strike::Counted(strikes) => self.note(Note::Strike {
                peer,
                strikes,
                what,
                banned: false,
            }),
            Strike::Banned => {
                self.note(Note::Strike {
                    peer,
                    strikes: MAX_STRIKES,
                    what,
                    banned: true,
                });
                self.push(Output::Disconnect(peer));
            }
        }
    }

    /// `peer` proved itself alive; for a member, the guardian notes it.
    pub(super) fn alive(&mut self, peer: NodeId, now: Millis) {
        if !self
            .peers
            .alive(&peer, peer, self.roster.is_active(&peer), now)
        {
            return;
        }
        self.guardian.handle(
            Event::Alive {
                node: peer,
                at: now,
            },
            &self.roster,
        );
        self.dirty.insert(peer);
    }

    /// Writes the guardian state of every owner changed since last time.
    pub(super) fn persist_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let owners: Vec<(NodeId, OwnerState)> = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|o| self.guardian.owner(&o).map(|s| (o, s.clone())))
            .collect();
        if !owners.is_empty() {
            self.write(Write::Owners(owners));
        }
    }

    pub(super) fn members_changed(&mut self) {
        let me = self.me.id;
        let members = self.roster.member_ids();
        self.overlay
            .members_changed(me, members.clone(), self.roster.member_rings());
        self.refresh_wanted();
        let boots = self.roster.member_boots();
        self.push(Output::Members { members, boots });
        self.logs_roster_changed(self.logs.now);
    }

    /// Whom to keep connected changed (wards taken or dropped, a guardian
    /// spoke up, the roster moved): dial the new ones as their backoff
    /// allows; the others are pruned.
    pub(super) fn refresh_wanted(&mut self) {
        let me = self.me.id;
        let wards: Vec<NodeId> = self
            .guardian
            .owners()
            .filter(|(o, s)| **o != me && s.holds_shares() && self.roster.is_active(o))
            .map(|(o, _)| *o)
            .collect();
        self.overlay.set_wards(wards);
        self.overlay.set_logs(self.logs.peers.clone());
        self.peers.set_members(self.overlay.wanted());
        self.recheck_unwanted();
        let live = self.overlay.liveness();
        if live != *self.liveness {
            self.liveness = Arc::new(live);
            self.push(Output::Liveness(self.liveness.clone()));
        }
    }

    /// `g` said whether it holds shares of ours.
    pub(super) fn guardian_says(&mut self, g: NodeId, holds: bool) {
        if self.roster.is_active(&g) && self.overlay.guardian_says(g, holds) {
            self.refresh_wanted();
        }
    }

    /// Closes connections to members this node does not want, once they
    /// have been up for [`PRUNE_AFTER`] (long enough for the request that
    /// opened them to be answered), or [`JOINED_GRACE`] after their peer
    /// was admitted on them. Strangers and boot keys (an unlocking owner)
    /// are the transport's to admit and close.
    fn prune(&mut self, now: Millis) {
        let unwanted: Vec<NodeId> = self
            .unwanted
            .iter()
            .filter(|p| self.prune_due(p).is_some_and(|t| t <= now))
            .copied()
            .collect();
        for p in unwanted {
            self.unwanted.remove(&p);
            self.pruning.insert(p);
            self.push(Output::Disconnect(p));
        }
    }

    pub(super) fn subscribe(&mut self) {
        if self.subscribed {
            return;
        }
        if let Some(m) = self.roster.mesh() {
            self.subscribed = true;
            self.push(Output::Subscribe(m));
        }
    }

    fn on_connected(&mut self, peer: NodeId, now: Millis) {
        self.pruning.remove(&peer);
        if !self.peers.connected(peer, now) {
            self.note(Note::RefusedBanned(peer));
            self.push(Output::Disconnect(peer));
            return;
        }
        if self.is_unwanted(&peer) {
            self.unwanted.insert(peer);
        }
        if self.overlay.up(&peer) {
            self.refresh_wanted();
        }
        self.alive(peer, now);
        self.logs_connected(peer, now);
        if self.is_member(&peer) {
            self.peers.reset_bootstrap();
            self.entropy.found(&peer);
            self.send_sync(peer, now);
            // A member's redial that lands while we shut down proves us
            // alive after our goodbye, and only a signed goodbye ends
            // that (not the connection closing): say it again.
            if self.leaving {
                self.say_goodbye(peer);
            }
        }
    }

    fn reconnect(&mut self, now: Millis) {
        // Cut off from every member (alone at start, or after an outage):
        // the bootstrap addresses again, with backoff.
        let any_member = self.peers.iter_connected().any(|p| self.is_member(p));
        if self.peers.bootstrap_due(now, any_member, self.bootstrap) {
            self.push(Output::DialBootstrap);
        }
        // Wanted members we are not connected to, with backoff.
        for p in self.peers.redials(now) {
            self.push(Output::Dial(p));
        }
        // A gossip neighbour that does not answer gives its place to the
        // next member around its ring.
        let failing: Vec<NodeId> = self
            .overlay
            .gossip()
            .filter(|p| self.peers.failing(p))
            .copied()
            .collect();
        let mut changed = false;
        for p in failing {
            changed |= self.overlay.neighbour_down(p, now);
        }
        if changed {
            self.refresh_wanted();
        }
    }

    /// A write the node waited on is durable (or failed): what follows.
    fn written(&mut self, id: WriteId, result: Result<(), String>, now: Millis) {
        let Some(then) = self.awaiting.remove(&id) else {
            return;
        };
        match (then, result) {
            (Then::Respond { id, ok, note, .. }, Ok(())) => {
                if let Some(n) = note {
                    self.note(n);
                }
                self.push(Output::Respond { id, response: *ok });
            }
            (Then::Respond { id, failed, .. }, Err(e)) => {
                let reason = format!("{failed}: {e}");
                self.push(Output::Respond {
                    id,
                    response: crate::proto::Response::Refused { reason },
                });
            }
            (Then::Kept { id, ok, kept }, result) => self.logs_kept(id, *ok, kept, result),
            (Then::Admit { id, op, who }, Ok(())) => self.admit_spent(id, *op, who, now),
            (Then::Admit { id, .. }, Err(e)) => {
                let reason = format!("could not write the spent invite: {e}");
                self.push(Output::Respond {
                    id,
                    response: crate::proto::Response::Refused { reason },
                });
            }
            (
                Then::Invited {
                    ctl,
                    invited,
                    expires_secs,
                },
                Ok(()),
            ) => {
                self.note(Note::InviteIssued {
                    role: invited.role,
                    expires_in_s: expires_secs,
                });
                self.reply(ctl, Ok(crate::control::CtlReply::Invited(invited)));
            }
            (Then::Invited { ctl, .. }, Err(e)) => {
                self.reply(ctl, Err(crate::control::CtlError::Store(e)));
            }
        }
    }
}
