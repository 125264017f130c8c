//! The sigil-wasm API in a browser: keys, errors, and — when a demo server
//! is named at build time — connections, calls and refusals.
//!
//! The connection tests need `sigil serve --demo` running; pass its `url:`
//! and `public key:` lines when building the tests:
//! `SIGIL_TEST_URL=ws://127.0.0.1:PORT/sigil SIGIL_TEST_SERVER_KEY=... cargo test ...`.
//! Without them those tests fail: `cargo xtask test` starts the server and
//! sets both.

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)] // tests panic on failure by design

mod support;

use js_sys::{Array, Function, Promise, Reflect};
use serde::Deserialize;
use sigil_wasm::{Client, derive_shared_key, fingerprint, generate_key_pair, public_key};
use support::{
    args, assert_adds, invoke, name_and_code, object, options, prop, run_js, server, settle, text,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const SIGIL1: &str = include_str!("../../../tests/vectors/sigil1.json");

#[wasm_bindgen_test]
fn key_pairs_are_fresh_and_consistent() {
    let a = generate_key_pair().unwrap();
    let b = generate_key_pair().unwrap();
    assert_ne!(text(&a, "secretKey"), text(&b, "secretKey"));
    assert_eq!(text(&a, "secretKey").len(), 44);
    assert_eq!(
        public_key(&text(&a, "secretKey")).unwrap(),
        text(&a, "publicKey")
    );
    let fp = fingerprint(&text(&a, "publicKey")).unwrap();
    assert!(fp.starts_with("SHA256:") && fp.len() == 50, "{fp}");
}

#[derive(Deserialize)]
struct Pairwise {
    context: Option<String>,
    alice_secret_b64: String,
    alice_public_b64: String,
    bob_secret_b64: String,
    bob_public_b64: String,
    key_b64: String,
}

#[derive(Deserialize)]
struct Vectors {
    pairwise: Vec<Pairwise>,
}

#[wasm_bindgen_test]
fn derive_shared_key_matches_the_vectors_from_both_sides() {
    let v: Vectors = serde_json::from_str(SIGIL1).unwrap();
    for case in &v.pairwise {
        let a = derive_shared_key(
            &case.alice_secret_b64,
            &case.bob_public_b64,
            case.context.clone(),
        )
        .unwrap();
        let b = derive_shared_key(
            &case.bob_secret_b64,
            &case.alice_public_b64,
            case.context.clone(),
        )
        .unwrap();
        assert_eq!(a, case.key_b64);
        assert_eq!(b, case.key_b64);
        assert_eq!(
            public_key(&case.alice_secret_b64).unwrap(),
            case.alice_public_b64
        );
    }
}

#[wasm_bindgen_test]
fn fail_bad_keys_are_usage_errors() {
    for bad in ["", "abc", "not a key at all, but 44 characters long!!!"] {
        let err = public_key(bad).unwrap_err();
        assert_eq!(
            name_and_code(&err),
            ("SigilUsageError".into(), JsValue::from("invalid_key"))
        );
        assert!(fingerprint(bad).is_err());
    }
    // A low-order peer key (all zero) is refused.
    let me = generate_key_pair().unwrap();
    let zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert!(derive_shared_key(&text(&me, "secretKey"), zero, None).is_err());
}

async fn connect_err(url: &str, options: JsValue) -> JsValue {
    match Client::connect(url.into(), options).await {
        Ok(_) => panic!("connected to {url}"),
        Err(e) => e,
    }
}

#[wasm_bindgen_test]
async fn fail_bad_options_are_usage_errors() {
    let me = generate_key_pair().unwrap();
    let secret = text(&me, "secretKey");
    let good_server = text(&generate_key_pair().unwrap(), "publicKey");
    let cases = [
        (JsValue::from(3), "invalid_options"),
        (options("nope", &secret), "invalid_key"),
        (options(&good_server, "nope"), "invalid_key"),
        (
            options("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", &secret),
            "invalid_key",
        ),
    ];
    for (opts, code) in cases {
        let err = connect_err("ws://127.0.0.1:9/sigil", opts).await;
        assert_eq!(
            name_and_code(&err),
            ("SigilUsageError".into(), JsValue::from(code))
        );
    }
    let err = connect_err("ftp://127.0.0.1/sigil", options(&good_server, &secret)).await;
    assert_eq!(name_and_code(&err).0, "SigilUsageError");
}

#[wasm_bindgen_test]
async fn fail_no_server_is_connection_closed() {
    let me = generate_key_pair().unwrap();
    let server = text(&generate_key_pair().unwrap(), "publicKey");
    // Port 9 (discard) is closed here: the WebSocket fails at once.
    let err = connect_err(
        "ws://127.0.0.1:9/sigil",
        options(&server, &text(&me, "secretKey")),
    )
    .await;
    assert_eq!(
        name_and_code(&err),
        (
            "SigilConnectionError".into(),
            JsValue::from("connection_closed")
        )
    );
}

#[wasm_bindgen_test]
async fn calls_errors_and_many_in_flight_against_the_demo_server() {
    let (url, server_key) = server();
    let me = generate_key_pair().unwrap();
    let client = Client::connect(url.into(), options(server_key, &text(&me, "secretKey")))
        .await
        .unwrap();
    assert_eq!(client.session_hash().len(), 64);
    assert!(client.is_open());

    assert_adds(&client).await;

    let err = settle(client.call(
        "calculator",
        "div",
        args(&[1.into(), 0.into()]),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        name_and_code(&err),
        ("SigilRpcError".into(), JsValue::from("application_error"))
    );
    assert!(text(&err, "message").contains("division by zero"));

    let err = settle(client.call("calculator", "pow", args(&[]), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(name_and_code(&err).1, JsValue::from("no_such_method"));

    // A dotted name is refused before anything is sent.
    let err = settle(client.call("os.path", "x", JsValue::UNDEFINED, JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(name_and_code(&err).1, JsValue::from("invalid_request"));

    // Fifty calls in flight at once on the one socket, answered by id.
    let calls: Vec<Promise> = (0..50)
        .map(|i| {
            client.call(
                "echo",
                "echo",
                args(&[JsValue::from(i)]),
                JsValue::UNDEFINED,
            )
        })
        .collect();
    let all = settle(Promise::all(&calls.into_iter().collect::<Array>()))
        .await
        .unwrap();
    let all = Array::from(&all);
    for i in 0..50u32 {
        assert_eq!(all.get(i).as_f64(), Some(f64::from(i)));
    }

    client
        .oneway("kv", "set", args(&["k".into(), "v".into()]))
        .unwrap();
    let v = settle(client.call("kv", "get", args(&["k".into()]), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(v.as_string().as_deref(), Some("v"));

    let pending = client.call("echo", "echo", args(&[1.into()]), JsValue::UNDEFINED);
    client.close();
    assert!(!client.is_open());
    let err = settle(pending).await.unwrap_err();
    assert_eq!(name_and_code(&err).1, JsValue::from("connection_closed"));
    assert!(settle(client.closed()).await.unwrap().is_undefined());
}

#[wasm_bindgen_test]
async fn fail_wrong_pinned_key_is_refused_with_code_1() {
    let (url, _) = server();
    let me = generate_key_pair().unwrap();
    let wrong = text(&generate_key_pair().unwrap(), "publicKey");
    let err = connect_err(url, options(&wrong, &text(&me, "secretKey"))).await;
    assert_eq!(
        name_and_code(&err),
        ("SigilRefused".into(), JsValue::from(1))
    );
    assert_eq!(text(&err, "reason"), "handshake failed");
}

#[wasm_bindgen_test]
async fn payload_is_sent_and_psk_or_prologue_mismatch_is_refused() {
    let (url, server_key) = server();
    let me = generate_key_pair().unwrap();
    let secret = text(&me, "secretKey");
    // A JSON payload goes through the demo server's (absent) hook.
    let opts = options(server_key, &secret);
    let payload = js_sys::JSON::parse(r#"{"hello":[1,2,3]}"#).unwrap();
    Reflect::set(&opts, &"payload".into(), &payload).unwrap();
    let client = Client::connect(url.into(), opts).await.unwrap();
    client.close();
    // The demo server has no psk and an empty prologue: either one differs.
    let psk = derive_shared_key(&secret, server_key, None).unwrap();
    for (name, value) in [("psk", JsValue::from(psk)), ("prologue", "app/2".into())] {
        let opts = options(server_key, &secret);
        Reflect::set(&opts, &name.into(), &value).unwrap();
        let err = connect_err(url, opts).await;
        assert_eq!(
            name_and_code(&err),
            ("SigilRefused".into(), JsValue::from(1)),
            "{name}"
        );
    }
}

/// `{ timeoutMs }` fails a slow call with `timeout`; `{ signal }` with
/// `cancelled` when the signal aborts; either way the connection goes on.
#[wasm_bindgen_test]
async fn call_deadlines_and_abort_signals() {
    let (url, server_key) = server();
    let me = generate_key_pair().unwrap();
    let client = Client::connect(url.into(), options(server_key, &text(&me, "secretKey")))
        .await
        .unwrap();
    let call_options = js_sys::Object::new();
    Reflect::set(&call_options, &"timeoutMs".into(), &JsValue::from(200)).unwrap();
    let err = settle(client.call(
        "clock",
        "sleep",
        args(&[JsValue::from(5000)]),
        call_options.into(),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        name_and_code(&err),
        ("SigilRpcError".into(), JsValue::from("timeout"))
    );

    let controller = web_sys::AbortController::new().unwrap();
    let call_options = js_sys::Object::new();
    Reflect::set(&call_options, &"signal".into(), &controller.signal()).unwrap();
    let pending = client.call(
        "clock",
        "sleep",
        args(&[JsValue::from(5000)]),
        call_options.into(),
    );
    controller.abort();
    let err = settle(pending).await.unwrap_err();
    assert_eq!(name_and_code(&err).1, JsValue::from("cancelled"));

    // An already aborted signal refuses the call before it is sent.
    let call_options = js_sys::Object::new();
    Reflect::set(&call_options, &"signal".into(), &controller.signal()).unwrap();
    let err = settle(client.call("sigil", "ping", JsValue::UNDEFINED, call_options.into()))
        .await
        .unwrap_err();
    assert_eq!(name_and_code(&err).1, JsValue::from("cancelled"));

    let pong = settle(client.call("sigil", "ping", JsValue::UNDEFINED, JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(pong.as_string().as_deref(), Some("pong"));
    client.close();
}

// ---------- streams ----------

/// `clock.ticker(n, interval_ms)` as a stream.
fn open_ticker(client: &Client, n: u32, interval_ms: u32, options: JsValue) -> JsValue {
    let n_and_interval = args(&[n.into(), interval_ms.into()]);
    client.stream("clock", "ticker", n_and_interval, options)
}

/// Takes a ticker's first tick (0), and returns the `next()` that waits
/// for its second.
async fn tick_then_wait(ticker: &JsValue) -> Promise {
    assert_eq!(next(ticker).await.unwrap().unwrap().as_f64(), Some(0.0));
    invoke(ticker, "next").dyn_into().unwrap()
}

/// The connection still answers a call.
async fn assert_answers(client: &Client) {
    let pong = settle(client.call("sigil", "ping", JsValue::UNDEFINED, JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(pong.as_string().as_deref(), Some("pong"));
}

async fn connect_demo() -> Client {
    let (url, server_key) = server();
    let me = generate_key_pair().unwrap();
    Client::connect(url.into(), options(server_key, &text(&me, "secretKey")))
        .await
        .unwrap()
}

/// `stream.next()`: `Ok(Some(value))`, `Ok(None)` once done, or its error.
async fn next(stream: &JsValue) -> Result<Option<JsValue>, JsValue> {
    let step = settle(invoke(stream, "next").dyn_into().unwrap()).await?;
    Ok((!prop(&step, "done").as_bool().unwrap()).then(|| prop(&step, "value")))
}

fn numbers(v: &JsValue) -> Vec<f64> {
    Array::from(v).iter().map(|x| x.as_f64().unwrap()).collect()
}

/// `for await` over `clock.ticker` gets 0..n−1 and ends, also when the window
/// is smaller than n (so credit must flow back as items are taken).
#[wasm_bindgen_test]
async fn streams_are_async_iterators() {
    let client = connect_demo().await;
    let ticker = open_ticker(&client, 5, 10, JsValue::UNDEFINED);
    // The iterator is its own async iterable.
    let itself = Reflect::get(&ticker, &js_sys::Symbol::async_iterator())
        .unwrap()
        .dyn_into::<Function>()
        .unwrap()
        .call0(&ticker)
        .unwrap();
    assert!(js_sys::Object::is(&itself, &ticker));
    let collect = "const out = []; for await (const t of s) out.push(t); return out;";
    let ticks = run_js(collect, &ticker).await.unwrap();
    assert_eq!(numbers(&ticks), [0.0, 1.0, 2.0, 3.0, 4.0]);
    // Done stays done.
    assert_eq!(next(&ticker).await.unwrap(), None);

    // A window of 2 for 40 ticks: the server may only go on because taking
    // items grants it credit.
    let small = object(&[("window", 2.into())]);
    let ticker = open_ticker(&client, 40, 10, small);
    let ticks = run_js(collect, &ticker).await.unwrap();
    assert_eq!(numbers(&ticks), (0..40).map(f64::from).collect::<Vec<_>>());

    // Two streams and a call at once on the one connection.
    let a = open_ticker(&client, 3, 10, JsValue::UNDEFINED);
    let b = open_ticker(&client, 3, 15, JsValue::UNDEFINED);
    let both = "const [a, b] = s; const out = [];\
                for await (const t of a) out.push(t); for await (const t of b) out.push(t); return out;";
    let pair: JsValue = [a, b].iter().collect::<Array>().into();
    let echo = client.call("echo", "echo", args(&["x".into()]), JsValue::UNDEFINED);
    let ticks = run_js(both, &pair).await.unwrap();
    assert_eq!(numbers(&ticks), [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    assert_eq!(
        settle(echo).await.unwrap().as_string().as_deref(),
        Some("x")
    );
    client.close();
}

/// `kv.watch` gives the key's value now, then each change, made by this
/// client or another.
#[wasm_bindgen_test]
async fn kv_watch_sees_changes_from_any_client() {
    let key = format!(
        "watch-{}",
        &text(&generate_key_pair().unwrap(), "publicKey")[..8]
    );
    let (a, b) = (connect_demo().await, connect_demo().await);
    let set = |c: &Client, v: &str| {
        c.call(
            "kv",
            "set",
            args(&[key.as_str().into(), v.into()]),
            JsValue::UNDEFINED,
        )
    };
    settle(set(&a, "first")).await.unwrap();
    let watch = a.stream(
        "kv",
        "watch",
        args(&[key.as_str().into()]),
        JsValue::UNDEFINED,
    );
    assert_eq!(
        next(&watch).await.unwrap().unwrap().as_string().as_deref(),
        Some("first")
    );
    // A `next()` waiting when the change comes.
    let waiting = invoke(&watch, "next").dyn_into::<Promise>().unwrap();
    settle(set(&b, "second")).await.unwrap();
    let step = settle(waiting).await.unwrap();
    assert_eq!(prop(&step, "value").as_string().as_deref(), Some("second"));
    settle(set(&a, "third")).await.unwrap();
    settle(b.call(
        "kv",
        "delete",
        args(&[key.as_str().into()]),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    assert_eq!(
        next(&watch).await.unwrap().unwrap().as_string().as_deref(),
        Some("third")
    );
    assert!(next(&watch).await.unwrap().unwrap().is_null());
    // return() ends it: done from then on.
    let step = settle(invoke(&watch, "return").dyn_into().unwrap())
        .await
        .unwrap();
    assert_eq!(prop(&step, "done").as_bool(), Some(true));
    assert_eq!(next(&watch).await.unwrap(), None);
    a.close();
    b.close();
}

/// `break` out of `for await` cancels the stream on the server: the
/// connection goes on, and the server's slots for streams (16 by default)
/// are given back, else the 17th stream would be refused with `busy`.
#[wasm_bindgen_test]
async fn breaking_out_cancels_the_stream() {
    let client = connect_demo().await;
    let first_three = "const out = []; for await (const t of s) { out.push(t); if (out.length === 3) break; } return out;";
    for _ in 0..20 {
        let ticker = open_ticker(&client, 10_000, 10, JsValue::UNDEFINED);
        let ticks = run_js(first_three, &ticker).await.unwrap();
        assert_eq!(numbers(&ticks), [0.0, 1.0, 2.0]);
        assert_eq!(next(&ticker).await.unwrap(), None);
    }
    assert_answers(&client).await;
    client.close();
}

/// An `AbortSignal` cancels a stream with `cancelled`: a `next()` waiting,
/// or the next one; an aborted signal refuses the stream at once.
#[wasm_bindgen_test]
async fn abort_signals_cancel_streams() {
    let client = connect_demo().await;
    let controller = web_sys::AbortController::new().unwrap();
    let with_signal = || object(&[("signal", controller.signal().into())]);
    let ticker = open_ticker(&client, 3, 5000, with_signal());
    // The next tick is 5 s away: abort while `next()` waits.
    let waiting = tick_then_wait(&ticker).await;
    controller.abort();
    let err = settle(waiting).await.unwrap_err();
    assert_eq!(
        name_and_code(&err),
        ("SigilRpcError".into(), JsValue::from("cancelled"))
    );
    assert_eq!(next(&ticker).await.unwrap(), None);

    let refused = open_ticker(&client, 3, 10, with_signal());
    let err = next(&refused).await.unwrap_err();
    assert_eq!(name_and_code(&err).1, JsValue::from("cancelled"));

    // Aborting between items: the rest is dropped, the next `next()` rejects.
    let controller = web_sys::AbortController::new().unwrap();
    let opts = object(&[("signal", controller.signal().into())]);
    let ticker = open_ticker(&client, 100, 10, opts);
    assert_eq!(next(&ticker).await.unwrap().unwrap().as_f64(), Some(0.0));
    controller.abort();
    let err = next(&ticker).await.unwrap_err();
    assert_eq!(name_and_code(&err).1, JsValue::from("cancelled"));
    assert_answers(&client).await;
    client.close();
}

/// Errors reject `next()` with the codes calls use: at open (from the
/// server, or found before sending), mid-stream (an idle timeout), and
/// when the connection closes.
#[wasm_bindgen_test]
async fn fail_stream_errors_reject_next() {
    let client = connect_demo().await;
    let cases = [
        (
            "clock",
            "ticker",
            args(&[10_001.into(), 10.into()]),
            "invalid_arguments",
        ),
        (
            "calculator",
            "add",
            args(&[1.into(), 2.into()]),
            "invalid_request",
        ),
        ("clock", "nope", args(&[]), "no_such_method"),
        ("os.path", "x", args(&[]), "invalid_request"),
    ];
    for (object_name, method, call_args, code) in cases {
        let s = client.stream(object_name, method, call_args, JsValue::UNDEFINED);
        let err = next(&s).await.unwrap_err();
        assert_eq!(
            name_and_code(&err),
            ("SigilRpcError".into(), JsValue::from(code)),
            "{object_name}.{method}"
        );
        // After its error, the stream is done.
        assert_eq!(next(&s).await.unwrap(), None);
    }
    // A window out of range is a usage error.
    let s = open_ticker(&client, 1, 10, object(&[("window", 0.into())]));
    let err = next(&s).await.unwrap_err();
    assert_eq!(
        name_and_code(&err),
        ("SigilUsageError".into(), JsValue::from("invalid_options"))
    );

    // Mid-stream: the first tick comes, the second is later than the idle timeout.
    let s = open_ticker(&client, 3, 5000, object(&[("idleTimeoutMs", 200.into())]));
    assert_eq!(next(&s).await.unwrap().unwrap().as_f64(), Some(0.0));
    let err = next(&s).await.unwrap_err();
    assert_eq!(
        name_and_code(&err),
        ("SigilRpcError".into(), JsValue::from("timeout"))
    );

    // The connection closes under an open stream.
    let waiting = tick_then_wait(&open_ticker(&client, 3, 5000, JsValue::UNDEFINED)).await;
    client.close();
    let err = settle(waiting).await.unwrap_err();
    assert_eq!(
        name_and_code(&err),
        (
            "SigilConnectionError".into(),
            JsValue::from("connection_closed")
        )
    );
    let err = next(&open_ticker(&client, 1, 10, JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(name_and_code(&err).1, JsValue::from("connection_closed"));
}
