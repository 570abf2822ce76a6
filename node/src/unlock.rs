//! The unlock client: what the initramfs runs. It has only the boot key
//! and the LUKS token, asks every guardian at once over boot-key-
//! authenticated connections, and combines as soon as the threshold of
//! valid shares is in. Unreachable or refusing guardians are retried with
//! backoff until the deadline, so an admin's `approve` or a healed
//! partition is picked up without restarting.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use crate::guardian::{Refusal, ShareRequest};
use crate::identity::{BootKey, NodeId};
use crate::keyfile::KeyFile;
use crate::luks::Token;
use crate::net;
use crate::peer::{Libp2pKey, PeerIds};
use crate::proto::{Request, Response};
use crate::shares::{self, DiskSecret, Expect, ShareEnvelope};

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
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    state: GState,
    next_try: Instant,
    backoff: Duration,
    inflight: bool,
    /// The address of the last connection to it, for messages.
    at: Option<Multiaddr>,
    /// Why the last dial failed, per address with the OS error: libp2p's
    /// request-response only says "Failed to dial the requested peer".
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

    /// Prints `text` unless the same `cause` was the last one printed for
    /// this guardian: a guardian refusing every 5 s is one line.
    fn say(&mut self, verbose: bool, cause: String, text: impl FnOnce() -> String) {
        if self.said.as_ref() != Some(&cause) {
            if verbose {
                eprintln!("keyward: {}", text());
            }
            self.said = Some(cause);
        }
    }
}

/// First delay before asking a guardian again after a refusal or a failed
/// request; it doubles per guardian up to [`RETRY_CAP`]. Public so the
/// simulator models the same client.
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest delay between two requests to one guardian: short, so an
/// approval or a healed partition is picked up within seconds.
pub const RETRY_CAP: Duration = Duration::from_secs(5);

/// How long one request to a guardian may take, dial included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a hopeless unlock still waits for answers already asked for.
const HOPELESS_GRACE: Duration = Duration::from_secs(2);

/// Options of one unlock.
pub struct Options {
    pub timeout: Duration,
    /// Print each guardian's refusal or failure once, as it arrives, and a
    /// hint once every guardian has answered without a quorum.
    pub verbose: bool,
    /// Addresses tried besides the token's: given at boot (`keyward.guardians=`
    /// on the kernel command line, `--guardian`) or the config's
    /// `bootstrap`, for guardians that moved while this node was off. An
    /// address naming a peer (`/p2p/ID`) is tried for that guardian only;
    /// any other is dialled on its own first, and the noise handshake says
    /// which guardian (if any) answers there.
    pub extra_addrs: Vec<Multiaddr>,
}

/// An address given without a peer id. It cannot simply be tried for every
/// guardian: libp2p gives up a whole dial when one of its addresses
/// answers with another peer id. So it is dialled alone, and the guardian
/// that answers there gets it.
struct Probe {
    addr: Multiaddr,
    conn: Option<ConnectionId>,
    next_try: Instant,
    backoff: Duration,
    done: bool,
    said: Option<String>,
}

/// Most addresses accepted from the command line, config and kernel
/// command line together.
pub const MAX_EXTRA_ADDRS: usize = 64;

/// Reads a guardian address as given by an admin: a TCP multiaddr
/// (`/ip4/192.0.2.7/tcp/7300`, optionally ending in `/p2p/ID`) or
/// `IP:PORT` (`192.0.2.7:7300`, `[2001:db8::7]:7300`).
pub fn parse_guardian_addr(s: &str) -> Result<Multiaddr, String> {
    let s = s.trim();
    if s.starts_with('/') {
        let m: Multiaddr = s
            .parse()
            .map_err(|e| format!("`{s}` is not a multiaddr ({e}); example: /ip4/192.0.2.7/tcp/7300 or 192.0.2.7:7300"))?;
        if !m.iter().any(|p| matches!(p, Protocol::Tcp(_))) {
            return Err(format!(
                "`{s}` has no /tcp/PORT: the unlock client dials guardians over TCP"
            ));
        }
        return Ok(m);
    }
    let sa: std::net::SocketAddr = s.parse().map_err(|_| {
        format!("`{s}` is neither IP:PORT (192.0.2.7:7300, [2001:db8::7]:7300) nor a multiaddr (/ip4/192.0.2.7/tcp/7300)")
    })?;
    Ok(Multiaddr::from(sa.ip()).with(Protocol::Tcp(sa.port())))
}

