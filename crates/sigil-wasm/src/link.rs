//! A client's sockets: opening one, the handshake on it (the static key in
//! this module, or in a WebCrypto agent), the session's messages, and how
//! it ends — for good (`shut`), or, with `reconnect`, with a fresh socket
//! and handshake after a backoff (`broken`). Calls and streams in flight at
//! a break fail with `connection_closed`; nothing is resent.
//!
//! One timer serves the handshake's timeout, the session's next deadline
//! and the backoff; the socket's handlers and the timer's are made once per
//! client and moved from socket to socket.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{ArrayBuffer, Function, JSON, Uint8Array};
use sigil_core::OsRandom;
use sigil_core::batch::{Batch, SUBPROTOCOL, SUBPROTOCOL_BATCH, frames};
use sigil_core::connection::{ClientConnection, SessionLimits};
use sigil_core::handshake::{ClientHandshake, HandshakeError, REFUSAL, Refusal, RefusalCode};
use sigil_core::rand::RandomSource as _;
use sigil_core::reconnect::Backoff;
use sigil_core::transport::Session;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::agent;
use crate::client::{InFlight, Settle, pump};
use crate::error::{self, CONNECTION_CLOSED, HANDSHAKE_FAILED, PROTOCOL_ERROR, TIMEOUT};
use crate::events::{self, State};
use crate::options::Setup;

/// Opens a WebSocket to `url` offering sigil/1 with batching first, then
/// plain sigil/1.
pub(crate) fn open_socket(url: &str) -> Result<WebSocket, JsValue> {
    let offer = js_sys::Array::of2(&SUBPROTOCOL_BATCH.into(), &SUBPROTOCOL.into());
    WebSocket::new_with_str_sequence(url, &offer)
}

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
    #[wasm_bindgen(js_name = queueMicrotask)]
    fn queue_microtask(callback: &Function);
}

/// Milliseconds since the epoch, from the browser's clock.
pub(crate) fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Where the current socket is.
pub(crate) enum Phase {
    /// Waiting for the socket to open.
    Opening,
    /// Message 1 sent, waiting for message 2 or a refusal.
    Handshaking(Box<ClientHandshake>),
    /// Message 2 read; the key agent computes the static Diffie-Hellman
    /// result. Messages that come meanwhile wait here.
    Deriving(Vec<Vec<u8>>),
    /// The session, and its RPC rules.
    Open(Box<ClientConnection>),
    /// No socket: waiting for the backoff before the next one.
    Waiting,
    /// Closed for good.
    Ended,
}

/// Why a socket, or the client, ended.
pub(crate) enum End {
    /// `close()` was called.
    ByClient,
    /// The server refused the handshake.
    Refused(Refusal),
    /// A connection error: code and message.
    Error(&'static str, String),
}

impl End {
    pub(crate) fn to_js(&self) -> JsValue {
        match self {
            End::ByClient => {
                error::connection(CONNECTION_CLOSED, "the connection was closed by the client")
            }
            End::Refused(r) => error::refused(r),
            End::Error(code, message) => error::connection(code, message),
        }
    }

    /// Whether a fresh socket and handshake may succeed where this failed:
    /// not after `close()`, a refusal other than busy or stale, or an
    /// answer that did not authenticate.
    fn retryable(&self) -> bool {
        match self {
            End::ByClient => false,
            End::Refused(r) => matches!(r.code(), RefusalCode::Busy | RefusalCode::StaleOrReplayed),
            End::Error(code, _) => *code != HANDSHAKE_FAILED,
        }
    }
}

/// A `setTimeout` for one instant at a time.
#[derive(Default)]
pub(crate) struct Timer {
    id: Option<JsValue>,
    at: Option<u64>,
}

impl Timer {
    /// Fires `handler` at `at` (ms since the epoch), unless it is set for
    /// that instant or earlier already: firing early costs a look at the
    /// machine, re-arming on every call costs a `setTimeout` each.
    fn arm(&mut self, at: u64, handler: &Function) {
        if self.at.is_some_and(|t| t <= at) {
            return;
        }
        self.clear();
        let wait = at.saturating_sub(now_ms()).min(i32::MAX as u64) as u32;
        self.id = Some(set_timeout(handler, wait));
        self.at = Some(at);
    }

