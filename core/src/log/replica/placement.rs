//! Which peers hold an origin's log: rendezvous hashing over the roster.
//!
//! Each eligible member gets the rank `SHA-256("keyward log replica\0" ||
//! origin || member)` and the R highest ranks are the replicas. Every node
//! computes the same set from the same roster with no agreement, a member
//! that leaves moves only the replicas it was (the others keep their rank),
//! and the logs of a mesh spread evenly. The domain string keeps this order
//! independent of `keyward bind`'s guardian order, so the peers holding a
//! node's shares are not by construction the ones holding its logs.
//!
//! Eligible: active guardians other than the origin. An auditor "reads
//! logs; holds no shares" (roster `Role`): it fetches from any node but is
//! not chosen to keep copies, since a machine the auditor runs need not be
//! up, and the design counts copies on the mesh's servers.

use sha2::{Digest, Sha256};

use crate::identity::NodeId;
use crate::roster::{Member, Role, Roster};

/// Default number of replicas of each origin's log.
pub const DEFAULT_REPLICAS: usize = 2;

/// Most replicas an origin may ask for: each costs the origin a connection
/// and a push of every segment.
pub const MAX_REPLICAS: usize = 16;

const DOMAIN: &[u8] = b"keyward log replica\0";

/// The rank of `member` for `origin`'s log (highest wins).
pub fn rank(origin: &NodeId, member: &NodeId) -> [u8; 32] {
    Sha256::new()
        .chain_update(DOMAIN)
        .chain_update(origin.0)
        .chain_update(member.0)
        .finalize()
        .into()
}

/// The replicas of `origin`'s log among `members`: the `r` eligible members
/// (active guardians, not the origin) of highest rank, highest first.
/// Fewer if fewer are eligible; `r` is capped at [`MAX_REPLICAS`].
pub fn replicas_for<'a>(
    origin: &NodeId,
    members: impl IntoIterator<Item = &'a Member>,
    r: usize,
) -> Vec<NodeId> {
    let mut ranked: Vec<([u8; 32], NodeId)> = members
        .into_iter()
        .filter(|m| m.role == Role::Guardian && m.id != *origin)
        .map(|m| (rank(origin, &m.id), m.id))
        .collect();
    // Ties are impossible in practice (SHA-256); the id breaks them anyway
    // so the order is total.
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked
        .into_iter()
        .take(r.min(MAX_REPLICAS))
        .map(|(_, id)| id)
        .collect()
}

/// [`replicas_for`] over a roster's active members.
pub fn replicas_in(roster: &Roster, origin: &NodeId, r: usize) -> Vec<NodeId> {
    replicas_for(origin, roster.members(), r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{BootKey, NodeKey};
    use proptest::prelude::*;

    fn member(seed: u8, role: Role) -> Member {
        Member {
            id: NodeKey::from_seed([seed; 32]).id(),
            boot: BootKey::from_seed([seed; 32]).public(),
            name: format!("m{seed}"),
            role,
        }
    }

    #[test]
    fn excludes_the_origin_and_auditors() {
        let ms: Vec<Member> = (1..=5)
            .map(|i| {
                member(
                    i,
                    if i == 3 {
                        Role::Auditor
                    } else {
                        Role::Guardian
                    },
                )
            })
            .collect();
        let origin = ms[0].id;
        let got = replicas_for(&origin, &ms, 10);
        assert_eq!(got.len(), 3);
        assert!(!got.contains(&origin));
        assert!(!got.contains(&ms[2].id));
        // deterministic, highest rank first
        assert_eq!(got, replicas_for(&origin, ms.iter().rev(), 10));
        let ranks: Vec<_> = got.iter().map(|m| rank(&origin, m)).collect();
        assert!(ranks.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(replicas_for(&origin, &ms, 2), got[..2].to_vec());
        assert!(replicas_for(&origin, &ms, 0).is_empty());
        assert_eq!(replicas_for(&origin, &ms, usize::MAX).len(), 3);
    }

    #[test]
    fn works_on_a_roster() {
        let m = crate::testkit::mesh(4);
        let origin = m.nodes[0].key.id();
        let got = replicas_in(&m.roster, &origin, 2);
        assert_eq!(got.len(), 2);
        assert!(!got.contains(&origin));
    }

    proptest! {
        #[test]
        fn leaving_moves_only_the_replicas_that_left(
            n in 2u8..40,
            r in 1usize..5,
            origin_pick: prop::sample::Index,
            leave_pick: prop::sample::Index,
        ) {
            let ms: Vec<Member> = (1..=n).map(|i| member(i, Role::Guardian)).collect();
            let origin = ms[origin_pick.index(ms.len())].id;
            let before = replicas_for(&origin, &ms, r);
            let leaver = ms[leave_pick.index(ms.len())].id;
            let rest: Vec<Member> = ms.iter().filter(|m| m.id != leaver).cloned().collect();
            let after = replicas_for(&origin, &rest, r);
            if leaver == origin || !before.contains(&leaver) {
                prop_assert_eq!(after, before);
            } else {
                // every replica that stayed is still a replica, and at most
                // one newcomer took the leaver's place
                for p in before.iter().filter(|p| **p != leaver) {
                    prop_assert!(after.contains(p));
                }
                let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
                prop_assert!(new.len() <= 1);
                prop_assert_eq!(after.len(), r.min(rest.len() - 1));
            }
        }
    }
}
