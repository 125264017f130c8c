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

use js_sys::{Array, Promise, Reflect};
use serde::Deserialize;
use sigil_wasm::{Client, derive_shared_key, fingerprint, generate_key_pair, public_key};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const SIGIL1: &str = include_str!("../../../tests/vectors/sigil1.json");

fn prop(v: &JsValue, name: &str) -> JsValue {
    Reflect::get(v, &name.into()).unwrap()
}

fn text(v: &JsValue, name: &str) -> String {
    prop(v, name).as_string().unwrap()
}

/// The `name` and `code` of a rejected promise's or thrown error.
fn name_and_code(err: &JsValue) -> (String, JsValue) {
    assert!(
        err.is_instance_of::<js_sys::Error>(),
        "not an Error: {err:?}"
    );
    (text(err, "name"), prop(err, "code"))
}

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

fn options(server_key: &str, secret: &str) -> JsValue {
    let o = js_sys::Object::new();
    Reflect::set(&o, &"serverKey".into(), &server_key.into()).unwrap();
    Reflect::set(&o, &"secretKey".into(), &secret.into()).unwrap();
    Reflect::set(&o, &"timeoutMs".into(), &JsValue::from(5000)).unwrap();
    o.into()
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

/// The demo server named at build time. Its absence fails the test (no
/// silent skip): `cargo xtask test` starts a server and sets both variables.
fn server() -> (&'static str, &'static str) {
    option_env!("SIGIL_TEST_URL")
        .zip(option_env!("SIGIL_TEST_SERVER_KEY"))
        .expect(
            "SIGIL_TEST_URL and SIGIL_TEST_SERVER_KEY were not set at build time: run the \
             browser tests through `cargo xtask test`, which starts a demo server",
        )
}

async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

fn args(values: &[JsValue]) -> JsValue {
    values.iter().collect::<Array>().into()
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

    let three = settle(client.call(
        "calculator",
        "add",
        args(&[1.into(), 2.into()]),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    assert_eq!(three.as_f64(), Some(3.0));

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
