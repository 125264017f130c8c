//! Identities (WebCrypto X25519 keys no script can read) and what a
//! client reports about itself (`onState`, `onTrace`), in a browser
//! against the demo server named at build time (see `browser.rs`).

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)] // tests panic on failure by design

mod support;

use js_sys::{Array, Function};
use sigil_wasm::{Client, Identity, fingerprint, generate_key_pair};
use support::{args, assert_adds, name_and_code, object, prop, run_js, server, settle, text};
use wasm_bindgen::convert::TryFromJsValue;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// `{ serverKey, identity, ...extra }`.
fn with_identity(server_key: &str, identity: &Identity, extra: &[(&str, JsValue)]) -> JsValue {
    let private = identity.private_key();
    let keys = object(&[
        ("privateKey", private.into()),
        ("publicKey", identity.public_key().into()),
    ]);
    let mut pairs = vec![("serverKey", JsValue::from(server_key)), ("identity", keys)];
    pairs.extend(extra.iter().cloned());
    object(&pairs)
}

/// `Identity.generate()`, awaited.
async fn generate() -> Identity {
    let identity = settle(Identity::generate()).await.unwrap();
    Identity::try_from_js_value(identity).unwrap()
}

async fn whoami(client: &Client) -> String {
    let who = settle(client.call("session", "whoami", args(&[]), JsValue::UNDEFINED))
        .await
        .unwrap();
    text(&who, "fingerprint")
}

/// A name no other test run uses.
fn fresh_name(what: &str) -> String {
    format!(
        "test-{what}-{}",
        &text(&generate_key_pair().unwrap(), "publicKey")[..10]
    )
}

#[wasm_bindgen_test]
async fn an_identitys_private_key_cannot_be_exported() {
    let me = generate().await;
    assert!(!me.private_key().extractable());
    assert_eq!(me.public_key().len(), 44);
    assert_eq!(me.fingerprint(), fingerprint(&me.public_key()).unwrap());
    // WebCrypto refuses every format for the private key.
    let export = "const out = []; for (const format of ['pkcs8', 'jwk', 'raw']) { \
                  try { await crypto.subtle.exportKey(format, s); out.push('exported ' + format); } \
                  catch (e) { out.push(e.name); } } return out;";
    let refused = run_js(export, &me.private_key()).await.unwrap();
    let refused: Vec<String> = Array::from(&refused)
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert!(
        refused.iter().all(|r| !r.starts_with("exported")),
        "{refused:?}"
    );
    // Two identities are two keys.
    let other = generate().await;
    assert_ne!(me.public_key(), other.public_key());
}

#[wasm_bindgen_test]
async fn identities_are_saved_loaded_and_deleted() {
    let name = fresh_name("saved");
    assert!(
        settle(Identity::load(name.clone()))
            .await
            .unwrap()
            .is_undefined()
    );
    let me = generate().await;
    settle(me.save(name.clone())).await.unwrap();
    let loaded = settle(Identity::load(name.clone())).await.unwrap();
    // The same key, still not extractable after a trip through IndexedDB.
    assert_eq!(text(&loaded, "publicKey"), me.public_key());
    assert_eq!(text(&loaded, "fingerprint"), me.fingerprint());
    let private = prop(&loaded, "privateKey");
    assert_eq!(prop(&private, "extractable").as_bool(), Some(false));
    // Saving again under the name replaces it.
    let next = generate().await;
    settle(next.save(name.clone())).await.unwrap();
    let loaded = settle(Identity::load(name.clone())).await.unwrap();
    assert_eq!(text(&loaded, "publicKey"), next.public_key());
    settle(Identity::remove(name.clone())).await.unwrap();
    assert!(settle(Identity::load(name)).await.unwrap().is_undefined());
}

#[wasm_bindgen_test]
async fn an_identity_connects_and_the_server_sees_its_key() {
    let (url, server_key) = server();
    let me = generate().await;
    let client = Client::connect(url.into(), with_identity(server_key, &me, &[]))
        .await
        .unwrap();
    assert_eq!(whoami(&client).await, me.fingerprint());
    assert_adds(&client).await;
    client.close();

    // The Identity object itself is an identity option too, also after a
    // round trip through IndexedDB.
    let name = fresh_name("connect");
    settle(me.save(name.clone())).await.unwrap();
    let loaded = settle(Identity::load(name.clone())).await.unwrap();
    let opts = object(&[("serverKey", server_key.into()), ("identity", loaded)]);
    let client = Client::connect(url.into(), opts).await.unwrap();
    assert_eq!(whoami(&client).await, me.fingerprint());
    client.close();
    settle(Identity::remove(name)).await.unwrap();
}

