//! gossipsub's mesh, as keywardd configures it (`node/src/net.rs`: the
//! crate's defaults D = 6, D_lo = 5, D_hi = 12, gossip to 6 others,
//! heartbeat 500 ms): a node forwards a message it accepted only to its
//! mesh peers, not over every member connection; it floods only what it
//! publishes itself (`flood_publish`).
//!
//! The heartbeat's upkeep runs when it could change something instead of
//! every 500 ms (at 5,000 nodes that would be ten thousand events a
//! second): when a keywardd connection comes up or closes, when a node's
//! member set changes, when it subscribes. Grafts are symmetric, as a
//! GRAFT makes them: a peer whose mesh is full (D_hi) refuses with a
//! PRUNE. Control messages (GRAFT, PRUNE, and each heartbeat's IHAVE to
//! [`GOSSIP_LAZY`] peers outside the mesh while a message is in the
//! gossip window) are counted; IWANT repair is not modelled (the mesh is
//! tended at once here, so it has no hole to repair for longer than a
//! message's latency; roster anti-entropy repairs the rest).

use keyward_core::guardian::Millis;
use rand::seq::SliceRandom;

use super::*;

/// Peers a node grafts up to (gossipsub's D).
pub const MESH_N: usize = 6;
/// Fewer than this and the heartbeat grafts more (D_lo).
pub const MESH_LO: usize = 5;
/// More than this and the heartbeat prunes to [`MESH_N`] (D_hi); a graft
/// to a peer with this many is refused.
pub const MESH_HI: usize = 12;
/// Peers outside the mesh each heartbeat's IHAVE goes to (D_lazy).
pub const GOSSIP_LAZY: u64 = 6;
/// gossipsub's heartbeat.
pub const HEARTBEAT: Millis = 500;
/// Heartbeats a message id stays in the IHAVE window (`history_gossip`).
pub const GOSSIP_WINDOW: u64 = 3;
/// A GRAFT, PRUNE or IHAVE (a few message ids) in its frame.
pub const CONTROL_BYTES: u64 = 64 + summary::FRAME_BYTES;

impl World {
    /// Whether m's gossipsub may put p in its mesh: a connection between
    /// two running keywardd, p a member in m's view, p subscribed.
    pub(super) fn mesh_eligible(&self, m: u32, p: u32) -> bool {
        let (mm, pm) = (&self.machines[m as usize], &self.machines[p as usize]);
        if !mm.running() || !pm.running() || !pm.subscribed {
            return false;
        }
        self.net
            .conn(m, p)
            .is_some_and(|c| c.daemons && mm.members.contains(&c.ids[c.side(p)]))
    }

    /// The heartbeat's upkeep of m's mesh: peers no longer eligible leave
    /// it (a PRUNE to each that is still connected), eligible peers are
    /// grafted while it has fewer than [`MESH_LO`], and one over
    /// [`MESH_HI`] is pruned to [`MESH_N`].
    pub(super) fn tend_mesh(&mut self, m: u32) {
        if !self.machines[m as usize].running() || !self.machines[m as usize].subscribed {
            return;
        }
        let mesh = std::mem::take(&mut self.machines[m as usize].mesh);
        let (keep, gone): (Vec<u32>, Vec<u32>) =
            mesh.into_iter().partition(|p| self.mesh_eligible(m, *p));
        self.machines[m as usize].mesh = keep;
        for p in gone {
            self.unmesh(m, p);
            self.count_control(1);
        }
        if self.machines[m as usize].mesh.len() < MESH_LO {
            let mut candidates: Vec<u32> = self
                .net
                .peers(m)
                .into_iter()
                .filter(|p| {
                    !self.machines[m as usize].mesh.contains(p) && self.mesh_eligible(m, *p)
                })
                .collect();
            candidates.shuffle(&mut self.rng);
            for p in candidates {
                if self.machines[m as usize].mesh.len() >= MESH_N {
                    break;
                }
                self.count_control(1); // GRAFT
                if self.machines[p as usize].mesh.len() >= MESH_HI || !self.mesh_eligible(p, m) {
                    self.count_control(1); // PRUNE back
                    continue;
                }
                self.machines[m as usize].mesh.push(p);
                self.machines[p as usize].mesh.push(m);
            }
        }
        if self.machines[m as usize].mesh.len() > MESH_HI {
            let mut mesh = std::mem::take(&mut self.machines[m as usize].mesh);
            mesh.shuffle(&mut self.rng);
            for p in mesh.split_off(MESH_N) {
                self.unmesh(m, p);
                self.count_control(1);
            }
            self.machines[m as usize].mesh = mesh;
        }
        debug_assert!(self.mesh_is_sound(m), "n{m}'s gossipsub mesh");
    }

    /// m's mesh as GRAFT and PRUNE keep it: within [`MESH_HI`], no peer
    /// twice, each peer connected and holding m in its own mesh.
    fn mesh_is_sound(&self, m: u32) -> bool {
        let mesh = &self.machines[m as usize].mesh;
        mesh.len() <= MESH_HI
            && mesh.iter().all(|p| {
                mesh.iter().filter(|q| *q == p).count() == 1
                    && self.net.conn(m, *p).is_some()
                    && self.machines[*p as usize].mesh.contains(&m)
            })
    }

    /// Takes a and b out of each other's mesh.
    pub(super) fn unmesh(&mut self, a: u32, b: u32) {
        self.machines[a as usize].mesh.retain(|p| *p != b);
        self.machines[b as usize].mesh.retain(|p| *p != a);
    }

    /// m's heartbeats send IHAVE to [`GOSSIP_LAZY`] peers outside its
    /// mesh while a message it got now is in the gossip window; counts
    /// the heartbeats this message adds to those already counted.
    pub(super) fn count_ihave(&mut self, m: u32) {
        let slot = self.now() / HEARTBEAT;
        let mm = &mut self.machines[m as usize];
        let outside = (self.net.peer_count(m) as u64).saturating_sub(mm.mesh.len() as u64);
        let lazy = GOSSIP_LAZY.min(outside);
        let until = slot + GOSSIP_WINDOW;
        let new = until.saturating_sub(mm.ihave_until.max(slot));
        mm.ihave_until = until.max(mm.ihave_until);
        self.count_control(new * lazy);
    }

    /// Counts n gossipsub control messages.
    fn count_control(&mut self, n: u64) {
        self.net.traffic.control += n;
        self.net.traffic.bytes += n * CONTROL_BYTES;
    }
}
