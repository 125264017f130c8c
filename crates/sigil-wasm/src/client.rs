//! `Client`: one sigil/1 connection over a browser WebSocket.
//!
//! The socket's event handlers drive the core's state machines: `open`
//! sends message 1, the first message finishes the handshake, and from then
//! on every message goes to sigil-core's `ClientConnection`, which numbers
//! the calls, matches responses, keeps deadlines and sends cancels. This
//! file only moves bytes, settles promises and keeps one timer for the
//! machine's next deadline; `stream.rs` hands streams' items to their
//! iterators. Time is the browser's clock (`Date.now()`); randomness is
//! `crypto.getRandomValues`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{ArrayBuffer, Function, JSON, Promise, Uint8Array};
use serde_json::value::RawValue;
use sigil_core::OsRandom;
use sigil_core::connection::{
    CallError, CallOptions, ClientConnection, ClientEvent, CloseReason, SessionLimits,
};
use sigil_core::handshake::{ClientHandshake, HandshakeError, Refusal};
use sigil_core::rpc::{ErrorCode, RpcError};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::error::{self, CONNECTION_CLOSED, HANDSHAKE_FAILED, PROTOCOL_ERROR, TIMEOUT};
use crate::options::{self, ConnectOptions};
use crate::stream::{Buffer, deliver};

/// The WebSocket subprotocol of sigil/1.
const SUBPROTOCOL: &str = "sigil.v1";
/// WebSocket close codes a script may send: normal, and a private-use code
/// for a protocol error (1002 is reserved to the browser).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL_ERROR: u16 = 4002;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: u32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// A promise's two settling functions.
pub(crate) struct Settle {
    pub(crate) resolve: Function,
    pub(crate) reject: Function,
}

