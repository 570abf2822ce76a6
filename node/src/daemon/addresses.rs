//! The daemon's side of the address book: which event teaches what, the
//! signed peer records carried by sync, and getting addresses onto disk
//! before they are needed (a whole-mesh power cut a second after the mesh
//! formed must still leave every node someone to dial).

use std::collections::BTreeSet;

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use serde_bytes::ByteBuf;
use tracing::warn;

use super::{now_ms, Daemon};
use crate::addr_book::{self, AddrBook, Change, Entry, SYNC_RECORDS_BUDGET};
use crate::codec::Wire;
use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::peer::{FromPeerId, Libp2pKey, PeerIds};
use crate::store::{Batch, Store, StoreError, TreeName};
use keyward_core::node::Input;

/// Non-members whose addresses are kept (joiners, mDNS neighbours).
const MAX_STRANGERS: usize = 64;

/// The address lists of the previous version (`liveness` tree): read
/// once, moved to the `peers` tree as claimed long ago.
#[derive(serde::Serialize, serde::Deserialize)]
struct LegacyAddrs {
    addrs: Vec<String>,
}

impl Wire for LegacyAddrs {
    const KIND: &'static str = "peer";
    const MAX: usize = 4096;
}

/// Reads the address book, moving a previous version's lists into it.
pub(super) fn load(store: &Store, max_age: Millis) -> Result<AddrBook, StoreError> {
    let mut book = AddrBook::new(max_age);
    let peers = store.tree::<Entry>(TreeName::Peers)?;
    for (k, e) in peers.all()? {
        if let Ok(p) = PeerId::from_bytes(&k) {
            book.restore(p, e);
        }
    }
    let legacy = store.tree::<LegacyAddrs>(TreeName::Liveness)?;
    let old = match legacy.all() {
        Ok(old) => old,
        Err(e) => {
            warn!("old peer address list unreadable, ignored: {e}");
            vec![]
        }
    };
    if !old.is_empty() {
        for (k, rec) in &old {
            if let Ok(p) = PeerId::from_bytes(k) {
                let addrs: Vec<Multiaddr> =
                    rec.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                book.claimed(p, &addrs, 0);
                if let Some(e) = book.get(&p) {
                    peers.put(k, e)?;
                }
            }
        }
        store.flush()?;
        for (k, _) in &old {
            legacy.remove(k)?;
        }
        store.flush()?;
    }
    Ok(book)
}

impl Daemon {
    /// Whether to keep addresses of `p`: always for members and peers
    /// already known, for a bounded number of strangers otherwise.
    pub(super) fn room_for(&self, p: &PeerId) -> bool {
        if self.book.contains(p) || self.is_member_peer(p) {
            return true;
        }
        self.book
            .peers()
            .filter(|k| !self.is_member_peer(k))
            .count()
            < MAX_STRANGERS
    }

    fn note(&mut self, p: PeerId, c: Change) {
        match c {
            Change::Content => {
                self.peers_dirty.insert(p);
            }
            Change::Times => {
                self.peers_stale.insert(p);
            }
            Change::None => {}
        }
    }

    /// An admin gave this address (bootstrap, invite): kept for good.
    pub(super) fn pin_addr(&mut self, p: PeerId, a: &Multiaddr) {
        let c = self.book.pin(p, a);
        self.note(p, c);
    }

    /// A connection we dialled to `a` authenticated `p`.
    pub(super) fn on_reached(&mut self, p: PeerId, conn: ConnectionId, a: Multiaddr) {
        self.dialled.insert(conn, a.clone());
        if self.room_for(&p) {
            let c = self.book.reached(p, &a, now_ms());
            self.note(p, c);
        }
    }

    /// `p` listed its listen addresses on its own connection (identify).
    pub(super) fn on_identify(&mut self, p: PeerId, conn: ConnectionId, addrs: &[Multiaddr]) {
        if p == self.peer_id() || !self.room_for(&p) {
            return;
        }
        let now = now_ms();
        let mut c = self.book.claimed(p, addrs, now);
        // It answers on the connection we dialled: that address works.
        if let Some(a) = self.dialled.get(&conn).cloned() {
            c = c.max(self.book.reached(p, &a, now));
        }
        self.note(p, c);
    }

    /// Forgets strangers we are not connected to and no admin named.
    pub(super) fn forget_strangers(&mut self) {
        let gone: BTreeSet<PeerId> = self
            .book
            .peers()
            .filter(|p| {
                !self.is_member_peer(p)
                    && !NodeId::from_peer_id(p).is_some_and(|n| self.node.is_connected(&n))
                    && self.book.get(p).is_none_or(|e| e.pinned.is_empty())
            })
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        self.book.retain(|p, _| !gone.contains(p));
        self.peers_dirty.extend(gone);
    }

