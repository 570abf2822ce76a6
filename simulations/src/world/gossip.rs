//! Gossip, as gossipsub spreads it: a node's own message flooded over its
//! member connections (`flood_publish`), others' forwarded over its mesh
//! (`mesh`) once its verdict accepts them; duplicates suppressed per
//! node.

use super::*;

impl World {
    pub(super) fn publish(&mut self, m: u32, msg: Gossip) {
        let id = self.gossip.len() as u64;
        self.gossip_bytes
            .push(summary::wire_bytes(&msg) + summary::GOSSIP_ENVELOPE_BYTES);
        self.gossip.push((m, msg));
        self.machines[m as usize].seen.insert(id as usize);
        self.count_ihave(m);
        let mut peers = self.net.peers(m);
        peers.retain(|p| self.mesh_eligible(m, *p));
        self.send_gossip(m, id, None, peers);
    }

    /// Sends gossip message `id` from m to `peers` (each one m's gossipsub
    /// may send to, [`World::mesh_eligible`]: its mesh is tended as that
    /// changes), except where it came from and its author.
    fn send_gossip(&mut self, m: u32, id: u64, via: Option<u32>, peers: Vec<u32>) {
        let author = self.gossip[id as usize].0;
        for p in peers {
            debug_assert!(self.mesh_eligible(m, p), "n{m} gossips to n{p}");
            if Some(p) == via || p == author {
                continue;
            }
            let Some(c) = self.net.conn(m, p) else {
                continue;
            };
            let conn = c.id;
            self.net.traffic.gossip += 1;
            self.net.traffic.bytes += self.gossip_bytes[id as usize];
            let lat = self.latency();
            self.q.after(
                lat,
                Ev::Deliver {
                    conn,
                    to: p,
                    wire: Box::new(Wire::Gossip { msg: id, via: m }),
                },
            );
        }
    }

    pub(super) fn gossip_in(&mut self, to: u32, via: u32, msg: u64) {
        let mm = &self.machines[to as usize];
        if !mm.running() || !mm.subscribed || !mm.members.contains(&self.machines[via as usize].id)
        {
            return;
        }
        if !self.machines[to as usize].seen.insert(msg as usize) {
            return;
        }
        let (author, g) = self.gossip[msg as usize].clone();
        if let Gossip::Admin(a) = &g {
            self.told_admin(to, a);
        }
        if let Gossip::Admin(a) = &g {
            if let keyward_core::proto::AdminKind::Approve { owner }
            | keyward_core::proto::AdminKind::Deny { owner } = &a.body.kind
            {
                if let Some(o) = self.ids.get(owner).copied() {
                    self.feed_pings(to, o);
                }
            }
        }
        self.feed_pings(to, via);
        let gid = self.fresh();
        self.machines[to as usize]
            .verdicts
            .insert(gid, (msg, author, via));
        let (via_id, author_id) = (
            self.machines[via as usize].id,
            self.machines[author as usize].id,
        );
        self.input(
            to,
            Input::Gossip {
                id: GossipId(gid),
                via: via_id,
                author: Some(author_id),
                msg: Ok(g),
            },
        );
    }

    pub(super) fn verdict(&mut self, m: u32, id: GossipId, accept: bool) {
        let Some((msg, _, via)) = self.machines[m as usize].verdicts.remove(&id.0) else {
            return;
        };
        if accept {
            self.count_ihave(m);
            let mesh = self.machines[m as usize].mesh.clone();
            self.send_gossip(m, msg, Some(via), mesh);
        }
    }
}
