//! The event trace: a compact record per event, a running hash of all of
//! them (same seed, same hash) and a ring of the most recent ones, printed
//! when an invariant fails.

use std::collections::VecDeque;

use keyward_core::guardian::Millis;

use crate::net::ATTACKER;

/// What happened; `a`, `b` and `x` of a [`Rec`] are read per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    // message deliveries: a = from, b = to
    Ping,
    Bye,
    Request,
    Released,
    Refused,
    Deposit,
    Ack,
    Drop,
    Gossip,
    Sync,
    Approve,
    Lock,
    /// A message reached a node that was down; x = message kind.
    ToDown,
    // timers: a = node
    PingTimer,
    SyncTimer,
    BootTry,
    Initramfs,
    DaemonUp,
    PowerOn,
    DepositRetry,
    // scenario and admin actions
    Crash,
    Reboot,
    Join,
    Revoke,
    Readmit,
    Stranger,
    CopyAttack,
    Partition,
    Heal,
    Seize,
    Outage,
    PowerBack,
    Passphrase,
    AdminApprove,
    Lockdown,
    Lift,
    Review,
    // effects: what the guardian or a node decided
    /// a = guardian, b = owner, x = 1 if the requester was an attacker
    Release,
    /// a = guardian, b = owner, x = rule index
    Refuse,
    /// a = node, x = unlock time in ms
    Unlocked,
    /// a = node, x = epoch
    Rebound,
    /// a = node, x = new roster ops merged
    RosterGrew,
    /// a = hostile node, x = move (`hostile::Move`)
    Hostile,
    /// a = the founder, x = hostile members revoked
    HostileRevoke,
}

impl Kind {
    pub fn name(self) -> &'static str {
        use Kind::*;
        match self {
            Ping => "ping",
            Bye => "going-down",
            Request => "share-request",
            Released => "share-released",
            Refused => "share-refused",
            Deposit => "deposit",
            Ack => "deposit-ack",
            Drop => "drop",
            Gossip => "roster-gossip",
            Sync => "roster-sync",
            Approve => "approve",
            Lock => "lock-state",
            ToDown => "to-down-node",
            PingTimer => "ping-timer",
            SyncTimer => "sync-timer",
            BootTry => "boot-try",
            Initramfs => "initramfs",
            DaemonUp => "daemon-up",
            PowerOn => "power-on",
            DepositRetry => "deposit-retry",
            Crash => "crash",
            Reboot => "reboot",
            Join => "join",
            Revoke => "revoke",
            Readmit => "self-readmit",
            Stranger => "stranger-request",
            CopyAttack => "copied-boot-key",
            Partition => "partition",
            Heal => "heal",
            Seize => "seize",
            Outage => "outage",
            PowerBack => "power-back",
            Passphrase => "passphrase-unlock",
            AdminApprove => "admin-approve",
            Lockdown => "lockdown",
            Lift => "lift",
            Review => "admin-review",
            Release => "RELEASE",
            Refuse => "REFUSE",
            Unlocked => "UNLOCKED",
            Rebound => "rebound",
            RosterGrew => "roster-grew",
            Hostile => "HOSTILE",
            HostileRevoke => "revoke-hostile",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Rec {
    /// Number of the event this record belongs to.
    pub n: u64,
    pub t: Millis,
    pub kind: Kind,
    pub a: u32,
    pub b: u32,
    pub x: u64,
}

pub const NONE: u32 = u32::MAX - 1;

pub fn node_name(i: u32) -> String {
    match i {
        ATTACKER => "attacker".into(),
        NONE => "-".into(),
        i => format!("n{i}"),
    }
}

/// `hh:mm:ss.mmm` of virtual time.
pub fn clock(t: Millis) -> String {
    let s = t / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        t % 1000
    )
}

impl Rec {
    pub fn involves(&self, nodes: &[u32]) -> bool {
        nodes.contains(&self.a) || nodes.contains(&self.b)
    }

    pub fn line(&self) -> String {
        let mut s = format!(
            "#{:<9} {} {:<18} {:>6} -> {:<6}",
            self.n,
            clock(self.t),
            self.kind.name(),
            node_name(self.a),
            node_name(self.b)
        );
        match self.kind {
            Kind::Refuse | Kind::Refused => {
                s += &format!(" rule={}", crate::report::RULES[self.x as usize])
            }
            Kind::Unlocked => s += &format!(" after {} ms", self.x),
            Kind::Rebound => s += &format!(" epoch={}", self.x),
            Kind::Release if self.x == 1 => s += " (to an attacker)",
            _ if self.x != 0 => s += &format!(" x={}", self.x),
            _ => {}
        }
        s
    }
}

pub struct Trace {
    ring: VecDeque<Rec>,
    cap: usize,
    hash: u64,
    pub records: u64,
    /// Print every record as it happens (`--trace`).
    pub print: bool,
}

impl Trace {
    pub fn new(cap: usize, print: bool) -> Self {
        Trace {
            ring: VecDeque::with_capacity(cap),
            cap,
            hash: 0xcbf2_9ce4_8422_2325,
            records: 0,
            print,
        }
    }

    fn mix(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    /// Folds message contents into the hash without a record: the trace
    /// hash then changes if any deterministic byte of a message does.
    pub fn absorb(&mut self, words: &[u64]) {
        for &w in words {
            self.mix(w);
        }
    }

    /// Folds raw bytes (8 at a time) into the hash.
    pub fn absorb_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
    }

    pub fn push(&mut self, r: Rec) {
        for w in [r.n, r.t, r.kind as u64, r.a as u64, r.b as u64, r.x] {
            self.mix(w);
        }
        self.records += 1;
        if self.print {
            println!("{}", r.line());
        }
        if self.ring.len() == self.cap {
            self.ring.pop_front();
        }
        self.ring.push_back(r);
    }

    /// A digest of every record so far: equal runs have equal hashes.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The last `n` records that involve any of `nodes` (all if empty).
    pub fn last(&self, nodes: &[u32], n: usize) -> Vec<Rec> {
        let mut v: Vec<Rec> = self
            .ring
            .iter()
            .rev()
            .filter(|r| nodes.is_empty() || r.involves(nodes))
            .take(n)
            .copied()
            .collect();
        v.reverse();
        v
    }
}
