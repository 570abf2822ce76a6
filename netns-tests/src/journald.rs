//! A private systemd-journald for tests: started in its own mount
//! namespace where `/run` is a fresh tmpfs, `/run/systemd/journal` is a
//! directory of the test and `/etc/systemd/journald.conf` is the test's
//! config. Its sockets (`socket`, `dev-log`, `stdout`) and the `syslog`
//! socket it forwards to are files in that directory, so processes
//! outside the namespace (keywardd, `logger`) reach them by path. Nothing
//! of the host's logging is touched, and the namespace goes with the
//! process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{anyhow, Context, Result};

use crate::Skip;

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// A journald of this run, killed when dropped.
pub struct Journald {
    child: Child,
    dir: PathBuf,
}

impl Journald {
    /// Starts journald with `conf` (a whole journald.conf) whose
    /// `/run/systemd/journal` is `dir`. Needs root and the systemd
    /// package; otherwise a [`Skip`].
    pub fn start(dir: &Path, conf: &str) -> Result<Journald> {
        if unsafe { libc::geteuid() } != 0 {
            return Err(anyhow!(Skip(
                "journald needs root (mount namespace)".into()
            )));
        }
        if !Path::new(JOURNALD).exists() {
            return Err(anyhow!(Skip(format!(
                "{JOURNALD} is not installed (apt install systemd)"
            ))));
        }
        let conf_path = dir.join("journald.conf");
        std::fs::write(&conf_path, conf)?;
        let script = format!(
            "set -e; mount -t tmpfs none /run; mkdir -p /run/systemd/journal; \
             mount --bind '{d}' /run/systemd/journal; \
             mount --bind '{c}' /etc/systemd/journald.conf; exec {JOURNALD}",
            d = dir.display(),
            c = conf_path.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("journald.stderr"))?)
            .spawn()
            .context("starting systemd-journald under unshare --mount")?;
        Ok(Journald {
            child,
            dir: dir.to_path_buf(),
        })
    }

    /// journald's syslog socket (`/dev/log` when it owns it).
    pub fn dev_log(&self) -> PathBuf {
        self.dir.join("dev-log")
    }

    /// journald's pid (`unshare` and `sh` exec it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What journald wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("journald.stderr")).unwrap_or_default()
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
