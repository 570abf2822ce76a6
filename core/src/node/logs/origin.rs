//! The origin side: this node's own log, pushed to its replicas by index
//! and witnessed by them every interval.

use std::collections::BTreeMap;

use crate::guardian::Millis;
use crate::identity::NodeId;
use crate::log::checkpoint;
use crate::log::replica::tracker::{Problem, ReplicationTracker};
use crate::log::replica::wire::{Push, MAX_PUSH};
use crate::log::witness::cosign;
use crate::log::witness::request::AddCheckpoint;
use crate::proto::{Request, Response};

use super::super::io::{LogData, LogRead, Output, ReadId};
use super::super::machine::Node;
use super::super::notes::Note;
use super::{LogsSetup, LogsView, OriginSide, Read, Sent, MAX_CONFLICTS, RETRY_AFTER, RETRY_FULL};

/// Room a push keeps for its framing besides the segments and the note.
const PUSH_ROOM: usize = 4096;

impl Node {
    /// Turns the logs on, as the driver loaded them (see [`LogsSetup`]).
    /// Called once, right after [`Node::new`].
    pub fn set_logs(&mut self, setup: LogsSetup, now: Millis) {
        self.logs.store = setup.store;
        self.logs.witness = setup.witness;
        self.logs.origin_replicas = setup.replicas.max(2);
        self.logs.silence = super::silence::Silence::new(setup.silence_after);
        let mut kept: Vec<(NodeId, u64)> = Vec::new();
        if let Some(s) = &self.logs.store {
            kept.extend(s.origins().map(|o| (*o, s.held(o).size)));
        }
        if let Some(w) = &self.logs.witness {
            kept.extend(w.origins().filter_map(|o| w.last(o).map(|r| (*o, r.size))));
        }
        for (o, size) in kept {
            self.log_grew(o, size, now);
        }
        for text in setup.problems {
            if self.admin.record_log_alert(now, text.clone()) {
                self.note(Note::LogAlert { text });
            }
        }
        self.logs.origin = (setup.replicas > 0).then(|| OriginSide {
            tracker: ReplicationTracker::new(self.me.id, setup.replicas),
            checkpoint: None,
            witnesses: BTreeMap::new(),
            backoff: BTreeMap::new(),
            interval: setup.witness_interval.max(1000),
            next_witness: now.saturating_add(setup.witness_interval.max(1000)),
            reported: 0,
        });
        self.logs_roster_changed(now);
    }

    /// What the logs look like now.
    pub fn logs_view(&self) -> LogsView {
        let mut v = LogsView::default();
        if let Some(o) = &self.logs.origin {
            v.size = o.checkpoint.as_ref().map_or(0, |c| c.0);
            v.replicated = o.tracker.replicated_size();
            v.replicas = o
                .tracker
                .replicas()
                .iter()
                .map(|p| {
                    let w = o
                        .witnesses
                        .get(p)
                        .and_then(|w| (!w.note.is_empty()).then_some(w.last).flatten());
                    (*p, o.tracker.held_by(p), w)
                })
                .collect();
            v.cosigned_at = o
                .witnesses
                .iter()
                .filter_map(|(p, w)| w.cosigned_at.map(|t| (*p, t)))
                .collect();
        }
        if let Some(s) = &self.logs.store {
            v.held = s.origins().map(|o| (*o, s.held(o).size)).collect();
        }
        if let Some(w) = &self.logs.witness {
            v.witnessed = w
                .origins()
                .filter_map(|o| w.last(o).map(|r| (*o, r.size)))
                .collect();
        }
        v
    }

    /// The roster moved: choose this node's replicas again.
    pub(in crate::node) fn logs_roster_changed(&mut self, now: Millis) {
        if let Some(o) = &mut self.logs.origin {
            let (_, dropped) = o.tracker.set_members(self.roster.members());
            for p in dropped {
                o.witnesses.remove(&p);
                o.backoff.remove(&p);
            }
        }
        self.logs_peers_changed();
        if self.logs.origin.is_some() {
            self.logs_report_replicated();
            self.logs_pump(now);
        }
    }

