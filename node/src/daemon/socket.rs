//! The control socket: one JSON request line in, one JSON response line
//! out, handed to the event loop and answered by the node.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::control::{CtlError, CtlRequest, CtlResponse, MAX_LINE};

/// A control request and where its answer goes.
pub(super) type CtlMsg = (CtlRequest, oneshot::Sender<CtlResponse>);

/// Binds the control socket 0600 in a 0700 directory, refusing to steal
/// the socket of a daemon that is still running.
pub(super) fn bind_control(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another keywardd is already running on {}", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let l = l.with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

pub(super) async fn serve_control(l: UnixListener, tx: mpsc::Sender<CtlMsg>) {
    loop {
        let s = match l.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = control_conn(s, tx).await {
                debug!("control connection: {e}");
            }
        });
    }
}

async fn control_conn(s: UnixStream, tx: mpsc::Sender<CtlMsg>) -> anyhow::Result<()> {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r.take(MAX_LINE as u64));
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let resp = match serde_json::from_str::<CtlRequest>(&line) {
        Ok(req) => {
            let (otx, orx) = oneshot::channel();
            tx.send((req, otx)).await?;
            match tokio::time::timeout(Duration::from_secs(60), orx).await {
                Ok(Ok(r)) => r,
                _ => CtlError::DaemonBusy.into(),
            }
        }
        Err(e) => CtlError::BadRequest(e.to_string()).into(),
    };
    let mut out = serde_json::to_vec(&resp)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    Ok(())
}
