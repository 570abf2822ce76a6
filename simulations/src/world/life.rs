//! Machines' lives: keywardd starting and stopping, power, crashes, and
//! boots through the initramfs's `UnlockClient` as the keyscript runs it.

use super::*;

impl World {
    pub(super) fn daemon_up(&mut self, m: u32) {
        let now = self.local(m);
        let seed: [u8; 32] = self.rng.gen();
        let mut stored = self.machines[m as usize].disk.stored();
        stored.verified = self.verify_disk(m);
        let mm = &mut self.machines[m as usize];
        let cfg = NodeConfig {
            key: NodeKey::from_secret(&mm.key.secret()),
            me: mm.me.clone(),
            policy: self.cfg.policy,
            clock_floor: T0 - DAY,
            bootstrap: false,
            seed,
            merges: Some(self.merges.clone()),
        };
        let node = Node::new(cfg, stored, now);
        mm.node = Some(node);
        mm.phase = Phase::Running;
        mm.inc += 1;
        mm.running_since = self.q.now();
        mm.asking_since = None;
        self.rec(Kind::DaemonUp, m as u64, 0);
        self.watch.dirty.insert(m);
        self.logs_up(m);
        self.input(m, Input::Listening(vec![format!("/sim/{m}")]));
    }

    /// Power off: nothing is said, uncommitted writes are lost.
    pub(super) fn power_off(&mut self, m: u32) {
        self.close_all(m);
        let now = self.now();
        let mm = &mut self.machines[m as usize];
        if mm.committing.take().is_some() {
            self.stats.writes_lost += 1;
        }
        mm.node = None;
        mm.client = None;
        mm.phase = Phase::Down;
        mm.inc += 1;
        mm.timer_at = None;
        mm.client_at = None;
        mm.members = Default::default();
        mm.subscribed = false;
        mm.mesh.clear();
        mm.verdicts.clear();
        mm.ctl.clear();
        mm.leaving = false;
        mm.down_since = now;
        self.rec(Kind::PowerOff, m as u64, 0);
    }

    pub(super) fn crash(&mut self, m: u32, down: Option<Millis>) {
        if self.machines[m as usize].phase == Phase::Down {
            return;
        }
        self.power_off(m);
        if let Some(d) = down {
            self.q.after(d, Ev::PowerOn { m });
        }
    }

    /// A clean reboot: keywardd says goodbye, waits for the answers (at
    /// most `GOODBYE_WAIT`), writes what changed, exits.
    pub(super) fn shutdown(&mut self, m: u32, down: Millis) {
        if !self.machines[m as usize].running() {
            return;
        }
        let mm = &mut self.machines[m as usize];
        mm.leaving = true;
        if let Some(n) = mm.node.as_mut() {
            n.goodbye();
        }
        let inc = mm.inc;
        self.q.after(GOODBYE_WAIT, Ev::ShutdownDone { m, inc });
        self.q.after(GOODBYE_WAIT + down, Ev::PowerOn { m });
        self.drain(m);
    }

    pub(super) fn finish_shutdown(&mut self, m: u32) {
        let now = self.local(m);
        let mm = &mut self.machines[m as usize];
        mm.leaving = false;
        if let Some((_, w)) = mm.committing.take() {
            mm.disk.apply(w, &mut self.disks);
        }
        if let Some(n) = mm.node.as_mut() {
            n.persist();
            // The store is flushed before exit: every write lands.
            while let Some(o) = n.poll_output() {
                if let Output::Write { write, .. } = o {
                    mm.disk.apply(write, &mut self.disks);
                }
            }
            let _ = now;
        }
        self.power_off(m);
    }

    pub(super) fn power_on(&mut self, m: u32) {
        let mm = &mut self.machines[m as usize];
        if mm.phase != Phase::Down {
            return;
        }
        mm.phase = Phase::Booting;
        mm.inc += 1;
        let inc = mm.inc;
        self.rec(Kind::PowerOn, m as u64, 0);
        let d = self.uniform(15 * SEC, 45 * SEC);
        self.q.after(d, Ev::Initramfs { m, inc });
    }

    pub(super) fn initramfs(&mut self, m: u32) {
        self.stats.boots += 1;
        let now = self.now();
        let mm = &mut self.machines[m as usize];
        mm.asking_since = Some(now);
        mm.attempts = 0;
        mm.approved = false;
        if mm.legit() {
            self.stats.legit_boots += 1;
        }
        if mm.token.is_none() {
            mm.phase = Phase::Prompt;
            mm.inc += 1;
            return;
        }
        mm.phase = Phase::Unlocking;
        mm.inc += 1;
        self.attempt(m);
    }

