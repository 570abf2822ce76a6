//! Roster anti-entropy: when a round runs, what it asks, how an answer is
//! made, and the descent into differing parts of the roster.
//!
//! Gossip carries every change; anti-entropy repairs what gossip missed,
//! at a cost per round that does not grow with the mesh:
//! - a round is one digest of the whole roster and one of the asker's
//!   lock decision and recent approvals; equal digests get an empty answer;
//! - differing rosters are reconciled by descending a trie of op ids
//!   (`roster::reconcile`): sixteen digests or at most 32 operations per
//!   answer, and at most [`MAX_DESCENT`] such requests per round and peer
//!   (past it, the asker takes the whole roster once, as a hostile
//!   answerer could otherwise make it descend everywhere);
//! - admin messages come back only when the digests of the two sides'
//!   differ, and peer records only for the asker's gossip neighbours and
//!   the members it asked for (those it found no address for);
//! - a whole-roster round whose digest differs from the answerer's makes
//!   the answerer run a round of its own with the asker (unless one is
//!   under way), so what only the answerer holds flows back at once;
//! - rounds run every [`Timer::AntiEntropy`] tick (30 s) while something
//!   changed in the last [`ACTIVE_FOR`] (a merge added operations, an
//!   admin message was taken, a round found a difference), and every
//!   [`QUIET_ROUND`] otherwise: a quiet mesh of 5,000 repairs nothing most
//!   of the time, and a change makes every node sync quickly again.
//!
//! [`Timer::AntiEntropy`]: super::timers::Timer::AntiEntropy

use std::collections::{BTreeMap, BTreeSet};

use serde_bytes::ByteArray;
use sha2::{Digest, Sha256};

use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::proto::{AdminMsg, Request, Response, MAX_WANT_RECORDS};
use crate::roster::reconcile::{self, Answer};
use crate::roster::SignedOp;

use super::machine::Node;

/// How long after a change rounds run every tick.
pub const ACTIVE_FOR: Millis = 2 * 60_000;
/// The period of rounds in a quiet mesh.
pub const QUIET_ROUND: Millis = 120_000;
/// Descent requests per round and peer before the asker falls back to
/// taking the whole roster.
pub const MAX_DESCENT: u16 = 64;
/// An answerer whose digest differs runs a round of its own with the
/// asker unless it began one with it this recently.
const REVERSE_AFTER: Millis = 5_000;
/// A sync asking for peer records goes out at most this often.
const WANT_EVERY: Millis = 5_000;
/// Random connections drawn for a round's peer before the connected
/// members are listed (a draw that is a member's is uniform over them,
/// as the listing is; with half the connections members', 4 draws miss
/// 1 time in 16).
const MEMBER_DRAWS: usize = 4;

/// Anti-entropy's state in a node.
#[derive(Debug, Default)]
pub(super) struct Entropy {
    /// Rounds run every tick until then.
    active_until: Millis,
    /// The next round is due then.
    next_round: Millis,
    /// Per peer: when our last round with it began, and the descent
    /// requests left in it (none: over, or fell back to the whole roster).
    rounds: BTreeMap<NodeId, (Millis, Option<u16>)>,
    /// Wanted members we found no address for.
    lacking: BTreeSet<NodeId>,
    /// When a sync last asked for peer records.
    asked_records: Option<Millis>,
    /// Per peer: our sync requests to it still unanswered, and the
    /// operations their answers brought so far.
    gathering: BTreeMap<NodeId, Gathering>,
}

/// A round's answers, merged together once the last one is in. A node
/// that missed k operations gets them in up to k descent answers (one per
/// differing branch); merged one by one, each made a state no other node
/// ever held, and a whole-roster recompute (30 ms at 5,000 members). All
/// together they end where the mesh is, in the state the other nodes
/// already share.
#[derive(Debug, Default)]
struct Gathering {
    out: u32,
    ops: Vec<SignedOp>,
}

impl Entropy {
    /// Something changed: rounds run every tick for a while.
    pub(super) fn changed(&mut self, now: Millis) {
        self.active_until = self.active_until.max(now.saturating_add(ACTIVE_FOR));
    }

    /// A sync request to `p` went out.
    pub(super) fn sent(&mut self, p: NodeId) {
        self.gathering.entry(p).or_default().out += 1;
    }

    /// `p` has no address known to the driver: ask peers for its record.
    pub(super) fn lacking(&mut self, p: NodeId) {
        if self.lacking.len() < 4 * MAX_WANT_RECORDS {
            self.lacking.insert(p);
        }
    }

    /// `p` is reachable (connected) or no longer a member.
    pub(super) fn found(&mut self, p: &NodeId) {
        self.lacking.remove(p);
        self.rounds.remove(p);
    }
}

