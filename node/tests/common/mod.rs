//! A real keywardd for the integration tests of this crate.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyward_node::config::Config;
use keyward_node::control::{self, CtlRequest};
use serde_json::Value;

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
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keywardd"))
            .arg("--config")
            .arg(&path)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,keyward_node::daemon=debug")
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let n = Node {
            dir: dir.into(),
            cfg,
            child,
        };
        n.wait_for(Duration::from_secs(10), "control socket", |_| true);
        n
    }

    pub fn call(&self, req: CtlRequest) -> Result<Value, String> {
        control::call(&self.cfg.control_socket, &req, Duration::from_secs(20))
            .map_err(|e| format!("{e:#}"))
    }

    pub fn status(&self) -> Value {
        self.call(CtlRequest::Status).unwrap()
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
    pub fn wait_for(&self, timeout: Duration, what: &str, f: impl Fn(&Value) -> bool) {
        let t = Instant::now();
        loop {
            if let Ok(v) = self.call(CtlRequest::Status) {
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
