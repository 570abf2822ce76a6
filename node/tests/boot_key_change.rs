//! The guardian's side of a boot-key change (issue 20, M7), on the
//! sans-IO core: each epoch answers to the boot key its shares were sealed
//! to, as recorded in the owner-signed envelope, not to whatever the roster
//! says now. So announcing a new boot key never strands the initramfs that
//! still carries the old one, and a copy of the old key opens nothing new.

use keyward_node::guardian::{Event, Guardian, Policy, Refusal, ShareRequest};
use keyward_node::identity::{BootKey, NodeId, NodeKey};
use keyward_node::roster::{Member, MeshId, OpBody, Role, Roster, SignedOp};
use keyward_node::shares::{split, DiskSecret};

#[test]
fn each_epoch_answers_to_the_boot_key_its_shares_were_sealed_to() {
    let (admin, owner, gk) = (
        NodeKey::generate(),
        NodeKey::generate(),
        NodeKey::generate(),
    );
    let (old, new) = (BootKey::generate(), BootKey::generate());
    let mesh = MeshId([5; 16]);
    let m = |k: &NodeKey, n: &str, b: &BootKey| Member {
        id: k.id(),
        boot: b.public(),
        name: n.into(),
        role: Role::Guardian,
    };
    let (mut roster, _) =
        Roster::found("t", mesh, m(&admin, "admin", &BootKey::generate()), &admin);
    for (k, n, b) in [(&owner, "web1", &old), (&gk, "g", &BootKey::generate())] {
        roster
            .merge(SignedOp::sign(
                OpBody::Admit {
                    mesh,
                    member: m(k, n, b),
                    claim: m(k, n, b).claim(mesh, k),
                    invite: None,
                    by: admin.id(),
                    at: 0,
                },
                &admin,
            ))
            .unwrap();
    }
    let mut g = Guardian::new(gk.id(), Policy::default());
    let deposit = |g: &mut Guardian, roster: &Roster, epoch: u64, boot: &BootKey| {
        let envs = split(
            &DiskSecret::generate(),
            1,
            &[gk.id()],
            epoch,
            &owner,
            &boot.public(),
        )
        .unwrap();
        assert_eq!(
            envs[0].body.boot,
            Some(boot.public()),
            "the envelope names its key"
        );
        g.handle(
            Event::Deposit {
                from: owner.id(),
                envelope: Box::new(envs[0].clone()),
                at: 0,
            },
            roster,
        );
    };
    deposit(&mut g, &roster, 7, &old);
    // The owner rebinds with a new key: new epoch first, then the rekey.
    deposit(&mut g, &roster, 8, &new);
    roster
        .merge(SignedOp::sign(
            OpBody::Rekey {
                mesh,
                node: owner.id(),
                boot: new.public(),
                seq: 1,
            },
            &owner,
        ))
        .unwrap();
    g.handle(
        Event::Alive {
            node: owner.id(),
            at: 0,
        },
        &roster,
    );
    g.handle(
        Event::GoingDown {
            node: owner.id(),
            at: 1,
        },
        &roster,
    );
    let ask = |g: &Guardian, roster: &Roster, epoch: u64, boot: &BootKey| {
        g.check(
            &ShareRequest::new(owner.id(), gk.id(), epoch, boot),
            Some(NodeId(boot.public().sign)),
            2,
            roster,
        )
    };
    // The initramfs not yet rebuilt (old key, old epoch) still boots.
    assert_eq!(ask(&g, &roster, 7, &old), Ok(()));
    assert_eq!(ask(&g, &roster, 8, &new), Ok(()));
    // A key never opens the other key's epoch.
    assert_eq!(ask(&g, &roster, 8, &old), Err(Refusal::BadSignature));
    assert_eq!(ask(&g, &roster, 7, &new), Err(Refusal::BadSignature));
    // Once the owner dropped the old epoch, the old key opens nothing.
    g.handle(
        Event::Drop {
            from: owner.id(),
            epochs: vec![7],
            at: 3,
        },
        &roster,
    );
    assert_eq!(ask(&g, &roster, 7, &old), Err(Refusal::BadSignature));
    assert_eq!(ask(&g, &roster, 8, &old), Err(Refusal::BadSignature));
}
