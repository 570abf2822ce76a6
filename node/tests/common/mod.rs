//! A real keywardd for the integration tests of this crate.

#![allow(dead_code)] // each test binary uses part of it

pub mod peer;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyward_node::config::Config;
use keyward_node::control::{Client, CtlReply, CtlRequest, Status};

/// One daemon; killed with the test, also when an assertion fails.
pub struct Node {
    pub dir: PathBuf,
    pub cfg: Config,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    pub fn start(dir: &Path, listen: &str, quic: bool, mesh: Option<&str>) -> Node {
        Self::start_with_policy(
            dir,
            listen,
            quic,
            mesh,
            "interval = 1\ntimeout = 6\nup_window = 3\n",
        )
    }

    /// As `start`, with the `[policy]` section's lines given.
    pub fn start_with_policy(
        dir: &Path,
        listen: &str,
        quic: bool,
        mesh: Option<&str>,
        policy: &str,
    ) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("k.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"{1}\"\nstate_dir = \"{0}/state\"\nboot_key = \"{0}/boot.key\"\ncontrol_socket = \"{0}/ctl.sock\"\nlisten = [\"{listen}\"]\nmdns = false\nquic = {quic}\n[policy]\n{policy}",
                dir.display(),
                dir.file_name().unwrap().to_string_lossy()
            ),
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        keyward_node::daemon::init(&cfg, mesh).unwrap();
        let mut n = Node {
            dir: dir.into(),
            child: spawn(dir, &path),
            cfg,
        };
        n.until_up();
        n
    }

    /// Starts the daemon again on the same state (after [`Node::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.dir, &self.dir.join("k.toml"));
        self.until_up();
    }

    /// Waits for the control socket. sled releases its database lock a
    /// moment after the last handle is dropped, so a daemon started right
    /// after `init` (in this process) or a killed daemon may find it still
    /// held; it exits saying so, and is started again.
    fn until_up(&mut self) {
        for _ in 0..50 {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if self.call(CtlRequest::Status).is_ok() {
                    return;
                }
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !matches!(self.child.try_wait(), Ok(Some(_)))
                || !self.log().contains("could not acquire lock")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            self.child = spawn(&self.dir, &self.dir.join("k.toml"));
        }
        self.wait_for(Duration::from_secs(1), "control socket", |_| true);
    }

    /// The daemon's control client.
    pub fn client(&self) -> Client {
        Client::new(&self.cfg.control_socket, Duration::from_secs(20))
    }

    pub fn call(&self, req: CtlRequest) -> Result<CtlReply, String> {
        self.client().call(&req).map_err(|e| e.to_string())
    }

    pub fn status(&self) -> Status {
        self.client().status().unwrap()
    }

    /// Joins the mesh of `inviter` with a fresh guardian invite from it.
    pub fn join(&self, inviter: &Node) {
        let tok = inviter
            .client()
            .invite(keyward_node::roster::Role::Guardian, 600)
            .unwrap()
            .token;
        self.client().join(tok).unwrap();
    }

    /// Kills the daemon and waits for it, so its log is complete.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the daemon as systemd does (SIGTERM: it says goodbye to its
    /// peers first) and waits for it.
    pub fn terminate(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Polls status until `f` holds; panics with the log after `timeout`.
    pub fn wait_for(&self, timeout: Duration, what: &str, f: impl Fn(&Status) -> bool) {
        let t = Instant::now();
        loop {
            if let Ok(v) = self.client().status() {
                if f(&v) {
                    return;
                }
            }
            if t.elapsed() > timeout {
                panic!("timed out waiting for {what}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// keywardd on `config`, its log appended to `dir/log`.
fn spawn(dir: &Path, config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_keywardd"))
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info,keyward_node::daemon=debug")
        .stderr(log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// A reply as JSON, to search its text or show it in a failed assertion.
pub fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
