//! What a world run counts, and the summary it ends with (a table or
//! JSON; a pure function of the config: no wall time in it).

use super::*;

/// What the world counts; "messages" are what keywardd really sends.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    /// Connection attempts (each a TCP + noise + yamux handshake).
    pub dials: u64,
    pub dials_failed: u64,
    pub connections: u64,
    /// libp2p pings and their answers, on connections whose end marks the
    /// other for liveness (a guardian or a ward, `Node::liveness`), from
    /// each such end.
    pub pings: u64,
    pub requests: u64,
    pub responses: u64,
    /// Gossip transmissions (every copy on every connection).
    pub gossip: u64,
    /// gossipsub's control messages: GRAFT, PRUNE, IHAVE (`mesh`).
    pub control: u64,
    /// Messages lost because their connection closed first.
    pub lost: u64,
    /// Estimated bytes on the wire: each request, response and gossip
    /// copy at its encoded size plus [`FRAME_BYTES`], each ping or answer
    /// [`PING_BYTES`], each dial [`DIAL_BYTES`].
    pub bytes: u64,
}

/// Noise (16 B tag) and yamux (12 B header) around each message, and
/// gossipsub's envelope (sender, sequence number, topic, signature)
/// folded in for gossip.
pub const FRAME_BYTES: u64 = 28;
/// A libp2p ping or its answer: 32 random bytes in a frame.
pub const PING_BYTES: u64 = 32 + FRAME_BYTES;
/// A dial: TCP handshake, multistream-select, the noise XX handshake and
/// identify both ways, about 2 KiB.
pub const DIAL_BYTES: u64 = 2048;
/// gossipsub's envelope around a published message.
pub const GOSSIP_ENVELOPE_BYTES: u64 = 150;

/// A message carrying a share envelope: its age header holds "grease"
/// stanzas of random length (from the OS's randomness, not the run's
/// seed), so it is counted at this typical size to keep runs identical.
pub const ENVELOPE_MESSAGE_BYTES: u64 = 700;

/// The size of `m` on the wire.
pub fn wire_bytes<T: keyward_core::codec::Wire>(m: &T) -> u64 {
    keyward_core::codec::encode(m).map_or(0, |b| b.len() as u64) + FRAME_BYTES
}

/// The size of a request on the wire.
pub fn request_bytes(r: &Request) -> u64 {
    match r {
        Request::Deposit(_) => ENVELOPE_MESSAGE_BYTES,
        r => wire_bytes(r),
    }
}

/// The size of a response on the wire.
pub fn response_bytes(r: &Response) -> u64 {
    match r {
        Response::Share(_) => ENVELOPE_MESSAGE_BYTES,
        r => wire_bytes(r),
    }
}

