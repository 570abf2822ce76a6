//! The node's decisions tested in-process: a few real `Node`s wired by
//! hand (quinn-proto's `tests/util.rs` shape). The harness moves every
//! output to where a driver would: sends become the other node's requests,
//! responses come back, gossip goes to connected members, writes land on
//! a per-node disk (or fail, when a test says so). Each node has its own
//! clock offset, so clock skew between machines is tested too.

mod admin;
mod entropy;
mod guardian;
mod logs;
mod membership;
mod peers;

use std::collections::{BTreeMap, BTreeSet};

use crate::control::{CtlReply, CtlRequest, CtlResponse};
use crate::guardian::{Millis, Policy};
use crate::identity::{BootKey, NodeId, NodeKey};
use crate::proto::{Request, Response};
use crate::roster::{Member, Role, SignedOp};
use crate::testkit::TestNode;

use super::{
    CtlId, GossipId, InId, Input, LogRead, Node, NodeConfig, Note, OutId, Output, Stored, Write,
};

/// The world's clock at the start of every test (Unix ms, 2033).
pub const T0: Millis = 2_000_000_000_000;

/// One node and what its driver saw.
pub struct Peer {
    pub node: Node,
    pub key: NodeKey,
    pub boot: BootKey,
    /// Added to the world's clock: this machine's clock error.
    pub skew: i64,
    /// Every write the node asked for, in order.
    pub disk: Vec<Write>,
    /// When set, writes fail (a full or broken disk).
    pub fail_writes: bool,
    pub notes: Vec<Note>,
    pub replies: BTreeMap<CtlId, CtlResponse>,
    /// Answers to requests a test injected (not from another `Peer`).
    pub answers: BTreeMap<InId, Response>,
    /// Every output's kind, in order, for ordering checks.
    pub trace: Vec<String>,
    pub dials: Vec<(Millis, NodeId)>,
    /// Switched off: dials to it fail, requests get no answer.
    pub down: bool,
    /// Its own log, as its spool would hold it (the driver's files).
    pub own: logs::OwnLog,
    /// Every replicated size it reported.
    pub replicated: Vec<Millis>,
    /// Cosignatures it got: (witness, size).
    pub cosigned: Vec<(NodeId, u64)>,
    /// Evidence it kept: (against, what, bytes).
    pub evidence: Vec<(NodeId, &'static str, Vec<u8>)>,
}

impl Peer {
    pub fn id(&self) -> NodeId {
        self.key.id()
    }

    /// A file of `origin`'s replica as its writes left it, by its path
    /// in the origin's layout.
    pub fn replica_file(&self, origin: &NodeId, path: &str) -> Option<Vec<u8>> {
        use crate::log::replica::{self, Write as RW};
        let full = format!("{}/{path}", replica::origin_dir(origin));
        let mut found = None;
        for w in &self.disk {
            let Write::Replica(ws) = w else { continue };
            for w in ws {
                match w {
                    RW::Segment { path, bytes } | RW::Tile { path, bytes } if *path == full => {
                        found = Some(bytes.clone())
                    }
                    RW::Checkpoint { path, note } if *path == full => found = Some(note.clone()),
                    RW::Delete { path } if *path == full => found = None,
                    _ => {}
                }
            }
        }
        found
    }

