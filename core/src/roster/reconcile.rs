//! Anti-entropy by descent of a trie of operation ids, so a round costs
//! the same whatever the size of the mesh.
//!
//! Two rosters agree when their digests do (one 32-byte hash: the usual
//! round). When they differ, the asker does not pull the whole roster:
//! the op ids (SHA-256 of each operation, so evenly spread) form a
//! 16-ary trie by nibbles, and the answerer returns the sixteen digests
//! under the asked prefix, or, when at most [`LEAF_OPS`] operations lie
//! under it, those operations. The asker descends only into the children
//! whose digests differ from its own. A few missed operations cost a few
//! round trips of at most 16 digests or 32 operations each (three levels
//! at 5,000 members), not the 5,000 operations of the whole roster.
//!
//! The digests are SHA-256 over the sorted ids under a prefix, not an XOR
//! or a sum: a hostile member grinding op ids cannot make two different
//! sets look equal. They are computed on demand, only when digests differ;
//! the root's sixteen, which every differing round asks for on both
//! sides, are kept with the roster state until its op set changes.

use sha2::{Digest, Sha256};

use super::{OpId, Roster, SignedOp};

/// Children per trie node: one per nibble.
pub const FANOUT: usize = 16;
/// At most this many operations under a prefix are sent as they are
/// rather than described by their children's digests.
pub const LEAF_OPS: usize = 32;
/// Deepest prefix asked for, in nibbles: 16^8 leaves is far beyond
/// [`super::MAX_OPS`], so a descent ends long before.
pub const MAX_DEPTH: usize = 8;

/// Whether `prefix` is a valid trie path: nibbles, at most [`MAX_DEPTH`].
pub fn valid_prefix(prefix: &[u8]) -> bool {
    prefix.len() <= MAX_DEPTH && prefix.iter().all(|n| (*n as usize) < FANOUT)
}

/// Whether op id `id` lies under the nibble path `prefix`.
fn under(id: &OpId, prefix: &[u8]) -> bool {
    prefix.iter().enumerate().all(|(i, n)| nibble(id, i) == *n)
}

fn nibble(id: &OpId, i: usize) -> u8 {
    let b = id[i / 2];
    if i.is_multiple_of(2) {
        b >> 4
    } else {
        b & 0x0f
    }
}

/// The smallest and largest ids under `prefix`.
fn bounds(prefix: &[u8]) -> (OpId, OpId) {
    let mut lo = [0u8; 32];
    let mut hi = [0xffu8; 32];
    for (i, n) in prefix.iter().enumerate() {
        let (l, h) = (&mut lo[i / 2], &mut hi[i / 2]);
        if i.is_multiple_of(2) {
            *l = n << 4;
            *h = (n << 4) | 0x0f;
        } else {
            *l |= n;
            *h = (*h & 0xf0) | n;
        }
    }
    (lo, hi)
}

impl Roster {
    /// Every operation (the founding one included) under `prefix`, in id
    /// order.
    fn under(&self, prefix: &[u8]) -> impl Iterator<Item = (OpId, &SignedOp)> {
        let (lo, hi) = bounds(prefix);
        let mut found = self
            .found
            .as_ref()
            .map(|f| (f.id(), f))
            .filter(|(id, _)| under(id, prefix));
        let mut rest = self.ops.range(lo..=hi).map(|(id, op)| (*id, op)).peekable();
        // the founding op, merged into its place by id
        std::iter::from_fn(move || match (&found, rest.peek()) {
            (Some((f, _)), Some((r, _))) if f > r => rest.next(),
            (Some(_), _) => found.take(),
            (None, _) => rest.next(),
        })
    }

    /// The digest of the operations under `prefix`; the whole roster's
    /// [`Roster::digest`] for the empty prefix.
    pub fn digest_under(&self, prefix: &[u8]) -> [u8; 32] {
        if prefix.is_empty() {
            return self.digest();
        }
        let mut h = Sha256::new();
        for (id, _) in self.under(prefix) {
            h.update(id);
        }
        h.finalize().into()
    }

    /// How many operations lie under `prefix`.
    pub fn count_under(&self, prefix: &[u8]) -> usize {
        self.under(prefix).count()
    }

    /// The operations under `prefix`, for an answer that sends them.
    pub fn ops_under(&self, prefix: &[u8]) -> Vec<SignedOp> {
        self.under(prefix).map(|(_, op)| op.clone()).collect()
    }

    /// The digests of the sixteen children of `prefix` (one pass; the
    /// root's are kept until the op set changes).
    pub fn children(&self, prefix: &[u8]) -> [[u8; 32]; FANOUT] {
        if prefix.is_empty() {
            return **self
                .top
                .get_or_init(|| Box::new(self.hash_children(prefix)));
        }
        self.hash_children(prefix)
    }

    fn hash_children(&self, prefix: &[u8]) -> [[u8; 32]; FANOUT] {
        let mut hs: [Sha256; FANOUT] = std::array::from_fn(|_| Sha256::new());
        let depth = prefix.len();
        for (id, _) in self.under(prefix) {
            hs[nibble(&id, depth) as usize].update(id);
        }
        hs.map(|h| h.finalize().into())
    }
}

