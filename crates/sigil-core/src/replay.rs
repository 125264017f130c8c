//! The replay cache: client ephemeral keys already seen within the clock-skew window.
//!
//! A ClientHello is only accepted while `|now − timestamp| ≤ max_clock_skew`,
//! so the cache has to remember a hello's ephemeral key `EC` only until
//! `timestamp + max_clock_skew`; after that the same message is refused as
//! stale anyway. Only hellos that passed the tag and authorisation checks are
//! entered, so an unauthenticated peer cannot fill it. When it is full of
//! live entries the server refuses new hellos as busy: an entry is never
//! evicted early, because that would let its replay through.
//!
//! Memory: each entry keeps 16 bytes of `EC` (the first half; an honest
//! ephemeral key is uniformly random, and a replay repeats it exactly) in a
//! hash set and 24 bytes in an expiry heap — about 48 bytes with the tables'
//! overhead, so the default capacity of 262,144 entries bounds the cache at
//! roughly 12 MiB.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use crate::keys::PublicKey;

/// What the replay check says of a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// Not seen before: it has now been recorded.
    Fresh,
    /// Seen before within the window: refuse (code 5).
    Replayed,
    /// The cache is full of live entries: refuse as busy (code 3).
    Full,
}

/// Anything that can tell fresh ephemeral keys from replayed ones.
///
/// [`ReplayCache`] is the implementation; servers that handle handshakes on
/// several threads can shard it behind locks and implement this trait.
pub trait ReplayGuard {
    /// Checks `ephemeral` (from a hello with `timestamp_ms`, received at
    /// `now_ms`) and records it if it is fresh.
    fn check_and_insert(
        &mut self,
        ephemeral: &PublicKey,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> ReplayVerdict;
}

type Fingerprint = [u8; 16];

/// A bounded set of recently seen client ephemeral keys.
pub struct ReplayCache {
    capacity: usize,
    window_ms: u64,
    seen: HashSet<Fingerprint>,
    expiries: BinaryHeap<Reverse<(u64, Fingerprint)>>,
}

impl ReplayCache {
    /// A cache of at most `capacity` entries for a clock-skew window of
    /// `max_clock_skew_ms`. Memory grows with use, up to the bound.
    pub fn new(capacity: usize, max_clock_skew_ms: u64) -> ReplayCache {
        ReplayCache {
            capacity,
            window_ms: max_clock_skew_ms,
            seen: HashSet::new(),
            expiries: BinaryHeap::new(),
        }
    }

    /// How many entries are live.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no entry is live.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The most entries the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(Reverse((expiry, fp))) = self.expiries.peek() {
            if *expiry >= now_ms {
                break;
            }
            self.seen.remove(fp);
            self.expiries.pop();
        }
    }
}

impl ReplayGuard for ReplayCache {
    fn check_and_insert(
        &mut self,
        ephemeral: &PublicKey,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> ReplayVerdict {
        self.expire(now_ms);
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&ephemeral.as_bytes()[..16]);
        if self.seen.contains(&fp) {
            return ReplayVerdict::Replayed;
        }
        if self.seen.len() >= self.capacity {
            return ReplayVerdict::Full;
        }
        self.seen.insert(fp);
        let expiry = timestamp_ms.saturating_add(self.window_ms);
        self.expiries.push(Reverse((expiry, fp)));
        ReplayVerdict::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PublicKey {
        PublicKey::from_bytes([i; 32])
    }

    #[test]
    fn replay_within_window_then_expiry() {
        let mut c = ReplayCache::new(4, 1000);
        assert_eq!(
            c.check_and_insert(&key(1), 5000, 5000),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            c.check_and_insert(&key(1), 5000, 5500),
            ReplayVerdict::Replayed
        );
        // Still remembered at exactly timestamp + window (the hello is still fresh then).
        assert_eq!(
            c.check_and_insert(&key(1), 5000, 6000),
            ReplayVerdict::Replayed
        );
        // After the window the entry is gone (and the hello itself would be stale).
        assert_eq!(
            c.check_and_insert(&key(2), 6001, 6001),
            ReplayVerdict::Fresh
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn full_cache_refuses_without_evicting() {
        let mut c = ReplayCache::new(2, 1000);
        assert_eq!(c.check_and_insert(&key(1), 0, 0), ReplayVerdict::Fresh);
        assert_eq!(c.check_and_insert(&key(2), 0, 0), ReplayVerdict::Fresh);
        assert_eq!(c.check_and_insert(&key(3), 0, 10), ReplayVerdict::Full);
        // Both live entries are still refused as replays.
        assert_eq!(c.check_and_insert(&key(1), 0, 10), ReplayVerdict::Replayed);
        assert_eq!(c.check_and_insert(&key(2), 0, 10), ReplayVerdict::Replayed);
        assert_eq!(c.check_and_insert(&key(3), 0, 1001), ReplayVerdict::Fresh);
    }
}
