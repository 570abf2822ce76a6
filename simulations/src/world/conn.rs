//! Connections and requests on them: dials, connects, closes, requests
//! and responses, as libp2p carries them between keywardd, the initramfs
//! client and attackers.

use super::*;

impl World {
    pub(super) fn reachable(&self, from: u32, to: u32) -> bool {
        self.net.same_side(from, to) && self.daemon_listens(to)
    }

    pub(super) fn daemon_listens(&self, to: u32) -> bool {
        self.machines[to as usize].running() && !self.machines[to as usize].leaving
    }

    /// Opens a connection from `from` to `to` unless one is up or coming.
    pub(super) fn dial(&mut self, from: u32, to: u32) {
        if from == to || self.net.conn(from, to).is_some() || !self.net.dialing.insert((from, to)) {
            return;
        }
        self.net.traffic.dials += 1;
        self.rec(Kind::Dial, from as u64, to as u64);
        let lat = self.latency();
        let inc_from = self.machines[from as usize].inc;
        if self.reachable(from, to) {
            let inc_to = self.machines[to as usize].inc;
            // TCP, noise and yamux: two round trips.
            self.q.after(
                4 * lat,
                Ev::Connect {
                    from,
                    to,
                    inc_from,
                    inc_to,
                },
            );
        } else {
            // Refused at once by a running machine; a machine that is off
            // lets the dial time out.
            let d = if self.machines[to as usize].phase == Phase::Down
                || !self.net.same_side(from, to)
            {
                10 * SEC
            } else {
                2 * lat
            };
            self.q.after(
                d,
                Ev::DialFailed {
                    from,
                    to,
                    inc: inc_from,
                },
            );
        }
    }

    pub(super) fn connect(&mut self, from: u32, to: u32, inc_from: u32, inc_to: u32) {
        if self.machines[from as usize].inc != inc_from {
            self.net.dialing.remove(&(from, to));
            return;
        }
        if self.machines[to as usize].inc != inc_to || !self.reachable(from, to) {
            return self.dial_failed(from, to, "dial failed: the peer went away");
        }
        self.net.dialing.remove(&(from, to));
        if self.net.conn(from, to).is_none() {
            let (Some(a), Some(b)) = (
                self.machines[from as usize].endpoint(),
                self.machines[to as usize].endpoint(),
            ) else {
                return;
            };
            let daemons = self.machines[from as usize].running();
            let id = self.fresh();
            self.net.open(id, from, to, a, b, self.now(), daemons);
            self.net.traffic.connections += 1;
            self.rec(Kind::Connect, from as u64, to as u64);
            self.set_live(from, to);
            self.set_live(to, from);
            self.connected_at(from, b, Some(to));
            self.connected_at(to, a, None);
            self.check_conn_bound(from);
            self.check_conn_bound(to);
            self.tend_mesh(from);
            self.tend_mesh(to);
        }
        // Requests that waited for this connection, both ways.
        for (x, y) in [(from, to), (to, from)] {
            for (req, reply) in self.net.waiting.remove(&(x, y)).unwrap_or_default() {
                self.transmit(x, y, req, reply);
            }
        }
    }

    /// Tells machine m a connection to `peer` is up.
    pub(super) fn connected_at(&mut self, m: u32, peer: NodeId, to: Option<u32>) {
        match self.machines[m as usize].phase {
            Phase::Running => {
                if let Some(o) = to.or_else(|| self.ids.get(&peer).copied()) {
                    if self.machines[o as usize].id == peer {
                        let t = self.local(m);
                        self.told_alive(m, o, t);
                    }
                }
                self.input(m, Input::Connected { peer })
            }
            Phase::Unlocking => {
                let now = self.local(m);
                if let Some(c) = self.machines[m as usize].client.as_mut() {
                    c.handle(
                        now,
                        unlock::Input::Connected {
                            peer: Some(peer),
                            addr: format!("/sim/{}", to.unwrap_or(u32::MAX)),
                            probe: None,
                        },
                    );
                }
                self.drain_client(m);
            }
            _ => {}
        }
    }

