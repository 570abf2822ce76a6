//! Decoding hostile bytes stays within a fixed memory budget: a frame that
//! declares a huge array or string must not make the decoder reserve it.
//! One test in this binary, so the counting allocator sees only it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use keyward_node::codec::{self, Wire};
use keyward_node::guardian::{OwnerState, ShareRequest};
use keyward_node::proto::{Gossip, Request, Response};
use keyward_node::shares::ShareEnvelope;
use proptest::prelude::*;

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let n = NOW.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(n, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// serde caps what a declared length may pre-reserve at 1 MiB per
/// sequence; with nesting that is a few MiB at most, whatever the frame
/// claims. Budget: 4 MiB plus a few times the input.
const BUDGET: usize = 4 << 20;

/// Bytes allocated above the baseline while decoding `bytes` as `T`.
fn peak_of<T: Wire>(bytes: &[u8]) -> usize {
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = codec::decode::<T>(bytes);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    drop(r);
    peak
}

fn check_all(bytes: &[u8]) -> Result<(), String> {
    let limit = BUDGET + 4 * bytes.len();
    for (name, p) in [
        ("request", peak_of::<Request>(bytes)),
        ("response", peak_of::<Response>(bytes)),
        ("gossip", peak_of::<Gossip>(bytes)),
        ("share", peak_of::<ShareEnvelope>(bytes)),
        ("share-request", peak_of::<ShareRequest>(bytes)),
        ("owner-state", peak_of::<OwnerState>(bytes)),
    ] {
        if p > limit {
            return Err(format!(
                "{name}: decoding {} bytes allocated {p} bytes",
                bytes.len()
            ));
        }
    }
    Ok(())
}

/// A frame header of the right version and kind, then `body`.
fn framed(kind: &str, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xa3, 0x61, b'v', 0x01, 0x61, b'k', 0x60 + kind.len() as u8];
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(&[0x61, b'b']);
    v.extend_from_slice(body);
    v
}

#[test]
fn hostile_frames_stay_within_the_memory_budget() {
    // Declared lengths of 2^32 and 2^64-1 for arrays, maps, byte and text
    // strings, at the top and nested, in every kind's frame.
    let huge: [&[u8]; 8] = [
        &[0x9a, 0xff, 0xff, 0xff, 0xff],
        &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0xba, 0xff, 0xff, 0xff, 0xff],
        &[0x5a, 0xff, 0xff, 0xff, 0xff],
        &[0x7a, 0xff, 0xff, 0xff, 0xff],
        &[0xa1, 0x62, b'O', b'p', 0x9a, 0xff, 0xff, 0xff, 0xff],
        &[
            0xa1, 0x64, b'S', b'y', b'n', b'c', 0xa1, 0x66, b'd', b'i', b'g', b'e', b's', b't',
            0x5a, 0xff, 0xff, 0xff, 0xff,
        ],
        &[
            0xa1, 0x66, b'R', b'o', b's', b't', b'e', b'r', 0xa3, 0x63, b'o', b'p', b's', 0x9a,
            0xff, 0xff, 0xff, 0xff,
        ],
    ];
    for kind in [
        "rpc-request",
        "rpc-response",
        "gossip",
        "share",
        "share-request",
        "owner-state",
    ] {
        for body in huge {
            let f = framed(kind, body);
            check_all(&f).unwrap();
        }
    }
    // Nested sequences, each declaring a huge length.
    let mut nested = Vec::new();
    for _ in 0..64 {
        nested.extend_from_slice(&[0x9a, 0x10, 0x00, 0x00, 0x00]);
    }
    for kind in ["rpc-response", "gossip"] {
        check_all(&framed(kind, &nested)).unwrap();
    }
    // Arbitrary bytes, with and without a valid header.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(
                prop::sample::select(vec!["rpc-request", "rpc-response", "gossip", "share"]),
                prop::collection::vec(any::<u8>(), 0..2048),
                any::<bool>(),
            ),
            |(kind, body, frame)| {
                let bytes = if frame { framed(kind, &body) } else { body };
                check_all(&bytes).map_err(TestCaseError::fail)
            },
        )
        .unwrap();
}
