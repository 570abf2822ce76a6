//! keyward-unlock: the initramfs client of keyward. It asks the guardians
//! named in a LUKS2 device's keyward token for the shares of its key, with
//! only the boot key, and writes the key to stdout for cryptsetup.
//!
//! It is `keyward unlock` without the rest of the CLI and the daemon (no
//! sled, gossipsub, mDNS or clap), so the initramfs stays small. The
//! initramfs hook also uses `--probe` to find the devices it must add
//! the keyscript to.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use keyward_node::config::{Config, DEFAULT_PATH};
use keyward_node::unlock::{self, UnlockError};

const USAGE: &str = "usage: keyward-unlock --device DEV (--print-key | --check | --probe)
                      [--timeout 60s] [--guardian IP:PORT]... [--boot-key FILE]
                      [--config FILE] [--quiet] [--waited D]

  --print-key      write the disk key to stdout (keyscript, cryptsetup --key-file=-)
  --check          only prove the key opens DEV (cryptsetup --test-passphrase)
  --probe          exit 0 if DEV carries a keyward token, 1 if not; asks no one
  --timeout D      give up after D (default 60s; 500ms, 2min)
  --guardian A     also try guardian address A (IP:PORT or a TCP multiaddr);
                   repeatable; the config's bootstrap addresses are tried too
  --boot-key FILE  boot key (default: the config's boot_key)
  --config FILE    config (default $KEYWARD_CONFIG or /etc/keyward/keyward.toml)
  --quiet          print only the final error
  --waited D       this boot already waited D for the key (the keyscript's
                   earlier attempts); past 2min, guardians that refuse are
                   asked every 30s instead of every 5s

exit status: 0 key delivered (or --probe: bound); 3 the mesh will not give
the key on this boot whatever happens, stop asking; 2 usage; 1 anything else";

/// Most `--guardian` arguments taken.
const MAX_GUARDIAN_ARGS: usize = unlock::MAX_EXTRA_ADDRS;

#[derive(Debug, PartialEq)]
enum Mode {
    PrintKey,
    Check,
    Probe,
}

#[derive(Debug)]
struct Args {
    device: PathBuf,
    mode: Mode,
    timeout: Duration,
    guardians: Vec<String>,
    boot_key: Option<PathBuf>,
    config: PathBuf,
    quiet: bool,
    waited: Duration,
}

/// Parses the command line by hand: clap alone would add a few hundred
/// KiB to every initramfs.
fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut device = None;
    let mut mode = None;
    let mut timeout = Duration::from_secs(60);
    let mut guardians = Vec::new();
    let mut boot_key = None;
    let mut config = std::env::var_os("KEYWARD_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let mut quiet = false;
    let mut waited = Duration::ZERO;
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let mut set_mode = |m: Mode| {
            if mode.replace(m).is_some() {
                Err("give one of --print-key, --check and --probe".to_string())
            } else {
                Ok(())
            }
        };
        match a.as_str() {
            "--device" => device = Some(PathBuf::from(value("--device")?)),
            "--print-key" => set_mode(Mode::PrintKey)?,
            "--check" => set_mode(Mode::Check)?,
            "--probe" => set_mode(Mode::Probe)?,
            "--timeout" => {
                let v = value("--timeout")?;
                timeout = humantime::parse_duration(&v)
                    .map_err(|e| format!("--timeout {v}: {e} (examples: 60s, 2min)"))?;
            }
            "--waited" => {
                let v = value("--waited")?;
                waited = humantime::parse_duration(&v)
                    .map_err(|e| format!("--waited {v}: {e} (examples: 0s, 125s)"))?;
            }
            "--guardian" => {
                if guardians.len() >= MAX_GUARDIAN_ARGS {
                    return Err(format!("more than {MAX_GUARDIAN_ARGS} --guardian"));
                }
                guardians.push(value("--guardian")?);
            }
            "--boot-key" => boot_key = Some(PathBuf::from(value("--boot-key")?)),
            "--config" => config = PathBuf::from(value("--config")?),
            "--quiet" | "-q" => quiet = true,
            "--help" | "-h" => return Err(String::new()),
            "--version" | "-V" => {
                println!("keyward-unlock {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args {
        device: device.ok_or("--device is required")?,
        mode: mode.ok_or("say what to do with the key: --print-key, --check or --probe")?,
        timeout,
        guardians,
        boot_key,
        config,
        quiet,
        waited,
    })
}

fn main() -> ExitCode {
    // SAFETY: restoring the default disposition of SIGPIPE at startup.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("keyward-unlock: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> anyhow::Result<ExitCode> {
    if a.mode == Mode::Probe {
        let dev = keyward_node::luks::Device::new(&a.device);
        return Ok(match dev.token_direct() {
            Ok(Some(_)) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        });
    }
    let cfg = Config::load(&a.config)?;
    let boot_key = a.boot_key.clone().unwrap_or(cfg.boot_key.clone());
    let token = unlock::read_token(&a.device, &boot_key)?;
    let opts = unlock::Options {
        timeout: a.timeout,
        verbose: !a.quiet,
        extra_addrs: unlock::boot_addrs(&a.guardians, &cfg.bootstrap)?,
        waited: a.waited,
    };
    let secret = match unlock::fetch_blocking(&token, &boot_key, &opts) {
        Ok(s) => s,
        // Nothing on this boot can change the answer: the keyscript stops
        // asking and falls back to the passphrase (exit status 3).
        Err(e @ UnlockError::Hopeless(_)) => {
            eprintln!("keyward: {e}");
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.into()),
    };
    match a.mode {
        Mode::PrintKey => {
            let mut out = std::io::stdout().lock();
            out.write_all(secret.as_bytes())
                .and_then(|_| out.flush())
                .context("writing the key to stdout")?;
        }
        Mode::Check => {
            keyward_node::luks::Device::new(&a.device).test_key(secret.as_bytes(), None)?;
            eprintln!(
                "keyward: the key from the guardians opens {}",
                a.device.display()
            );
        }
        Mode::Probe => bail!("unreachable: --probe is handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert!(p(&["--print-key"])
            .unwrap_err()
            .contains("--device is required"));
        assert!(p(&["--device", "x"])
            .unwrap_err()
            .contains("say what to do"));
        assert!(p(&["--device", "x", "--check", "--probe"])
            .unwrap_err()
            .contains("one of"));
        assert!(p(&["--device", "x", "--check", "--timeout", "soon"])
            .unwrap_err()
            .contains("--timeout soon"));
        assert!(p(&["--device", "x", "--check", "--waited", "-5"])
            .unwrap_err()
            .contains("--waited -5"));
        assert!(p(&["--device"]).unwrap_err().contains("needs a value"));
        assert!(p(&["--device", "x", "--frobnicate"])
            .unwrap_err()
            .contains("unknown argument `--frobnicate`"));
        let many: Vec<String> = std::iter::once("--device".to_string())
            .chain(std::iter::once("x".into()))
            .chain((0..=MAX_GUARDIAN_ARGS).flat_map(|_| ["--guardian".into(), "1.2.3.4:1".into()]))
            .collect();
        assert!(parse(many.into_iter()).unwrap_err().contains("more than"));
        let a = p(&[
            "--device",
            "/dev/vda2",
            "--print-key",
            "--timeout",
            "2min",
            "--guardian",
            "192.0.2.7:7300",
            "--quiet",
            "--waited",
            "125s",
        ])
        .unwrap();
        assert!(a.mode == Mode::PrintKey && a.quiet);
        assert_eq!(a.timeout, Duration::from_secs(120));
        assert_eq!(a.waited, Duration::from_secs(125));
        assert_eq!(
            p(&["--device", "x", "--check"]).unwrap().waited,
            Duration::ZERO
        );
        assert_eq!(a.guardians, ["192.0.2.7:7300"]);
    }
}
