//! The event trace: a compact record per notable event, a running hash of
//! all of them (same seed, same hash) and a ring of the most recent ones,
//! printed when an invariant fails.

use std::collections::VecDeque;

use keyward_core::guardian::Millis;

/// What happened; `a` and `b` of a [`Rec`] are read per kind (machine
/// numbers unless said otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// a = machine: its node's timer fired.
    Timer = 1,
    /// a dials b.
    Dial,
    /// a's dial of b connected.
    Connect,
    /// a sends b a request.
    Request,
    /// a answers b's request.
    Response,
    /// The a-b connection closed.
    Close,
    /// a's keywardd started.
    DaemonUp,
    /// a lost power (or stopped).
    PowerOff,
    /// a powered on.
    PowerOn,
    /// a's keyscript started `keyward-unlock` attempt b.
    Attempt,
    /// a unlocked with shares after b ms.
    Unlocked,
    /// a's keyscript gave up (exit 3).
    Hopeless,
    /// a was bound, epoch b.
    Bound,
    /// a was seized, off for b ms.
    Seize,
    /// a joined.
    Joined,
    /// An admin on a revoked b.
    Revoked,
    /// The network split, a machines on the minority side.
    Partition,
    Heal,
    /// Guardian a released b's share.
    Release,
    /// Guardian a refused b's request.
    Refuse,
    /// a rebooted cleanly.
    Reboot,
    /// a crashed for b ms.
    Crash,
    /// An admin on a approved b.
    Approve,
    /// An admin typed the passphrase at a.
    Passphrase,
    /// An admin on a locked the mesh down (b = 1) or lifted it (b = 0).
    Lock,
    /// Every machine lost power.
    Outage,
    /// a was stolen.
    Theft,
    /// Hostile machine a made move b (`hostile::Move`).
    Hostile,
    /// The founder a revoked the hostile members.
    HostileRevoke,
    /// A copy of a's boot key asked its guardians.
    CopyAttack,
}

impl Kind {
    pub fn name(self) -> &'static str {
        use Kind::*;
        match self {
            Timer => "node-timer",
            Dial => "dial",
            Connect => "connect",
            Request => "request",
            Response => "response",
            Close => "close",
            DaemonUp => "daemon-up",
            PowerOff => "power-off",
            PowerOn => "power-on",
            Attempt => "unlock-attempt",
            Unlocked => "UNLOCKED",
            Hopeless => "hopeless",
            Bound => "bound",
            Seize => "seize",
            Joined => "joined",
            Revoked => "revoke",
            Partition => "partition",
            Heal => "heal",
            Release => "RELEASE",
            Refuse => "REFUSE",
            Reboot => "reboot",
            Crash => "crash",
            Approve => "approve",
            Passphrase => "passphrase-unlock",
            Lock => "lock",
            Outage => "outage",
            Theft => "theft",
            Hostile => "HOSTILE",
            HostileRevoke => "revoke-hostile",
            CopyAttack => "copied-boot-key",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Rec {
    /// Number of the event this record belongs to.
    pub n: u64,
    pub t: Millis,
    pub kind: Kind,
    pub a: u64,
    pub b: u64,
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
    pub fn involves(&self, nodes: &[u64]) -> bool {
        nodes.contains(&self.a) || nodes.contains(&self.b)
    }

    pub fn line(&self) -> String {
        format!(
            "#{:<9} {} {:<18} a={} b={}",
            self.n,
            clock(self.t),
            self.kind.name(),
            self.a,
            self.b
        )
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

    pub fn push(&mut self, r: Rec) {
        // FNV-1a over the record's words.
        for v in [r.n, r.t, r.kind as u64, r.a, r.b] {
            for byte in v.to_le_bytes() {
                self.hash ^= byte as u64;
                self.hash = self.hash.wrapping_mul(0x100_0000_01b3);
            }
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
    pub fn last(&self, nodes: &[u64], n: usize) -> Vec<Rec> {
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