impl Settle {
    fn resolve(&self, value: &JsValue) {
        let _ = self.resolve.call1(&JsValue::UNDEFINED, value);
    }
    fn reject(&self, value: &JsValue) {
        let _ = self.reject.call1(&JsValue::UNDEFINED, value);
    }
    pub(crate) fn settle(&self, outcome: Result<JsValue, JsValue>) {
        match outcome {
            Ok(value) => self.resolve(&value),
            Err(e) => self.reject(&e),
        }
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

pub(crate) enum Phase {
    /// Waiting for the socket to open.
    Opening(ConnectOptions),
    /// Message 1 sent, waiting for message 2 or a refusal.
    Handshaking(ClientHandshake, u32),
    /// The session, and its RPC rules.
    Open(Box<ClientConnection>),
    /// Ended (also while a handler moves the state out).
    Ended,
}

/// The socket's event handlers, kept alive as long as the socket is live.
struct Handlers {
    _open: Closure<dyn FnMut()>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
    _timeout: Closure<dyn FnMut()>,
}

pub(crate) struct Inner {
    ws: WebSocket,
    pub(crate) phase: Phase,
    ended: bool,
    timeout_ms: u32,
    /// The largest frame payload either way.
    max_message_size: u32,
    connect: Option<Settle>,
    /// Calls in flight and streams open in the machine, by id.
    pub(crate) pending: HashMap<u64, Pending>,
    session_hash: String,
    server_payload: JsValue,
    /// The handshake timer, then the timer for the machine's next deadline.
    timer: Option<JsValue>,
    /// The deadline the call timer is set for (re-armed only when it moves).
    timer_at: Option<u64>,
    handlers: Option<Handlers>,
    on_closed: Option<Function>,
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
    fn settle(self, rc: &Rc<RefCell<Inner>>, id: u64, outcome: Result<JsValue, JsValue>) {
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

/// Why a connection ended.
enum End {
    /// `close()` was called.
    ByClient,
    /// The server refused the handshake.
    Refused(Refusal),
    /// A connection error: code and message.
    Error(&'static str, String),
}

impl End {
    fn to_js(&self) -> JsValue {
        match self {
            End::ByClient => {
                error::connection(CONNECTION_CLOSED, "the connection was closed by the client")
            }
            End::Refused(r) => error::refused(r),
            End::Error(code, message) => error::connection(code, message),
        }
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
    /// Opens a WebSocket to `url` (offering the `sigil.v1` subprotocol),
    /// runs the handshake with the pinned `serverKey`, and resolves to a
    /// connected client. Rejects with `SigilRefused` if the server refuses,
    /// or a `SigilConnectionError` (`connection_closed`, `timeout`,
    /// `handshake_failed`); bad options reject with `SigilUsageError`.
    pub async fn connect(
        url: String,
        #[wasm_bindgen(unchecked_param_type = "ConnectOptions")] options: JsValue,
    ) -> Result<Client, JsValue> {
        let options = ConnectOptions::from_js(&options)?;
        let ws = WebSocket::new_with_str(&url, SUBPROTOCOL).map_err(|e| {
            let detail = e
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
                .unwrap_or_default();
            error::usage(
                error::INVALID_OPTIONS,
                &format!("cannot open a WebSocket to {url:?}: {detail}"),
            )
        })?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let inner = Rc::new(RefCell::new(Inner {
            ws,
            timeout_ms: options.timeout_ms,
            max_message_size: options.config.limits().max_message_size,
            phase: Phase::Opening(options),
            ended: false,
            connect: None,
            pending: HashMap::new(),
            session_hash: String::new(),
            server_payload: JsValue::UNDEFINED,
            timer: None,
            timer_at: None,
            handlers: None,
            on_closed: None,
        }));
        let closed = Promise::new(&mut |resolve, _reject| {
            inner.borrow_mut().on_closed = Some(resolve);
        });
        let done = Promise::new(&mut |resolve, reject| {
            inner.borrow_mut().connect = Some(Settle { resolve, reject });
        });
        install(&inner);
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
            // On error `start_call` has rejected the promise already.
            let _ = self.start_call(object, method, &args, &options, Settle { resolve, reject });
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
        self.with_conn(|conn| {
            conn.call(js_sys::Date::now() as u64, object, method, &*args, options)
        })
        .map(|_| ())
    }

    /// The session hash (hex, 64 characters): the same on both ends and
    /// unique to this session, for channel binding.
    #[wasm_bindgen(getter, js_name = sessionHash)]
    pub fn session_hash(&self) -> String {
        self.inner.borrow().session_hash.clone()
    }

    /// The server's handshake payload (a JSON value), or `undefined`.
    #[wasm_bindgen(getter, js_name = serverPayload)]
    pub fn server_payload(&self) -> JsValue {
        self.inner.borrow().server_payload.clone()
    }

    /// Whether the connection is still open.
    #[wasm_bindgen(getter, js_name = isOpen)]
    pub fn is_open(&self) -> bool {
        !self.inner.borrow().ended
    }

    /// Resolves when the connection ends: to `undefined` after `close()`, or
    /// to the error that ended it (a `SigilConnectionError`).
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<SigilError | undefined>")]
    pub fn closed(&self) -> Promise {
        self.closed.clone()
    }

    /// Closes the connection. Calls still in flight reject with
    /// `connection_closed`. Closing twice does nothing.
    pub fn close(&self) {
        shut(&self.inner, End::ByClient);
    }
}

impl Client {
    /// Starts a call with the machine, or rejects at once.
    fn start_call(
        &self,
        object: &str,
        method: &str,
        args: &JsValue,
        options: &JsValue,
        settle: Settle,
    ) -> Result<(), JsValue> {
        let started = args_json(args).and_then(|args| {
            let (_, timeout_ms, signal) = call_options(options, "call")?;
            let options = CallOptions {
                timeout_ms,
                oneway: false,
            };
            let id = self.with_conn(|conn| {
                conn.call(js_sys::Date::now() as u64, object, method, &*args, options)
            })?;
            Ok((id, signal))
        });
        let (id, signal) = match started {
            Ok(started) => started,
            Err(e) => {
                settle.reject(&e);
                return Err(e);
            }
        };
        let weak = Rc::downgrade(&self.inner);
        let abort = signal.map(|signal| {
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
                return Err(error::connection(
                    CONNECTION_CLOSED,
                    "the connection is closed",
                ));
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
        s.pending.remove(&id)
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
                    if let Some(p) = s.pending.remove(&id) {
                        let outcome = outcome
                            .map(|result| JSON::parse(result.get()).unwrap_or(JsValue::UNDEFINED));
                        settled.push((id, p, outcome));
                    }
                }
                ClientEvent::Item { id, value } => {
                    if let Some(Pending::Stream(b)) = s.pending.get(&id) {
                        b.borrow_mut()
                            .push(JSON::parse(value.get()).unwrap_or(JsValue::UNDEFINED));
                        streams.push((id, b.clone()));
                    }
                }
                ClientEvent::StreamEnd { id, outcome } => {
                    if let Some(p) = s.pending.remove(&id) {
                        settled.push((id, p, outcome.map(|()| JsValue::UNDEFINED)));
                    }
                }
                ClientEvent::Close(reason) => closed = Some(reason),
            }
        }
        while let Some(frame) = conn.poll_transmit() {
            if s.ws.send_with_u8_array(&frame).is_err() {
                closed = Some(CloseReason::ConnectionLost);
                break;
            }
        }
        let next = conn.poll_timeout();
        if next != s.timer_at {
            if let Some(timer) = s.timer.take() {
                clear_timeout(&timer);
            }
            s.timer_at = None;
        }
        if let (None, Some(at), Some(handlers)) = (&s.timer, next, &s.handlers) {
            s.timer_at = Some(at);
            let wait = at.saturating_sub(js_sys::Date::now() as u64);
            let wait = u32::try_from(wait)
                .unwrap_or(i32::MAX as u32)
                .min(i32::MAX as u32);
            s.timer = Some(set_timeout(
                handlers._timeout.as_ref().unchecked_ref(),
                wait,
            ));
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
        shut(rc, end);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        shut(&self.inner, End::ByClient);
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
            .map_err(|e| {
                bad(&e
                    .dyn_ref::<js_sys::Error>()
                    .map(|e| String::from(e.message()))
                    .unwrap_or_default())
            })?
            .as_string()
            .ok_or_else(|| bad("not serializable"))?
    };
    RawValue::from_string(text).map_err(|e| bad(&e.to_string()))
}

/// Sets the socket's handlers and the handshake timer.
fn install(rc: &Rc<RefCell<Inner>>) {
    let weak = Rc::downgrade(rc);
    let with = move |f: fn(&Rc<RefCell<Inner>>)| {
        let weak = weak.clone();
        move || {
            if let Some(rc) = weak.upgrade() {
                f(&rc);
            }
        }
    };
    let open = Closure::<dyn FnMut()>::new(with(on_open));
    let timeout = Closure::<dyn FnMut()>::new(with(on_timeout));
    let weak = Rc::downgrade(rc);
    let message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
        if let Some(rc) = weak.upgrade() {
            on_message(&rc, &ev.data());
        }
    });
    let weak = Rc::downgrade(rc);
    let close = Closure::<dyn FnMut(CloseEvent)>::new(move |ev: CloseEvent| {
        if let Some(rc) = weak.upgrade() {
            on_close(&rc, &ev);
        }
    });
    let mut s = rc.borrow_mut();
    s.ws.set_onopen(Some(open.as_ref().unchecked_ref()));
    s.ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
    s.ws.set_onclose(Some(close.as_ref().unchecked_ref()));
    s.timer = Some(set_timeout(timeout.as_ref().unchecked_ref(), s.timeout_ms));
    s.handlers = Some(Handlers {
        _open: open,
        _message: message,
        _close: close,
        _timeout: timeout,
    });
}

/// The socket is open: check the subprotocol and send message 1.
fn on_open(rc: &Rc<RefCell<Inner>>) {
    let mut s = rc.borrow_mut();
    let Phase::Opening(options) = std::mem::replace(&mut s.phase, Phase::Ended) else {
        return;
    };
    if s.ws.protocol() != SUBPROTOCOL {
        drop(s);
        return shut(
            rc,
            End::Error(
                HANDSHAKE_FAILED,
                "the server did not select the sigil.v1 WebSocket subprotocol: it does not speak sigil/1"
                    .into(),
            ),
        );
    }
    let now_ms = js_sys::Date::now() as u64;
    let started = ClientHandshake::start(
        &options.config,
        &mut OsRandom,
        now_ms,
        options.payload.as_deref(),
    );
    match started {
        Ok((handshake, hello)) if s.ws.send_with_u8_array(&hello).is_ok() => {
            s.phase = Phase::Handshaking(handshake, options.call_timeout_ms);
        }
        Ok(_) => {
            drop(s);
            shut(rc, closed_early());
        }
        Err(e) => {
            drop(s);
            shut(rc, End::Error(HANDSHAKE_FAILED, e.to_string()));
        }
    }
}

fn closed_early() -> End {
    End::Error(
        CONNECTION_CLOSED,
        "the connection closed before the handshake completed".into(),
    )
}

/// One WebSocket message: message 2 (or a refusal), then frames.
fn on_message(rc: &Rc<RefCell<Inner>>, data: &JsValue) {
    let Some(buffer) = data.dyn_ref::<ArrayBuffer>() else {
        return shut(
            rc,
            End::Error(
                PROTOCOL_ERROR,
                "the server sent a text WebSocket message".into(),
            ),
        );
    };
    let bytes = Uint8Array::new(buffer).to_vec();
    let mut s = rc.borrow_mut();
    match std::mem::replace(&mut s.phase, Phase::Ended) {
        Phase::Handshaking(handshake, call_timeout_ms) => match handshake.finish(&bytes) {
            Ok((session, payload)) => {
                s.session_hash = hex(session.session_hash());
                s.server_payload = payload
                    .and_then(|p| JSON::parse(&p).ok())
                    .unwrap_or(JsValue::UNDEFINED);
                let limits = SessionLimits {
                    max_message_size: s.max_message_size,
                    // The server's to enforce (it answers `busy`).
                    max_inflight: usize::MAX,
                    max_streams: usize::MAX,
                    stream_window: sigil_core::connection::SessionLimits::default().stream_window,
                    call_timeout_ms: u64::from(call_timeout_ms),
                    idle_timeout_ms: None,
                    // The server pings; the client answers.
                    ping_interval_ms: None,
                };
                s.phase = Phase::Open(Box::new(ClientConnection::new(session, limits)));
                let timer = s.timer.take();
                let connect = s.connect.take();
                drop(s);
                if let Some(timer) = timer {
                    clear_timeout(&timer);
                }
                if let Some(connect) = connect {
                    connect.resolve(&JsValue::UNDEFINED);
                }
            }
            Err(HandshakeError::Refused(refusal)) => {
                drop(s);
                shut(rc, End::Refused(refusal));
            }
            Err(_) => {
                drop(s);
                shut(
                    rc,
                    End::Error(
                        HANDSHAKE_FAILED,
                        "the server's answer did not authenticate: it does not hold the pinned server key, or the psk or prologue differ"
                            .into(),
                    ),
                );
            }
        },
        Phase::Open(mut conn) => {
            // A failure is also a close event of the machine: `pump` ends
            // the connection.
            let _ = conn.handle_frame(js_sys::Date::now() as u64, &bytes);
            s.phase = Phase::Open(conn);
            drop(s);
            pump(rc);
        }
        other => s.phase = other,
    }
}

fn on_close(rc: &Rc<RefCell<Inner>>, ev: &CloseEvent) {
    let end = match rc.borrow().phase {
        Phase::Opening(_) => End::Error(
            CONNECTION_CLOSED,
            format!(
                "cannot connect to {}: no server there, or it refused the WebSocket upgrade",
                rc.borrow().ws.url()
            ),
        ),
        Phase::Handshaking(..) => closed_early(),
        _ => {
            let reason = ev.reason();
            let code = ev.code();
            let detail = if reason.is_empty() {
                format!("WebSocket close code {code}")
            } else {
                format!("WebSocket close code {code}: {reason}")
            };
            End::Error(
                CONNECTION_CLOSED,
                format!("the connection was closed ({detail})"),
            )
        }
    };
    shut(rc, end);
}

fn on_timeout(rc: &Rc<RefCell<Inner>>) {
    let ms = {
        let mut s = rc.borrow_mut();
        s.timer = None;
        s.timer_at = None;
        if let Phase::Open(conn) = &mut s.phase {
            // A call's deadline.
            conn.handle_timeout(js_sys::Date::now() as u64);
            drop(s);
            return pump(rc);
        }
        s.timeout_ms
    };
    shut(
        rc,
        End::Error(
            TIMEOUT,
            format!("the server did not complete the handshake within {ms} ms"),
        ),
    );
}

/// Ends the connection once: closes the socket, rejects what waits, and
/// resolves `closed`.
fn shut(rc: &Rc<RefCell<Inner>>, end: End) {
    let (connect, pending, timer, handlers, on_closed) = {
        let mut s = rc.borrow_mut();
        if s.ended {
            return;
        }
        s.ended = true;
        s.phase = Phase::Ended;
        s.ws.set_onopen(None);
        s.ws.set_onmessage(None);
        s.ws.set_onclose(None);
        let code = match end {
            End::Error(PROTOCOL_ERROR, _) => CLOSE_PROTOCOL_ERROR,
            _ => CLOSE_NORMAL,
        };
        if s.ws.ready_state() <= WebSocket::OPEN {
            let _ = s.ws.close_with_code(code);
        }
        (
            s.connect.take(),
            std::mem::take(&mut s.pending),
            s.timer.take(),
            s.handlers.take(),
            s.on_closed.take(),
        )
    };
    if let Some(timer) = timer {
        clear_timeout(&timer);
    }
    if let Some(connect) = connect {
        connect.reject(&end.to_js());
    }
    for (id, p) in pending {
        p.settle(rc, id, Err(end.to_js()));
    }
    if let Some(resolve) = on_closed {
        let why = match end {
            End::ByClient => JsValue::UNDEFINED,
            _ => end.to_js(),
        };
        let _ = resolve.call1(&JsValue::UNDEFINED, &why);
    }
    // The handler that called us may still be running: let go of the
    // closures once it has returned.
    if let Some(handlers) = handlers {
        wasm_bindgen_futures::spawn_local(async move { drop(handlers) });
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}
