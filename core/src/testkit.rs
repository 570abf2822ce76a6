//! Fixtures for the core's unit tests: a small mesh with real keys and a
//! real roster, so tests exercise the production types.

use crate::identity::{BootKey, NodeKey};
use crate::roster::{Member, MeshId, OpBody, Role, Roster, SignedOp};

/// One member of a test mesh, with its keys.
pub struct TestNode {
    pub key: NodeKey,
    pub boot: BootKey,
    pub name: String,
    pub role: Role,
}

impl TestNode {
    pub fn member(&self) -> Member {
        Member {
            id: self.key.id(),
            boot: self.boot.public(),
            name: self.name.clone(),
            role: self.role,
        }
    }
}

/// A mesh founded by `nodes[0]`, which admitted the others.
pub struct TestMesh {
    pub mesh: MeshId,
    pub nodes: Vec<TestNode>,
    pub roster: Roster,
}

/// A mesh of `n` guardians named n0, n1, ...
pub fn mesh(n: usize) -> TestMesh {
    mesh_with_auditors(n, 0)
}

/// A mesh of `n` members named n0, n1, ..., the last `auditors` of them
/// auditors, the others guardians.
pub fn mesh_with_auditors(n: usize, auditors: usize) -> TestMesh {
    let mesh = MeshId([7; 16]);
    let nodes: Vec<TestNode> = (0..n)
        .map(|i| TestNode {
            key: NodeKey::generate(),
            boot: BootKey::generate(),
            name: format!("n{i}"),
            role: if i + auditors >= n && i > 0 {
                Role::Auditor
            } else {
                Role::Guardian
            },
        })
        .collect();
    let (mut roster, _) = Roster::found("test", mesh, nodes[0].member(), &nodes[0].key);
    for t in &nodes[1..] {
        roster
            .merge(SignedOp::sign(
                OpBody::Admit {
                    mesh,
                    member: t.member(),
                    claim: t.member().claim(mesh, &t.key),
                    invite: None,
                    by: nodes[0].key.id(),
                    at: 0,
                },
                &nodes[0].key,
            ))
            .expect("admit");
    }
    TestMesh {
        mesh,
        nodes,
        roster,
    }
}
