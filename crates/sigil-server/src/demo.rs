//! The demo objects of `sigil serve --demo`: `calculator`, `echo`, `kv`,
//! `clock` and `session`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use serde_json::{Number, Value};
use tokio::sync::broadcast;

use crate::registry::{CallContext, NoArgs, Registry};
use crate::{ErrorCode, RpcError};

/// Most entries the demo `kv` store holds.
pub const KV_MAX_ENTRIES: usize = 1024;
/// Longest key of the demo `kv` store, in bytes.
pub const KV_MAX_KEY: usize = 256;
/// Longest value of the demo `kv` store, in bytes.
pub const KV_MAX_VALUE: usize = 64 * 1024;

/// Longest `clock.sleep`, in milliseconds.
pub const CLOCK_MAX_SLEEP_MS: u64 = 60_000;

/// Most ticks of one `clock.ticker`.
pub const TICKER_MAX_TICKS: u64 = 10_000;
/// Shortest interval of `clock.ticker`, in milliseconds.
pub const TICKER_MIN_INTERVAL_MS: u64 = 10;

/// Most items of one `echo.repeat`.
pub const REPEAT_MAX_ITEMS: u64 = 100_000;

/// Changes of the `kv` store a watcher may fall behind by before it skips
/// to the current value.
const KV_CHANGES_QUEUE: usize = 256;

/// Registers `instance`, whose `name` answers `name`: several instances
/// behind one load balancer say which of them served a call (`sigil serve
/// --instance NAME`).
pub fn register_instance(registry: &mut Registry, name: impl Into<String>) {
    let name: String = name.into();
    registry
        .object("instance")
        .method("name", move |_: NoArgs| Ok(name.clone()));
}