    /// The tiles of `origin`'s replica as its writes left them, by their
    /// paths in the origin's layout (what the driver's `LogRead::Prefix`
    /// reads).
    pub fn replica_tiles(&self, origin: &NodeId) -> BTreeMap<String, Vec<u8>> {
        use crate::log::replica::{self, Write as RW};
        let prefix = format!("{}/", replica::origin_dir(origin));
        let mut tiles = BTreeMap::new();
        for w in &self.disk {
            let Write::Replica(ws) = w else { continue };
            for w in ws {
                if let RW::Tile { path, bytes } = w {
                    if let Some(p) = path.strip_prefix(&prefix) {
                        tiles.insert(p.to_string(), bytes.clone());
                    }
                }
            }
        }
        tiles
    }
}

pub struct Net {
    pub peers: Vec<Peer>,
    pub now: Millis,
    links: BTreeSet<(usize, usize)>,
    /// A request delivered: whose request it answers.
    asked: BTreeMap<(usize, InId), (usize, OutId)>,
    next: u64,
}

/// A fresh node outside any mesh.
pub fn stranger(name: &str) -> TestNode {
    TestNode {
        key: NodeKey::generate(),
        boot: BootKey::generate(),
        name: name.into(),
        role: crate::roster::Role::Guardian,
    }
}

impl Net {
    /// Nodes with these identities, each starting from the roster `ops`
    /// (empty: outside any mesh).
    pub fn new(nodes: Vec<(TestNode, Vec<SignedOp>)>) -> Net {
        let peers = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (t, ops))| {
                let me = Member {
                    role: Role::Guardian,
                    ..t.member()
                };
                let cfg = NodeConfig {
                    key: NodeKey::from_secret(&t.key.secret()),
                    me,
                    policy: Policy::default(),
                    clock_floor: 0,
                    bootstrap: false,
                    seed: [i as u8; 32],
                    merges: None,
                };
                let stored = Stored {
                    roster: ops,
                    ..Stored::default()
                };
                let own = logs::OwnLog::new(&t.key);
                Peer {
                    node: Node::new(cfg, stored, T0),
                    key: t.key,
                    boot: t.boot,
                    skew: 0,
                    disk: vec![],
                    fail_writes: false,
                    notes: vec![],
                    replies: BTreeMap::new(),
                    answers: BTreeMap::new(),
                    trace: vec![],
                    dials: vec![],
                    down: false,
                    own,
                    replicated: vec![],
                    cosigned: vec![],
                    evidence: vec![],
                }
            })
            .collect();
        let mut n = Net {
            peers,
            now: T0,
            links: BTreeSet::new(),
            asked: BTreeMap::new(),
            next: 0,
        };
        n.drive();
        n
    }

    /// Every member of `t` with the whole roster.
    pub fn mesh(t: crate::testkit::TestMesh) -> Net {
        let ops = t.roster.ops();
        Net::new(t.nodes.into_iter().map(|n| (n, ops.clone())).collect())
    }

    pub fn clock(&self, i: usize) -> Millis {
        self.now.saturating_add_signed(self.peers[i].skew)
    }

    pub fn input(&mut self, i: usize, input: Input) {
        let now = self.clock(i);
        self.peers[i].node.handle(now, input);
        self.drive();
    }

    /// A control request at node `i`; its reply once the network settled.
    pub fn control(&mut self, i: usize, req: CtlRequest) -> CtlResponse {
        self.next += 1;
        let id = CtlId(self.next);
        self.input(i, Input::Control { id, req });
        self.peers[i]
            .replies
            .remove(&id)
            .expect("the node answered the control request")
    }

    /// A request from `from` (any key: a boot key, a stranger) to node
    /// `i`; its answer.
    pub fn ask(&mut self, i: usize, from: NodeId, req: Request) -> Option<Response> {
        self.next += 1;
        let id = InId(self.next);
        self.input(i, Input::Request { id, from, req });
        self.peers[i].answers.remove(&id)
    }

    /// Moves the clock on by `ms` in 100-ms steps, running due timers
    /// (those due now first).
    pub fn advance(&mut self, ms: Millis) {
        let end = self.now + ms;
        loop {
            for i in 0..self.peers.len() {
                let now = self.clock(i);
                if !self.peers[i].down && self.peers[i].node.poll_timeout() <= now {
                    self.peers[i].node.handle_timeout(now);
                }
            }
            self.drive();
            if self.now >= end {
                return;
            }
            self.now = (self.now + 100).min(end);
        }
    }

    pub fn connect(&mut self, a: usize, b: usize) {
        self.link(a, b);
        self.drive();
    }

    /// Both ends hear of a new connection (their outputs wait).
    fn link(&mut self, a: usize, b: usize) {
        if a == b || !self.links.insert((a.min(b), a.max(b))) {
            return;
        }
        let (ia, ib) = (self.peers[a].id(), self.peers[b].id());
        let now = self.clock(a);
        self.peers[a]
            .node
            .handle(now, Input::Connected { peer: ib });
        let now = self.clock(b);
        self.peers[b]
            .node
            .handle(now, Input::Connected { peer: ia });
    }

    fn unlink(&mut self, a: usize, b: usize) {
        if !self.links.remove(&(a.min(b), a.max(b))) {
            return;
        }
        let (ia, ib) = (self.peers[a].id(), self.peers[b].id());
        let now = self.clock(a);
        self.peers[a].node.handle(now, Input::Closed { peer: ib });
        let now = self.clock(b);
        self.peers[b].node.handle(now, Input::Closed { peer: ia });
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        self.peers.iter().position(|p| p.id() == *id)
    }

    /// Carries out outputs until no node has any left.
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            let mut idle = true;
            for i in 0..self.peers.len() {
                if let Some(o) = self.peers[i].node.poll_output() {
                    idle = false;
                    self.peers[i].trace.push(kind(&o));
                    self.carry(i, o);
                }
            }
            if idle {
                return;
            }
        }
        panic!("the nodes never went quiet");
    }

    fn carry(&mut self, i: usize, o: Output) {
        let me = self.peers[i].id();
        match o {
            Output::Dial(n) => {
                let at = self.clock(i);
                self.peers[i].dials.push((at, n));
                // only the test decides who is reachable
                if let Some(j) = self.index(&n) {
                    if !self.peers[j].down {
                        self.link(i, j);
                    }
                }
            }
            Output::Disconnect(n) => {
                if let Some(j) = self.index(&n) {
                    self.unlink(i, j);
                }
            }
            Output::Send { id, to, req } => {
                let Some(j) = self.index(&to).filter(|j| !self.peers[*j].down) else {
                    let now = self.clock(i);
                    let result = Err("no route".to_string());
                    let input = Input::Response {
                        id,
                        from: to,
                        result,
                    };
                    return self.peers[i].node.handle(now, input);
                };
                // A transport dials before it sends; a node that refused
                // the connection (a ban) never sees the request.
                self.link(i, j);
                if !self.peers[j].node.is_connected(&me) {
                    let now = self.clock(i);
                    let result = Err("connection refused".to_string());
                    let input = Input::Response {
                        id,
                        from: to,
                        result,
                    };
                    return self.peers[i].node.handle(now, input);
                }
                self.next += 1;
                let rid = InId(self.next);
                self.asked.insert((j, rid), (i, id));
                let now = self.clock(j);
                let input = Input::Request {
                    id: rid,
                    from: me,
                    req,
                };
                self.peers[j].node.handle(now, input);
            }
            Output::Respond { id, response } => match self.asked.remove(&(i, id)) {
                Some((j, out)) => {
                    let now = self.clock(j);
                    let input = Input::Response {
                        id: out,
                        from: me,
                        result: Ok(response),
                    };
                    self.peers[j].node.handle(now, input);
                }
                None => {
                    self.peers[i].answers.insert(id, response);
                }
            },
            Output::Publish { msg, .. } => {
                for j in 0..self.peers.len() {
                    if self.linked(i, j) {
                        self.next += 1;
                        let now = self.clock(j);
                        let input = Input::Gossip {
                            id: GossipId(self.next),
                            via: me,
                            author: Some(me),
                            msg: Ok(msg.clone()),
                        };
                        self.peers[j].node.handle(now, input);
                    }
                }
            }
            Output::Verify(ops) => {
                let vs = ops.into_iter().filter_map(|o| o.verify().ok()).collect();
                let now = self.clock(i);
                self.peers[i].node.handle(now, Input::Verified(vs));
            }
            Output::Write { id, write } => {
                let p = &mut self.peers[i];
                let result = if p.fail_writes {
                    Err("disk full".to_string())
                } else {
                    p.disk.push(write);
                    Ok(())
                };
                if let Some(id) = id {
                    let now = self.clock(i);
                    self.peers[i]
                        .node
                        .handle(now, Input::Written { id, result });
                }
            }
            Output::Reply { id, response } => {
                self.peers[i].replies.insert(id, response);
            }
            Output::Note(n) => self.peers[i].notes.push(n),
            Output::ReadLog { id, read } => {
                let result = match read {
                    LogRead::Prefix { origin, .. } => crate::node::logs::reads::prove(
                        &read,
                        &self.peers[i].replica_tiles(&origin),
                    ),
                    read => self.peers[i].own.read(&read),
                };
                let now = self.clock(i);
                self.peers[i]
                    .node
                    .handle(now, Input::LogRead { id, result });
            }
            Output::ServeLog {
                id,
                origin,
                own,
                path,
                offset,
            } => {
                let file = if own {
                    self.peers[i].own.file(&path)
                } else {
                    self.peers[i].replica_file(&origin, &path)
                };
                let response = match file {
                    Some(b) => {
                        let from = (offset as usize).min(b.len());
                        let to = b.len().min(from + crate::log::fetch::CHUNK);
                        Response::LogFile {
                            bytes: b[from..to].to_vec(),
                            total: b.len() as u64,
                        }
                    }
                    None => Response::Refused {
                        reason: format!("no file {path}"),
                    },
                };
                self.carry(i, Output::Respond { id, response });
            }
            Output::Replicated(n) => self.peers[i].replicated.push(n),
            Output::Cosigned { witness, size, .. } => self.peers[i].cosigned.push((witness, size)),
            Output::Evidence {
                origin,
                what,
                bytes,
                ..
            } => self.peers[i].evidence.push((origin, what, bytes)),
            Output::DialBootstrap
            | Output::Verdict { .. }
            | Output::Subscribe(_)
            | Output::Members { .. }
            | Output::Pin { .. }
            | Output::Liveness(_)
            | Output::Housekeeping => {}
        }
    }
}