    fn clear(&mut self) {
        if let Some(id) = self.id.take() {
            clear_timeout(&id);
        }
        self.at = None;
    }
}

/// The socket's event handlers and the timer's, made once per client.
struct Handlers {
    open: Closure<dyn FnMut()>,
    message: Closure<dyn FnMut(JsValue)>,
    close: Closure<dyn FnMut(JsValue)>,
    timer: Closure<dyn FnMut()>,
}

/// A client's connection state, shared by its `Client`, its streams and
/// the handlers.
pub(crate) struct Inner {
    pub(crate) setup: Setup,
    pub(crate) ws: Option<WebSocket>,
    pub(crate) phase: Phase,
    pub(crate) state: State,
    /// Sockets opened so far: an agent's answer for an older one is dropped.
    generation: u32,
    /// Reconnect attempts since the session was last open: the core's
    /// backoff of this outage, if one is under way.
    outage: Option<Backoff>,
    /// Calls in flight and streams open in the machine, by id.
    pub(crate) pending: InFlight,
    pub(crate) session_hash: String,
    pub(crate) server_payload: JsValue,
    /// `Client.connect`'s promise, until the first session is up.
    connect: Option<Settle>,
    /// Resolves `client.closed`.
    on_closed: Option<Function>,
    timer: Timer,
    handlers: Option<Handlers>,
    /// The last message received, reused for the next.
    scratch: Vec<u8>,
    /// How sealed frames go to the socket.
    pub(crate) outbox: Outbox,
}

/// How sealed frames go to the socket: one per message, or with batching
/// (`sigil.v1.batch`) packed by a microtask once the calls made in this
/// task are in.
pub(crate) struct Outbox {
    /// Whether the server chose batching.
    batching: bool,
    /// With batching: the frames sealed since the microtask was queued.
    batch: Batch,
    /// Whether that microtask is queued.
    flush_queued: bool,
    /// The client's state, for the microtask (a one-shot function each
    /// time: a microtask may run after the client is closed or freed).
    this: Weak<RefCell<Inner>>,
}

impl Outbox {
    /// Sends a sealed frame on `ws`: at once, or with batching, in the
    /// batch the microtask sends (a full batch at once). False if the
    /// socket is gone.
    pub(crate) fn send(
        &mut self,
        ws: &Option<WebSocket>,
        on_trace: Option<&Function>,
        frame: Vec<u8>,
    ) -> bool {
        events::frame(on_trace, "out", &frame);
        if !self.batching {
            return send(ws, &frame);
        }
        if let Some(full) = self.batch.push(frame)
            && !send(ws, &full)
        {
            return false;
        }
        if !self.flush_queued {
            let this = self.this.clone();
            let flush = Closure::once_into_js(move || {
                if let Some(rc) = this.upgrade() {
                    on_flush(&rc);
                }
            });
            queue_microtask(flush.unchecked_ref());
            self.flush_queued = true;
        }
        true
    }
}

impl Inner {
    pub(crate) fn new(setup: Setup, connect: Settle, on_closed: Function) -> Inner {
        Inner {
            setup,
            ws: None,
            phase: Phase::Opening,
            state: State::Connecting,
            generation: 0,
            outage: None,
            pending: InFlight::default(),
            session_hash: String::new(),
            server_payload: JsValue::UNDEFINED,
            connect: Some(connect),
            on_closed: Some(on_closed),
            timer: Timer::default(),
            handlers: None,
            scratch: Vec::new(),
            outbox: Outbox {
                batching: false,
                batch: Batch::new(),
                flush_queued: false,
                this: Weak::new(),
            },
        }
    }

    /// Sets the timer for the session's next deadline, if it is earlier.
    pub(crate) fn arm(&mut self, at: u64) {
        if let Some(h) = &self.handlers {
            self.timer.arm(at, h.timer.as_ref().unchecked_ref());
        }
    }

    fn on_trace(&self) -> Option<&Function> {
        self.setup.on_trace.as_ref()
    }