    /// A replica connected: try it again now.
    pub(in crate::node) fn logs_connected(&mut self, peer: NodeId, now: Millis) {
        let Some(o) = &mut self.logs.origin else {
            return;
        };
        if o.backoff.remove(&peer).is_some() {
            o.tracker.lost(&peer);
            self.logs_pump(now);
        }
    }

    /// The driver's durable checkpoint of this node's own log.
    pub(in crate::node) fn logs_checkpointed(&mut self, size: u64, note: Vec<u8>, now: Millis) {
        let me = self.me.id;
        let (sz, root) = match checkpoint::open(&note, &me) {
            Ok(x) => x,
            Err(e) => {
                let why = format!("the spool's checkpoint is not this node's: {e}");
                return self.note(Note::LogProblem(why));
            }
        };
        if sz == size {
            self.logs.own_size = Some(self.logs.own_size.unwrap_or(0).max(sz));
        }
        let Some(o) = &mut self.logs.origin else {
            return;
        };
        if sz != size || o.checkpoint.as_ref().is_some_and(|c| c.0 > sz) {
            return;
        }
        let first = o.checkpoint.is_none();
        o.checkpoint = Some((sz, root, note));
        o.tracker.checkpointed(sz);
        if first {
            o.next_witness = now;
        }
        self.logs_pump(now);
    }

    /// Pushes to every replica that has something due.
    pub(in crate::node) fn logs_pump(&mut self, now: Millis) {
        let Some(o) = &mut self.logs.origin else {
            return;
        };
        let Some((_, _, note)) = o.checkpoint.clone() else {
            return;
        };
        let me = self.me.id;
        let mut sends = Vec::new();
        let mut reads = Vec::new();
        for p in o.tracker.replicas().to_vec() {
            if o.backoff.get(&p).is_some_and(|t| *t > now) {
                continue;
            }
            let Some(range) = o.tracker.next_push(&p) else {
                continue;
            };
            o.tracker.sent(&p, range.clone());
            if range.is_empty() {
                let push = Push::pack(me, range.start, note.clone(), Vec::new());
                sends.push((p, push));
            } else {
                reads.push((p, range));
            }
        }
        for (p, push) in sends {
            self.send_log(p, Request::LogPush(Box::new(push)), Sent::Push { peer: p });
        }
        for (p, range) in reads {
            let max_bytes = MAX_PUSH.saturating_sub(note.len() + PUSH_ROOM);
            let read = LogRead::Segments {
                from: range.start,
                to: range.end,
                max_bytes,
            };
            self.read_log(
                read,
                Read::Push {
                    peer: p,
                    from: range.start,
                },
            );
        }
    }

    pub(super) fn read_log(&mut self, read: LogRead, what: Read) {
        let id = ReadId(self.logs.next_read);
        self.logs.next_read += 1;
        self.logs.reads.insert(id, what);
        self.push(Output::ReadLog { id, read });
    }

    /// The driver read what the node asked for.
    pub(in crate::node) fn logs_read(
        &mut self,
        id: ReadId,
        result: Result<LogData, String>,
        now: Millis,
    ) {
        let Some(what) = self.logs.reads.remove(&id) else {
            return;
        };
        if let Read::Prefix { origin, peer, note } = what {
            return self.prefix_read(origin, peer, note, result, now);
        }
        let me = self.me.id;
        let Some(o) = &mut self.logs.origin else {
            return;
        };
        let Some((_, _, note)) = o.checkpoint.clone() else {
            return;
        };
        match (what, result) {
            (Read::Push { peer, from }, Ok(LogData::Segments(segs))) if !segs.is_empty() => {
                let push = Push::pack(me, from, note, segs);
                self.send_log(peer, Request::LogPush(Box::new(push)), Sent::Push { peer });
            }
            (Read::Proof { peer, old, size }, Ok(LogData::Proof(proof))) => {
                if o.checkpoint.as_ref().map(|c| c.0) != Some(size) {
                    // a newer checkpoint came meanwhile: the next round
                    return o.witness_idle(&peer);
                }
                self.send_add_checkpoint(peer, old, proof, note, size);
            }
            (what, r) => {
                let why = match r {
                    Err(e) => e,
                    Ok(_) => "the driver read something else than asked".into(),
                };
                let peer = match what {
                    Read::Push { peer, .. } => {
                        o.tracker.lost(&peer);
                        peer
                    }
                    Read::Proof { peer, .. } => {
                        o.witness_idle(&peer);
                        peer
                    }
                    // answered above, before the origin side is looked at
                    Read::Prefix { .. } => return,
                };
                o.backoff.insert(peer, now.saturating_add(RETRY_FULL));
                self.note(Note::LogProblem(why));
            }
        }
    }