/// The digest of a set of admin messages, by their signatures (each
/// unique to its message), in signature order: two nodes that took the
/// same messages in another order (gossip floods them along different
/// paths) hold the same set, and must not ship it to each other every
/// round. (In arrival order, 72 % of a 1,000-node mesh's sync answers
/// carried admin messages the asker already held.)
pub(crate) fn admin_digest<'a>(msgs: impl IntoIterator<Item = &'a AdminMsg>) -> [u8; 32] {
    let mut sigs: Vec<&[u8; 64]> = msgs.into_iter().map(|m| &m.sig.0).collect();
    sigs.sort_unstable();
    let mut h = Sha256::new();
    for s in sigs {
        h.update(s);
    }
    h.finalize().into()
}

impl Node {
    /// The periodic round: with one random connected member, when due.
    pub(super) fn anti_entropy(&mut self, now: Millis) {
        if now < self.entropy.next_round {
            return;
        }
        let Some(p) = self.random_connected_member() else {
            return;
        };
        self.send_sync(p, now);
        let period = if now < self.entropy.active_until {
            super::timers::Timer::AntiEntropy
                .period()
                .unwrap_or(QUIET_ROUND)
        } else {
            QUIET_ROUND
        };
        // a little early, so the round falls on the tick that reaches it
        self.entropy.next_round = now.saturating_add(period).saturating_sub(1_000);
    }

    /// Asks `p` for what of the roster and the admin messages we lack
    /// (a whole-roster round).
    pub(super) fn send_sync(&mut self, p: NodeId, now: Millis) {
        if self.roster.mesh().is_none() {
            return;
        }
        let window = self.guardian.policy().approval_window;
        let admin = self.admin.sync_digest(now, window);
        let want = self.wanted_records();
        if !want.is_empty() {
            self.entropy.asked_records = Some(now);
        }
        self.entropy.rounds.insert(p, (now, Some(MAX_DESCENT)));
        // A round whose answers never all came (none is lost: every
        // request is answered or fails) does not hold its operations back
        // past the next round.
        if let Some(g) = self.entropy.gathering.get_mut(&p) {
            g.out = 0;
        }
        self.merge_gathered(p, now);
        let req = Request::Sync {
            digest: ByteArray::new(self.roster.digest()),
            prefix: vec![],
            admin: Some(ByteArray::new(admin)),
            want,
            all: false,
            admitted: vec![],
        };
        self.send_sync_request(p, req, vec![]);
    }

    /// `p` refused our whole-roster sync as a stranger's: we may have
    /// been orphaned (every member that admitted us revoked by the
    /// founder). Asks once more with our admission chain; the answer
    /// holds the founder's revocations of its signers, if any
    /// (`roster::orphans`), and merges like any sync answer.
    pub(super) fn prove_admission(&mut self, p: NodeId) {
        let me = self.id();
        if !self.is_member(&me) {
            return;
        }
        let admitted = self.roster.admission_chain(&me);
        if admitted.is_empty() {
            return;
        }
        let req = Request::Sync {
            digest: ByteArray::new(self.roster.digest()),
            prefix: vec![],
            admin: None,
            want: vec![],
            all: false,
            admitted,
        };
        self.send_sync_request(p, req, vec![]);
    }

    /// Members we want and found no address for, still members.
    fn wanted_records(&mut self) -> Vec<NodeId> {
        let roster = &self.roster;
        self.entropy.lacking.retain(|p| roster.is_active(p));
        self.entropy
            .lacking
            .iter()
            .take(MAX_WANT_RECORDS)
            .copied()
            .collect()
    }

    /// The driver found no address for `peer`: its record is asked from
    /// a connected member soon, not at the next round.
    pub(super) fn no_address(&mut self, peer: NodeId, now: Millis) {
        self.peers.no_address(&peer, now);
        if !self.is_member(&peer) || self.peers.is_connected(&peer) {
            return;
        }
        self.entropy.lacking(peer);
        let recent = self
            .entropy
            .asked_records
            .is_some_and(|t| now.saturating_sub(t) < WANT_EVERY);
        if recent {
            return;
        }
        if let Some(p) = self.random_connected_member() {
            self.send_sync(p, now);
        }
    }

    /// One connected member, chosen uniformly at random. This runs every
    /// round of every node, and nearly every connection is a member's:
    /// a random connection is drawn until it is one (one membership
    /// lookup in the roster, not one per connection), and only after
    /// [`MEMBER_DRAWS`] misses are the members listed.
    fn random_connected_member(&mut self) -> Option<NodeId> {
        let n = self.peers.connected_count();
        if n == 0 {
            return None;
        }
        for _ in 0..MEMBER_DRAWS {
            let i = self.random_index(n);
            let p = *self.peers.iter_connected().nth(i)?;
            if self.is_member(&p) {
                return Some(p);
            }
        }
        let members = self.connected_members();
        if members.is_empty() {
            return None;
        }
        let i = self.random_index(members.len());
        Some(members[i])
    }

