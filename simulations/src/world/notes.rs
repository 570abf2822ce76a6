//! Names of the node's journal notes, for the counts in the summary.

use keyward_core::node::Note;

/// The variant's name.
pub fn name(n: &Note) -> &'static str {
    match n {
        Note::AdminDecision { .. } => "AdminDecision",
        Note::AdminRefused { .. } => "AdminRefused",
        Note::AdmittedByInvite { .. } => "AdmittedByInvite",
        Note::Alert { .. } => "Alert",
        Note::BootKeyReplaced => "BootKeyReplaced",
        Note::ClockBehind { .. } => "ClockBehind",
        Note::ConnectionRefused { .. } => "ConnectionRefused",
        Note::Decision { .. } => "Decision",
        Note::DepositRefused { .. } => "DepositRefused",
        Note::Dropping { .. } => "Dropping",
        Note::GossipFromStranger { .. } => "GossipFromStranger",
        Note::Holding { .. } => "Holding",
        Note::InviteIssued { .. } => "InviteIssued",
        Note::JoinRefused { .. } => "JoinRefused",
        Note::Lockdown { .. } => "Lockdown",
        Note::LogAlert { .. } => "LogAlert",
        Note::LogProblem { .. } => "LogProblem",
        Note::MemberAdmitted { .. } => "MemberAdmitted",
        Note::MemberRevoked { .. } => "MemberRevoked",
        Note::OpNotMerged { .. } => "OpNotMerged",
        Note::PeerGoingDown { .. } => "PeerGoingDown",
        Note::RefusedBanned { .. } => "RefusedBanned",
        Note::Replica { .. } => "Replica",
        Note::StoredOpIgnored { .. } => "StoredOpIgnored",
        Note::Strike { .. } => "Strike",
        Note::SyncFailed { .. } => "SyncFailed",
        Note::Synced { .. } => "Synced",
        Note::WriteFailed { .. } => "WriteFailed",
    }
}
