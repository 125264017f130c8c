//! The replay store: where a server remembers the hellos it has seen.
//!
//! The core checks a hello ([`verify_hello`]) and hands over its replay
//! entry; the store says whether it is fresh, and only its verdict turns
//! the hello into a session ([`VerifiedHello::with_verdict`]). The store
//! is behind a trait, [`ReplayStore`]:
//!
//! - [`MemoryStore`], the default: the core's bounded [`ReplayCache`] in
//!   this process. Right for one server. Several servers behind a load
//!   balancer must not use it: a hello captured on its way to one could be
//!   replayed to another, which has never seen it.
//! - `RedisStore` (feature `redis`): one Redis that every instance of a
//!   service shares (`replay_store = "redis://…"`).
//!
//! Whatever the store, the server waits for it at most
//! `replay_store_timeout_ms` and refuses a hello it has no verdict for as
//! busy (code 3): a store that cannot be reached fails closed.
//!
//! [`verify_hello`]: sigil_core::handshake::verify_hello
//! [`VerifiedHello::with_verdict`]: sigil_core::handshake::VerifiedHello::with_verdict

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sigil_core::config::ReplayStoreLocation;
use sigil_core::handshake::{ClientHello, Refusal, VerifiedHello};
use sigil_core::replay::{ReplayCache, ReplayEntry, ReplayVerdict};

use crate::budget::AddrBucket;
use crate::settings::SetupError;

/// What a store's check gives: its verdict, later.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = ReplayVerdict> + Send + 'a>>;

/// Anything that can tell fresh hellos from replayed ones for a server.
///
/// A store shared by several servers must make the check and the insert
/// one atomic step (two servers given the same hello at once must not both
/// find it fresh), keep every entry until its
/// [`expires_ms`](ReplayEntry::expires_ms) (an entry dropped early lets its
/// replay through), and answer [`ReplayVerdict::Unavailable`] when it
/// cannot tell — never [`ReplayVerdict::Fresh`].
pub trait ReplayStore: Send + Sync + 'static {
    /// Checks `entry`, and records it if it is fresh. `principal` names
    /// whom the entry counts against (the client's key, or under
    /// `allow_any_client` the client's address): each principal may hold
    /// a share of the store and enter hellos at a bounded rate, and is
    /// refused with [`ReplayVerdict::OverQuota`] past them. `now_ms` is the
    /// server's clock (milliseconds since the Unix epoch).
    fn check_and_insert<'a>(
        &'a self,
        entry: &'a ReplayEntry,
        principal: &'a [u8],
        now_ms: u64,
    ) -> StoreFuture<'a>;

    /// What the store is, for the server's log: never a password.
    fn describe(&self) -> String;

    /// Whether servers that use it share what they have seen. A server
    /// behind `trusted_proxies` warns when its store is not shared.
    fn is_shared(&self) -> bool;
}

/// The in-memory store: the core's [`ReplayCache`] behind a lock taken for
/// the check only. For one server.
pub struct MemoryStore {
    cache: Mutex<ReplayCache>,
}

impl MemoryStore {
    /// A store of at most `capacity` entries for a clock-skew window of
    /// `max_clock_skew_ms`, where one principal may enter `rate` hellos a
    /// second (see [`ReplayCache`]).
    pub fn new(capacity: usize, max_clock_skew_ms: u64, rate: u32) -> MemoryStore {
        MemoryStore {
            cache: Mutex::new(ReplayCache::new(capacity, max_clock_skew_ms).with_rate(rate)),
        }
    }
}

impl ReplayStore for MemoryStore {
    fn check_and_insert<'a>(
        &'a self,
        entry: &'a ReplayEntry,
        principal: &'a [u8],
        now_ms: u64,
    ) -> StoreFuture<'a> {
        let verdict = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check_and_insert_for(
                principal,
                &entry.client_ephemeral,
                entry.timestamp_ms,
                now_ms,
            );
        Box::pin(std::future::ready(verdict))
    }

    fn describe(&self) -> String {
        "memory (this instance only)".to_owned()
    }

    fn is_shared(&self) -> bool {
        false
    }
}

/// Where a server's replay store comes from: its configuration, or the
/// application.
#[derive(Clone)]
pub(crate) enum StoreChoice {
    Location(ReplayStoreLocation),
    Custom(Arc<dyn ReplayStore>),
}

impl Default for StoreChoice {
    fn default() -> StoreChoice {
        StoreChoice::Location(ReplayStoreLocation::Memory)
    }
}

/// What the replay check needs beyond the store: how long to wait for it,
/// and whom hellos count against.
pub(crate) struct Replay {
    store: Arc<dyn ReplayStore>,
    timeout: Duration,
    /// Under allow_any_client keys cost nothing to make: the principal is
    /// the client's address.
    by_address: bool,
}

/// The store's sizes, from the server's limits.
pub(crate) struct Sizes {
    pub(crate) capacity: usize,
    pub(crate) max_clock_skew_ms: u64,
    pub(crate) rate: u32,
    pub(crate) timeout: Duration,
}

impl Replay {
    /// Opens the store chosen (a Redis store connects lazily: a server may
    /// start before its Redis does, and refuses hellos as busy until it is
    /// reachable).
    pub(crate) fn open(
        choice: StoreChoice,
        sizes: &Sizes,
        by_address: bool,
    ) -> Result<Replay, SetupError> {
        let store: Arc<dyn ReplayStore> = match choice {
            StoreChoice::Custom(store) => store,
            StoreChoice::Location(ReplayStoreLocation::Memory) => Arc::new(MemoryStore::new(
                sizes.capacity,
                sizes.max_clock_skew_ms,
                sizes.rate,
            )),
            StoreChoice::Location(ReplayStoreLocation::Redis(url)) => redis_store(&url, sizes)?,
        };
        Ok(Replay {
            store,
            timeout: sizes.timeout,
            by_address,
        })
    }

    pub(crate) fn describe(&self) -> String {
        self.store.describe()
    }

    pub(crate) fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    /// The replay check of a verified hello from `peer`: its verdict, or
    /// [`ReplayVerdict::Unavailable`] when the store does not answer in
    /// time.
    pub(crate) async fn check(
        &self,
        hello: VerifiedHello,
        peer: SocketAddr,
        now_ms: u64,
    ) -> Result<ClientHello, Refusal> {
        let address;
        let principal: &[u8] = if self.by_address {
            address = AddrBucket::of(peer.ip());
            address.as_bytes()
        } else {
            hello.client_key().as_bytes()
        };
        let entry = hello.replay_entry();
        let verdict = tokio::time::timeout(
            self.timeout,
            self.store.check_and_insert(entry, principal, now_ms),
        )
        .await
        .unwrap_or(ReplayVerdict::Unavailable);
        hello.with_verdict(verdict)
    }
}

#[cfg(feature = "redis")]
fn redis_store(
    url: &sigil_core::config::RedisUrl,
    sizes: &Sizes,
) -> Result<Arc<dyn ReplayStore>, SetupError> {
    let store = crate::redis_store::RedisStore::open(
        url,
        crate::redis_store::RedisOptions {
            share: (sizes.capacity / 64).max(1),
            rate: sizes.rate,
            timeout: sizes.timeout,
        },
    )?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
fn redis_store(
    _: &sigil_core::config::RedisUrl,
    _: &Sizes,
) -> Result<Arc<dyn ReplayStore>, SetupError> {
    Err(SetupError::Config(
        "replay_store: this build of sigil-server has no Redis support \
         (build it with the cargo feature `redis`)"
            .into(),
    ))
}
