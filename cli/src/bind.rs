//! bind / rebind / unbind: the disk side of keyward.
//!
//! Order matters so a failure never leaves a keyslot whose shares are not
//! held: shares are deposited (durably acknowledged by every guardian)
//! before the keyslot is added, the new key is proven against the device
//! before the token points at it, and an old keyslot is removed only after
//! the new one works.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine;
use clap::Args;
use keyward_node::codec;
use keyward_node::config::Config;
use keyward_node::identity::{BootKey, NodeKey};
use keyward_node::luks::{Device, Token, TokenGuardian, TOKEN_TYPE};
use keyward_node::shares::{self, DiskSecret};

use crate::pending::{self, Pending};
use keyward_node::keyfile::KeyFile;

#[derive(Args)]
pub struct BindArgs {
    /// The LUKS2 device or image.
    #[arg(long)]
    pub device: PathBuf,
    /// Shares needed to unlock (default: a majority of --shares).
    #[arg(long)]
    pub threshold: Option<usize>,
    /// Guardians to spread shares over (default: min(5, members - 1)).
    #[arg(long)]
    pub shares: Option<usize>,
    /// File holding an existing passphrase or key (else asked on the terminal).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Accept guardians reachable only at loopback addresses (127.0.0.1,
    /// ::1): a single-machine test mesh. Without it, bind refuses them,
    /// since no other machine's initramfs can reach such an address.
    #[arg(long, env = "KEYWARD_ALLOW_LOOPBACK")]
    pub allow_loopback: bool,
    /// rebind only: also replace this node's boot key (after a
    /// copied-boot-key alert); the old boot key and every copy of it
    /// become worthless. Rebuild the initramfs afterwards.
    #[arg(long)]
    pub new_boot_key: bool,
}

