//! Roster replicas.
//!
//! Every node holds its own replica, a `keyward_core::roster::Roster`, and
//! changes it only through `Roster::merge`. Because a roster is a pure
//! function of its set of operations (it is a CRDT), two replicas holding the
//! same set are identical; with `dedup` on (the default) they share one
//! immutable value (hash-consing), and merging operation X into set S is done
//! once per (S, X) and remembered. A thousand nodes learning the same
//! operation thus cost one `merge`, not a thousand. `--no-dedup` gives each
//! node a private copy and re-runs every merge; a test checks both give the
//! same trace.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use keyward_core::identity::NodeId;
use keyward_core::roster::{Merged, OpBody, OpId, Roster, SignedOp};

/// A set of global operation numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bits(Vec<u64>);

impl Bits {
    pub fn contains(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    pub fn insert(&mut self, i: u32) {
        let w = i as usize / 64;
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }

    /// Members of `self` that `other` lacks, ascending.
    pub fn minus(&self, other: &Bits) -> Vec<u32> {
        let mut out = Vec::new();
        for (wi, w) in self.0.iter().enumerate() {
            let mut d = w & !other.0.get(wi).copied().unwrap_or(0);
            while d != 0 {
                let b = d.trailing_zeros();
                out.push((wi * 64) as u32 + b);
                d &= d - 1;
            }
        }
        out
    }
}

/// One replica state: the roster, its digest and which operations it holds.
pub struct Entry {
    pub roster: Roster,
    pub digest: [u8; 32],
    pub ops: Bits,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    New,
    Known,
    Rejected(String),
}

#[derive(Clone)]
enum Step {
    New([u8; 32]),
    Known,
    Rejected(String),
}

/// A revocation some node signed, as registered (for the invariants).
#[derive(Clone, Debug)]
pub struct Issued {
    pub id: OpId,
    pub by: NodeId,
    pub node: NodeId,
}

pub struct Rosters {
    ops: Vec<SignedOp>,
    ids: Vec<OpId>,
    /// Operation number by id (the first registered), to describe a
    /// replica by the operations its roster really holds.
    by_id: BTreeMap<OpId, u32>,
    /// Every revocation registered, in order.
    pub revokes: Vec<Issued>,
    /// Operations registered other than rekeys.
    pub non_rekey: usize,
    /// Nodes that signed at least one rekey.
    pub rekeyers: BTreeSet<NodeId>,
    intern: BTreeMap<[u8; 32], Rc<Entry>>,
    memo: BTreeMap<([u8; 32], u32), Step>,
    dedup: bool,
    /// Calls of `Roster::merge` actually made.
    pub merges: u64,
    /// Merges answered from the memo.
    pub reused: u64,
}

impl Rosters {
    pub fn new(dedup: bool) -> Self {
        Rosters {
            ops: Vec::new(),
            ids: Vec::new(),
            by_id: BTreeMap::new(),
            revokes: Vec::new(),
            non_rekey: 0,
            rekeyers: BTreeSet::new(),
            intern: BTreeMap::new(),
            memo: BTreeMap::new(),
            dedup,
            merges: 0,
            reused: 0,
        }
    }

    /// Registers an operation made by some node; returns its number.
    pub fn add_op(&mut self, op: SignedOp) -> u32 {
        let id = op.id();
        match &op.body {
            OpBody::Rekey { node, .. } => {
                self.rekeyers.insert(*node);
            }
            OpBody::Revoke { node, by, .. } => {
                self.non_rekey += 1;
                self.revokes.push(Issued {
                    id,
                    by: *by,
                    node: *node,
                });
            }
            _ => self.non_rekey += 1,
        }
        self.ops.push(op);
        self.ids.push(id);
        let n = (self.ops.len() - 1) as u32;
        self.by_id.entry(id).or_insert(n);
        n
    }

    pub fn op(&self, i: u32) -> &SignedOp {
        &self.ops[i as usize]
    }

