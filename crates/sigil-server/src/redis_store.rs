//! A replay store in Redis, shared by every instance of a service
//! (`replay_store = "redis://HOST:PORT/DB"`, cargo feature `redis`).
//!
//! One hello is one Lua script, so the check and the insert are one atomic
//! step on the Redis server (two instances given the same hello at once
//! cannot both find it fresh), and one round trip:
//!
//! 1. the entry's key exists: a replay (code 5);
//! 2. the principal (client key, or address under `allow_any_client`) holds
//!    its share of live entries, or is over its rate: busy (code 3);
//! 3. otherwise `SET key 1 NX PX ttl` records it, until the hello would be
//!    stale anyway.
//!
//! Keys (`sigil/1:hello:…`, `sigil/1:live:…`, `sigil/1:rate:…`) are hashes
//! that bind the server key the hello was made for, so services with
//! different keys can share one Redis; instances of one service (the same
//! key) see the same names. Redis's own clock times the shares and rates,
//! so instances whose clocks differ a little still agree on them.
//!
//! It fails closed: an error, an unreachable Redis or a late answer is
//! [`ReplayVerdict::Unavailable`], and the hello is refused as busy. A Redis
//! out of memory under `maxmemory-policy noeviction` refuses the write, which
//! is [`ReplayVerdict::Full`] (busy as well). Any eviction policy would drop
//! live entries and let their replays through: the store warns when Redis
//! says it has one.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use sha2::{Digest as _, Sha256};
use sigil_core::config::RedisUrl;
use sigil_core::replay::{ReplayEntry, ReplayVerdict};
use tracing::{info, warn};

use crate::replay_store::{ReplayStore, StoreFuture};
use crate::settings::SetupError;

/// The check and insert, atomically. Answers 0 (fresh), 1 (replayed) or 2
/// (over the principal's share or rate). Token counts are in thousandths,
/// so that every number stays an integer.
const CHECK_AND_INSERT: &str = r"
-- KEYS[1] the hello; KEYS[2] the principal's live hellos (a sorted set,
-- scored by expiry); KEYS[3] the principal's rate (a token bucket).
-- ARGV[1] ttl (ms); ARGV[2] share; ARGV[3] rate (a second); ARGV[4] member.
-- Reads first, and SET is the first write: Redis refuses a script's
-- first memory-growing write when it is out of memory (noeviction), and
-- lets every later one through.
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
if redis.call('ZCOUNT', KEYS[2], now, '+inf') >= tonumber(ARGV[2]) then return 2 end
local full = tonumber(ARGV[3]) * 1000
local b = redis.call('HMGET', KEYS[3], 't', 'at')
local tokens = tonumber(b[1]) or full
local at = tonumber(b[2]) or now
tokens = math.min(full, tokens + math.max(0, now - at) * tonumber(ARGV[3]))
if tokens < 1000 then return 2 end
redis.call('SET', KEYS[1], 1, 'NX', 'PX', ttl)
redis.call('HSET', KEYS[3], 't', tokens - 1000, 'at', now)
redis.call('PEXPIRE', KEYS[3], 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 1)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[4])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 0
";

/// How much longer than its own clock says an instance keeps an entry:
/// instances' clocks disagree a little, and an instance whose clock is
/// behind the one that recorded a hello would take its replay for fresh
/// for as long as the two disagree. NTP keeps clocks far closer than this.
pub(crate) const CLOCK_MARGIN_MS: u64 = 5_000;

/// The sizes a Redis store enforces, as the in-memory cache does.
pub(crate) struct RedisOptions {
    /// Live entries one principal may hold.
    pub(crate) share: usize,
    /// Hellos a second one principal may enter.
    pub(crate) rate: u32,
    /// How long one answer may take (the server waits no longer either).
    pub(crate) timeout: Duration,
}

/// A replay store in Redis.
pub(crate) struct RedisStore {
    conn: ConnectionManager,
    script: Script,
    share: usize,
    rate: u32,
    /// The URL, its password redacted.
    described: String,
    /// Whether the last answer came: a change is logged once.
    answering: AtomicBool,
    /// Whether Redis's eviction policy has been looked at.
    policy_checked: Arc<AtomicBool>,
}

