//! Resolving a node named on the command line (`keyward deny web1`).
//!
//! Names are chosen by each node and are not unique in the roster: two
//! inviters that do not see each other can both admit a `web1`, and a
//! hostile member can pick any name. A name that fits several nodes is
//! therefore never resolved by some order (that let an impostor whose id
//! sorted first receive `deny web1` while the real one stayed releasable);
//! the command refuses and lists the candidates, and the admin repeats it
//! with the node id.

use std::fmt;

use crate::identity::NodeId;
use crate::roster::Role;

/// One node a name could mean, as shown to the admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub name: String,
    pub role: Role,
    /// Active now (else: revoked, or dropped with whoever admitted it).
    pub active: bool,
    pub revoked: bool,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<16} {:<8} {:<52} {:<8} {}",
            self.name,
            self.id.short(),
            self.id.to_string(),
            self.role.to_string(),
            if self.revoked {
                "revoked"
            } else if self.active {
                "active"
            } else {
                "inactive"
            }
        )
    }
}

/// Why a name or id given by an admin resolves to no single node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    #[error("no member named `{0}` (see `keyward peers`)")]
    NotFound(String),
    #[error("`{who}` names {} nodes; nothing was done. Repeat the command with the id of the one you mean:\n  {}", .candidates.len(), list(.candidates))]
    Ambiguous {
        who: String,
        candidates: Vec<Candidate>,
    },
}

fn list(c: &[Candidate]) -> String {
    c.iter()
        .map(|c| c.to_string().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The single match, or why there is none.
pub fn one(who: &str, mut candidates: Vec<Candidate>) -> Result<NodeId, FindError> {
    candidates.sort_by_key(|a| a.id);
    candidates.dedup_by(|a, b| a.id == b.id);
    match candidates.len() {
        0 => Err(FindError::NotFound(who.to_string())),
        1 => Ok(candidates[0].id),
        _ => Err(FindError::Ambiguous {
            who: who.to_string(),
            candidates,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeKey;

    fn cand(id: NodeId, active: bool) -> Candidate {
        Candidate {
            id,
            name: "web1".into(),
            role: Role::Guardian,
            active,
            revoked: !active,
        }
    }

    #[test]
    fn a_shared_name_resolves_to_nobody_and_lists_every_id() {
        let (a, b) = (NodeKey::generate().id(), NodeKey::generate().id());
        assert_eq!(one("web1", vec![cand(a, true)]), Ok(a));
        // the same node found twice (two admissions) is still one
        assert_eq!(one("web1", vec![cand(a, true), cand(a, true)]), Ok(a));
        let e = one("web1", vec![cand(a, true), cand(b, false)]).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, FindError::Ambiguous { ref candidates, .. } if candidates.len() == 2));
        for id in [a, b] {
            assert!(msg.contains(&id.to_string()), "{msg}");
            assert!(msg.contains(&id.short()), "{msg}");
        }
        assert!(msg.contains("active") && msg.contains("revoked"), "{msg}");
        assert!(msg.contains("nothing was done"), "{msg}");
        assert_eq!(one("web9", vec![]), Err(FindError::NotFound("web9".into())));
    }
}
