//! A machine's disk as keywardd's store sees it: the node's [`Write`]s
//! applied to a map, and `Stored` rebuilt from it at start.
//!
//! Durability is explicit: the driver starts a commit when it polls a
//! `Write` and the write is durable only once the commit completes (a few
//! virtual milliseconds later; keywardd flushes every write before it acts
//! on the next output). A crash before then loses it, and every output the
//! node queued after it, which the daemon would not have acted on yet.
//! What is in the map survives crashes; a restart reads it back.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use keyward_core::guardian::OwnerState;
use keyward_core::identity::NodeId;
use keyward_core::node::{Stored, Write};
use keyward_core::proto::{AdminMsg, InviteRecord};
use keyward_core::roster::{OpId, SignedOp};

/// Hash tiles by their C2SP path.
pub type Tiles = BTreeMap<String, Vec<u8>>;

/// The durable state of one machine's keywardd (its sled trees).
#[derive(Clone, Default)]
pub struct Disk {
    /// Shared between disks that hold the same operations (see
    /// [`SharedRosters`]).
    roster: Arc<BTreeMap<OpId, SignedOp>>,
    owners: BTreeMap<NodeId, OwnerState>,
    lock: Option<AdminMsg>,
    invites: BTreeMap<[u8; 32], InviteRecord>,
    /// Replica files (logs part 2), by their path under the logs
    /// directory, as `Write::Replica` left them.
    pub replica: BTreeMap<String, Vec<u8>>,
    /// The witness's files: its index and one record per origin.
    pub witness_index: Option<Vec<u8>>,
    pub witness: BTreeMap<NodeId, Vec<u8>>,
    /// Writes committed, for the summary.
    pub commits: u64,
}

impl Disk {
    /// A disk holding a roster already (the setup's founding and
    /// admissions, as `keyward init` and a join leave it).
    pub fn with_roster(ops: &[SignedOp]) -> Disk {
        Disk {
            roster: Arc::new(ops.iter().map(|o| (o.id(), o.clone())).collect()),
            ..Disk::default()
        }
    }

    /// Applies one committed write, as `Store::write` does.
    pub fn apply(&mut self, w: Write, shared: &mut SharedRosters) {
        self.commits += 1;
        match w {
            Write::Roster { put, remove } => shared.apply(&mut self.roster, put, remove),
            Write::Owners(v) => {
                for (o, s) in v {
                    self.owners.insert(o, s);
                }
            }
            Write::Lock(m) => self.lock = Some(*m),
            Write::Invite { id, record } => {
                self.invites.insert(id, record);
            }
            Write::Replica(ws) => {
                use keyward_core::log::replica::Write as RW;
                for w in ws {
                    match w {
                        RW::Segment { path, bytes } | RW::Tile { path, bytes } => {
                            self.replica.insert(path, bytes);
                        }
                        RW::Checkpoint { path, note } => {
                            self.replica.insert(path, note);
                        }
                        RW::Delete { path } => {
                            self.replica.remove(&path);
                        }
                        RW::Sync => {}
                    }
                }
            }
            Write::Witness(ws) => {
                use keyward_core::log::witness::WitnessFile;
                for w in ws {
                    match w.file {
                        WitnessFile::Index => self.witness_index = Some(w.bytes),
                        WitnessFile::Origin(o) => {
                            self.witness.insert(o, w.bytes);
                        }
                    }
                }
            }
        }
    }

    /// `origin`'s replica files as the store loads them: its tiles by
    /// their C2SP path, and its segments by index.
    pub fn replica_of(&self, origin: &NodeId) -> (Tiles, Vec<(u64, Vec<u8>)>) {
        let dir = format!("{}/", keyward_core::log::replica::origin_dir(origin));
        let (mut tiles, mut segs) = (BTreeMap::new(), Vec::new());
        for (p, b) in self.replica.range(dir.clone()..) {
            let Some(rel) = p.strip_prefix(&dir) else {
                break;
            };
            if let Some(i) = rel.strip_prefix("segments/") {
                if let Ok(i) = i.parse::<u64>() {
                    segs.push((i, b.clone()));
                }
            } else if rel.starts_with("tile/") {
                tiles.insert(rel.to_string(), b.clone());
            }
        }
        (tiles, segs)
    }

    /// What `Store::load_node` gives a restarting daemon.
    /// The roster operations are left out: [`Disk::roster`] gives them
    /// with their ids, which the world's verification memo is keyed by.
    pub fn stored(&self) -> Stored {
        Stored {
            roster: vec![],
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

    /// The roster operations on this disk, by id.
    pub fn roster(&self) -> &BTreeMap<OpId, SignedOp> {
        &self.roster
    }

    pub fn roster_len(&self) -> usize {
        self.roster.len()
    }
}

/// Roster writes shared between disks: most disks take the same
/// operations in the same writes (gossip brings each operation to every
/// node), so a disk that applies a write another disk in the same state
/// applied before takes the result instead of a copy of its own. 5,000
/// disks of a 5,000-member roster would otherwise hold 25 million
/// operations.
#[derive(Default)]
pub struct SharedRosters {
    /// (the map before, as an address; the write) -> (before, after).
    /// Holding `before` keeps its address from being reused.
    done: BTreeMap<WriteKey, (Arc<RosterMap>, Arc<RosterMap>)>,
    order: VecDeque<WriteKey>,
}

type RosterMap = BTreeMap<OpId, SignedOp>;
/// (the map's address, a hash of the write's put and removed ids)
type WriteKey = (usize, [u8; 32]);

/// Writes remembered; the oldest go first.
const KEEP: usize = 64;

impl SharedRosters {
    fn apply(&mut self, map: &mut Arc<RosterMap>, put: Vec<SignedOp>, remove: Vec<OpId>) {
        let put: Vec<(OpId, SignedOp)> = put.into_iter().map(|o| (o.id(), o)).collect();
        let mut h = Sha256::new();
        for (id, _) in &put {
            h.update(id);
        }
        h.update(b"-");
        for id in &remove {
            h.update(id);
        }
        let key = (Arc::as_ptr(map) as usize, h.finalize().into());
        if let Some((_, after)) = self.done.get(&key) {
            *map = after.clone();
            return;
        }
        let before = map.clone();
        let m = Arc::make_mut(map);
        for id in remove {
            m.remove(&id);
        }
        m.extend(put);
        self.done.insert(key, (before, map.clone()));
        self.order.push_back(key);
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.done.remove(&old);
            }
        }
    }
}