    /// Detaches the socket and closes it with `code` (if it is still open).
    fn drop_socket(&mut self, code: u16) {
        // Frames of this session that wait for the microtask die with it.
        self.outbox.batch = Batch::new();
        let Some(ws) = self.ws.take() else {
            return;
        };
        ws.set_onopen(None);
        ws.set_onmessage(None);
        ws.set_onclose(None);
        if ws.ready_state() <= WebSocket::OPEN {
            let _ = ws.close_with_code(code);
            let fields = [("by", "client".into()), ("code", code.into())];
            events::trace(self.on_trace(), "close", &fields);
        }
    }
}

/// Sends a message on the socket; false if it cannot.
pub(crate) fn send(ws: &Option<WebSocket>, message: &[u8]) -> bool {
    ws.as_ref()
        .is_some_and(|ws| ws.send_with_u8_array(message).is_ok())
}

/// Starts the client on `ws`, its first socket: the handlers, the
/// handshake's timer; `connect` settles when the handshake is done.
pub(crate) fn start(rc: &Rc<RefCell<Inner>>, ws: WebSocket) {
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
    let timer = Closure::<dyn FnMut()>::new(with(on_timer));
    let weak = Rc::downgrade(rc);
    let message = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        if let Some(rc) = weak.upgrade() {
            on_message(&rc, &ev.unchecked_into::<MessageEvent>().data());
        }
    });
    let weak = Rc::downgrade(rc);
    let close = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        if let Some(rc) = weak.upgrade() {
            on_close(&rc, ev.unchecked_ref::<CloseEvent>());
        }
    });
    rc.borrow_mut().handlers = Some(Handlers {
        open,
        message,
        close,
        timer,
    });
    rc.borrow_mut().outbox.this = Rc::downgrade(rc);
    use_socket(rc, ws);
}

