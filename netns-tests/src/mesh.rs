//! A keyward mesh of real `keywardd` processes for end-to-end tests, either
//! on loopback (no privileges needed) or one daemon per namespace of a
//! [`Lab`]. Each node has its own config, state dir, boot key, control
//! socket and, on demand, a LUKS2 image file. Every process is killed and
//! every file removed when the mesh drops, also on panic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use keyward_node::control::{Client, Status};

use crate::Lab;

/// Paths of the keyward binaries. `cargo test --workspace` builds them
/// (the node and cli crates have integration tests, so their binaries are
/// built with the tests' feature set); asking cargo again here is a no-op
/// then, and rebuilds them when only this crate's tests were asked for.
pub struct Bins {
    pub keyward: PathBuf,
    pub keywardd: PathBuf,
}

pub fn bins() -> &'static Bins {
    static B: OnceLock<Bins> = OnceLock::new();
    B.get_or_init(|| {
        let exe = std::env::current_exe().expect("executable path");
        let mut dir = exe.parent().expect("executable dir").to_path_buf();
        let in_test = dir.file_name().is_some_and(|n| n == "deps");
        if in_test {
            // target/<profile>/deps/<test> -> target/<profile>
            dir.pop();
            let release = dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["test", "--quiet", "--workspace", "--no-run"]);
            // Cargo sets these for the test process; some build scripts
            // (ring's) rerun when CARGO_MANIFEST_DIR changes, so passing
            // them on would rebuild half of libp2p here and again in the
            // next outer `cargo test`.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy();
                if k.starts_with("CARGO_PKG_")
                    || k.starts_with("CARGO_BIN_EXE_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_BIN_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                        "CARGO_RUSTC_CURRENT_DIR",
                    ]
                    .contains(&k.as_ref())
                {
                    cmd.env_remove(k.as_ref());
                }
            }
            if release {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("running cargo to build the keyward binaries");
            assert!(st.success(), "building keyward binaries failed");
        }
        let b = Bins {
            keyward: dir.join("keyward"),
            keywardd: dir.join("keywardd"),
        };
        assert!(
            b.keyward.exists() && b.keywardd.exists(),
            "keyward and keywardd must sit next to {}: run `cargo build --release --workspace` first",
            exe.display()
        );
        b
    })
}

/// Options common to every node of a mesh.
#[derive(Clone)]
pub struct MeshOptions {
    /// Lines of the `[policy]` table (seconds).
    pub policy: String,
    pub mdns: bool,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            policy: "interval = 1\ntimeout = 6\nextended_timeout = 6\nup_window = 3\n".into(),
            mdns: false,
        }
    }
}

pub struct MeshNode {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
}

pub struct Mesh {
    _tmp: tempfile::TempDir,
    pub nodes: Vec<MeshNode>,
    lab: Option<Arc<Lab>>,
    /// Extra environment of every daemon started from now on.
    daemon_env: Vec<(String, String)>,
}

const PASSPHRASE: &[u8] = b"correct horse battery staple";

impl Mesh {
    /// `n` nodes on 127.0.0.1 with ephemeral ports.
    pub fn loopback(n: usize, opts: &MeshOptions) -> Result<Mesh> {
        Self::build(n, opts, None)
    }

    /// One node per namespace of `lab`, listening on port 7300 of its address.
    pub fn in_lab(lab: Arc<Lab>, opts: &MeshOptions) -> Result<Mesh> {
        let n = lab.nodes().len();
        Self::build(n, opts, Some(lab))
    }

