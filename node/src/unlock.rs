//! The unlock client: what the initramfs runs. It has only the boot key
//! and the LUKS token, asks every guardian at once over boot-key-
//! authenticated connections, and combines as soon as the threshold of
//! valid shares is in. Unreachable or refusing guardians are retried with
//! backoff until the deadline, so an admin's `approve` or a healed
//! partition is picked up without restarting.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use crate::guardian::{Refusal, ShareRequest};
use crate::identity::{BootKey, NodeId};
use crate::luks::Token;
use crate::net;
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
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    state: GState,
    next_try: Instant,
    backoff: Duration,
    inflight: bool,
}

/// First delay before asking a guardian again after a refusal or a failed
/// request; it doubles per guardian up to [`RETRY_CAP`]. Public so the
/// simulator models the same client.
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest delay between two requests to one guardian: short, so an
/// approval or a healed partition is picked up within seconds.
pub const RETRY_CAP: Duration = Duration::from_secs(5);

/// How long a hopeless unlock still waits for answers already asked for.
const HOPELESS_GRACE: Duration = Duration::from_secs(2);

/// Options of one unlock.
pub struct Options {
    pub timeout: Duration,
    /// Called with a line of progress for the console.
    pub verbose: bool,
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
    for g in &token.guardians {
        let id: NodeId = g.id.parse().map_err(UnlockError::BadToken)?;
        let peer = id
            .peer_id()
            .ok_or_else(|| UnlockError::BadToken("bad guardian id".into()))?;
        let addrs = g.addrs.iter().filter_map(|a| a.parse().ok()).collect();
        guards.push(Guard {
            id,
            peer,
            addrs,
            state: GState::Asking,
            next_try: now,
            backoff: RETRY_FIRST,
            inflight: false,
        });
    }
    let mut swarm = net::client_swarm(boot.libp2p_keypair(), Duration::from_secs(5))
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
    loop {
        let now = Instant::now();
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
        let SwarmEvent::Behaviour(ev) = ev else {
            continue;
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
            } => (request_id, Err(error.to_string())),
            _ => continue,
        };
        let Some(i) = inflight.remove(&rid) else {
            continue;
        };
        let g = &mut guards[i];
        g.inflight = false;
        let retry_in = match result {
            Ok(Response::Share(env)) => {
                if let Err(why) = shares::check(g.id, &env, &expect, boot) {
                    if opts.verbose {
                        eprintln!(
                            "keyward: guardian {} sent a share that {why}; using the others",
                            g.id.short()
                        );
                    }
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
                if opts.verbose
                    && !matches!(&g.state, GState::Refused(old) if old.rule() == r.rule())
                {
                    eprintln!("keyward: guardian {} refused: {r}", g.id.short());
                }
                g.state = GState::Refused(r);
                Some(wait)
            }
            Ok(other) => {
                g.state = GState::Unreachable(format!("unexpected answer {other:?}"));
                Some(g.backoff)
            }
            Err(e) => {
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
    for g in guards {
        let (key, text) = match &g.state {
            GState::Released => continue,
            GState::Asking => ("asking".to_string(), "gave no answer".to_string()),
            GState::Refused(r) => (
                r.rule().to_string(),
                format!(
                    "refused: {}",
                    r.to_string()
                        .replace("keyward approve", &format!("keyward approve {name}"))
                ),
            ),
            GState::Unreachable(e) => ("unreachable".into(), format!("unreachable ({e})")),
            GState::Invalid(e) => (
                format!("invalid {e} {}", g.id),
                format!("sent a share that {e} (guardian {})", g.id.short()),
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
    s
}