    pub fn id(&self, i: u32) -> OpId {
        self.ids[i as usize]
    }

    /// The most operations a replica can hold: every operation registered
    /// except rekeys, plus one rekey per node that rekeyed (a roster keeps
    /// only a node's highest). A flood of rekeys must not raise it.
    pub fn bound(&self) -> usize {
        self.non_rekey + self.rekeyers.len()
    }

    pub fn len_ops(&self) -> usize {
        self.ops.len()
    }

    /// Wraps a roster built at setup, holding operations `ops`.
    pub fn genesis(&mut self, roster: Roster, ops: Bits) -> Rc<Entry> {
        self.entry(roster, ops)
    }

    /// A replica for one more node: shared, or a private copy without dedup.
    pub fn replica(&self, e: &Rc<Entry>) -> Rc<Entry> {
        if self.dedup {
            e.clone()
        } else {
            Rc::new(Entry {
                roster: e.roster.clone(),
                digest: e.digest,
                ops: e.ops.clone(),
            })
        }
    }

    fn entry(&mut self, roster: Roster, ops: Bits) -> Rc<Entry> {
        let digest = roster.digest();
        if self.dedup {
            if let Some(e) = self.intern.get(&digest) {
                return e.clone();
            }
        }
        let e = Rc::new(Entry {
            roster,
            digest,
            ops,
        });
        if self.dedup {
            self.intern.insert(digest, e.clone());
        }
        e
    }

    /// Merges operation `i` into replica `e` with `Roster::merge`.
    pub fn merge(&mut self, e: &Rc<Entry>, i: u32) -> (Rc<Entry>, Outcome) {
        if e.ops.contains(i) {
            return (e.clone(), Outcome::Known);
        }
        if self.dedup {
            if let Some(step) = self.memo.get(&(e.digest, i)) {
                let hit = match step {
                    Step::New(d) => self.intern.get(d).map(|n| (n.clone(), Outcome::New)),
                    Step::Known => Some((e.clone(), Outcome::Known)),
                    Step::Rejected(why) => Some((e.clone(), Outcome::Rejected(why.clone()))),
                };
                if let Some(hit) = hit {
                    self.reused += 1;
                    return hit;
                }
            }
        }
        self.merges += 1;
        let mut r = e.roster.clone();
        let (out, step) = match r.merge(self.ops[i as usize].clone()) {
            Ok(Merged::New) => {
                // What the roster really holds after the merge: compaction
                // may have dropped operations the replica had, and a
                // replica that claimed to hold them would never take them
                // again when they count once more (a sync would skip them).
                let mut ops = Bits::default();
                for o in r.ops() {
                    if let Some(n) = self.by_id.get(&o.id()) {
                        ops.insert(*n);
                    }
                }
                let n = self.entry(r, ops);
                let d = n.digest;
                ((n, Outcome::New), Step::New(d))
            }
            Ok(Merged::Known) => ((e.clone(), Outcome::Known), Step::Known),
            Err(err) => (
                (e.clone(), Outcome::Rejected(err.to_string())),
                Step::Rejected(err.to_string()),
            ),
        };
        if self.dedup {
            self.memo.insert((e.digest, i), step);
        }
        out
    }

    /// Forgets replica states no node holds any more.
    pub fn sweep(&mut self) {
        self.intern.retain(|_, e| Rc::strong_count(e) > 1);
        let intern = &self.intern;
        self.memo.retain(|(d, _), _| intern.contains_key(d));
    }

    pub fn states(&self) -> usize {
        self.intern.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Bits;

    #[test]
    fn bits_minus() {
        let mut a = Bits::default();
        let mut b = Bits::default();
        for i in [0, 3, 64, 130] {
            a.insert(i);
        }
        b.insert(3);
        b.insert(130);
        assert_eq!(a.minus(&b), vec![0, 64]);
        assert!(a.contains(130) && !a.contains(131) && !b.contains(9999));
    }
}