    pub(super) fn dial_failed(&mut self, from: u32, to: u32, why: &str) {
        self.net.dialing.remove(&(from, to));
        self.net.traffic.dials_failed += 1;
        let to_id = self.machines[to as usize].id;
        let waiting = self.net.waiting.remove(&(from, to)).unwrap_or_default();
        if self.machines[from as usize].phase == Phase::Unlocking && !waiting.is_empty() {
            let now = self.local(from);
            if let Some(c) = self.machines[from as usize].client.as_mut() {
                c.handle(
                    now,
                    unlock::Input::DialFailed {
                        peer: Some(to_id),
                        probe: None,
                        error: format!("/sim/{to}: {why}"),
                    },
                );
            }
        }
        for (_, reply) in waiting {
            self.fail(from, to_id, reply, why.to_string(), true);
        }
    }

    /// A request of `from` ends without an answer.
    pub(super) fn fail(&mut self, from: u32, to: NodeId, reply: Reply, why: String, dial: bool) {
        match reply {
            Reply::Node(id) => self.input(
                from,
                Input::Response {
                    id,
                    from: to,
                    result: Err(why),
                },
            ),
            Reply::Client(guardian) => {
                let now = self.local(from);
                if let Some(c) = self.machines[from as usize].client.as_mut() {
                    let failure = if dial {
                        unlock::Failure::Dial
                    } else {
                        unlock::Failure::Other(why)
                    };
                    c.handle(now, unlock::Input::RequestFailed { guardian, failure });
                }
                self.drain_client(from);
            }
        }
    }

    /// Sends a request, dialling first if there is no connection.
    pub(super) fn send_req(&mut self, from: u32, to: u32, req: Request, reply: Reply) {
        let want = self.machines[to as usize].id;
        if let Some(c) = self.net.conn(from, to) {
            if c.ids[c.side(to)] == want {
                return self.transmit(from, to, req, reply);
            }
            // Connected to that machine's initramfs (its boot key), not
            // to its keywardd: a dial to the node key finds nobody.
            let why = "dial failed: the peer's node key does not answer".to_string();
            return self.fail(from, want, reply, why, true);
        }
        self.net
            .waiting
            .entry((from, to))
            .or_default()
            .push((req, reply));
        self.dial(from, to);
    }

    pub(super) fn transmit(&mut self, from: u32, to: u32, req: Request, reply: Reply) {
        let Some(conn) = self.net.conn(from, to).map(|c| c.id) else {
            let to_id = self.machines[to as usize].id;
            return self.fail(from, to_id, reply, "connection closed".into(), false);
        };
        self.net.traffic.requests += 1;
        self.net.traffic.bytes += summary::request_bytes(&req);
        let rid = self.fresh();
        self.rec(Kind::Request, from as u64, to as u64);
        self.reqs.insert(
            rid,
            PendingReq {
                from,
                to,
                conn,
                reply,
            },
        );
        let lat = self.latency();
        self.q.after(
            lat,
            Ev::Deliver {
                conn,
                to,
                wire: Box::new(Wire::Req { rid, from, req }),
            },
        );
    }

    pub(super) fn respond(&mut self, m: u32, id: InId, response: Response) {
        let Some(p) = self.reqs.get(&id.0) else {
            return;
        };
        if p.from == ATTACKER {
            self.reqs.remove(&id.0);
            self.net.traffic.responses += 1;
            match &response {
                Response::Share(_) => {
                    self.stats.copied_released += 1;
                    if self.cfg.strict {
                        self.checks.check(inv::STRICT_OWNER_UP, false, &[m], || {
                            format!("guardian n{m} released a share to a copy of a running node's boot key")
                        });
                    }
                    self.check_response(m, ATTACKER, &response);
                }
                Response::ShareRefused(r) => {
                    if self.cfg.strict {
                        self.checks.passed(inv::STRICT_OWNER_UP, 1);
                    }
                    *self
                        .stats
                        .copied_refused
                        .entry(r.rule().to_string())
                        .or_default() += 1;
                }
                _ => {}
            }
            return;
        }
        let (conn, to) = (p.conn, p.from);
        if !self.net.is_open(conn) {
            return;
        }
        self.check_response(m, to, &response);
        self.net.traffic.responses += 1;
        self.net.traffic.bytes += summary::response_bytes(&response);
        self.rec(Kind::Response, m as u64, to as u64);
        let lat = self.latency();
        self.q.after(
            lat,
            Ev::Deliver {
                conn,
                to,
                wire: Box::new(Wire::Resp {
                    rid: id.0,
                    response,
                }),
            },
        );
    }

