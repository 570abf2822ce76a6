//! The rig shared by the VM boot test (tests/vmboot.rs) and the boot
//! benchmark (`keyward-vmbench`): a lab with five keywardd guardians and
//! the booting node, a LUKS2 root image bound to them, and two initramfs
//! images of the same Debian chroot: one built by keyward's package, one
//! whose keyscript prints a key kept in the initramfs (the baseline).
//!
//! Preparing it also proves the package's life cycle in that chroot:
//! `dpkg -i` (whose trigger runs update-initramfs, and keyward's hook adds
//! the keyscript by itself), an upgrade to a newer version over it (the
//! admin's config kept without a question, the units' state unchanged,
//! the initramfs rebuilt and still carrying keyward: the boots use that
//! one), `dpkg -r` (config kept) and `dpkg --purge` (nothing of keyward
//! left).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::mesh::{Mesh, MeshOptions};
use crate::vm::{self, Chroot, GuestNet, Vm, VmSpec, CRYPT_NAME};
use crate::Lab;

/// Guardians 0..5, the booting node last.
pub const GUARDIANS: usize = 5;
/// The booting node.
pub const OWNER: usize = GUARDIANS;
/// A boot under TCG on a loaded CI machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Times of the release policy: long enough for a TCG boot to reach the
/// keyscript, short enough to wait out for the seized scenario.
pub const POLICY_TIMEOUT_S: u64 = 90;
/// The guardians' port.
pub const PORT: u16 = 7300;
/// What the keyscript prints first, and the prompt cryptsetup shows.
pub const ASKING: &str = "keyward: asking the mesh";

