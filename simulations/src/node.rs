//! One simulated node: its keys, its own roster replica and guardian, and
//! where it is in its life (down, booting, running).

use std::collections::BTreeSet;
use std::rc::Rc;

use keyward_core::guardian::{Guardian, Millis};
use keyward_core::identity::{BootKey, NodeId, NodeKey};
use keyward_core::roster::Role;
use keyward_core::shares::ShareEnvelope;

use crate::rosters::Entry;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Down,
    /// Powered on: firmware, kernel, then the initramfs asking for shares.
    Booting,
    /// Disk unlocked, daemon starting.
    Starting,
    Running,
}

/// What the LUKS token names: the epoch, the guardians and T.
#[derive(Clone, Debug)]
pub struct Token {
    pub epoch: u64,
    pub guardians: Vec<u32>,
    pub threshold: usize,
    /// The keyslot key this binding protects.
    pub secret: [u8; 32],
}

/// A binding in progress: deposits sent, waiting for every guardian's ack.
pub struct Bind {
    pub token: Token,
    pub envelopes: Vec<ShareEnvelope>,
    pub acked: BTreeSet<u32>,
    pub started: Millis,
}

/// One boot's initramfs: which guardians answered with a share.
pub struct Boot {
    pub session: u32,
    /// When the initramfs started asking.
    pub since: Millis,
    pub shares: Vec<(NodeId, ShareEnvelope)>,
    pub from: BTreeSet<u32>,
    pub tries: u32,
    /// An admin approved this node during this boot.
    pub approved: bool,
    /// Guardians whose refusal is final for this boot (revoked, no share):
    /// the real client stops asking them, and stops altogether (exit 3,
    /// the keyscript gives up) once too few others are left.
    pub gone: BTreeSet<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlock {
    Shares,
    Passphrase,
}

pub struct Node {
    pub id: NodeId,
    pub key: NodeKey,
    pub boot_key: BootKey,
    pub phase: Phase,
    /// Incarnation: bumped whenever the node goes down or comes up, so
    /// timers of a previous life are ignored.
    pub inc: u32,
    pub roster: Rc<Entry>,
    pub guardian: Guardian,
    pub token: Option<Token>,
    pub bind: Option<Bind>,
    pub boot: Option<Boot>,
    /// The role it claimed when admitted (auditors hold no shares).
    pub role: Role,
    /// A hostile member (hostile scenario): never the admin's node, not
    /// part of the churn; its moves are in `hostile`.
    pub hostile: bool,
    pub revoked: bool,
    /// Seized at 04:00 (seizure scenario): must never unlock again.
    pub seized: bool,
    /// Stolen and booted by a thief (sweeps): may unlock within timeout.
    pub stolen: bool,
    pub running_since: Millis,
    pub down_since: Millis,
    /// When the node was powered on last.
    pub powered_on: Millis,
    /// Its last heartbeat (connection pings are counted up to there).
    pub pinged_at: Millis,
}

impl Node {
    pub fn running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// In the initramfs, asking for shares.
    pub fn asking(&self) -> bool {
        self.phase == Phase::Booting && self.boot.is_some()
    }

    /// Guardians it pings: those of its token and of a binding in progress.
    pub fn ping_targets(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .token
            .iter()
            .chain(self.bind.as_ref().map(|b| &b.token))
            .flat_map(|t| t.guardians.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
