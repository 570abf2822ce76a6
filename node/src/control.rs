//! The local control socket the CLI talks to: one JSON request per line,
//! one JSON response per line. The socket is 0600 in a 0700 directory, so
//! only root (the daemon's user) can drive the daemon.

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::roster::Role;

/// Longest request or response line.
pub const MAX_LINE: usize = 8 << 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum CtlRequest {
    Status,
    Invite {
        role: Role,
        expires_secs: u64,
    },
    Join {
        token: String,
    },
    Revoke {
        who: String,
        cascade: bool,
        reason: String,
    },
    Approve {
        who: String,
    },
    Deny {
        who: String,
    },
    Lockdown,
    Lift,
    /// Deliver envelopes (base64 of their codec frames) to their guardians
    /// and wait for durable acknowledgements.
    Deposit {
        envelopes: Vec<String>,
    },
    /// Replace this node's boot key in the roster (signed by the node key).
    Rekey {
        sign: String,
        seal: String,
    },
    /// Tell guardians to forget this node's envelopes of these epochs.
    Drop {
        epochs: Vec<u64>,
        guardians: Vec<String>,
    },
    /// Ask every active guardian which epochs of this node's envelopes it
    /// holds; each answers `{"held": [epochs]}` or why not.
    Held,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CtlResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl CtlResponse {
    pub fn ok(data: serde_json::Value) -> Self {
        CtlResponse {
            ok: true,
            error: None,
            data,
        }
    }
    pub fn err(e: impl ToString) -> Self {
        CtlResponse {
            ok: false,
            error: Some(e.to_string()),
            data: serde_json::Value::Null,
        }
    }
}

/// Sends one request to the daemon and waits for its answer.
pub fn call(
    socket: &Path,
    req: &CtlRequest,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach keywardd at {}: {e}; is it running? (systemctl status keywardd, or start it with `keywardd --config ...`)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut r = BufReader::new(s).take(MAX_LINE as u64);
    let mut buf = String::new();
    r.read_line(&mut buf).map_err(|e| {
        anyhow::anyhow!(
            "keywardd did not answer within {} s: {e}",
            timeout.as_secs()
        )
    })?;
    let resp: CtlResponse = serde_json::from_str(&buf)
        .map_err(|e| anyhow::anyhow!("garbled answer from keywardd: {e}"))?;
    if resp.ok {
        Ok(resp.data)
    } else {
        Err(anyhow::anyhow!(resp.error.unwrap_or_else(|| {
            "keywardd refused without a reason".into()
        })))
    }
}
