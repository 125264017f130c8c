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
//!
//! ## Shares
//!
//! One cache serves every client, so no one client may fill it: each
//! *principal* (the client's key, or under `allow_any_client` the client's
//! address: the server chooses, see [`ReplayCache::check_and_insert_for`])
//! may hold at most [`ReplayCache::share`] live entries (a 64th of the
//! capacity) and enter at most `rate` hellos a second (a token bucket whose
//! burst is one second's worth). Both count authenticated hellos only, since
//! only those reach the cache: a peer that writes someone else's key into
//! garbage hellos spends none of that key's share.
//!
//! An entry lives at most `2 × max_clock_skew_ms` (a timestamp may lie up to
//! the skew ahead of the server's clock), so a principal holds at most
//! `min(share, rate × 2 × skew + rate)` entries: with the defaults
//! (capacity 262,144, skew 60 s, rate 100 a second) that is
//! `min(4,096, 12,100) = 4,096`, and filling the cache takes 64 principals
//! working together — 64 authorised keys, or 64 addresses under
//! `allow_any_client`.

use std::cmp::Reverse;
use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::collections::{BinaryHeap, HashSet};
use std::hash::BuildHasher;

use crate::keys::PublicKey;
use crate::limit::TokenBucket;

/// What the replay check says of a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayVerdict {
    /// Not seen before: it has now been recorded.
    Fresh,
    /// Seen before within the window: refuse (code 5).
    Replayed,
    /// The cache is full of live entries: refuse as busy (code 3).
    Full,
    /// This principal is over its rate or its share of the cache: refuse as
    /// busy (code 3).
    OverQuota,
    /// The store could not be asked, or did not answer in time: refuse as
    /// busy (code 3). A store shared over the network fails closed.
    Unavailable,
}

/// One hello as a replay store records it: the server key it was made for
/// (the one that verified, of a server's keys), the client's static and
/// ephemeral keys, its timestamp, and the time until which a replay of it
/// would still be fresh (`timestamp + max_clock_skew_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayEntry {
    /// The server key the hello was made for.
    pub server_key: PublicKey,
    /// The client's static key (authenticated).
    pub client_key: PublicKey,
    /// The client's ephemeral key `EC`: what a replay repeats.
    pub client_ephemeral: PublicKey,
    /// The client's timestamp (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// Until when the entry must be kept (milliseconds since the Unix
    /// epoch): after it, the same hello is refused as stale anyway.
    pub expires_ms: u64,
}

impl ReplayEntry {
    /// The entry's name in a store that many servers share:
    /// `H("sigil/1 replay" || S || C || EC)`. It binds the server key, so
    /// servers of different services (different keys) can share one store
    /// without their entries meeting, while every server that holds the
    /// same key sees the same name for the same hello.
    pub fn id(&self) -> [u8; 32] {
        use sha2::{Digest as _, Sha256};
        Sha256::new()
            .chain_update(b"sigil/1 replay")
            .chain_update(self.server_key.as_bytes())
            .chain_update(self.client_key.as_bytes())
            .chain_update(self.client_ephemeral.as_bytes())
            .finalize()
            .into()
    }

    /// How long from `now_ms` the entry must still be kept, in
    /// milliseconds: through `expires_ms` itself, when a replay would still
    /// be fresh (so at least 1).
    pub fn ttl_ms(&self, now_ms: u64) -> u64 {
        self.expires_ms.saturating_sub(now_ms).saturating_add(1)
    }
}

/// Anything that can tell fresh ephemeral keys from replayed ones.
///
/// [`ReplayCache`] is the implementation (it takes the client key as the
/// principal); a server that handles handshakes on several threads wraps it
/// in a lock that it takes inside this call only, and may choose another
/// principal (the client's address) with
/// [`check_and_insert_for`](ReplayCache::check_and_insert_for).
pub trait ReplayGuard {
    /// Checks `ephemeral` (from an authenticated hello of `client` with
    /// `timestamp_ms`, received at `now_ms`) and records it if it is fresh.
    fn check_and_insert(
        &mut self,
        client: &PublicKey,
        ephemeral: &PublicKey,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> ReplayVerdict;
}

type Fingerprint = [u8; 16];

/// What the cache knows of one principal.
struct Quota {
    live: usize,
    bucket: TokenBucket,
}

/// A bounded set of recently seen client ephemeral keys, with a share and a
/// rate per principal.
pub struct ReplayCache {
    capacity: usize,
    window_ms: u64,
    rate: u32,
    seen: HashSet<Fingerprint>,
    /// Expiry, fingerprint, and the principal's hash.
    expiries: BinaryHeap<Reverse<(u64, Fingerprint, u64)>>,
    principals: HashMap<u64, Quota>,
    /// Keys the principals' hashes: an attacker cannot aim at a collision.
    hasher: RandomState,
    /// `principals` is swept of forgotten principals when it grows past this.
    sweep_at: usize,
}

/// Hellos a second one principal may enter when no rate is given.
pub const DEFAULT_RATE: u32 = 100;

impl ReplayCache {
    /// A cache of at most `capacity` entries for a clock-skew window of
    /// `max_clock_skew_ms`, with the default rate per principal. Memory
    /// grows with use, up to the bound.
    pub fn new(capacity: usize, max_clock_skew_ms: u64) -> ReplayCache {
        ReplayCache {
            capacity,
            window_ms: max_clock_skew_ms,
            rate: DEFAULT_RATE,
            seen: HashSet::new(),
            expiries: BinaryHeap::new(),
            principals: HashMap::new(),
            hasher: RandomState::new(),
            sweep_at: 1024,
        }
    }