/// Whether `a` can only be reached from the machine it names: loopback or
/// unspecified. Such an address in a LUKS token is useless to every other
/// machine's initramfs.
pub fn is_local_only(a: &Multiaddr) -> bool {
    match a.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h)) => h == "localhost",
        _ => false,
    }
}

/// `a` without a trailing `/p2p/ID`, and the peer it named.
fn split_peer(a: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut a = a.clone();
    match a.iter().last() {
        Some(Protocol::P2p(p)) => {
            a.pop();
            (a, Some(p))
        }
        _ => (a, None),
    }
}

/// A dial failure as the admin needs it: each address tried and the OS
/// error, so a wrong address and a guardian that is down look different.
fn describe_dial_error(e: &DialError) -> String {
    match e {
        DialError::Transport(tries) if !tries.is_empty() => tries
            .iter()
            .map(|(addr, err)| format!("{}: {}", split_peer(addr).0, error_chain(err)))
            .collect::<Vec<_>>()
            .join("; "),
        DialError::NoAddresses => "no address to dial (the token lists none): give one at boot with keyward.guardians=IP:PORT on the kernel command line".into(),
        DialError::WrongPeerId { address, .. } => format!(
            "{}: another node answers there (a different peer id); the guardian moved?",
            split_peer(address).0
        ),
        other => error_chain(other),
    }
}

