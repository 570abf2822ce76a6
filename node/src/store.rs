//! Persistent state. This is the only module that names `sled`.
//!
//! Values go through `codec`, so a corrupt or foreign record is a typed
//! error, never a panic. Anything another node relies on (a share we hold,
//! a used invite) is flushed before we acknowledge it.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use crate::codec::{self, CodecError, Wire};

/// Bump when the on-disk layout changes incompatibly.
/// 2: roster admissions carry the member's own signature over its record.
pub const SCHEMA: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {why}")]
    Open { path: PathBuf, why: String },
    #[error("state database {path} has schema {found}, this keywardd understands {SCHEMA}; {}", schema_advice(*found))]
    Schema { path: PathBuf, found: u32 },
    #[error("state database: {0}")]
    Db(String),
    #[error("state database record in `{tree}`: {source}")]
    Record {
        tree: &'static str,
        source: CodecError,
    },
}

/// What an admin does about a state database of another schema.
fn schema_advice(found: u32) -> &'static str {
    if found < SCHEMA {
        "it was written by an older keyward whose roster lets any member rewrite another's record, and cannot be converted (every admission must now carry the member's own signature): stop keywardd, move the state directory aside, then `keyward init` a new mesh on one node and `keyward join` the others and `keyward bind` again (bound disks still open with their passphrase meanwhile)"
    } else {
        "it was written by a newer keyward: run that version"
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// The named trees of the state database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeName {
    Roster,
    Envelopes,
    Liveness,
    Approvals,
    Invites,
    Guardian,
    LogIndex,
    /// Where each peer can be reached (`addr_book::Entry`). `Liveness`
    /// held bare address lists before; it is read once to migrate them.
    Peers,
}

impl TreeName {
    pub fn as_str(self) -> &'static str {
        match self {
            TreeName::Roster => "roster",
            TreeName::Envelopes => "envelopes",
            TreeName::Liveness => "liveness",
            TreeName::Approvals => "approvals",
            TreeName::Invites => "invites",
            TreeName::Guardian => "guardian",
            TreeName::LogIndex => "logindex",
            TreeName::Peers => "peers",
        }
    }
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    schema: u32,
}
impl Wire for Meta {
    const KIND: &'static str = "meta";
    const MAX: usize = 64;
}

