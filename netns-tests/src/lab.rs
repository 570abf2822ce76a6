//! The lab: node namespaces on a bridge, and what tests do to them.
//!
//! ```text
//! ns kwt-<pid>-<lab>-n0: lo, eth0 198.18.x.1/24 ══╗
//! ns kwt-<pid>-<lab>-n1: lo, eth0 198.18.x.2/24 ══╬═ ns kwt-<pid>-<lab>-hub: br0 (ports p0, p1, ...)
//! ...                                             ═╝
//! ```
//!
//! The bridge has no address and the host namespace gets nothing, so lab
//! traffic cannot leave the lab and the host's routes are never touched.

use crate::delay::Relay;
use crate::{ns, Skip};
use anyhow::{ensure, Context, Result};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

/// Number of labs made by this process, so each gets its own names and /24.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);
/// Stale namespaces carrying our own pid are removed once, before our first lab.
static FIRST_LAB: Once = Once::new();

/// Largest node count: host numbers 1..=254 of the lab's /24.
pub const MAX_NODES: usize = 254;
/// Prefix length of every node address.
pub const PREFIX_LEN: u8 = 24;

/// Name of each node's interface inside its own namespace.
const NODE_IF: &str = "eth0";
const BRIDGE: &str = "br0";

/// One node: a network namespace with `lo` and `eth0` up.
#[derive(Debug, Clone)]
pub struct Node {
    index: usize,
    ns: String,
    addr: Ipv4Addr,
}

impl Node {
    /// Position of this node in the lab.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Name of the namespace (`ip netns exec <name> ...` works too).
    pub fn ns_name(&self) -> &str {
        &self.ns
    }

    /// The node's address on `eth0`, in 198.18.0.0/15, prefix [`PREFIX_LEN`].
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The node's interface name inside its namespace.
    pub fn ifname(&self) -> &str {
        NODE_IF
    }

    /// Name of this node's bridge-side veth end in the hub namespace.
    fn port(&self) -> String {
        format!("p{}", self.index)
    }
}

/// A set of network namespaces joined by a bridge, removed at drop.
///
/// All methods take `&self`, so a `Lab` can be shared between threads.
pub struct Lab {
    prefix: String,
    hub: String,
    nodes: Vec<Node>,
    relays: Mutex<HashMap<usize, Relay>>,
}

impl Lab {
    /// Builds a lab of `nodes` namespaces (1..=[`MAX_NODES`]).
    ///
    /// Fails with a [`Skip`] error when not root or `ip` is missing. Before
    /// building, removes namespaces of earlier runs whose process is gone.
    pub fn new(nodes: usize) -> Result<Lab> {
        preflight()?;
        ensure!(
            (1..=MAX_NODES).contains(&nodes),
            "a lab has 1..={MAX_NODES} nodes, not {nodes}"
        );
        FIRST_LAB.call_once(|| ns::remove_stale(true));
        ns::remove_stale(false);

        let id = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{}{}-{id}-", ns::PREFIX, std::process::id());
        // 512 /24s in 198.18.0.0/15; labs are isolated from each other
        // anyway, distinct subnets just keep logs unambiguous.
        let net = id % 512;
        let (b, c) = (18 + (net / 256) as u8, (net % 256) as u8);
        let mut lab = Lab {
            hub: format!("{prefix}hub"),
            prefix,
            nodes: Vec::with_capacity(nodes),
            relays: Mutex::new(HashMap::new()),
        };
        // From here on, an error drops `lab`, which removes what exists.
        lab.make_hub()?;
        for index in 0..nodes {
            let node = Node {
                index,
                ns: format!("{}n{index}", lab.prefix),
                addr: Ipv4Addr::new(198, b, c, index as u8 + 1),
            };
            lab.make_node(node)?;
        }
        Ok(lab)
    }

    fn make_hub(&self) -> Result<()> {
        if let Err(e) = ns::add(&self.hub) {
            let msg = format!("{e:#}");
            if msg.contains("Operation not permitted") {
                return Err(Skip(format!("cannot create network namespaces: {msg}")).into());
            }
            return Err(e);
        }
        let h = self.hub.as_str();
        ns::ip(&["-n", h, "link", "set", "lo", "up"])?;
        ns::ip(&["-n", h, "link", "add", BRIDGE, "type", "bridge"])?;
        ns::ip(&["-n", h, "link", "set", BRIDGE, "up"])
    }

    /// Creates the node's namespace and links it to the bridge. The node is
    /// recorded first so that a failure half-way is still cleaned up.
    fn make_node(&mut self, node: Node) -> Result<()> {
        ns::add(&node.ns)?;
        self.nodes.push(node.clone());
        let (h, n, port) = (self.hub.as_str(), node.ns.as_str(), node.port());
        let cidr = format!("{}/{PREFIX_LEN}", node.addr);
        ns::ip(&["-n", n, "link", "set", "lo", "up"])?;
        // Created directly in the two namespaces: never visible on the host.
        ns::ip(&[
            "-n", h, "link", "add", &port, "type", "veth", "peer", "name", NODE_IF, "netns", n,
        ])?;
        ns::ip(&["-n", h, "link", "set", &port, "master", BRIDGE, "up"])?;
        ns::ip(&["-n", n, "addr", "add", &cidr, "dev", NODE_IF])?;
        ns::ip(&["-n", n, "link", "set", NODE_IF, "up"])
    }