#[wasm_bindgen_test]
async fn fail_identity_options_are_usage_errors() {
    let (url, server_key) = server();
    let me = generate().await;
    let secret = text(&generate_key_pair().unwrap(), "secretKey");
    let both = with_identity(server_key, &me, &[("secretKey", secret.into())]);
    let neither = object(&[("serverKey", server_key.into())]);
    let not_one = object(&[("serverKey", server_key.into()), ("identity", 3.into())]);
    let low_order = with_identity("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", &me, &[]);
    for (opts, code) in [
        (both, "invalid_options"),
        (neither, "invalid_options"),
        (not_one, "invalid_options"),
        (low_order, "invalid_key"),
    ] {
        let err = match Client::connect(url.into(), opts).await {
            Ok(_) => panic!("connected"),
            Err(e) => e,
        };
        assert_eq!(
            name_and_code(&err),
            ("SigilUsageError".into(), JsValue::from(code))
        );
    }
    // A pinned key that is not the server's: refused like a text key.
    let wrong = text(&generate_key_pair().unwrap(), "publicKey");
    let err = match Client::connect(url.into(), with_identity(&wrong, &me, &[])).await {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    };
    assert_eq!(
        name_and_code(&err),
        ("SigilRefused".into(), JsValue::from(1))
    );
}

/// A function that pushes what it is called with onto `list`.
fn recorder(list: &Array) -> Function {
    let push = js_sys::Reflect::get(list, &"push".into()).unwrap();
    push.unchecked_into::<Function>().bind0(list)
}

/// Waits for the microtasks that carry the callbacks.
async fn tick() {
    let wait = "await new Promise((r) => setTimeout(r, 10));";
    run_js(wait, &JsValue::UNDEFINED).await.unwrap();
}

fn kinds(list: &Array) -> Vec<String> {
    list.iter().map(|e| text(&e, "kind")).collect()
}

#[wasm_bindgen_test]
async fn state_changes_and_the_protocol_trace_are_reported() {
    let (url, server_key) = server();
    let (states, trace) = (Array::new(), Array::new());
    let me = generate().await;
    let opts = with_identity(
        server_key,
        &me,
        &[
            ("onState", recorder(&states).into()),
            ("onTrace", recorder(&trace).into()),
        ],
    );
    let client = Client::connect(url.into(), opts).await.unwrap();
    assert_eq!(client.state(), "open");
    tick().await;
    let seen: Vec<String> = states.iter().map(|e| text(&e, "state")).collect();
    assert_eq!(seen, ["connecting", "open"]);
    assert_eq!(text(&states.get(1), "sessionHash"), client.session_hash());
    assert_eq!(kinds(&trace), ["connecting", "hello", "answer", "session"]);
    // Message 1 is 110 bytes and message 2 70 without payloads.
    assert_eq!(prop(&trace.get(1), "bytes").as_f64(), Some(110.0));
    assert_eq!(prop(&trace.get(2), "bytes").as_f64(), Some(70.0));

    for _ in 0..2 {
        settle(client.call("sigil", "ping", JsValue::UNDEFINED, JsValue::UNDEFINED))
            .await
            .unwrap();
    }
    client.close();
    tick().await;
    let frames: Vec<(String, f64)> = trace
        .iter()
        .filter(|e| text(e, "kind") == "frame")
        .map(|e| {
            let bytes = prop(&e, "bytes").as_f64().unwrap();
            assert!(bytes > 45.0, "a frame is 45 bytes and its payload");
            (text(&e, "dir"), prop(&e, "seq").as_f64().unwrap())
        })
        .collect();
    let expected = [("out", 0.0), ("in", 0.0), ("out", 1.0), ("in", 1.0)];
    let expected: Vec<(String, f64)> = expected.iter().map(|(d, s)| ((*d).into(), *s)).collect();
    assert_eq!(frames, expected);
    let last = trace.get(trace.length() - 1);
    assert_eq!(text(&last, "kind"), "close");
    assert_eq!(text(&last, "by"), "client");
    assert_eq!(prop(&last, "code").as_f64(), Some(1000.0));
    assert_eq!(client.state(), "closed");
    let last = states.get(states.length() - 1);
    assert_eq!(text(&last, "state"), "closed");
    assert!(prop(&last, "error").is_undefined());
}

#[wasm_bindgen_test]
async fn a_refusal_is_traced_with_its_code() {
    let (url, _) = server();
    let trace = Array::new();
    let me = generate().await;
    let wrong = text(&generate_key_pair().unwrap(), "publicKey");
    let opts = with_identity(&wrong, &me, &[("onTrace", recorder(&trace).into())]);
    assert!(Client::connect(url.into(), opts).await.is_err());
    tick().await;
    let refusal = trace
        .iter()
        .find(|e| text(e, "kind") == "refusal")
        .expect("a refusal in the trace");
    assert_eq!(prop(&refusal, "code").as_f64(), Some(1.0));
    assert_eq!(text(&refusal, "reason"), "handshake failed");
}