/// Registers `calculator` (`add`, `sub`, `mul`, `div`), `echo` (`echo`;
/// `repeat(value, n)`: a stream of n copies of the value, as fast as the
/// client takes them, n at most 100,000),
/// `kv` (`get`, `set`, `delete`; a bounded in-memory map of strings shared
/// by all connections) and `clock` (`sleep(ms)`: an asynchronous method
/// that returns `ms` after sleeping that long, at most a minute — a slow
/// call, to see deadlines at work; `ticker(n, interval_ms)`: a stream of
/// 0 to n−1, one every interval, n at most 10,000 and the interval at least
/// 10 ms), `kv.watch(key)` (a stream: the key's value now, then each time
/// it is set or deleted; `null` when absent) and `session`, one instance per session
/// (`whoami`: the caller's key fingerprint, its name from `authorized_keys`,
/// and its address, as the server sees them; `count`: 1, 2, 3… within a
/// session, from 1 again in a new one).
pub fn register(registry: &mut Registry) {
    registry
        .object_per_session("session", |_: &CallContext| AtomicU64::new(0))
        .method("count", |calls: &AtomicU64, _: &CallContext, _: NoArgs| {
            Ok(calls.fetch_add(1, Ordering::Relaxed) + 1)
        })
        .method("whoami", |_: &AtomicU64, cx: &CallContext, _: NoArgs| {
            Ok(serde_json::json!({
                "fingerprint": cx.fingerprint(),
                "name": cx.client_name,
                "address": cx.peer_addr.to_string(),
            }))
        });
    registry
        .object("clock")
        .async_method("sleep", |(ms,): (u64,)| async move {
            if ms > CLOCK_MAX_SLEEP_MS {
                return Err(RpcError::new(
                    ErrorCode::InvalidArguments,
                    format!("clock.sleep sleeps at most {CLOCK_MAX_SLEEP_MS} ms"),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(ms)
        })
        .stream_method("ticker", |(n, interval_ms): (u64, u64)| {
            if n > TICKER_MAX_TICKS || interval_ms < TICKER_MIN_INTERVAL_MS {
                return Err(RpcError::invalid_arguments(format!(
                    "clock.ticker ticks at most {TICKER_MAX_TICKS} times, at least \
                     {TICKER_MIN_INTERVAL_MS} ms apart"
                )));
            }
            let mut interval = tokio::time::interval(Duration::from_millis(interval_ms));
            // A reader that paused gets the next tick on time, not a burst.
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            Ok(stream::unfold(
                (0, interval),
                move |(i, mut interval)| async move {
                    if i >= n {
                        return None;
                    }
                    interval.tick().await;
                    Some((Ok::<_, RpcError>(i), (i + 1, interval)))
                },
            ))
        });
    registry
        .object("calculator")
        .method("add", |(a, b): (Number, Number)| {
            arith(&a, &b, i64::checked_add, |x, y| x + y)
        })
        .method("sub", |(a, b): (Number, Number)| {
            arith(&a, &b, i64::checked_sub, |x, y| x - y)
        })
        .method("mul", |(a, b): (Number, Number)| {
            arith(&a, &b, i64::checked_mul, |x, y| x * y)
        })
        .method("div", |(a, b): (Number, Number)| {
            if b.as_f64() == Some(0.0) {
                return Err(RpcError::application("division by zero"));
            }
            let exact = |x: i64, y: i64| (x.checked_rem(y) == Some(0)).then(|| x / y);
            arith(&a, &b, exact, |x, y| x / y)
        });
    registry
        .object("echo")
        .method("echo", |(v,): (Value,)| Ok(v))
        .stream_method("repeat", |(v, n): (Value, u64)| {
            if n > REPEAT_MAX_ITEMS {
                return Err(RpcError::invalid_arguments(format!(
                    "echo.repeat repeats at most {REPEAT_MAX_ITEMS} times"
                )));
            }
            Ok(stream::iter(
                (0..n).map(move |_| Ok::<_, RpcError>(v.clone())),
            ))
        });

    let store = Arc::new(Kv {
        map: Mutex::default(),
        changes: broadcast::channel(KV_CHANGES_QUEUE).0,
    });
    let (s1, s2, s3, s4) = (store.clone(), store.clone(), store.clone(), store);
    registry
        .object("kv")
        .method("get", move |(key,): (String,)| Ok(s1.get(&key)))
        .method("set", move |(key, value): (String, String)| {
            if key.len() > KV_MAX_KEY || value.len() > KV_MAX_VALUE {
                return Err(RpcError::new(
                    ErrorCode::InvalidArguments,
                    format!("keys are at most {KV_MAX_KEY} bytes and values at most {KV_MAX_VALUE} bytes"),
                ));
            }
            let mut map = s2.lock();
            if map.len() >= KV_MAX_ENTRIES && !map.contains_key(&key) {
                return Err(RpcError::application(format!(
                    "the store is full ({KV_MAX_ENTRIES} entries)"
                )));
            }
            map.insert(key.clone(), value);
            drop(map);
            s2.changed(key);
            Ok(Value::Null)
        })
        .method("delete", move |(key,): (String,)| {
            let removed = s3.lock().remove(&key).is_some();
            if removed {
                s3.changed(key);
            }
            Ok(removed)
        })
        .stream_method("watch", move |(key,): (String,)| {
            // Subscribed before the first read: no change is missed between.
            let changes = s4.changes.subscribe();
            let first = Ok::<_, RpcError>(s4.get(&key));
            let later = stream::unfold(
                (changes, s4.clone(), key),
                |(mut changes, kv, key)| async move {
                    loop {
                        match changes.recv().await {
                            Ok(changed) if changed == key => break,
                            Ok(_) => {}
                            // Fell behind: the current value is what counts.
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                    let value = kv.get(&key);
                    Some((Ok(value), (changes, kv, key)))
                },
            );
            Ok(stream::once(async { first }).chain(later))
        });
}

/// The demo `kv` store: a bounded map, and the names of keys as they change.
struct Kv {
    map: Mutex<HashMap<String, String>>,
    changes: broadcast::Sender<String>,
}

impl Kv {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &str) -> Option<String> {
        self.lock().get(key).cloned()
    }

    fn changed(&self, key: String) {
        // No watcher: nothing to tell.
        let _ = self.changes.send(key);
    }
}

/// Integer arithmetic when both are integers and the result fits (and is
/// exact); floating point otherwise. A non-finite result is an error.
fn arith(
    a: &Number,
    b: &Number,
    int: impl Fn(i64, i64) -> Option<i64>,
    float: impl Fn(f64, f64) -> f64,
) -> Result<Number, RpcError> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64())
        && let Some(r) = int(x, y)
    {
        return Ok(Number::from(r));
    }
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return Err(RpcError::invalid_arguments("expected two numbers"));
    };
    Number::from_f64(float(x, y))
        .ok_or_else(|| RpcError::application("the result is not a finite number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &str) -> Number {
        serde_json::from_str(v).unwrap()
    }

    #[test]
    fn integer_and_float_arithmetic() {
        let add = |a, b| {
            arith(&n(a), &n(b), i64::checked_add, |x, y| x + y)
                .unwrap()
                .to_string()
        };
        assert_eq!(add("1", "2"), "3");
        assert_eq!(add("1.5", "2"), "3.5");
        assert_eq!(
            add("9223372036854775807", "1"),
            "9.223372036854776e18"
                .parse::<f64>()
                .map(|f| Number::from_f64(f).unwrap().to_string())
                .unwrap()
        );
        let inf = arith(&n("1e308"), &n("1e308"), |_, _| None, |x, y| x * y);
        assert_eq!(inf.unwrap_err().code, ErrorCode::ApplicationError);
    }
}
