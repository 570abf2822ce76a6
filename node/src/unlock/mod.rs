//! The unlock client: what the initramfs runs. It has only the boot key
//! and the LUKS token, asks every guardian at once over boot-key-
//! authenticated connections, and combines as soon as the threshold of
//! valid shares is in. Unreachable or refusing guardians are retried with
//! backoff until the deadline, so an admin's `approve` or a healed
//! partition is picked up without restarting.
//!
//! Every decision is [`client::UnlockClient`]'s (sans IO, shared with the
//! simulator); this module is its libp2p/tokio driver: it turns the token
//! into a [`client::Plan`], dials and sends what the client asks, feeds
//! back connections, answers and the time, and prints its lines.

pub use keyward_core::unlock as client;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId};
use rand::RngCore;
use tokio::time::Instant;

pub use client::UnlockError;
use client::{ClientOptions, Failure, Input, Output, Plan, PlanGuardian, UnlockClient};

use crate::guardian::Millis;
use crate::identity::{BootKey, NodeId};
use crate::keyfile::KeyFile;
use crate::luks::Token;
use crate::net;
use crate::peer::{FromPeerId, Libp2pKey, PeerIds};
use crate::proto::{BootRequest, BootResponse};
use crate::shares::DiskSecret;

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
    /// How long this boot already waited for the key (the keyscript's
    /// earlier attempts): past 2 minutes, guardians that refuse are asked
    /// every 30 s, not every 5 s (`keyward_core::unlock::PATIENT_AFTER`).
    pub waited: Duration,
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

/// The client's plan from the token and the addresses given at boot:
/// for each guardian, the addresses given for it (`/p2p/ID`) first, as
/// the admin's latest word, then the token's; the others become probes.
fn plan(token: &Token, extra_addrs: &[Multiaddr]) -> Result<Plan, UnlockError> {
    let owner: NodeId = token.owner.parse().map_err(UnlockError::BadToken)?;
    let extra: Vec<(Multiaddr, Option<PeerId>)> = extra_addrs
        .iter()
        .take(MAX_EXTRA_ADDRS)
        .map(split_peer)
        .collect();
    let mut guardians = Vec::with_capacity(token.guardians.len());
    for g in &token.guardians {
        let id: NodeId = g.id.parse().map_err(UnlockError::BadToken)?;
        let peer = id
            .peer_id()
            .ok_or_else(|| UnlockError::BadToken("bad guardian id".into()))?;
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
        guardians.push(PlanGuardian {
            id,
            name: g.name.clone(),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        });
    }
    Ok(Plan {
        name: token.name.clone(),
        owner,
        epoch: token.epoch,
        threshold: token.threshold,
        guardians,
        probes: extra
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(a, _)| a.to_string())
            .collect(),
    })
}

