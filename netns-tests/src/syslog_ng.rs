//! A private syslog-ng for tests, beside rsyslog.
//!
//! Debian's syslog-ng-core conflicts with rsyslog (both provide
//! system-log-daemon), and the logs tests need rsyslog installed. So
//! `.ci/run` installs syslog-ng's libraries, downloads the package with
//! `apt-get download` and unpacks it with `dpkg -x` under
//! `/var/cache/keyward-syslog-ng` (or `$KEYWARD_SYSLOG_NG_ROOT`); tests run
//! that binary with its own config, persist file, pid file and control
//! socket, never the system's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{anyhow, Context, Result};

use crate::Skip;

/// Where the unpacked package lives.
pub fn root() -> PathBuf {
    std::env::var_os("KEYWARD_SYSLOG_NG_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/keyward-syslog-ng".into())
}

/// An unpacked syslog-ng: its binary, and its module directory (named by
/// the config version it speaks, e.g. `3.38`).
#[derive(Debug, Clone)]
pub struct Unpacked {
    root: PathBuf,
    version: String,
}

impl Unpacked {
    /// The unpacked package under [`root`], or a [`Skip`] that says how
    /// to get it.
    pub fn find() -> Result<Unpacked> {
        let root = root();
        let skip = || {
            anyhow!(Skip(format!(
                "no syslog-ng unpacked under {} (.ci/run prepares it: apt-get download syslog-ng-core; dpkg -x)",
                root.display()
            )))
        };
        if !root.join("usr/sbin/syslog-ng").exists() {
            return Err(skip());
        }
        let modules = root.join("usr/lib/syslog-ng");
        let version = std::fs::read_dir(&modules)
            .map_err(|_| skip())?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|n| n.starts_with(|c: char| c.is_ascii_digit()) && n.contains('.'))
            .ok_or_else(skip)?;
        Ok(Unpacked { root, version })
    }

    fn modules(&self) -> PathBuf {
        self.root.join("usr/lib/syslog-ng").join(&self.version)
    }
}

/// A syslog-ng of this run, killed when dropped.
pub struct SyslogNg {
    child: Child,
}

impl SyslogNg {
    /// Starts `syslog-ng -F` with `conf` after its `@version` line; its
    /// state files live in `dir/name`.
    pub fn start(ng: &Unpacked, dir: &Path, name: &str, conf: &str) -> Result<SyslogNg> {
        let work = dir.join(name);
        std::fs::create_dir_all(&work)?;
        let conf_path = work.join("syslog-ng.conf");
        std::fs::write(&conf_path, format!("@version: {}\n{conf}", ng.version))?;
        let libs = ng.root.join("usr/lib/syslog-ng");
        let child = Command::new(ng.root.join("usr/sbin/syslog-ng"))
            .arg("-F")
            .arg(format!("--module-path={}", ng.modules().display()))
            .arg("-f")
            .arg(&conf_path)
            .arg(format!("--persist-file={}", work.join("persist").display()))
            .arg(format!("--pidfile={}", work.join("pid").display()))
            .arg(format!("--control={}", work.join("ctl").display()))
            .env("LD_LIBRARY_PATH", &libs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("stderr"))?)
            .spawn()
            .context("starting the unpacked syslog-ng")?;
        Ok(SyslogNg { child })
    }

    /// What syslog-ng wrote to stderr (for a failing test's message).
    pub fn stderr(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name).join("stderr")).unwrap_or_default()
    }
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
