//! keywardd: one event loop that drives the swarm, the control socket and
//! timers, and feeds the decisions in `keyward_core`.

mod addresses;
mod alerts;
mod members;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, mdns, ping, Multiaddr, PeerId, Swarm};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::addr_book::AddrBook;
use crate::codec;
use crate::config::Config;
use crate::control::{
    self, AdminSent, CtlError, CtlReply, CtlRequest, CtlResponse, GuardianAnswer, GuardianResults,
    Invited, Joined, Revoked, Status, MAX_LINE,
};
use crate::guardian::{self, Action, Event, Guardian, Millis, OwnerState};
use crate::identity::{BootKey, NodeId, NodeKey, Sig};
use crate::keyfile::KeyFile;
use crate::net::{self, Behaviour, BehaviourEvent, SwarmOptions};
use crate::peer::{FromPeerId, Libp2pKey, PeerIds};
use crate::proto::{
    self, AdminBody, AdminKind, AdminMsg, Gossip, Invite, InviteRecord, Request, Response,
};
use crate::roster::{Member, MergeReport, MeshId, Role, Roster, SignedOp, Verified};
use crate::shares::ShareEnvelope;
use crate::store::{Batch, Store, TreeName};
use keyward_core::node::admin::{AdminState, Applied, MAX_RECENT_ADMIN};
use keyward_core::node::decisions::{DecisionLog, Logged};
use keyward_core::node::members as membership;
use keyward_core::node::peers::{Peers, Strike};
use keyward_core::node::timers::{Timer, Timers};

/// keywardd's clock: Unix ms that never go back within a run, whatever
/// the system clock does (see `clock`).
pub fn now_ms() -> Millis {
    crate::clock::now()
}

/// What `keyward init` made.
pub struct InitReport {
    pub node: NodeId,
    pub mesh: Option<(MeshId, String)>,
    pub created_keys: bool,
}

/// Makes the node key and boot key (unless present) and, with `mesh`, a
/// new mesh with this node as founder.
pub fn init(cfg: &Config, mesh: Option<&str>) -> anyhow::Result<InitReport> {
    let nk_path = cfg.node_key_path();
    let mut created = false;
    let node = if nk_path.exists() {
        NodeKey::load(&nk_path)?
    } else {
        let k = NodeKey::generate();
        k.save(&nk_path)?;
        created = true;
        k
    };
    let boot = if cfg.boot_key.exists() {
        BootKey::load(&cfg.boot_key)?
    } else {
        let b = BootKey::generate();
        b.save(&cfg.boot_key)?;
        created = true;
        b
    };
    let _ = std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700));
    let store = Store::open(&cfg.db_path())?;
    let ops = store.tree::<SignedOp>(TreeName::Roster)?;
    let mut roster = Roster::default();
    roster.merge_all(ops.all()?.into_iter().map(|(_, o)| o).collect());
    let mut out = InitReport {
        node: node.id(),
        mesh: roster
            .mesh()
            .map(|m| (m, roster.mesh_name().unwrap_or_default().to_string())),
        created_keys: created,
    };
    if let Some(name) = mesh {
        crate::roster::check_name(name).map_err(|e| anyhow::anyhow!("mesh {e}"))?;
        if let Some((m, n)) = &out.mesh {
            bail!("this node is already in mesh `{n}` ({m}); a node belongs to one mesh");
        }
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let me = Member {
            id: node.id(),
            boot: boot.public(),
            name: cfg.node_name(),
            role: Role::Guardian,
        };
        let (r, op) = Roster::found(name, MeshId(id), me, &node);
        ops.put(&op.id(), &op)?;
        store.flush()?;
        out.mesh = Some((r.mesh().expect("founded"), name.to_string()));
    }
    Ok(out)
}

/// A control request waiting for the network.
enum Pending {
    Join {
        reply: oneshot::Sender<CtlResponse>,
        mesh: MeshId,
    },
    /// One guardian's part of a control request fanned out to several.
    Fanout {
        batch: u64,
        guardian: NodeId,
    },
    Sync,
    GoingDown,
}

/// A control request fanned out to several guardians.
struct Fanout {
    reply: oneshot::Sender<CtlResponse>,
    waiting: usize,
    /// Per guardian id: its answer.
    results: BTreeMap<String, GuardianAnswer>,
}

type CtlMsg = (CtlRequest, oneshot::Sender<CtlResponse>);

pub struct Daemon {
    cfg: Config,
    key: NodeKey,
    me: Member,
    store: Store,
    roster: Roster,
    guardian: Guardian,
    swarm: Swarm<Behaviour>,
    /// Where peers are, learnt only from the peers themselves.
    book: AddrBook,
    /// Our connections that we dialled, and the address: a peer that
    /// answers on one confirms that address again.
    dialled: BTreeMap<libp2p::swarm::ConnectionId, Multiaddr>,
    /// Our own signed peer record, handed out in sync answers, and whether
    /// our listen addresses changed since it was signed.
    own_record: Option<crate::addr_book::VerifiedRecord>,
    own_record_stale: bool,
    /// Connections, liveness, backoff, strikes and bans.
    peers: Peers<PeerId>,
    timers: Timers,
    /// Peers whose addresses changed since they were written to disk:
    /// written at the end of the event that changed them.
    peers_dirty: BTreeSet<PeerId>,
    /// Peers whose addresses were only confirmed again: written lazily.
    peers_stale: BTreeSet<PeerId>,
    pending: BTreeMap<OutboundRequestId, Pending>,
    fanouts: BTreeMap<u64, Fanout>,
    next_batch: u64,
    /// Lock state, recent approvals and denials, alerts.
    admin: AdminState,
    /// The guardian's decision history and its journal throttle.
    decisions: DecisionLog,
    dirty: BTreeSet<NodeId>,
    subscribed: bool,
    listen: Vec<Multiaddr>,
    /// Roster ops verified off the event loop, back for merging.
    verified_tx: mpsc::UnboundedSender<Vec<Verified>>,
    verified_rx: Option<mpsc::UnboundedReceiver<Vec<Verified>>>,
}

/// A sync answer with more unknown ops than this is verified on a blocking
/// thread, so a large (or hostile) roster never stalls unlocks.
const VERIFY_INLINE: usize = 64;

