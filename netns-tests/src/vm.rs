//! A real boot under qemu: a Debian chroot with a stock kernel,
//! initramfs-tools and cryptsetup-initramfs (debootstrap, cached), keyward's
//! `.deb` installed in it with `dpkg -i`, the initramfs built by Debian's
//! own `update-initramfs`, and a LUKS2 root image made without
//! device-mapper (`mkfs.ext4 -d`, then `cryptsetup reencrypt --encrypt`).
//! The VM runs with `-accel tcg` inside a namespace the test made, with
//! slirp `restrict=on` and one `guestfwd` per guardian address, and prints a
//! marker read from the decrypted root on its serial console.
//!
//! Everything made here (chroot copies, mounts, loop devices, qemu) is
//! undone on drop, also when a test panics; what a killed run left is
//! undone by the next one ([`preflight`], see [`crate::vm_stale`]). The
//! cache of the base chroot
//! lives outside the clone (`/var/cache/keyward-vmtest`, or
//! `$KEYWARD_VMTEST_CACHE`), keyed by a hash of what went into it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::{Lab, Skip};

/// Packages of the base chroot (besides debootstrap's minbase).
const PACKAGES: &str =
    "linux-image-amd64,initramfs-tools,cryptsetup-initramfs,cryptsetup,busybox,udev,kmod";
/// Bump when the recipe of the base chroot changes.
const RECIPE: &str = "keyward-vmtest base v1";
/// What the guest prints once it read the marker from the decrypted root.
pub const MARKER_PREFIX: &str = "KWTEST-MARKER ";
/// Name of the LUKS device in crypttab, as the console names it.
pub const CRYPT_NAME: &str = "root_crypt";

fn run(cmd: &mut Command) -> Result<String> {
    let o = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !o.status.success() {
        bail!(
            "{:?} failed ({}):\n{}{}",
            cmd,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks what a VM boot test needs; a [`Skip`] names what is missing.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            Skip("the VM boot test needs root (debootstrap, chroot, losetup)".into()).into(),
        );
    }
    if !have("qemu-system-x86_64") {
        return Err(
            Skip("qemu-system-x86_64 not installed (apt install qemu-system-x86)".into()).into(),
        );
    }
    for (tool, pkg) in [
        ("debootstrap", "debootstrap"),
        ("mkfs.ext4", "e2fsprogs"),
        ("cryptsetup", "cryptsetup-bin"),
        ("losetup", "mount"),
        ("socat", "socat"),
    ] {
        if !have(tool) {
            return Err(Skip(format!("{tool} not installed (apt install {pkg})")).into());
        }
    }
    crate::vm_stale::remove_stale(&cache_root());
    Ok(())
}

/// The Debian mirror and suite apt uses on this machine, read from its
/// sources at run time (deb822 `.sources` files or `sources.list`).
pub fn apt_mirror() -> Result<(String, String)> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, t));
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if let (Ok(t), true) = (
                std::fs::read_to_string(&p),
                ext == "sources" || ext == "list",
            ) {
                texts.push((ext == "sources", t));
            }
        }
    }
    let debian = |uri: &str, suite: &str| {
        uri.contains("debian") && !uri.contains("security") && !suite.contains('-')
    };
    for (deb822, t) in &texts {
        if *deb822 {
            for stanza in t.split("\n\n") {
                let field = |k: &str| {
                    stanza
                        .lines()
                        .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                };
                if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) {
                    let uri = uris.split_whitespace().next().unwrap_or_default();
                    let suite = suites.split_whitespace().next().unwrap_or_default();
                    if field("Types:").is_none_or(|t| t.split_whitespace().any(|x| x == "deb"))
                        && debian(uri, suite)
                    {
                        return Ok((uri.to_string(), suite.to_string()));
                    }
                }
            }
        } else {
            for l in t.lines() {
                let w: Vec<&str> = l
                    .split_whitespace()
                    .filter(|w| !w.starts_with('['))
                    .collect();
                if w.len() >= 3 && w[0] == "deb" && debian(w[1], w[2]) {
                    return Ok((w[1].to_string(), w[2].to_string()));
                }
            }
        }
    }
    Err(Skip(
        "no Debian mirror in /etc/apt/sources.list*; the VM test needs one for debootstrap".into(),
    )
    .into())
}

fn cache_root() -> PathBuf {
    std::env::var_os("KEYWARD_VMTEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/keyward-vmtest".into())
}

