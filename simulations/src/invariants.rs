//! Named invariants. Each check is counted; the first failure stops the run
//! and is reported with the seed, the event number and the last events
//! touching the nodes involved.

use std::collections::BTreeMap;

use keyward_core::guardian::Millis;

/// A share is released only to a node that is in the guardian's roster
/// and was really admitted (never to a stranger).
pub const RELEASE_MEMBER: &str = "release.member";
/// ... that the guardian does not know as revoked.
pub const RELEASE_NOT_REVOKED: &str = "release.not-revoked";
/// ... while the guardian has not been told of a lockdown.
pub const RELEASE_NO_LOCKDOWN: &str = "release.no-lockdown";
/// ... that proved liveness to this guardian within timeout, or was
/// approved by an admin, or got a release within extended_timeout.
pub const RELEASE_ALIVE: &str = "release.alive-within-timeout";
/// What `combine` gives back is the disk key of the token's epoch.
pub const UNLOCK_KEY: &str = "unlock.key-correct";
/// A rebooting node with a quorum of guardians that would release (alive
/// within timeout, reachable, up, no lockdown) is unlocked within a bound.
pub const UNLOCK_QUORUM: &str = "unlock.reboot-with-quorum";
/// A seized server (off longer than timeout) never unlocks by itself.
pub const SEIZED_LOCKED: &str = "seizure.stays-locked";
/// After a whole-mesh outage longer than timeout, no node unlocks with
/// shares before an admin steps in.
pub const OUTAGE_NO_SELF: &str = "outage.no-self-unlock";
/// A replica that holds a revocation never counts the revoked node (or
/// anyone it admitted later) as active: it never regains membership.
pub const REVOKED_OUT: &str = "roster.revoked-stays-out";
/// Once the network has healed and roster changes have died down, every
/// node that has been running for a while holds the same roster.
pub const CONVERGE: &str = "roster.converge";

/// No new share goes to a seized server (off longer than timeout, then
/// booted by a thief) unless the releasing guardian holds an approval of
/// it issued after the seizure by an honest admin, or by a hostile member
/// (or a member it minted) whose revocation by the founder that guardian's
/// roster does not hold yet. Judged at the first release of each (guardian,
/// owner, epoch) after the seizure, by honest guardians; see `hostile`.
pub const RELEASE_HONEST_APPROVAL: &str = "release.honest-approval";
/// Every revocation signed by the founder is in effect on every replica
/// that holds it (its target is not active there); once a replica holds
/// the founder's revocations of the hostile members, every honest admin's
/// revocation it holds is in effect too.
pub const REVOCATION_TAKES_EFFECT: &str = "revocation.takes-effect";
/// A member minted by an auditor is never active on any replica.
pub const MINTED_NEVER_ACTIVE: &str = "hostile.minted-never-active";
/// On a replica that holds the founder's revocations of the hostile
/// members: they and every member they minted (chains included) are out,
/// no honest member is revoked by them, and nothing they signed is kept.
pub const HOSTILE_OUT: &str = "hostile.out-after-revocation";
/// Once the network has been whole for 30 min and the founder's
/// revocation of the hostile members is 30 min old, no honest machine
/// that has run for 30 min and counts itself a member counts a hostile
/// member as active: the revocation reached every member, and a machine
/// that was out with them (admitted only through them, dropped by
/// `revoke --cascade`) learnt it is out (`roster::orphans`).
pub const HOSTILE_REACHED: &str = "hostile.revocation-reaches-members";
/// A replica never holds more operations than were issued, counting a
/// node's rekeys once (a flood of rekeys leaves one).
pub const ROSTER_BOUNDED: &str = "roster.bounded";

/// Logs: an origin told that R replicas hold its log up to a size has it
/// on R other machines' disks, committed (`world::logs`).
pub const LOG_REPLICATED: &str = "logs.replicated-on-disk";
/// Logs: a witness's committed state never moves an origin to another
/// history: no honest witness cosigns two inconsistent checkpoints.
pub const LOG_WITNESS: &str = "logs.witness-one-history";
/// Logs: an origin restored from an old backup (its log rolled back, then
/// forked) is reported with evidence by an honest node.
pub const LOG_REPORTED: &str = "logs.rollback-reported";

/// Strict: the extended timeout is not renewed by a release that was
/// itself granted only by the extended timeout.
pub const STRICT_EXT_CHAIN: &str = "strict.extended-chain";
/// Strict: a copied boot key gets nothing while its node runs (threat 7).
pub const STRICT_OWNER_UP: &str = "strict.owner-up";
/// Strict: with approval_delay, a release comes at least that long after
/// the first request of the same boot.
pub const STRICT_DELAY: &str = "strict.approval-delay";

/// A node's keywardd connections stay within its overlay (guardians,
/// wards, gossip neighbours) plus a few transient ones
/// (`world::bound::TRANSIENT`).
pub const CONN_BOUND: &str = "net.connection-bound";
/// A lockdown reaches every member that was running when it was set and
/// kept running, on the admin's side of any partition, before its lift.
pub const LOCK_REACHES_ALL: &str = "lockdown.reaches-all";

pub const ALL: [&str; 24] = [
    CONN_BOUND,
    LOCK_REACHES_ALL,
    RELEASE_MEMBER,
    RELEASE_NOT_REVOKED,
    RELEASE_NO_LOCKDOWN,
    RELEASE_ALIVE,
    UNLOCK_KEY,
    UNLOCK_QUORUM,
    SEIZED_LOCKED,
    OUTAGE_NO_SELF,
    REVOKED_OUT,
    CONVERGE,
    RELEASE_HONEST_APPROVAL,
    REVOCATION_TAKES_EFFECT,
    MINTED_NEVER_ACTIVE,
    HOSTILE_OUT,
    HOSTILE_REACHED,
    ROSTER_BOUNDED,
    LOG_REPLICATED,
    LOG_WITNESS,
    LOG_REPORTED,
    STRICT_EXT_CHAIN,
    STRICT_OWNER_UP,
    STRICT_DELAY,
];

#[derive(Clone, Debug)]
pub struct Violation {
    pub name: &'static str,
    pub detail: String,
    /// Nodes involved, to filter the trace.
    pub nodes: Vec<u32>,
    pub event: u64,
    pub at: Millis,
}

#[derive(Default)]
pub struct Checks {
    pub runs: BTreeMap<&'static str, u64>,
    pub failed: Option<Violation>,
}

impl Checks {
    pub fn check(
        &mut self,
        name: &'static str,
        ok: bool,
        nodes: &[u32],
        detail: impl FnOnce() -> String,
    ) {
        *self.runs.entry(name).or_default() += 1;
        if !ok && self.failed.is_none() {
            self.failed = Some(Violation {
                name,
                detail: detail(),
                nodes: nodes.to_vec(),
                event: 0,
                at: 0,
            });
        }
    }

    /// Counts `n` passed evaluations of `name` at once: the per-event
    /// checks run many times per event and must stay cheap.
    pub fn passed(&mut self, name: &'static str, n: u64) {
        if n > 0 {
            *self.runs.entry(name).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.runs.values().sum()
    }
}
