//! The server and the native client over real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sigil_client::{Client, ClientError, ClientOptions};
use sigil_core::handshake::{ClientAuth, Limits};
use sigil_core::keys::SymmetricKey;
use sigil_core::rpc::ErrorCode;
use sigil_server::{HookDecision, NoArgs, RpcError, ServerLimits, ServerSettings};

#[tokio::test]
async fn demo_methods() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let c = connect(&server, client_key).await;
    assert_eq!(c.call::<i64>("calculator", "add", (1, 2)).await.unwrap(), 3);
    assert_eq!(
        c.call::<i64>("calculator", "sub", (1, 2)).await.unwrap(),
        -1
    );
    assert_eq!(
        c.call::<f64>("calculator", "mul", (1.5, 2)).await.unwrap(),
        3.0
    );
    assert_eq!(
        c.call::<f64>("calculator", "div", (7, 2)).await.unwrap(),
        3.5
    );
    assert_eq!(c.call::<i64>("calculator", "div", (8, 2)).await.unwrap(), 4);
    let v = json!({"nested": [1, "two", null, {"x": true}]});
    assert_eq!(c.call::<Value>("echo", "echo", (&v,)).await.unwrap(), v);
    assert_eq!(
        c.call::<Value>("kv", "get", ("k",)).await.unwrap(),
        Value::Null
    );
    c.call::<Value>("kv", "set", ("k", "v")).await.unwrap();
    assert_eq!(c.call::<String>("kv", "get", ("k",)).await.unwrap(), "v");
    assert!(c.call::<bool>("kv", "delete", ("k",)).await.unwrap());
    assert!(!c.call::<bool>("kv", "delete", ("k",)).await.unwrap());
    assert_eq!(c.call::<String>("sigil", "ping", ()).await.unwrap(), "pong");
    let objects: Value = c.call("sigil", "objects", ()).await.unwrap();
    assert_eq!(
        objects,
        json!({"calculator": ["add", "div", "mul", "sub"], "clock": ["sleep", "ticker"], "echo": ["echo", "repeat"],
               "kv": ["delete", "get", "set", "watch"], "session": ["count", "whoami"],
               "sigil": ["objects", "ping"]})
    );
    c.close().await;
    server.shutdown().await;
}