impl Daemon {
    pub fn new(cfg: Config) -> anyhow::Result<Daemon> {
        let (verified_tx, verified_rx) = mpsc::unbounded_channel();
        let key = NodeKey::load(&cfg.node_key_path()).with_context(|| {
            format!(
                "loading the node key (run `keyward init` first, or check --config / state_dir {})",
                cfg.state_dir.display()
            )
        })?;
        let boot = BootKey::load(&cfg.boot_key).context("loading the boot key")?;
        let me = Member {
            id: key.id(),
            boot: boot.public(),
            name: cfg.node_name(),
            role: Role::Guardian,
        };
        drop(boot);
        let store = Store::open(&cfg.db_path())?;
        let mut roster = Roster::default();
        let loaded = roster.merge_all(
            store
                .tree::<SignedOp>(TreeName::Roster)?
                .all()?
                .into_iter()
                .map(|(_, o)| o)
                .collect(),
        );
        for e in loaded.errors {
            warn!("stored roster operation ignored: {e}");
        }
        let policy = cfg.policy.to_policy();
        let mut guardian = Guardian::new(key.id(), policy);
        let owners: Vec<(NodeId, OwnerState)> = store
            .tree::<OwnerState>(TreeName::Guardian)?
            .all()?
            .into_iter()
            .filter_map(|(k, v)| Some((NodeId(k.try_into().ok()?), v)))
            .collect();
        // The lock state as it was left: the message was checked when it
        // arrived, and a lockdown must not lapse at a restart because its
        // issuer was revoked since; only a lift by an active guardian ends it.
        let (admin, lock) = AdminState::restore(
            store.tree::<AdminMsg>(TreeName::Approvals)?.get(b"lock")?,
            &roster,
        );
        guardian.restore(owners, lock);
        let book = addresses::load(&store, cfg.address_max_age.saturating_mul(1000))?;
        // A clock earlier than this build, or than a time this guardian
        // already wrote down, is wrong (no RTC battery, restored VM, not
        // synced yet): the guardian refuses releases until it is right.
        guardian.set_clock_floor(crate::clock::build_time());
        let now = now_ms();
        if now < guardian.clock_floor() {
            warn!(
                "the system clock is {} behind the newest time this guardian recorded (or its build date): share releases are refused until it is right; start keywardd after time sync (systemd: After=time-sync.target)",
                guardian::human(guardian.clock_floor() - now)
            );
        }
        let ping_interval =
            Duration::from_millis((policy.up_window / 3).clamp(500, policy.interval.max(500)));
        let swarm = net::daemon_swarm(
            key.libp2p_keypair(),
            &SwarmOptions {
                ping_interval,
                mdns: cfg.mdns,
                quic: cfg.quic,
            },
        )?;
        let mut d = Daemon {
            cfg,
            key,
            me,
            store,
            roster,
            guardian,
            swarm,
            book,
            dialled: BTreeMap::new(),
            own_record: None,
            own_record_stale: false,
            peers: Peers::default(),
            timers: Timers::new(now),
            peers_dirty: BTreeSet::new(),
            peers_stale: BTreeSet::new(),
            pending: BTreeMap::new(),
            fanouts: BTreeMap::new(),
            next_batch: 0,
            admin,
            decisions: DecisionLog::default(),
            dirty: BTreeSet::new(),
            subscribed: false,
            listen: vec![],
            verified_tx,
            verified_rx: Some(verified_rx),
        };
        d.members_changed();
        Ok(d)
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until SIGTERM/SIGINT, then says goodbye to the mesh.
    pub async fn run(mut self) -> anyhow::Result<()> {
        for a in self.cfg.listen.clone() {
            let ma: Multiaddr = a.parse()?;
            self.swarm
                .listen_on(ma.clone())
                .with_context(|| format!("listening on {a}"))?;
        }
        if self.cfg.quic {
            for a in self.cfg.listen.clone() {
                if let Some(q) = tcp_to_quic(&a.parse()?) {
                    if let Err(e) = self.swarm.listen_on(q.clone()) {
                        warn!("QUIC listen on {q}: {e}");
                    }
                }
            }
        }
        for b in self.cfg.bootstrap.clone() {
            let ma: Multiaddr = b.parse()?;
            if let Some(libp2p::multiaddr::Protocol::P2p(p)) = ma.iter().last() {
                self.pin_addr(p, &ma);
            }
        }
        self.dial_bootstrap();
        self.subscribe();
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<CtlMsg>(16);
        let listener = bind_control(&self.cfg.control_socket)?;
        let sock = self.cfg.control_socket.clone();
        tokio::spawn(serve_control(listener, ctl_tx));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        info!(node = %self.me.id, name = %self.me.name, mesh = ?self.roster.mesh_name(), "keywardd started");
        let mut verified_rx = self.verified_rx.take().expect("run once");
        loop {
            // Timers are checked after every event, not only when the
            // sleep below ends: a busy swarm would otherwise starve them.
            if self.timers.next_deadline() <= now_ms() {
                self.on_timers();
            }
            let wait = self.until_next_timer();
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(vs) = verified_rx.recv() => {
                    let was = self.active_ids();
                    let rep = self.roster.merge_verified(vs);
                    self.after_merge(was, rep);
                }
                Some((req, reply)) = ctl_rx.recv() => self.on_control(req, reply),
                _ = tokio::time::sleep(wait) => self.on_timers(),
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        info!("shutting down: telling peers we go down cleanly");
        self.goodbye().await;
        self.persist_dirty();
        self.persist_addrs(true);
        let _ = self.store.flush();
        let _ = std::fs::remove_file(sock);
        Ok(())
    }

    async fn goodbye(&mut self) {
        let members: Vec<PeerId> = self
            .peers
            .iter_connected()
            .filter(|p| self.is_member_peer(p))
            .copied()
            .collect();
        for p in &members {
            let id = self
                .swarm
                .behaviour_mut()
                .rpc
                .send_request(p, Request::GoingDown);
            self.pending.insert(id, Pending::GoingDown);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        while self
            .pending
            .values()
            .any(|p| matches!(p, Pending::GoingDown))
        {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(ev) => {
                    // A member's redial that lands while we shut down
                    // proves us alive after our goodbye, and only a signed
                    // goodbye ends that (not the connection closing): say
                    // it again on the new connection.
                    let opened = match &ev {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => Some(*peer_id),
                        _ => None,
                    };
                    self.on_swarm(ev);
                    if let Some(p) = opened.filter(|p| self.is_member_peer(p)) {
                        let id = self
                            .swarm
                            .behaviour_mut()
                            .rpc
                            .send_request(&p, Request::GoingDown);
                        self.pending.insert(id, Pending::GoingDown);
                    }
                }
                Err(_) => break,
            }
        }
    }

    fn is_member_peer(&self, p: &PeerId) -> bool {
        NodeId::from_peer_id(p).is_some_and(|n| self.roster.is_active(&n))
    }

    fn subscribe(&mut self) {
        if self.subscribed {
            return;
        }
        if let Some(m) = self.roster.mesh() {
            if let Err(e) = self.swarm.behaviour_mut().gossip.subscribe(&net::topic(&m)) {
                warn!("gossip subscribe: {e}");
            } else {
                self.subscribed = true;
            }
        }
    }

    fn strike(&mut self, p: PeerId, what: &str) {
        match self.peers.strike(p, now_ms()) {
            Strike::Counted(n) => warn!(peer = %p, strikes = n, "bad message from peer: {what}"),
            Strike::Banned => {
                let n = keyward_core::node::peers::MAX_STRIKES;
                warn!(peer = %p, strikes = n, "bad message from peer: {what}");
                warn!(peer = %p, "disconnecting peer after {n} bad messages; refusing it for 60 s");
                let _ = self.swarm.disconnect_peer_id(p);
            }
        }
    }

    fn alive(&mut self, p: &PeerId) {
        let Some(n) = NodeId::from_peer_id(p) else {
            return;
        };
        let at = now_ms();
        if !self.peers.alive(p, n, self.roster.is_active(&n), at) {
            return;
        }
        self.guardian
            .handle(Event::Alive { node: n, at }, &self.roster);
        self.dirty.insert(n);
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.on_swarm_event(ev);
        // Addresses learnt by this event are on disk before the next one
        // is handled: a power cut a second after a mesh formed must not
        // leave a restarted node with nobody to dial.
        self.persist_addrs(false);
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        if let SwarmEvent::ConnectionClosed { connection_id, .. } = &ev {
            self.dialled.remove(connection_id);
        }
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!("listening on {address}/p2p/{}", self.peer_id());
                self.listen.push(address);
                self.own_record_stale = true;
                self.refresh_own_record();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen.retain(|a| *a != address);
                self.own_record_stale = true;
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error: libp2p::swarm::ListenError::Denied { cause },
                ..
            } => self.connection_refused(&send_back_addr, &cause),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                if !self.peers.connected(peer_id, now_ms()) {
                    debug!(peer = %peer_id, "refusing a banned peer");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                let member = self.is_member_peer(&peer_id);
                net::set_gossip_member(&mut self.swarm.behaviour_mut().gossip, &peer_id, member);
                if endpoint.is_dialer() {
                    let a = endpoint.get_remote_address().clone();
                    self.on_reached(peer_id, connection_id, a);
                }
                self.alive(&peer_id);
                if self.is_member_peer(&peer_id) {
                    self.send_sync(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                // Not a sign of going down: anyone on the path can reset a
                // TCP connection, and a closed connection would then lift
                // the owner-up check for a copied boot key. Only the signed
                // goodbye (Request::GoingDown) does; a node that crashed
                // without one is releasable once `up_window` passed.
                self.peers.closed(&peer_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(_),
                ..
            })) => self.alive(&peer),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                connection_id,
            })) => self.on_identify(peer_id, connection_id, &info.listen_addrs),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                for (p, a) in list {
                    if p != self.peer_id() && self.room_for(&p) {
                        self.book.candidate(p, &a);
                        self.dial_node(p);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let verdict = if !self.gossip_from_members(&propagation_source, &message) {
                    gossipsub::MessageAcceptance::Reject
                } else {
                    match codec::decode::<Gossip>(&message.data) {
                        Ok(g) => self.on_gossip(g, message.source),
                        Err(e) => {
                            // Strict mode: `source` is the signed author.
                            if let Some(author) = message.source {
                                self.strike(author, &format!("gossip: {e}"));
                            }
                            gossipsub::MessageAcceptance::Reject
                        }
                    }
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(ev)) => self.on_rpc(ev),
            _ => {}
        }
    }