    /// Writes the entries whose addresses changed, in one flushed batch;
    /// with `all`, also those that were only confirmed again. Only members
    /// and peers an admin named are written.
    pub(super) fn persist_addrs(&mut self, all: bool) {
        if self.peers_dirty.is_empty() && (!all || self.peers_stale.is_empty()) {
            return;
        }
        let mut peers = std::mem::take(&mut self.peers_dirty);
        if all {
            peers.append(&mut self.peers_stale);
        } else {
            self.peers_stale.retain(|p| !peers.contains(p));
        }
        let mut b = Batch::default();
        for p in peers {
            let key = p.to_bytes();
            match self.book.get(&p) {
                None => b.remove(TreeName::Peers, &key),
                Some(e) if self.is_member_peer(&p) || !e.pinned.is_empty() => {
                    if let Err(err) = b.put(TreeName::Peers, &key, e) {
                        warn!(peer = %p, "addresses not persisted: {err}");
                    }
                }
                Some(_) => b.remove(TreeName::Peers, &key),
            }
        }
        if let Err(e) = self.store.commit(b) {
            warn!("persisting peer addresses: {e}");
        }
    }

    /// Signs our listen addresses again when they changed. The record's
    /// sequence number is the clock in seconds, so a new one waits for the
    /// next second: others keep only a strictly newer record.
    pub(super) fn refresh_own_record(&mut self) {
        let now_s = now_ms() / 1000;
        let due = match &self.own_record {
            None => true,
            Some(r) => self.own_record_stale && now_s > r.seq,
        };
        if !due || self.listen.is_empty() {
            return;
        }
        match addr_book::sign_record(&self.key.libp2p_keypair(), &self.listen) {
            Ok(r) => {
                self.own_record = Some(r);
                self.own_record_stale = false;
            }
            Err(e) => warn!("signing our peer record: {e}"),
        }
    }

    /// Signed peer records for a whole-roster sync answer: ours, those of
    /// the asker's gossip neighbours (so a node that joined through one
    /// bootstrap address can dial them, however big the mesh), those of
    /// the members it asked for (wanted peers it found no address for),
    /// then the other members' newest we hold, each checked when it came
    /// in, within a budget. The others are still sent because `keyward
    /// bind` picks guardians among all members and deposits at once: it
    /// needs their addresses before it asks (until a bind asks for the
    /// records of the guardians it picked, this part grows with the mesh
    /// up to the budget).
    pub(super) fn sync_records(&self, asker: &NodeId, want: &[NodeId]) -> Vec<ByteBuf> {
        let me = self.peer_id();
        let roster = self.node.roster();
        let ids = roster.member_ids();
        let theirs = roster.member_rings().neighbours(asker, &Default::default());
        let asked: Vec<NodeId> = want
            .iter()
            .filter(|w| roster.is_active(w) && !theirs.contains(w))
            .copied()
            .collect();
        let members = theirs
            .iter()
            .chain(asked.iter())
            .chain(
                ids.iter()
                    .filter(|i| !theirs.contains(i) && !asked.contains(i)),
            )
            .filter_map(|m| m.peer_id())
            .filter(|p| *p != me)
            .filter_map(|p| self.book.get(&p))
            .map(|e| e.record.as_slice())
            .filter(|r| !r.is_empty());
        let mut out = vec![];
        let mut size = 0;
        for r in self
            .own_record
            .iter()
            .map(|r| r.bytes.as_slice())
            .chain(members)
        {
            if size + r.len() > SYNC_RECORDS_BUDGET {
                break;
            }
            size += r.len();
            out.push(ByteBuf::from(r.to_vec()));
        }
        out
    }

    /// Takes the signed peer records of a sync answer from `from`: only
    /// records of active members (not ours) whose signature checks out,
    /// each about the peer that signed it. A relayer only relays records
    /// it checked, so one that does not check out is its fault.
    pub(super) fn take_records(&mut self, from: PeerId, records: Vec<ByteBuf>) {
        let now = now_ms();
        let me = self.peer_id();
        let limit = self.node.roster().members().count() + 1;
        let mut bad = vec![];
        for r in records.into_iter().take(limit) {
            match addr_book::verify_record(&r) {
                Ok(v) if v.peer != me && self.is_member_peer(&v.peer) => {
                    let p = v.peer;
                    let c = self.book.record(v, now);
                    self.note(p, c);
                    if c == Change::Content && self.wants_peer(&p) {
                        self.dial_node(p);
                    }
                }
                // ours, or not a member yet here: not ours to keep
                Ok(_) => {}
                Err(e) => bad.push(e.to_string()),
            }
        }
        if let (Some(first), Some(peer)) = (bad.first(), NodeId::from_peer_id(&from)) {
            let what = format!(
                "sync answer relayed {} peer record(s) that do not check out: {first}",
                bad.len()
            );
            self.input(Input::Misbehaved { peer, what });
        }
    }
}
