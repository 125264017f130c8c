//! What strangers may spend: pending connections (in total and per
//! address), hellos a second per address under load, and the count of live
//! connections that shutdown waits for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sigil_core::limit::TokenBucket;
use tokio::sync::Notify;

/// The part of an address that limits count: an IPv4 address, or the /64
/// of an IPv6 address (one host usually holds a whole /64). An IPv4-mapped
/// IPv6 address counts as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AddrBucket([u8; 16]);

impl AddrBucket {
    pub(crate) fn of(ip: IpAddr) -> AddrBucket {
        match ip {
            IpAddr::V4(v4) => AddrBucket(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrBucket(v4.to_ipv6_mapped().octets()),
                None => {
                    let mut b = v6.octets();
                    b[8..].fill(0);
                    AddrBucket(b)
                }
            },
        }
    }

    /// The bytes that name it (a replay-cache principal).
    pub(crate) fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// Which pending limit a connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverLimit {
    Total,
    PerAddress,
}

/// Connections that are not yet sessions.
pub(crate) struct Pending {
    max_total: usize,
    max_per_addr: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_addr: HashMap<AddrBucket, usize>,
}

impl Pending {
    pub(crate) fn new(max_total: usize, max_per_addr: usize) -> Arc<Pending> {
        Arc::new(Pending {
            max_total,
            max_per_addr,
            counts: Mutex::default(),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `ip`, unless a limit is reached. A
    /// trusted proxy's connection (`proxied`) counts in the total only,
    /// until [`PendingPermit::move_to`] names its client.
    pub(crate) fn try_enter(
        self: &Arc<Self>,
        ip: IpAddr,
        proxied: bool,
    ) -> Result<PendingPermit, OverLimit> {
        let mut c = self.counts();
        if c.total >= self.max_total {
            return Err(OverLimit::Total);
        }
        let addr = if proxied {
            None
        } else {
            let addr = AddrBucket::of(ip);
            self.enter_addr(&mut c, addr)?;
            Some(addr)
        };
        c.total += 1;
        Ok(PendingPermit {
            pending: self.clone(),
            addr,
        })
    }

    fn enter_addr(&self, c: &mut Counts, addr: AddrBucket) -> Result<(), OverLimit> {
        let n = c.per_addr.entry(addr).or_insert(0);
        if *n >= self.max_per_addr {
            if *n == 0 {
                c.per_addr.remove(&addr);
            }
            return Err(OverLimit::PerAddress);
        }
        *n += 1;
        Ok(())
    }

    fn leave_addr(c: &mut Counts, addr: AddrBucket) {
        if let Some(n) = c.per_addr.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                c.per_addr.remove(&addr);
            }
        }
    }

    /// Pending connections now.
    pub(crate) fn count(&self) -> usize {
        self.counts().total
    }

    /// True while more than half of the pending budget is in use: the
    /// server is under load and rate-limits hellos per address.
    pub(crate) fn under_load(&self) -> bool {
        self.count() > self.max_total / 2
    }
}

/// One pending connection; dropping it gives its place back.
pub(crate) struct PendingPermit {
    pending: Arc<Pending>,
    /// The address it counts for; `None` for a proxy's connection whose
    /// client is not known yet.
    addr: Option<AddrBucket>,
}

impl PendingPermit {
    /// Counts the connection for `ip` (the client a proxy named) instead
    /// of the address it came from, unless `ip` is at its limit.
    pub(crate) fn move_to(&mut self, ip: IpAddr) -> Result<(), OverLimit> {
        let addr = AddrBucket::of(ip);
        if self.addr == Some(addr) {
            return Ok(());
        }
        let mut c = self.pending.counts();
        self.pending.enter_addr(&mut c, addr)?;
        if let Some(old) = self.addr.replace(addr) {
            Pending::leave_addr(&mut c, old);
        }
        Ok(())
    }
}

impl Drop for PendingPermit {
    fn drop(&mut self) {
        let mut c = self.pending.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(addr) = self.addr {
            Pending::leave_addr(&mut c, addr);
        }
    }
}

/// Hellos a second per address (a token bucket each).
pub(crate) struct HelloRate {
    rate: u32,
    epoch: Instant,
    buckets: Mutex<HashMap<AddrBucket, TokenBucket>>,
}

/// Buckets kept before full ones are forgotten (a new bucket starts full,
/// so forgetting a full one changes nothing).
const MAX_BUCKETS: usize = 65_536;

impl HelloRate {
    pub(crate) fn new(rate: u32) -> HelloRate {
        HelloRate {
            rate,
            epoch: Instant::now(),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for a hello from `ip`: false if it is over its rate.
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let rate = self.rate;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| !b.is_full(rate, now));
            if buckets.len() >= MAX_BUCKETS {
                // Every address is busy: start over rather than grow.
                buckets.clear();
            }
        }
        buckets
            .entry(AddrBucket::of(ip))
            .or_insert_with(|| TokenBucket::full(rate, now))
            .try_take(rate, now)
    }
}

