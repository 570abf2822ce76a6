//! One simulated machine: its keys, clock skew, disk and LUKS token, and
//! what runs on it (nothing, the initramfs's `UnlockClient`, or keywardd's
//! `Node`).

use bit_set::BitSet;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use keyward_core::guardian::Millis;
use keyward_core::identity::{BootKey, NodeId, NodeKey};
use keyward_core::node::{CtlId, Node, Write, WriteId};
use keyward_core::roster::Member;
use keyward_core::unlock::{Plan, PlanGuardian, UnlockClient};

use super::disk::Disk;

/// Where a machine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Down,
    /// Firmware and kernel; then the initramfs.
    Booting,
    /// The initramfs runs `keyward-unlock` attempts (see `boot`).
    Unlocking,
    /// The keyscript gave up (exit 3) or the machine was never bound:
    /// it waits at the passphrase prompt.
    Prompt,
    /// Disk open, keywardd starting.
    Starting,
    Running,
}

/// The keyward token in the LUKS2 header: what `keyward bind` writes and
/// the initramfs reads. Written when the bind completes; a header write is
/// durable at once (cryptsetup syncs it).
#[derive(Clone, Debug)]
pub struct Token {
    pub epoch: u64,
    pub threshold: usize,
    /// Guardians by machine, in the token's order, with their names.
    pub guardians: Vec<(u32, NodeId, String)>,
    /// The keyslot's key.
    pub secret: [u8; 32],
}

/// A control request in flight and what the world does with its reply.
#[derive(Clone, Debug)]
pub enum Ctl {
    /// `keyward bind`/`rebind`, step 1: status, to pick guardians.
    BindStatus,
    /// Step 2: the deposit of the new epoch's envelopes.
    BindDeposit(Token, keyward_core::bind::BindPlan),
    /// Dropping an epoch (old or abandoned); the reply is only counted.
    Drop,
    /// An admin command whose reply is only counted.
    Admin,
    /// `keyward invite` on the inviter, for the new machine.
    Invite(u32),
    /// `keyward join` on the new machine.
    Join,
    /// `keyward revoke` of this machine.
    Revoke(u32),
}

pub struct Machine {
    pub key: NodeKey,
    pub boot_key: Rc<BootKey>,
    pub id: NodeId,
    /// The boot key's id: what the initramfs connects as.
    pub boot_id: NodeId,
    pub me: Member,
    /// This machine's clock minus the world's.
    pub skew: i64,
    pub phase: Phase,
    /// Bumped at every phase change: events of an earlier life are void.
    pub inc: u32,
    pub disk: Disk,
    pub token: Option<Token>,
    /// Highest epoch this machine ever used (`last-epoch` in the state
    /// directory, written before any share leaves).
    pub last_epoch: u64,
    pub node: Option<Node>,
    pub client: Option<UnlockClient<Rc<BootKey>>>,
    /// A write being committed: outputs after it wait.
    pub committing: Option<(Option<WriteId>, Write)>,
    /// The node's timer event as scheduled (world time).
    pub timer_at: Option<Millis>,
    /// The client's timer event as scheduled (world time).
    pub client_at: Option<Millis>,
    /// Who the transport treats as members (`Output::Members`).
    pub members: std::sync::Arc<BTreeSet<NodeId>>,
    pub subscribed: bool,
    /// Gossip messages seen (gossipsub's duplicate cache), by message
    /// index: one bit each, as every message reaches nearly every machine
    /// (a tree per machine cost a cache miss per level on every delivery).
    pub seen: BitSet,
    /// Its gossipsub mesh (`mesh`): the peers it forwards gossip to.
    pub mesh: Vec<u32>,
    /// The heartbeat up to which its IHAVEs are counted (`mesh`).
    pub ihave_until: u64,
    /// Gossip held until the node's verdict: id -> (message, author, via).
    pub verdicts: BTreeMap<u64, (u64, u32, u32)>,
    pub ctl: BTreeMap<CtlId, Ctl>,
    /// Shutting down cleanly: goodbyes sent, waiting for their answers.
    pub leaving: bool,
    pub running_since: Millis,
    pub down_since: Millis,
    /// When the current boot's first unlock attempt started.
    pub asking_since: Option<Millis>,
    /// Unlock attempts this boot (the keyscript starts one per minute).
    pub attempts: u32,
    /// Seized: taken away while running, off longer than timeout, then
    /// booted by the thief. Must never unlock with shares.
    pub seized: bool,
    /// An admin revoked it.
    pub revoked: bool,
    /// Stolen (a theft, for the sweeps): booted by the thief.
    pub stolen: bool,
    /// One of the hostile scenario's hostile members.
    pub hostile: bool,
    /// An admin approved this boot (it counts as unlocked after approval).
    pub approved: bool,
    /// Guardians whose share the current unlock attempt holds.
    pub got: BTreeSet<u32>,
    /// The digest of the node's roster, as of its last change.
    pub digest: [u8; 32],
    /// Its own log as its spool holds it (the logs scenario): the spool
    /// fsyncs its own files, so a crash keeps it.
    pub own: Option<super::logs::OwnLog>,
}

impl Machine {
    pub fn new(key: NodeKey, boot_key: BootKey, me: Member, skew: i64, disk: Disk) -> Machine {
        let id = key.id();
        let boot_id = boot_key.public().as_node_id();
        Machine {
            key,
            boot_key: Rc::new(boot_key),
            id,
            boot_id,
            me,
            skew,
            phase: Phase::Down,
            inc: 0,
            disk,
            token: None,
            last_epoch: 0,
            node: None,
            client: None,
            committing: None,
            timer_at: None,
            client_at: None,
            members: Default::default(),
            subscribed: false,
            seen: BitSet::new(),
            mesh: Vec::new(),
            ihave_until: 0,
            verdicts: BTreeMap::new(),
            ctl: BTreeMap::new(),
            leaving: false,
            running_since: 0,
            down_since: 0,
            asking_since: None,
            attempts: 0,
            seized: false,
            revoked: false,
            stolen: false,
            hostile: false,
            approved: false,
            got: BTreeSet::new(),
            digest: [0; 32],
            own: None,
        }
    }

    /// A machine an admin vouches for: not revoked, seized, stolen or
    /// hostile.
    pub fn legit(&self) -> bool {
        !self.revoked && !self.seized && !self.stolen && !self.hostile
    }

    /// At the initramfs: asking for shares or at the passphrase prompt.
    pub fn locked(&self) -> bool {
        matches!(self.phase, Phase::Unlocking | Phase::Prompt)
    }

    pub fn running(&self) -> bool {
        self.phase == Phase::Running && self.node.is_some()
    }

    /// The identity this machine connects as now: the node key while
    /// keywardd runs, the boot key in the initramfs.
    pub fn endpoint(&self) -> Option<NodeId> {
        match self.phase {
            Phase::Running => Some(self.id),
            Phase::Unlocking => Some(self.boot_id),
            _ => None,
        }
    }

    /// The unlock client's plan from the token, as node/src/unlock/mod.rs
    /// builds it: owner, name, epoch, T and each guardian with its
    /// addresses (the sim's address is the machine number), no probes.
    pub fn plan(&self) -> Option<Plan> {
        let t = self.token.as_ref()?;
        Some(Plan {
            name: self.me.name.clone(),
            owner: self.id,
            epoch: t.epoch,
            threshold: t.threshold,
            guardians: t
                .guardians
                .iter()
                .map(|(m, id, name)| PlanGuardian {
                    id: *id,
                    name: name.clone(),
                    addrs: vec![format!("/sim/{m}")],
                })
                .collect(),
            probes: vec![],
        })
    }
}