impl Store {
    /// Opens (creating if needed) the database and checks its schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(4 << 20)
            .open()
            .map_err(|e| StoreError::Open {
                path: path.into(),
                why: if e.to_string().contains("lock") {
                    format!("{e}: another process (a running keywardd?) has it open; stop keywardd first")
                } else {
                    e.to_string()
                },
            })?;
        match db.get("schema")? {
            None => {
                db.insert(
                    "schema",
                    codec::encode(&Meta { schema: SCHEMA }).expect("tiny"),
                )?;
                db.flush()?;
            }
            Some(v) => {
                let m: Meta = codec::decode(&v).map_err(|source| StoreError::Record {
                    tree: "meta",
                    source,
                })?;
                if m.schema != SCHEMA {
                    return Err(StoreError::Schema {
                        path: path.into(),
                        found: m.schema,
                    });
                }
            }
        }
        Ok(Store { db })
    }

    pub fn tree<V: Wire>(&self, name: TreeName) -> Result<Typed<V>, StoreError> {
        Ok(Typed {
            name: name.as_str(),
            tree: self.db.open_tree(name.as_str())?,
            _v: PhantomData,
        })
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Applies writes to several trees atomically, then flushes.
    pub fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.ops.is_empty() {
            // sled's multi-tree transaction panics on an empty tree list.
            return Ok(());
        }
        let names: Vec<&'static str> = {
            let mut n: Vec<_> = batch.ops.iter().map(|o| o.0).collect();
            n.sort();
            n.dedup();
            n
        };
        let trees: Vec<sled::Tree> = names
            .iter()
            .map(|n| self.db.open_tree(n))
            .collect::<Result<_, _>>()?;
        use sled::transaction::{TransactionError, Transactional};
        let r: Result<(), TransactionError<()>> = trees.as_slice().transaction(|tx| {
            for (name, key, val) in &batch.ops {
                let i = names.iter().position(|n| n == name).expect("listed");
                match val {
                    Some(v) => {
                        tx[i].insert(key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        tx[i].remove(key.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        r.map_err(|e| StoreError::Db(format!("{e:?}")))?;
        self.flush()
    }
}

/// One write of a batch: tree, key, and the value (None removes).
type Write = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// Writes to apply together with [`Store::commit`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<Write>,
}

impl Batch {
    pub fn put<V: Wire>(&mut self, tree: TreeName, key: &[u8], v: &V) -> Result<(), StoreError> {
        let bytes = codec::encode(v).map_err(|source| StoreError::Record {
            tree: tree.as_str(),
            source,
        })?;
        self.ops.push((tree.as_str(), key.to_vec(), Some(bytes)));
        Ok(())
    }

    pub fn remove(&mut self, tree: TreeName, key: &[u8]) {
        self.ops.push((tree.as_str(), key.to_vec(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A tree whose values are all of one type.
pub struct Typed<V> {
    name: &'static str,
    tree: sled::Tree,
    _v: PhantomData<V>,
}

impl<V: Wire> Typed<V> {
    fn dec(&self, b: &[u8]) -> Result<V, StoreError> {
        codec::decode(b).map_err(|source| StoreError::Record {
            tree: self.name,
            source,
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<V>, StoreError> {
        self.tree.get(key)?.map(|b| self.dec(&b)).transpose()
    }

    /// Inserts without flushing; call [`Store::flush`] before acknowledging.
    pub fn put(&self, key: &[u8], v: &V) -> Result<(), StoreError> {
        let bytes = codec::encode(v).map_err(|source| StoreError::Record {
            tree: self.name,
            source,
        })?;
        self.tree.insert(key, bytes)?;
        Ok(())
    }

    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        Ok(())
    }

    /// All records; a corrupt one is reported, not skipped silently.
    pub fn all(&self) -> Result<Vec<(Vec<u8>, V)>, StoreError> {
        self.tree
            .iter()
            .map(|r| {
                let (k, v) = r?;
                Ok((k.to_vec(), self.dec(&v)?))
            })
            .collect()
    }

    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, V)>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|r| {
                let (k, v) = r?;
                Ok((k.to_vec(), self.dec(&v)?))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

/// The node's state as [`keyward_core::node::Write`] describes it: each
/// write's tree and key, and reading it all back at start.
impl Store {
    /// Commits one write of the node durably (one flushed batch).
    pub fn write(&self, w: &keyward_core::node::Write) -> Result<(), StoreError> {
        use keyward_core::node::Write as W;
        let mut b = Batch::default();
        match w {
            W::Owners(owners) => {
                for (o, s) in owners {
                    b.put(TreeName::Guardian, &o.0, s)?;
                }
            }
            W::Roster { put, remove } => {
                for op in put {
                    b.put(TreeName::Roster, &op.id(), op)?;
                }
                for id in remove {
                    b.remove(TreeName::Roster, id);
                }
            }
            W::Lock(m) => b.put(TreeName::Approvals, LOCK_KEY, m.as_ref())?,
            W::Invite { id, record } => b.put(TreeName::Invites, id, record)?,
            // files under the logs directory, not database records: the
            // daemon writes them (`daemon::replicas`)
            W::Replica(_) | W::Witness(_) => {
                return Err(StoreError::Db(format!(
                    "{} is not a state database write",
                    w.what()
                )))
            }
        }
        self.commit(b)
    }

    /// What the node wrote in earlier runs.
    pub fn load_node(&self) -> Result<keyward_core::node::Stored, StoreError> {
        use keyward_core::guardian::OwnerState;
        use keyward_core::identity::NodeId;
        use keyward_core::proto::{AdminMsg, InviteRecord};
        use keyward_core::roster::SignedOp;
        let roster = self.tree::<SignedOp>(TreeName::Roster)?.all()?;
        let owners = self.tree::<OwnerState>(TreeName::Guardian)?.all()?;
        let invites = self.tree::<InviteRecord>(TreeName::Invites)?.all()?;
        Ok(keyward_core::node::Stored {
            roster: roster.into_iter().map(|(_, o)| o).collect(),
            owners: owners
                .into_iter()
                .filter_map(|(k, v)| Some((NodeId(k.try_into().ok()?), v)))
                .collect(),
            lock: self.tree::<AdminMsg>(TreeName::Approvals)?.get(LOCK_KEY)?,
            verified: vec![],
            invites: invites
                .into_iter()
                .filter_map(|(k, v)| Some((k.try_into().ok()?, v)))
                .collect(),
        })
    }
}

/// The `approvals` tree's one key: the admin message that set the lock.
const LOCK_KEY: &[u8] = b"lock";

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec(u32, String);
    impl Wire for Rec {
        const KIND: &'static str = "rec";
        const MAX: usize = 128;
    }

    /// Opens a store this process just dropped: sled's flusher thread lets
    /// go of the directory's lock a moment after the drop, so a lock
    /// error is retried for up to 5 s (a restarted keywardd is a new
    /// process, whose lock the old one's exit released).
    fn reopen(path: &Path) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Store::open(path) {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                r => return r,
            }
        }
    }

    #[test]
    fn typed_round_trip_and_batches_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let t = s.tree::<Rec>(TreeName::Roster).unwrap();
            t.put(b"a", &Rec(1, "x".into())).unwrap();
            let mut b = Batch::default();
            b.put(TreeName::Roster, b"b", &Rec(2, "y".into())).unwrap();
            b.put(TreeName::Envelopes, b"e", &Rec(3, "z".into()))
                .unwrap();
            b.remove(TreeName::Roster, b"a");
            s.commit(b).unwrap();
        }
        let s = reopen(dir.path()).unwrap();
        let t = s.tree::<Rec>(TreeName::Roster).unwrap();
        assert_eq!(t.get(b"a").unwrap(), None);
        assert_eq!(t.get(b"b").unwrap(), Some(Rec(2, "y".into())));
        assert_eq!(
            s.tree::<Rec>(TreeName::Envelopes)
                .unwrap()
                .all()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn an_empty_batch_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.commit(Batch::default()).unwrap();
    }

    #[test]
    fn corrupt_records_and_other_schemas_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.db.open_tree("roster")
                .unwrap()
                .insert("k", &b"garbage"[..])
                .unwrap();
            let e = s
                .tree::<Rec>(TreeName::Roster)
                .unwrap()
                .get(b"k")
                .unwrap_err();
            assert!(e.to_string().contains("roster"), "{e}");
            s.db.insert("schema", codec::encode(&Meta { schema: 99 }).unwrap())
                .unwrap();
            s.flush().unwrap();
        }
        let e = reopen(dir.path()).err().unwrap();
        assert!(matches!(e, StoreError::Schema { found: 99, .. }), "{e}");
        assert!(e.to_string().contains("newer keyward"), "{e}");
    }

    /// A state directory written before roster records were self-signed is
    /// refused with what to do, not loaded with records nobody can check.
    #[test]
    fn a_schema_1_state_directory_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.db.insert("schema", codec::encode(&Meta { schema: 1 }).unwrap())
                .unwrap();
            s.flush().unwrap();
        }
        let e = reopen(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("schema 1") && e.contains("move the state directory aside"),
            "{e}"
        );
    }
}
