//! keyward-vmbench: what keyward costs a real boot, from one run.
//!
//! ```text
//! dist/build-deb.sh                       # the package under test
//! cargo run -p keyward-netns-tests --bin keyward-vmbench -- [--boots N] [--report FILE]
//! ```
//!
//! As root, with qemu and debootstrap (the VM boot test's needs; see
//! docs/boot.md). It prepares the rig of the VM boot test (a Debian
//! chroot, keyward's `.deb` installed, upgraded and purged in it, five
//! keywardd guardians in a network namespace) and boots the same LUKS2 root
//! under qemu TCG:
//!
//! - N times with a keyscript that prints a key kept in the initramfs (the
//!   baseline), N times with keyward (all guardians up);
//! - N times while the mesh refuses (lockdown), for the time to the
//!   passphrase prompt;
//!
//! and prints one Markdown table: medians of qemu start -> marker (read
//! from the decrypted root), keyward's overhead, the size of keyward-unlock
//! and of both initramfs images, the prompt times. It measures and
//! reports; it asserts nothing about times (a loaded machine is slower,
//! that is no failure). Boots alternate between the variants so that load
//! from other work on the machine falls on both alike.

use std::path::Path;

use anyhow::Context;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use keyward_netns_tests::vm::{KEYFILE_KEYSCRIPT_LINE, MARKER_UPTIME_LINE};
use keyward_netns_tests::vm_rig::{median, Rig, ASKING, PORT};

const USAGE: &str = "usage: keyward-vmbench [--boots N] [--report FILE] [--trace]
  --boots N      boots per variant (default 5, 1..=50)
  --report FILE  also write the table to FILE
  --trace        boot keyward with keyward.trace and add a table of the
                 steps from keyscript start to marker, by the guest's clock
env: KEYWARD_DEB (the .deb; default the newest in target/debian),
     KEYWARD_UNLOCK (the keyward-unlock measured; default the one in the .deb)";

struct Args {
    boots: usize,
    report: Option<std::path::PathBuf>,
    trace: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        boots: 5,
        report: None,
        trace: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--boots" => {
                a.boots = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| (1..=50).contains(n))
                    .ok_or("--boots needs a number from 1 to 50")?;
            }
            "--report" => a.report = Some(it.next().ok_or("--report needs a file")?.into()),
            "--trace" => a.trace = true,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {x}")),
        }
    }
    Ok(a)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn mb(p: &Path) -> String {
    p.metadata()
        .map(|m| format!("{:.2} MB", m.len() as f64 / 1e6))
        .unwrap_or_else(|_| "?".into())
}

/// The size of keyward-unlock as the package ships it.
fn unlock_size(deb: &Path) -> String {
    if let Some(p) = std::env::var_os("KEYWARD_UNLOCK") {
        return mb(Path::new(&p));
    }
    let out = std::process::Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.last()?.ends_with("/keyward-unlock"))
                    .then(|| w.get(2)?.parse::<u64>().ok())
                    .flatten()
            })
        })
        .map(|n| format!("{:.2} MB", n as f64 / 1e6))
        .unwrap_or_else(|| "?".into())
}

/// The guest-clock steps of one boot's console, in seconds after its
/// keyscript started: keyward's `keyward: trace UPTIME STEP` lines (with
/// keyward.trace), the key-file keyscript's start and the marker script's
/// line. Empty without a keyscript start.
fn steps(console: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for line in console.lines() {
        let (step, t) = if let Some(i) = line.find("keyward: trace ") {
            let mut w = line[i + "keyward: trace ".len()..].splitn(2, ' ');
            let t = w.next().and_then(|t| t.parse::<f64>().ok());
            (w.next().unwrap_or("").trim().to_string(), t)
        } else if let Some(i) = line.find(KEYFILE_KEYSCRIPT_LINE) {
            let t = line[i + KEYFILE_KEYSCRIPT_LINE.len()..]
                .trim()
                .strip_prefix("at ")
                .and_then(|t| t.trim().parse::<f64>().ok());
            ("keyscript-start".to_string(), t)
        } else if let Some(i) = line.find(MARKER_UPTIME_LINE) {
            let t = line[i + MARKER_UPTIME_LINE.len()..]
                .trim()
                .parse::<f64>()
                .ok();
            ("marker".to_string(), t)
        } else {
            continue;
        };
        if let Some(t) = t {
            if !out.iter().any(|(s, _)| *s == step) {
                out.push((step, t));
            }
        }
    }
    let Some(t0) = out
        .iter()
        .find(|(s, _)| s == "keyscript-start")
        .map(|x| x.1)
    else {
        return Vec::new();
    };
    out.into_iter().map(|(s, t)| (s, t - t0)).collect()
}