    pub(super) fn deliver(&mut self, conn: u64, to: u32, wire: Wire) {
        if !self.net.is_open(conn) {
            self.net.traffic.lost += 1;
            return;
        }
        match wire {
            Wire::Req { rid, from, req } => {
                if !self.machines[to as usize].running() {
                    return;
                }
                self.feed_pings(to, from);
                if let Request::Share(sr) = &req {
                    if let Some(o) = self.ids.get(&sr.owner).copied() {
                        self.feed_pings(to, o);
                    }
                }
                let Some(from_id) = self.net.conn(from, to).map(|c| c.ids[c.side(from)]) else {
                    return;
                };
                if matches!(req, Request::GoingDown) {
                    if let Some(c) = self.net.conn_mut(from, to) {
                        let side = c.side(from);
                        c.bye[side] = true;
                    }
                    let t = self.local(to);
                    self.oracle.bye(to, from, t);
                }
                self.input(
                    to,
                    Input::Request {
                        id: InId(rid),
                        from: from_id,
                        req,
                    },
                );
            }
            Wire::Resp { rid, response } => {
                let Some(p) = self.reqs.remove(&rid) else {
                    return;
                };
                let other = p.to;
                let other_id = match self.net.conn(to, other) {
                    Some(c) => c.ids[c.side(other)],
                    None => return,
                };
                match p.reply {
                    Reply::Node(id) => {
                        self.feed_pings(to, other);
                        if let Response::Roster { admin, .. } = &response {
                            for a in admin {
                                self.told_admin(to, a);
                            }
                        }
                        self.input(
                            to,
                            Input::Response {
                                id,
                                from: other_id,
                                result: Ok(response),
                            },
                        );
                    }
                    Reply::Client(guardian) => {
                        let now = self.local(to);
                        if matches!(response, Response::Share(_)) {
                            self.machines[to as usize].got.insert(other);
                        }
                        if let Some(c) = self.machines[to as usize].client.as_mut() {
                            c.handle(now, unlock::Input::Response { guardian, response });
                        }
                        self.drain_client(to);
                    }
                }
            }
            Wire::Gossip { msg, via } => self.gossip_in(to, via, msg),
        }
    }

    /// Closes the connection between a and b, if any: both ends hear of
    /// it, requests on it fail.
    pub(super) fn close(&mut self, a: u32, b: u32) {
        let period = self.cfg.ping_period();
        let now = self.now();
        // The last pings before the close reach both ends first.
        self.feed_pings(a, b);
        self.feed_pings(b, a);
        let Some(c) = self.net.remove(a, b, now, period) else {
            return;
        };
        self.rec(Kind::Close, a as u64, b as u64);
        self.unmesh(a, b);
        let failed: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, p)| p.conn == c.id)
            .map(|(r, _)| *r)
            .collect();
        for r in failed {
            let p = self.reqs.remove(&r).expect("listed");
            let to_id = c.ids[c.side(p.to)];
            self.fail(p.from, to_id, p.reply, "connection closed".into(), false);
        }
        for (x, y) in [(a, b), (b, a)] {
            let peer = c.ids[c.side(y)];
            if self.machines[x as usize].running() {
                self.input(x, Input::Closed { peer });
            }
        }
        self.tend_mesh(a);
        self.tend_mesh(b);
    }

    pub(super) fn close_all(&mut self, m: u32) {
        for o in self.net.peers(m) {
            self.close(m, o);
        }
        // Dials out of here die with it; requests waiting on them too.
        let mine: Vec<(u32, u32)> = self
            .net
            .waiting
            .keys()
            .filter(|(x, y)| *x == m || *y == m)
            .copied()
            .collect();
        for (x, y) in mine {
            let v = self.net.waiting.remove(&(x, y)).unwrap_or_default();
            if x != m {
                let to_id = self.machines[y as usize].id;
                for (_, reply) in v {
                    self.fail(
                        x,
                        to_id,
                        reply,
                        "dial failed: the peer went away".into(),
                        true,
                    );
                }
            }
        }
        self.net.dialing.retain(|(x, _)| *x != m);
    }
}