/// An error and its sources, "a: b: c", skipping a source already quoted
/// by the one above it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Fetches shares and returns the disk key.
pub async fn fetch_key(
    token: &Token,
    boot: &BootKey,
    opts: &Options,
) -> Result<DiskSecret, UnlockError> {
    let owner: NodeId = token.owner.parse().map_err(UnlockError::BadToken)?;
    if token.threshold == 0 || token.threshold > token.guardians.len() {
        return Err(UnlockError::BadToken(format!(
            "threshold {} with {} guardians",
            token.threshold,
            token.guardians.len()
        )));
    }
    let now = Instant::now();
    let mut guards: Vec<Guard> = Vec::new();
    let extra: Vec<(Multiaddr, Option<PeerId>)> = opts
        .extra_addrs
        .iter()
        .take(MAX_EXTRA_ADDRS)
        .map(split_peer)
        .collect();
    for g in &token.guardians {
        let id: NodeId = g.id.parse().map_err(UnlockError::BadToken)?;
        let peer = id
            .peer_id()
            .ok_or_else(|| UnlockError::BadToken("bad guardian id".into()))?;
        // Addresses given at boot first: they are the admin's latest word.
        let mut addrs: Vec<Multiaddr> = extra
            .iter()
            .filter(|(_, p)| *p == Some(peer))
            .map(|(a, _)| a.clone())
            .collect();
        for a in g.addrs.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
            let a = split_peer(&a).0;
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        let name = if g.name.is_empty() {
            id.short()
        } else {
            g.name.clone()
        };
        guards.push(Guard {
            id,
            name,
            peer,
            addrs,
            state: GState::Asking,
            next_try: now,
            backoff: RETRY_FIRST,
            inflight: false,
            at: None,
            dial_error: None,
            said: None,
        });
    }
    let mut probes: Vec<Probe> = extra
        .iter()
        .filter(|(_, p)| p.is_none())
        .map(|(a, _)| Probe {
            addr: a.clone(),
            conn: None,
            next_try: now,
            backoff: RETRY_FIRST,
            done: false,
            said: None,
        })
        .collect();
    let mut swarm = net::client_swarm(boot.libp2p_keypair(), REQUEST_TIMEOUT)
        .map_err(|e| UnlockError::Net(e.to_string()))?;
    let expect = Expect {
        owner,
        epoch: token.epoch,
        threshold: token.threshold,
    };
    let deadline = now + opts.timeout;
    let mut got: Vec<(NodeId, ShareEnvelope)> = Vec::new();
    let mut inflight: BTreeMap<OutboundRequestId, usize> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // Set once the key is out of reach for this boot: answers already on
    // their way are awaited this long, so the summary names every
    // guardian's reason, but nobody is asked again.
    let mut hopeless_until: Option<Instant> = None;
    // Whether the "no key yet" hint was printed.
    let mut hinted = false;
    loop {
        let now = Instant::now();
        for p in probes.iter_mut() {
            if hopeless_until.is_some() || p.done || p.conn.is_some() || now < p.next_try {
                continue;
            }
            let dial = DialOpts::unknown_peer_id().address(p.addr.clone()).build();
            let cid = dial.connection_id();
            match swarm.dial(dial) {
                Ok(()) => p.conn = Some(cid),
                Err(e) => {
                    p.next_try = now + p.backoff;
                    p.backoff = (p.backoff * 2).min(RETRY_CAP);
                    let why = describe_dial_error(&e);
                    if opts.verbose && p.said.as_ref() != Some(&why) {
                        eprintln!(
                            "keyward: address {} (given at boot) unreachable: {why}",
                            p.addr
                        );
                    }
                    p.said = Some(why);
                }
            }
        }
        for (i, g) in guards.iter_mut().enumerate() {
            if hopeless_until.is_some()
                || g.inflight
                || matches!(g.state, GState::Released | GState::Invalid(_))
                || matches!(&g.state, GState::Refused(r) if r.permanent())
                || now < g.next_try
            {
                continue;
            }
            let req = ShareRequest::new(owner, g.id, token.epoch, boot);
            let id = swarm.behaviour_mut().send_request_with_addresses(
                &g.peer,
                Request::Share(req),
                g.addrs.clone(),
            );
            inflight.insert(id, i);
            g.inflight = true;
        }
        // Too few guardians left that could still give a share: waiting
        // on would only delay the passphrase prompt.
        let hopeful = guards
            .iter()
            .filter(|g| match &g.state {
                GState::Invalid(_) => false,
                GState::Refused(r) => !r.permanent(),
                _ => true,
            })
            .count();
        if hopeful < expect.threshold && hopeless_until.is_none() {
            hopeless_until = Some(now + HOPELESS_GRACE);
            if opts.verbose {
                eprintln!(
                    "keyward: the mesh will not give the key of {} on this boot (see above); type the passphrase",
                    token.name
                );
            }
            hinted = true;
        }
        // Every guardian answered once and there is no quorum: say what
        // the admin can do now, instead of a silent wait.
        if !hinted && guards.iter().all(|g| !matches!(g.state, GState::Asking)) {
            hinted = true;
            if opts.verbose {
                eprintln!(
                    "keyward: no key from the mesh for {} yet; type the passphrase, or run `keyward approve {}` on another node (still asking)",
                    token.name, token.name
                );
            }
        }
        let settled = hopeless_until.is_some_and(|u| inflight.is_empty() || now >= u);
        if settled || now >= deadline {
            let why = explain(&guards, &got, &expect, boot, &token.name);
            return Err(if hopeless_until.is_some() {
                UnlockError::Hopeless(why)
            } else {
                UnlockError::Failed(why)
            });
        }
        let ev = tokio::select! {
            ev = swarm.select_next_some() => ev,
            _ = tick.tick() => continue,
            _ = tokio::time::sleep_until(deadline) => continue,
        };
        let ev = match ev {
            SwarmEvent::Behaviour(ev) => ev,
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                let addr = split_peer(endpoint.get_remote_address()).0;
                for g in guards.iter_mut().filter(|g| g.peer == peer_id) {
                    g.at = Some(addr.clone());
                    g.dial_error = None;
                }
                if let Some(p) = probes.iter_mut().find(|p| p.conn == Some(connection_id)) {
                    p.done = true;
                    match guards.iter_mut().find(|g| g.peer == peer_id) {
                        Some(g) if !g.addrs.contains(&p.addr) => {
                            g.addrs.insert(0, p.addr.clone());
                            // Ask it now, over this connection.
                            g.next_try = Instant::now();
                            g.backoff = RETRY_FIRST;
                        }
                        Some(_) => {}
                        None if opts.verbose => eprintln!(
                            "keyward: address {} (given at boot) answers as a node that guards no share of this disk",
                            p.addr
                        ),
                        None => {}
                    }
                }
                continue;
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                let why = describe_dial_error(&error);
                if let Some(p) = probes.iter_mut().find(|p| p.conn == Some(connection_id)) {
                    p.conn = None;
                    p.next_try = Instant::now() + p.backoff;
                    p.backoff = (p.backoff * 2).min(RETRY_CAP);
                    if opts.verbose && p.said.as_ref() != Some(&why) {
                        eprintln!(
                            "keyward: address {} (given at boot) unreachable: {why}",
                            p.addr
                        );
                    }
                    p.said = Some(why.clone());
                }
                if let Some(peer) = peer_id {
                    for g in guards.iter_mut().filter(|g| g.peer == peer) {
                        g.dial_error = Some(why.clone());
                    }
                }
                continue;
            }
            _ => continue,
        };
        let (rid, result) = match ev {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => (request_id, Ok(response)),
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => (request_id, Err(error)),
            _ => continue,
        };
        let Some(i) = inflight.remove(&rid) else {
            continue;
        };
        let g = &mut guards[i];
        g.inflight = false;
        let result = result.map_err(|e| match e {
            OutboundFailure::DialFailure => g
                .dial_error
                .take()
                .unwrap_or_else(|| "could not connect".into()),
            OutboundFailure::Timeout => format!(
                "{}: no answer within {} s",
                g.at.as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "connection".into()),
                REQUEST_TIMEOUT.as_secs()
            ),
            other => error_chain(&other),
        });
        let retry_in = match result {
            Ok(Response::Share(env)) => {
                if let Err(why) = shares::check(g.id, &env, &expect, boot) {
                    let label = g.label();
                    g.say(opts.verbose, format!("invalid {why}"), || {
                        format!("guardian {label} sent a share that {why}; using the others")
                    });
                    g.state = GState::Invalid(why);
                    None
                } else {
                    g.state = GState::Released;
                    got.push((g.id, *env));
                    if got.len() >= expect.threshold {
                        match shares::combine(&got, &expect, boot) {
                            Ok(secret) => return Ok(secret),
                            Err(e) => {
                                if opts.verbose {
                                    eprintln!("keyward: {e}; asking others");
                                }
                            }
                        }
                    }
                    None
                }
            }
            Ok(Response::ShareRefused(r)) => {
                let wait = match &r {
                    Refusal::Waiting { remaining } => Duration::from_millis(*remaining),
                    _ => g.backoff,
                };
                let (text, label) = (with_name(&r, &token.name), g.label());
                g.say(opts.verbose, r.rule().to_string(), || {
                    format!("guardian {label} refused: {text}")
                });
                g.state = GState::Refused(r);
                Some(wait)
            }
            Ok(other) => {
                g.state = GState::Unreachable(format!("unexpected answer {other:?}"));
                Some(g.backoff)
            }
            Err(e) => {
                let name = g.name.clone();
                g.say(opts.verbose, format!("unreachable {e}"), || {
                    format!("guardian {name} unreachable: {e}")
                });
                g.state = GState::Unreachable(e);
                Some(g.backoff)
            }
        };
        if let Some(w) = retry_in {
            g.next_try = Instant::now() + w;
            g.backoff = (g.backoff * 2).min(RETRY_CAP);
        }
    }
}

