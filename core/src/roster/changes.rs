//! Who joined and who left between two views of the membership.
//!
//! Computed once per merge by the roster (and shared by every node that
//! takes the merge from the memo) instead of by each node: a node that
//! walked its 5,000 members after every merge cost the simulator's
//! 5,000 nodes 25 million steps per roster operation.

use std::collections::BTreeMap;

use crate::identity::NodeId;

/// `(joined, left)`: ids active in `now` only, and in `was` only, each
/// in id order. One walk over both maps (both are in id order).
pub(super) fn changed_members<V>(
    was: &BTreeMap<NodeId, V>,
    now: &BTreeMap<NodeId, V>,
) -> (Vec<NodeId>, Vec<NodeId>) {
    let (mut joined, mut left) = (vec![], vec![]);
    let mut old = was.keys().peekable();
    for id in now.keys() {
        while let Some(o) = old.next_if(|o| *o < id) {
            left.push(*o);
        }
        if old.next_if(|o| *o == id).is_none() {
            joined.push(*id);
        }
    }
    left.extend(old.copied());
    (joined, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeKey;

    fn ids(n: u8) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = (1..=n).map(|s| NodeKey::from_seed([s; 32]).id()).collect();
        v.sort();
        v
    }

    fn map(ids: &[NodeId]) -> BTreeMap<NodeId, ()> {
        ids.iter().map(|i| (*i, ())).collect()
    }

    #[test]
    fn walks_both_sets_once() {
        let s = ids(6);
        let was = map(&s[..4]);
        // now: drop the first and third of `was`, add the last two
        let now = map(&[s[1], s[3], s[4], s[5]]);
        assert_eq!(
            changed_members(&was, &now),
            (vec![s[4], s[5]], vec![s[0], s[2]])
        );
        // nothing changed, everything went, everything is new
        let every = map(&s);
        assert_eq!(changed_members(&every, &every), (vec![], vec![]));
        assert_eq!(
            changed_members(&every, &BTreeMap::new()),
            (vec![], s.clone())
        );
        assert_eq!(changed_members(&BTreeMap::new(), &every), (s, vec![]));
    }
}
