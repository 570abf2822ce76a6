//! The binding plan: which guardians a disk's shares go to, how many are
//! needed (T), which epoch the new binding gets, and which shares to drop
//! afterwards. `keyward bind`/`rebind` (cli/src/bind.rs) and the simulator
//! decide this here, the same way; the disk, the passphrase and the
//! control socket stay with them.
//!
//! The product binds only when an admin asks: it never rebinds by itself
//! (after a guardian is revoked, say) and never retries a deposit a
//! guardian did not acknowledge; the admin runs the command again.

use crate::control::{GuardianResults, Status};
use crate::roster::Role;

/// Shares spread when `--shares` is not given: at most this many.
pub const DEFAULT_SHARES: usize = 5;

/// A guardian the disk's shares could go to, as `keyward status` lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    /// This node could not reach it lately (sorted last).
    pub down: bool,
    /// This node knows no address of it yet (sorted after those it
    /// does): a member that joined a moment ago reaches a node of a big
    /// mesh, which keeps few connections, only with the next sync's peer
    /// records. Its share could not be deposited, nor could a token list
    /// where the initramfs finds it. Always set in the simulator, whose
    /// status has no transport to fill addresses, so there it orders
    /// nothing.
    pub unaddressed: bool,
    /// Its place in this owner's order (rendezvous hashing: SHA-256 of the
    /// owner's and the candidate's ids): every owner gets its own
    /// pseudo-random order, so the shares of a mesh spread evenly (no
    /// guardian becomes everyone's, which would bound nothing), the same
    /// owner rebinding gets the same guardians, and guardian sets do not
    /// follow the gossip rings (after a whole-mesh outage, owners whose
    /// guardians sit together would wait on each other).
    pub rank: [u8; 32],
    pub name: String,
    /// Its node id, as status prints it.
    pub id: String,
    /// Addresses this node reached it at (for the token).
    pub addrs: Vec<String>,
}

/// What a bind will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindPlan {
    pub guardians: Vec<Candidate>,
    pub threshold: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{asked} shares asked but the mesh has {have} other guardians; invite more nodes or lower --shares")]
    TooFewGuardians { asked: usize, have: usize },
    #[error("--threshold {t} must be between 1 and --shares {n}")]
    BadThreshold { t: usize, n: usize },
    #[error("epoch counter exhausted")]
    EpochExhausted,
}

/// The candidates in a node's status: active guardians other than the
/// node itself, those it could reach first, then those it knows an
/// address of, then in the owner's own pseudo-random order
/// ([`Candidate::rank`]).
pub fn candidates(status: &Status) -> Vec<Candidate> {
    use sha2::{Digest, Sha256};
    let me = &status.node.id;
    let mut c: Vec<Candidate> = status
        .members
        .iter()
        .filter(|m| m.role == Role::Guardian && &m.id != me)
        .map(|m| Candidate {
            down: m.unreachable,
            unaddressed: m.addrs.is_empty(),
            rank: Sha256::new()
                .chain_update(b"keyward bind rank\0")
                .chain_update(me.as_bytes())
                .chain_update([0])
                .chain_update(m.id.as_bytes())
                .finalize()
                .into(),
            name: m.name.clone(),
            id: m.id.clone(),
            addrs: m.addrs.clone(),
        })
        .collect();
    c.sort();
    c
}

/// The first `shares` candidates (default: up to [`DEFAULT_SHARES`]) and
/// T (default: a majority of them).
pub fn plan(
    cands: &[Candidate],
    shares: Option<usize>,
    threshold: Option<usize>,
) -> Result<BindPlan, PlanError> {
    let n = shares.unwrap_or(cands.len().min(DEFAULT_SHARES));
    if n == 0 || n > cands.len() {
        return Err(PlanError::TooFewGuardians {
            asked: n,
            have: cands.len(),
        });
    }
    let t = threshold.unwrap_or(n / 2 + 1);
    if t == 0 || t > n {
        return Err(PlanError::BadThreshold { t, n });
    }
    Ok(BindPlan {
        guardians: cands[..n].to_vec(),
        threshold: t,
    })
}

/// The new binding's epoch: above every epoch this node used before
/// (`last`), the device's old token's and those of its other bound disks,
/// so guardians, which key a node's envelopes by epoch, never mix two
/// bindings up.
pub fn next_epoch(
    last: u64,
    old: Option<u64>,
    others: impl IntoIterator<Item = u64>,
) -> Result<u64, PlanError> {
    others
        .into_iter()
        .fold(last.max(old.unwrap_or(0)), u64::max)
        .checked_add(1)
        .ok_or(PlanError::EpochExhausted)
}

/// After the deposit: None if every guardian of the plan acknowledged
/// (the binding goes ahead), else the guardians that did store a share of
/// this now abandoned epoch and should drop it.
pub fn abandoned(plan: &BindPlan, results: &GuardianResults) -> Option<Vec<String>> {
    if plan.guardians.iter().all(|g| results.acked(&g.id)) {
        return None;
    }
    Some(
        plan.guardians
            .iter()
            .filter(|g| results.acked(&g.id))
            .map(|g| g.id.clone())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(down: bool, name: &str) -> Candidate {
        Candidate {
            down,
            unaddressed: false,
            // in these tests the rank follows the name
            rank: [name.as_bytes()[0]; 32],
            name: name.into(),
            id: format!("id-{name}"),
            addrs: vec![],
        }
    }

    #[test]
    fn reachable_first_then_by_rank_majority_threshold() {
        let mut v = vec![c(true, "a"), c(false, "d"), c(false, "b"), c(true, "c")];
        v.sort();
        let p = plan(&v, None, None).unwrap();
        let names: Vec<&str> = p.guardians.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["b", "d", "a", "c"]);
        assert_eq!(p.threshold, 3);
        assert_eq!(plan(&v, Some(2), None).unwrap().threshold, 2);
        assert_eq!(
            plan(&v, Some(5), None),
            Err(PlanError::TooFewGuardians { asked: 5, have: 4 })
        );
        assert_eq!(
            plan(&v, Some(2), Some(3)),
            Err(PlanError::BadThreshold { t: 3, n: 2 })
        );
    }

    #[test]
    fn epochs_only_go_up() {
        assert_eq!(next_epoch(0, None, []), Ok(1));
        assert_eq!(next_epoch(3, Some(7), [5]), Ok(8));
        assert_eq!(next_epoch(9, Some(2), [4, 11]), Ok(12));
        assert_eq!(
            next_epoch(u64::MAX, None, []),
            Err(PlanError::EpochExhausted)
        );
    }

    #[test]
    fn a_deposit_not_acknowledged_by_all_is_abandoned() {
        use crate::control::GuardianAnswer;
        let p = plan(&[c(false, "a"), c(false, "b")], None, None).unwrap();
        let mut r = GuardianResults {
            results: Default::default(),
        };
        r.results.insert("id-a".into(), GuardianAnswer::Ok);
        assert_eq!(abandoned(&p, &r), Some(vec!["id-a".to_string()]));
        r.results.insert("id-b".into(), GuardianAnswer::Ok);
        assert_eq!(abandoned(&p, &r), None);
    }
}
