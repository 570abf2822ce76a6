//! Roster merge time for 1k, 10k and 100k operations: an honest flat mesh,
//! the hostile shapes of the hardening review (a reversed admission chain,
//! a rekey flood, a sybil revocation flood), and re-resolving after one
//! gossiped op. Verification (done once per op) and merging (resolving the
//! membership rule) are timed apart, since a driver may verify off its
//! event loop. Run: `cargo bench -p keyward-node --bench roster`.

use std::time::Instant;

use keyward_core::identity::{BootKey, NodeKey};
use keyward_core::roster::{Member, MeshId, OpBody, Role, Roster, SignedOp, Verified};

const MESH: MeshId = MeshId([9; 16]);

fn member(k: &NodeKey, i: usize) -> Member {
    Member {
        id: k.id(),
        boot: BootKey::generate_with(&mut rand::rngs::OsRng).public(),
        name: format!("n{i}"),
        role: Role::Guardian,
    }
}

fn admit(by: &NodeKey, k: &NodeKey, i: usize) -> SignedOp {
    let m = member(k, i);
    SignedOp::sign(
        OpBody::Admit {
            mesh: MESH,
            claim: m.claim(MESH, k),
            member: m,
            invite: None,
            by: by.id(),
            at: 0,
        },
        by,
    )
}

/// (founder, founding op, the rest) for each shape.
fn shape(name: &str, n: usize) -> (NodeKey, SignedOp, Vec<SignedOp>) {
    let seed: [u8; 32] = rand::random();
    let f = NodeKey::from_seed(seed);
    let (_, found) = Roster::found("bench", MESH, member(&f, 0), &f);
    let mut ops = vec![];
    match name {
        "flat mesh (founder admits all)" => {
            for i in 1..=n {
                ops.push(admit(
                    &f,
                    &NodeKey::generate_with(&mut rand::rngs::OsRng),
                    i,
                ));
            }
        }
        "admission chain, reversed" => {
            let mut prev = NodeKey::from_seed(seed);
            for i in 1..=n {
                let k = NodeKey::generate_with(&mut rand::rngs::OsRng);
                ops.push(admit(&prev, &k, i));
                prev = k;
            }
            ops.reverse();
        }
        "rekey flood by one member" => {
            let e = NodeKey::generate_with(&mut rand::rngs::OsRng);
            ops.push(admit(&f, &e, 1));
            let boot = BootKey::generate_with(&mut rand::rngs::OsRng).public();
            for s in 1..n as u64 {
                ops.push(SignedOp::sign(
                    OpBody::Rekey {
                        mesh: MESH,
                        node: e.id(),
                        boot: boot.clone(),
                        seq: s,
                    },
                    &e,
                ));
            }
        }
        _ => {
            // sybil flood: one member mints sqrt(n) sybils, each revoking
            // every other sybil.
            let e = NodeKey::generate_with(&mut rand::rngs::OsRng);
            ops.push(admit(&f, &e, 1));
            let s = (n as f64).sqrt() as usize;
            let sybils: Vec<NodeKey> = (0..s)
                .map(|_| NodeKey::generate_with(&mut rand::rngs::OsRng))
                .collect();
            for (i, k) in sybils.iter().enumerate() {
                ops.push(admit(&e, k, i + 2));
            }
            'outer: for a in &sybils {
                for b in &sybils {
                    if ops.len() >= n {
                        break 'outer;
                    }
                    ops.push(SignedOp::sign(
                        OpBody::Revoke {
                            mesh: MESH,
                            node: b.id(),
                            by: a.id(),
                            reason: "flood".into(),
                            at: 0,
                        },
                        a,
                    ));
                }
            }
        }
    }
    (f, found, ops)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    println!("| shape | ops | verify (ms) | merge (ms) | one more op (ms) | ops held |");
    println!("|---|---|---|---|---|---|");
    for name in [
        "flat mesh (founder admits all)",
        "admission chain, reversed",
        "rekey flood by one member",
        "sybil revocation flood",
    ] {
        for n in [1_000, 10_000, 100_000] {
            let (f, found, ops) = shape(name, n);
            let mut r = Roster::default();
            r.merge(found).unwrap();
            let t = Instant::now();
            let verified: Vec<Verified> = ops.into_iter().filter_map(|o| o.verify().ok()).collect();
            let verify = ms(t);
            let t = Instant::now();
            let rep = r.merge_verified(verified);
            let merge = ms(t);
            assert!(rep.errors.is_empty(), "{name}: {:?}", &rep.errors[..1]);
            // One gossiped op on top of the full roster.
            let extra = admit(&f, &NodeKey::generate_with(&mut rand::rngs::OsRng), 0);
            let t = Instant::now();
            r.merge(extra).unwrap();
            let one = ms(t);
            println!(
                "| {name} | {n} | {verify:.0} | {merge:.0} | {one:.1} | {} |",
                r.len_ops()
            );
        }
    }
}