    fn on_gossip(&mut self, g: Gossip, author: Option<PeerId>) -> gossipsub::MessageAcceptance {
        match g {
            Gossip::Op(op) => {
                self.merge_ops(vec![op]);
            }
            Gossip::Admin(m) => {
                // A forged alert is the author's doing: it signed it.
                if let Err(why) = AdminState::check_alert(&m, &self.roster, now_ms()) {
                    if let Some(a) = author {
                        self.strike(a, &why.to_string());
                    }
                    return gossipsub::MessageAcceptance::Reject;
                }
                self.apply_admin(m)
            }
        }
        gossipsub::MessageAcceptance::Accept
    }

    /// Merges roster ops, persists the new ones, and subscribes if we just
    /// learnt our mesh.
    fn merge_ops(&mut self, ops: Vec<SignedOp>) -> usize {
        let was = self.active_ids();
        let rep = self.roster.merge_all(ops);
        self.after_merge(was, rep)
    }

    fn active_ids(&self) -> BTreeSet<NodeId> {
        self.roster.members().map(|m| m.id).collect()
    }

    /// Merges a sync answer: a few new ops inline, many on a blocking
    /// thread (signature checks are the cost; the merge itself is
    /// near-linear and runs back on the loop).
    fn merge_ops_off_loop(&mut self, ops: Vec<SignedOp>) {
        let fresh: Vec<SignedOp> = ops
            .into_iter()
            .filter(|o| !self.roster.knows(&o.id()))
            .collect();
        if fresh.len() <= VERIFY_INLINE {
            self.merge_ops(fresh);
            return;
        }
        let tx = self.verified_tx.clone();
        tokio::task::spawn_blocking(move || {
            let vs: Vec<Verified> = fresh.into_iter().filter_map(|o| o.verify().ok()).collect();
            let _ = tx.send(vs);
        });
    }

    /// Persists what a merge changed and reports membership changes.
    fn after_merge(&mut self, was_active: BTreeSet<NodeId>, rep: MergeReport) -> usize {
        for e in &rep.errors {
            debug!("roster op not merged: {e}");
        }
        let new_ops = rep.new;
        if !new_ops.is_empty() || !rep.dropped.is_empty() {
            let t = self.store.tree::<SignedOp>(TreeName::Roster);
            if let Ok(t) = t {
                for op in &new_ops {
                    if let Err(e) = t.put(&op.id(), op) {
                        warn!("persisting roster op: {e}");
                    }
                }
                for id in &rep.dropped {
                    if let Err(e) = t.remove(id) {
                        warn!("compacting roster op: {e}");
                    }
                }
            }
            let _ = self.store.flush();
            let mut fresh = vec![];
            for m in self.roster.members() {
                if !was_active.contains(&m.id) {
                    info!(member = %m.id, name = %m.name, role = %m.role, "member admitted");
                    fresh.extend(m.id.peer_id());
                }
            }
            for p in fresh {
                if self.peers.is_connected(&p) {
                    self.alive(&p);
                }
            }
            for id in was_active {
                if !self.roster.is_active(&id) {
                    warn!(member = %id, "member revoked");
                    if id == self.me.id {
                        warn!(
                            "this node was revoked from the mesh; it gets no shares and holds none"
                        );
                    }
                }
            }
            self.members_changed();
            self.subscribe();
        }
        new_ops.len()
    }

