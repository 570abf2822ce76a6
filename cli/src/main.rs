//! keyward: the command line of a keyward mesh.

mod audit;
mod bind;
mod epochs;
mod error;
mod initramfs;
mod logs;
mod logs_write;
mod pending;
mod show;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use keyward_node::config::{Config, DEFAULT_PATH};
use keyward_node::control::{Client, Status};
use keyward_node::luks::Device;
use keyward_node::roster::Role;
use serde::Serialize;
use zeroize::Zeroize;

use crate::error::CliError;

#[derive(Parser)]
#[command(
    version,
    about = "keyward: a mesh of mutual key guardians",
    propagate_version = true
)]
struct Cli {
    /// Config file (also sets state dir, boot key and control socket).
    #[arg(long, global = true, env = "KEYWARD_CONFIG", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// State directory (node key, database); overrides the config's
    /// `state_dir`. Give keywardd the same one.
    #[arg(long, global = true, env = "KEYWARD_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make this node's keys; with --mesh, found a new mesh.
    Init {
        #[arg(long)]
        mesh: Option<String>,
    },
    /// Print a one-time token that lets one node join.
    Invite {
        #[arg(long, default_value = "guardian")]
        role: Role,
        /// How long the token stays valid (30m, 1h, 2d).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        expires: Duration,
    },
    /// Join a mesh with a token from `keyward invite`.
    Join { token: String },
    /// This node, the mesh, and the members that matter to it (every
    /// member in a mesh of up to 30, or with --all).
    Status {
        #[arg(long)]
        json: bool,
        /// List every member, however big the mesh.
        #[arg(long)]
        all: bool,
    },
    /// Short list of members.
    Peers,
    /// This node's log spool: show (default), verify, export.
    Logs(logs::LogsArgs),
    /// The auditor's tools: fetch every origin's log from the mesh into an
    /// audit directory (on the auditor's node), and keygen, verify and
    /// decrypt (offline, no config needed).
    Audit(audit::AuditArgs),
    /// Remove a node from the mesh for good.
    Revoke {
        node: String,
        /// Also drop members only this node admitted (default: re-endorse them).
        #[arg(long)]
        cascade: bool,
        #[arg(long, default_value = "revoked by admin")]
        reason: String,
    },
    /// Let NODEs unlock once although not seen alive within the timeout.
    Approve {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Refuse NODEs' unlock until an approve.
    Deny {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Refuse every unlock mesh-wide (or lift that).
    Lockdown {
        #[arg(long)]
        lift: bool,
    },
    /// Add a keyward keyslot to a LUKS2 device and spread its shares.
    Bind(bind::BindArgs),
    /// Re-split to a new epoch (new guardians or threshold); retires the old keyslot.
    Rebind(bind::BindArgs),
    /// Remove keyward's keyslot and token; guardians drop the shares.
    Unbind {
        #[arg(long)]
        device: PathBuf,
        /// File holding an existing passphrase or key of the device.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// The share epochs this node handed out: which binding uses each,
    /// which guardians hold them, and orphans an interrupted bind left.
    Epochs(epochs::EpochsArgs),
    /// Retire epochs: the old boot key's binding after
    /// `rebind --new-boot-key` and `update-initramfs -u`, or an orphan.
    DropEpoch(epochs::DropArgs),
    /// Update the guardians' addresses in bound devices' LUKS tokens (run by
    /// keyward-refresh.timer), so the initramfs finds guardians that moved.
    Refresh {
        /// Only this device (default: every device bound on this node).
        #[arg(long)]
        device: Option<PathBuf>,
        /// Record loopback addresses too (a one-machine test mesh).
        #[arg(long, env = "KEYWARD_ALLOW_LOOPBACK")]
        allow_loopback: bool,
    },
    /// Fetch the disk key from the guardians (initramfs) and open the device.
    ///
    /// Exit status: 0 the key was delivered; 3 the mesh will not give it on
    /// this boot whatever happens (revoked, wrong boot key, no share held),
    /// so the keyscript stops asking; 1 anything else (retry later).
    Unlock {
        #[arg(long)]
        device: PathBuf,
        /// Open as /dev/mapper/NAME.
        #[arg(long, conflicts_with_all = ["print_key", "check"])]
        name: Option<String>,
        /// Write the raw key to stdout (keyscript / cryptsetup --key-file=-).
        #[arg(long, conflicts_with = "check")]
        print_key: bool,
        /// Only prove the key opens the device (no device-mapper needed).
        #[arg(long)]
        check: bool,
        /// Give up after this long.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Boot key file (default: the config's boot_key).
        #[arg(long)]
        boot_key: Option<PathBuf>,
        /// Also try this guardian address (IP:PORT or a TCP multiaddr,
        /// optionally ending in /p2p/ID), e.g. when the guardians moved
        /// while this node was off. Repeatable; the config's `bootstrap`
        /// addresses are tried too.
        #[arg(long = "guardian", value_name = "ADDR")]
        guardians: Vec<String>,
        /// Print nothing but the final error.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    // Behave like a normal Unix tool in pipes (`keyward status | head`).
    // SAFETY: restoring the default disposition of SIGPIPE at startup.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: {e}");
            // The keyscript stops asking the mesh on 3.
            e.exit_code()
        }
    }
}

/// The client of this node's keywardd: every command talks to the daemon
/// through it.
pub(crate) fn client(cfg: &Config) -> Client {
    Client::new(&cfg.control_socket, Duration::from_secs(90))
}

/// `keyward status --json`: the daemon's status and this machine's to-dos.
#[derive(Serialize)]
struct StatusJson {
    #[serde(flatten)]
    status: Status,
    todo: Vec<String>,
}

fn run(cli: Cli) -> Result<(), CliError> {
    // The auditor's offline machine has no keyward config, node key or
    // daemon (only `audit fetch` reads the config, on the auditor's node).
    if let Cmd::Audit(a) = &cli.cmd {
        return audit::run(a, &cli.config).map_err(|e| CliError::Failed(e.into()));
    }
    let mut cfg = Config::load(&cli.config).map_err(anyhow::Error::from)?;
    if let Some(d) = cli.state_dir {
        cfg.state_dir = d;
    }
    match cli.cmd {
        Cmd::Unlock {
            device,
            name,
            print_key,
            check,
            timeout,
            boot_key,
            guardians,
            quiet,
        } => unlock(
            &cfg,
            &device,
            name,
            print_key,
            check,
            keyward_node::unlock::Options {
                timeout,
                verbose: !quiet,
                extra_addrs: Vec::new(),
                waited: Duration::ZERO,
            },
            boot_key,
            &guardians,
        ),
        cmd => Ok(command(cfg, cmd)?),
    }
}

/// Every command but `unlock`, whose failures are all ordinary.
fn command(cfg: Config, cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Init { mesh } => {
            let r = keyward_node::daemon::init(&cfg, mesh.as_deref())?;
            println!("node      {}", r.node);
            println!("name      {}", cfg.node_name());
            println!("node key  {}", cfg.node_key_path().display());
            println!("boot key  {}", cfg.boot_key.display());
            match r.mesh {
                Some((id, name)) => println!("mesh      {name} ({id})"),
                None => println!("mesh      none yet: start keywardd, then `keyward join TOKEN` (or `keyward init --mesh NAME` to found one)"),
            }
        }
        Cmd::Invite { role, expires } => {
            let v = client(&cfg).invite(role, expires.as_secs().max(1))?;
            println!("{}", v.token);
            eprintln!(
                "one-time {} invite, valid for {}; on the new node: keyward join <token>",
                role,
                humantime::format_duration(expires)
            );
        }
        Cmd::Join { token } => {
            let v = client(&cfg).join(token)?;
            println!(
                "joined mesh {} ({} members)",
                v.mesh_name.as_deref().unwrap_or("?"),
                v.members
            );
        }
        Cmd::Status { json, all } => {
            let v = client(&cfg).status()?;
            // From this machine, not the daemon: unfinished binds and a
            // boot-key change waiting for the initramfs.
            let todo = epochs::warnings(&cfg);
            if json {
                let out = StatusJson { status: v, todo };
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                show::status(&v, all);
                if !todo.is_empty() {
                    println!("\nTO DO on this node:");
                    for t in todo {
                        println!("  {t}");
                    }
                }
            }
        }
        Cmd::Peers => show::peers(&client(&cfg).status()?),
        Cmd::Logs(a) => logs::logs(&cfg, &a)?,
        Cmd::Audit(_) => unreachable!("handled before the config is loaded"),
        Cmd::Revoke {
            node,
            cascade,
            reason,
        } => {
            let v = client(&cfg).revoke(node.clone(), cascade, reason)?;
            println!("revoked {node} ({})", v.revoked);
            for (k, names) in [("re-endorsed", &v.re_endorsed), ("dropped", &v.dropped)] {
                if !names.is_empty() {
                    println!("{k}: {}", names.join(", "));
                }
            }
        }
        Cmd::Approve { nodes } => {
            for node in nodes {
                let v = client(&cfg).approve(node.clone())?;
                match v.approvals_needed {
                    Some(n) if n > 1 => println!("approved {node}: guardians release its shares once {n} different admins approved it (within the approval window); ask the others to run `keyward approve {node}` on their guardians"),
                    _ => println!("approved {node}: guardians release its shares once (within the approval window)"),
                }
                if let Some(w) = v.warning {
                    eprintln!("keyward: warning: {w}");
                }
            }
        }
        Cmd::Deny { nodes } => {
            for node in nodes {
                client(&cfg).deny(node.clone())?;
                println!(
                    "denied {node}: guardians refuse its unlock until `keyward approve {node}`"
                );
            }
        }
        Cmd::Lockdown { lift } => {
            if lift {
                client(&cfg).lift()?;
            } else {
                client(&cfg).lockdown()?;
            }
            println!(
                "{}",
                if lift {
                    "lockdown lifted mesh-wide"
                } else {
                    "LOCKDOWN set mesh-wide: every unlock is refused until `keyward lockdown --lift`"
                }
            );
        }
        Cmd::Bind(a) => bind::bind(&cfg, &a, false)?,
        Cmd::Rebind(a) => bind::bind(&cfg, &a, true)?,
        Cmd::Unbind { device, key_file } => bind::unbind(&cfg, &device, key_file.as_deref())?,
        Cmd::Epochs(a) => epochs::epochs(&cfg, &a)?,
        Cmd::DropEpoch(a) => epochs::drop_epochs(&cfg, &a)?,
        Cmd::Refresh {
            device,
            allow_loopback,
        } => bind::refresh(&cfg, device.as_deref(), allow_loopback)?,
        Cmd::Unlock { .. } => unreachable!("run() handles unlock"),
    }
    Ok(())
}

/// `keyward unlock`: the one command that can fail hopelessly (exit 3).
#[allow(clippy::too_many_arguments)]
fn unlock(
    cfg: &Config,
    device: &std::path::Path,
    name: Option<String>,
    print_key: bool,
    check: bool,
    mut opts: keyward_node::unlock::Options,
    boot_key: Option<PathBuf>,
    guardians: &[String],
) -> Result<(), CliError> {
    if name.is_none() && !print_key && !check {
        return Err(anyhow::anyhow!(
            "say what to do with the key: --name NAME (open), --print-key (stdout) or --check"
        )
        .into());
    }
    let dev = Device::new(device);
    let bk_path = boot_key.unwrap_or(cfg.boot_key.clone());
    // Read from the header itself: no cryptsetup process on the boot path.
    let token = keyward_node::unlock::read_token(device, &bk_path)?;
    refuse_if_running_owner(cfg, &token.owner)?;
    opts.extra_addrs = keyward_node::unlock::boot_addrs(guardians, &cfg.bootstrap)?;
    let secret = fetch(&token, &bk_path, &opts)?;
    let used: anyhow::Result<()> = (|| {
        if print_key {
            let mut out = std::io::stdout().lock();
            out.write_all(secret.as_bytes())?;
            out.flush()?;
        } else if check {
            dev.test_key(secret.as_bytes(), None)?;
            eprintln!(
                "keyward: the key from the guardians opens {}",
                device.display()
            );
        } else if let Some(n) = name {
            dev.open(&n, secret.as_bytes())?;
            eprintln!("keyward: opened {} as /dev/mapper/{n}", device.display());
        }
        Ok(())
    })();
    Ok(used?)
}

/// Asks the guardians for the disk key, keeping the unlock client's error
/// typed so a hopeless refusal is told apart without downcasting.
fn fetch(
    token: &keyward_node::luks::Token,
    boot_key: &std::path::Path,
    opts: &keyward_node::unlock::Options,
) -> Result<keyward_node::shares::DiskSecret, CliError> {
    Ok(keyward_node::unlock::fetch_blocking(token, boot_key, opts)?)
}

/// Unlocking a node that is up would be refused anyway and raise a
/// copied-boot-key alert mesh-wide; say so instead.
fn refuse_if_running_owner(cfg: &Config, owner: &str) -> anyhow::Result<()> {
    if let Ok(v) = Client::new(&cfg.control_socket, Duration::from_secs(2)).status() {
        if v.node.id == owner {
            bail!(
                "keywardd is running on this node, which owns the device: guardians would refuse and raise a copied-boot-key alert; stop keywardd first (systemctl stop keywardd) to test an unlock"
            );
        }
    }
    Ok(())
}

/// Reads an existing passphrase: from a file, or asked on the terminal.
pub fn passphrase(
    key_file: Option<&std::path::Path>,
    device: &std::path::Path,
) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    if let Some(p) = key_file {
        // cryptsetup's own limit for a key file.
        const MAX_KEY_FILE: u64 = 8 << 20;
        let f =
            std::fs::File::open(p).with_context(|| format!("reading key file {}", p.display()))?;
        let mut b = zeroize::Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_KEY_FILE + 1), &mut b)
            .with_context(|| format!("reading key file {}", p.display()))?;
        if b.len() as u64 > MAX_KEY_FILE {
            bail!(
                "key file {} is larger than 8 MiB, as cryptsetup allows; is it the right file?",
                p.display()
            );
        }
        return Ok(b);
    }
    let mut s =
        rpassword::prompt_password(format!("Existing passphrase for {}: ", device.display()))
            .context("reading the passphrase (use --key-file when there is no terminal)")?;
    let b = s.as_bytes().to_vec();
    s.zeroize();
    Ok(zeroize::Zeroizing::new(b))
}
