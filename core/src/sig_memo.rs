//! A memo of ed25519 checks that a simulator shares among the nodes of
//! one thread.
//!
//! Why: in a simulated mesh of a thousand nodes every admin message and
//! every alert is checked by every node, a thousand times the same
//! curve arithmetic (11 % of a 1,000-node day was ed25519, the key's
//! point decompression included). Whether a signature verifies is a pure
//! function of the key, the signed bytes and the signature, so
//! remembering the answer changes no decision: a node still asks, and
//! gets the answer the curve would give.
//!
//! Off unless a driver turns it on ([`enable`]); keywardd and the boot
//! client never do, so there a check is always computed. The key of an
//! entry is SHA-256 over the public key, the signature and the signed
//! bytes, so a forged signature (a hostile scenario's) can never find
//! the entry of a genuine one. Bounded: the memo is emptied when it
//! reaches its capacity (recent messages are what repeats).

use std::cell::RefCell;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checked {
    Valid,
    /// The public key is not a point of the curve.
    BadKey,
    BadSignature,
}

struct Memo {
    capacity: usize,
    /// Check key -> what the check found.
    seen: HashMap<[u8; 32], Checked>,
    hits: u64,
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// Turns the memo on for this thread, remembering up to `capacity`
/// checks (a simulator does this before it runs its world).
pub fn enable(capacity: usize) {
    MEMO.with(|m| {
        *m.borrow_mut() = Some(Memo {
            capacity: capacity.max(1),
            seen: HashMap::new(),
            hits: 0,
        })
    });
}

/// Turns the memo off for this thread and forgets what it held.
pub fn disable() {
    MEMO.with(|m| *m.borrow_mut() = None);
}

/// How many checks the memo answered on this thread since [`enable`].
pub fn hits() -> u64 {
    MEMO.with(|m| m.borrow().as_ref().map_or(0, |m| m.hits))
}

/// Whether `sig` by `pubkey` over `parts` (concatenated) verifies, by
/// `check` or from the memo when it is on (then a repeat costs neither
/// the key's decompression nor the curve arithmetic).
pub(crate) fn verified(
    pubkey: &[u8; 32],
    sig: &[u8; 64],
    parts: &[&[u8]],
    check: impl FnOnce() -> Checked,
) -> Checked {
    let on = MEMO.with(|m| m.borrow().is_some());
    if !on {
        return check();
    }
    let mut h = Sha256::new();
    h.update(pubkey);
    h.update(sig);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let key: [u8; 32] = h.finalize().into();
    let known = MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let m = m.as_mut()?;
        let v = m.seen.get(&key).copied();
        if v.is_some() {
            m.hits += 1;
        }
        v
    });
    if let Some(ok) = known {
        return ok;
    }
    let ok = check();
    MEMO.with(|m| {
        if let Some(m) = m.borrow_mut().as_mut() {
            if m.seen.len() >= m.capacity {
                m.seen.clear();
            }
            m.seen.insert(key, ok);
        }
    });
    ok
}

#[cfg(test)]
mod tests {
    use super::Checked::*;
    use super::*;

    #[test]
    fn off_computes_every_time_and_on_remembers_both_answers() {
        disable();
        let mut calls = 0;
        for _ in 0..3 {
            let c = verified(&[1; 32], &[2; 64], &[b"m"], || {
                calls += 1;
                Valid
            });
            assert_eq!(c, Valid);
        }
        assert_eq!(calls, 3);
        enable(16);
        let mut calls = 0;
        for _ in 0..3 {
            let c = verified(&[1; 32], &[3; 64], &[b"m"], || {
                calls += 1;
                BadSignature
            });
            assert_eq!(c, BadSignature);
        }
        assert_eq!(calls, 1);
        assert_eq!(hits(), 2);
        // another message under the same key and signature is checked
        assert_eq!(verified(&[1; 32], &[3; 64], &[b"n"], || Valid), Valid);
        // the parts' boundaries count: ("ab","c") is not ("a","bc")
        assert_eq!(
            verified(&[1; 32], &[4; 64], &[b"ab", b"c"], || Valid),
            Valid
        );
        let c = verified(&[1; 32], &[4; 64], &[b"a", b"bc"], || BadSignature);
        assert_eq!(c, BadSignature);
        disable();
    }

    #[test]
    fn a_full_memo_starts_afresh() {
        enable(2);
        for i in 0..5u8 {
            verified(&[i; 32], &[0; 64], &[], || Valid);
        }
        let mut calls = 0;
        verified(&[0; 32], &[0; 64], &[], || {
            calls += 1;
            Valid
        });
        assert_eq!(calls, 1, "the first entry was dropped when the memo filled");
        disable();
    }

    #[test]
    fn a_forged_signature_never_takes_a_genuine_ones_answer() {
        use crate::identity::{verify, NodeKey, Sig};
        let k = NodeKey::from_seed([7; 32]);
        let sig = k.sign("keyward test", b"hello");
        enable(64);
        assert!(verify(&k.id().0, "keyward test", b"hello", &sig).is_ok());
        assert!(verify(&k.id().0, "keyward test", b"hello", &sig).is_ok());
        let mut forged = sig.0;
        forged[0] ^= 1;
        assert!(verify(&k.id().0, "keyward test", b"hello", &Sig(forged)).is_err());
        assert!(verify(&k.id().0, "keyward test", b"hellO", &sig).is_err());
        assert!(verify(&k.id().0, "keyward tesT", b"hello", &sig).is_err());
        assert!(hits() >= 1);
        // a key that is no curve point is refused as such, memo or not
        let mut bad_key = [0u8; 32];
        bad_key[31] = 0x80;
        bad_key[0] = 2;
        for _ in 0..2 {
            assert!(matches!(
                verify(&bad_key, "keyward test", b"hello", &sig),
                Err(crate::identity::KeyError::BadPublicKey)
            ));
        }
        disable();
    }
}