    /// Node `i`. Panics if `i` is out of range, like indexing.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// All nodes, in index order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The prefix of every namespace of this lab, e.g. `kwt-1234-0-`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace holding the bridge.
    pub fn hub_ns(&self) -> &str {
        &self.hub
    }

    /// A `Command` for `program` that will start inside node `i`.
    pub fn command(&self, i: usize, program: &str) -> Result<Command> {
        let mut cmd = Command::new(program);
        ns::enter_on_exec(&mut cmd, &self.node(i).ns)?;
        Ok(cmd)
    }

    /// Spawns `cmd` inside node `i`, keeping its stdio, env and directory.
    ///
    /// The lab kills every process in its namespaces at drop (children of
    /// `cmd` included), whether or not the returned `Child` was kept.
    pub fn spawn(&self, i: usize, cmd: &mut Command) -> Result<Child> {
        ns::enter_on_exec(cmd, &self.node(i).ns)?;
        cmd.spawn()
            .with_context(|| format!("spawning {:?} in node {i}", cmd.get_program()))
    }

    /// Runs `cmd` inside node `i` to completion and returns its output
    /// (stdout and stderr captured), whatever its exit status.
    pub fn run(&self, i: usize, cmd: &mut Command) -> Result<Output> {
        ns::enter_on_exec(cmd, &self.node(i).ns)?;
        cmd.output()
            .with_context(|| format!("running {:?} in node {i}", cmd.get_program()))
    }

    /// Runs `f` on a thread inside node `i` and returns its result; sockets
    /// made in `f` belong to node `i` and can be used afterwards from any
    /// thread. The calling thread's namespace is unchanged.
    pub fn in_ns<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
        ns::in_netns(&self.node(i).ns, f)
    }

    /// Cuts node `i` off, as if its cable were pulled: its bridge port goes
    /// down, its `eth0` loses carrier, and frames to or from it are lost.
    pub fn link_down(&self, i: usize) -> Result<()> {
        ns::ip(&["-n", &self.hub, "link", "set", &self.node(i).port(), "down"])
    }

    /// Reconnects node `i` after [`Lab::link_down`].
    pub fn link_up(&self, i: usize) -> Result<()> {
        ns::ip(&["-n", &self.hub, "link", "set", &self.node(i).port(), "up"])
    }

    /// Drops each IP packet node `i` sends with probability `percent`/100
    /// (nftables output hook in the node's namespace); 0 removes the rule.
    /// Set on every node, that is `percent` loss per packet in each
    /// direction between any two nodes. Fails with [`Skip`] when `nft` is
    /// missing.
    pub fn set_loss(&self, i: usize, percent: u8) -> Result<()> {
        crate::nft::set_loss(self.command(i, "nft")?, percent)
            .with_context(|| format!("setting loss of node {i} to {percent}%"))
    }

    /// Delays every frame to and from node `i` by `delay` (so a round trip
    /// to it gains `2 * delay`); `Duration::ZERO` restores the direct link.
    /// Set on both nodes, a frame from one to the other passes two relays:
    /// one way gains `2 * delay`. See the `delay` module for how.
    pub fn set_delay(&self, i: usize, delay: Duration) -> Result<()> {
        let mut relays = self.relays.lock().unwrap_or_else(|e| e.into_inner());
        let h = self.hub.as_str();
        let node = self.node(i);
        let (p, q, r) = (node.port(), format!("q{i}"), format!("r{i}"));
        if delay.is_zero() {
            if let Some(relay) = relays.remove(&i) {
                drop(relay);
                ns::ip(&["-n", h, "link", "del", &r])?;
                ns::ip(&["-n", h, "link", "set", &p, "master", BRIDGE])?;
            }
            return Ok(());
        }
        if let Some(relay) = relays.get(&i) {
            relay.set_delay(delay);
            return Ok(());
        }
        ns::ip(&[
            "-n", h, "link", "add", &q, "type", "veth", "peer", "name", &r,
        ])?;
        ns::ip(&["-n", h, "link", "set", &r, "promisc", "on", "up"])?;
        ns::ip(&["-n", h, "link", "set", &p, "promisc", "on"])?;
        let relay = Relay::start(h, &p, &r, delay)?;
        relays.insert(i, relay);
        // Take p off the bridge before q joins, so no frame goes both ways.
        ns::ip(&["-n", h, "link", "set", &p, "nomaster"])?;
        ns::ip(&["-n", h, "link", "set", &q, "master", BRIDGE, "up"])
    }
}

impl Drop for Lab {
    /// Stops the delay relays, kills every process in the lab's namespaces,
    /// then deletes the namespaces, which takes their links, addresses and
    /// nft tables with them. Runs during a panic too.
    fn drop(&mut self) {
        self.relays
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        for node in &self.nodes {
            ns::remove(&node.ns);
        }
        ns::remove(&self.hub);
    }
}

/// Checks what every lab needs, as [`Skip`] errors.
fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Skip("network namespace tests need root".into()).into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err(Skip("`ip` (iproute2) not found".into()).into()),
    }
}