/// What an answerer sends for a prefix whose digest differs from the
/// asker's.
pub enum Answer {
    /// The operations under the prefix (at most [`LEAF_OPS`], or the
    /// deepest level).
    Ops(Vec<SignedOp>),
    /// The children's digests.
    Children(Box<[[u8; 32]; FANOUT]>),
}

/// The answer for `prefix` (whose digest differs from the asker's).
pub fn answer(roster: &Roster, prefix: &[u8]) -> Answer {
    if prefix.len() >= MAX_DEPTH || roster.count_under(prefix) <= LEAF_OPS {
        Answer::Ops(roster.ops_under(prefix))
    } else {
        Answer::Children(Box::new(roster.children(prefix)))
    }
}

/// The children of `prefix` to descend into: those whose digest in the
/// answer differs from ours.
pub fn differing(roster: &Roster, prefix: &[u8], theirs: &[[u8; 32]]) -> Vec<(Vec<u8>, [u8; 32])> {
    if theirs.len() != FANOUT || prefix.len() >= MAX_DEPTH {
        return vec![];
    }
    let mine = roster.children(prefix);
    (0..FANOUT)
        .filter(|i| mine[*i] != theirs[*i])
        .map(|i| {
            let mut p = prefix.to_vec();
            p.push(i as u8);
            (p, mine[i])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;

    /// A 150-member mesh's operations, made once (signing is slow).
    fn ops() -> &'static [SignedOp] {
        static OPS: OnceLock<Vec<SignedOp>> = OnceLock::new();
        OPS.get_or_init(|| crate::testkit::mesh(150).roster.ops())
    }

    /// The founding op and those `mask` picks.
    fn roster_of(mask: &[bool]) -> Roster {
        let all = ops();
        let picked = all[1..]
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|(o, _)| o.clone());
        let mut r = Roster::default();
        r.merge_all(std::iter::once(all[0].clone()).chain(picked).collect());
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the two sides hold, descending from the root gives the
        /// asker every op the answerer holds, asking only where digests
        /// differ, each answer within its bound.
        #[test]
        fn a_descent_brings_every_op_the_answerer_holds(
            a in proptest::collection::vec(any::<bool>(), 149),
            b in proptest::collection::vec(any::<bool>(), 149),
        ) {
            let answerer = roster_of(&a);
            let mut asker = roster_of(&b);
            let mut queue = vec![(vec![], asker.digest_under(&[]))];
            let mut asked = 0;
            while let Some((prefix, digest)) = queue.pop() {
                asked += 1;
                prop_assert!(asked <= 1 + 16 * 150, "descent without end");
                if digest == answerer.digest_under(&prefix) {
                    continue;
                }
                match answer(&answerer, &prefix) {
                    Answer::Ops(o) => {
                        prop_assert!(o.len() <= LEAF_OPS || prefix.len() >= MAX_DEPTH);
                        asker.merge_all(o);
                    }
                    Answer::Children(c) => queue.extend(differing(&asker, &prefix, &c[..])),
                }
            }
            for op in answerer.ops() {
                prop_assert!(asker.knows(&op.id()));
            }
            if b.iter().zip(&a).all(|(b, a)| *a || !*b) {
                // the asker held nothing more: now the same roster
                prop_assert_eq!(asker.digest(), answerer.digest());
            }
        }
    }

    /// The root's digests are kept, and a merge that changes the op set
    /// drops them: after it they are those of the new set.
    #[test]
    fn the_kept_root_digests_follow_the_op_set() {
        let mut r = roster_of(&[true; 100]);
        let before = r.children(&[]);
        assert_eq!(before, r.hash_children(&[]));
        r.merge_all(ops()[101..].to_vec());
        assert_ne!(r.children(&[]), before);
        assert_eq!(r.children(&[]), r.hash_children(&[]));
        // a copy shares the state and its kept digests until it changes
        let mut copy = r.clone();
        copy.merge_all(ops()[..101].to_vec());
        assert_eq!(copy.children(&[]), r.children(&[]));
    }

    #[test]
    fn bounds_cover_exactly_the_prefix() {
        let (lo, hi) = bounds(&[0xa, 0x3, 0xf]);
        assert_eq!(&lo[..2], &[0xa3, 0xf0]);
        assert_eq!(&hi[..2], &[0xa3, 0xff]);
        assert!(lo[2..].iter().all(|b| *b == 0) && hi[2..].iter().all(|b| *b == 0xff));
        let mut id = [0u8; 32];
        id[0] = 0xa3;
        id[1] = 0xf7;
        assert!(under(&id, &[0xa, 0x3, 0xf]) && !under(&id, &[0xa, 0x3, 0xe]));
        assert!(valid_prefix(&[15; 8]) && !valid_prefix(&[16]) && !valid_prefix(&[0; 9]));
    }
}