/// The device's keyward token, read straight from its LUKS2 header (no
/// cryptsetup process on the boot path).
pub fn read_token(device: &std::path::Path, boot_key: &std::path::Path) -> anyhow::Result<Token> {
    let tokens = crate::luks::Device::new(device).tokens_direct()?;
    if tokens.is_empty() {
        anyhow::bail!(
            "{d} is not bound by keyward (no keyward token); bind it with `keyward bind --device {d}`",
            d = device.display()
        );
    }
    let boot = BootKey::load(boot_key)?;
    Ok(pick_token(tokens, &boot))
}

/// The token to unlock with. During a boot-key change a device has one
/// token per boot key (the old one for the initramfs not yet rebuilt):
/// the newest whose shares were sealed to the boot key at hand, else the
/// newest that names no key (written before tokens did), else the newest.
/// `tokens` is not empty.
fn pick_token(mut tokens: Vec<(u32, Token)>, boot: &BootKey) -> Token {
    let mine = hex::encode(boot.public().sign);
    let pos = tokens
        .iter()
        .rposition(|(_, t)| t.boot.as_deref() == Some(mine.as_str()))
        .or_else(|| tokens.iter().rposition(|(_, t)| t.boot.is_none()))
        .unwrap_or(tokens.len() - 1);
    tokens.swap_remove(pos).1
}

