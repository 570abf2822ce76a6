//! The unlock client's decisions, without IO: [`UnlockClient`].
//!
//! What the initramfs decides while it asks the guardians for the shares
//! of its disk key: whom to ask and when (every guardian at once, then
//! per-guardian retry with backoff, slower once it has waited a while:
//! [`PATIENT_AFTER`]), which refusals are final for this
//! boot, what each answer means (a share is checked as it arrives, so a
//! forged or foreign one is named at once), when the key is out of reach
//! (hopeless: status 3, the keyscript stops asking), the console lines
//! (each guardian's cause printed once, as it arrives) and the final
//! summary grouped by cause.
//!
//! It is driven like quinn-proto's `Connection`: every input carries the
//! caller's clock (`now`, milliseconds on any fixed origin), outputs are
//! polled ([`UnlockClient::poll_output`]), and the caller wakes it at
//! [`UnlockClient::poll_timeout`] with [`UnlockClient::handle_timeout`].
//! Randomness (request nonces) comes from a seed the caller passes in.
//! No tokio, libp2p, clock, OS RNG or file system here: the initramfs
//! (`unlock::fetch_key`, over libp2p) and the simulator drive the same
//! type. Addresses are opaque strings: the driver parses and dials them.

use std::borrow::Borrow;
use std::collections::{BTreeMap, VecDeque};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::guardian::{Millis, Refusal, ShareRequest};
use crate::identity::{BootKey, NodeId};
use crate::proto::{Request, Response};
use crate::shares::{self, DiskSecret, Expect, ShareEnvelope};

#[cfg(test)]
mod tests;

/// First delay before asking a guardian again after a refusal or a failed
/// request; it doubles per guardian up to [`RETRY_CAP`].
pub const RETRY_FIRST: Millis = 250;
/// Longest delay between two requests to one guardian: short, so an
/// approval or a healed partition is picked up within seconds.
pub const RETRY_CAP: Millis = 5_000;
/// A guardian that keeps refusing (not seen alive, awaiting an approval)
/// is asked every [`RETRY_CAP`] for this long after the boot began asking
/// ([`ClientOptions::waited`] counts earlier attempts), then every
/// [`PATIENT_RETRY`]: an admin who approves while watching
/// the console sees the disk open within seconds, and a node left
/// locked for hours (forgotten, or stolen) costs each guardian one
/// signature check every 30 s instead of every 5 s.
pub const PATIENT_AFTER: Millis = 120_000;
/// Delay between two requests to a guardian that refused, once the
/// unlock has waited [`PATIENT_AFTER`]. Unreachable guardians are still
/// dialled every [`RETRY_CAP`] (a dial costs them no signature check).
pub const PATIENT_RETRY: Millis = 30_000;
/// How long one request to a guardian may take, dial included. The driver
/// enforces it (libp2p's request timeout) and reports
/// [`Failure::Timeout`]; the client names it in messages.
pub const REQUEST_TIMEOUT: Millis = 5_000;
/// How long a hopeless unlock still waits for answers already asked for,
/// so the summary names every guardian's reason.
pub const HOPELESS_GRACE: Millis = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    #[error("the LUKS token is damaged: {0}; bind again")]
    BadToken(String),
    #[error("{0}")]
    Failed(String),
    /// Too few guardians are left that could ever answer with a share on
    /// this boot (revoked, wrong boot key, no share held, invalid shares):
    /// retrying is pointless until something is fixed on a running system.
    #[error("{0}; retrying will not help on this boot")]
    Hopeless(String),
    #[error("network: {0}")]
    Net(String),
}

/// One guardian of the disk, as its LUKS token names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanGuardian {
    pub id: NodeId,
    /// Its roster name, for the console; empty in tokens written before
    /// names were recorded (the short id is shown then).
    pub name: String,
    /// Where to dial it, best first (addresses given at boot for it, then
    /// the token's). The driver's format; the client only passes them on.
    pub addrs: Vec<String>,
}