    fn publish(&mut self, g: Gossip) {
        let Some(m) = self.roster.mesh() else { return };
        match codec::encode(&g) {
            Ok(bytes) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(net::topic(&m), bytes)
                {
                    debug!("gossip publish: {e} (peers catch up by roster sync)");
                }
            }
            Err(e) => warn!("gossip encode: {e}"),
        }
    }

    /// Takes an admin message (gossip, sync, our own CLI) and does what
    /// the core says: log it, write the lock message or the owner's state.
    fn apply_admin(&mut self, m: AdminMsg) {
        let kind = m.body.kind.clone();
        match self
            .admin
            .apply(m, now_ms(), &self.roster, &mut self.guardian)
        {
            Err(e @ keyward_core::node::admin::AdminRefusal::FromTheFuture { .. }) => warn!("{e}"),
            Err(e) => debug!("{e}"),
            Ok(Applied::Lock { on, by }) => {
                if on {
                    warn!(by = %by, "LOCKDOWN: every share request is refused until lifted")
                } else {
                    info!(by = %by, "lockdown lifted")
                }
                // The message that set it, as the core now holds it.
                if let (Ok(t), Some(m)) = (
                    self.store.tree::<AdminMsg>(TreeName::Approvals),
                    self.admin.lock_msg(),
                ) {
                    let _ = t.put(b"lock", m);
                    let _ = self.store.flush();
                }
            }
            Ok(Applied::Decision { owner, by }) => {
                info!(kind = ?kind, by = %by, "admin decision");
                self.dirty.insert(owner);
                self.persist_dirty();
            }
            Ok(Applied::Alert(a)) => self.log_alert(&a),
            Ok(Applied::LockUnchanged | Applied::Repeat | Applied::AlertRepeat) => {}
        }
    }

    fn log_alert(&self, a: &keyward_core::node::admin::RecordedAlert) {
        warn!(owner = %a.owner, reported_by = ?a.reported_by.map(|b| b.to_string()), "ALERT: {}", a.text);
    }

    fn send_sync(&mut self, p: PeerId) {
        if self.roster.mesh().is_none() {
            return;
        }
        let digest = serde_bytes::ByteArray::new(self.roster.digest());
        let id = self
            .swarm
            .behaviour_mut()
            .rpc
            .send_request(&p, Request::Sync { digest });
        self.pending.insert(id, Pending::Sync);
    }

    fn on_rpc(&mut self, ev: request_response::Event<Request, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_response(peer, request_id, Ok(response)),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                // A response that did not decode is the peer's fault, as a
                // bad request is.
                if let request_response::OutboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.strike(peer, &format!("response: {e}"));
                    }
                }
                self.on_response(peer, request_id, Err(error.to_string()))
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.strike(peer, &e.to_string());
                        return;
                    }
                }
                debug!(peer = %peer, "inbound request failed: {error}");
            }
            _ => {}
        }
    }

    fn respond(&mut self, ch: ResponseChannel<Response>, r: Response) {
        if self.swarm.behaviour_mut().rpc.send_response(ch, r).is_err() {
            debug!("response dropped: requester went away");
        }
    }

    fn on_request(&mut self, peer: PeerId, req: Request, ch: ResponseChannel<Response>) {
        let from = NodeId::from_peer_id(&peer);
        let member = from.filter(|f| self.roster.is_active(f));
        let at = now_ms();
        match req {
            Request::Join {
                secret,
                member,
                claim,
            } => {
                let r = self.admit(from, secret.into_array(), member, claim);
                let resp = match r {
                    Ok(ops) => Response::Joined { ops },
                    Err(e) => {
                        warn!(peer = %peer, "join refused: {e}");
                        Response::Refused { reason: e }
                    }
                };
                self.respond(ch, resp);
            }
            Request::Share(sr) => {
                // The connection's key: the initramfs's boot key, checked
                // against the owner's, so a relayed request is refused.
                let acts = self.guardian.handle(
                    Event::Request {
                        id: 0,
                        req: sr,
                        conn: from,
                        at,
                    },
                    &self.roster,
                );
                let resp = self
                    .run_actions(acts, Some(&peer))
                    .unwrap_or(Response::Refused {
                        reason: "internal: no decision".into(),
                    });
                self.respond(ch, resp);
            }
            Request::Deposit(env) => {
                let Some(from) = member else {
                    return self.refuse_stranger(ch);
                };
                let acts = self.guardian.handle(
                    Event::Deposit {
                        from,
                        envelope: env,
                        at,
                    },
                    &self.roster,
                );
                let resp = self.run_actions(acts, Some(&peer)).unwrap_or(Response::Ack);
                self.respond(ch, resp);
            }
            Request::Drop { epochs } => {
                let Some(from) = member else {
                    return self.refuse_stranger(ch);
                };
                let acts = self
                    .guardian
                    .handle(Event::Drop { from, epochs, at }, &self.roster);
                let resp = self.run_actions(acts, Some(&peer)).unwrap_or(Response::Ack);
                self.respond(ch, resp);
            }
            Request::Sync { digest } => {
                if member.is_none() {
                    return self.refuse_stranger(ch);
                }
                let ops = if digest.into_array() == self.roster.digest() {
                    vec![]
                } else {
                    self.roster.ops()
                };
                let window = self.guardian.policy().approval_window;
                let admin = self.admin.for_sync(now_ms(), window);
                let resp = Response::Roster {
                    ops,
                    admin,
                    records: self.sync_records(),
                };
                self.respond(ch, resp);
            }
            Request::Malformed(why) => {
                self.strike(peer, &why);
                self.respond(ch, Response::Refused { reason: why });
            }
            Request::Held => {
                let Some(from) = member else {
                    return self.refuse_stranger(ch);
                };
                let epochs = self
                    .guardian
                    .owner(&from)
                    .map(|s| s.envelopes.keys().copied().collect())
                    .unwrap_or_default();
                self.respond(ch, Response::Held { epochs });
            }
            Request::GoingDown => {
                if let Some(n) = member {
                    info!(node = %n, "peer going down cleanly");
                    self.peers.said_bye(peer);
                    self.guardian
                        .handle(Event::GoingDown { node: n, at }, &self.roster);
                    self.dirty.insert(n);
                    self.persist_dirty();
                }
                self.respond(ch, Response::Ack);
            }
        }
    }

    fn refuse_stranger(&mut self, ch: ResponseChannel<Response>) {
        let reason = "only active mesh members may send this request".to_string();
        self.respond(ch, Response::Refused { reason });
    }

    /// Carries out the guardian's actions; returns the response to send.
    fn run_actions(&mut self, acts: Vec<Action>, peer: Option<&PeerId>) -> Option<Response> {
        let mut resp = None;
        for a in acts {
            match a {
                Action::Release { envelope, .. } => resp = Some(Response::Share(envelope)),
                Action::Refuse { refusal, .. } => resp = Some(Response::ShareRefused(refusal)),
                Action::Store { envelope } => {
                    let owner = envelope.body.owner;
                    let state = self.guardian.owner(&owner).cloned().unwrap_or_default();
                    let mut b = Batch::default();
                    let r = b
                        .put(TreeName::Guardian, &owner.0, &state)
                        .and_then(|_| self.store.commit(b));
                    resp = Some(match r {
                        Ok(()) => {
                            info!(owner = %owner, epoch = envelope.body.epoch, "holding share");
                            Response::Ack
                        }
                        Err(e) => Response::Refused {
                            reason: format!("guardian could not store the share: {e}"),
                        },
                    });
                }
                Action::RejectDeposit { reason, from } => {
                    warn!(from = %from, "deposit refused: {reason}");
                    resp = Some(Response::Refused { reason });
                }
                Action::Persist { owner } => {
                    self.dirty.insert(owner);
                    self.persist_dirty();
                }
                Action::Forget { owner, epochs } => {
                    info!(owner = %owner, ?epochs, "dropping shares");
                    self.dirty.insert(owner);
                    self.persist_dirty();
                    resp = Some(Response::Ack);
                }
                Action::Alert(alert) => {
                    let guardian::Alert::BootKeyWhileUp {
                        owner,
                        at,
                        evidence,
                    } = alert;
                    self.admin.first_evidence(&evidence);
                    if let Some(a) = self.admin.record_alert(owner, at, None, &self.roster) {
                        self.log_alert(&a);
                    }
                    if let Some(mesh) = self.roster.mesh() {
                        let m = AdminMsg::sign(
                            AdminBody {
                                mesh,
                                kind: AdminKind::Alert {
                                    owner,
                                    evidence: *evidence,
                                },
                                by: self.me.id,
                                at,
                            },
                            &self.key,
                        );
                        self.publish(Gossip::Admin(m));
                    }
                }
                Action::Log(d) => {
                    let from_boot = self.is_owners_boot_key(&d.owner, peer);
                    let requester = peer.and_then(NodeId::from_peer_id);
                    let name = self
                        .roster
                        .member(&d.owner)
                        .map(|m| m.name.clone())
                        .unwrap_or_else(|| d.owner.short());
                    let req = peer.map(|p| p.to_string()).unwrap_or_default();
                    let (rule, reason, epoch, owner) =
                        (d.rule.clone(), d.reason.clone(), d.epoch, d.owner);
                    match self.decisions.record(d, from_boot, requester) {
                        Logged::Released => {
                            info!(target: "keyward::decision", owner = %name, epoch, requester = %req, "share RELEASED: {reason}")
                        }
                        Logged::Refused { unlogged } => {
                            if unlogged > 0 {
                                warn!(target: "keyward::decision", owner = %name, requester = %req, rule = %rule, "{unlogged} more identical refusals not logged");
                            }
                            warn!(target: "keyward::decision", owner = %name, epoch, requester = %req, rule = %rule, "share REFUSED: {reason}")
                        }
                        Logged::Quiet | Logged::Stranger(None) => {}
                        Logged::Stranger(Some(more)) => {
                            warn!(target: "keyward::decision", requester = %req, owner = %owner, rule = %rule,
                                "share request not from the owner's boot key REFUSED: {reason} ({more} more such since the last line)")
                        }
                    }
                }
            }
        }
        resp
    }

    /// Inviter side of a join.
    fn admit(
        &mut self,
        from: Option<NodeId>,
        secret: [u8; 32],
        member: Member,
        claim: Sig,
    ) -> Result<Vec<SignedOp>, String> {
        let invites = self
            .store
            .tree::<InviteRecord>(TreeName::Invites)
            .map_err(|e| e.to_string())?;
        let invite_id = proto::invite_id(&secret);
        let record = invites.get(&invite_id).map_err(|e| e.to_string())?;
        let req = membership::JoinRequest {
            conn: from,
            member: &member,
            claim: &claim,
            invite_id,
            record,
        };
        match membership::admit(&self.roster, &self.key, req, now_ms())? {
            membership::Admission::AlreadyIn => {}
            membership::Admission::Admit { record, op } => {
                // The invite is spent on disk before anyone is admitted.
                invites
                    .put(&invite_id, &record)
                    .map_err(|e| e.to_string())?;
                self.store.flush().map_err(|e| e.to_string())?;
                self.merge_ops(vec![(*op).clone()]);
                self.publish(Gossip::Op(*op));
                info!(member = %member.id, name = %member.name, "admitted by invite");
            }
        }
        Ok(self.roster.ops())
    }

    fn on_response(&mut self, peer: PeerId, id: OutboundRequestId, r: Result<Response, String>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        match p {
            Pending::Join { reply, mesh } => {
                let resp = match r {
                    Ok(Response::Joined { ops }) => {
                        if ops.first().map(|o| o.body.mesh()) != Some(mesh) {
                            CtlResponse::from(CtlError::InviterWrongMesh)
                        } else {
                            self.merge_ops(ops);
                            if self.roster.is_active(&self.me.id) {
                                self.peers.reset_backoff();
                                self.send_sync(peer);
                                CtlResponse::Ok(CtlReply::Joined(Joined {
                                    mesh: self.roster.mesh().map(|m| m.to_string()),
                                    mesh_name: self.roster.mesh_name().map(String::from),
                                    members: self.roster.members().count(),
                                }))
                            } else {
                                CtlResponse::from(CtlError::NotAdmitted)
                            }
                        }
                    }
                    Ok(Response::Refused { reason }) => {
                        CtlResponse::from(CtlError::JoinRefused { reason })
                    }
                    Ok(_) => CtlResponse::from(CtlError::InviterConfused),
                    Err(reason) => CtlResponse::from(CtlError::InviterUnreachable {
                        peer: peer.to_string(),
                        reason,
                    }),
                };
                let _ = reply.send(resp);
            }
            Pending::Fanout { batch, guardian } => {
                let res = match r {
                    Ok(Response::Ack) => GuardianAnswer::Ok,
                    Ok(Response::Held { epochs }) => GuardianAnswer::Held { epochs },
                    Ok(Response::Refused { reason }) => GuardianAnswer::Refused { reason },
                    Ok(_) => GuardianAnswer::Unexpected,
                    Err(reason) => GuardianAnswer::Unreachable { reason },
                };
                if let Some(f) = self.fanouts.get_mut(&batch) {
                    f.results.insert(guardian.to_string(), res);
                    f.waiting -= 1;
                    if f.waiting == 0 {
                        let f = self.fanouts.remove(&batch).expect("present");
                        let _ =
                            f.reply
                                .send(CtlResponse::Ok(CtlReply::Guardians(GuardianResults {
                                    results: f.results,
                                })));
                    }
                }
            }
            Pending::Sync => match r {
                Ok(Response::Roster {
                    ops,
                    admin,
                    records,
                }) => {
                    let n = ops.len();
                    self.merge_ops_off_loop(ops);
                    self.take_records(peer, records);
                    if n > 0 {
                        debug!(peer = %peer, received = n, "roster sync");
                    }
                    for m in admin.into_iter().take(MAX_RECENT_ADMIN) {
                        self.apply_admin(m);
                    }
                }
                Ok(_) => {}
                Err(e) => debug!(peer = %peer, "sync failed: {e}"),
            },
            Pending::GoingDown => {}
        }
    }

    /// Sends a request, dialing with the known addresses if needed.
    fn send(&mut self, p: PeerId, req: Request) -> OutboundRequestId {
        // Our own dial (fresh port) goes first; the request waits for it
        // (request-response ignores its own dial being redundant).
        self.dial_node(p);
        self.swarm.behaviour_mut().rpc.send_request(&p, req)
    }

    fn dial_node(&mut self, p: PeerId) {
        let addrs = self.book.dial_addrs(&p);
        if !self.peers.is_connected(&p) && !addrs.is_empty() {
            // A fresh source port: with port reuse, two nodes dialling each
            // other at once from their listen ports merge into one TCP
            // connection on which both start noise as initiator, and fail.
            let _ = self.swarm.dial(
                DialOpts::peer_id(p)
                    .addresses(addrs)
                    .allocate_new_port()
                    .build(),
            );
        }
    }

    /// Dials every static bootstrap address. Those without a /p2p/ part
    /// name no member, so the member backoff below never covers them.
    fn dial_bootstrap(&mut self) {
        for b in self.cfg.bootstrap.clone() {
            let Ok(ma) = b.parse::<Multiaddr>() else {
                continue;
            };
            let opts = DialOpts::unknown_peer_id()
                .address(ma.clone())
                .allocate_new_port()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                warn!("bootstrap {ma}: {e}");
            }
        }
    }

    /// How long the event loop may sleep before the next timer. Due timers
    /// were run just before and are rescheduled from now, so this is never
    /// zero for long: a clock that jumped cannot spin the loop.
    fn until_next_timer(&self) -> Duration {
        let wait = self.timers.next_deadline().saturating_sub(now_ms());
        Duration::from_millis(wait.clamp(1, 60_000))
    }

    fn on_timers(&mut self) {
        let now = now_ms();
        for t in self.timers.due(now) {
            match t {
                Timer::Reconnect => self.reconnect(now),
                Timer::PersistOwners => self.persist_dirty(),
                Timer::AntiEntropy => self.anti_entropy(),
                Timer::Housekeeping => {
                    self.peers.fade(now);
                    self.forget_strangers();
                    self.persist_addrs(true);
                }
            }
        }
    }

    fn reconnect(&mut self, now: Millis) {
        // Cut off from every member (alone at start, or after an outage):
        // the bootstrap addresses again, with backoff.
        let any_member = self.peers.iter_connected().any(|p| self.is_member_peer(p));
        if self
            .peers
            .bootstrap_due(now, any_member, !self.cfg.bootstrap.is_empty())
        {
            self.dial_bootstrap();
        }
        // Members we are not connected to, with backoff.
        let me = self.peer_id();
        let members: Vec<PeerId> = self
            .roster
            .members()
            .filter_map(|m| m.id.peer_id())
            .filter(|p| *p != me)
            .collect();
        for p in self.peers.redials(now, members) {
            self.dial_node(p);
        }
        // roster changes from the control socket mark entries too
        self.persist_addrs(false);
        self.refresh_own_record();
    }

    /// Roster anti-entropy with one random connected member.
    fn anti_entropy(&mut self) {
        let conn: Vec<PeerId> = self
            .peers
            .iter_connected()
            .filter(|p| self.is_member_peer(p))
            .copied()
            .collect();
        if !conn.is_empty() {
            let i = (rand::random::<u32>() as usize) % conn.len();
            self.send_sync(conn[i]);
        }
    }

    fn persist_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let mut b = Batch::default();
        for o in std::mem::take(&mut self.dirty) {
            if let Some(s) = self.guardian.owner(&o) {
                if b.put(TreeName::Guardian, &o.0, s).is_err() {
                    warn!(owner = %o, "owner state too large to persist");
                }
            }
        }
        if let Err(e) = self.store.commit(b) {
            warn!("persisting guardian state: {e}");
        }
    }

    fn on_control(&mut self, req: CtlRequest, reply: oneshot::Sender<CtlResponse>) {
        let r = match req {
            CtlRequest::Status => Ok(CtlReply::Status(Box::new(self.status()))),
            CtlRequest::Invite { role, expires_secs } => {
                self.invite(role, expires_secs).map(CtlReply::Invited)
            }
            CtlRequest::Join { token } => return self.join(token, reply),
            CtlRequest::Revoke {
                who,
                cascade,
                reason,
            } => self.revoke(&who, cascade, reason).map(CtlReply::Revoked),
            CtlRequest::Approve { who } => self
                .admin_about(&who, |owner| AdminKind::Approve { owner })
                .map(CtlReply::Admin),
            CtlRequest::Deny { who } => self
                .admin_about(&who, |owner| AdminKind::Deny { owner })
                .map(CtlReply::Admin),
            CtlRequest::Lockdown => self.admin(AdminKind::Lockdown).map(CtlReply::Admin),
            CtlRequest::Lift => self.admin(AdminKind::Lift).map(CtlReply::Admin),
            CtlRequest::Deposit { envelopes } => return self.deposit(envelopes, reply),
            CtlRequest::Rekey { sign, seal } => {
                self.rekey(&sign, &seal).map(|()| CtlReply::Rekeyed)
            }
            CtlRequest::Drop { epochs, guardians } => {
                return self.drop_epochs(epochs, guardians, reply)
            }
            CtlRequest::Held => return self.held(reply),
        };
        let _ = reply.send(CtlResponse::from(r));
    }

    fn status(&self) -> Status {
        let now = now_ms();
        let members = self
            .roster
            .members()
            .map(|m| {
                let p = m.id.peer_id();
                let held = self
                    .guardian
                    .owner(&m.id)
                    .map(|s| s.envelopes.keys().copied().collect::<Vec<_>>())
                    .unwrap_or_default();
                control::MemberStatus {
                    id: m.id.to_string(),
                    name: m.name.clone(),
                    role: m.role,
                    boot: hex::encode(m.boot.sign),
                    me: m.id == self.me.id,
                    connected: m.id == self.me.id || p.is_some_and(|p| self.peers.is_connected(&p)),
                    addrs: p.map(|p| self.book.confirmed(&p)).unwrap_or_default(),
                    last_seen_ms_ago: self.peers.last_seen(&m.id).map(|t| now.saturating_sub(t)),
                    holds_shares_epochs: held,
                    up: self.guardian.is_up(&m.id, now),
                }
            })
            .collect();
        let lockdown = self.guardian.lockdown().map(|l| control::LockdownStatus {
            by: l.by.to_string(),
            by_name: self.roster.member(&l.by).map(|m| m.name.clone()),
            since_ms_ago: now.saturating_sub(l.at),
        });
        Status {
            node: control::NodeStatus {
                id: self.me.id.to_string(),
                name: self.me.name.clone(),
                active: self.roster.is_active(&self.me.id),
                revoked: self.roster.is_revoked(&self.me.id),
            },
            mesh: self.roster.mesh().map(|m| control::MeshStatus {
                id: m.to_string(),
                name: self.roster.mesh_name().map(String::from),
                founder: self.roster.founder().map(|f| f.to_string()),
                digest: hex::encode(self.roster.digest()),
            }),
            listen: self
                .listen
                .iter()
                .map(|a| format!("{a}/p2p/{}", self.peer_id()))
                .collect(),
            lockdown,
            members,
            revoked: self.roster.revoked().map(|r| r.to_string()).collect(),
            strangers: self.strangers_status(now),
            alerts: self
                .admin
                .alerts()
                .map(|(t, s)| control::AlertStatus {
                    at_ms: *t,
                    text: s.clone(),
                })
                .collect(),
            decisions: self
                .decisions
                .newest()
                .take(20)
                .map(|d| control::DecisionStatus {
                    at_ms: d.at,
                    owner: self
                        .roster
                        .member(&d.owner)
                        .map(|m| m.name.clone())
                        .unwrap_or_else(|| d.owner.to_string()),
                    released: d.released,
                    rule: d.rule.clone(),
                    reason: d.reason.clone(),
                })
                .collect(),
            policy: *self.guardian.policy(),
            clock: control::ClockStatus {
                sane: now >= self.guardian.clock_floor(),
                behind_ms: self.guardian.clock_floor().saturating_sub(now),
            },
        }
    }

    fn invite(&mut self, role: Role, expires_secs: u64) -> Result<Invited, CtlError> {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        let mut addrs: Vec<String> = self
            .listen
            .iter()
            .filter(|a| {
                !a.iter().any(
                    |p| matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_unspecified()),
                )
            })
            .map(|a| format!("{a}/p2p/{}", self.peer_id()))
            .collect();
        addrs.truncate(8);
        let membership::NewInvite {
            invite: inv,
            record,
        } = membership::invite(
            &self.roster,
            self.me.id,
            role,
            expires_secs,
            addrs,
            secret,
            now_ms(),
        )?;
        let expires = record.expires;
        let t = self
            .store
            .tree::<InviteRecord>(TreeName::Invites)
            .map_err(|e| CtlError::Store(e.to_string()))?;
        t.put(&inv.id(), &record)
            .map_err(|e| CtlError::Store(e.to_string()))?;
        self.store
            .flush()
            .map_err(|e| CtlError::Store(e.to_string()))?;
        info!(role = %role, expires_in_s = expires_secs, "invite issued");
        Ok(Invited {
            token: inv.to_token(),
            expires_unix: expires,
            role,
        })
    }

    fn join(&mut self, token: String, reply: oneshot::Sender<CtlResponse>) {
        let inv = match Invite::from_token(&token) {
            Ok(i) => i,
            Err(e) => return drop(reply.send(CtlError::BadToken(e).into())),
        };
        if let Some(m) = self.roster.mesh() {
            let same = m == inv.mesh;
            return drop(reply.send(CtlError::AlreadyInMesh { same }.into()));
        }
        if inv.expires < now_ms() / 1000 {
            return drop(reply.send(CtlError::InviteExpired.into()));
        }
        let Some(p) = inv.inviter.peer_id() else {
            return drop(reply.send(CtlError::InvalidInviter.into()));
        };
        for a in inv.addrs.iter().take(crate::addr_book::MAX_PINNED) {
            if let Ok(ma) = a.parse::<Multiaddr>() {
                self.pin_addr(p, &ma);
            }
        }
        // on disk before the join is even sent: the token is used up
        self.persist_addrs(false);
        // The record this node claims for itself: the invite fixes the role.
        let me = Member {
            role: inv.role,
            ..self.me.clone()
        };
        let claim = me.claim(inv.mesh, &self.key);
        let id = self.send(
            p,
            Request::Join {
                secret: inv.secret,
                member: me,
                claim,
            },
        );
        self.pending.insert(
            id,
            Pending::Join {
                reply,
                mesh: inv.mesh,
            },
        );
    }

    /// An active member by id or name, else any node ever admitted (to
    /// revoke one that is already out). A name that fits several nodes
    /// is refused with the candidates listed, never resolved by order.
    fn find(&self, who: &str) -> Result<NodeId, CtlError> {
        use crate::lookup::FindError;
        match self.roster.find(who) {
            Ok(id) => Ok(id),
            Err(FindError::NotFound(_)) => Ok(self.roster.find_any(who)?),
            Err(e) => Err(e.into()),
        }
    }

    fn revoke(&mut self, who: &str, cascade: bool, reason: String) -> Result<Revoked, CtlError> {
        let node = self.find(who)?;
        let membership::Revocation {
            ops,
            endorsed,
            dropped,
            re_signed,
        } = membership::revoke(
            &self.roster,
            &self.key,
            (node, who),
            cascade,
            reason,
            now_ms(),
        )?;
        let re_signed: Vec<String> = re_signed.iter().map(|n| n.to_string()).collect();
        self.merge_ops(ops.clone());
        for op in ops {
            self.publish(Gossip::Op(op));
        }
        Ok(Revoked {
            revoked: node.to_string(),
            re_endorsed: endorsed,
            dropped,
            revocations_kept: re_signed,
        })
    }

    fn rekey(&mut self, sign: &str, seal: &str) -> Result<(), CtlError> {
        let key = |h: &str| -> Result<[u8; 32], CtlError> {
            let mut b = [0u8; 32];
            hex::decode_to_slice(h, &mut b).map_err(|_| CtlError::BadBootKey)?;
            Ok(b)
        };
        let boot = crate::identity::BootPublic {
            sign: key(sign)?,
            seal: key(seal)?,
        };
        let op =
            membership::rekey(&self.roster, &self.key, boot.clone()).ok_or(CtlError::NotInMesh)?;
        self.merge_ops(vec![op.clone()]);
        self.publish(Gossip::Op(op));
        self.me.boot = boot;
        info!("boot key replaced in the roster");
        Ok(())
    }

    fn admin_about(
        &mut self,
        who: &str,
        kind: impl Fn(NodeId) -> AdminKind,
    ) -> Result<AdminSent, CtlError> {
        let owner = self.roster.find(who).map_err(|e| match e {
            crate::lookup::FindError::NotFound(_) => CtlError::NoActiveMember { who: who.into() },
            e => e.into(),
        })?;
        let kind = kind(owner);
        let approve = matches!(kind, AdminKind::Approve { .. });
        let up = approve && self.guardian.is_up(&owner, now_ms());
        let mut v = self.admin(kind)?;
        if approve {
            v.approvals_needed = Some(self.guardian.policy().approvals);
        }
        if up {
            v.warning = Some(format!(
                "{who} is up right now: an approval ends when its owner proves it is alive, so this one is void; approve once {who} is down and asking for its key"
            ));
        }
        Ok(v)
    }

    fn admin(&mut self, kind: AdminKind) -> Result<AdminSent, CtlError> {
        let mesh = self.roster.mesh().ok_or(CtlError::NotInMesh)?;
        let role = self.roster.member(&self.me.id).map(|m| m.role);
        if matches!(kind, AdminKind::Approve { .. } | AdminKind::Lift)
            && role != Some(Role::Guardian)
        {
            return Err(CtlError::NotGuardian);
        }
        let m = AdminMsg::sign(
            AdminBody {
                mesh,
                kind,
                by: self.me.id,
                at: now_ms(),
            },
            &self.key,
        );
        self.apply_admin(m.clone());
        self.publish(Gossip::Admin(m));
        Ok(AdminSent::default())
    }

    fn deposit(&mut self, envelopes: Vec<String>, reply: oneshot::Sender<CtlResponse>) {
        let mut envs = Vec::new();
        for e in envelopes {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(e)
                .map_err(|e| e.to_string())
                .and_then(|b| codec::decode::<ShareEnvelope>(&b).map_err(|e| e.to_string()));
            match decoded {
                Ok(env) if env.body.owner == self.me.id => envs.push(env),
                Ok(_) => return drop(reply.send(CtlError::ForeignEnvelope.into())),
                Err(e) => return drop(reply.send(CtlError::BadEnvelope(e).into())),
            }
        }
        let mut refused = BTreeMap::new();
        let mut requests = Vec::new();
        for env in envs {
            let g = env.body.guardian;
            if g == self.me.id {
                refused.insert(
                    g.to_string(),
                    GuardianAnswer::Refused {
                        reason: "a node cannot guard its own share".into(),
                    },
                );
            } else {
                requests.push((g, Request::Deposit(Box::new(env))));
            }
        }
        self.fan_out(requests, refused, reply);
    }

    fn drop_epochs(
        &mut self,
        epochs: Vec<u64>,
        guardians: Vec<String>,
        reply: oneshot::Sender<CtlResponse>,
    ) {
        let requests = guardians
            .iter()
            .filter_map(|g| g.parse::<NodeId>().ok())
            .map(|g| {
                (
                    g,
                    Request::Drop {
                        epochs: epochs.clone(),
                    },
                )
            })
            .collect();
        self.fan_out(requests, BTreeMap::new(), reply);
    }

    /// Asks every active guardian but this node which of our epochs it
    /// holds.
    fn held(&mut self, reply: oneshot::Sender<CtlResponse>) {
        let requests = self
            .roster
            .guardians()
            .filter(|m| m.id != self.me.id)
            .map(|m| (m.id, Request::Held))
            .collect();
        self.fan_out(requests, BTreeMap::new(), reply);
    }

    /// Sends one request per guardian and answers `reply` with every
    /// guardian's result once all answered (or failed).
    fn fan_out(
        &mut self,
        requests: Vec<(NodeId, Request)>,
        results: BTreeMap<String, GuardianAnswer>,
        reply: oneshot::Sender<CtlResponse>,
    ) {
        let batch = self.next_batch;
        self.next_batch += 1;
        let mut f = Fanout {
            reply,
            waiting: 0,
            results,
        };
        for (g, req) in requests {
            let Some(p) = g.peer_id() else { continue };
            let id = self.send(p, req);
            self.pending
                .insert(id, Pending::Fanout { batch, guardian: g });
            f.waiting += 1;
        }
        if f.waiting == 0 {
            let _ = f
                .reply
                .send(CtlResponse::Ok(CtlReply::Guardians(GuardianResults {
                    results: f.results,
                })));
        } else {
            self.fanouts.insert(batch, f);
        }
    }
}

