//! The demo objects of `sigil serve --demo`: `calculator`, `echo`, `kv`,
//! `clock` and `session`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Number, Value};

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

/// Registers `calculator` (`add`, `sub`, `mul`, `div`), `echo` (`echo`),
/// `kv` (`get`, `set`, `delete`; a bounded in-memory map of strings shared
/// by all connections) and `clock` (`sleep(ms)`: an asynchronous method
/// that returns `ms` after sleeping that long, at most a minute — a slow
/// call, to see deadlines at work) and `session`, one instance per session
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
        .method("echo", |(v,): (Value,)| Ok(v));

    let store: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    registry
        .object("kv")
        .method("get", move |(key,): (String,)| {
            Ok(lock(&s1).get(&key).cloned())
        })
        .method("set", move |(key, value): (String, String)| {
            if key.len() > KV_MAX_KEY || value.len() > KV_MAX_VALUE {
                return Err(RpcError::new(
                    ErrorCode::InvalidArguments,
                    format!("keys are at most {KV_MAX_KEY} bytes and values at most {KV_MAX_VALUE} bytes"),
                ));
            }
            let mut map = lock(&s2);
            if map.len() >= KV_MAX_ENTRIES && !map.contains_key(&key) {
                return Err(RpcError::application(format!(
                    "the store is full ({KV_MAX_ENTRIES} entries)"
                )));
            }
            map.insert(key, value);
            Ok(Value::Null)
        })
        .method("delete", move |(key,): (String,)| {
            Ok(lock(&s3).remove(&key).is_some())
        });
}

fn lock(m: &Mutex<HashMap<String, String>>) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