/// Counts live connections so that shutdown can wait for them.
#[derive(Clone, Default)]
pub(crate) struct Tracker(Arc<(AtomicUsize, Notify)>);

/// One live connection, counted until dropped.
pub(crate) struct Tracked(Tracker);

impl Tracker {
    pub(crate) fn track(&self) -> Tracked {
        self.0.0.fetch_add(1, Ordering::SeqCst);
        Tracked(self.clone())
    }

    pub(crate) fn count(&self) -> usize {
        self.0.0.load(Ordering::SeqCst)
    }

    /// Waits until no connection is live.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.0.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.1.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_per_host_and_per_v6_prefix() {
        let a = |s: &str| AddrBucket::of(s.parse().expect("address"));
        assert_eq!(a("127.0.0.2"), a("::ffff:127.0.0.2"));
        assert_ne!(a("127.0.0.2"), a("127.0.0.3"));
        assert_eq!(a("2001:db8:1:2::1"), a("2001:db8:1:2:ffff::9"));
        assert_ne!(a("2001:db8:1:2::1"), a("2001:db8:1:3::1"));
    }

    #[test]
    fn pending_limits_per_address_and_in_total() {
        let p = Pending::new(3, 2);
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let a1 = p.try_enter(ip("127.0.0.2"), false).expect("first");
        let _a2 = p.try_enter(ip("127.0.0.2"), false).expect("second");
        assert_eq!(
            p.try_enter(ip("127.0.0.2"), false).err(),
            Some(OverLimit::PerAddress)
        );
        let _b = p
            .try_enter(ip("127.0.0.3"), false)
            .expect("another address");
        assert_eq!(
            p.try_enter(ip("127.0.0.4"), false).err(),
            Some(OverLimit::Total)
        );
        assert!(p.under_load());
        drop(a1);
        assert_eq!(p.count(), 2);
        assert!(p.try_enter(ip("127.0.0.2"), false).is_ok());
    }

    #[test]
    fn a_proxy_connection_counts_for_the_client_it_names() {
        let p = Pending::new(10, 2);
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        // The proxy's own address is not limited: five at once.
        let mut via: Vec<PendingPermit> = (0..5)
            .map(|_| p.try_enter(ip("10.0.0.1"), true).expect("proxied"))
            .collect();
        via[0].move_to(ip("203.0.113.1")).expect("first client");
        via[1].move_to(ip("203.0.113.1")).expect("second from it");
        assert_eq!(
            via[2].move_to(ip("203.0.113.1")),
            Err(OverLimit::PerAddress)
        );
        via[2].move_to(ip("203.0.113.2")).expect("another client");
        // Moving to the address it counts for already changes nothing.
        via[2].move_to(ip("203.0.113.2")).expect("same client");
        let direct = p.try_enter(ip("203.0.113.2"), false).expect("direct");
        assert_eq!(
            p.try_enter(ip("203.0.113.2"), false).err(),
            Some(OverLimit::PerAddress)
        );
        drop(via.remove(0));
        assert!(p.try_enter(ip("203.0.113.1"), false).is_ok());
        drop(direct);
        drop(via);
        assert_eq!(p.count(), 0);
        assert!(p.counts().per_addr.is_empty());
    }

    #[test]
    fn hello_rate_is_per_address() {
        let r = HelloRate::new(3);
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let allowed = (0..10).filter(|_| r.allow(ip("127.0.0.2"))).count();
        assert_eq!(allowed, 3);
        assert!(r.allow(ip("127.0.0.3")));
    }
}