/// An output's kind and, for writes and answers, what it is.
fn kind(o: &Output) -> String {
    match o {
        Output::Write { write, .. } => format!("write:{}", write.what()),
        Output::Respond { response, .. } => format!("respond:{}", response_kind(response)),
        Output::Send { req, .. } => format!("send:{}", request_kind(req)),
        Output::Reply { .. } => "reply".into(),
        Output::Publish { .. } => "publish".into(),
        Output::Note(_) => "note".into(),
        o => format!("{o:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or("")
            .to_lowercase(),
    }
}

fn response_kind(r: &Response) -> &'static str {
    match r {
        Response::Ack => "ack",
        Response::Refused { .. } => "refused",
        Response::Joined { .. } => "joined",
        Response::Roster { .. } => "roster",
        Response::Share(_) => "share",
        Response::ShareRefused(_) => "share-refused",
        Response::Held { .. } => "held",
        Response::LogHeld(_) => "log-held",
        Response::LogAsk(_) => "log-ask",
        Response::LogRefused(_) => "log-refused",
        Response::Cosigned { .. } => "cosigned",
        Response::WitnessRefused { .. } => "witness-refused",
        Response::LogHolding(_) => "log-holding",
        Response::LogFile { .. } => "log-file",
        Response::LogNotes(_) => "log-notes",
        Response::LogSeen { .. } => "log-seen",
    }
}

fn request_kind(r: &Request) -> &'static str {
    match r {
        Request::Join { .. } => "join",
        Request::Share(_) => "share",
        Request::Deposit(_) => "deposit",
        Request::Drop { .. } => "drop",
        Request::Sync { .. } => "sync",
        Request::Held => "held",
        Request::GoingDown => "going-down",
        Request::Malformed(_) => "malformed",
        Request::LogPush(_) => "log-push",
        Request::AddCheckpoint { .. } => "add-checkpoint",
        Request::LogHolding => "log-holding",
        Request::LogFetch { .. } => "log-fetch",
        Request::LogSeen { .. } => "log-seen",
    }
}

/// The reply's value, or the test fails saying what came instead.
pub fn ok(r: CtlResponse) -> CtlReply {
    match r {
        CtlResponse::Ok(v) => v,
        CtlResponse::Err(e) => panic!("control request failed: {e}"),
    }
}