/// The .deb to install: $KEYWARD_DEB, else the newest in target/debian,
/// built with dist/build-deb.sh if there is none.
pub fn deb() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("KEYWARD_DEB") {
        return Ok(p.into());
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let find = || {
        std::fs::read_dir(repo.join("target/debian"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    let st = std::process::Command::new(repo.join("dist/build-deb.sh"))
        .status()
        .context("running dist/build-deb.sh")?;
    ensure!(st.success(), "dist/build-deb.sh failed");
    find().context("dist/build-deb.sh made no .deb")
}

/// Median of non-empty `v`.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub struct Rig {
    pub lab: Arc<Lab>,
    pub m: Mesh,
    pub net: GuestNet,
    pub kernel: PathBuf,
    pub initrd_keyward: PathBuf,
    pub initrd_keyfile: PathBuf,
    pub image: PathBuf,
    pub marker: String,
    /// The .deb the initramfs came from.
    pub deb: PathBuf,
    /// When the owner's daemon last stopped (after bind).
    pub owner_stopped: Instant,
    /// How long the package's install, upgrade, remove and purge took.
    pub lifecycle: Duration,
    pub work: tempfile::TempDir,
}

/// Shell run in the chroot that lists what the package's units look like
/// to systemd: enabled links and deb-systemd-helper's state.
const UNIT_STATE: &str = "for f in /etc/systemd/system/*.wants/*keyward* /var/lib/systemd/deb-systemd-helper-enabled/*keyward* /var/lib/systemd/deb-systemd-helper-enabled/*/*keyward*; do [ -e \"$f\" ] && echo \"$f\"; done; true";

impl Rig {
    pub fn new() -> Result<Rig> {
        vm::preflight()?;
        let base = vm::base_chroot()?;
        let deb = deb()?;
        let lab = Arc::new(Lab::new(GUARDIANS + 1)?);
        let opts = MeshOptions {
            policy: format!(
                "interval = 1\ntimeout = {t}\nextended_timeout = {t}\nup_window = 3\n",
                t = POLICY_TIMEOUT_S
            ),
            mdns: false,
        };
        let mut m = Mesh::in_lab(lab.clone(), &opts)?;
        m.form()?;
        let work = tempfile::Builder::new()
            .prefix(&format!(
                "{}{}-",
                crate::vm_stale::WORK_PREFIX,
                crate::vm_stale::own_tag()
            ))
            .tempdir()?;
        let image = m.dir(OWNER).join("disk.img");
        let pass = m.dir(OWNER).join("passphrase");
        std::fs::write(&pass, b"correct horse battery staple")?;
        let keyfile = work.path().join("keyfile");
        let key: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        std::fs::write(&keyfile, &key)?;
        let marker = format!("decrypted-{}", std::process::id());
        vm::make_root_image(&image, &marker, &pass, &keyfile)?;
        let out = m.bind(OWNER, &[])?;
        ensure!(out.contains("3-of-5"), "{out}");
        m.stop(OWNER)?;
        let owner_stopped = Instant::now();
        let uuid = vm::luks_uuid(&image)?;

        let ch = Chroot::new(&base, &image)?;
        let t_pkg = Instant::now();
        let debname = deb
            .file_name()
            .context("KEYWARD_DEB has no file name")?
            .to_string_lossy()
            .into_owned();
        std::fs::copy(&deb, ch.root.join("tmp").join(&debname))?;
        let newer = vm::newer_deb(&deb, &ch.root.join("tmp"))?;
        let newername = newer
            .file_name()
            .context("newer .deb")?
            .to_string_lossy()
            .into_owned();
        let config = format!("name = \"node{OWNER}\"\nmdns = false\n");
        ch.write(
            "/etc/keyward/boot.key",
            &std::fs::read(m.dir(OWNER).join("boot.key"))?,
            0o600,
        )?;
        ch.write(
            "/etc/crypttab",
            format!("{CRYPT_NAME} UUID={uuid} none luks,initramfs\n").as_bytes(),
            0o644,
        )?;
        ch.write(
            "/etc/initramfs-tools/scripts/local-bottom/kwtest-marker",
            vm::MARKER_SCRIPT.as_bytes(),
            0o755,
        )?;
        ch.write(
            "/etc/initramfs-tools/conf.d/kwtest",
            b"UMASK=0077\nRESUME=none\n",
            0o644,
        )?;
        // The package's own path: dpkg -i, whose trigger runs
        // update-initramfs. The boot key was put in place first (as after
        // `keyward init`); the config is the package's own until the admin
        // edits it below.
        let initramfs_has_keyward = "lsinitramfs /boot/initrd.img-* | grep -E 'keyward|boot.key|cryptroot/crypttab'; echo ---; rm -rf /tmp/x; unmkinitramfs /boot/initrd.img-* /tmp/x >/dev/null 2>&1; cat /tmp/x/main/cryptroot/crypttab 2>/dev/null || cat /tmp/x/cryptroot/crypttab; rm -rf /tmp/x";
        let log = ch.sh(&format!(
            "dpkg -i /tmp/{debname} </dev/null >/tmp/dpkg.log 2>&1 || {{ cat /tmp/dpkg.log; exit 1; }}; cat /tmp/dpkg.log; grep -q 'update-initramfs: Generating' /tmp/dpkg.log || update-initramfs -u -k all 2>&1; {initramfs_has_keyward}"
        ))?;
        eprintln!("vmtest: chroot, dpkg -i:\n{log}");
        let check_initramfs = |log: &str, when: &str| -> Result<()> {
            ensure!(
                log.contains("usr/lib/keyward/keyward-unlock")
                    && log.contains("etc/keyward/boot.key"),
                "{when}: the initramfs lacks keyward:\n{log}"
            );
            ensure!(
                log.contains("keyscript=/usr/lib/keyward/keyward-keyscript"),
                "{when}: the hook did not add the keyscript to the initramfs crypttab:\n{log}"
            );
            Ok(())
        };
        check_initramfs(&log, "dpkg -i")?;
        let units_installed = ch.sh(UNIT_STATE)?;
        ensure!(
            units_installed.contains("timers.target.wants/keyward-refresh.timer")
                && !units_installed.contains(".wants/keywardd.service"),
            "after dpkg -i the refresh timer should be enabled and keywardd not (until init/join):\n{units_installed}"
        );

        // The admin edits the config (a conffile).
        ch.write("/etc/keyward/keyward.toml", config.as_bytes(), 0o644)?;
        // Upgrade over it. No --force-conf*: with the config unchanged in
        // the package dpkg must keep the admin's without asking (stdin is
        // /dev/null, so a question would fail the install). The trigger
        // rebuilds the initramfs; the boots below use that one.
        let log = ch.sh(&format!(
            "dpkg -i /tmp/{newername} </dev/null >/tmp/dpkg.log 2>&1 || {{ cat /tmp/dpkg.log; exit 1; }}; cat /tmp/dpkg.log; grep -q 'update-initramfs: Generating' /tmp/dpkg.log; dpkg-query -W -f='${{Version}} ${{db:Status-Status}}\\n' keyward; ls /etc/keyward; {initramfs_has_keyward}"
        ))?;
        eprintln!("vmtest: chroot, upgrade:\n{log}");
        check_initramfs(&log, "upgrade")?;
        ensure!(
            log.contains("+kwtest1 installed"),
            "upgrade: not installed:\n{log}"
        );
        ensure!(
            !log.contains(".dpkg-"),
            "upgrade: conffile question:\n{log}"
        );
        let kept = std::fs::read_to_string(ch.root.join("etc/keyward/keyward.toml"))?;
        ensure!(kept == config, "upgrade: the config changed:\n{kept}");
        let units_upgraded = ch.sh(UNIT_STATE)?;
        ensure!(
            units_upgraded == units_installed,
            "upgrade changed the units' state:\nbefore:\n{units_installed}\nafter:\n{units_upgraded}"
        );

        let (k, i) = ch.kernel_and_initrd()?;
        let kernel = work.path().join("vmlinuz");
        let initrd_keyward = work.path().join("initrd-keyward");
        std::fs::copy(&k, &kernel)?;
        std::fs::copy(&i, &initrd_keyward)?;
        // The baseline: the same device opened by a keyscript that prints a
        // key kept in the initramfs. keyward's hook leaves a device with a
        // keyscript of its own alone, so this initramfs has no keyward.
        ch.write(
            "/usr/local/sbin/kwtest-keyfile",
            vm::keyfile_keyscript(&key).as_bytes(),
            0o755,
        )?;
        ch.write(
            "/etc/crypttab",
            format!("{CRYPT_NAME} UUID={uuid} none luks,initramfs,keyscript=/usr/local/sbin/kwtest-keyfile\n").as_bytes(),
            0o644,
        )?;
        ch.sh("update-initramfs -u -k all 2>&1")?;
        let initrd_keyfile = work.path().join("initrd-keyfile");
        std::fs::copy(ch.kernel_and_initrd()?.1, &initrd_keyfile)?;

        // Remove keeps the config and the node's identity; purge removes
        // every file and link of keyward (docs/boot.md says so).
        let log = ch.sh("dpkg -r keyward </dev/null 2>&1; ls /etc/keyward; test ! -e /usr/lib/keyward/keyward-unlock")?;
        ensure!(
            log.contains("keyward.toml") && log.contains("boot.key"),
            "dpkg -r should keep /etc/keyward:\n{log}"
        );
        let log = ch.sh("dpkg --purge keyward </dev/null 2>&1; echo ---; find / -xdev \\( -path /tmp -o -path /proc -o -path /sys -o -path /dev \\) -prune -o -name '*keyward*' -print; dpkg-query -W -f='${db:Status-Status}\\n' keyward 2>&1 || true")?;
        let left = log.split_once("---").map(|x| x.1).unwrap_or_default();
        ensure!(
            !left.contains('/'),
            "dpkg --purge left files of keyward:\n{log}"
        );
        let lifecycle = t_pkg.elapsed();
        eprintln!("vmtest: chroot, remove and purge (nothing left):\n{log}");
        drop(ch);
        let net = GuestNet::of(&lab);
        Ok(Rig {
            lab,
            m,
            net,
            kernel,
            initrd_keyward,
            initrd_keyfile,
            image,
            marker,
            deb,
            owner_stopped,
            lifecycle,
            work,
        })
    }

    pub fn guardian_fwds(&self, port: u16) -> Vec<(std::net::Ipv4Addr, u16)> {
        (0..GUARDIANS)
            .map(|i| (self.lab.node(i).addr(), port))
            .collect()
    }

    /// Boots with `initrd`; the image is a fresh copy each time.
    pub fn boot(
        &self,
        initrd: &Path,
        cmdline: &str,
        fwds: &[(std::net::Ipv4Addr, u16)],
    ) -> Result<Vm> {
        let img = self.work.path().join("boot.img");
        std::fs::copy(&self.image, &img)?;
        let append = format!(
            "console=ttyS0 root=/dev/mapper/{CRYPT_NAME} ro panic=-1 net.ifnames=0 quiet {} {cmdline}",
            self.net.ip_param()
        );
        Vm::start(
            &self.lab,
            OWNER,
            &VmSpec {
                kernel: &self.kernel,
                initrd,
                image: &img,
                append,
                netdev: self.net.netdev(fwds),
            },
        )
    }

    /// The owner runs for a moment so its guardians saw it alive, then
    /// stops cleanly, as before a planned reboot.
    pub fn owner_was_just_up(&mut self) -> Result<()> {
        self.m.start(OWNER)?;
        self.m.converge(Duration::from_secs(30))?;
        std::thread::sleep(Duration::from_secs(2));
        self.m.stop(OWNER)
    }

    pub fn expect_marker(&self, vm: &mut Vm, what: &str) -> Result<Duration> {
        let (t, got) = vm
            .wait_marker(BOOT_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{what}: {e:#}"))?;
        ensure!(
            got == self.marker,
            "{what}: marker {got:?}, want {:?}",
            self.marker
        );
        Ok(t)
    }

    /// From qemu's start: when the keyscript began and when the
    /// passphrase prompt showed.
    pub fn prompt_times(&self, vm: &mut Vm, what: &str) -> Result<(Duration, Duration)> {
        let asked = vm.wait_for(ASKING, BOOT_TIMEOUT)?;
        let prompt = vm
            .wait_for(
                &format!("Please unlock disk {CRYPT_NAME}"),
                Duration::from_secs(30),
            )
            .map_err(|e| anyhow::anyhow!("{what}: {e:#}"))?;
        Ok((asked, prompt))
    }

    /// Seconds from the keyscript's first line to the passphrase prompt.
    pub fn prompt_delay(&self, vm: &mut Vm, what: &str) -> Result<Duration> {
        let (asked, prompt) = self.prompt_times(vm, what)?;
        Ok(prompt.saturating_sub(asked))
    }

    /// Sets lockdown from guardian 1 and waits until every guardian has it.
    pub fn lockdown(&self) -> Result<()> {
        self.m.cli_ok(1, &["lockdown"])?;
        self.m.wait_for(Duration::from_secs(10), || {
            Ok((0..GUARDIANS).all(|i| {
                self.m
                    .status(i)
                    .map(|v| v.lockdown.is_some())
                    .unwrap_or(false)
            }))
        })
    }
}
