//! A machine's disk as keywardd's store sees it: the node's [`Write`]s
//! applied to a map, and `Stored` rebuilt from it at start.
//!
//! Durability is explicit: the driver starts a commit when it polls a
//! `Write` and the write is durable only once the commit completes (a few
//! virtual milliseconds later; keywardd flushes every write before it acts
//! on the next output). A crash before then loses it, and every output the
//! node queued after it, which the daemon would not have acted on yet.
//! What is in the map survives crashes; a restart reads it back.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Weak};

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
    roster: Arc<RosterFile>,
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
            roster: Arc::new(RosterFile::new(
                ops.iter().map(|o| (o.id(), o.clone())).collect(),
            )),
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
        &self.roster.ops
    }

    pub fn roster_len(&self) -> usize {
        self.roster.ops.len()
    }
}

/// Roster writes shared between disks: most disks take the same
/// operations in the same writes (gossip brings each operation to every
/// node), so a disk that applies a write another disk in the same state
/// applied before takes the result instead of a copy of its own. 5,000
/// disks of a 5,000-member roster would otherwise hold 25 million
/// operations.
///
/// Disks also reach the same set of operations by different writes (one
/// node takes two joins in one merge, another in two), and over a day of
/// churn at 5,000 nodes the paths diverge enough that the write memo
/// alone let each disk end up with its own copy (15 GB after a few
/// simulated hours, 2026-12-04). So every map is also interned by its
/// content: a write whose result another live disk holds already takes
/// that map.
#[derive(Default)]
pub struct SharedRosters {
    /// (the map before, as an address; the write) -> (before, after).
    /// Holding `before` keeps its address from being reused.
    done: BTreeMap<WriteKey, (Arc<RosterFile>, Arc<RosterFile>)>,
    order: VecDeque<WriteKey>,
    /// Live maps by their content's digest and size.
    by_content: HashMap<SetDigest, Weak<RosterFile>>,
    /// `by_content`'s size after its last sweep of dead entries.
    swept: usize,
}

type RosterMap = BTreeMap<OpId, SignedOp>;
/// (the map's address, a hash of the write's put and removed ids)
type WriteKey = (usize, [u8; 32]);

/// Writes remembered; the oldest go first.
const KEEP: usize = 64;

/// A disk's roster operations with the digest of their ids.
#[derive(Clone, Default)]
pub struct RosterFile {
    ops: RosterMap,
    digest: SetDigest,
}

impl RosterFile {
    fn new(ops: RosterMap) -> RosterFile {
        let mut digest = SetDigest::default();
        for id in ops.keys() {
            digest.add(id);
        }
        RosterFile { ops, digest }
    }
}

/// A digest of a set of operation ids that a write updates without
/// walking the set: the ids (SHA-256 outputs already) summed as 256-bit
/// integers, and how many there are. Equal sets have equal digests; two
/// different sets of this simulator's operations share one only if their
/// sums collide, which nobody searches for here (a memo of the
/// simulator, never of keywardd).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
struct SetDigest {
    sum: [u64; 4],
    len: usize,
}

impl SetDigest {
    fn limbs(id: &OpId) -> [u64; 4] {
        let mut l = [0u64; 4];
        for (i, c) in id.chunks_exact(8).enumerate() {
            l[3 - i] = u64::from_be_bytes(c.try_into().expect("8 bytes"));
        }
        l
    }

    fn add(&mut self, id: &OpId) {
        let x = Self::limbs(id);
        let mut carry = false;
        for (s, x) in self.sum.iter_mut().zip(x) {
            let (a, c1) = s.overflowing_add(x);
            let (b, c2) = a.overflowing_add(u64::from(carry));
            *s = b;
            carry = c1 || c2;
        }
        self.len += 1;
    }

    fn sub(&mut self, id: &OpId) {
        let x = Self::limbs(id);
        let mut borrow = false;
        for (s, x) in self.sum.iter_mut().zip(x) {
            let (a, b1) = s.overflowing_sub(x);
            let (b, b2) = a.overflowing_sub(u64::from(borrow));
            *s = b;
            borrow = b1 || b2;
        }
        self.len -= 1;
    }
}

impl SharedRosters {
    fn apply(&mut self, map: &mut Arc<RosterFile>, put: Vec<SignedOp>, remove: Vec<OpId>) {
        let put: BTreeMap<OpId, SignedOp> = put.into_iter().map(|o| (o.id(), o)).collect();
        let remove: BTreeSet<OpId> = remove.into_iter().collect();
        let mut h = Sha256::new();
        for id in put.keys() {
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
        // the digest of (before - remove) + put
        let mut digest = map.digest;
        for id in &remove {
            if map.ops.contains_key(id) {
                digest.sub(id);
            }
        }
        for id in put.keys() {
            if remove.contains(id) || !map.ops.contains_key(id) {
                digest.add(id);
            }
        }
        let before = map.clone();
        match self.by_content.get(&digest).and_then(Weak::upgrade) {
            Some(same) => *map = same,
            None => {
                let m = Arc::make_mut(map);
                for id in &remove {
                    m.ops.remove(id);
                }
                m.ops.extend(put);
                m.digest = digest;
                self.by_content.insert(digest, Arc::downgrade(map));
                if self.by_content.len() > 2 * self.swept + 1024 {
                    self.by_content.retain(|_, w| w.strong_count() > 0);
                    self.swept = self.by_content.len();
                }
            }
        }
        self.done.insert(key, (before, map.clone()));
        self.order.push_back(key);
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.done.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_digest_is_the_same_whatever_the_order_and_undoes_itself() {
        let ids: Vec<OpId> = (0..50u8)
            .map(|i| Sha256::digest([i]).into())
            .chain([[0xff; 32], [0; 32], [1; 32]])
            .collect();
        let mut a = SetDigest::default();
        for id in &ids {
            a.add(id);
        }
        let mut b = SetDigest::default();
        for id in ids.iter().rev() {
            b.add(id);
        }
        assert_eq!(a, b);
        for id in &ids[..10] {
            b.sub(id);
        }
        let mut c = SetDigest::default();
        for id in &ids[10..] {
            c.add(id);
        }
        assert_eq!(b, c);
        for id in &ids[10..] {
            c.sub(id);
        }
        assert_eq!(c, SetDigest::default());
    }
}