/// Makes `ws` the client's socket and starts the handshake's clock.
fn use_socket(rc: &Rc<RefCell<Inner>>, ws: WebSocket) {
    let mut s = rc.borrow_mut();
    let s = &mut *s;
    let Some(h) = &s.handlers else {
        return;
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    ws.set_onopen(Some(h.open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(h.message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(h.close.as_ref().unchecked_ref()));
    s.ws = Some(ws);
    s.generation = s.generation.wrapping_add(1);
    s.phase = Phase::Opening;
    s.state = State::Connecting;
    s.timer.clear();
    s.timer.arm(
        now_ms() + u64::from(s.setup.timeout_ms),
        h.timer.as_ref().unchecked_ref(),
    );
    let attempt = JsValue::from(s.outage.as_ref().map_or(0, Backoff::attempts));
    let fields = [("url", s.setup.url.as_str().into()), ("attempt", attempt)];
    events::trace(s.setup.on_trace.as_ref(), "connecting", &fields);
    events::state(s.setup.on_state.as_ref(), State::Connecting, &fields[1..]);
}

/// The socket is open: check the subprotocol and send message 1.
fn on_open(rc: &Rc<RefCell<Inner>>) {
    let mut s = rc.borrow_mut();
    if !matches!(s.phase, Phase::Opening) {
        return;
    }
    let protocol = s.ws.as_ref().map(WebSocket::protocol).unwrap_or_default();
    s.outbox.batching = protocol == SUBPROTOCOL_BATCH;
    if !s.outbox.batching && protocol != SUBPROTOCOL {
        drop(s);
        return broken(
            rc,
            End::Error(
                HANDSHAKE_FAILED,
                "the server did not select the sigil.v1 WebSocket subprotocol: it does not speak sigil/1"
                    .into(),
            ),
        );
    }
    let started = ClientHandshake::start(
        &s.setup.config,
        &mut OsRandom,
        now_ms(),
        s.setup.payload.as_deref(),
    );
    let end = match started {
        Ok((handshake, hello)) => {
            let size = [("dir", "out".into()), ("bytes", hello.len().into())];
            events::trace(s.on_trace(), "hello", &size);
            if send(&s.ws, &hello) {
                s.phase = Phase::Handshaking(Box::new(handshake));
                return;
            }
            closed_early()
        }
        Err(e) => End::Error(HANDSHAKE_FAILED, e.to_string()),
    };
    drop(s);
    broken(rc, end);
}

fn closed_early() -> End {
    End::Error(
        CONNECTION_CLOSED,
        "the connection closed before the handshake completed".into(),
    )
}

/// One WebSocket message: message 2 (or a refusal), then frames.
fn on_message(rc: &Rc<RefCell<Inner>>, data: &JsValue) {
    if data.is_string() {
        let text = "the server sent a text WebSocket message".to_owned();
        return broken(rc, End::Error(PROTOCOL_ERROR, text));
    }
    let view = Uint8Array::new(data.unchecked_ref::<ArrayBuffer>());
    let mut bytes = std::mem::take(&mut rc.borrow_mut().scratch);
    bytes.resize(view.length() as usize, 0);
    view.copy_to(&mut bytes);
    if let Some(bytes) = received(rc, bytes) {
        rc.borrow_mut().scratch = bytes;
    }
}

/// Takes a message from the server; gives the buffer back when it is free
/// for the next one.
fn received(rc: &Rc<RefCell<Inner>>, bytes: Vec<u8>) -> Option<Vec<u8>> {
    let mut guard = rc.borrow_mut();
    let s = &mut *guard;
    match &mut s.phase {
        Phase::Open(conn) => {
            let now = now_ms();
            for frame in frames(&bytes, s.outbox.batching) {
                events::frame(s.setup.on_trace.as_ref(), "in", frame);
                // A failure is also a close event of the machine: `pump`
                // ends the socket.
                if conn.handle_frame(now, frame).is_err() {
                    break;
                }
            }
            drop(guard);
            pump(rc);
        }
        Phase::Deriving(waiting) => {
            waiting.push(bytes);
            return None;
        }
        Phase::Handshaking(_) => {
            let phase = std::mem::replace(&mut s.phase, Phase::Deriving(Vec::new()));
            drop(guard);
            if let Phase::Handshaking(handshake) = phase {
                answer(rc, *handshake, &bytes);
            }
        }
        Phase::Opening | Phase::Waiting | Phase::Ended => {}
    }
    Some(bytes)
}

/// Takes the server's answer to message 1: with the key here, the session
/// at once; with an agent, once WebCrypto has computed `se`.
fn answer(rc: &Rc<RefCell<Inner>>, handshake: ClientHandshake, message: &[u8]) {
    let (agent, generation) = {
        let s = rc.borrow();
        // A refusal is traced with its code and reason once it is read.
        if message.first() != Some(&REFUSAL) {
            let fields = [("dir", "in".into()), ("bytes", message.len().into())];
            events::trace(s.on_trace(), "answer", &fields);
        }
        (s.setup.agent.clone(), s.generation)
    };
    let Some(key) = agent else {
        let result = handshake.finish(message).map_err(not_authentic);
        return session(rc, generation, result);
    };
    let step = match handshake.read_answer(message) {
        Ok(step) => step,
        Err(e) => return session(rc, generation, Err(not_authentic(e))),
    };
    let weak = Rc::downgrade(rc);
    // The promise is dropped: the future runs all the same, and settles
    // through `session`.
    let _ = wasm_bindgen_futures::future_to_promise(async move {
        let what = "the server's ephemeral key";
        let result = match agent::diffie_hellman(&key, step.server_ephemeral(), what).await {
            Ok(se) => step.finish(&se).map_err(not_authentic),
            Err(_) => Err(not_authentic(HandshakeError::Failed)),
        };
        if let Some(rc) = weak.upgrade() {
            session(&rc, generation, result);
        }
        Ok(JsValue::UNDEFINED)
    });
}

/// A handshake error as the end of the socket.
fn not_authentic(e: HandshakeError) -> End {
    match e {
        HandshakeError::Refused(refusal) => End::Refused(refusal),
        _ => End::Error(
            HANDSHAKE_FAILED,
            "the server's answer did not authenticate: it does not hold the pinned server key, \
             or the psk or prologue differ"
                .into(),
        ),
    }
}

/// The handshake on socket `generation` is over: the session is up, or
/// the socket is done.
fn session(
    rc: &Rc<RefCell<Inner>>,
    generation: u32,
    result: Result<(Session, Option<String>), End>,
) {
    let mut guard = rc.borrow_mut();
    let s = &mut *guard;
    if s.generation != generation || !matches!(s.phase, Phase::Deriving(_)) {
        return;
    }
    let (session, payload) = match result {
        Ok(ok) => ok,
        Err(end) => {
            if let End::Refused(r) = &end {
                let fields = [
                    ("dir", "in".into()),
                    ("code", r.code().as_u16().into()),
                    ("reason", r.reason().into()),
                ];
                events::trace(s.on_trace(), "refusal", &fields);
            }
            drop(guard);
            return broken(rc, end);
        }
    };
    s.session_hash = hex(session.session_hash());
    s.server_payload = payload
        .and_then(|p| JSON::parse(&p).ok())
        .unwrap_or(JsValue::UNDEFINED);
    let limits = SessionLimits {
        max_message_size: s.setup.config.limits().max_message_size,
        // The server's to enforce (it answers `busy`).
        max_inflight: usize::MAX,
        max_streams: usize::MAX,
        stream_window: SessionLimits::default().stream_window,
        call_timeout_ms: u64::from(s.setup.call_timeout_ms),
        idle_timeout_ms: None,
        // The server pings; the browser answers.
        ping_interval_ms: None,
    };
    let conn = Box::new(ClientConnection::new(session, limits));
    let Phase::Deriving(waiting) = std::mem::replace(&mut s.phase, Phase::Open(conn)) else {
        return;
    };
    s.timer.clear();
    s.outage = None;
    s.state = State::Open;
    let hash = [("sessionHash", s.session_hash.as_str().into())];
    events::trace(s.on_trace(), "session", &hash);
    events::state(s.setup.on_state.as_ref(), State::Open, &hash);
    let connect = s.connect.take();
    drop(guard);
    if let Some(connect) = connect {
        connect.settle(Ok(JsValue::UNDEFINED));
    }
    for message in waiting {
        received(rc, message);
    }
}

fn on_close(rc: &Rc<RefCell<Inner>>, ev: &CloseEvent) {
    let (code, reason) = (ev.code(), ev.reason());
    let end = {
        let s = rc.borrow();
        let fields = [
            ("by", "server".into()),
            ("code", code.into()),
            ("reason", reason.as_str().into()),
        ];
        events::trace(s.on_trace(), "close", &fields);
        match s.phase {
            Phase::Opening => End::Error(
                CONNECTION_CLOSED,
                format!(
                    "cannot connect to {}: no server there, or it refused the WebSocket upgrade",
                    s.setup.url
                ),
            ),
            Phase::Handshaking(_) | Phase::Deriving(_) => closed_early(),
            _ => {
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
        }
    };
    rc.borrow_mut().ws = None;
    broken(rc, end);
}

/// The timer: a call's deadline, the handshake's timeout, or the end of
/// the backoff.
fn on_timer(rc: &Rc<RefCell<Inner>>) {
    let mut s = rc.borrow_mut();
    s.timer.id = None;
    s.timer.at = None;
    match &mut s.phase {
        Phase::Open(conn) => {
            conn.handle_timeout(now_ms());
            drop(s);
            pump(rc);
        }
        Phase::Waiting => {
            let url = s.setup.url.clone();
            drop(s);
            match open_socket(&url) {
                Ok(ws) => use_socket(rc, ws),
                Err(e) => {
                    let why = format!("cannot open a WebSocket: {}", agent::message(&e));
                    broken(rc, End::Error(CONNECTION_CLOSED, why));
                }
            }
        }
        Phase::Opening | Phase::Handshaking(_) | Phase::Deriving(_) => {
            let ms = s.setup.timeout_ms;
            drop(s);
            let why = format!("the server did not complete the handshake within {ms} ms");
            broken(rc, End::Error(TIMEOUT, why));
        }
        Phase::Ended => {}
    }
}

/// The batching microtask: sends the frames sealed since it was queued.
fn on_flush(rc: &Rc<RefCell<Inner>>) {
    let sent = {
        let mut s = rc.borrow_mut();
        s.outbox.flush_queued = false;
        match s.outbox.batch.take() {
            Some(message) => send(&s.ws, &message),
            None => true,
        }
    };
    if !sent {
        let why = "the connection closed (the WebSocket would not send)";
        broken(rc, End::Error(CONNECTION_CLOSED, why.into()));
    }
}

/// The socket is done, for `end`. With `reconnect` (and after the first
/// session), and when a fresh socket may do better, the next attempt waits
/// for its backoff; else the client ends. Either way what was in flight
/// fails with `end`.
pub(crate) fn broken(rc: &Rc<RefCell<Inner>>, end: End) {
    let mut guard = rc.borrow_mut();
    let s = &mut *guard;
    if matches!(s.phase, Phase::Ended | Phase::Waiting) {
        return;
    }
    let policy = match s.setup.reconnect {
        Some(p) if s.connect.is_none() && end.retryable() => p,
        _ => {
            drop(guard);
            return shut(rc, end);
        }
    };
    let outage = s.outage.get_or_insert_with(|| Backoff::new(policy));
    let Some(delay) = outage.next_delay_ms(jitter()) else {
        let why = format!(
            "gave up reconnecting after {} attempts; the last: {}",
            outage.attempts(),
            error_message(&end)
        );
        drop(guard);
        return shut(rc, End::Error(CONNECTION_CLOSED, why));
    };
    let attempt = outage.attempts();
    s.drop_socket(close_code(&end));
    s.phase = Phase::Waiting;
    s.state = State::Reconnecting;
    s.timer.clear();
    if let Some(h) = &s.handlers {
        s.timer
            .arm(now_ms() + delay, h.timer.as_ref().unchecked_ref());
    }
    let fields = [
        ("attempt", attempt.into()),
        ("delayMs", u32::try_from(delay).unwrap_or(u32::MAX).into()),
        ("error", end.to_js()),
    ];
    events::state(s.setup.on_state.as_ref(), State::Reconnecting, &fields);
    let pending = s.pending.take();
    drop(guard);
    for (id, p) in pending {
        p.settle(rc, id, Err(end.to_js()));
    }
}

/// A random number for the backoff's jitter, from the browser's
/// `crypto.getRandomValues` (0 if it fails: no jitter, still bounded).
fn jitter() -> u64 {
    let mut bytes = [0u8; 8];
    match OsRandom.fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

fn error_message(end: &End) -> String {
    agent::message(&end.to_js())
}

fn close_code(end: &End) -> u16 {
    match end {
        End::Error(PROTOCOL_ERROR, _) => CLOSE_PROTOCOL_ERROR,
        _ => CLOSE_NORMAL,
    }
}

/// Ends the client once: closes the socket, rejects what waits, and
/// resolves `closed`.
pub(crate) fn shut(rc: &Rc<RefCell<Inner>>, end: End) {
    let (connect, pending, handlers, on_closed) = {
        let mut s = rc.borrow_mut();
        if matches!(s.phase, Phase::Ended) {
            return;
        }
        s.phase = Phase::Ended;
        s.state = State::Closed;
        // `close()`: what was sealed before it still goes out (a oneway
        // call made just before, for one).
        if matches!(end, End::ByClient)
            && let Some(message) = s.outbox.batch.take()
        {
            send(&s.ws, &message);
        }
        s.drop_socket(close_code(&end));
        s.timer.clear();
        let why = match end {
            End::ByClient => JsValue::UNDEFINED,
            _ => end.to_js(),
        };
        events::state(s.setup.on_state.as_ref(), State::Closed, &[("error", why)]);
        (
            s.connect.take(),
            s.pending.take(),
            s.handlers.take(),
            s.on_closed.take(),
        )
    };
    if let Some(connect) = connect {
        connect.settle(Err(end.to_js()));
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
    // A closure dropped while it runs (the handler that called us) is freed
    // by wasm-bindgen once it returns.
    drop(handlers);
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
