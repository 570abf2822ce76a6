//! keywardd: drives a `keyward_core::node::Node` over libp2p, sled and a
//! control socket. Events in (swarm, socket, timers, verified roster ops),
//! the node's outputs out (dials, messages, writes, replies, journal
//! lines). Every decision is the node's; this file moves bytes and time.

mod addresses;
mod events;
mod journal;
mod log_io;
mod replicas;
mod socket;
mod swarm;
mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::{gossipsub, Multiaddr, PeerId, Swarm};
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::addr_book::AddrBook;
use crate::codec;
use crate::config::Config;
use crate::control::CtlResponse;
use crate::guardian::Millis;
use crate::identity::{BootKey, NodeId, NodeKey};
use crate::keyfile::KeyFile;
use crate::net::{self, Behaviour, SwarmOptions};
use crate::peer::{FromPeerId, Libp2pKey, PeerIds};
use crate::proto::Response;
use crate::roster::{Member, Role, Verified};
use crate::store::Store;
use keyward_core::node::{CtlId, GossipId, InId, Input, Node, NodeConfig, OutId, Output, Write};

pub use crate::init::{init, InitReport};

/// keywardd's clock: Unix ms that never go back within a run, whatever
/// the system clock does (see `clock`).
pub fn now_ms() -> Millis {
    crate::clock::now()
}

/// A request being answered: the channel, the asker, and for a
/// whole-roster sync the members whose peer records it asked for.
type Inbound = (ResponseChannel<Response>, NodeId, Option<Vec<NodeId>>);

pub struct Daemon {
    cfg: Config,
    key: NodeKey,
    node: Node,
    store: Store,
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
    /// Peers whose addresses changed since they were written to disk:
    /// written at the end of the event that changed them.
    peers_dirty: BTreeSet<PeerId>,
    /// Members the node asked to dial whose address we do not know yet.
    no_address: Vec<NodeId>,
    /// Why the last dial of a member failed, until it connects: the
    /// reason a request that needed the dial gives (request-response only
    /// says "Failed to dial"). At most one per member.
    dial_errors: BTreeMap<PeerId, String>,
    /// Peers whose addresses were only confirmed again: written lazily.
    peers_stale: BTreeSet<PeerId>,
    listen: Vec<Multiaddr>,
    /// The node's ids for the swarm's handles, both ways.
    /// Requests being answered: the channel, and who asked.
    /// Requests being answered.
    inbound: BTreeMap<InId, Inbound>,
    outbound: BTreeMap<OutboundRequestId, OutId>,
    controls: BTreeMap<CtlId, oneshot::Sender<CtlResponse>>,
    gossip: BTreeMap<GossipId, (gossipsub::MessageId, PeerId)>,
    next_id: u64,
    /// Roster ops verified off the event loop, back for merging.
    verified_tx: mpsc::UnboundedSender<Vec<Verified>>,
    verified_rx: Option<mpsc::UnboundedReceiver<Vec<Verified>>>,
    /// Log file IO (replica and witness writes, log reads), off the
    /// event loop and in order.
    log_io: log_io::LogIo,
    log_io_rx: Option<mpsc::UnboundedReceiver<log_io::Done>>,
    /// The log spool, when `[logs]` is on; keyward's events go into it.
    logs: Option<crate::logs::SpoolHandle>,
    events_dropped: u64,
}