/// The addresses tried besides the token's: `given` (`--guardian`, from
/// the kernel command line's `keyward.guardians=`) first, then the
/// config's `bootstrap`. Bad input is an error naming it.
pub fn boot_addrs(given: &[String], bootstrap: &[String]) -> anyhow::Result<Vec<Multiaddr>> {
    let mut out = Vec::new();
    for a in given {
        out.push(parse_guardian_addr(a).map_err(anyhow::Error::msg)?);
    }
    // The config was validated as multiaddrs; a QUIC-only one is of no use
    // to this TCP client and is skipped.
    out.extend(bootstrap.iter().filter_map(|a| parse_guardian_addr(a).ok()));
    if out.len() > MAX_EXTRA_ADDRS {
        anyhow::bail!(
            "{} guardian addresses given (--guardian, keyward.guardians=, bootstrap); at most {MAX_EXTRA_ADDRS}",
            out.len()
        );
    }
    let mut seen = Vec::new();
    out.retain(|a| {
        let new = !seen.contains(a);
        seen.push(a.clone());
        new
    });
    Ok(out)
}

/// Fetches the key of `token` with the boot key at `boot_key` on a
/// single-threaded runtime: the whole unlock, minus what is done with the
/// key. An [`UnlockError::Hopeless`] stays downcastable for exit status 3.
pub fn fetch_blocking(
    token: &Token,
    boot_key: &std::path::Path,
    opts: &Options,
) -> anyhow::Result<DiskSecret> {
    let boot = BootKey::load(boot_key)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(fetch_key(token, &boot, opts))?)
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

/// The final message: how many shares, and each guardian's reason,
/// grouped so the admin reads one line per cause.
fn explain(
    guards: &[Guard],
    got: &[(NodeId, ShareEnvelope)],
    expect: &Expect,
    boot: &BootKey,
    name: &str,
) -> String {
    let valid = match shares::combine(got, expect, boot) {
        Err(shares::CombineError::NotEnough { valid, .. }) => valid,
        _ => got.len(),
    };
    // Group by rule, keeping the first message of each: one line per cause.
    let mut groups: BTreeMap<String, (String, usize)> = BTreeMap::new();
    // One line for all of them, each with its address and OS error.
    let mut unreachable = Vec::new();
    for g in guards {
        let (key, text) = match &g.state {
            GState::Released => continue,
            GState::Asking => ("asking".to_string(), "gave no answer".to_string()),
            GState::Refused(r) => (
                r.rule().to_string(),
                format!("refused: {}", with_name(r, name)),
            ),
            GState::Unreachable(e) => {
                unreachable.push(format!("{}: {e}", g.name));
                continue;
            }
            GState::Invalid(e) => (
                format!("invalid {e} {}", g.id),
                format!("sent a share that {e} (guardian {})", g.name),
            ),
        };
        groups.entry(key).or_insert((text, 0)).1 += 1;
    }
    let mut s = format!("{valid} valid shares of {} needed", expect.threshold);
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
