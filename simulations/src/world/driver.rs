//! The node's driver, as keywardd's event loop: inputs in, outputs
//! carried out in order (a write holds the rest until it is committed),
//! timers, control requests, and the lazily fed libp2p pings.

use super::*;

impl World {
    /// One input to machine m's node, then everything it asks for.
    pub(super) fn input(&mut self, m: u32, i: Input) {
        let now = self.local(m);
        let Some(n) = self.machines[m as usize].node.as_mut() else {
            return;
        };
        n.handle(now, i);
        self.drain(m);
    }

    /// Carries out the node's outputs in order; stops at a write until
    /// its commit completes.
    pub(super) fn drain(&mut self, m: u32) {
        loop {
            let mm = &mut self.machines[m as usize];
            if mm.committing.is_some() {
                break;
            }
            let Some(o) = mm.node.as_mut().and_then(|n| n.poll_output()) else {
                break;
            };
            self.output(m, o);
        }
        let mm = &self.machines[m as usize];
        let Some(node) = &mm.node else { return };
        if mm.leaving && !node.saying_goodbye() {
            let inc = mm.inc;
            self.q.after(0, Ev::ShutdownDone { m, inc });
        }
        let at = self.world_of(m, node.poll_timeout());
        let mm = &mut self.machines[m as usize];
        if mm.timer_at.is_none_or(|t| at < t) {
            mm.timer_at = Some(at);
            let inc = mm.inc;
            self.q.at(at, Ev::NodeTimer { m, inc, at });
        }
    }

    pub(super) fn output(&mut self, m: u32, o: Output) {
        match o {
            Output::Dial(n) => {
                if let Some(t) = self.ids.get(&n).copied() {
                    self.dial(m, t);
                }
            }
            Output::DialBootstrap | Output::Pin { .. } | Output::Housekeeping => {}
            Output::Liveness(_) => {
                for o in self.net.peers(m) {
                    self.set_live(m, o);
                }
            }
            Output::Disconnect(n) => {
                if let Some(t) = self.idx(&n) {
                    self.close(m, t);
                }
            }
            Output::Send { id, to, req } => match self.ids.get(&to).copied() {
                Some(t) => self.send_req(m, t, req, Reply::Node(id)),
                None => self.input(
                    m,
                    Input::Response {
                        id,
                        from: to,
                        result: Err("no address known".into()),
                    },
                ),
            },
            Output::Respond { id, response } => self.respond(m, id, response),
            Output::Publish { msg, .. } => self.publish(m, msg),
            Output::Verdict { id, accept } => self.verdict(m, id, accept),
            Output::Subscribe(_) => {
                self.machines[m as usize].subscribed = true;
                self.tend_mesh(m);
            }
            Output::Members { members, .. } => {
                self.machines[m as usize].members = members;
                self.tend_mesh(m);
            }
            Output::Verify(ops) => {
                // Verified off the event loop in keywardd; here at once,
                // handed back a millisecond later.
                let vs = self.verify(ops);
                let inc = self.machines[m as usize].inc;
                self.q.after(1, Ev::Verified { m, inc, ops: vs });
            }
            Output::Write { id, write } => {
                if let keyward_core::node::Write::Roster { put, .. } = &write {
                    // The replica changed: the membership checks judge it
                    // after this event.
                    let founder = self.machines[0].id;
                    self.watch.issued(put);
                    // A machine the founder (the admin) revoked is out
                    // from the op's first write: the command's answer may
                    // never come (the founder crashing after it ran), and
                    // `keyward revoke` re-signs the revocations of the
                    // member it revokes (seed 18 of the hostile seeds).
                    for n in self.watch.revocations_in(founder, put) {
                        if let Some(v) = self.ids.get(&n).copied() {
                            self.machines[v as usize].revoked = true;
                        }
                    }
                    self.watch.dirty.insert(m);
                    self.watch.changed_at = self.now();
                }
                let d = self.uniform(1, 4);
                let mm = &mut self.machines[m as usize];
                mm.committing = Some((id, write));
                let inc = mm.inc;
                self.q.after(d, Ev::Committed { m, inc });
            }
            Output::Reply { id, response } => self.on_reply(m, id, response),
            Output::Note(n) => self.note(m, n),
            // logs part 2 (the logs scenario, see `logs`)
            Output::ReadLog { id, read } => self.log_read(m, id, read),
            Output::Replicated(size) => self.log_replicated(m, size),
            Output::Evidence { origin, what, .. } => self.log_evidence(m, origin, what),
            // no auditor fetches in the world; a cosignature's note is
            // only kept by keywardd for them
            Output::ServeLog { .. } | Output::Cosigned { .. } => {}
        }
    }

    pub(super) fn committed(&mut self, m: u32, inc: u32) {
        let mm = &mut self.machines[m as usize];
        if mm.inc != inc {
            return;
        }
        let Some((id, write)) = mm.committing.take() else {
            return;
        };
        let witness = match &write {
            keyward_core::node::Write::Witness(ws) => Some(ws.clone()),
            _ => None,
        };
        mm.disk.apply(write, &mut self.disks);
        if let Some(ws) = witness {
            self.log_witness_committed(m, &ws);
        }
        match id {
            Some(id) => self.input(m, Input::Written { id, result: Ok(()) }),
            None => self.drain(m),
        }
    }