fn rpc_code(r: Result<Value, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Remote(e)) => e.code,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[tokio::test]
async fn every_error_code() {
    let client_key = key();
    let mut registry = demo_registry();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    registry
        .object("test")
        .method("big", |_: NoArgs| Ok::<_, RpcError>("x".repeat(4000)))
        .async_method("wait", move |_: NoArgs| {
            let g = g.clone();
            async move {
                let _permit = g
                    .acquire()
                    .await
                    .map_err(|e| RpcError::application(e.to_string()))?;
                Ok::<_, RpcError>("done")
            }
        });
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]))
        .with_limits(Limits {
            max_message_size: 2048,
            ..Limits::default()
        })
        .with_server_limits(ServerLimits {
            max_inflight: 2,
            ..ServerLimits::default()
        });
    let server = start(settings, registry).await;
    let opts = ClientOptions::new(client_key, server.public_key()).with_limits(Limits {
        max_message_size: 2048,
        ..Limits::default()
    });
    let c = Client::connect(&server.url(), opts).await.unwrap();

    assert_eq!(
        rpc_code(c.call("nothing", "add", (1, 2)).await),
        ErrorCode::NoSuchObject
    );
    assert_eq!(
        rpc_code(c.call("calculator", "pow", (1, 2)).await),
        ErrorCode::NoSuchMethod
    );
    assert_eq!(
        rpc_code(c.call("calculator", "add", (1,)).await),
        ErrorCode::InvalidArguments
    );
    assert_eq!(
        rpc_code(c.call("calculator", "add", ("a", "b")).await),
        ErrorCode::InvalidArguments
    );
    assert_eq!(
        rpc_code(c.call("sigil", "ping", (1,)).await),
        ErrorCode::InvalidArguments
    );
    match c.call::<Value>("calculator", "div", (1, 0)).await {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::ApplicationError);
            assert!(e.message.contains("division by zero"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rpc_code(c.call("test", "big", ()).await),
        ErrorCode::TooLarge
    );
    // Two calls hold both slots; the third is busy; then both finish.
    let (c1, c2) = (c.clone(), c.clone());
    let w1 = tokio::spawn(async move { c1.call::<String>("test", "wait", ()).await });
    let w2 = tokio::spawn(async move { c2.call::<String>("test", "wait", ()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rpc_code(c.call("test", "wait", ()).await), ErrorCode::Busy);
    gate.add_permits(2);
    assert_eq!(w1.await.unwrap().unwrap(), "done");
    assert_eq!(w2.await.unwrap().unwrap(), "done");
    // The connection is still good after every error.
    assert_eq!(c.call::<i64>("calculator", "add", (2, 2)).await.unwrap(), 4);
    server.shutdown().await;
}

#[tokio::test]
async fn dotted_names_are_refused_before_sending() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let c = connect(&server, client_key).await;
    match c.call::<Value>("calculator.add", "x", ()).await {
        Err(ClientError::InvalidArguments(m)) => {
            assert!(m.contains("dotted names are not allowed"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unauthorised_client_is_refused_with_code_1() {
    let server = demo_server(&[key().public_key()]).await;
    let err = Client::connect(
        &server.url(),
        ClientOptions::new(key(), server.public_key()),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.refusal_code(), Some(1), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_pinned_server_key_is_refused_with_code_1() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let err = Client::connect(
        &server.url(),
        ClientOptions::new(client_key, key().public_key()),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.refusal_code(), Some(1), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn psk_prologue_payload_and_hook() {
    let client_key = key();
    let psk = SymmetricKey::from_bytes(&[7; 32]);
    let settings = ServerSettings::new(key(), ClientAuth::AllowAny)
        .with_psk(psk.clone())
        .with_prologue(b"app/1")
        .with_hook(|info| match info.payload {
            Some(p) if p.contains("letmein") => {
                HookDecision::Accept(Some(r#"{"welcome":true}"#.into()))
            }
            _ => HookDecision::Refuse("bad token".into()),
        });
    let server = start(settings, demo_registry()).await;
    let opts = || {
        ClientOptions::new(copy_key(&client_key), server.public_key())
            .with_psk(psk.clone())
            .with_prologue(b"app/1".to_vec())
    };
    let c = Client::connect(&server.url(), opts().with_payload(r#"{"token":"letmein"}"#))
        .await
        .unwrap();
    assert_eq!(c.server_payload(), Some(r#"{"welcome":true}"#));
    assert_eq!(c.call::<i64>("calculator", "add", (1, 1)).await.unwrap(), 2);
    match Client::connect(&server.url(), opts().with_payload(r#"{"token":"nope"}"#)).await {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!((code.as_u16(), reason.as_str()), (2, "bad token"));
        }
        other => panic!("{:?}", other.err()),
    }
    let no_psk = ClientOptions::new(copy_key(&client_key), server.public_key())
        .with_prologue(b"app/1".to_vec())
        .with_payload(r#"{"token":"letmein"}"#);
    let err = Client::connect(&server.url(), no_psk).await.err().unwrap();
    assert_eq!(err.refusal_code(), Some(1));
    server.shutdown().await;
}

#[tokio::test]
async fn oneway_calls_get_no_response() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let c = connect(&server, client_key).await;
    c.oneway("kv", "set", ("a", "1")).await.unwrap();
    // A oneway call that fails is silent too.
    c.oneway("calculator", "div", (1, 0)).await.unwrap();
    assert_eq!(c.call::<String>("kv", "get", ("a",)).await.unwrap(), "1");
    server.shutdown().await;
}

/// 100 concurrent clients × 100 calls, every answer checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_clients_hundred_calls_each() {
    let keys: Vec<_> = (0..100).map(|_| key()).collect();
    let publics: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
    // All from one address at once: more than the default 8 pending
    // connections per address.
    let settings =
        ServerSettings::new(key(), ClientAuth::Keys(publics)).with_server_limits(ServerLimits {
            max_pending_per_ip: 128,
            ..ServerLimits::default()
        });
    let server = start(settings, demo_registry()).await;
    let url = server.url();
    let pk = server.public_key();
    let mut tasks = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(&url, ClientOptions::new(k, pk))
                .await
                .unwrap();
            // Half the calls concurrently on one connection, half in sequence.
            let concurrent = (0..50i64).map(|j| {
                let c = c.clone();
                async move {
                    (
                        j,
                        c.call::<i64>("calculator", "add", (i as i64, j))
                            .await
                            .unwrap(),
                    )
                }
            });
            for (j, sum) in futures_util::future::join_all(concurrent).await {
                assert_eq!(sum, i as i64 + j);
            }
            for j in 50..100i64 {
                assert_eq!(
                    c.call::<i64>("calculator", "mul", (i as i64, j))
                        .await
                        .unwrap(),
                    i as i64 * j
                );
            }
            c.close().await;
        }));
    }
    let all = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(tasks),
    );
    for t in all.await.expect("10,000 calls within 2 minutes") {
        t.unwrap();
    }
    server.shutdown().await;
}

/// A handler that panics answers its own call with `internal_error`, saying
/// nothing of the panic; the connection and the server carry on.
#[tokio::test]
async fn a_panicking_handler_answers_internal_error() {
    let client_key = key();
    let mut registry = demo_registry();
    registry
        .object("broken")
        .method("sync", |_: NoArgs| -> Result<i64, RpcError> {
            panic!("secret detail")
        })
        .async_method("later", |_: NoArgs| async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("secret detail");
            }
            Ok::<i64, RpcError>(1)
        });
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]));
    let server = start(settings, registry).await;
    let c = connect(&server, client_key).await;
    for method in ["sync", "later", "sync"] {
        match c.call::<Value>("broken", method, ()).await {
            Err(ClientError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::InternalError, "{method}");
                assert_eq!(e.message, "internal error");
            }
            other => panic!("{method}: {other:?}"),
        }
        assert_eq!(c.call::<i64>("calculator", "add", (1, 1)).await.unwrap(), 2);
    }
    server.shutdown().await;
}

/// An asynchronous call past `call_timeout` is cancelled (its future is
/// dropped) and answered `timeout`; the connection carries on.
#[tokio::test]
async fn a_call_past_its_deadline_is_cancelled_and_answered_timeout() {
    let client_key = key();
    let dropped = Arc::new(tokio::sync::Notify::new());
    let registry = with_slow_object(&dropped);
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]))
        .with_server_limits(ServerLimits {
            call_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        });
    let server = start(settings, registry).await;
    let c = connect(&server, client_key).await;
    let notified = dropped.notified();
    assert_eq!(
        rpc_code(c.call("slow", "forever", ()).await),
        ErrorCode::Timeout
    );
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("the call's future was dropped");
    assert_eq!(c.call::<u64>("clock", "sleep", (10,)).await.unwrap(), 10);
    server.shutdown().await;
}

