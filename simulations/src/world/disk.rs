//! A machine's disk as keywardd's store sees it: the node's [`Write`]s
//! applied to a map, and `Stored` rebuilt from it at start.
//!
//! Durability is explicit: the driver starts a commit when it polls a
//! `Write` and the write is durable only once the commit completes (a few
//! virtual milliseconds later; keywardd flushes every write before it acts
//! on the next output). A crash before then loses it, and every output the
//! node queued after it, which the daemon would not have acted on yet.
//! What is in the map survives crashes; a restart reads it back.

use std::collections::BTreeMap;

use keyward_core::guardian::OwnerState;
use keyward_core::identity::NodeId;
use keyward_core::node::{Stored, Write};
use keyward_core::proto::{AdminMsg, InviteRecord};
use keyward_core::roster::{OpId, SignedOp};

/// The durable state of one machine's keywardd (its sled trees).
#[derive(Clone, Default)]
pub struct Disk {
    roster: BTreeMap<OpId, SignedOp>,
    owners: BTreeMap<NodeId, OwnerState>,
    lock: Option<AdminMsg>,
    invites: BTreeMap<[u8; 32], InviteRecord>,
    /// Writes committed, for the summary.
    pub commits: u64,
}

impl Disk {
    /// A disk holding a roster already (the setup's founding and
    /// admissions, as `keyward init` and a join leave it).
    pub fn with_roster(ops: &[SignedOp]) -> Disk {
        Disk {
            roster: ops.iter().map(|o| (o.id(), o.clone())).collect(),
            ..Disk::default()
        }
    }

    /// Applies one committed write, as `Store::write` does.
    pub fn apply(&mut self, w: Write) {
        self.commits += 1;
        match w {
            Write::Owners(v) => {
                for (o, s) in v {
                    self.owners.insert(o, s);
                }
            }
            Write::Roster { put, remove } => {
                for id in remove {
                    self.roster.remove(&id);
                }
                for op in put {
                    self.roster.insert(op.id(), op);
                }
            }
            Write::Lock(m) => self.lock = Some(*m),
            Write::Invite { id, record } => {
                self.invites.insert(id, record);
            }
        }
    }

    /// What `Store::load_node` gives a restarting daemon.
    pub fn stored(&self) -> Stored {
        Stored {
            roster: self.roster.values().cloned().collect(),
            owners: self.owners.iter().map(|(k, v)| (*k, v.clone())).collect(),
            lock: self.lock.clone(),
            verified: vec![],
            invites: self.invites.iter().map(|(k, v)| (*k, v.clone())).collect(),
        }
    }

    /// Epochs of `owner`'s envelopes held on this disk.
    pub fn held(&self, owner: &NodeId) -> Vec<u64> {
        self.owners
            .get(owner)
            .map(|s| s.envelopes.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn roster_len(&self) -> usize {
        self.roster.len()
    }
}
