//! `keyward epochs` and `keyward drop-epoch`: the share epochs this node
//! handed out, which binding uses each, and cleaning up what none uses.
//!
//! Every bind or rebind deals a new epoch of shares. An epoch is *bound*
//! when a keyward token on one of this node's devices names it; *old-key*
//! when that token is kept only for the old boot key during a boot-key
//! change (until the initramfs carries the new key); *orphan* when a
//! guardian holds it but no token names it (an interrupted bind, a drop a
//! guardian never confirmed). Orphan keyslots are slots an interrupted bind
//! added that no token names; the pending-bind record says which.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use keyward_node::config::Config;
use keyward_node::control::GuardianAnswer;
use keyward_node::identity::BootKey;
use keyward_node::luks::{Device, Token};
use keyward_node::roster::Role;

use crate::bind::{bound_devices, drop_epoch, retire};
use crate::initramfs::{self, Carried};
use crate::pending::{self, Pending};
use keyward_node::keyfile::KeyFile;

#[derive(Args)]
pub struct EpochsArgs {
    /// Drop orphan epochs at the guardians holding them and remove orphan
    /// keyslots left by an interrupted bind.
    #[arg(long)]
    pub drop_orphans: bool,
    /// File holding a passphrase of the device (to remove orphan keyslots;
    /// else asked on the terminal when there are any).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct DropArgs {
    /// Epochs to retire: an old-key binding's epoch (after
    /// `rebind --new-boot-key` and `update-initramfs -u`) or an orphan.
    #[arg(required = true)]
    pub epochs: Vec<u64>,
    /// File holding a passphrase of the device (else asked on the terminal).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Retire an old-key epoch although the initramfs is not known to carry
    /// the new boot key (the next boot then needs the passphrase).
    #[arg(long)]
    pub force: bool,
}

/// One keyward token on one of this node's devices.
struct Binding {
    device: PathBuf,
    tid: u32,
    token: Token,
    /// The device's newest token: what it is bound to now.
    newest: bool,
    /// Its boot key is not the current one.
    old_key: bool,
}

/// Every keyward token on the bound devices. A device that cannot be read
/// is an error: its epochs would otherwise look orphaned.
fn bindings(cfg: &Config) -> anyhow::Result<Vec<Binding>> {
    let me = BootKey::load(&cfg.boot_key)
        .map(|b| hex::encode(b.public().sign))
        .ok();
    let mut out = Vec::new();
    for d in bound_devices(cfg) {
        let tokens = Device::new(&d).tokens_direct().with_context(|| {
            format!(
                "reading the keyward tokens of {} (listed in {}); make it readable, or `keyward unbind` it, before epochs can be told apart",
                d.display(),
                cfg.state_dir.join("bound-devices").display()
            )
        })?;
        let last = tokens.len();
        for (i, (tid, token)) in tokens.into_iter().enumerate() {
            let newest = i + 1 == last;
            let old_key = match (&token.boot, &me) {
                (Some(k), Some(m)) => k != m,
                // A token from before tokens named their key: old once a
                // newer token exists on the device.
                _ => !newest,
            };
            out.push(Binding {
                device: d.clone(),
                tid,
                token,
                newest,
                old_key,
            });
        }
    }
    Ok(out)
}

/// Which guardians hold which of our epochs; and the guardians that did
/// not say, with why.
struct Held {
    by_epoch: BTreeMap<u64, Vec<String>>,
    silent: Vec<(String, String)>,
    answered: BTreeSet<String>,
    names: BTreeMap<String, String>,
}

fn held(cfg: &Config) -> anyhow::Result<Held> {
    let client = crate::client(cfg);
    let status = client.status()?;
    let names: BTreeMap<String, String> =
        status.members.into_iter().map(|m| (m.id, m.name)).collect();
    let r = client.held()?;
    let mut h = Held {
        by_epoch: BTreeMap::new(),
        silent: vec![],
        answered: BTreeSet::new(),
        names,
    };
    for (g, v) in r.results {
        match v {
            GuardianAnswer::Held { epochs } => {
                h.answered.insert(g.clone());
                for e in epochs {
                    h.by_epoch.entry(e).or_default().push(g.clone());
                }
            }
            other => h.silent.push((g, other.to_string())),
        }
    }
    Ok(h)
}

