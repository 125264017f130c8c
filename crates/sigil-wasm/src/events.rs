//! What a client tells the page about itself: its state changes
//! (`onState`) and a trace of the protocol at work (`onTrace`: handshake
//! messages, every frame with its sequence number and size, refusals and
//! closes with their codes).
//!
//! Both callbacks run later, as microtasks, never inside the client's own
//! code: a callback may call the client, and an exception it throws (an
//! unhandled rejection in the console) does not disturb the connection.
//! Nothing is built for a callback that is not set.

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// A promise, for `then` with any function.
    type Resolved;
    #[wasm_bindgen(js_namespace = Promise, js_name = resolve)]
    fn resolved(value: &JsValue) -> Resolved;
    #[wasm_bindgen(method)]
    fn then(this: &Resolved, f: &Function) -> JsValue;
}

/// Where a client is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Opening a socket and running the handshake.
    Connecting,
    /// The session is up: calls go through.
    Open,
    /// The connection broke; the next attempt waits for its backoff.
    Reconnecting,
    /// Closed for good.
    Closed,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Open => "open",
            State::Reconnecting => "reconnecting",
            State::Closed => "closed",
        }
    }
}

/// A plain object from `(key, value)` pairs.
pub(crate) fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (key, value) in pairs {
        // Setting a property on a fresh object cannot fail.
        let _ = Reflect::set(&o, &JsValue::from_str(key), value);
    }
    o.into()
}

/// Calls `f(event)` as a microtask.
pub(crate) fn later(f: &Function, event: &JsValue) {
    resolved(event).then(f);
}

/// Tells `on_state` about `state`, with `extra` fields (`attempt`,
/// `delayMs`, `error`).
pub(crate) fn state(on_state: Option<&Function>, state: State, extra: &[(&str, JsValue)]) {
    if let Some(f) = on_state {
        let mut pairs = vec![("state", JsValue::from_str(state.as_str()))];
        pairs.extend(extra.iter().cloned());
        later(f, &object(&pairs));
    }
}

/// Adds `{ kind, ...fields }` to the trace.
pub(crate) fn trace(on_trace: Option<&Function>, kind: &str, fields: &[(&str, JsValue)]) {
    if let Some(f) = on_trace {
        let mut pairs = vec![("kind", JsValue::from_str(kind))];
        pairs.extend(fields.iter().cloned());
        later(f, &object(&pairs));
    }
}

/// Adds a transport frame to the trace: `{ kind: "frame", dir, seq, bytes }`
/// (the sequence number is in the frame's clear header).
pub(crate) fn frame(on_trace: Option<&Function>, dir: &str, frame: &[u8]) {
    if on_trace.is_none() {
        return;
    }
    let seq = frame
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(JsValue::UNDEFINED, |b| {
            JsValue::from(u64::from_be_bytes(b) as f64)
        });
    trace(
        on_trace,
        "frame",
        &[
            ("dir", JsValue::from_str(dir)),
            ("seq", seq),
            ("bytes", JsValue::from(frame.len() as u32)),
        ],
    );
}