pub fn bind(cfg: &Config, a: &BindArgs, rebind: bool) -> anyhow::Result<()> {
    let _lock = pending::lock(&cfg.state_dir)?;
    let dev = Device::new(&a.device);
    let old = dev.token()?;
    match (&old, rebind) {
        (Some((_, t)), false) => bail!(
            "{} is already bound (epoch {}, {}-of-{}); use `keyward rebind --device {}` to re-split",
            a.device.display(),
            t.epoch,
            t.threshold,
            t.guardians.len(),
            a.device.display()
        ),
        (None, true) => bail!("{} is not bound yet; use `keyward bind`", a.device.display()),
        _ => {}
    }
    if let Some(p) = pending::for_device(&cfg.state_dir, &a.device)? {
        bail!(
            "{}: its shares (and a keyslot, if it got that far) are still there. Run `keyward epochs --drop-orphans --key-file FILE` to drop them, then this again",
            p.describe()
        );
    }
    let status = crate::client(cfg).status()?;
    let mesh = status
        .mesh
        .as_ref()
        .map(|m| m.id.clone())
        .context("this node is in no mesh yet: join one first")?;
    let node = NodeKey::load(&cfg.node_key_path())?;
    if a.new_boot_key && !rebind {
        bail!("--new-boot-key goes with `keyward rebind`");
    }
    // The passphrase is checked before anything leaves this node (a new
    // boot key, shares), so a typo costs nothing in the mesh.
    let pass = crate::passphrase(a.key_file.as_deref(), &a.device)?;
    dev.test_key(&pass, None)
        .context("that passphrase does not open the device")?;
    // A new boot key is made next to the old one and only replaces it once
    // the device is rebound; a failed run is resumed with the same key. It
    // is announced to the mesh only once shares sealed to it are held and
    // its keyslot works: until then nothing in the mesh changed.
    let new_boot_path = PathBuf::from(format!("{}.new", cfg.boot_key.display()));
    let boot = if a.new_boot_key {
        if !new_boot_path.exists() {
            BootKey::generate().save(&new_boot_path)?;
        }
        BootKey::load(&new_boot_path)?
    } else {
        BootKey::load(&cfg.boot_key)?
    };
    let me = node.id().to_string();
    // Candidates: active guardians other than us, those we could reach
    // first, then those we know an address of; the plan (how many, T) is
    // keyward-core's, shared with the simulator.
    let cands = keyward_node::bind::candidates(&status);
    let plan = keyward_node::bind::plan(&cands, a.shares, a.threshold)?;
    let (n, t) = (plan.guardians.len(), plan.threshold);
    let unaddressed: Vec<&str> = plan
        .guardians
        .iter()
        .filter(|c| c.unaddressed)
        .map(|c| c.name.as_str())
        .collect();
    if !unaddressed.is_empty() {
        eprintln!(
            "keyward: warning: no address known here yet for guardians: {} (their deposit fails; this node asks the mesh for them, try again in a minute or choose fewer with --shares)",
            unaddressed.join(", ")
        );
    }
    let mut chosen: Vec<(bool, String, String, Vec<String>)> = plan
        .guardians
        .iter()
        .map(|c| (c.down, c.name.clone(), c.id.clone(), c.addrs.clone()))
        .collect();
    token_addrs(&mut chosen, a.allow_loopback)?;
    let down: Vec<&str> = chosen
        .iter()
        .filter(|c| c.0)
        .map(|c| c.1.as_str())
        .collect();
    if !down.is_empty() {
        eprintln!(
            "keyward: warning: guardians not connected right now: {}",
            down.join(", ")
        );
    }
    let epoch = next_epoch(cfg, old.as_ref().map(|(_, t)| t.epoch))?;
    let ids: Vec<_> = chosen
        .iter()
        .map(|c| c.2.parse().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let secret = DiskSecret::generate();
    let envs = shares::split(&secret, t, &ids, epoch, &node, &boot.public())?;
    let enc: Vec<String> = envs
        .iter()
        .map(|e| codec::encode(e).map(|b| base64::engine::general_purpose::STANDARD.encode(b)))
        .collect::<Result<_, _>>()?;
    let mut record = Pending {
        device: pending::canonical(&a.device),
        epoch,
        guardians: chosen.iter().map(|c| c.2.clone()).collect(),
        slots_before: dev.keyslots()?,
        slot: None,
        new_boot_key: a.new_boot_key,
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    };
    record.save(&cfg.state_dir)?;
    eprintln!("keyward: depositing {n} shares ({t}-of-{n}, epoch {epoch}) ...");
    let results = crate::client(cfg).deposit(enc)?;
    let failed: Vec<String> = chosen
        .iter()
        .filter(|c| !results.acked(&c.2))
        .map(|c| format!("{}: {}", c.1, results.why_not(&c.2)))
        .collect();
    if !failed.is_empty() {
        // Those that did store a share of this abandoned epoch drop it.
        let stored = keyward_node::bind::abandoned(&plan, &results).unwrap_or_default();
        let left = match drop_epoch(cfg, epoch, stored) {
            Ok(f) if f.is_empty() => {
                record.remove(&cfg.state_dir)?;
                String::new()
            }
            Ok(f) => format!(
                "\nsome guardians did not confirm dropping the shares of this abandoned epoch ({}); `keyward epochs --drop-orphans` drops them later",
                f.join("; ")
            ),
            Err(e) => format!(
                "\nthe guardians were not told to drop the shares of this abandoned epoch ({e}); `keyward epochs --drop-orphans` drops them later"
            ),
        };
        bail!(
            "{} of {n} guardians did not store their share, so the disk was not changed{}:\n  {}\nbring them up (keyward peers) or choose fewer with --shares{left}",
            failed.len(),
            if a.new_boot_key {
                " and no new boot key was announced (the current one keeps working; the next run reuses the new one made)"
            } else {
                ""
            },
            failed.join("\n  ")
        );
    }
    let slot = dev
        .add_key(&pass, secret.as_bytes())
        .context("adding the keyward keyslot (is the passphrase right?); the guardians hold shares of an unused epoch: `keyward epochs --drop-orphans` drops them")?;
    record.slot = Some(slot);
    record.save(&cfg.state_dir)?;
    dev.test_key(secret.as_bytes(), Some(slot))
        .context("the new keyslot does not open the device; `keyward epochs --drop-orphans --key-file FILE` removes it and its shares")?;
    let token = Token {
        kind: TOKEN_TYPE.into(),
        keyslots: vec![slot.to_string()],
        version: 1,
        mesh,
        owner: me,
        name: status.node.name.clone(),
        epoch,
        threshold: t,
        guardians: chosen
            .iter()
            .map(|c| TokenGuardian {
                id: c.2.clone(),
                addrs: c.3.clone(),
                name: c.1.clone(),
            })
            .collect(),
        boot: Some(hex::encode(boot.public().sign)),
    };
    // With a new boot key the old token, keyslot and epoch stay: the
    // initramfs on /boot still has the old boot key until it is rebuilt,
    // and that key opens only the old epoch. `keyward drop-epoch` retires
    // them once the initramfs carries the new key.
    let retired = if a.new_boot_key {
        dev.add_token(&token)?;
        None
    } else {
        dev.set_token(&token)?;
        old.clone()
    };
    record.remove(&cfg.state_dir)?;
    if let Some((_, ot)) = retired {
        for s in ot.keyslots.iter().filter_map(|s| s.parse::<u32>().ok()) {
            if s != slot {
                dev.kill_slot(s, secret.as_bytes())
                    .with_context(|| format!("removing the old keyslot {s}"))?;
            }
        }
        let gs: Vec<String> = ot.guardians.iter().map(|g| g.id.clone()).collect();
        report_drop(drop_epoch(cfg, ot.epoch, gs), ot.epoch);
    }
    set_bound(cfg, &a.device, true)?;
    if a.new_boot_key {
        // Shares sealed to the new key are held and its keyslot works:
        // only now does the mesh learn the new key.
        let p = boot.public();
        crate::client(cfg)
            .rekey(hex::encode(p.sign), hex::encode(p.seal))
            .context("announcing the new boot key (the new binding is in place; run this rebind again to announce it)")?;
        eprintln!("keyward: new boot key announced to the mesh (signed by the node key)");
        std::fs::rename(&new_boot_path, &cfg.boot_key).with_context(|| {
            format!(
                "moving {} to {}",
                new_boot_path.display(),
                cfg.boot_key.display()
            )
        })?;
        if let Some(dir) = cfg.boot_key.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all())?;
        }
        let olds: Vec<String> = dev
            .tokens()?
            .iter()
            .filter(|(_, t)| t.epoch != epoch)
            .map(|(_, t)| t.epoch.to_string())
            .collect();
        eprintln!(
            "keyward: boot key replaced in {}. The initramfs on /boot still carries the old one, which keeps opening {} until you retire it, so this node still boots.\nnext:\n  1. update-initramfs -u\n  2. keyward drop-epoch {}   (then the old boot key, and any copy of it, opens nothing)\n  3. keyward rebind --device DEV, for any other device bound on this node\n`keyward status` reminds you until then.",
            cfg.boot_key.display(),
            if olds.is_empty() {
                "nothing here".to_string()
            } else {
                format!("epoch {}", olds.join(", "))
            },
            if olds.is_empty() {
                "N".to_string()
            } else {
                olds.join(" ")
            }
        );
    }
    println!(
        "bound {}: keyslot {slot}, {t}-of-{n} over {}, epoch {epoch}",
        a.device.display(),
        chosen
            .iter()
            .map(|c| c.1.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Keeps only addresses another machine's initramfs can dial in each
/// candidate's (connected?, name, id, addrs). A guardian known only at
/// loopback addresses makes a token that fails at the next boot, so it is
/// refused here with what to do, unless `allow_loopback` (a test mesh on
/// one machine).
fn token_addrs(
    chosen: &mut [(bool, String, String, Vec<String>)],
    allow_loopback: bool,
) -> anyhow::Result<()> {
    if allow_loopback {
        return Ok(());
    }
    let mut local_only = Vec::new();
    for c in chosen.iter_mut() {
        let (ok, local) = split_local(&c.3);
        if ok.is_empty() && !local.is_empty() {
            local_only.push(format!("{} ({})", c.1, local.join(", ")));
        }
        c.3 = ok;
    }
    if !local_only.is_empty() {
        bail!(
            "guardians known only at loopback addresses, which no other machine's initramfs can reach: {}
make their keywardd listen on an address the other nodes reach (listen = [\"/ip4/0.0.0.0/tcp/7300\"] in keyward.toml) and restart it; for a test mesh on one machine, pass --allow-loopback",
            local_only.join(", ")
        );
    }
    Ok(())
}

/// `addrs` split into those other machines can dial and loopback ones.
fn split_local(addrs: &[String]) -> (Vec<String>, Vec<String>) {
    addrs.iter().cloned().partition(|a| {
        !a.parse()
            .is_ok_and(|m| keyward_node::unlock::is_local_only(&m))
    })
}

/// A new epoch for a binding of this node: above every epoch this node
/// handed out before, on any of its disks, and above the device's old
/// token. Guardians key a node's envelopes by epoch, so two disks, or a
/// retried bind, never collide or overwrite each other's shares. The
/// counter is written before any share leaves the node.
fn next_epoch(cfg: &Config, old: Option<u64>) -> anyhow::Result<u64> {
    let path = cfg.state_dir.join("last-epoch");
    let last = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().with_context(|| {
            format!(
                "{} is damaged (not a number); it holds the last share epoch this node used: write a number above every bound token's epoch into it",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // Tokens of this node's other bound disks count too (a state dir from
    // before this counter existed).
    let others = bound_devices(cfg)
        .into_iter()
        .filter_map(|d| Device::new(&d).token().ok().flatten())
        .map(|(_, t)| t.epoch)
        .max();
    let epoch = keyward_node::bind::next_epoch(last, old, others)?;
    keyward_node::keyfile::write_private_file(&path, format!("{epoch}\n").as_bytes(), true)?;
    Ok(epoch)
}

/// Asks `guardians` to drop this node's envelopes of `epoch`; returns the
/// guardians that did not confirm, with why.
pub(crate) fn drop_epoch(
    cfg: &Config,
    epoch: u64,
    guardians: Vec<String>,
) -> anyhow::Result<Vec<String>> {
    if guardians.is_empty() {
        return Ok(vec![]);
    }
    let results = crate::client(cfg).drop_epochs(vec![epoch], guardians.clone())?;
    Ok(guardians
        .into_iter()
        .filter(|g| !results.acked(g))
        .map(|g| format!("{g}: {}", results.why_not(&g)))
        .collect())
}

/// Tells the admin which guardians still hold shares of a dropped epoch.
/// Those shares open nothing any more (the keyslot is gone), so this is
/// tidiness, not safety; a later rebind or unbind asks again.
fn report_drop(r: anyhow::Result<Vec<String>>, epoch: u64) {
    match r {
        Ok(failed) if failed.is_empty() => {}
        Ok(failed) => eprintln!(
            "keyward: {} guardian(s) did not confirm dropping the shares of epoch {epoch} (they open no keyslot any more); `keyward epochs --drop-orphans` asks them again:\n  {}",
            failed.len(),
            failed.join("\n  ")
        ),
        Err(e) => eprintln!(
            "keyward: guardians were not told to drop the shares of epoch {epoch} (they open no keyslot any more; `keyward epochs --drop-orphans` asks them again): {e}"
        ),
    }
}

/// The devices bound on this node, one path per line in the state dir,
/// so `refresh` knows what to update.
fn devices_file(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("bound-devices")
}

pub(crate) fn bound_devices(cfg: &Config) -> Vec<PathBuf> {
    std::fs::read_to_string(devices_file(cfg))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(1024)
        .map(PathBuf::from)
        .collect()
}

fn set_bound(cfg: &Config, device: &Path, bound: bool) -> anyhow::Result<()> {
    let abs = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    let mut list: Vec<PathBuf> = bound_devices(cfg)
        .into_iter()
        .filter(|d| *d != abs)
        .collect();
    if bound {
        list.push(abs);
    }
    let text: String = list.iter().map(|d| format!("{}\n", d.display())).collect();
    keyward_node::keyfile::write_private_file(&devices_file(cfg), text.as_bytes(), true)?;
    Ok(())
}

/// Rewrites guardian addresses in the tokens of bound devices when the
/// mesh knows newer ones. Guardians the daemon has no address for keep
/// their old addresses.
pub fn refresh(cfg: &Config, only: Option<&Path>, allow_loopback: bool) -> anyhow::Result<()> {
    let devices = match only {
        Some(d) => vec![d.to_path_buf()],
        None => bound_devices(cfg),
    };
    if devices.is_empty() {
        println!("no devices bound on this node");
        return Ok(());
    }
    let status = crate::client(cfg).status()?;
    let known: std::collections::BTreeMap<String, Vec<String>> = status
        .members
        .into_iter()
        .filter(|m| !m.addrs.is_empty())
        .map(|m| (m.id, m.addrs))
        .collect();
    for d in devices {
        let dev = Device::new(&d);
        let tokens = dev.tokens()?;
        if tokens.is_empty() {
            eprintln!("keyward: {} is no longer bound; skipping", d.display());
            continue;
        }
        // Every keyward token: one kept for the old boot key during a
        // boot-key change is what the next boot uses until then.
        let mut changed = 0;
        for (id, mut token) in tokens {
            let mut here = 0;
            for g in &mut token.guardians {
                if let Some(a) = known.get(&g.id) {
                    let a = if allow_loopback {
                        a.clone()
                    } else {
                        let (ok, local) = split_local(a);
                        if ok.is_empty() {
                            // Recording these would make the next boot fail.
                            eprintln!(
                                "keyward: {}: guardian {} is known only at loopback addresses ({}), which this node's initramfs cannot reach; keeping its old addresses. Make its keywardd listen on a reachable address (or pass --allow-loopback for a one-machine test mesh)",
                                d.display(),
                                if g.name.is_empty() { &g.id } else { &g.name },
                                local.join(", ")
                            );
                            continue;
                        }
                        ok
                    };
                    let (mut new, mut old) = (a.clone(), g.addrs.clone());
                    new.sort();
                    old.sort();
                    if new != old {
                        g.addrs = a.clone();
                        here += 1;
                    }
                }
            }
            if here > 0 {
                dev.replace_token(id, &token)?;
                changed = changed.max(here);
            }
        }
        if changed == 0 {
            println!("{}: guardian addresses up to date", d.display());
        } else {
            println!(
                "{}: updated addresses of {changed} guardian(s)",
                d.display()
            );
        }
    }
    Ok(())
}

pub fn unbind(cfg: &Config, device: &Path, key_file: Option<&Path>) -> anyhow::Result<()> {
    let _lock = pending::lock(&cfg.state_dir)?;
    let dev = Device::new(device);
    let tokens = dev.tokens()?;
    if tokens.is_empty() {
        bail!("{} is not bound by keyward", device.display());
    }
    let pass = crate::passphrase(key_file, device)?;
    // Prove the passphrase opens a slot that stays before removing ours.
    dev.test_key(&pass, None)
        .context("that passphrase does not open the device")?;
    for (_, token) in &tokens {
        for s in token.keyslots.iter().filter_map(|s| s.parse::<u32>().ok()) {
            if dev.test_key(&pass, Some(s)).is_ok() {
                bail!("that passphrase is keyward's own key (slot {s}); give a passphrase of another keyslot");
            }
        }
    }
    // Every keyward token goes, the one kept for an old boot key too.
    for (tid, token) in tokens {
        retire(cfg, &dev, tid, &token, &pass)?;
    }
    set_bound(cfg, device, false)?;
    println!(
        "unbound {}: keyward's keyslot and token removed, passphrase slots untouched",
        device.display()
    );
    Ok(())
}

/// Removes one binding of a device: its keyslots, its token, and the
/// guardians' shares of its epoch. The keyslots go first, so a failure
/// half-way leaves a token naming a dead slot (harmless, listed by
/// `keyward epochs`) rather than a live slot no token names.
pub fn retire(
    cfg: &Config,
    dev: &Device,
    tid: u32,
    token: &Token,
    pass: &[u8],
) -> anyhow::Result<()> {
    let live = dev.keyslots()?;
    for s in token.keyslots.iter().filter_map(|s| s.parse::<u32>().ok()) {
        if live.contains(&s) {
            dev.kill_slot(s, pass)
                .with_context(|| format!("removing keyslot {s}"))?;
        }
    }
    dev.remove_token(tid)?;
    let gs: Vec<String> = token.guardians.iter().map(|g| g.id.clone()).collect();
    report_drop(drop_epoch(cfg, token.epoch, gs), token.epoch);
    Ok(())
}