impl Held {
    fn name(&self, id: &str) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

/// Keyslots an unfinished run added that no keyward token names.
fn orphan_slots(p: &Pending) -> anyhow::Result<Vec<u32>> {
    let dev = Device::new(&p.device);
    let named: BTreeSet<u32> = dev
        .tokens()?
        .iter()
        .flat_map(|(_, t)| t.keyslots.iter().filter_map(|s| s.parse().ok()))
        .collect();
    Ok(dev
        .keyslots()?
        .into_iter()
        .filter(|s| !p.slots_before.contains(s) && !named.contains(s))
        .collect())
}

pub fn epochs(cfg: &Config, a: &EpochsArgs) -> anyhow::Result<()> {
    let _lock = a
        .drop_orphans
        .then(|| pending::lock(&cfg.state_dir))
        .transpose()?;
    let binds = bindings(cfg)?;
    let h = held(cfg)?;
    let records = pending::all(&cfg.state_dir)?;
    let named: BTreeSet<u64> = binds.iter().map(|b| b.token.epoch).collect();
    let mut all: BTreeSet<u64> = h.by_epoch.keys().copied().collect();
    all.extend(named.iter().copied());
    println!(
        "{:<6} {:<8} {:<40} {:<9} HELD BY",
        "EPOCH", "STATE", "DEVICE", "KEYSLOTS"
    );
    for e in all.iter().rev() {
        let holders = h
            .by_epoch
            .get(e)
            .map(|g| g.iter().map(|g| h.name(g)).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "-".into());
        match binds.iter().find(|b| b.token.epoch == *e) {
            Some(b) => println!(
                "{:<6} {:<8} {:<40} {:<9} {holders}",
                e,
                if b.old_key { "old-key" } else { "bound" },
                b.device.display().to_string(),
                b.token.keyslots.join(",")
            ),
            None => println!("{:<6} {:<8} {:<40} {:<9} {holders}", e, "orphan", "-", "-"),
        }
    }
    for (g, why) in &h.silent {
        println!("guardian {} did not answer: {why}", h.name(g));
    }
    let mut slots: Vec<(Pending, Vec<u32>)> = Vec::new();
    for p in &records {
        let s = orphan_slots(p).unwrap_or_default();
        println!(
            "unfinished: {}{}",
            p.describe(),
            if s.is_empty() {
                String::new()
            } else {
                format!(
                    "; orphan keyslot(s) {} on {}",
                    s.iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    p.device.display()
                )
            }
        );
        slots.push((p.clone(), s));
    }
    let orphans: Vec<u64> = h
        .by_epoch
        .keys()
        .filter(|e| !named.contains(e))
        .copied()
        .collect();
    let has_slots = slots.iter().any(|(_, s)| !s.is_empty());
    if !a.drop_orphans {
        if !orphans.is_empty() || has_slots || !records.is_empty() {
            println!("run `keyward epochs --drop-orphans --key-file FILE` to drop them");
        }
        return Ok(());
    }
    // Orphan keyslots first: a slot whose shares are gone opens nothing,
    // but it should not outlive the shares by a failure here.
    let mut clean: BTreeSet<u64> = BTreeSet::new();
    for (p, s) in &slots {
        if s.is_empty() {
            clean.insert(p.epoch);
            continue;
        }
        let dev = Device::new(&p.device);
        let pass = crate::passphrase(a.key_file.as_deref(), &p.device)?;
        dev.test_key(&pass, None)
            .context("that passphrase does not open the device")?;
        for slot in s {
            if dev.test_key(&pass, Some(*slot)).is_ok() {
                bail!("that passphrase opens keyslot {slot}, which this tool took for an orphan; nothing removed. Give the passphrase of another keyslot");
            }
        }
        for slot in s {
            dev.kill_slot(*slot, &pass)
                .with_context(|| format!("removing orphan keyslot {slot}"))?;
            println!("removed orphan keyslot {slot} of {}", p.device.display());
        }
        clean.insert(p.epoch);
    }
    let mut confirmed: BTreeSet<u64> = BTreeSet::new();
    for e in &orphans {
        let holders = h.by_epoch.get(e).cloned().unwrap_or_default();
        let failed = drop_epoch(cfg, *e, holders.clone())?;
        if failed.is_empty() {
            confirmed.insert(*e);
            println!(
                "dropped orphan epoch {e} at {}",
                holders
                    .iter()
                    .map(|g| h.name(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else {
            println!(
                "epoch {e}: not confirmed by {}; run this again later",
                failed.join("; ")
            );
        }
    }
    // A record goes once its keyslot is gone and every guardian it sent
    // shares to answered and holds nothing of it any more.
    for p in &records {
        let holds = h.by_epoch.get(&p.epoch).is_some_and(|g| !g.is_empty());
        let all_answered = p.guardians.iter().all(|g| h.answered.contains(g));
        if clean.contains(&p.epoch) && all_answered && (!holds || confirmed.contains(&p.epoch)) {
            p.remove(&cfg.state_dir)?;
        } else if clean.contains(&p.epoch) {
            println!(
                "kept the record of epoch {}: not every guardian it dealt to answered; run this again when they are up",
                p.epoch
            );
        }
    }
    Ok(())
}

pub fn drop_epochs(cfg: &Config, a: &DropArgs) -> anyhow::Result<()> {
    let _lock = pending::lock(&cfg.state_dir)?;
    let binds = bindings(cfg)?;
    let carried = initramfs::carried(&cfg.boot_key);
    let mut pass: BTreeMap<PathBuf, zeroize::Zeroizing<Vec<u8>>> = BTreeMap::new();
    let mut passphrase = |device: &Path| -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
        if let Some(p) = pass.get(device) {
            return Ok(p.clone());
        }
        let p = crate::passphrase(a.key_file.as_deref(), device)?;
        Device::new(device)
            .test_key(&p, None)
            .context("that passphrase does not open the device")?;
        pass.insert(device.to_path_buf(), p.clone());
        Ok(p)
    };
    for e in &a.epochs {
        if let Some(b) = binds.iter().find(|b| b.token.epoch == *e) {
            if b.newest {
                bail!(
                    "epoch {e} is what {} opens with now; `keyward rebind --device {0}` moves it to a new epoch, `keyward unbind --device {0}` removes it",
                    b.device.display()
                );
            }
            if b.old_key && carried != Carried::Current && !a.force {
                let why = match carried {
                    Carried::Unknown => format!(
                        "nothing says the initramfs carries the new boot key ({} is missing; keyward's initramfs hook writes it)",
                        initramfs::marker_path(&cfg.boot_key).display()
                    ),
                    _ => "the initramfs still carries the old boot key".to_string(),
                };
                bail!(
                    "{why}, and only epoch {e} opens {} with it: dropping it now leaves the next boot without a key (the passphrase would be needed). Run `update-initramfs -u` first (or add --force)",
                    b.device.display()
                );
            }
            let p = passphrase(&b.device)?;
            retire(cfg, &Device::new(&b.device), b.tid, &b.token, &p)?;
            println!(
                "dropped epoch {e}: keyslot {} and its token removed from {}, guardians asked to forget its shares",
                b.token.keyslots.join(","),
                b.device.display()
            );
            continue;
        }
        // Not bound anywhere: an orphan. Every guardian is asked (dropping
        // is idempotent), and an unfinished run's keyslot goes too.
        if let Some(p) = pending::all(&cfg.state_dir)?
            .into_iter()
            .find(|p| p.epoch == *e)
        {
            let slots = orphan_slots(&p)?;
            if !slots.is_empty() {
                let pw = passphrase(&p.device)?;
                let dev = Device::new(&p.device);
                for s in &slots {
                    if dev.test_key(&pw, Some(*s)).is_ok() {
                        bail!("that passphrase opens keyslot {s}; give the passphrase of another keyslot");
                    }
                }
                for s in slots {
                    dev.kill_slot(s, &pw)?;
                    println!("removed orphan keyslot {s} of {}", p.device.display());
                }
            }
            p.remove(&cfg.state_dir)?;
        }
        let status = crate::client(cfg).status()?;
        let me = status.node.id;
        let gs: Vec<String> = status
            .members
            .into_iter()
            .filter(|m| m.role == Role::Guardian && m.id != me)
            .map(|m| m.id)
            .collect();
        let failed = drop_epoch(cfg, *e, gs)?;
        if failed.is_empty() {
            println!("dropped orphan epoch {e} at every guardian");
        } else {
            println!(
                "epoch {e}: not confirmed by {}; run this again later",
                failed.join("; ")
            );
        }
    }
    Ok(())
}

/// What `keyward status` adds from this machine: unfinished binds, and a
/// boot-key change waiting for the initramfs or for the old epoch to go.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let mut w = Vec::new();
    match pending::all(&cfg.state_dir) {
        Ok(recs) => {
            for p in recs {
                w.push(format!(
                    "{}: run `keyward epochs` to see what it left, `keyward epochs --drop-orphans --key-file FILE` to clean it",
                    p.describe()
                ));
            }
        }
        Err(e) => w.push(format!("{e:#}")),
    }
    let binds = match bindings(cfg) {
        Ok(b) => b,
        Err(e) => {
            w.push(format!("{e:#}"));
            return w;
        }
    };
    let carried = initramfs::carried(&cfg.boot_key);
    for b in binds.iter().filter(|b| b.old_key) {
        let (e, d) = (b.token.epoch, b.device.display());
        if b.newest {
            w.push(format!(
                "{d} is bound to an old boot key (epoch {e}) and will stop opening once the initramfs carries the new one: run `keyward rebind --device {d}`"
            ));
            continue;
        }
        w.push(match carried {
            Carried::Current => format!(
                "the initramfs carries the new boot key, but the old one (and any copy of it) still opens epoch {e} on {d}: run `keyward drop-epoch {e}`"
            ),
            Carried::Other => format!(
                "the initramfs still carries the old boot key, which opens epoch {e} on {d}: run `update-initramfs -u`, then `keyward drop-epoch {e}`"
            ),
            Carried::Unknown => format!(
                "cannot tell whether the initramfs carries the new boot key ({} is missing; keyward's initramfs hook writes it); the old key still opens epoch {e} on {d}: run `update-initramfs -u`, then `keyward drop-epoch {e}`",
                initramfs::marker_path(&cfg.boot_key).display()
            ),
        });
    }
    w
}