/// What one unlock asks for: the token's binding plus the addresses given
/// at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The owner's roster name, for messages ("keyward approve web1").
    pub name: String,
    pub owner: NodeId,
    pub epoch: u64,
    pub threshold: usize,
    pub guardians: Vec<PlanGuardian>,
    /// Addresses given at boot that name no peer: each is dialled on its
    /// own, and the guardian that answers there (if any) gets it. They
    /// cannot simply be tried for every guardian: libp2p gives up a whole
    /// dial when one of its addresses answers with another peer id.
    pub probes: Vec<String>,
}

/// How one unlock behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Give up this long after the start.
    pub timeout: Millis,
    /// Print each guardian's refusal or failure once, as it arrives, and a
    /// hint once every guardian has answered without a quorum.
    pub verbose: bool,
    /// How long this boot already waited for the key before this unlock
    /// (earlier attempts of the keyscript): counts towards
    /// [`PATIENT_AFTER`].
    pub waited: Millis,
}

/// Why a request got no answer, as the driver saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made; the cause came before in
    /// [`Input::DialFailed`] (libp2p's request failure alone only says
    /// "Failed to dial the requested peer").
    Dial,
    /// No answer within [`REQUEST_TIMEOUT`].
    Timeout,
    /// Anything else, as text.
    Other(String),
}

/// What the driver tells the client.
#[derive(Clone, Debug)]
pub enum Input {
    /// A connection is up: to `peer` (None if its key is not an ed25519
    /// node id) at `addr`; `probe` is the address of [`Output::Probe`]
    /// this connection was dialled for, if it was.
    Connected {
        peer: Option<NodeId>,
        addr: String,
        probe: Option<String>,
    },
    /// A dial failed: to `peer` if it was known, or for `probe`. `error`
    /// names each address tried and the OS error.
    DialFailed {
        peer: Option<NodeId>,
        probe: Option<String>,
        error: String,
    },
    /// `guardian` answered the request sent to it.
    Response {
        guardian: NodeId,
        response: Response,
    },
    /// The request sent to `guardian` failed.
    RequestFailed { guardian: NodeId, failure: Failure },
}

/// What the client asks of the driver.
#[derive(Debug)]
pub enum Output {
    /// Dial `addr` without knowing who is there; answer with
    /// [`Input::Connected`] or [`Input::DialFailed`] naming it as `probe`.
    Probe { addr: String },
    /// Send `request` to `guardian`, dialling it at `addrs` if no
    /// connection is up; answer with [`Input::Response`] or
    /// [`Input::RequestFailed`]. At most one request per guardian is out
    /// at a time.
    Send {
        guardian: NodeId,
        addrs: Vec<String>,
        /// Boxed: a signed request is large next to the other outputs.
        request: Box<Request>,
    },
    /// A console line, ready to print as is.
    Print(String),
    /// The unlock is over; nothing else follows.
    Done(Result<DiskSecret, UnlockError>),
}

/// Where one guardian stands.
#[derive(Clone, Debug)]
enum GState {
    Asking,
    Released,
    Refused(Refusal),
    Unreachable(String),
    Invalid(String),
}

struct Guard {
    id: NodeId,
    /// How the console names it: its roster name from the token, else
    /// its short id.
    name: String,
    addrs: Vec<String>,
    state: GState,
    next_try: Millis,
    backoff: Millis,
    inflight: bool,
    /// The address of the last connection to it, for messages.
    at: Option<String>,
    /// Why the last dial failed, per address with the OS error.
    dial_error: Option<String>,
    /// The last cause printed for it, so each is printed once.
    said: Option<String>,
}