impl Daemon {
    pub fn new(cfg: Config) -> anyhow::Result<Daemon> {
        let (verified_tx, verified_rx) = mpsc::unbounded_channel();
        let (log_io_tx, log_io_rx) = mpsc::unbounded_channel();
        let log_io = log_io::LogIo::start(
            crate::logs::spool::spool_dir(&cfg.logs, &cfg.state_dir),
            log_io_tx,
        )
        .context("starting the thread that reads and writes log files")?;
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
        let stored = store.load_node()?;
        let book = addresses::load(&store, cfg.address_max_age.saturating_mul(1000))?;
        let policy = cfg.policy.to_policy();
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let node_cfg = NodeConfig {
            key: NodeKey::from_secret(&key.secret()),
            me,
            policy,
            clock_floor: crate::clock::build_time(),
            bootstrap: !cfg.bootstrap.is_empty(),
            seed,
            merges: None,
        };
        let node = Node::new(node_cfg, stored, now_ms());
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
        let logs = if cfg.logs.enabled() {
            match crate::logs::start(&cfg.logs, &key, &cfg.state_dir) {
                Ok(h) => Some(h),
                Err(e) => {
                    error!("logs are OFF: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        let mut d = Daemon {
            cfg,
            key,
            node,
            store,
            swarm,
            book,
            dialled: BTreeMap::new(),
            own_record: None,
            own_record_stale: false,
            peers_dirty: BTreeSet::new(),
            no_address: Vec::new(),
            dial_errors: BTreeMap::new(),
            peers_stale: BTreeSet::new(),
            listen: vec![],
            inbound: BTreeMap::new(),
            outbound: BTreeMap::new(),
            controls: BTreeMap::new(),
            gossip: BTreeMap::new(),
            next_id: 0,
            verified_tx,
            verified_rx: Some(verified_rx),
            log_io,
            log_io_rx: Some(log_io_rx),
            logs,
            events_dropped: 0,
        };
        d.drain();
        d.start_replication();
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
            if let Some(q) = self.cfg.quic.then(|| tcp_to_quic(&ma)).flatten() {
                if let Err(e) = self.swarm.listen_on(q.clone()) {
                    warn!("QUIC listen on {q}: {e}");
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
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<socket::CtlMsg>(16);
        let listener = socket::bind_control(&self.cfg.control_socket)?;
        let sock = self.cfg.control_socket.clone();
        tokio::spawn(socket::serve_control(listener, ctl_tx));
        let sources = self.spawn_log_sources();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let me = self.node.me();
        info!(node = %me.id, name = %me.name, mesh = ?self.node.roster().mesh_name(), "keywardd started");
        let mut verified_rx = self.verified_rx.take().expect("run once");
        let mut log_io_rx = self.log_io_rx.take().expect("run once");
        let mut checkpoints = self.logs.as_ref().map(|h| h.checkpoints.clone());
        loop {
            // Timers are checked after every event, not only when the
            // sleep below ends: a busy swarm would otherwise starve them.
            if self.node.poll_timeout() <= now_ms() {
                self.on_timers();
            }
            let wait = self.node.poll_timeout().saturating_sub(now_ms());
            // Due timers were run just before and are rescheduled from
            // now, so this is never zero for long: a clock that jumped
            // cannot spin the loop.
            let wait = Duration::from_millis(wait.clamp(1, 60_000));
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                Some(vs) = verified_rx.recv() => self.input(Input::Verified(vs)),
                Some(done) = log_io_rx.recv() => self.log_io_done(done),
                _ = Self::next_checkpoint(&mut checkpoints) => self.checkpoint_to_node(),
                Some((req, reply)) = ctl_rx.recv() => {
                    let id = CtlId(self.fresh_id());
                    self.controls.insert(id, reply);
                    self.input(Input::Control { id, req });
                }
                _ = tokio::time::sleep(wait) => self.on_timers(),
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        info!("shutting down: telling peers we go down cleanly");
        self.node.goodbye();
        self.drain();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        while self.node.saying_goodbye() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(ev) => self.on_swarm(ev),
                Err(_) => break,
            }
        }
        self.node.persist();
        self.drain();
        // replica writes queued so far reach the disk before we exit
        self.log_io.stop();
        self.persist_addrs(true);
        let _ = self.store.flush();
        let _ = std::fs::remove_file(sock);
        // Sources first, so nothing is handed to a spool that has stopped;
        // a line they were carrying is unacknowledged and its sender
        // (RELP, pipe, file position) sends it again.
        for s in sources {
            s.abort();
        }
        if let Some(h) = self.logs.take() {
            h.stop();
        }
        Ok(())
    }

    /// The `[[logs.source]]` listeners, feeding the spool. A source that
    /// cannot be opened (a port taken, a path not writable) leaves every
    /// source off, logged as an error: keywardd still guards keys and
    /// still logs its own events.
    fn spawn_log_sources(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(h) = &self.logs else { return vec![] };
        let spool = crate::logs::spool::spool_dir(&self.cfg.logs, &self.cfg.state_dir);
        match crate::logs::listen::spawn_listeners(&self.cfg.logs, &spool, h.inbox.clone()) {
            Ok(tasks) => tasks,
            Err(e) => {
                error!("log sources are OFF: {e}: fix [[logs.source]] and restart keywardd");
                vec![]
            }
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// One input to the node, then everything it asks for.
    fn input(&mut self, i: Input) {
        self.node.handle(now_ms(), i);
        self.drain();
    }

    fn on_timers(&mut self) {
        self.node.handle_timeout(now_ms());
        self.drain();
        // roster changes from the control socket mark entries too
        self.persist_addrs(false);
        self.refresh_own_record();
    }

    fn node_of(&self, p: &PeerId) -> Option<NodeId> {
        NodeId::from_peer_id(p)
    }

    fn is_member_peer(&self, p: &PeerId) -> bool {
        self.node_of(p).is_some_and(|n| self.node.is_member(&n))
    }

    /// Carries out everything the node asked for, in order.
    fn drain(&mut self) {
        loop {
            while let Some(o) = self.node.poll_output() {
                self.output(o);
            }
            if self.no_address.is_empty() {
                return;
            }
            let now = now_ms();
            for peer in std::mem::take(&mut self.no_address) {
                self.node.handle(now, Input::NoAddress { peer });
            }
        }
    }

    fn output(&mut self, o: Output) {
        match o {
            Output::Dial(n) => {
                if let Some(p) = n.peer_id() {
                    self.dial_node(p);
                }
            }
            Output::DialBootstrap => self.dial_bootstrap(),
            Output::Disconnect(n) => {
                if let Some(p) = n.peer_id() {
                    let _ = self.swarm.disconnect_peer_id(p);
                }
            }
            Output::Send { id, to, req } => {
                let Some(p) = to.peer_id() else { return };
                // Our own dial (fresh port) goes first; the request waits
                // for it (request-response ignores its own dial being
                // redundant).
                self.dial_node(p);
                let rid = self.swarm.behaviour_mut().rpc.send_request(&p, req);
                self.outbound.insert(rid, id);
            }
            Output::Respond { id, mut response } => {
                let Some((ch, asker, want)) = self.inbound.remove(&id) else {
                    return;
                };
                if let (Response::Roster { records, .. }, Some(want)) = (&mut response, want) {
                    *records = self.sync_records(&asker, &want);
                }
                if self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(ch, response)
                    .is_err()
                {
                    debug!("response dropped: requester went away");
                }
            }
            Output::Publish { mesh, msg } => match codec::encode(&msg) {
                Ok(bytes) => {
                    let g = &mut self.swarm.behaviour_mut().gossip;
                    match g.publish(net::topic(&mesh), bytes) {
                        Ok(mid) => debug!(%mid, "gossip published"),
                        Err(e) => debug!("gossip publish: {e} (peers catch up by roster sync)"),
                    }
                }
                Err(e) => warn!("gossip encode: {e}"),
            },
            Output::Verdict { id, accept } => {
                let Some((mid, via)) = self.gossip.remove(&id) else {
                    return;
                };
                debug!(%mid, accept, "gossip verdict");
                let verdict = if accept {
                    gossipsub::MessageAcceptance::Accept
                } else {
                    gossipsub::MessageAcceptance::Reject
                };
                let g = &mut self.swarm.behaviour_mut().gossip;
                let _ = g.report_message_validation_result(&mid, &via, verdict);
            }
            Output::Subscribe(mesh) => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .subscribe(&net::topic(&mesh))
                {
                    warn!("gossip subscribe: {e}");
                }
            }
            Output::Members { members, boots } => self.members_changed(&members, &boots),
            Output::Liveness(peers) => {
                let peers = peers.iter().filter_map(|n| n.peer_id());
                self.swarm.behaviour_mut().liveness.set_watched(peers);
            }
            Output::Pin { peer, addrs } => {
                if let Some(p) = peer.peer_id() {
                    for a in addrs.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
                        self.pin_addr(p, &a);
                    }
                }
                self.persist_addrs(false);
            }
            Output::Verify(ops) => {
                let tx = self.verified_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let vs: Vec<Verified> =
                        ops.into_iter().filter_map(|o| o.verify().ok()).collect();
                    let _ = tx.send(vs);
                });
            }
            Output::Write { id, write } => self.commit(id, write),
            Output::Reply { id, response } => {
                let Some(reply) = self.controls.remove(&id) else {
                    return;
                };
                let _ = reply.send(self.with_transport(response));
            }
            Output::Housekeeping => {
                self.forget_strangers();
                self.persist_addrs(true);
            }
            Output::Note(n) => {
                self.log_event(&n);
                journal::write(n)
            }
            o @ (Output::ReadLog { .. }
            | Output::ServeLog { .. }
            | Output::Replicated(_)
            | Output::Cosigned { .. }
            | Output::Evidence { .. }) => self.logs_output(o),
        }
    }

    /// Commits a write durably; the node hears how it went if it asked.
    /// Replica and witness files go to their thread (`log_io`), which
    /// answers when they are on disk.
    fn commit(&mut self, id: Option<keyward_core::node::WriteId>, write: Write) {
        let (result, write) = match write {
            Write::Replica(_) | Write::Witness(_) => {
                return self.log_job(log_io::Job::Write(id, write));
            }
            _ => (self.store.write(&write).map_err(|e| e.to_string()), write),
        };
        match id {
            Some(id) => self.node.handle(now_ms(), Input::Written { id, result }),
            None => {
                if let Err(why) = result {
                    warn!("persisting {}: {why}", write.what());
                }
            }
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