    /// The last ping answer on the m-o connection before now, fed to m's
    /// node (see the module doc).
    pub(super) fn feed_pings(&mut self, m: u32, o: u32) {
        let period = self.cfg.ping_period();
        let now = self.now();
        let Some(c) = self.net.conn_mut(m, o) else {
            return;
        };
        if !c.daemons {
            return;
        }
        let side = c.side(m);
        let Some(since) = c.live[side] else {
            return;
        };
        let tick = since + now.saturating_sub(since) / period * period;
        if tick <= since || tick <= c.fed[side] {
            return;
        }
        c.fed[side] = tick;
        let peer = c.ids[1 - side];
        let t = self.local_at(m, tick);
        if let Some(n) = self.machines[m as usize].node.as_mut() {
            n.handle(t, Input::Pinged { peer });
            self.told_alive(m, o, t);
            self.drain(m);
        }
    }

    /// Whether m pings o on their connection follows m's node's
    /// liveness marking (keywardd switches its ping handler the same
    /// way); the pings of a span that ends are counted.
    pub(super) fn set_live(&mut self, m: u32, o: u32) {
        let now = self.now();
        let Some(c) = self.net.conn(m, o) else {
            return;
        };
        let side = c.side(m);
        let peer = c.ids[1 - side];
        let on = c.daemons
            && self.machines[m as usize]
                .node
                .as_ref()
                .is_some_and(|n| n.liveness().contains(&peer));
        match (c.live[side], on) {
            (None, true) => {
                if let Some(c) = self.net.conn_mut(m, o) {
                    c.live[side] = Some(now);
                    c.fed[side] = now;
                }
            }
            (Some(since), false) => {
                self.feed_pings(m, o);
                let period = self.cfg.ping_period();
                self.net.traffic.pings += 2 * (now.saturating_sub(since) / period);
                if let Some(c) = self.net.conn_mut(m, o) {
                    c.live[side] = None;
                }
            }
            _ => {}
        }
    }

    pub(super) fn feed_all_pings(&mut self, m: u32) {
        for o in self.net.peers(m) {
            self.feed_pings(m, o);
        }
    }

    /// The oracle's record: guardian g's node was shown o alive at its
    /// time t (a ping answer or a connection), unless o said goodbye on
    /// this connection, or is no active member there.
    pub(super) fn told_alive(&mut self, g: u32, o: u32, t: Millis) {
        let oid = self.machines[o as usize].id;
        let bye = self.net.conn(g, o).is_some_and(|c| c.bye[c.side(o)]);
        let active = self.machines[g as usize]
            .node
            .as_ref()
            .is_some_and(|n| n.roster().is_active(&oid));
        if active && !bye {
            self.oracle.alive(g, o, t, t);
        }
    }

    /// The oracle's record of an approval delivered to g (by gossip or a
    /// sync answer), at the time its issuer signed.
    pub(super) fn told_admin(&mut self, g: u32, a: &keyward_core::proto::AdminMsg) {
        if let keyward_core::proto::AdminKind::Approve { owner } = &a.body.kind {
            // As the guardian: an approval counts only where the owner's
            // shares are (and a record per node per approval grew with
            // the mesh).
            let holds = self.machines[g as usize]
                .node
                .as_ref()
                .is_some_and(|n| n.guardian().owner(owner).is_some_and(|s| s.holds_shares()));
            if let (true, Some(o)) = (holds, self.ids.get(owner).copied()) {
                self.oracle.approve(g, o, a.body.by, a.body.at);
            }
        }
    }

    /// Sends a control request to machine m's keywardd.
    pub(super) fn control(&mut self, m: u32, req: keyward_core::control::CtlRequest, what: Ctl) {
        if !self.machines[m as usize].running() {
            return;
        }
        // Status reads liveness: the pings so far first.
        self.feed_all_pings(m);
        let id = CtlId(self.fresh());
        self.machines[m as usize].ctl.insert(id, what);
        self.input(m, Input::Control { id, req });
    }

    pub(super) fn note(&mut self, _m: u32, n: keyward_core::node::Note) {
        self.reach_note(_m, &n);
        if let keyward_core::node::Note::AdminRefused {
            why: keyward_core::node::admin::AdminRefusal::FromTheFuture { .. },
            ..
        } = &n
        {
            self.stats.admin_from_future += 1;
        }
        if matches!(n, keyward_core::node::Note::Alert { .. }) && self.attacker_at == Some(_m) {
            self.stats.copy_alerts += 1;
        }
        *self.stats.notes.entry(notes::name(&n)).or_default() += 1;
    }

    /// Checks roster operations' signatures as keywardd's verifier task
    /// does. With `cfg.memo`, each operation is verified once per world:
    /// the result (a `Verified`, or a refusal) is kept by op id and
    /// handed to every node that asks again, so N nodes receiving the
    /// same operation cost one verification, not N. The node gets the
    /// same answer either way.
    /// The operations on machine `m`'s disk, verified (through the memo,
    /// by the ids the disk keeps: no op is hashed again).
    pub(super) fn verify_disk(&mut self, m: u32) -> Vec<Verified> {
        let disk = &self.machines[m as usize].disk;
        if !self.cfg.memo {
            return disk
                .roster()
                .values()
                .filter_map(|o| o.clone().verify().ok())
                .collect();
        }
        let mut out = Vec::with_capacity(disk.roster_len());
        let mut new = vec![];
        for (id, op) in disk.roster() {
            match self.memo.get(id) {
                Some(v) => out.extend(v.clone()),
                None => new.push(op.clone()),
            }
        }
        out.extend(self.verify(new));
        out
    }

    pub(super) fn verify(&mut self, ops: Vec<SignedOp>) -> Vec<Verified> {
        if !self.cfg.memo {
            return ops.into_iter().filter_map(|o| o.verify().ok()).collect();
        }
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let id = op.id();
            let v = match self.memo.get(&id) {
                Some(v) => v.clone(),
                None => {
                    let v = op.verify().ok();
                    self.memo.insert(id, v.clone());
                    v
                }
            };
            out.extend(v);
        }
        out
    }
}