    /// Answers a sync from member `from`.
    pub(super) fn answer_sync(
        &mut self,
        from: NodeId,
        digest: [u8; 32],
        prefix: Vec<u8>,
        admin: Option<[u8; 32]>,
        all: bool,
        now: Millis,
    ) -> Response {
        let mut ops = vec![];
        let mut children = vec![];
        if !reconcile::valid_prefix(&prefix) {
            return Response::Refused {
                reason: "sync prefix is not a path of op-id nibbles".into(),
            };
        }
        let differs = digest != self.roster.digest_under(&prefix);
        let ours_recent = self
            .entropy
            .rounds
            .get(&from)
            .is_some_and(|(t, _)| now.saturating_sub(*t) < REVERSE_AFTER);
        if prefix.is_empty() && differs && !all && !ours_recent {
            // The asker may hold what we lack as much as the reverse: a
            // round of our own with it, so repair flows both ways.
            self.entropy.changed(now);
            self.send_sync(from, now);
        }
        if all {
            ops = self.roster.ops_under(&prefix);
        } else if differs {
            match reconcile::answer(&self.roster, &prefix) {
                Answer::Ops(o) => ops = o,
                Answer::Children(c) => children = c.iter().map(|d| ByteArray::new(*d)).collect(),
            }
        }
        let root = prefix.is_empty();
        let mut msgs = vec![];
        if root {
            let window = self.guardian.policy().approval_window;
            if admin != Some(self.admin.sync_digest(now, window)) {
                msgs = self.admin.for_sync(now, window);
            }
        }
        Response::Roster {
            ops,
            admin: msgs,
            // the transport's signed peer records: the driver's
            records: vec![],
            held: if root { self.held_for(&from) } else { vec![] },
            children,
        }
    }

    /// A sync answer from `from` to a request under `prefix`.
    pub(super) fn synced(
        &mut self,
        from: NodeId,
        prefix: Vec<u8>,
        answer: SyncAnswer,
        now: Millis,
    ) {
        let SyncAnswer {
            ops,
            admin,
            held,
            children,
        } = answer;
        if prefix.is_empty() {
            self.guardian_says(from, !held.is_empty());
        }
        if !ops.is_empty() || !children.is_empty() || !admin.is_empty() {
            self.entropy.changed(now);
        }
        let received = ops.len();
        if received > 0 {
            self.entropy
                .gathering
                .entry(from)
                .or_default()
                .ops
                .extend(ops);
            self.note(super::notes::Note::Synced {
                peer: from,
                received,
            });
        }
        if !admin.is_empty() {
            // An approval may come from an admin this answer admits.
            self.merge_gathered(from, now);
        }
        for m in admin.into_iter().take(super::admin::MAX_RECENT_ADMIN) {
            self.apply_admin(m, now);
        }
        if !children.is_empty() {
            self.descend(from, &prefix, &children);
        }
        self.sync_answered(from, now);
    }

    /// One of our sync requests to `from` is answered (or failed): when
    /// it was the last outstanding, merge what the round brought.
    pub(super) fn sync_answered(&mut self, from: NodeId, now: Millis) {
        let Some(g) = self.entropy.gathering.get_mut(&from) else {
            return;
        };
        g.out = g.out.saturating_sub(1);
        if g.out == 0 {
            self.merge_gathered(from, now);
            self.entropy.gathering.remove(&from);
        }
    }

    /// Merges the operations gathered from `from` so far.
    fn merge_gathered(&mut self, from: NodeId, now: Millis) {
        let ops = match self.entropy.gathering.get_mut(&from) {
            Some(g) if !g.ops.is_empty() => std::mem::take(&mut g.ops),
            _ => return,
        };
        self.merge_fresh(ops, now);
    }

    /// Asks `from` about the children of `prefix` whose digests differ
    /// from ours, within the round's descent budget.
    fn descend(&mut self, from: NodeId, prefix: &[u8], children: &[ByteArray<32>]) {
        let theirs: Vec<[u8; 32]> = children.iter().map(|c| c.into_array()).collect();
        for (p, digest) in reconcile::differing(&self.roster, prefix, &theirs) {
            // No budget: this round's descent is over (or fell back).
            let Some((_, Some(left))) = self.entropy.rounds.get_mut(&from) else {
                return;
            };
            if *left == 0 {
                // Differences everywhere (or an answerer sending noise):
                // take the whole roster once, as before descents existed.
                self.entropy.rounds.entry(from).and_modify(|r| r.1 = None);
                let req = Request::Sync {
                    digest: ByteArray::new(self.roster.digest()),
                    prefix: vec![],
                    admin: None,
                    want: vec![],
                    all: true,
                    admitted: vec![],
                };
                self.send_sync_request(from, req, vec![]);
                return;
            }
            *left -= 1;
            let req = Request::Sync {
                digest: ByteArray::new(digest),
                prefix: p.clone(),
                admin: None,
                want: vec![],
                all: false,
                admitted: vec![],
            };
            self.send_sync_request(from, req, p);
        }
    }
}

/// The parts of a sync answer the node reads.
pub(super) struct SyncAnswer {
    pub ops: Vec<SignedOp>,
    pub admin: Vec<AdminMsg>,
    pub held: Vec<u64>,
    pub children: Vec<ByteArray<32>>,
}