impl RedisStore {
    /// A store at `url`. Connects lazily, and again after a failure: a
    /// server may start before its Redis.
    pub(crate) fn open(url: &RedisUrl, options: RedisOptions) -> Result<RedisStore, SetupError> {
        let client = redis::Client::open(url.dangerous_as_str()).map_err(|e| {
            // The error may quote the URL: only its category is shown.
            SetupError::Config(format!(
                "replay_store: the Redis client does not take this URL ({})",
                e.category()
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            SetupError::Config(format!(
                "replay_store: cannot set up the Redis client ({})",
                e.category()
            ))
        })?;
        Ok(RedisStore {
            conn,
            script: Script::new(CHECK_AND_INSERT),
            share: options.share,
            rate: options.rate,
            described: url.redacted(),
            answering: AtomicBool::new(true),
            policy_checked: Arc::new(AtomicBool::new(false)),
        })
    }

    async fn check(&self, entry: &ReplayEntry, principal: &[u8], now_ms: u64) -> ReplayVerdict {
        let id = entry.id();
        let who = principal_id(entry, principal);
        let mut conn = self.conn.clone();
        let answer: Result<i64, RedisError> = self
            .script
            .key(key("hello", &id[..16]))
            .key(key("live", &who))
            .key(key("rate", &who))
            .arg(entry.ttl_ms(now_ms).saturating_add(CLOCK_MARGIN_MS))
            .arg(self.share)
            .arg(self.rate)
            .arg(&id[..16])
            .invoke_async(&mut conn)
            .await;
        match answer {
            Ok(n) => {
                if !self.answering.swap(true, Ordering::Relaxed) {
                    info!(
                        "replay store {} answers again: handshakes are served",
                        self.described
                    );
                }
                self.check_policy();
                match n {
                    0 => ReplayVerdict::Fresh,
                    1 => ReplayVerdict::Replayed,
                    _ => ReplayVerdict::OverQuota,
                }
            }
            // Out of memory under noeviction: full, never evicted.
            Err(e) if e.code() == Some("OOM") => ReplayVerdict::Full,
            Err(e) => {
                if self.answering.swap(false, Ordering::Relaxed) {
                    warn!(
                        "replay store {} failed ({}: {}): new handshakes are refused as busy \
                         until it answers",
                        self.described,
                        e.category(),
                        e.detail().unwrap_or("no detail")
                    );
                }
                ReplayVerdict::Unavailable
            }
        }
    }

    /// Once Redis answers: warns if its eviction policy can drop live
    /// entries (which would let their replays through).
    fn check_policy(&self) {
        if self.policy_checked.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut conn = self.conn.clone();
        let described = self.described.clone();
        tokio::spawn(async move {
            let policy: Result<Vec<String>, RedisError> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async(&mut conn)
                .await;
            match policy.as_deref() {
                Ok([_, policy]) if policy != "noeviction" => warn!(
                    "replay store {described}: Redis's maxmemory-policy is {policy}, which may \
                     evict live entries and let their replays through; set it to noeviction"
                ),
                // noeviction, or CONFIG is not allowed (a managed Redis).
                _ => {}
            }
        });
    }
}

impl ReplayStore for RedisStore {
    fn check_and_insert<'a>(
        &'a self,
        entry: &'a ReplayEntry,
        principal: &'a [u8],
        now_ms: u64,
    ) -> StoreFuture<'a> {
        Box::pin(self.check(entry, principal, now_ms))
    }

    fn describe(&self) -> String {
        format!("{} (shared)", self.described)
    }

    fn is_shared(&self) -> bool {
        true
    }
}

/// Names a principal of one service: `H(label || S || principal)`, cut to
/// 16 bytes.
fn principal_id(entry: &ReplayEntry, principal: &[u8]) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"sigil/1 replay principal")
        .chain_update(entry.server_key.as_bytes())
        .chain_update(principal)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// `sigil/1:KIND:HEX`.
fn key(kind: &str, id: &[u8]) -> String {
    let mut key = format!("sigil/1:{kind}:");
    for b in id {
        let _ = write!(key, "{b:02x}");
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_core::PublicKey;

    #[test]
    fn keys_bind_the_server_key() {
        let entry = ReplayEntry {
            server_key: PublicKey::from_bytes([1; 32]),
            client_key: PublicKey::from_bytes([2; 32]),
            client_ephemeral: PublicKey::from_bytes([3; 32]),
            timestamp_ms: 0,
            expires_ms: 0,
        };
        let other = ReplayEntry {
            server_key: PublicKey::from_bytes([4; 32]),
            ..entry
        };
        assert_ne!(principal_id(&entry, b"p"), principal_id(&other, b"p"));
        assert_ne!(principal_id(&entry, b"p"), principal_id(&entry, b"q"));
        let k = key("hello", &entry.id()[..16]);
        assert!(k.starts_with("sigil/1:hello:"));
        assert_eq!(k.len(), "sigil/1:hello:".len() + 32);
    }
}
