//! What the browser test files share: reading JavaScript values, the
//! demo server named at build time, and small helpers for promises.

#![allow(dead_code)] // each test file uses its own part
#![allow(clippy::unwrap_used)] // tests panic on failure by design

use js_sys::{Array, Function, Promise, Reflect};
use sigil_wasm::Client;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

pub(crate) fn prop(v: &JsValue, name: &str) -> JsValue {
    Reflect::get(v, &name.into()).unwrap()
}

pub(crate) fn text(v: &JsValue, name: &str) -> String {
    prop(v, name).as_string().unwrap()
}

/// The `name` and `code` of a rejected promise's or thrown error.
pub(crate) fn name_and_code(err: &JsValue) -> (String, JsValue) {
    assert!(
        err.is_instance_of::<js_sys::Error>(),
        "not an Error: {err:?}"
    );
    (text(err, "name"), prop(err, "code"))
}

pub(crate) fn options(server_key: &str, secret: &str) -> JsValue {
    let o = js_sys::Object::new();
    Reflect::set(&o, &"serverKey".into(), &server_key.into()).unwrap();
    Reflect::set(&o, &"secretKey".into(), &secret.into()).unwrap();
    Reflect::set(&o, &"timeoutMs".into(), &JsValue::from(5000)).unwrap();
    o.into()
}

/// The demo server named at build time. Its absence fails the test (no
/// silent skip): `cargo xtask test` starts a server and sets both variables.
pub(crate) fn server() -> (&'static str, &'static str) {
    option_env!("SIGIL_TEST_URL")
        .zip(option_env!("SIGIL_TEST_SERVER_KEY"))
        .expect(
            "SIGIL_TEST_URL and SIGIL_TEST_SERVER_KEY were not set at build time: run the \
             browser tests through `cargo xtask test`, which starts a demo server",
        )
}

pub(crate) async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

pub(crate) fn args(values: &[JsValue]) -> JsValue {
    values.iter().collect::<Array>().into()
}

/// A JavaScript object from `(key, value)` pairs.
pub(crate) fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (key, value) in pairs {
        Reflect::set(&o, &(*key).into(), value).unwrap();
    }
    o.into()
}

/// Calls `obj[name]()`.
pub(crate) fn invoke(obj: &JsValue, name: &str) -> JsValue {
    prop(obj, name)
        .dyn_into::<Function>()
        .unwrap()
        .call0(obj)
        .unwrap()
}

/// Runs `body` as the body of an async JavaScript function of `s` (the
/// page of the tests has no CSP), and awaits what it returns; fails if that
/// takes more than 10 s (a stalled stream).
pub(crate) async fn run_js(body: &str, s: &JsValue) -> Result<JsValue, JsValue> {
    let f = Function::new_with_args(
        "s",
        &format!(
            "return Promise.race([(async () => {{ {body} }})(), new Promise((_, no) => \
             setTimeout(() => no(new Error('not done within 10 s')), 10000))]);"
        ),
    );
    settle(f.call1(&JsValue::UNDEFINED, s).unwrap().dyn_into().unwrap()).await
}

/// `calculator.add(1, 2)` on `client` gives 3.
pub(crate) async fn assert_adds(client: &Client) {
    let three = settle(client.call(
        "calculator",
        "add",
        args(&[1.into(), 2.into()]),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    assert_eq!(three.as_f64(), Some(3.0));
}