/// One row per step (in the order of the first boot that had it): the
/// median seconds after the keyscript's start over the boots, for the key
/// file and for keyward.
fn step_table(keyfile: &[Vec<(String, f64)>], keyward: &[Vec<(String, f64)>]) -> String {
    let mut names: Vec<String> = Vec::new();
    for b in keyfile.iter().chain(keyward) {
        for (s, _) in b {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
    }
    let med = |boots: &[Vec<(String, f64)>], name: &str| -> String {
        let mut v: Vec<f64> = boots
            .iter()
            .filter_map(|b| b.iter().find(|(s, _)| s == name).map(|x| x.1))
            .collect();
        if v.is_empty() {
            return "-".into();
        }
        v.sort_by(f64::total_cmp);
        format!("{:.3} s", v[v.len() / 2])
    };
    let mut t = String::from(
        "| step (guest clock, after the keyscript started; medians) | key file | keyward |\n|---|---|---|\n",
    );
    for n in &names {
        t.push_str(&format!(
            "| {n} | {} | {} |\n",
            med(keyfile, n),
            med(keyward, n)
        ));
    }
    t
}

fn bench(a: &Args) -> anyhow::Result<String> {
    let t_all = Instant::now();
    let mut r = Rig::new()?;
    let prepared = t_all.elapsed();
    eprintln!("vmbench: prepared in {prepared:?}");
    let fwds = r.guardian_fwds(PORT);
    let (mut keyfile, mut keyward) = (Vec::new(), Vec::new());
    // Each boot split at its keyscript's first console line: before it,
    // firmware, kernel and the initramfs's unpacking and early scripts
    // (where a larger initramfs costs); after it, getting the key and
    // mounting the root.
    let (mut ks_keyfile, mut ks_keyward) = (Vec::new(), Vec::new());
    let (mut steps_keyfile, mut steps_keyward) = (Vec::new(), Vec::new());
    let traced = if a.trace { "keyward.trace" } else { "" };
    for i in 0..a.boots {
        let mut v = r.boot(&r.initrd_keyfile, "", &fwds)?;
        let t = r.expect_marker(&mut v, "key file")?;
        ks_keyfile.push(
            v.seen(KEYFILE_KEYSCRIPT_LINE)
                .context("no key-file keyscript line")?,
        );
        keyfile.push(t);
        steps_keyfile.push(steps(&v.stop()));
        r.owner_was_just_up()?;
        let mut v = r.boot(&r.initrd_keyward, traced, &fwds)?;
        let t = r.expect_marker(&mut v, "keyward")?;
        ks_keyward.push(v.seen(ASKING).context("no keyward keyscript line")?);
        keyward.push(t);
        let con = v.stop();
        steps_keyward.push(steps(&con));
        if a.trace {
            eprintln!(
                "vmbench: boot {} steps: key file {:?}; keyward {:?}",
                i + 1,
                steps_keyfile[i],
                steps_keyward[i]
            );
        }
        anyhow::ensure!(
            !con.contains("refused") && !con.contains("unreachable"),
            "keyward boot {i}: the mesh did not simply give the key:\n{con}"
        );
        eprintln!(
            "vmbench: boot {}: key file {:.2} s, keyward {:.2} s",
            i + 1,
            keyfile[i].as_secs_f64(),
            t.as_secs_f64()
        );
    }
    r.owner_was_just_up()?;
    r.lockdown()?;
    let (mut to_prompt, mut ks_to_prompt) = (Vec::new(), Vec::new());
    for _ in 0..a.boots {
        let mut v = r.boot(&r.initrd_keyward, "", &fwds)?;
        let (asked, prompt) = r.prompt_times(&mut v, "refused")?;
        v.wait_for(
            "the mesh is in lockdown (set by node1",
            Duration::from_secs(30),
        )?;
        to_prompt.push(prompt);
        ks_to_prompt.push(prompt.saturating_sub(asked));
        v.stop();
    }
    r.m.cli_ok(1, &["lockdown", "--lift"])?;
    let (kf, kw) = (median(keyfile.clone()), median(keyward.clone()));
    let (kskf, kskw) = (median(ks_keyfile.clone()), median(ks_keyward.clone()));
    let after = |t: &[Duration], ks: &[Duration]| {
        median(
            t.iter()
                .zip(ks)
                .map(|(t, k)| t.saturating_sub(*k))
                .collect(),
        )
    };
    let (akf, akw) = (after(&keyfile, &ks_keyfile), after(&keyward, &ks_keyward));
    let n = a.boots;
    let over = kw.as_secs_f64() - kf.as_secs_f64();
    let trace_table = if a.trace {
        format!(
            "\n\n{}",
            step_table(&steps_keyfile, &steps_keyward).trim_end()
        )
    } else {
        String::new()
    };
    Ok(format!(
        "| measure (qemu -accel tcg -smp 1 -m 512) | value |\n|---|---|\n\
         | qemu start -> marker, key-file keyscript (median of {n}) | {} |\n\
         | qemu start -> marker, keyward, all guardians up (median of {n}) | {} |\n\
         | keyward minus key file | {over:+.2} s |\n\
         | qemu start -> keyscript starts, key file / keyward (medians) | {} / {} |\n\
         | keyscript start -> marker, key file / keyward (medians) | {} / {} |\n\
         | keyward-unlock size (in the .deb) | {} |\n\
         | initramfs, key file / keyward | {} / {} |\n\
         | mesh refusing (lockdown): qemu start -> passphrase prompt (median of {n}) | {} |\n\
         | mesh refusing (lockdown): keyscript start -> passphrase prompt (median of {n}) | {} |\n\
         | all boots, key file (s) | {} |\n\
         | all boots, keyward (s) | {} |\n\
         | all refused boots, keyscript -> prompt (s) | {} |\n\
         | rig prepared (incl. package install/upgrade/purge {}) | {} |\n\
         | whole run | {} |{trace_table}",
        secs(kf),
        secs(kw),
        secs(kskf),
        secs(kskw),
        secs(akf),
        secs(akw),
        unlock_size(&r.deb),
        mb(&r.initrd_keyfile),
        mb(&r.initrd_keyward),
        secs(median(to_prompt.clone())),
        secs(median(ks_to_prompt.clone())),
        list(&keyfile),
        list(&keyward),
        list(&ks_to_prompt),
        secs(r.lifecycle),
        secs(prepared),
        secs(t_all.elapsed()),
    ))
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("keyward-vmbench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench(&a) {
        Ok(table) => {
            println!("{table}");
            if let Some(p) = &a.report {
                if let Err(e) = std::fs::write(p, format!("{table}\n")) {
                    eprintln!("keyward-vmbench: writing {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keyward-vmbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