/// The demo objects and `slow.forever`, a call that never ends and
/// notifies `dropped` when its future is dropped.
fn with_slow_object(dropped: &Arc<tokio::sync::Notify>) -> sigil_server::Registry {
    let mut registry = demo_registry();
    let on_drop = dropped.clone();
    registry
        .object("slow")
        .async_method("forever", move |_: NoArgs| {
            let guard = NotifyOnDrop(on_drop.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<(), RpcError>(())
            }
        });
    registry
}

struct NotifyOnDrop(Arc<tokio::sync::Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// `{"cancel": ID}` stops a call in flight: its future is dropped and
/// nothing is ever sent for it; the connection carries on.
#[tokio::test]
async fn a_cancel_stops_the_call_and_nothing_is_sent_for_it() {
    let client_key = key();
    let dropped = Arc::new(tokio::sync::Notify::new());
    let registry = with_slow_object(&dropped);
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]));
    let server = start(settings, registry).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw = RawClient::open(&server.url()).await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let notified = dropped.notified();
    for payload in [
        &br#"{"id":7,"object":"slow","method":"forever","args":[]}"#[..],
        br#"{"cancel":7}"#,
    ] {
        let mut frame = Vec::new();
        session.seal(payload, &mut frame).unwrap();
        raw.send(frame).await;
    }
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("the cancelled call's future was dropped");
    // The next frame from the server answers the next call, not call 7.
    let reply = raw
        .call(
            &mut session,
            br#"{"id":8,"object":"sigil","method":"ping","args":[]}"#,
        )
        .await
        .unwrap();
    assert_eq!(reply, br#"{"id":8,"result":"pong"}"#);
    server.shutdown().await;
}

/// A call's own deadline: it fails with `timeout` at once and the server
/// stops it; dropping a call's future cancels it on the server too.
#[tokio::test]
async fn the_native_client_times_out_and_cancels_calls() {
    let client_key = key();
    let dropped = Arc::new(tokio::sync::Notify::new());
    let registry = with_slow_object(&dropped);
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]));
    let server = start(settings, registry).await;
    let c = connect(&server, client_key).await;

    let notified = dropped.notified();
    let started = std::time::Instant::now();
    let timed_out = c
        .call::<()>("slow", "forever", ())
        .timeout(Duration::from_millis(300))
        .await;
    assert_eq!(
        rpc_code(timed_out.map(|()| Value::Null)),
        ErrorCode::Timeout
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("the server stopped the timed-out call");

    let notified = dropped.notified();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        c.call::<()>("slow", "forever", ()).into_future(),
    )
    .await;
    assert!(gave_up.is_err(), "the call was still running");
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("dropping the call's future cancelled it on the server");
    assert_eq!(c.call::<i64>("calculator", "add", (2, 3)).await.unwrap(), 5);
    server.shutdown().await;
}

