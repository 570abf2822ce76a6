//! A hostile client for end-to-end tests: speaks keyward's request
//! protocol to a real keywardd with whatever key the test chooses (a
//! stolen node key, a boot key, a stranger's), sending requests no honest
//! node or initramfs would.
//!
//! It lives in the library rather than in a test crate because two crates
//! play these attacks: keyward-node's own integration tests and the
//! end-to-end tests of `netns-tests/`; one copy serves both. It needs
//! nothing the library does not already depend on (libp2p, tokio), so it
//! is always compiled, not behind a feature: a feature could not be turned
//! on for keyward-node's own integration tests. Hidden from the docs: it
//! is no API for keyward's users, and nothing in keywardd, keyward or the
//! boot client calls it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{request_response, Multiaddr, PeerId};

use crate::net;
use crate::proto::{Request, Response};

/// How long [`ask_as`] waits for all its answers.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `reqs` to the daemon `daemon` listening on 127.0.0.1:`port`, from
/// a fresh connection authenticated by `key` (an initramfs uses its boot
/// key, a node its node key), at most `window` requests in flight, and
/// returns the answers in order: a request that failed, or got no answer
/// within [`ASK_TIMEOUT`] of the first, has an error text instead.
///
/// Blocks on a runtime of its own, so it must not be called from within a
/// tokio runtime (that is an error, not a panic). An error means nothing
/// was sent: no runtime, no swarm, or a bad address.
pub fn ask_as(
    key: Keypair,
    port: u16,
    daemon: PeerId,
    reqs: Vec<Request>,
    window: usize,
) -> anyhow::Result<Vec<Result<Response, String>>> {
    if tokio::runtime::Handle::try_current().is_ok() {
        bail!("ask_as blocks on a runtime of its own; call it outside of tokio");
    }
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{daemon}")
        .parse()
        .context("the daemon's address")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime for ask_as")?;
    rt.block_on(async {
        let mut swarm = net::client_swarm(key, Duration::from_secs(10))?;
        let mut out: Vec<Option<Result<Response, String>>> = vec![None; reqs.len()];
        let mut ids = BTreeMap::new();
        let mut queue = reqs.into_iter().enumerate();
        let deadline = tokio::time::Instant::now() + ASK_TIMEOUT;
        loop {
            while ids.len() < window.max(1) {
                let Some((i, r)) = queue.next() else { break };
                let id = swarm.behaviour_mut().send_request_with_addresses(
                    &daemon,
                    r,
                    vec![addr.clone()],
                );
                ids.insert(id, i);
            }
            if ids.is_empty() {
                break;
            }
            let Ok(ev) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await else {
                break;
            };
            let (request_id, answer) = match ev {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) => (request_id, Ok(response)),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) => (request_id, Err(error.to_string())),
                _ => continue,
            };
            if let Some(slot) = ids.remove(&request_id).and_then(|i| out.get_mut(i)) {
                *slot = Some(answer);
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(format!("no answer in {} s", ASK_TIMEOUT.as_secs()))))
            .collect())
    })
}