    fn build(n: usize, opts: &MeshOptions, lab: Option<Arc<Lab>>) -> Result<Mesh> {
        // a killed run's directories (LUKS images included) go first; ours
        // are named after this process so the next run can do the same
        crate::stale::remove_stale_files();
        let tmp = tempfile::Builder::new()
            .prefix(&crate::stale::own_mesh_prefix())
            .tempdir()?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("node{i}");
            let dir = tmp.path().join(&name);
            std::fs::create_dir_all(&dir)?;
            let listen = match &lab {
                Some(l) => format!("/ip4/{}/tcp/7300", l.node(i).addr()),
                // A fixed port per node, so a restarted daemon is found at
                // the address its peers and its LUKS token remember.
                None => format!("/ip4/127.0.0.1/tcp/{}", free_port()?),
            };
            let config = dir.join("keyward.toml");
            let text = format!(
                "name = \"{name}\"\nstate_dir = \"{d}/state\"\nboot_key = \"{d}/boot.key\"\ncontrol_socket = \"{d}/control.sock\"\nlisten = [\"{listen}\"]\nmdns = {mdns}\nlog_level = \"info\"\n\n[policy]\n{policy}",
                d = dir.display(),
                mdns = opts.mdns,
                policy = opts.policy
            );
            std::fs::write(&config, text)?;
            nodes.push(MeshNode {
                name,
                dir,
                config,
                child: None,
            });
        }
        Ok(Mesh {
            _tmp: tmp,
            nodes,
            lab,
            daemon_env: Vec::new(),
        })
    }

    fn command(&self, i: usize, program: &Path) -> Result<Command> {
        let mut c = match &self.lab {
            Some(l) => l.command(i, program.to_str().unwrap_or_default())?,
            None => Command::new(program),
        };
        c.env("KEYWARD_CONFIG", &self.nodes[i].config)
            .env("NO_COLOR", "1");
        if self.lab.is_none() {
            // Every address of a loopback mesh is 127.0.0.1, which bind
            // and refresh refuse for real meshes.
            c.env("KEYWARD_ALLOW_LOOPBACK", "true");
        }
        Ok(c)
    }

    /// Runs `keyward ARGS` as node `i` with `env` set on top of the mesh's.
    pub fn cli_env(&self, i: usize, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let mut c = self.command(i, &bins().keyward)?;
        c.args(args).stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        Ok(c.output()?)
    }

    /// Restarts node `i`'s daemon listening on another loopback port, as
    /// if it moved while the others were off; returns the new port.
    pub fn move_to_new_port(&mut self, i: usize) -> Result<u16> {
        anyhow::ensure!(
            self.lab.is_none(),
            "move_to_new_port is for loopback meshes"
        );
        let port = free_port()?;
        self.relisten(i, port)?;
        Ok(port)
    }

    /// Restarts node `i`'s daemon listening on `port` of its address.
    pub fn relisten(&mut self, i: usize, port: u16) -> Result<()> {
        self.stop(i)?;
        let addr = match &self.lab {
            Some(l) => l.node(i).addr().to_string(),
            None => "127.0.0.1".to_string(),
        };
        let cfg = &self.nodes[i].config;
        let text = std::fs::read_to_string(cfg)?;
        let moved: String = text
            .lines()
            .map(|l| {
                if l.starts_with("listen") {
                    format!("listen = [\"/ip4/{addr}/tcp/{port}\"]\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(cfg, moved)?;
        self.start(i)
    }

    /// Runs `keyward ARGS` as node `i`.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<Output> {
        let mut c = self.command(i, &bins().keyward)?;
        c.args(args).stdin(Stdio::null());
        Ok(c.output()?)
    }

    /// Runs `keyward ARGS` and returns stdout, or fails with its stderr.
    pub fn cli_ok(&self, i: usize, args: &[&str]) -> Result<String> {
        let o = self.cli(i, args)?;
        if !o.status.success() {
            bail!(
                "node{i}: keyward {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    pub fn init(&self, i: usize, mesh: Option<&str>) -> Result<()> {
        match mesh {
            Some(m) => self.cli_ok(i, &["init", "--mesh", m])?,
            None => self.cli_ok(i, &["init"])?,
        };
        Ok(())
    }

    /// Starts node `i`'s daemon and waits for its control socket.
    pub fn start(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.nodes[i].dir.join("keywardd.log"))?;
        let mut c = self.command(i, &bins().keywardd)?;
        c.envs(self.daemon_env.iter().map(|(k, v)| (k, v)));
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = match &self.lab {
            Some(l) => l.spawn(i, &mut c)?,
            None => c.spawn()?,
        };
        self.nodes[i].child = Some(child);
        let sock = self.nodes[i].dir.join("control.sock");
        self.wait_for(Duration::from_secs(10), || {
            Ok(std::os::unix::net::UnixStream::connect(&sock).is_ok())
        })
        .with_context(|| format!("node{i} daemon did not come up; log:\n{}", self.log(i)))
    }

    /// Stops node `i` cleanly (SIGTERM: it says goodbye to its peers).
    pub fn stop(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            // SAFETY: plain kill(2) on a child we own.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if c.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            bail!("node{i} did not stop within 10 s of SIGTERM");
        }
        Ok(())
    }

    /// Kills node `i` without a goodbye (a crash or a power cut).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Appends `text` (TOML) to node `i`'s config; takes effect at its next
    /// start.
    pub fn append_config(&self, i: usize, text: &str) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.nodes[i].config)?;
        writeln!(f, "\n{text}")?;
        Ok(())
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("keywardd.log")).unwrap_or_default()
    }

    /// Node `i`'s status as `keyward status --json` prints it (its `todo`
    /// list left out).
    pub fn status(&self, i: usize) -> Result<Status> {
        Ok(serde_json::from_str(
            &self.cli_ok(i, &["status", "--json"])?,
        )?)
    }

    /// Node `i`'s status straight from its control socket, without
    /// starting a `keyward` process: for polling in tight loops. Control
    /// sockets are filesystem sockets, reachable from any namespace.
    pub fn status_direct(&self, i: usize) -> Result<Status> {
        let c = Client::new(
            self.nodes[i].dir.join("control.sock"),
            Duration::from_secs(10),
        );
        Ok(c.status()?)
    }

    /// Members node `i` counts as active, by name.
    pub fn members(&self, i: usize) -> Result<Vec<String>> {
        let v = self.status(i)?;
        Ok(v.members.into_iter().map(|m| m.name).collect())
    }

    /// Polls `f` every 50 ms until it is true or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
        let t = Instant::now();
        let mut last = None;
        while t.elapsed() < timeout {
            match f() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(anyhow!(
            "condition not met within {timeout:?} (last error: {last:?})"
        ))
    }

    /// Inits every node, founds the mesh on node 0, starts all daemons
    /// and joins nodes 1.. with invites from node 0; waits until every
    /// roster has every member.
    pub fn form(&mut self) -> Result<()> {
        let n = self.nodes.len();
        self.init(0, Some("test"))?;
        for i in 1..n {
            self.init(i, None)?;
        }
        for i in 0..n {
            self.start(i)?;
        }
        for i in 1..n {
            self.join(i, 0)?;
        }
        self.converge(Duration::from_secs(20))
    }

    /// Node `i` joins with an invite made by `inviter`.
    pub fn join(&self, i: usize, inviter: usize) -> Result<()> {
        let token = self.cli_ok(inviter, &["invite"])?;
        self.cli_ok(i, &["join", token.trim()])?;
        Ok(())
    }

    /// Node `i` joins as an auditor member, invited by `inviter`.
    pub fn join_as_auditor(&self, i: usize, inviter: usize) -> Result<()> {
        let token = self.cli_ok(inviter, &["invite", "--role", "auditor"])?;
        self.cli_ok(i, &["join", token.trim()])?;
        Ok(())
    }

    /// `keyward audit keygen --out key` on node `i`'s side; the auditor's
    /// age recipient (age1...) it printed.
    pub fn auditor_keygen(&self, i: usize, key: &Path) -> Result<String> {
        let path = key.to_str().context("auditor key path is not UTF-8")?;
        let out = self.cli_ok(i, &["audit", "keygen", "--out", path])?;
        out.split_whitespace()
            .find(|w| w.starts_with("age1"))
            .map(String::from)
            .with_context(|| format!("no age1 recipient in {out}"))
    }

    /// Waits until every running node sees every node of the mesh as a
    /// member and connected.
    pub fn converge(&self, timeout: Duration) -> Result<()> {
        let n = self.nodes.len();
        let running: Vec<usize> = (0..n).filter(|i| self.nodes[*i].child.is_some()).collect();
        self.wait_for(timeout, || {
            for &i in &running {
                let v = self.status(i)?;
                let ms = &v.members;
                let connected = ms.iter().filter(|m| m.connected).count();
                if ms.len() != n || connected != running.len() {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Makes node `i`'s LUKS2 image (20 MiB, cheap PBKDF) with a passphrase
    /// file; returns (image, passphrase file).
    pub fn make_image(&self, i: usize) -> Result<(PathBuf, PathBuf)> {
        let img = self.nodes[i].dir.join("disk.img");
        let pass = self.nodes[i].dir.join("passphrase");
        std::fs::File::create(&img)?.set_len(20 << 20)?;
        std::fs::write(&pass, PASSPHRASE)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600))?;
        keyward_node::luks::Device::new(&img).format_for_tests(PASSPHRASE)?;
        Ok((img, pass))
    }

    /// Binds node `i`'s image with `extra` bind arguments.
    pub fn bind(&self, i: usize, extra: &[&str]) -> Result<String> {
        let img = self.nodes[i].dir.join("disk.img");
        let pass = self.nodes[i].dir.join("passphrase");
        let mut args = vec![
            "bind",
            "--device",
            img.to_str().unwrap_or_default(),
            "--key-file",
            pass.to_str().unwrap_or_default(),
        ];
        args.extend_from_slice(extra);
        self.cli_ok(i, &args)
    }

    /// `keyward unlock --check` for node `i`'s image, as the initramfs would
    /// run it: only the boot key, the image and the network.
    pub fn unlock(&self, i: usize, timeout: &str) -> Result<Output> {
        let img = self.nodes[i].dir.join("disk.img");
        self.cli(
            i,
            &[
                "unlock",
                "--device",
                img.to_str().unwrap_or_default(),
                "--check",
                "--timeout",
                timeout,
            ],
        )
    }

    pub fn dir(&self, i: usize) -> &Path {
        &self.nodes[i].dir
    }

    /// The TCP port node `i`'s daemon listens on (its config's `listen`),
    /// e.g. for a hand-driven client on a loopback mesh.
    pub fn listen_port(&self, i: usize) -> Result<u16> {
        let cfg = keyward_node::config::Config::load(&self.nodes[i].config)?;
        cfg.listen
            .iter()
            .find_map(|a| a.strip_prefix("/ip4/")?.split_once("/tcp/")?.1.parse().ok())
            .ok_or_else(|| anyhow!("node{i} listens on no TCP port: {:?}", cfg.listen))
    }

    /// Node `i`'s node key, read from its state dir: what an attacker who
    /// took the machine over holds.
    pub fn node_key(&self, i: usize) -> Result<keyward_node::identity::NodeKey> {
        use keyward_node::keyfile::KeyFile;
        let cfg = keyward_node::config::Config::load(&self.nodes[i].config)?;
        let path = cfg.node_key_path();
        keyward_node::identity::NodeKey::load(&path)
            .with_context(|| format!("node{i}'s node key {}", path.display()))
    }

    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Sets `key=value` in the environment of every daemon started from
    /// now on (e.g. `RUST_LOG` to see what a libp2p behaviour does).
    pub fn set_daemon_env(&mut self, key: &str, value: &str) {
        self.daemon_env.retain(|(k, _)| k != key);
        self.daemon_env.push((key.into(), value.into()));
    }

    /// Whether node `i`'s daemon was started and has exited since (a
    /// crash), with its exit status; `None` while it runs or was never
    /// started. The daemon stays recorded, so [`Mesh::start`] will not
    /// restart it until [`Mesh::kill`].
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.nodes[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The lab this mesh runs in, if any.
    pub fn lab(&self) -> Option<&Arc<Lab>> {
        self.lab.as_ref()
    }

    /// Process id of node `i`'s running daemon.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(|c| c.id())
    }

    /// Sends `signal` to node `i`'s running daemon (e.g. `libc::SIGSTOP`
    /// to hang it, `libc::SIGCONT` to resume it); the daemon stays owned
    /// by the mesh.
    pub fn signal(&self, i: usize, signal: i32) -> Result<()> {
        let pid = self
            .pid(i)
            .ok_or_else(|| anyhow!("node{i} has no running daemon"))?;
        // SAFETY: plain kill(2) on a child we own.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `keyward ARGS` in node `i`'s namespace (or on the host for a
    /// loopback mesh) with another config file, e.g. an initramfs-like
    /// config naming only a boot key.
    pub fn cli_with_config(&self, i: usize, config: &Path, args: &[&str]) -> Result<Output> {
        let mut c = self.command(i, &bins().keyward)?;
        c.env("KEYWARD_CONFIG", config)
            .args(args)
            .stdin(Stdio::null());
        Ok(c.output()?)
    }

    /// What an initramfs in namespace `ns` runs: `keyward unlock --check`
    /// of `image` with a config naming only `boot_key` (no state dir, no
    /// node key, no daemon: the guardians and their addresses come from
    /// the image's LUKS token), for up to `timeout` (`"20s"`). Prints what
    /// it said and how long it took.
    pub fn initramfs_unlock(
        &self,
        ns: usize,
        boot_key: &Path,
        image: &Path,
        timeout: &str,
    ) -> Result<Output> {
        let dir = image
            .parent()
            .ok_or_else(|| anyhow!("{} has no directory", image.display()))?;
        let cfg = dir.join(format!("initramfs-{ns}.toml"));
        std::fs::write(&cfg, format!("boot_key = \"{}\"\n", boot_key.display()))
            .with_context(|| format!("writing {}", cfg.display()))?;
        let (Some(img), Some(key)) = (image.to_str(), boot_key.to_str()) else {
            bail!("paths that are not UTF-8: {image:?}, {boot_key:?}");
        };
        let t = Instant::now();
        let args = [
            "unlock",
            "--check",
            "--device",
            img,
            "--boot-key",
            key,
            "--timeout",
            timeout,
        ];
        let o = self.cli_with_config(ns, &cfg, &args)?;
        println!(
            "  unlock in ns{ns} ({}) after {} ms: {}",
            image.display(),
            t.elapsed().as_millis(),
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace('\n', " | ")
        );
        Ok(o)
    }

    /// Node `i` reboots: its initramfs asks with its own boot key and
    /// image ([`Mesh::initramfs_unlock`]).
    pub fn reboot_unlock(&self, i: usize, timeout: &str) -> Result<Output> {
        let dir = self.dir(i);
        self.initramfs_unlock(i, &dir.join("boot.key"), &dir.join("disk.img"), timeout)
    }

    /// Like [`Mesh::form`] for the listed nodes only: inits them, founds
    /// the mesh on `nodes[0]`, starts their daemons, joins the others with
    /// invites from `nodes[0]` and waits until they converge among
    /// themselves. Nodes not listed are left alone.
    pub fn form_nodes(&mut self, nodes: &[usize]) -> Result<()> {
        let Some((&first, rest)) = nodes.split_first() else {
            return Ok(());
        };
        self.init(first, Some("test"))?;
        for &i in rest {
            self.init(i, None)?;
        }
        for &i in nodes {
            self.start(i)?;
        }
        for &i in rest {
            self.join(i, first)?;
        }
        self.converge_among(nodes, Duration::from_secs(20))
    }

    /// Waits until every running node of `nodes` sees every node of
    /// `nodes` as a member (the roster may hold others too) and is
    /// connected to every other running one of them.
    pub fn converge_among(&self, nodes: &[usize], timeout: Duration) -> Result<()> {
        let want: std::collections::BTreeSet<&str> =
            nodes.iter().map(|&i| self.nodes[i].name.as_str()).collect();
        let running: Vec<usize> = nodes.iter().copied().filter(|&i| self.running(i)).collect();
        let running_names: std::collections::BTreeSet<&str> = running
            .iter()
            .map(|&i| self.nodes[i].name.as_str())
            .collect();
        self.wait_for(timeout, || {
            for &i in &running {
                let v = self.status(i)?;
                let ms = &v.members;
                let names: std::collections::BTreeSet<&str> =
                    ms.iter().map(|m| m.name.as_str()).collect();
                if !want.is_subset(&names) {
                    return Ok(false);
                }
                let connected = ms
                    .iter()
                    .all(|m| !running_names.contains(m.name.as_str()) || m.connected);
                if !connected {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }
}

/// One daemon's connections, from the OS and from its own status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conns {
    /// Established TCP sockets the process holds (`/proc/PID/fd` and
    /// `/proc/PID/net/tcp{,6}`, in its own namespace).
    pub sockets: usize,
    /// Members its status shows connected (itself not counted).
    pub members: usize,
    /// Connections from non-members (strangers, an unlocking boot key).
    pub strangers: usize,
    /// Members it keeps connections to: its guardians (`guards_me`),
    /// wards (it holds shares of them) and gossip neighbours.
    pub wanted: usize,
}

impl Conns {
    /// The simulator's invariant `net.connection-bound`: wanted peers
    /// plus this many transient ones (a request to a member outside the
    /// overlay, a peer whose roster differs for a moment).
    pub const TRANSIENT: usize = 8;

    pub fn bound(&self) -> usize {
        self.wanted + Self::TRANSIENT
    }
}

/// Established TCP sockets of process `pid`, counted by the kernel: the
/// socket inodes among its open files that its namespace's TCP tables
/// list in state ESTABLISHED.
pub fn tcp_established(pid: u32) -> Result<usize> {
    let mut inodes = std::collections::HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(l) = std::fs::read_link(e?.path()) else {
            continue; // closed meanwhile
        };
        let l = l.to_string_lossy();
        if let Some(n) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
            inodes.insert(n.to_string());
        }
    }
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "01" && inodes.contains(f[9]) {
                n += 1;
            }
        }
    }
    Ok(n)
}

impl Mesh {
    /// Node `i`'s connections now: its sockets as the OS counts them and
    /// what its status says (see [`Conns`]).
    pub fn conns(&self, i: usize) -> Result<Conns> {
        let pid = self
            .pid(i)
            .ok_or_else(|| anyhow!("node{i} has no running daemon"))?;
        let v = self.status_direct(i)?;
        let sockets = tcp_established(pid)?;
        let others = v.members.iter().filter(|m| !m.me);
        Ok(Conns {
            sockets,
            members: others.clone().filter(|m| m.connected).count(),
            strangers: v.strangers.connections,
            wanted: others
                .filter(|m| m.guards_me || m.gossip || !m.holds_shares_epochs.is_empty())
                .count(),
        })
    }

    /// Inits every node of `nodes`, founds the mesh on the first, starts
    /// their daemons and joins the others, each with an invite from a
    /// member that joined before it (round robin over the first
    /// `inviters`), then waits until their rosters agree
    /// ([`Mesh::converge_rosters`]). For meshes too big for
    /// [`Mesh::converge`], which wants every node connected to every other.
    /// Returns how long the invites and joins took.
    pub fn form_large(
        &mut self,
        nodes: &[usize],
        inviters: usize,
        timeout: Duration,
    ) -> Result<Duration> {
        let Some((&first, rest)) = nodes.split_first() else {
            return Ok(Duration::ZERO);
        };
        self.init(first, Some("test"))?;
        for &i in rest {
            self.init(i, None)?;
        }
        for &i in nodes {
            self.start(i)?;
        }
        let t = Instant::now();
        for (k, &i) in rest.iter().enumerate() {
            // nodes[0..=k] are members by now
            let inviter = nodes[k % inviters.max(1).min(k + 1)];
            self.join(i, inviter)?;
        }
        let joins = t.elapsed();
        self.converge_rosters(nodes, timeout)?;
        Ok(joins)
    }

    /// Waits until every running node of `nodes` lists exactly the nodes
    /// of `nodes` and their rosters are equal (same digest). Connections
    /// are not looked at: beyond `FULL_MESH_UP_TO` members a node keeps
    /// only its overlay connected.
    pub fn converge_rosters(&self, nodes: &[usize], timeout: Duration) -> Result<()> {
        let want: std::collections::BTreeSet<&str> =
            nodes.iter().map(|&i| self.nodes[i].name.as_str()).collect();
        let running: Vec<usize> = nodes.iter().copied().filter(|&i| self.running(i)).collect();
        self.wait_for(timeout, || {
            let mut digest = None;
            for &i in &running {
                let v = self.status_direct(i)?;
                let names: std::collections::BTreeSet<&str> =
                    v.members.iter().map(|m| m.name.as_str()).collect();
                if names != want {
                    return Ok(false);
                }
                let d = v.mesh.map(|m| m.digest);
                if digest.is_some() && digest != Some(d.clone()) {
                    return Ok(false);
                }
                digest = Some(d);
            }
            Ok(true)
        })
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Whether cryptsetup can be run (LUKS tests are skipped otherwise).
pub fn have_cryptsetup() -> bool {
    keyward_node::luks::available()
}

/// Prints the tail (`lines` lines) of every daemon's log when the test
/// that holds it fails; does nothing otherwise. With `KEYWARD_TEST_LOGS`
/// set to a directory, also copies the whole logs there (as
/// `nodeN.log`): a flaky failure's story is rarely in the last lines.
pub struct LogsOnPanic {
    pub dirs: Vec<PathBuf>,
    pub lines: usize,
}

impl LogsOnPanic {
    /// For every node of `mesh`.
    pub fn of(mesh: &Mesh, n: usize, lines: usize) -> Self {
        LogsOnPanic {
            dirs: (0..n).map(|i| mesh.dir(i).to_path_buf()).collect(),
            lines,
        }
    }
}

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let keep = std::env::var_os("KEYWARD_TEST_LOGS").map(PathBuf::from);
        for (i, d) in self.dirs.iter().enumerate() {
            let log = std::fs::read_to_string(d.join("keywardd.log")).unwrap_or_default();
            if let Some(k) = &keep {
                let _ = std::fs::create_dir_all(k);
                let _ = std::fs::write(k.join(format!("node{i}.log")), &log);
            }
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(self.lines)..];
            eprintln!("==== node{i} keywardd.log (last {} lines)", tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}
