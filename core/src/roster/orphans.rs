//! Telling a node it was orphaned: out of the mesh only because the
//! founder revoked every member whose admissions reached it
//! (`keyward revoke --cascade` re-endorses nobody).
//!
//! Such a node is not revoked itself, and members drop every operation
//! its revoked admitters signed (its admission among them), so to them
//! it is a stranger: its syncs are refused and, left alone, it keeps its
//! old roster for good, in which the revoked admitter is still active
//! (it would honour that member's share requests and approvals). A
//! revoked node is answered with its own revocations
//! ([`RosterState::revocations_of`]); an orphan cannot be, since nothing
//! names it. So a node whose whole-roster sync is refused asks again
//! with its admission chain ([`RosterState::admission_chain`]), and the
//! answerer sends back the founder's revocations of the chain's signers
//! ([`RosterState::orphaning_revocations`]). Merged, they end its
//! membership by the same rule that ended it everywhere else. The ops
//! prove themselves: the orphan checks the founder's signature as for
//! any op, and the answerer reveals a revocation only to a node that
//! shows an admission the revoked member signed.

use std::collections::{BTreeSet, VecDeque};

use super::{OpBody, RosterState, SignedOp};
use crate::identity::NodeId;

/// Most admissions a node sends to prove its chain, and an answerer
/// reads: the member's own (the founder's and up to four endorsements)
/// and its admitters' and theirs, breadth first.
pub const MAX_CHAIN: usize = 16;

impl RosterState {
    /// The admissions of `node` and, breadth first, of their signers,
    /// up to [`MAX_CHAIN`]: what a node refused as a stranger shows to
    /// learn who of its admitters the founder revoked.
    pub fn admission_chain(&self, node: &NodeId) -> Vec<SignedOp> {
        let founder = self.founder();
        let mut out = Vec::new();
        let mut seen = BTreeSet::from([*node]);
        let mut queue = VecDeque::from([*node]);
        while let Some(n) = queue.pop_front() {
            for id in self.admits_of.get(&n).into_iter().flatten() {
                if out.len() == MAX_CHAIN {
                    return out;
                }
                let Some(op) = self.ops.get(id) else { continue };
                let by = op.body.signer();
                out.push(op.clone());
                if Some(by) != founder && seen.insert(by) {
                    queue.push_back(by);
                }
            }
        }
        out
    }

    /// The founder's revocations of the members that signed admissions
    /// in `chain` (sent by a stranger to this roster). Only
    /// admissions of this mesh signed by a member the founder revoked
    /// count, and each is checked (its signature) before it does, so a
    /// stranger learns of no revocation but its admitters', and makes
    /// this node verify a signature only for those.
    ///
    /// An honest node sends at most [`MAX_CHAIN`] admissions, all read
    /// off its own roster, where every one was verified when it came: a
    /// longer chain, or one admission that fails its signature, is a
    /// stranger making this node work for nothing, and is refused at
    /// once (the caller strikes the sender), so each such request costs
    /// one signature check at most.
    pub fn orphaning_revocations(&self, chain: &[SignedOp]) -> Result<Vec<SignedOp>, ChainRefused> {
        if chain.len() > MAX_CHAIN {
            return Err(ChainRefused::TooLong(chain.len()));
        }
        let (Some(founder), Some(mesh)) = (self.founder(), self.mesh()) else {
            return Ok(vec![]);
        };
        let Some(by_founder) = self.revokes_by.get(&founder) else {
            return Ok(vec![]);
        };
        let mut out: Vec<SignedOp> = Vec::new();
        let mut told = BTreeSet::new();
        for op in chain {
            let OpBody::Admit { by, .. } = &op.body else {
                continue;
            };
            let Some(revocation) = by_founder.get(by).and_then(|id| self.ops.get(id)) else {
                continue;
            };
            if op.body.mesh() != mesh || told.contains(by) {
                continue;
            }
            if op.clone().verify().is_err() {
                return Err(ChainRefused::Forged(*by));
            }
            told.insert(*by);
            out.push(revocation.clone());
        }
        Ok(out)
    }
}

/// Why a stranger's admission chain was refused outright: what no
/// honest node sends.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainRefused {
    #[error("an admission chain of {0} operations; at most {MAX_CHAIN} are read")]
    TooLong(usize),
    #[error("an admission in the chain, signed in the name of {0} (revoked by the founder), does not verify (forged)")]
    Forged(NodeId),
}
