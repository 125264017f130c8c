//! `Client`: one sigil/1 connection over a browser WebSocket (a fresh one
//! after a break, with `reconnect`).
//!
//! `link.rs` runs the sockets and handshakes; from then on every message
//! goes to sigil-core's `ClientConnection`, which numbers the calls,
//! matches responses, keeps deadlines and sends cancels. This file starts
//! calls, moves what the machine sealed to the socket (`pump`) and settles
//! promises; `stream.rs` hands streams' items to their iterators. Time is
//! the browser's clock (`Date.now()`); randomness is
//! `crypto.getRandomValues`.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, JSON, Promise};
use serde_json::value::RawValue;
use sigil_core::connection::{CallError, CallOptions, ClientConnection, ClientEvent, CloseReason};
use sigil_core::rpc::{ErrorCode, RpcError};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::AbortSignal;

use crate::error::{self, CONNECTION_CLOSED, PROTOCOL_ERROR};
use crate::events::State;
use crate::link::{self, End, Inner, Phase, now_ms};
use crate::options::{self, ConnectOptions};
use crate::stream::{Buffer, deliver};

/// A promise's two settling functions.
pub(crate) struct Settle {
    pub(crate) resolve: Function,
    pub(crate) reject: Function,
}

impl Settle {
    pub(crate) fn settle(&self, outcome: Result<JsValue, JsValue>) {
        let _ = match outcome {
            Ok(value) => self.resolve.call1(&JsValue::UNDEFINED, &value),
            Err(e) => self.reject.call1(&JsValue::UNDEFINED, &e),
        };
    }
}

/// A listener on an `AbortSignal`'s `abort` event, removed when dropped.
pub(crate) struct OnAbort {
    signal: AbortSignal,
    listener: Closure<dyn FnMut()>,
}

impl OnAbort {
    pub(crate) fn new(signal: AbortSignal, f: impl FnMut() + 'static) -> OnAbort {
        let listener = Closure::<dyn FnMut()>::new(f);
        let _ = signal.add_event_listener_with_callback("abort", listener.as_ref().unchecked_ref());
        OnAbort { signal, listener }
    }
}

impl Drop for OnAbort {
    fn drop(&mut self) {
        let _ = self
            .signal
            .remove_event_listener_with_callback("abort", self.listener.as_ref().unchecked_ref());
    }
}

/// A call or stream in flight.
pub(crate) enum Pending {
    /// A call: how to settle its promise, and the abort listener to remove
    /// when it is over.
    Call(Settle, Option<OnAbort>),
    /// A stream: what it has received.
    Stream(Rc<RefCell<Buffer>>),
}

impl Pending {
    /// Settles a call, or ends a stream, with `outcome`.
    pub(crate) fn settle(
        self,
        rc: &Rc<RefCell<Inner>>,
        id: u64,
        outcome: Result<JsValue, JsValue>,
    ) {
        match self {
            Pending::Call(settle, abort) => {
                drop(abort);
                settle.settle(outcome);
            }
            Pending::Stream(buffer) => {
                buffer.borrow_mut().finish(outcome.map(drop));
                deliver(&Rc::downgrade(rc), id, &buffer);
            }
        }
    }
}

/// The calls and streams in flight, by id. Ids grow within a session, so
/// pushing keeps the list sorted (a `HashMap` costs the module more).
#[derive(Default)]
pub(crate) struct InFlight(Vec<(u64, Pending)>);