impl Guard {
    /// "node1 at /ip4/192.0.2.7/tcp/7300", or the name alone before any
    /// connection.
    fn label(&self) -> String {
        match &self.at {
            Some(a) => format!("{} at {a}", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether it is still worth asking: not released, not invalid, not
    /// refused for good.
    fn askable(&self) -> bool {
        match &self.state {
            GState::Released | GState::Invalid(_) => false,
            GState::Refused(r) => !r.permanent(),
            _ => true,
        }
    }

    /// Whether it could still give a share on this boot.
    fn hopeful(&self) -> bool {
        match &self.state {
            GState::Invalid(_) => false,
            GState::Refused(r) => !r.permanent(),
            _ => true,
        }
    }

    /// Schedules the next request `wait` from `now` and doubles the backoff.
    fn retry_in(&mut self, now: Millis, wait: Millis) {
        self.next_try = now.saturating_add(wait);
        self.backoff = (self.backoff * 2).min(RETRY_CAP);
    }
}

/// An address given at boot without a peer id (see [`Plan::probes`]).
struct Probe {
    addr: String,
    dialing: bool,
    next_try: Millis,
    backoff: Millis,
    done: bool,
    said: Option<String>,
}

/// The unlock client of one disk (see the module doc). `K` is the boot
/// key, owned or borrowed.
pub struct UnlockClient<K: Borrow<BootKey>> {
    boot: K,
    name: String,
    expect: Expect,
    verbose: bool,
    guards: Vec<Guard>,
    probes: Vec<Probe>,
    got: Vec<(NodeId, ShareEnvelope)>,
    deadline: Millis,
    /// Set once the key is out of reach for this boot: answers already on
    /// their way are awaited until then, but nobody is asked again.
    hopeless_until: Option<Millis>,
    /// Whether the "no key yet" (or the hopeless) hint was printed.
    hinted: bool,
    /// When this boot began asking: the start minus
    /// [`ClientOptions::waited`] (see [`PATIENT_AFTER`]).
    started: Millis,
    /// Request nonces: they must never repeat (guardians refuse replays).
    rng: StdRng,
    out: VecDeque<Output>,
    done: bool,
}

impl<K: Borrow<BootKey>> UnlockClient<K> {
    /// Starts an unlock at `now`: every guardian is asked at once (the
    /// first [`Output::Send`]s are ready to poll). `seed` feeds the
    /// request nonces; give it 32 fresh random bytes.
    pub fn new(
        plan: Plan,
        opts: ClientOptions,
        boot: K,
        seed: [u8; 32],
        now: Millis,
    ) -> Result<Self, UnlockError> {
        if plan.threshold == 0 || plan.threshold > plan.guardians.len() {
            return Err(UnlockError::BadToken(format!(
                "threshold {} with {} guardians",
                plan.threshold,
                plan.guardians.len()
            )));
        }
        let mut guards: Vec<Guard> = Vec::with_capacity(plan.guardians.len());
        for g in plan.guardians {
            // Answers are matched to guardians by id: one listed twice
            // would take the other's answers.
            if guards.iter().any(|o| o.id == g.id) {
                return Err(UnlockError::BadToken(format!(
                    "guardian {} is listed twice",
                    g.id.short()
                )));
            }
            let name = if g.name.is_empty() {
                g.id.short()
            } else {
                g.name
            };
            guards.push(Guard {
                id: g.id,
                name,
                addrs: g.addrs,
                state: GState::Asking,
                next_try: now,
                backoff: RETRY_FIRST,
                inflight: false,
                at: None,
                dial_error: None,
                said: None,
            });
        }
        let mut probes: Vec<Probe> = Vec::new();
        for addr in plan.probes {
            if probes.iter().all(|p| p.addr != addr) {
                probes.push(Probe {
                    addr,
                    dialing: false,
                    next_try: now,
                    backoff: RETRY_FIRST,
                    done: false,
                    said: None,
                });
            }
        }
        let mut c = UnlockClient {
            boot,
            name: plan.name,
            expect: Expect {
                owner: plan.owner,
                epoch: plan.epoch,
                threshold: plan.threshold,
            },
            verbose: opts.verbose,
            guards,
            probes,
            got: Vec::new(),
            deadline: now.saturating_add(opts.timeout),
            hopeless_until: None,
            hinted: false,
            started: now.saturating_sub(opts.waited),
            rng: StdRng::from_seed(seed),
            out: VecDeque::new(),
            done: false,
        };
        c.step(now);
        Ok(c)
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next;
    /// None once the unlock is over.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.done {
            return None;
        }
        let mut t = self.deadline;
        if let Some(u) = self.hopeless_until {
            return Some(t.min(u));
        }
        for g in self.guards.iter().filter(|g| !g.inflight && g.askable()) {
            t = t.min(g.next_try);
        }
        for p in self.probes.iter().filter(|p| !p.done && !p.dialing) {
            t = t.min(p.next_try);
        }
        Some(t)
    }

    /// Time passed: asks whoever is due, gives up at the deadline.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.step(now);
    }

    /// Whether [`Output::Done`] was queued.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes in what the driver saw at `now`.
    pub fn handle(&mut self, now: Millis, input: Input) {
        if self.done {
            return;
        }
        match input {
            Input::Connected { peer, addr, probe } => self.connected(now, peer, addr, probe),
            Input::DialFailed { peer, probe, error } => self.dial_failed(now, peer, probe, error),
            Input::Response { guardian, response } => {
                if let Some(i) = self.take_inflight(guardian) {
                    self.answer(now, i, Ok(response));
                }
            }
            Input::RequestFailed { guardian, failure } => {
                if let Some(i) = self.take_inflight(guardian) {
                    let g = &mut self.guards[i];
                    let why = match failure {
                        Failure::Dial => g
                            .dial_error
                            .take()
                            .unwrap_or_else(|| "could not connect".into()),
                        Failure::Timeout => format!(
                            "{}: no answer within {} s",
                            g.at.as_deref().unwrap_or("connection"),
                            REQUEST_TIMEOUT / 1000
                        ),
                        Failure::Other(e) => e,
                    };
                    self.answer(now, i, Err(why));
                }
            }
        }
        self.step(now);
    }

    /// The guardian `id` with a request out, which is now answered. An
    /// answer nobody waits for (a duplicate, an unknown sender) is None.
    fn take_inflight(&mut self, id: NodeId) -> Option<usize> {
        let i = self.guards.iter().position(|g| g.id == id && g.inflight)?;
        self.guards[i].inflight = false;
        Some(i)
    }

    fn connected(
        &mut self,
        now: Millis,
        peer: Option<NodeId>,
        addr: String,
        probe: Option<String>,
    ) {
        if let Some(peer) = peer {
            for g in self.guards.iter_mut().filter(|g| g.id == peer) {
                g.at = Some(addr.clone());
                g.dial_error = None;
            }
        }
        let Some(probe) = probe else { return };
        let Some(p) = self.probes.iter_mut().find(|p| p.addr == probe) else {
            return;
        };
        p.done = true;
        p.dialing = false;
        let line = match peer.and_then(|peer| self.guards.iter_mut().find(|g| g.id == peer)) {
            Some(g) => {
                if !g.addrs.contains(&p.addr) {
                    g.addrs.insert(0, p.addr.clone());
                    // Ask it now, over this connection.
                    g.next_try = now;
                    g.backoff = RETRY_FIRST;
                }
                None
            }
            None => Some(format!(
                "keyward: address {} (given at boot) answers as a node that guards no share of this disk",
                p.addr
            )),
        };
        if let Some(l) = line {
            self.print(l);
        }
    }

    fn dial_failed(
        &mut self,
        now: Millis,
        peer: Option<NodeId>,
        probe: Option<String>,
        error: String,
    ) {
        if let Some(p) = probe.and_then(|a| self.probes.iter_mut().find(|p| p.addr == a)) {
            p.dialing = false;
            p.next_try = now.saturating_add(p.backoff);
            p.backoff = (p.backoff * 2).min(RETRY_CAP);
            if p.said.as_ref() != Some(&error) {
                let line = format!(
                    "keyward: address {} (given at boot) unreachable: {error}",
                    p.addr
                );
                p.said = Some(error.clone());
                self.print(line);
            }
        }
        if let Some(peer) = peer {
            for g in self.guards.iter_mut().filter(|g| g.id == peer) {
                g.dial_error = Some(error.clone());
            }
        }
    }

    /// What guardian `i` answered to its request.
    fn answer(&mut self, now: Millis, i: usize, result: Result<Response, String>) {
        let retry = match result {
            Ok(Response::Share(env)) => {
                let id = self.guards[i].id;
                if let Err(why) = shares::check(id, &env, &self.expect, self.boot.borrow()) {
                    let line = format!(
                        "keyward: guardian {} sent a share that {why}; using the others",
                        self.guards[i].label()
                    );
                    self.say(i, format!("invalid {why}"), line);
                    self.guards[i].state = GState::Invalid(why);
                } else {
                    self.guards[i].state = GState::Released;
                    self.got.push((id, *env));
                    if self.got.len() >= self.expect.threshold {
                        match shares::combine(&self.got, &self.expect, self.boot.borrow()) {
                            Ok(secret) => self.finish(Ok(secret)),
                            Err(e) => self.print(format!("keyward: {e}; asking others")),
                        }
                    }
                }
                None
            }
            Ok(Response::ShareRefused(r)) => {
                let g = &self.guards[i];
                let patient = now.saturating_sub(self.started) >= PATIENT_AFTER;
                let wait = match &r {
                    Refusal::Waiting { remaining } => *remaining,
                    _ if patient => g.backoff.max(PATIENT_RETRY),
                    _ => g.backoff,
                };
                let line = format!(
                    "keyward: guardian {} refused: {}",
                    g.label(),
                    with_name(&r, &self.name)
                );
                self.say(i, r.rule().to_string(), line);
                self.guards[i].state = GState::Refused(r);
                Some(wait)
            }
            Ok(other) => {
                let g = &mut self.guards[i];
                g.state = GState::Unreachable(format!("unexpected answer {other:?}"));
                Some(g.backoff)
            }
            Err(e) => {
                let line = format!("keyward: guardian {} unreachable: {e}", self.guards[i].name);
                self.say(i, format!("unreachable {e}"), line);
                let g = &mut self.guards[i];
                g.state = GState::Unreachable(e);
                Some(g.backoff)
            }
        };
        if let Some(w) = retry {
            self.guards[i].retry_in(now, w);
        }
    }

    /// Prints `line` unless `cause` was the last one printed for guardian
    /// `i`: a guardian refusing every 5 s is one line.
    fn say(&mut self, i: usize, cause: String, line: String) {
        if self.guards[i].said.as_ref() != Some(&cause) {
            self.guards[i].said = Some(cause);
            self.print(line);
        }
    }

    fn print(&mut self, line: String) {
        if self.verbose {
            self.out.push_back(Output::Print(line));
        }
    }

    fn finish(&mut self, r: Result<DiskSecret, UnlockError>) {
        self.done = true;
        self.out.push_back(Output::Done(r));
    }

    /// Everything that follows from the time and the state: give up when
    /// hopeless, ask whoever is due, hint, end.
    fn step(&mut self, now: Millis) {
        if self.done {
            return;
        }
        // Too few guardians left that could still give a share: waiting
        // on would only delay the passphrase prompt.
        let hopeful = self.guards.iter().filter(|g| g.hopeful()).count();
        if hopeful < self.expect.threshold && self.hopeless_until.is_none() {
            self.hopeless_until = Some(now.saturating_add(HOPELESS_GRACE));
            self.print(format!(
                "keyward: the mesh will not give the key of {} on this boot (see above); type the passphrase",
                self.name
            ));
            self.hinted = true;
        }
        if self.hopeless_until.is_none() && now < self.deadline {
            let mut dial = Vec::new();
            for p in self.probes.iter_mut() {
                if !p.done && !p.dialing && now >= p.next_try {
                    p.dialing = true;
                    dial.push(Output::Probe {
                        addr: p.addr.clone(),
                    });
                }
            }
            self.out.extend(dial);
            for i in 0..self.guards.len() {
                let g = &self.guards[i];
                if g.inflight || !g.askable() || now < g.next_try {
                    continue;
                }
                let mut nonce = [0u8; 16];
                self.rng.fill_bytes(&mut nonce);
                let req = ShareRequest::with_nonce(
                    self.expect.owner,
                    g.id,
                    self.expect.epoch,
                    nonce,
                    self.boot.borrow(),
                );
                let send = Output::Send {
                    guardian: g.id,
                    addrs: g.addrs.clone(),
                    request: Box::new(Request::Share(req)),
                };
                self.guards[i].inflight = true;
                self.out.push_back(send);
            }
        }
        // Every guardian answered once and there is no quorum: say what
        // the admin can do now, instead of a silent wait.
        if !self.hinted
            && self
                .guards
                .iter()
                .all(|g| !matches!(g.state, GState::Asking))
        {
            self.hinted = true;
            self.print(format!(
                "keyward: no key from the mesh for {} yet; type the passphrase, or run `keyward approve {}` on another node (still asking)",
                self.name, self.name
            ));
        }
        let settled = self
            .hopeless_until
            .is_some_and(|u| self.guards.iter().all(|g| !g.inflight) || now >= u);
        if settled || now >= self.deadline {
            let why = self.explain();
            self.finish(Err(if self.hopeless_until.is_some() {
                UnlockError::Hopeless(why)
            } else {
                UnlockError::Failed(why)
            }));
        }
    }

    /// The final message: how many shares, and each guardian's reason,
    /// grouped so the admin reads one line per cause.
    fn explain(&self) -> String {
        let valid = match shares::combine(&self.got, &self.expect, self.boot.borrow()) {
            Err(shares::CombineError::NotEnough { valid, .. }) => valid,
            _ => self.got.len(),
        };
        // Group by rule, keeping the first message of each: one line per cause.
        let mut groups: BTreeMap<String, (String, usize)> = BTreeMap::new();
        // One line for all of them, each with its address and OS error.
        let mut unreachable = Vec::new();
        for g in &self.guards {
            let (key, text) = match &g.state {
                GState::Released => continue,
                GState::Asking => ("asking".to_string(), "gave no answer".to_string()),
                GState::Refused(r) => (
                    r.rule().to_string(),
                    format!("refused: {}", with_name(r, &self.name)),
                ),
                GState::Unreachable(e) => {
                    unreachable.push(format!("{}: {e}", g.name));
                    continue;
                }
                // By short id, as loopback's a_tampered_share test asks:
                // the line printed as the share arrived names it by its
                // roster name and address already.
                GState::Invalid(e) => (
                    format!("invalid {e} {}", g.id),
                    format!("sent a share that {e} (guardian {})", g.id.short()),
                ),
            };
            groups.entry(key).or_insert((text, 0)).1 += 1;
        }
        let mut s = format!("{valid} valid shares of {} needed", self.expect.threshold);
        for (why, n) in groups.into_values() {
            s.push_str(&format!(
                "; {n} guardian{} {why}",
                if n == 1 { "" } else { "s" }
            ));
        }
        if !unreachable.is_empty() {
            s.push_str(&format!(
                "; {} guardian{} unreachable ({})",
                unreachable.len(),
                if unreachable.len() == 1 { "" } else { "s" },
                unreachable.join("; ")
            ));
        }
        s
    }
}

/// A refusal as the console shows it: its remedy names the node.
fn with_name(r: &Refusal, name: &str) -> String {
    let s = r.to_string();
    if name.is_empty() {
        s
    } else {
        s.replace("keyward approve", &format!("keyward approve {name}"))
    }
}