/// Handlers know who calls: the demo's `session.whoami`, and a method that
/// authorises by the caller's name (its authorized_keys comment).
#[tokio::test]
async fn handlers_see_the_call_context() {
    let (alice, bob) = (key(), key());
    let mut registry = demo_registry();
    registry.object("admin").method_with_context(
        "reset",
        |cx: &sigil_server::CallContext, _: NoArgs| match cx.client_name.as_deref() {
            Some("alice") => Ok("reset"),
            _ => Err(RpcError::application(format!(
                "{} may not reset",
                cx.fingerprint()
            ))),
        },
    );
    let settings = ServerSettings::new(
        key(),
        ClientAuth::Keys(vec![alice.public_key(), bob.public_key()]),
    )
    .with_client_names([(alice.public_key(), "alice".to_owned())]);
    let server = start(settings, registry).await;
    let alice_fp = alice.public_key().fingerprint();
    let bob_fp = bob.public_key().fingerprint();
    let a = connect(&server, alice).await;
    let b = connect(&server, bob).await;
    let me: Value = a.call("session", "whoami", ()).await.unwrap();
    assert_eq!(me["fingerprint"], alice_fp.as_str());
    assert_eq!(me["name"], "alice");
    assert!(me["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    let them: Value = b.call("session", "whoami", ()).await.unwrap();
    assert_eq!(them["fingerprint"], bob_fp.as_str());
    assert_eq!(them["name"], Value::Null);
    assert_eq!(
        a.call::<String>("admin", "reset", ()).await.unwrap(),
        "reset"
    );
    match b.call::<String>("admin", "reset", ()).await {
        Err(ClientError::Remote(e)) => assert!(e.message.contains(&bob_fp), "{e}"),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

/// Pyro's three instance modes: one instance for every session, one per
/// session (made at its first call, dropped when the session ends), and
/// one per call.
#[tokio::test]
async fn objects_with_state_single_per_session_and_per_call() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let client_key = key();
    let made = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(tokio::sync::Notify::new());

    /// A counter that notifies when it is dropped.
    struct Tally {
        count: AtomicU64,
        _dropped: NotifyOnDrop,
    }
    let mut registry = demo_registry();
    registry
        .object_with_state("shared", AtomicU64::new(0))
        .method(
            "next",
            |n: &AtomicU64, _: &sigil_server::CallContext, _: NoArgs| {
                Ok::<_, RpcError>(n.fetch_add(1, Ordering::Relaxed) + 1)
            },
        );
    let (made2, dropped2) = (made.clone(), dropped.clone());
    registry
        .object_per_session("mine", move |_: &sigil_server::CallContext| {
            made2.fetch_add(1, Ordering::Relaxed);
            Tally {
                count: AtomicU64::new(0),
                _dropped: NotifyOnDrop(dropped2.clone()),
            }
        })
        .method(
            "next",
            |t: &Tally, _: &sigil_server::CallContext, _: NoArgs| {
                Ok::<_, RpcError>(t.count.fetch_add(1, Ordering::Relaxed) + 1)
            },
        )
        .async_method(
            "later",
            |t: Arc<Tally>, _: Arc<sigil_server::CallContext>, _: NoArgs| async move {
                tokio::task::yield_now().await;
                Ok::<_, RpcError>(t.count.load(Ordering::Relaxed))
            },
        );
    registry
        .object_per_call("fresh", |cx: &sigil_server::CallContext| cx.fingerprint())
        .method(
            "fingerprint",
            |fp: &String, _: &sigil_server::CallContext, _: NoArgs| Ok::<_, RpcError>(fp.clone()),
        );
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]));
    let server = start(settings, registry).await;

    let one = connect(&server, copy_key(&client_key)).await;
    let two = connect(&server, copy_key(&client_key)).await;
    for (c, want) in [(&one, 1), (&one, 2), (&two, 1), (&one, 3)] {
        assert_eq!(c.call::<u64>("mine", "next", ()).await.unwrap(), want);
    }
    assert_eq!(one.call::<u64>("mine", "later", ()).await.unwrap(), 3);
    assert_eq!(made.load(Ordering::Relaxed), 2, "one instance per session");
    for want in 1..=3 {
        let c = if want % 2 == 0 { &two } else { &one };
        assert_eq!(c.call::<u64>("shared", "next", ()).await.unwrap(), want);
    }
    assert_eq!(
        one.call::<String>("fresh", "fingerprint", ())
            .await
            .unwrap(),
        client_key.public_key().fingerprint()
    );
    // The demo's per-session counter starts again in a new session.
    for want in [1, 2] {
        assert_eq!(one.call::<u64>("session", "count", ()).await.unwrap(), want);
    }
    assert_eq!(two.call::<u64>("session", "count", ()).await.unwrap(), 1);

    // Closing a session drops its instance.
    let notified = dropped.notified();
    one.close().await;
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("the closed session's instance was dropped");
    two.close().await;
    server.shutdown().await;
}
