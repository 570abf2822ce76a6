//! The blocking client of the control socket: one connection per request,
//! one line each way, the answer bounded by [`MAX_LINE`].

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    AdminSent, CtlError, CtlReply, CtlRequest, CtlResponse, GuardianResults, HeldLog, Invited,
    Joined, LogPiece, Revoked, Status, MAX_LINE,
};
use crate::roster::Role;
use keyward_core::log::fetch::FetchItem;

/// Talks to the keywardd listening on one control socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

/// Unwraps the reply variant a request calls for, or says what came.
macro_rules! expect {
    ($req:expr, $reply:expr, $pat:pat => $out:expr) => {
        match $reply {
            $pat => Ok($out),
            other => Err(CtlError::WrongReply {
                request: $req.into(),
                reply: other.name().into(),
            }),
        }
    };
}

impl Client {
    /// A client that waits up to `timeout` for each answer.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Client {
            socket: socket.into(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn status(&self) -> Result<Status, CtlError> {
        expect!("status", self.call(&CtlRequest::Status)?, CtlReply::Status(s) => *s)
    }

    pub fn invite(&self, role: Role, expires_secs: u64) -> Result<Invited, CtlError> {
        let req = CtlRequest::Invite { role, expires_secs };
        expect!("invite", self.call(&req)?, CtlReply::Invited(r) => r)
    }

    pub fn join(&self, token: String) -> Result<Joined, CtlError> {
        expect!("join", self.call(&CtlRequest::Join { token })?, CtlReply::Joined(r) => r)
    }

    pub fn revoke(&self, who: String, cascade: bool, reason: String) -> Result<Revoked, CtlError> {
        let req = CtlRequest::Revoke {
            who,
            cascade,
            reason,
        };
        expect!("revoke", self.call(&req)?, CtlReply::Revoked(r) => r)
    }

    pub fn approve(&self, who: String) -> Result<AdminSent, CtlError> {
        self.admin(CtlRequest::Approve { who })
    }

    pub fn deny(&self, who: String) -> Result<AdminSent, CtlError> {
        self.admin(CtlRequest::Deny { who })
    }

    pub fn lockdown(&self) -> Result<AdminSent, CtlError> {
        self.admin(CtlRequest::Lockdown)
    }

    pub fn lift(&self) -> Result<AdminSent, CtlError> {
        self.admin(CtlRequest::Lift)
    }

    fn admin(&self, req: CtlRequest) -> Result<AdminSent, CtlError> {
        expect!(req.name(), self.call(&req)?, CtlReply::Admin(r) => r)
    }

    /// Hands envelopes (base64 of their codec frames) to their guardians.
    pub fn deposit(&self, envelopes: Vec<String>) -> Result<GuardianResults, CtlError> {
        let req = CtlRequest::Deposit { envelopes };
        expect!("deposit", self.call(&req)?, CtlReply::Guardians(r) => r)
    }

    /// Announces a new boot key (hex of its two public halves).
    pub fn rekey(&self, sign: String, seal: String) -> Result<(), CtlError> {
        let req = CtlRequest::Rekey { sign, seal };
        expect!("rekey", self.call(&req)?, CtlReply::Rekeyed => ())
    }

    pub fn drop_epochs(
        &self,
        epochs: Vec<u64>,
        guardians: Vec<String>,
    ) -> Result<GuardianResults, CtlError> {
        let req = CtlRequest::Drop { epochs, guardians };
        expect!("drop", self.call(&req)?, CtlReply::Guardians(r) => r)
    }

    pub fn held(&self) -> Result<GuardianResults, CtlError> {
        expect!("held", self.call(&CtlRequest::Held)?, CtlReply::Guardians(r) => r)
    }

    /// Which origins' logs member `from` holds (`keyward audit fetch`).
    pub fn log_holding(&self, from: &str) -> Result<Vec<HeldLog>, CtlError> {
        let req = CtlRequest::LogHolding { from: from.into() };
        expect!("log_holding", self.call(&req)?, CtlReply::LogHolding(r) => r)
    }

    /// One piece of `origin`'s log from member `from`.
    pub fn log_fetch(
        &self,
        from: &str,
        origin: &str,
        item: FetchItem,
    ) -> Result<LogPiece, CtlError> {
        let req = CtlRequest::LogFetch {
            from: from.into(),
            origin: origin.into(),
            item,
        };
        expect!("log_fetch", self.call(&req)?, CtlReply::LogPiece(r) => r)
    }

    /// Sends one request and waits for its answer.
    pub fn call(&self, req: &CtlRequest) -> Result<CtlReply, CtlError> {
        let mut s = UnixStream::connect(&self.socket).map_err(|e| CtlError::DaemonDown {
            socket: self.socket.display().to_string(),
            reason: e.to_string(),
        })?;
        let io = |e: std::io::Error| CtlError::Io(e.to_string());
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let mut line = serde_json::to_vec(req).map_err(|e| CtlError::Io(e.to_string()))?;
        line.push(b'\n');
        s.write_all(&line).map_err(io)?;
        // One byte more than allowed tells an overlong line from a full one.
        let mut r = BufReader::new(s).take(MAX_LINE as u64 + 1);
        let mut buf = Vec::new();
        r.read_until(b'\n', &mut buf)
            .map_err(|e| CtlError::DaemonSilent {
                secs: self.timeout.as_secs(),
                reason: e.to_string(),
            })?;
        parse_response(&buf)
    }
}

/// Reads one answer line (with or without its newline): the reply, the
/// daemon's error, or why the line is no answer. Never panics.
pub fn parse_response(line: &[u8]) -> Result<CtlReply, CtlError> {
    if line.len() > MAX_LINE {
        return Err(CtlError::TooLong { max: MAX_LINE });
    }
    let resp: CtlResponse =
        serde_json::from_slice(line).map_err(|e| CtlError::Garbled(e.to_string()))?;
    match resp {
        CtlResponse::Ok(r) => Ok(r),
        CtlResponse::Err(e) => Err(e),
    }
}