    /// Sets the hellos a second one principal may enter (at least 1).
    pub fn with_rate(mut self, rate: u32) -> ReplayCache {
        self.rate = rate.max(1);
        self
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

    /// The most live entries one principal may hold: a 64th of the capacity,
    /// at least 1.
    pub fn share(&self) -> usize {
        (self.capacity / 64).max(1)
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(Reverse((expiry, fp, principal))) = self.expiries.peek() {
            if *expiry >= now_ms {
                break;
            }
            self.seen.remove(fp);
            if let Some(q) = self.principals.get_mut(principal) {
                q.live = q.live.saturating_sub(1);
            }
            self.expiries.pop();
        }
    }

    /// Forgets principals with no live entry and a full bucket (a new one
    /// starts the same way), once their number has doubled since the last
    /// sweep: the map stays within twice the principals that matter.
    fn sweep(&mut self, now_ms: u64) {
        if self.principals.len() < self.sweep_at {
            return;
        }
        let rate = self.rate;
        self.principals
            .retain(|_, q| q.live > 0 || !q.bucket.is_full(rate, now_ms));
        self.sweep_at = (self.principals.len() * 2).max(1024);
    }

    /// [`ReplayGuard::check_and_insert`] with the principal named by the
    /// caller: any bytes that identify it (a client key, an address).
    pub fn check_and_insert_for(
        &mut self,
        principal: &[u8],
        ephemeral: &PublicKey,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> ReplayVerdict {
        self.expire(now_ms);
        self.sweep(now_ms);
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&ephemeral.as_bytes()[..16]);
        if self.seen.contains(&fp) {
            return ReplayVerdict::Replayed;
        }
        let id = self.hasher.hash_one(principal);
        let (share, rate) = (self.share(), self.rate);
        let quota = match self.principals.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Quota {
                live: 0,
                bucket: TokenBucket::full(rate, now_ms),
            }),
        };
        if quota.live >= share || !quota.bucket.try_take(rate, now_ms) {
            return ReplayVerdict::OverQuota;
        }
        if self.seen.len() >= self.capacity {
            return ReplayVerdict::Full;
        }
        quota.live += 1;
        self.seen.insert(fp);
        let expiry = timestamp_ms.saturating_add(self.window_ms);
        self.expiries.push(Reverse((expiry, fp, id)));
        ReplayVerdict::Fresh
    }
}

impl ReplayGuard for ReplayCache {
    fn check_and_insert(
        &mut self,
        client: &PublicKey,
        ephemeral: &PublicKey,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> ReplayVerdict {
        self.check_and_insert_for(client.as_bytes(), ephemeral, timestamp_ms, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: PublicKey = PublicKey::from_bytes([0xc1; 32]);

    fn key(i: u8) -> PublicKey {
        PublicKey::from_bytes([i; 32])
    }

    #[test]
    fn replay_within_window_then_expiry() {
        let mut c = ReplayCache::new(256, 1000);
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(1), 5000, 5000),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(1), 5000, 5500),
            ReplayVerdict::Replayed
        );
        // Still remembered at exactly timestamp + window (the hello is still fresh then).
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(1), 5000, 6000),
            ReplayVerdict::Replayed
        );
        // After the window the entry is gone (and the hello itself would be stale).
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(2), 6001, 6001),
            ReplayVerdict::Fresh
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn full_cache_refuses_without_evicting() {
        // Two principals with a share of 1 each fill a cache of 2.
        let mut c = ReplayCache::new(2, 1000);
        assert_eq!(
            c.check_and_insert_for(b"a", &key(1), 0, 0),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            c.check_and_insert_for(b"b", &key(2), 0, 0),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            c.check_and_insert_for(b"c", &key(3), 0, 10),
            ReplayVerdict::Full
        );
        // Both live entries are still refused as replays.
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(1), 0, 10),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(2), 0, 10),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            c.check_and_insert_for(b"c", &key(3), 0, 1001),
            ReplayVerdict::Fresh
        );
    }

    #[test]
    fn one_principal_gets_its_share_and_no_more() {
        let mut c = ReplayCache::new(64 * 4, 1000).with_rate(1000);
        assert_eq!(c.share(), 4);
        for i in 0..4 {
            assert_eq!(
                c.check_and_insert(&CLIENT, &key(i), 0, 0),
                ReplayVerdict::Fresh
            );
        }
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(9), 0, 0),
            ReplayVerdict::OverQuota
        );
        // A replay is still called a replay.
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(1), 0, 0),
            ReplayVerdict::Replayed
        );
        // Others are not affected.
        assert_eq!(
            c.check_and_insert(&key(7), &key(9), 0, 0),
            ReplayVerdict::Fresh
        );
        // When its entries expire, the share is back.
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(10), 2000, 2000),
            ReplayVerdict::Fresh
        );
    }

    #[test]
    fn one_principal_is_held_to_its_rate() {
        let mut c = ReplayCache::new(1 << 20, 60_000).with_rate(5);
        let fresh = (0..50u8)
            .filter(|&i| c.check_and_insert(&CLIENT, &key(i), 0, 0) == ReplayVerdict::Fresh)
            .count();
        assert_eq!(fresh, 5);
        // One more a fifth of a second later.
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(100), 0, 200),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            c.check_and_insert(&CLIENT, &key(101), 0, 200),
            ReplayVerdict::OverQuota
        );
    }

    #[test]
    fn forgotten_principals_are_swept() {
        let mut c = ReplayCache::new(1 << 20, 10);
        for i in 0..5000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            let now = u64::from(i) * 100;
            let v = c.check_and_insert(
                &PublicKey::from_bytes(k),
                &PublicKey::from_bytes(k),
                now,
                now,
            );
            assert_eq!(v, ReplayVerdict::Fresh);
        }
        assert!(c.principals.len() <= 2048, "{}", c.principals.len());
        assert!(c.len() <= 1);
    }
}