impl InFlight {
    pub(crate) fn insert(&mut self, id: u64, p: Pending) {
        self.0.push((id, p));
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Pending> {
        let at = self.0.binary_search_by_key(&id, |e| e.0).ok()?;
        Some(&self.0[at].1)
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Pending> {
        let at = self.0.binary_search_by_key(&id, |e| e.0).ok()?;
        Some(self.0.remove(at).1)
    }

    /// Everything in flight, taken out.
    pub(crate) fn take(&mut self) -> Vec<(u64, Pending)> {
        std::mem::take(&mut self.0)
    }
}

/// A sigil/1 connection to one server: made by `Client.connect`, closed by
/// `close()` or by either side. Many calls may be in flight at once.
#[wasm_bindgen]
pub struct Client {
    pub(crate) inner: Rc<RefCell<Inner>>,
    closed: Promise,
}

#[wasm_bindgen]
impl Client {
    /// Opens a WebSocket to `url` (offering the subprotocols `sigil.v1.batch`
    /// and `sigil.v1`),
    /// runs the handshake with the pinned `serverKey`, and resolves to a
    /// connected client. Rejects with `SigilRefused` if the server refuses,
    /// or a `SigilConnectionError` (`connection_closed`, `timeout`,
    /// `handshake_failed`); bad options reject with `SigilUsageError`.
    /// With `reconnect`, a connection that breaks later is made again (see
    /// `ConnectOptions` in the TypeScript declarations).
    pub async fn connect(
        url: String,
        #[wasm_bindgen(unchecked_param_type = "ConnectOptions")] options: JsValue,
    ) -> Result<Client, JsValue> {
        let options = ConnectOptions::from_js(&options)?;
        let ws = link::open_socket(&url).map_err(|e| {
            error::usage(
                error::INVALID_OPTIONS,
                &format!(
                    "cannot open a WebSocket to \"{url}\": {}",
                    crate::agent::message(&e)
                ),
            )
        })?;
        let setup = match options.into_setup(url).await {
            Ok(setup) => setup,
            Err(e) => {
                let _ = ws.close();
                return Err(e);
            }
        };
        let mut on_closed = None;
        let closed = Promise::new(&mut |resolve, _reject| on_closed = Some(resolve));
        let mut connect = None;
        let done = Promise::new(&mut |resolve, reject| connect = Some(Settle { resolve, reject }));
        let (Some(connect), Some(on_closed)) = (connect, on_closed) else {
            return Err(JsValue::from_str("Promise executors run at once"));
        };
        let inner = Rc::new(RefCell::new(Inner::new(setup, connect, on_closed)));
        link::start(&inner, ws);
        JsFuture::from(done).await?;
        Ok(Client { inner, closed })
    }

    /// Calls `method` of `object` with `args` (an array of JSON values;
    /// `undefined` means none) and resolves to the method's result, or
    /// rejects with a `SigilRpcError` (the RPC error code: `timeout` past
    /// the call's deadline, `cancelled` when its `signal` aborts) or a
    /// `SigilConnectionError` (`connection_closed`, `protocol_error`).
    /// `options`: `{ timeoutMs?, signal? }`; the deadline defaults to the
    /// connection's `callTimeoutMs`. A call that times out or is cancelled
    /// is stopped on the server too.
    #[wasm_bindgen(unchecked_return_type = "Promise<any>")]
    pub fn call(
        &self,
        object: &str,
        method: &str,
        #[wasm_bindgen(unchecked_param_type = "unknown[]")] args: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "CallOptions")] options: JsValue,
    ) -> Promise {
        Promise::new(&mut |resolve, reject| {
            let settle = Settle { resolve, reject };
            if let Err(e) = self.start_call(object, method, &args, &options, settle) {
                // The promise was not registered: reject it here.
                e.0.settle(Err(e.1));
            }
        })
    }

    /// Sends a oneway call: no response, not even an error, comes back.
    /// Throws if the call cannot be sent (bad name or arguments, closed).
    pub fn oneway(
        &self,
        object: &str,
        method: &str,
        #[wasm_bindgen(unchecked_param_type = "unknown[]")] args: JsValue,
    ) -> Result<(), JsValue> {
        let args = args_json(&args)?;
        let options = CallOptions {
            timeout_ms: None,
            oneway: true,
        };
        self.with_conn(|conn| conn.call(now_ms(), object, method, &*args, options))
            .map(drop)
    }

    /// The session hash (hex, 64 characters): the same on both ends and
    /// unique to this session, for channel binding. A new session after a
    /// reconnect has a new hash.
    #[wasm_bindgen(getter, js_name = sessionHash)]
    pub fn session_hash(&self) -> String {
        self.inner.borrow().session_hash.clone()
    }

    /// The server's handshake payload (a JSON value), or `undefined`.
    #[wasm_bindgen(getter, js_name = serverPayload)]
    pub fn server_payload(&self) -> JsValue {
        self.inner.borrow().server_payload.clone()
    }

    /// Whether a session is up (calls go through).
    #[wasm_bindgen(getter, js_name = isOpen)]
    pub fn is_open(&self) -> bool {
        matches!(self.inner.borrow().phase, Phase::Open(_))
    }

    /// `"connecting"`, `"open"`, `"reconnecting"` or `"closed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "ClientState")]
    pub fn state(&self) -> String {
        self.inner.borrow().state.as_str().to_owned()
    }

    /// Resolves when the connection ends for good: to `undefined` after
    /// `close()`, or to the error that ended it (a `SigilConnectionError`;
    /// with `reconnect`, once the attempts are used up).
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<SigilError | undefined>")]
    pub fn closed(&self) -> Promise {
        self.closed.clone()
    }

    /// Closes the connection (and stops reconnecting). Calls still in
    /// flight reject with `connection_closed`. Closing twice does nothing.
    pub fn close(&self) {
        link::shut(&self.inner, End::ByClient);
    }
}

impl Client {
    /// Starts a call with the machine and registers its promise; on error
    /// gives the promise back with the error.
    fn start_call(
        &self,
        object: &str,
        method: &str,
        args: &JsValue,
        options: &JsValue,
        settle: Settle,
    ) -> Result<(), (Settle, JsValue)> {
        let started = args_json(args).and_then(|args| {
            let (timeout_ms, signal) = if options.is_undefined() {
                (None, None)
            } else {
                let (_, timeout_ms, signal) = call_options(options, "call")?;
                (timeout_ms, signal)
            };
            let options = CallOptions {
                timeout_ms,
                oneway: false,
            };
            let id = self.with_conn(|conn| conn.call(now_ms(), object, method, &*args, options))?;
            Ok((id, signal))
        });
        let (id, signal) = match started {
            Ok(started) => started,
            Err(e) => return Err((settle, e)),
        };
        let abort = signal.map(|signal| {
            let weak = Rc::downgrade(&self.inner);
            OnAbort::new(signal, move || {
                if let Some(rc) = weak.upgrade()
                    && let Some(p) = cancel(&rc, id)
                {
                    p.settle(&rc, id, Err(cancelled("call")));
                }
            })
        });
        self.inner
            .borrow_mut()
            .pending
            .insert(id, Pending::Call(settle, abort));
        Ok(())
    }

    /// Runs `f` on the open session's machine, then sends what it sealed
    /// and re-arms the deadline timer.
    pub(crate) fn with_conn(
        &self,
        f: impl FnOnce(&mut ClientConnection) -> Result<u64, CallError>,
    ) -> Result<u64, JsValue> {
        let id = {
            let mut s = self.inner.borrow_mut();
            let Phase::Open(conn) = &mut s.phase else {
                let why = match s.state {
                    State::Connecting | State::Reconnecting => {
                        "the connection is down (reconnecting): calls made now are not queued"
                    }
                    State::Open | State::Closed => "the connection is closed",
                };
                return Err(error::connection(CONNECTION_CLOSED, why));
            };
            f(conn).map_err(|e| match e {
                CallError::Invalid(e) => error::rpc(&e),
                CallError::Closed(reason) => error::connection(
                    CONNECTION_CLOSED,
                    &format!("the connection is closed ({reason})"),
                ),
            })?
        };
        pump(&self.inner);
        Ok(id)
    }
}

/// The options of a call or stream (`what`): an object (none is `{}`),
/// its `timeoutMs` and its `signal`; an aborted signal is refused with
/// `cancelled`.
pub(crate) fn call_options(
    options: &JsValue,
    what: &str,
) -> Result<(JsValue, Option<u64>, Option<AbortSignal>), JsValue> {
    let options = if options.is_undefined() || options.is_null() {
        js_sys::Object::new().into()
    } else {
        options.clone()
    };
    let timeout_ms = options::millis(&options, "timeoutMs")?.map(u64::from);
    let signal = js_sys::Reflect::get(&options, &JsValue::from_str("signal"))
        .ok()
        .and_then(|s| s.dyn_into::<AbortSignal>().ok());
    if signal.as_ref().is_some_and(AbortSignal::aborted) {
        return Err(cancelled(what));
    }
    Ok((options, timeout_ms, signal))
}

/// The `cancelled` error of a call or stream (`what`) whose signal aborted.
pub(crate) fn cancelled(what: &str) -> JsValue {
    error::rpc(&RpcError::new(
        ErrorCode::Cancelled,
        format!("the {what} was cancelled (its AbortSignal aborted)"),
    ))
}

/// Cancels call or stream `id` here and on the server; returns it if it
/// was in flight.
pub(crate) fn cancel(rc: &Rc<RefCell<Inner>>, id: u64) -> Option<Pending> {
    let pending = {
        let mut s = rc.borrow_mut();
        if let Phase::Open(conn) = &mut s.phase {
            conn.cancel(id);
        }
        s.pending.remove(id)
    };
    pump(rc);
    pending
}

/// Sends what the machine sealed, settles what it decided, and sets the
/// timer for its next deadline.
pub(crate) fn pump(rc: &Rc<RefCell<Inner>>) {
    let mut settled = Vec::new();
    let mut streams = Vec::new();
    let mut closed = None;
    {
        let mut guard = rc.borrow_mut();
        let s = &mut *guard;
        let Phase::Open(conn) = &mut s.phase else {
            return;
        };
        while let Some(event) = conn.poll_event() {
            match event {
                ClientEvent::Response { id, outcome } => {
                    if let Some(p) = s.pending.remove(id) {
                        let outcome = outcome.map(|result| parse(&result));
                        settled.push((id, p, outcome));
                    }
                }
                ClientEvent::Item { id, value } => {
                    if let Some(Pending::Stream(b)) = s.pending.get(id) {
                        b.borrow_mut().push(parse(&value));
                        streams.push((id, b.clone()));
                    }
                }
                ClientEvent::StreamEnd { id, outcome } => {
                    if let Some(p) = s.pending.remove(id) {
                        settled.push((id, p, outcome.map(|()| JsValue::UNDEFINED)));
                    }
                }
                ClientEvent::Close(reason) => closed = Some(reason),
            }
        }
        while let Some(frame) = conn.poll_transmit() {
            if !s.outbox.send(&s.ws, s.setup.on_trace.as_ref(), frame) {
                closed = Some(CloseReason::ConnectionLost);
                break;
            }
        }
        if let Some(at) = conn.poll_timeout() {
            s.arm(at);
        }
    }
    let weak = Rc::downgrade(rc);
    for (id, buffer) in streams {
        deliver(&weak, id, &buffer);
    }
    for (id, p, outcome) in settled {
        p.settle(rc, id, outcome.map_err(|e| error::rpc(&e)));
    }
    if let Some(reason) = closed {
        let end = match reason {
            CloseReason::BadFrame(_) | CloseReason::Protocol(_) => {
                End::Error(PROTOCOL_ERROR, reason.to_string())
            }
            other => End::Error(
                CONNECTION_CLOSED,
                format!("the connection closed ({other})"),
            ),
        };
        link::broken(rc, end);
    }
}

/// A JSON value from the server, as JavaScript.
fn parse(json: &RawValue) -> JsValue {
    JSON::parse(json.get()).unwrap_or(JsValue::UNDEFINED)
}

impl Drop for Client {
    fn drop(&mut self) {
        link::shut(&self.inner, End::ByClient);
    }
}

/// `args` as JSON text: `undefined` or `null` is `[]`.
pub(crate) fn args_json(args: &JsValue) -> Result<Box<RawValue>, JsValue> {
    let bad = |why: &str| {
        error::rpc(&RpcError::invalid_arguments(format!(
            "args must be an array of JSON values: {why}"
        )))
    };
    let text = if args.is_undefined() || args.is_null() {
        String::from("[]")
    } else {
        JSON::stringify(args)
            .map_err(|e| bad(&crate::agent::message(&e)))?
            .as_string()
            .ok_or_else(|| bad("not serializable"))?
    };
    RawValue::from_string(text).map_err(|e| bad(&e.to_string()))
}
