//! Split+seal+sign of 5 shares and verify+open+combine of 3: median and p99.
//! Run: `cargo bench -p keyward-node --bench shares`.

use std::time::Instant;

use keyward_core::identity::{BootKey, NodeKey};
use keyward_core::shares::{combine, split_with_rng, DiskSecret, Expect};

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99))
}

fn main() {
    let owner = NodeKey::generate_with(&mut rand::rngs::OsRng);
    let boot = BootKey::generate_with(&mut rand::rngs::OsRng);
    let bp = boot.public();
    let guardians: Vec<_> = (0..5)
        .map(|_| NodeKey::generate_with(&mut rand::rngs::OsRng).id())
        .collect();
    let runs = 500;
    let mut split_t = Vec::with_capacity(runs);
    let mut comb_t = Vec::with_capacity(runs);
    for i in 0..runs {
        let secret = DiskSecret::from_bytes(rand::random());
        let t0 = Instant::now();
        let envs = split_with_rng(
            &secret,
            3,
            &guardians,
            i as u64,
            &owner,
            &bp,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        split_t.push(t0.elapsed().as_secs_f64() * 1e3);
        let recv: Vec<_> = guardians
            .iter()
            .copied()
            .zip(envs)
            .skip(1)
            .take(3)
            .collect();
        let expect = Expect {
            owner: owner.id(),
            epoch: i as u64,
            threshold: 3,
        };
        let t0 = Instant::now();
        let got = combine(&recv, &expect, &boot).unwrap();
        comb_t.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(got.as_bytes(), secret.as_bytes());
    }
    let (sm, sp) = stats(split_t);
    let (cm, cp) = stats(comb_t);
    println!("| operation ({runs} runs) | median | p99 |");
    println!("|---|---|---|");
    println!("| split+seal+sign 5 shares (3-of-5) | {sm:.3} ms | {sp:.3} ms |");
    println!("| verify+open+combine 3 shares | {cm:.3} ms | {cp:.3} ms |");
}