    /// One `keyward-unlock` run, as the keyscript starts it.
    pub(super) fn attempt(&mut self, m: u32) {
        let Some(plan) = self.machines[m as usize].plan() else {
            return;
        };
        self.stats.attempts += 1;
        let seed: [u8; 32] = self.rng.gen();
        let now = self.local(m);
        let world_now = self.now();
        let mm = &mut self.machines[m as usize];
        mm.attempts += 1;
        mm.got.clear();
        // the keyscript's `--waited`: since this boot's first attempt
        let waited = mm.asking_since.map_or(0, |t| world_now.saturating_sub(t));
        let opts = ClientOptions {
            timeout: ATTEMPT,
            verbose: false,
            waited,
        };
        match unlock::UnlockClient::new(plan, opts, mm.boot_key.clone(), seed, now) {
            Ok(c) => mm.client = Some(c),
            Err(_) => {
                mm.phase = Phase::Prompt;
                mm.inc += 1;
                return;
            }
        }
        let attempts = mm.attempts as u64;
        self.rec(Kind::Attempt, m as u64, attempts);
        self.drain_client(m);
    }

    pub(super) fn drain_client(&mut self, m: u32) {
        loop {
            let Some(o) = self.machines[m as usize]
                .client
                .as_mut()
                .and_then(|c| c.poll_output())
            else {
                break;
            };
            match o {
                unlock::Output::Send {
                    guardian, request, ..
                } => match self.ids.get(&guardian).copied() {
                    Some(g) => self.send_req(m, g, *request, Reply::Client(guardian)),
                    None => self.fail(m, guardian, Reply::Client(guardian), "unknown".into(), true),
                },
                unlock::Output::Probe { .. } | unlock::Output::Print(_) => {}
                unlock::Output::Done(r) => return self.unlock_done(m, r),
            }
        }
        let mm = &self.machines[m as usize];
        let Some(t) = mm.client.as_ref().and_then(|c| c.poll_timeout()) else {
            return;
        };
        let at = self.world_of(m, t);
        let mm = &mut self.machines[m as usize];
        if mm.client_at.is_none_or(|x| at < x) {
            mm.client_at = Some(at);
            let inc = mm.inc;
            self.q.at(at, Ev::ClientTimer { m, inc, at });
        }
    }

    pub(super) fn unlock_done(
        &mut self,
        m: u32,
        r: Result<keyward_core::shares::DiskSecret, UnlockError>,
    ) {
        let mm = &mut self.machines[m as usize];
        mm.client = None;
        mm.client_at = None;
        // The client exits: its connections close.
        self.close_all(m);
        match r {
            Ok(secret) => {
                let ok = self.machines[m as usize]
                    .token
                    .as_ref()
                    .is_some_and(|t| &t.secret == secret.as_bytes());
                self.checks.check(inv::UNLOCK_KEY, ok, &[m], || {
                    format!("n{m}: the unlock client's key is not the disk key")
                });
                // A seized server may open only on a hostile member's
                // approval its guardians could not know was revoked (the
                // loss the revocation bounds; see `hostile`).
                let seized = self.machines[m as usize].seized
                    && !self.hostile.as_ref().is_some_and(|h| h.opened.contains(&m));
                self.checks.check(inv::SEIZED_LOCKED, !seized, &[m], || {
                    format!("n{m} was seized and unlocked with shares")
                });
                let selfish = self.outage_waiting;
                self.checks.check(inv::OUTAGE_NO_SELF, !selfish, &[m], || {
                    format!("n{m} unlocked with shares after a whole-mesh outage before an admin stepped in")
                });
                let took = self.now() - self.machines[m as usize].asking_since.unwrap_or(0);
                let mm = &self.machines[m as usize];
                if mm.legit() {
                    if mm.approved {
                        self.stats.unlocked_approved += 1;
                    } else {
                        self.stats.unlocked_auto += 1;
                        self.stats.unlock_auto_ms.push(took);
                    }
                }
                if mm.stolen {
                    self.stats.thefts_unlocked += 1;
                }
                if self.outage.is_some() {
                    self.outage = Some(self.now());
                }
                self.stats.unlocked += 1;
                self.stats.unlock_ms.push(took);
                self.rec(Kind::Unlocked, m as u64, took);
                self.opened(m);
            }
            Err(UnlockError::Hopeless(_)) | Err(UnlockError::BadToken(_)) => {
                self.stats.hopeless += 1;
                let mm = &mut self.machines[m as usize];
                mm.phase = Phase::Prompt;
                mm.inc += 1;
                self.rec(Kind::Hopeless, m as u64, 0);
            }
            Err(_) => {
                let inc = self.machines[m as usize].inc;
                self.q.after(RETRY_PAUSE, Ev::Attempt { m, inc });
            }
        }
    }

    /// The disk is open: keywardd starts a few seconds later.
    pub(super) fn opened(&mut self, m: u32) {
        let mm = &mut self.machines[m as usize];
        mm.phase = Phase::Starting;
        mm.inc += 1;
        let inc = mm.inc;
        let d = self.uniform(2 * SEC, 6 * SEC);
        self.q.after(d, Ev::DaemonUp { m, inc });
    }
}