impl Traffic {
    pub fn messages(&self) -> u64 {
        self.dials + self.pings + self.requests + self.responses + self.gossip + self.control
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WorldStats {
    pub boots: u64,
    /// Boots of machines an admin vouches for (not revoked, seized,
    /// stolen or hostile).
    pub legit_boots: u64,
    pub unlocked: u64,
    /// Of the legitimate ones: unlocked with no admin, or after an
    /// admin's approval of that boot.
    pub unlocked_auto: u64,
    pub unlocked_approved: u64,
    pub unlock_ms: Vec<Millis>,
    pub unlock_auto_ms: Vec<Millis>,
    pub hopeless: u64,
    pub attempts: u64,
    pub passphrase: u64,
    pub approvals: u64,
    pub reboots: u64,
    pub crashes: u64,
    pub seized: u64,
    pub thefts: u64,
    pub thefts_unlocked: u64,
    pub partitions: u64,
    pub joins: u64,
    pub revocations: u64,
    pub copy_attacks: u64,
    pub copied_released: u64,
    pub copied_refused: BTreeMap<String, u64>,
    /// Alerts raised by the guardians a copied boot key asked.
    pub copy_alerts: u64,
    pub strangers: u64,
    /// Control requests (invite, join, revoke) that failed.
    pub ctl_failed: u64,
    pub binds: u64,
    pub binds_failed: u64,
    pub releases: u64,
    pub refusals: BTreeMap<String, u64>,
    pub notes: BTreeMap<&'static str, u64>,
    /// Admin messages refused as dated too far in the future.
    pub admin_from_future: u64,
    pub writes_lost: u64,
    /// Most keywardd connections any node held at once, and the largest
    /// overlay any node wanted.
    pub peak_connections: u64,
    pub peak_wanted: u64,
    /// Lockdowns and revocations: how fast they reached the members.
    pub reach: Vec<super::ReachStat>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorldSummary {
    pub scenario: String,
    pub nodes: usize,
    pub nodes_at_end: usize,
    pub hours: f64,
    pub seed: u64,
    pub events: u64,
    pub trace_hash: String,
    pub boots: u64,
    pub legit_boots: u64,
    pub unlocked: u64,
    pub unlocked_auto: u64,
    pub unlocked_after_approval: u64,
    pub unlock_median_ms: Millis,
    pub unlock_p99_ms: Millis,
    pub unlock_auto_median_ms: Millis,
    pub unlock_auto_p99_ms: Millis,
    pub hopeless: u64,
    pub unlock_attempts: u64,
    pub passphrase: u64,
    pub approvals: u64,
    pub reboots: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub joins: u64,
    pub revocations: u64,
    pub copy_attacks: u64,
    pub copied_released: u64,
    pub copied_refused: BTreeMap<String, u64>,
    pub copy_alerts: u64,
    pub strangers: u64,
    /// A stranger never reaches a node (the transport's gate refuses
    /// its connection), so it never gets a share.
    pub strangers_released: u64,
    pub ctl_failed: u64,
    pub binds: u64,
    pub binds_failed: u64,
    pub bound_at_end: usize,
    pub locked_at_end: usize,
    /// Locked at the end, by why: legitimate, revoked, seized, stolen,
    /// hostile.
    pub locked_at_end_by: BTreeMap<String, u64>,
    pub seized: u64,
    /// Seized servers still locked at the end.
    pub seized_locked_at_end: usize,
    pub thefts: u64,
    pub thefts_unlocked: u64,
    pub releases: u64,
    pub refusals: BTreeMap<String, u64>,
    pub notes: BTreeMap<&'static str, u64>,
    pub admin_from_future: u64,
    pub writes_lost: u64,
    pub disk_commits: u64,
    pub traffic: Traffic,
    pub messages_per_node_hour: f64,
    /// Estimated bytes on the wire per node per hour (see `Traffic::bytes`).
    pub bytes_per_node_hour: f64,
    /// keywardd connections per running node at the end: mean and most;
    /// the most any node held at once during the run; the largest overlay
    /// any node wanted.
    pub connections_mean_end: f64,
    pub connections_max_end: usize,
    pub peak_connections: u64,
    pub peak_wanted: u64,
    pub reach: Vec<super::ReachStat>,
    /// Of which: pings, dials, requests + responses, gossip.
    pub per_node_hour: BTreeMap<&'static str, f64>,
    /// Most roster operations any replica held, and the bound.
    pub max_roster_ops: usize,
    pub roster_bound: usize,
    /// Fraction of owners whose key a boot-key thief could open with the
    /// help of a random 20 % of the nodes colluding (threshold sweeps).
    pub collusion_exposed: f64,
    pub invariant_checks: BTreeMap<String, u64>,
    pub invariant_checks_total: u64,
    /// What the hostile members did (hostile scenario only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostile: Option<super::hostile::HostileStats>,
    /// What the logs did (logs scenario only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<super::logs::LogStats>,
}

fn pct(v: &mut [Millis], q: f64) -> Millis {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

type Failed = Box<(World, Violation)>;

impl World {
    /// The summary, after the last checks (convergence at the end).
    pub(super) fn summary(mut self) -> Result<WorldSummary, Failed> {
        let end = self.now().min(self.cfg.end());
        let period = self.cfg.ping_period();
        self.net.close_all_for_count(end, period);
        // Convergence at the end: every running member that has run for
        // 30 min, the network whole for 30 min, holds one roster (a
        // revoked node is out of the mesh and may keep an old one).
        self.check_converged(end);
        self.reach_end();
        let (conn_mean, conn_max) = self.connections_now();
        if let Some(v) = self.checks.failed.take() {
            return Err(Box::new((self, v)));
        }
        let exposed = self.collusion_exposed();
        let s = &mut self.stats;
        let mut ms = std::mem::take(&mut s.unlock_ms);
        let mut auto = std::mem::take(&mut s.unlock_auto_ms);
        let n = self.machines.len() as f64;
        let hours = (end as f64 / HOUR as f64).max(1e-9);
        let t = &self.net.traffic;
        let per = |x: u64| x as f64 / n / hours;
        let mut per_node_hour = BTreeMap::new();
        per_node_hour.insert("dials", per(t.dials));
        per_node_hour.insert("pings", per(t.pings));
        per_node_hour.insert("requests+responses", per(t.requests + t.responses));
        per_node_hour.insert("gossip", per(t.gossip));
        per_node_hour.insert("gossip control", per(t.control));
        let mut by = BTreeMap::new();
        for m in self.machines.iter().filter(|m| m.locked()) {
            let why = if m.hostile {
                "hostile"
            } else if m.revoked {
                "revoked"
            } else if m.seized {
                "seized"
            } else if m.stolen {
                "stolen"
            } else {
                "legitimate"
            };
            *by.entry(why.to_string()).or_default() += 1;
        }
        let mut checks: BTreeMap<String, u64> = inv::ALL
            .iter()
            .filter(|n| self.cfg.strict || !n.starts_with("strict."))
            .map(|n| (n.to_string(), 0))
            .collect();
        for (k, v) in &self.checks.runs {
            checks.insert(k.to_string(), *v);
        }
        let hostile = self.hostile.as_ref().map(|h| {
            let mut s = h.stats.clone();
            s.seized_opened = h.opened.len();
            s.roster_bound = self.watch.bound();
            s.max_roster_ops = s.max_roster_ops.max(self.watch.max_ops);
            s
        });
        let logs =
            (self.cfg.scenario == crate::scenario::Scenario::Logs).then(|| self.logs.stats.clone());
        Ok(WorldSummary {
            logs,
            scenario: self.cfg.scenario.name().into(),
            nodes: self.cfg.nodes,
            nodes_at_end: self.machines.len(),
            hours: self.cfg.hours,
            seed: self.cfg.seed,
            events: self.event,
            trace_hash: format!("{:016x}", self.trace.hash()),
            boots: s.boots,
            legit_boots: s.legit_boots,
            unlocked: s.unlocked,
            unlocked_auto: s.unlocked_auto,
            unlocked_after_approval: s.unlocked_approved,
            unlock_median_ms: pct(&mut ms, 0.5),
            unlock_p99_ms: pct(&mut ms, 0.99),
            unlock_auto_median_ms: pct(&mut auto, 0.5),
            unlock_auto_p99_ms: pct(&mut auto, 0.99),
            hopeless: s.hopeless,
            unlock_attempts: s.attempts,
            passphrase: s.passphrase,
            approvals: s.approvals,
            reboots: s.reboots,
            crashes: s.crashes,
            partitions: s.partitions,
            copy_attacks: s.copy_attacks,
            copied_released: s.copied_released,
            copied_refused: s.copied_refused.clone(),
            copy_alerts: s.copy_alerts,
            strangers: s.strangers,
            strangers_released: 0,
            joins: s.joins,
            revocations: s.revocations,
            ctl_failed: s.ctl_failed,
            binds: s.binds,
            binds_failed: s.binds_failed,
            bound_at_end: self.machines.iter().filter(|m| m.token.is_some()).count(),
            locked_at_end: self.machines.iter().filter(|m| m.locked()).count(),
            locked_at_end_by: by,
            seized: s.seized,
            seized_locked_at_end: self
                .machines
                .iter()
                .filter(|m| m.seized && m.locked())
                .count(),
            thefts: s.thefts,
            thefts_unlocked: s.thefts_unlocked,
            releases: s.releases,
            refusals: s.refusals.clone(),
            notes: s.notes.clone(),
            admin_from_future: s.admin_from_future,
            writes_lost: s.writes_lost,
            disk_commits: self.machines.iter().map(|m| m.disk.commits).sum(),
            messages_per_node_hour: per(t.messages()),
            bytes_per_node_hour: per(t.bytes + t.pings * PING_BYTES + t.dials * DIAL_BYTES),
            connections_mean_end: conn_mean,
            connections_max_end: conn_max,
            peak_connections: s.peak_connections,
            peak_wanted: s.peak_wanted,
            reach: std::mem::take(&mut s.reach),
            per_node_hour,
            traffic: t.clone(),
            max_roster_ops: self.watch.max_ops,
            roster_bound: self.watch.bound(),
            collusion_exposed: exposed,
            invariant_checks_total: self.checks.total(),
            invariant_checks: checks,
            hostile,
        })
    }

    /// `roster.converge`: once the network has been whole for 30 min and
    /// no replica changed for 10, every running member that has run for
    /// 30 min holds one roster (hostile machines aside: an attacker
    /// controls them). Members are those active in the roster most
    /// settled machines hold (a revoked node, or one that left with
    /// its inviter, is out of the mesh and may keep an old one). Judged
    /// every `watch::TICK` and at the end, on the digests cached when
    /// each replica last changed.
    pub(super) fn check_converged(&mut self, now: Millis) {
        let whole = !self.net.is_split() && self.net.healed_at + 30 * MIN <= now;
        if !whole || self.watch.changed_at + 10 * MIN > now {
            return;
        }
        // Members by their own roster: a machine that an op it holds
        // revokes (a hostile member's revocation of an honest one, taken
        // before the founder revoked the hostile members) is out of the
        // mesh as far as it knows, and its peers refuse its syncs, so its
        // roster says nothing about the members' agreement.
        let settled: Vec<u32> = (0..self.machines.len() as u32)
            .filter(|&i| {
                let m = &self.machines[i as usize];
                m.running()
                    && !m.revoked
                    && !m.hostile
                    && m.running_since + 30 * MIN <= now
                    && m.node.as_ref().is_some_and(|n| n.roster().is_active(&m.id))
            })
            .collect();
        let mut count: BTreeMap<[u8; 32], (usize, u32)> = BTreeMap::new();
        for &i in &settled {
            let e = count
                .entry(self.machines[i as usize].digest)
                .or_insert((0, i));
            e.0 += 1;
        }
        let Some((&top, &(_, holder))) = count.iter().max_by_key(|(d, (n, _))| (*n, **d)) else {
            return;
        };
        let Some(reference) = self.machines[holder as usize].node.as_ref() else {
            return;
        };
        let r = reference.roster();
        let members: Vec<u32> = settled
            .into_iter()
            .filter(|&i| r.is_active(&self.machines[i as usize].id))
            .collect();
        let odd = members
            .iter()
            .find(|&&i| self.machines[i as usize].digest != top)
            .copied();
        self.checks.passed(inv::CONVERGE, members.len() as u64);
        if let Some(i) = odd {
            let k = count.len();
            let lens: Vec<String> = members
                .iter()
                .filter_map(|&j| {
                    let n = self.machines[j as usize].node.as_ref()?;
                    Some(format!("n{j}: {} ops", n.roster().len_ops()))
                })
                .collect();
            self.checks.check(inv::CONVERGE, false, &[i], || {
                format!(
                    "{k} different rosters among settled members (n{i} differs; {})",
                    lens.join(", ")
                )
            });
        }
    }

    /// Owners with at least T guardians inside a random fifth of the
    /// machines.
    fn collusion_exposed(&mut self) -> f64 {
        let n = self.machines.len();
        let bad: Vec<bool> = (0..n).map(|_| self.rng.gen_bool(0.2)).collect();
        let owners: Vec<_> = self
            .machines
            .iter()
            .filter_map(|m| m.token.as_ref())
            .collect();
        let exposed = owners
            .iter()
            .filter(|t| t.guardians.iter().filter(|g| bad[g.0 as usize]).count() >= t.threshold)
            .count();
        exposed as f64 / owners.len().max(1) as f64
    }
}

fn fmt_map(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl WorldSummary {
    pub fn table(&self) -> String {
        let mut o = String::new();
        let mut row = |k: &str, v: String| o += &format!("  {k:<40} {v}\n");
        row(
            "scenario",
            format!(
                "{} — {} nodes ({} at end), {} h, seed {}",
                self.scenario, self.nodes, self.nodes_at_end, self.hours, self.seed
            ),
        );
        row(
            "boots (legitimate) / unlock attempts",
            format!(
                "{} ({}) / {}",
                self.boots, self.legit_boots, self.unlock_attempts
            ),
        );
        row(
            "unlocked with shares",
            format!(
                "{} ({} by themselves, {} after an admin's approval)",
                self.unlocked, self.unlocked_auto, self.unlocked_after_approval
            ),
        );
        row(
            "passphrase unlocks by an admin",
            self.passphrase.to_string(),
        );
        let secs = |ms: Millis| format!("{:.2} s", ms as f64 / 1e3);
        row(
            "unlock time, by themselves: median / p99",
            format!(
                "{} / {}",
                secs(self.unlock_auto_median_ms),
                secs(self.unlock_auto_p99_ms)
            ),
        );
        row(
            "unlock time, all: median / p99",
            format!(
                "{} / {}",
                secs(self.unlock_median_ms),
                secs(self.unlock_p99_ms)
            ),
        );
        row("still locked at end", fmt_map(&self.locked_at_end_by));
        row("shares released", self.releases.to_string());
        row("share requests refused, by rule", fmt_map(&self.refusals));
        row(
            "copied boot keys: attempts / shares out",
            format!(
                "{} / {} (refused: {}; alerts {})",
                self.copy_attacks,
                self.copied_released,
                fmt_map(&self.copied_refused),
                self.copy_alerts
            ),
        );
        row("strangers refused at the gate", self.strangers.to_string());
        if self.thefts > 0 {
            row(
                "thefts: booted / unlocked",
                format!("{} / {}", self.thefts, self.thefts_unlocked),
            );
        }
        row(
            "churn",
            format!(
                "{} reboots, {} crashes, {} joins, {} revocations, {} binds ({} failed), {} approvals, {} partitions, {} seized",
                self.reboots, self.crashes, self.joins, self.revocations, self.binds, self.binds_failed, self.approvals, self.partitions, self.seized
            ),
        );
        let t = &self.traffic;
        row(
            "messages (keywardd's: dials, pings, req/resp, gossip + control)",
            format!(
                "{} dials, {} pings, {} requests, {} responses, {} gossip + {} control",
                t.dials, t.pings, t.requests, t.responses, t.gossip, t.control
            ),
        );
        row(
            "messages per node per hour",
            format!("{:.1}", self.messages_per_node_hour),
        );
        row(
            "bytes per node per hour (estimated)",
            format!("{:.0}", self.bytes_per_node_hour),
        );
        row(
            "connections per node: end mean / end max / peak",
            format!(
                "{:.1} / {} / {} (largest overlay {})",
                self.connections_mean_end,
                self.connections_max_end,
                self.peak_connections,
                self.peak_wanted
            ),
        );
        let ms = |v: Option<Millis>| v.map_or("never".to_string(), |v| format!("{v} ms"));
        for r in &self.reach {
            row(
                &format!("{} reached 99% / 100% of {}", r.what, r.nodes),
                format!("{} / {}", ms(r.p99_ms), ms(r.all_ms)),
            );
        }
        if let Some(h) = &self.hostile {
            row(
                "hostile moves",
                format!(
                    "{}: {} minted by the auditor, {} sybils, {} endorsements, {} rekeys, {} revocations of honest members, {} approvals sent",
                    h.moves, h.auditor_mints, h.sybils_minted, h.endorsements, h.rekeys, h.revocations_of_honest, h.approvals_sent
                ),
            );
            row(
                "founder revoked the hostile members at",
                h.revoked_at.map_or("never".into(), crate::trace::clock),
            );
            row(
                "seized: releases on hostile approvals",
                format!(
                    "{} ({} servers opened)",
                    h.seized_releases_on_hostile_approval, h.seized_opened
                ),
            );
        }
        if let Some(l) = &self.logs {
            row(
                "logs: segments sealed / replicated checks",
                format!("{} / {}", l.segments, l.replicated_checks),
            );
            row(
                "logs: witness records / evidence kept",
                format!("{} / {}", l.witness_records, l.evidence),
            );
            row(
                "logs: restored from old backups / judged / reported",
                format!("{} / {} / {}", l.restores, l.restores_judged, l.reported),
            );
        }
        row(
            "roster ops: most on a replica / bound",
            format!("{} / {}", self.max_roster_ops, self.roster_bound),
        );
        row(
            "invariant checks run",
            self.invariant_checks_total.to_string(),
        );
        for (k, v) in &self.invariant_checks {
            row(&format!("  {k}"), v.to_string());
        }
        row("events", self.events.to_string());
        row("trace hash", self.trace_hash.clone());
        o
    }
}