fn tcp_to_quic(a: &Multiaddr) -> Option<Multiaddr> {
    use libp2p::multiaddr::Protocol;
    let mut out = Multiaddr::empty();
    for p in a.iter() {
        match p {
            Protocol::Tcp(port) => {
                out.push(Protocol::Udp(port));
                out.push(Protocol::QuicV1);
            }
            p => out.push(p),
        }
    }
    (out != *a).then_some(out)
}

/// Binds the control socket 0600 in a 0700 directory, refusing to steal
/// the socket of a daemon that is still running.
fn bind_control(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another keywardd is already running on {}", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let l = l.with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

async fn serve_control(l: UnixListener, tx: mpsc::Sender<CtlMsg>) {
    loop {
        let s = match l.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = control_conn(s, tx).await {
                debug!("control connection: {e}");
            }
        });
    }
}

async fn control_conn(s: UnixStream, tx: mpsc::Sender<CtlMsg>) -> anyhow::Result<()> {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r.take(MAX_LINE as u64));
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let resp = match serde_json::from_str::<CtlRequest>(&line) {
        Ok(req) => {
            let (otx, orx) = oneshot::channel();
            tx.send((req, otx)).await?;
            match tokio::time::timeout(Duration::from_secs(60), orx).await {
                Ok(Ok(r)) => r,
                _ => CtlError::DaemonBusy.into(),
            }
        }
        Err(e) => CtlError::BadRequest(e.to_string()).into(),
    };
    let mut out = serde_json::to_vec(&resp)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    Ok(())
}
