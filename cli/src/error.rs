//! Why `keyward` failed, and the exit status that tells its caller.

use std::fmt;
use std::process::ExitCode;

use keyward_node::unlock::UnlockError;

/// A failed command. The keyscript reads the exit status: on 3 it stops
/// asking the mesh and falls back to the passphrase prompt.
pub enum CliError {
    /// The mesh will not give the key on this boot whatever happens
    /// (revoked, wrong boot key, no share held): exit status 3.
    Hopeless(anyhow::Error),
    /// Anything else, worth retrying later: exit status 1.
    Failed(anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Hopeless(_) => ExitCode::from(3),
            CliError::Failed(_) => ExitCode::FAILURE,
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failed(e)
    }
}

impl From<UnlockError> for CliError {
    fn from(e: UnlockError) -> Self {
        match e {
            UnlockError::Hopeless(_) => CliError::Hopeless(e.into()),
            e => CliError::Failed(e.into()),
        }
    }
}

impl fmt::Display for CliError {
    /// The error and its causes on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Hopeless(e) | CliError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hopeless_unlock_exits_3() {
        let code = |e: CliError| format!("{:?}", e.exit_code());
        let three = format!("{:?}", ExitCode::from(3));
        let one = format!("{:?}", ExitCode::FAILURE);
        assert_eq!(
            code(UnlockError::Hopeless("every guardian refused".into()).into()),
            three
        );
        for e in [
            UnlockError::Failed("x".into()),
            UnlockError::Net("x".into()),
            UnlockError::BadToken("x".into()),
        ] {
            assert_eq!(code(e.into()), one);
        }
        assert_eq!(code(anyhow::anyhow!("x").into()), one);
        // a daemon's refusal is an ordinary failure
        let ctl: anyhow::Error = keyward_node::control::CtlError::NotInMesh.into();
        assert_eq!(code(ctl.into()), one);
    }

    #[test]
    fn message_is_the_unlock_error_as_before() {
        let e: CliError = UnlockError::Hopeless("2 valid shares of 3 needed".into()).into();
        assert_eq!(
            e.to_string(),
            "2 valid shares of 3 needed; retrying will not help on this boot"
        );
    }
}
