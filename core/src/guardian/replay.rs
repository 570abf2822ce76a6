//! Nonces of share requests a guardian answered recently, per owner, so a
//! captured request cannot be answered (and logged) a second time.
//!
//! A share request carries no timestamp: the initramfs may boot with a
//! clock at 1970 (no RTC battery), and a request must still work. So a
//! nonce is remembered for [`NONCE_TTL`] of the guardian's own clock, which
//! covers every retry of one unlock, and at most [`MAX_NONCES`] per owner
//! (oldest forgotten first), so a flood costs bounded memory. A replay
//! older than that can only come over a connection of the owner's boot key
//! (the request is bound to it), whose holder can sign fresh requests
//! anyway; the cache stops relays and duplicates, not that holder.

use std::collections::VecDeque;

use super::Millis;

/// How long a nonce is remembered: longer than any unlock's retries (the
/// keyscript gives up and prompts for the passphrase after a minute).
pub const NONCE_TTL: Millis = 15 * 60_000;
/// Nonces remembered per owner. The unlock client asks each guardian at
/// most every 250 ms .. 5 s; 256 covers a quarter of an hour of retries.
pub const MAX_NONCES: usize = 256;

/// The recent nonces of one owner, oldest first.
#[derive(Clone, Debug, Default)]
pub struct RecentNonces {
    seen: VecDeque<([u8; 16], Millis)>,
}

impl RecentNonces {
    /// Whether `nonce` was answered within the last [`NONCE_TTL`].
    pub fn contains(&self, nonce: &[u8; 16], now: Millis) -> bool {
        self.seen
            .iter()
            .any(|(n, at)| n == nonce && now.saturating_sub(*at) <= NONCE_TTL)
    }

    /// Remembers `nonce`, forgetting expired ones and, past the bound, the
    /// oldest.
    pub fn insert(&mut self, nonce: [u8; 16], now: Millis) {
        self.expire(now);
        if self.seen.len() >= MAX_NONCES {
            self.seen.pop_front();
        }
        self.seen.push_back((nonce, now));
    }

    /// Drops nonces older than [`NONCE_TTL`]; true if none is left.
    pub fn expire(&mut self, now: Millis) -> bool {
        while self
            .seen
            .front()
            .is_some_and(|(_, at)| now.saturating_sub(*at) > NONCE_TTL)
        {
            self.seen.pop_front();
        }
        self.seen.is_empty()
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_for_the_ttl_and_bounded() {
        let mut r = RecentNonces::default();
        r.insert([1; 16], 1000);
        assert!(r.contains(&[1; 16], 1000 + NONCE_TTL));
        assert!(!r.contains(&[1; 16], 1001 + NONCE_TTL));
        assert!(!r.contains(&[2; 16], 1000));
        for i in 0..MAX_NONCES * 2 {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&(i as u64).to_le_bytes());
            r.insert(n, 2000);
        }
        assert_eq!(r.len(), MAX_NONCES);
        assert!(r.expire(2001 + NONCE_TTL));
    }
}