    fn send_add_checkpoint(
        &mut self,
        peer: NodeId,
        old: u64,
        proof: Vec<crate::log::merkle::Hash>,
        note: Vec<u8>,
        size: u64,
    ) {
        let req = AddCheckpoint {
            old_size: old,
            proof,
            note,
        };
        match req.to_body() {
            Ok(body) => self.send_log(
                peer,
                Request::AddCheckpoint { body },
                Sent::Witness { peer, size },
            ),
            Err(e) => {
                if let Some(o) = &mut self.logs.origin {
                    o.witness_idle(&peer);
                }
                self.note(Note::LogProblem(e.to_string()));
            }
        }
    }

    /// Every witness interval: ask each replica to cosign the latest
    /// checkpoint, with a proof from the size it last cosigned.
    pub(in crate::node) fn logs_timeout(&mut self, now: Millis) {
        let mut ask = Vec::new();
        if let Some(o) = &mut self.logs.origin {
            let due: Vec<NodeId> = o
                .backoff
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(p, _)| *p)
                .collect();
            for p in due {
                o.backoff.remove(&p);
                o.tracker.lost(&p);
            }
            if o.checkpoint.is_some() && o.next_witness <= now {
                o.next_witness = now.saturating_add(o.interval);
                for p in o.tracker.replicas() {
                    if let Some(w) = o.witnesses.get_mut(p) {
                        w.conflicts = 0;
                    }
                    ask.push(*p);
                }
            }
        }
        for p in ask {
            self.logs_ask_witness(p);
        }
        self.logs_pump(now);
        self.check_silence(now);
        if let Some(s) = &mut self.logs.store {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                let (writes, notices) = s.expire(now);
                for n in notices {
                    self.note(Note::Replica(n));
                }
                if !writes.is_empty() {
                    self.write(super::super::io::Write::Replica(writes));
                }
            }
        }
    }

    /// Asks `peer` to cosign the latest checkpoint (unless it has, or a
    /// request is in flight).
    fn logs_ask_witness(&mut self, peer: NodeId) {
        let Some(o) = &mut self.logs.origin else {
            return;
        };
        let Some((size, root, note)) = o.checkpoint.clone() else {
            return;
        };
        let w = o.witnesses.entry(peer).or_default();
        if w.in_flight || (w.last == Some(size) && !w.note.is_empty()) {
            return;
        }
        let old = w.last.unwrap_or(0);
        if old > size {
            // it cosigned more than this node's log holds: this node lost
            // its log (restored from an old backup?); it must not pretend
            let why = format!("witness {peer} cosigned size {old} of this node's log, which now has {size}: this node's log went back (restored from a backup?)");
            return self.note(Note::LogProblem(why));
        }
        w.in_flight = true;
        if old == 0 || old == size {
            self.send_add_checkpoint(peer, old, Vec::new(), note, size);
        } else {
            self.read_log(
                LogRead::Proof { old, size, root },
                Read::Proof { peer, old, size },
            );
        }
    }

    /// An answer to a push or an add-checkpoint.
    pub(in crate::node) fn on_log_response(
        &mut self,
        sent: Sent,
        r: Result<Response, String>,
        now: Millis,
    ) {
        match sent {
            Sent::Push { peer } => self.on_push_answer(peer, r, now),
            Sent::Witness { peer, size } => self.on_witness_answer(peer, size, r),
            Sent::Seen { peer, origin } => return self.on_seen_answer(peer, origin, r, now),
        }
        self.logs_report_replicated();
        self.logs_pump(now);
    }

    fn on_push_answer(&mut self, peer: NodeId, r: Result<Response, String>, now: Millis) {
        let Some(o) = &mut self.logs.origin else {
            return;
        };
        let t = &mut o.tracker;
        let problem = match r {
            Ok(Response::LogHeld(h)) => {
                t.on_held(&peer, &h);
                None
            }
            Ok(Response::LogAsk(a)) => {
                t.on_ask(&peer, &a);
                None
            }
            Ok(Response::LogRefused(r)) if r.check().is_ok() => match t.on_refused(&peer, &r) {
                Some(Problem::Full { used, quota, .. }) => {
                    o.backoff.insert(peer, now.saturating_add(RETRY_FULL));
                    Some(format!("replica {peer} is full for this node's log ({used} of {quota} bytes): lines are not replicated there"))
                }
                Some(Problem::Refused { detail, .. }) => {
                    t.lost(&peer);
                    o.backoff.insert(peer, now.saturating_add(RETRY_FULL));
                    Some(format!("replica {peer} refused this node's log: {detail}"))
                }
                None => None,
            },
            Ok(other) => {
                t.lost(&peer);
                o.backoff.insert(peer, now.saturating_add(RETRY_FULL));
                let why = match other {
                    Response::Refused { reason } => short(&reason),
                    _ => "an unexpected answer".into(),
                };
                Some(format!(
                    "replica {peer} did not take this node's log: {why}"
                ))
            }
            Err(e) => {
                t.lost(&peer);
                o.backoff.insert(peer, now.saturating_add(RETRY_AFTER));
                if matches!(e.as_str(), "no route" | "connection refused") {
                    None
                } else {
                    Some(format!("push to replica {peer}: {}", short(&e)))
                }
            }
        };
        if let Some(why) = problem {
            self.note(Note::LogProblem(why));
        }
    }

    fn on_witness_answer(&mut self, peer: NodeId, size: u64, r: Result<Response, String>) {
        let me = self.me.id;
        let now = self.logs.now;
        let Some(o) = &mut self.logs.origin else {
            return;
        };
        let Some(w) = o.witnesses.get_mut(&peer) else {
            return;
        };
        w.in_flight = false;
        match r {
            Ok(Response::Cosigned { note }) => {
                let ours = checkpoint::open(&note, &me).ok();
                if ours.map(|x| x.0) != Some(size) || cosign::verify(&note, &peer).is_err() {
                    let why = format!("witness {peer} answered with a cosignature that does not verify on this node's checkpoint of size {size}");
                    return self.note(Note::LogProblem(why));
                }
                w.last = Some(size);
                w.note = note.clone();
                w.cosigned_at = Some(now);
                w.conflicts = 0;
                self.push(Output::Cosigned {
                    witness: peer,
                    size,
                    note,
                });
            }
            Ok(Response::WitnessRefused {
                last_size: Some(last),
                ..
            }) if w.conflicts < MAX_CONFLICTS => {
                w.conflicts += 1;
                w.last = Some(last);
                w.note.clear();
                w.cosigned_at = None;
                self.logs_ask_witness(peer);
            }
            Ok(Response::WitnessRefused { reason, .. }) | Ok(Response::Refused { reason }) => {
                let reason = short(&reason);
                let why = format!("witness {peer} did not cosign size {size}: {reason}");
                self.note(Note::LogProblem(why));
            }
            Ok(_) | Err(_) => {}
        }
    }

    /// Tells the driver when the replicated size grew.
    fn logs_report_replicated(&mut self) {
        let Some(o) = &mut self.logs.origin else {
            return;
        };
        let r = o.tracker.replicated_size();
        if r > o.reported {
            o.reported = r;
            self.push(Output::Replicated(r));
        }
    }
}

/// A peer's words, cut to what a journal line should carry.
fn short(s: &str) -> String {
    const MAX: usize = 1024;
    if s.len() <= MAX {
        return s.to_string();
    }
    format!("{}...", crate::text::prefix(s, MAX))
}