/// Fetches shares and returns the disk key: drives an [`UnlockClient`]
/// over a libp2p swarm authenticated by the boot key.
pub async fn fetch_key(
    token: &Token,
    boot: &BootKey,
    opts: &Options,
) -> Result<DiskSecret, UnlockError> {
    let plan = plan(token, &opts.extra_addrs)?;
    let start = Instant::now();
    let since = |t: Instant| -> Millis { t.saturating_duration_since(start).as_millis() as Millis };
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let copts = ClientOptions {
        timeout: opts.timeout.as_millis().try_into().unwrap_or(Millis::MAX),
        verbose: opts.verbose,
        waited: opts.waited.as_millis().try_into().unwrap_or(Millis::MAX),
    };
    let mut client = UnlockClient::new(plan, copts, boot, seed, 0)?;
    let mut swarm = net::boot_swarm(
        boot.libp2p_keypair(),
        Duration::from_millis(client::REQUEST_TIMEOUT),
    )
    .map_err(|e| UnlockError::Net(e.to_string()))?;
    // Which guardian each request went to, and which probe each dial is.
    let mut requests: BTreeMap<OutboundRequestId, NodeId> = BTreeMap::new();
    let mut probes: BTreeMap<ConnectionId, String> = BTreeMap::new();
    loop {
        while let Some(out) = client.poll_output() {
            match out {
                Output::Print(line) => eprintln!("{line}"),
                Output::Done(r) => return r,
                Output::Send {
                    guardian,
                    addrs,
                    request,
                } => {
                    // Checked when the plan was made.
                    let Some(peer) = guardian.peer_id() else {
                        continue;
                    };
                    // The client asks for shares and nothing else.
                    let crate::proto::Request::Share(request) = *request else {
                        continue;
                    };
                    let addrs = addrs.iter().filter_map(|a| a.parse().ok()).collect();
                    let id = swarm.behaviour_mut().send_request_with_addresses(
                        &peer,
                        BootRequest::Share(request),
                        addrs,
                    );
                    requests.insert(id, guardian);
                }
                Output::Probe { addr } => {
                    let Ok(ma) = addr.parse::<Multiaddr>() else {
                        continue;
                    };
                    let dial = DialOpts::unknown_peer_id().address(ma).build();
                    let cid = dial.connection_id();
                    match swarm.dial(dial) {
                        Ok(()) => {
                            probes.insert(cid, addr);
                        }
                        Err(e) => client.handle(
                            since(Instant::now()),
                            Input::DialFailed {
                                peer: None,
                                probe: Some(addr),
                                error: describe_dial_error(&e),
                            },
                        ),
                    }
                }
            }
        }
        let wake = client
            .poll_timeout()
            .map(|t| start + Duration::from_millis(t))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let ev = tokio::select! {
            ev = swarm.select_next_some() => ev,
            _ = tokio::time::sleep_until(wake) => {
                client.handle_timeout(since(Instant::now()));
                continue;
            }
        };
        if let Some(input) = translate(ev, &mut requests, &mut probes) {
            client.handle(since(Instant::now()), input);
        }
    }
}

/// What a swarm event means to the client, if anything.
fn translate(
    ev: SwarmEvent<request_response::Event<BootRequest, BootResponse>>,
    requests: &mut BTreeMap<OutboundRequestId, NodeId>,
    probes: &mut BTreeMap<ConnectionId, String>,
) -> Option<Input> {
    match ev {
        SwarmEvent::ConnectionEstablished {
            peer_id,
            endpoint,
            connection_id,
            ..
        } => Some(Input::Connected {
            peer: NodeId::from_peer_id(&peer_id),
            addr: split_peer(endpoint.get_remote_address()).0.to_string(),
            probe: probes.remove(&connection_id),
        }),
        SwarmEvent::OutgoingConnectionError {
            peer_id,
            connection_id,
            error,
        } => Some(Input::DialFailed {
            peer: peer_id.as_ref().and_then(NodeId::from_peer_id),
            probe: probes.remove(&connection_id),
            error: describe_dial_error(&error),
        }),
        SwarmEvent::Behaviour(request_response::Event::Message {
            message:
                request_response::Message::Response {
                    request_id,
                    response,
                },
            ..
        }) => Some(Input::Response {
            guardian: requests.remove(&request_id)?,
            response: response.into(),
        }),
        SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
            request_id,
            error,
            ..
        }) => Some(Input::RequestFailed {
            guardian: requests.remove(&request_id)?,
            failure: match error {
                OutboundFailure::DialFailure => Failure::Dial,
                OutboundFailure::Timeout => Failure::Timeout,
                other => Failure::Other(error_chain(&other)),
            },
        }),
        _ => None,
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
/// key. The error stays typed: callers tell [`UnlockError::Hopeless`]
/// (exit status 3: the keyscript stops asking) by matching, not by
/// downcasting.
pub fn fetch_blocking(
    token: &Token,
    boot_key: &std::path::Path,
    opts: &Options,
) -> Result<DiskSecret, UnlockError> {
    let boot = BootKey::load(boot_key).map_err(|e| {
        UnlockError::Failed(format!(
            "loading the boot key {}: {e:#}",
            boot_key.display()
        ))
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UnlockError::Failed(format!("starting the network runtime: {e}")))?;
    rt.block_on(fetch_key(token, &boot, opts))
}