fn hex_sha256(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The cached base chroot, made with debootstrap on first use (about
/// 2-3 min). A mirror that cannot be reached is a [`Skip`].
pub fn base_chroot() -> Result<PathBuf> {
    let (mirror, suite) = apt_mirror()?;
    let key = hex_sha256(&[RECIPE, &mirror, &suite, PACKAGES]);
    let dir = cache_root().join(format!("base-{key}"));
    let root = dir.join("root");
    if dir.join("complete").exists() {
        return Ok(root);
    }
    std::fs::create_dir_all(cache_root())?;
    let tmp = cache_root().join(format!(
        "{}{}-{key}",
        crate::vm_stale::DEBOOTSTRAP_PREFIX,
        crate::vm_stale::own_tag()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    eprintln!(
        "vmtest: debootstrap {suite} from {mirror} into {} (cached for later runs)",
        dir.display()
    );
    let o = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={PACKAGES}"))
        .arg(&suite)
        .arg(tmp.join("root"))
        .arg(&mirror)
        .output()?;
    if !o.status.success() {
        let log =
            String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
        crate::vm_stale::remove_unmounted(&tmp);
        if log.contains("Failed getting release file")
            || log.contains("Couldn't download")
            || log.contains("Failure trying to run")
            || log.contains("Temporary failure in name resolution")
        {
            return Err(Skip(format!(
                "the package mirror {mirror} cannot be had: {}",
                log.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            ))
            .into());
        }
        bail!("debootstrap failed:\n{log}");
    }
    std::fs::write(
        tmp.join("complete"),
        format!("{RECIPE}\n{mirror} {suite}\n{PACKAGES}\n"),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    Ok(root)
}

/// A LUKS2 root image holding `marker`, with a passphrase keyslot and a
/// key-file keyslot (for the baseline boot). Made without device-mapper.
pub fn make_root_image(img: &Path, marker: &str, passphrase: &Path, keyfile: &Path) -> Result<()> {
    let dir = img.with_extension("content");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("marker"), marker)?;
    let f = std::fs::File::create(img)?;
    f.set_len(48 << 20)?;
    drop(f);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-d"])
        .arg(&dir)
        .arg(img)
        .arg("16M"))?;
    std::fs::remove_dir_all(&dir)?;
    run(Command::new("cryptsetup")
        .args([
            "reencrypt",
            "--encrypt",
            "--type",
            "luks2",
            "--reduce-device-size",
            "32M",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--batch-mode",
            "--key-file",
        ])
        .arg(passphrase)
        .arg(img))?;
    run(Command::new("cryptsetup")
        .args([
            "luksAddKey",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--batch-mode",
            "--key-file",
        ])
        .arg(passphrase)
        .arg(img)
        .arg(keyfile))?;
    Ok(())
}

pub fn luks_uuid(img: &Path) -> Result<String> {
    Ok(run(Command::new("cryptsetup").arg("luksUUID").arg(img))?
        .trim()
        .to_string())
}

/// A copy of the base chroot with proc, sys and dev mounted and the root
/// image attached to a loop device (so cryptroot and keyward's hook find
/// it by UUID); all undone on drop.
pub struct Chroot {
    pub root: PathBuf,
    mounts: Vec<PathBuf>,
    loopdev: Option<String>,
}

impl Chroot {
    /// The copy goes to its own directory under the cache, not into a
    /// test's temporary directory: that one is removed recursively at drop,
    /// which must never reach a /dev still mounted in the copy.
    pub fn new(base: &Path, image: &Path) -> Result<Chroot> {
        let work = cache_root().join(format!(
            "{}{}",
            crate::vm_stale::CHROOT_PREFIX,
            crate::vm_stale::own_tag()
        ));
        std::fs::create_dir_all(&work)?;
        let root = work.join("root");
        let mut c = Chroot {
            root: root.clone(),
            mounts: Vec::new(),
            loopdev: None,
        };
        run(Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(base)
            .arg(&root))?;
        for (src, dst, fstype) in [("proc", "proc", "proc"), ("sysfs", "sys", "sysfs")] {
            let d = root.join(dst);
            run(Command::new("mount").args(["-t", fstype, src]).arg(&d))?;
            c.mounts.push(d);
        }
        let d = root.join("dev");
        run(Command::new("mount").args(["--rbind", "/dev"]).arg(&d))?;
        run(Command::new("mount").args(["--make-rslave"]).arg(&d))?;
        c.mounts.push(d);
        let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(image))?;
        c.loopdev = Some(dev.trim().to_string());
        Ok(c)
    }

    pub fn sh(&self, script: &str) -> Result<String> {
        run(Command::new("chroot")
            .arg(&self.root)
            .args(["/bin/sh", "-ec", script])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
    }

    pub fn write(&self, path: &str, text: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap_or(self.root.as_path()))?;
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// The kernel and the (only) initrd of the chroot.
    pub fn kernel_and_initrd(&self) -> Result<(PathBuf, PathBuf)> {
        let boot = self.root.join("boot");
        let mut k = None;
        let mut i = None;
        for e in std::fs::read_dir(&boot)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("vmlinuz-") {
                k = Some(e.path());
            } else if n.starts_with("initrd.img-") {
                i = Some(e.path());
            }
        }
        Ok((
            k.ok_or_else(|| anyhow!("no kernel in {}", boot.display()))?,
            i.ok_or_else(|| anyhow!("no initrd in {}", boot.display()))?,
        ))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        if let Some(l) = self.loopdev.take() {
            let _ = Command::new("losetup").arg("-d").arg(&l).status();
        }
        for m in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").args(["-R", "-l"]).arg(&m).status();
        }
        // Never recurse into a still-mounted /dev or /proc: the copy is
        // deleted only once nothing is mounted below it.
        if let Some(work) = self.root.parent() {
            crate::vm_stale::remove_unmounted(work);
        }
    }
}

/// The guest's side of the slirp network, in the lab's /24 so that the
/// guardians' real addresses (in the LUKS token) are what the guest dials:
/// slirp hands each guestfwd'ed connection to socat, which connects to
/// the same address from the VM host's namespace.
pub struct GuestNet {
    /// e.g. 198.18.0
    pub prefix: String,
}

impl GuestNet {
    pub fn of(lab: &Lab) -> GuestNet {
        let a = lab.node(0).addr().octets();
        GuestNet {
            prefix: format!("{}.{}.{}", a[0], a[1], a[2]),
        }
    }

    /// Kernel `ip=`: static, guest .200, gateway (slirp) .250.
    pub fn ip_param(&self) -> String {
        format!(
            "ip={p}.200::{p}.250:255.255.255.0:kwtest:eth0:off",
            p = self.prefix
        )
    }

    /// `-netdev` with restrict=on and one guestfwd per address.
    pub fn netdev(&self, fwds: &[(std::net::Ipv4Addr, u16)]) -> String {
        let mut s = format!(
            "user,id=n0,net={p}.0/24,host={p}.250,dns={p}.251,restrict=on",
            p = self.prefix
        );
        for (ip, port) in fwds {
            s.push_str(&format!(
                ",guestfwd=tcp:{ip}:{port}-cmd:socat STDIO TCP:{ip}:{port}"
            ));
        }
        s
    }
}

/// A running VM: its serial console, timestamped from qemu's start.
pub struct Vm {
    child: Child,
    pub started: Instant,
    console: Arc<Mutex<Vec<(Duration, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

pub struct VmSpec<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub image: &'a Path,
    pub append: String,
    pub netdev: String,
}

impl Vm {
    /// Starts qemu inside lab node `node`'s namespace.
    pub fn start(lab: &Lab, node: usize, spec: &VmSpec) -> Result<Vm> {
        let mut c = lab.command(node, "qemu-system-x86_64")?;
        c.args(["-accel", "tcg", "-smp", "1", "-m", "512", "-no-reboot"])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-kernel")
            .arg(spec.kernel)
            .arg("-initrd")
            .arg(spec.initrd)
            .args(["-append", spec.append.as_str()])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio",
                spec.image.display()
            ))
            .args(["-netdev", spec.netdev.as_str()])
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = lab.spawn(node, &mut c)?;
        let console = Arc::new(Mutex::new(Vec::new()));
        let mut out = child.stdout.take().context("qemu stdout")?;
        let sink = console.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let s = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Ok(mut v) = sink.lock() {
                    v.push((started.elapsed(), s));
                }
            }
        });
        Ok(Vm {
            child,
            started,
            console,
            reader: Some(reader),
        })
    }

    /// The whole console so far.
    pub fn console(&self) -> String {
        self.console
            .lock()
            .map(|v| v.iter().map(|(_, s)| s.as_str()).collect())
            .unwrap_or_default()
    }

    /// When `pat` first appeared on the console (from qemu's start).
    pub fn seen(&self, pat: &str) -> Option<Duration> {
        let v = self.console.lock().ok()?;
        let mut acc = String::new();
        for (t, s) in v.iter() {
            acc.push_str(s);
            if acc.contains(pat) {
                return Some(*t);
            }
        }
        None
    }

    /// Waits until `pat` shows on the console; fails after `timeout` or
    /// when qemu exits first, with the console in the error.
    pub fn wait_for(&mut self, pat: &str, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            if let Some(t) = self.seen(pat) {
                return Ok(t);
            }
            if let Some(st) = self.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(200));
                if let Some(t) = self.seen(pat) {
                    return Ok(t);
                }
                bail!(
                    "qemu exited ({st}) before `{pat}`; console:\n{}",
                    self.console()
                );
            }
            if t0.elapsed() > timeout {
                bail!(
                    "no `{pat}` within {timeout:?}; console:\n{}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The marker the guest read from its decrypted root.
    pub fn wait_marker(&mut self, timeout: Duration) -> Result<(Duration, String)> {
        let t = self.wait_for(MARKER_PREFIX, timeout)?;
        // The prefix may arrive before the rest of its line: wait (briefly)
        // for the line's end, else a marker is read cut short.
        let whole = Instant::now() + Duration::from_secs(5);
        loop {
            let con = self.console();
            let rest = con.split_once(MARKER_PREFIX).map(|(_, r)| r.to_string());
            if let Some(rest) = rest {
                if let Some((m, _)) = rest.split_once('\n') {
                    return Ok((t, m.trim().to_string()));
                }
                if Instant::now() >= whole {
                    return Ok((t, rest.trim().to_string()));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.console()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The initramfs-tools script the test adds: once the root is mounted it
/// prints the marker read from it and reboots, which `-no-reboot` turns
/// into qemu exiting.
pub const MARKER_SCRIPT: &str = r#"#!/bin/sh
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
read -r up _ </proc/uptime
echo "kwtest: marker at $up" >/dev/console
echo "KWTEST-MARKER $(cat "${rootmnt}/marker")" >/dev/console
sync
echo b >/proc/sysrq-trigger
"#;

/// What the baseline keyscript prints on the console when it starts, as
/// keyward's keyscript prints "keyward: asking the mesh": the benchmark
/// splits each boot at that line. The guest's uptime follows ("at 12.34"),
/// as on the marker script's "kwtest: marker at" line, so the benchmark
/// can time the steps in between by the guest's clock.
pub const KEYFILE_KEYSCRIPT_LINE: &str = "kwtest: key-file keyscript";

/// The marker script's line before the marker: "kwtest: marker at UPTIME".
pub const MARKER_UPTIME_LINE: &str = "kwtest: marker at";

/// A keyscript printing a fixed key (octal escapes), for the baseline
/// boot: the same LUKS device opened from a key inside the initramfs.
pub fn keyfile_keyscript(key: &[u8]) -> String {
    let esc: String = key.iter().map(|b| format!("\\{b:03o}")).collect();
    format!(
        "#!/bin/sh\nread -r up _ </proc/uptime\necho \"{KEYFILE_KEYSCRIPT_LINE} at $up\" >&2\nprintf '{esc}'\n"
    )
}

/// A copy of the package `deb` with `+kwtest1` appended to its version,
/// written into `dir`: the "newer" package of the upgrade check. Same
/// files, same maintainer scripts; dpkg takes it as an upgrade, which runs
/// every maintainer script of the old and the new package in turn.
pub fn newer_deb(deb: &Path, dir: &Path) -> Result<PathBuf> {
    let tree = dir.join("deb-tree");
    let _ = std::fs::remove_dir_all(&tree);
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree))?;
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control)?;
    let mut version = None;
    let bumped: String = text
        .lines()
        .map(|l| match l.strip_prefix("Version: ") {
            Some(v) => {
                let nv = format!("{}+kwtest1", v.trim());
                version = Some(nv.clone());
                format!("Version: {nv}\n")
            }
            None => format!("{l}\n"),
        })
        .collect();
    let version = version.ok_or_else(|| anyhow!("no Version in {}", control.display()))?;
    std::fs::write(&control, bumped)?;
    let out = dir.join(format!("keyward_{version}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z1", "-b"])
        .arg(&tree)
        .arg(&out))?;
    std::fs::remove_dir_all(&tree)?;
    Ok(out)
}
