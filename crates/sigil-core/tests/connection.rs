//! The RPC session machines of both roles, driven as an in-memory pair on a
//! virtual clock (after quinn-proto's `Pair`): calls and responses, oneway
//! calls, deadlines on both sides, cancellation, limits, the idle timer,
//! bad frames and closing with calls in flight; streams with their windows,
//! slow consumers, cancellation from both sides, errors mid-stream and the
//! connection closing with streams open.

#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use serde_json::value::RawValue;
use sigil_core::batch::{BATCH_LIMIT, Batch, frames};
use sigil_core::connection::{
    AbortReason, CallError, CallOptions, ClientConnection, ClientEvent, CloseReason,
    ServerConnection, ServerEvent, SessionLimits, StreamError, StreamOptions,
};
use sigil_core::handshake::{
    ClientAuth, ClientConfig, ClientHandshake, ServerConfig, accept_hello,
};
use sigil_core::keys::SecretKey;
use sigil_core::rand::OsRandom;
use sigil_core::replay::ReplayCache;
use sigil_core::rpc::{ErrorCode, RpcError, write_error, write_result};
use sigil_core::transport::{FRAME_OVERHEAD, FrameError, FrameOpener, Session};

/// A client session and a server session from one real handshake.
fn sessions() -> (Session, Session) {
    let server_key = SecretKey::generate(&mut OsRandom).unwrap();
    let client_key = SecretKey::generate(&mut OsRandom).unwrap();
    let client = ClientConfig::new(client_key, server_key.public_key()).unwrap();
    let server =
        ServerConfig::new(server_key, ClientAuth::Keys(vec![client.public_key()])).unwrap();
    let now = 1_795_000_000_000;
    let (hs, msg1) = ClientHandshake::start(&client, &mut OsRandom, now, None).unwrap();
    let mut replay = ReplayCache::new(1024, 60_000);
    let hello = accept_hello(&server, &mut replay, now, &msg1).unwrap();
    let (msg2, server_session) = hello.accept(&mut OsRandom, None).unwrap();
    let (client_session, _) = hs.finish(&msg2).unwrap();
    (client_session, server_session)
}

/// A client and a server connection, a virtual clock, and what each has
/// seen: the server's calls (kept for the test to answer) and aborts, the
/// client's responses and closes.
struct Pair {
    now: u64,
    client: ClientConnection,
    server: ServerConnection,
    /// Calls the server has been handed: (id, object.method, args).
    calls: Vec<(u64, String, String)>,
    /// Which of them are streams.
    streams: Vec<u64>,
    aborted: Vec<(u64, AbortReason)>,
    /// Credit granted to the server's streams: (id, n).
    credits: Vec<(u64, u32)>,
    /// When the server asked for a ping.
    pings: Vec<u64>,
    server_closed: Option<CloseReason>,
    responses: Vec<(u64, Result<String, RpcError>)>,
    /// Items the client received, in order: (id, JSON).
    items: Vec<(u64, String)>,
    /// Streams that ended at the client.
    ends: Vec<(u64, Result<(), RpcError>)>,
    client_closed: Option<CloseReason>,
}

impl Pair {
    fn new(limits: SessionLimits) -> Pair {
        let (c, s) = sessions();
        Pair {
            now: 0,
            client: ClientConnection::new(c, limits),
            server: ServerConnection::new(s, limits, 0),
            calls: Vec::new(),
            streams: Vec::new(),
            aborted: Vec::new(),
            credits: Vec::new(),
            pings: Vec::new(),
            server_closed: None,
            responses: Vec::new(),
            items: Vec::new(),
            ends: Vec::new(),
            client_closed: None,
        }
    }

    fn stream(&mut self, method: &str, args: &[i64], options: StreamOptions) -> u64 {
        self.client
            .stream(self.now, "test", method, args, options)
            .unwrap()
    }

    /// The server's producer of stream `id` sends items `from..` while it
    /// has credit, at most `max`; returns how many it sent.
    fn produce(&mut self, id: u64, from: i64, max: usize) -> usize {
        let mut sent = 0;
        while sent < max && self.server.stream_credit(id) > 0 {
            let item = (from + sent as i64).to_string();
            self.server.stream_item(id, item.as_bytes()).unwrap();
            sent += 1;
        }
        sent
    }

    /// The items of stream `id` the client has received, as numbers.
    fn items_of(&self, id: u64) -> Vec<i64> {
        self.items
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, v)| v.parse().unwrap())
            .collect()
    }

    fn end_of(&self, id: u64) -> Option<&Result<(), RpcError>> {
        self.ends.iter().find(|(i, _)| *i == id).map(|(_, r)| r)
    }

    fn call(&mut self, method: &str, args: &[i64], timeout_ms: Option<u64>) -> u64 {
        let options = CallOptions {
            timeout_ms,
            oneway: false,
        };
        self.client
            .call(self.now, "test", method, args, options)
            .unwrap()
    }

    /// Moves every frame both ways until nothing moves, as a lossless
    /// network with no delay would.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(frame) = self.client.poll_transmit() {
                moved = true;
                match self.server.handle_frame(self.now, &frame) {
                    Ok(Some(call)) => {
                        if call.stream {
                            self.streams.push(call.id);
                        }
                        self.calls.push((
                            call.id,
                            format!("{}.{}", call.object, call.method),
                            call.args.get().to_owned(),
                        ));
                    }
                    Ok(None) => {}
                    Err(reason) => self.server_closed = Some(reason),
                }
            }
            while let Some(event) = self.server.poll_event() {
                match event {
                    ServerEvent::Abort { id, why } => self.aborted.push((id, why)),
                    ServerEvent::Credit { id, n } => self.credits.push((id, n)),
                    ServerEvent::Ping => self.pings.push(self.now),
                    ServerEvent::Close(reason) => self.server_closed = Some(reason),
                }
            }
            while let Some(frame) = self.server.poll_transmit() {
                moved = true;
                if let Err(reason) = self.client.handle_frame(self.now, &frame) {
                    self.client_closed = Some(reason);
                }
            }
            while let Some(event) = self.client.poll_event() {
                match event {
                    ClientEvent::Response { id, outcome } => self
                        .responses
                        .push((id, outcome.map(|v| v.get().to_owned()))),
                    ClientEvent::Item { id, value } => {
                        self.items.push((id, value.get().to_owned()))
                    }
                    ClientEvent::StreamEnd { id, outcome } => self.ends.push((id, outcome)),
                    ClientEvent::Close(reason) => self.client_closed = Some(reason),
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock to `t`, firing both machines' timers on the way.
    fn advance_to(&mut self, t: u64) {
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|&at| at <= t)
                .min();
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.drive();
        }
        self.now = t;
    }

    fn answer(&mut self, id: u64, value: i64) {
        let mut out = Vec::new();
        write_result(&mut out, id, &value).unwrap();
        self.server.respond(id, &out);
    }

    fn result(&self, id: u64) -> Option<&Result<String, RpcError>> {
        self.responses
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r)
    }
}

fn code(r: Option<&Result<String, RpcError>>) -> Option<ErrorCode> {
    match r {
        Some(Err(e)) => Some(e.code),
        _ => None,
    }
}

#[test]
fn calls_are_matched_by_id_in_any_order() {
    let mut p = Pair::new(SessionLimits::default());
    let a = p.call("add", &[1, 2], None);
    let b = p.call("add", &[3, 4], None);
    assert_ne!(a, b);
    p.drive();
    assert_eq!(p.calls.len(), 2);
    assert_eq!(p.calls[0], (a, "test.add".to_owned(), "[1,2]".to_owned()));
    assert_eq!(p.server.calls_in_flight(), 2);
    p.answer(b, 7);
    p.answer(a, 3);
    p.drive();
    assert_eq!(p.responses.len(), 2);
    assert_eq!(p.result(a), Some(&Ok("3".to_owned())));
    assert_eq!(p.result(b), Some(&Ok("7".to_owned())));
    assert_eq!(p.client.calls_in_flight(), 0);
    assert_eq!(p.server.calls_in_flight(), 0);
    // A second answer to the same call is dropped.
    p.answer(a, 9);
    assert!(p.server.poll_transmit().is_none());
}

#[test]
fn oneway_calls_get_no_response() {
    let mut p = Pair::new(SessionLimits::default());
    let id = p
        .client
        .call(
            p.now,
            "test",
            "log",
            &["x"],
            CallOptions {
                oneway: true,
                ..CallOptions::default()
            },
        )
        .unwrap();
    assert_eq!(p.client.calls_in_flight(), 0);
    p.drive();
    assert_eq!(p.calls.len(), 1);
    p.answer(id, 1);
    p.drive();
    assert!(p.responses.is_empty());
    assert_eq!(p.server.calls_in_flight(), 0);
}

#[test]
fn a_call_past_the_clients_deadline_fails_at_once_and_the_server_stops_it() {
    let limits = SessionLimits {
        call_timeout_ms: 10_000,
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    let slow = p.call("sleep", &[], Some(500));
    let other = p.call("add", &[1, 1], None);
    p.drive();
    p.advance_to(499);
    assert!(p.responses.is_empty());
    p.advance_to(500);
    assert_eq!(code(p.result(slow)), Some(ErrorCode::Timeout));
    // The client told the server, which aborted the call's work.
    assert_eq!(p.aborted, vec![(slow, AbortReason::Cancelled)]);
    // A late answer is dropped on both sides; the other call is unaffected.
    p.answer(slow, 1);
    p.answer(other, 2);
    p.drive();
    assert_eq!(p.responses.len(), 2);
    assert_eq!(p.result(other), Some(&Ok("2".to_owned())));
}

#[test]
fn a_call_past_the_servers_deadline_is_answered_timeout_and_aborted() {
    let limits = SessionLimits {
        call_timeout_ms: 1_000,
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    // The client would wait longer: the server's deadline comes first.
    let id = p.call("sleep", &[], Some(60_000));
    p.drive();
    p.advance_to(1_000);
    assert_eq!(p.aborted, vec![(id, AbortReason::DeadlinePassed)]);
    assert_eq!(code(p.result(id)), Some(ErrorCode::Timeout));
    assert_eq!(p.server.calls_in_flight(), 0);
}

#[test]
fn a_cancelled_call_is_aborted_and_its_answer_dropped() {
    let mut p = Pair::new(SessionLimits::default());
    let id = p.call("sleep", &[], None);
    p.drive();
    assert!(p.client.cancel(id));
    assert!(!p.client.cancel(id));
    p.drive();
    assert_eq!(p.aborted, vec![(id, AbortReason::Cancelled)]);
    p.answer(id, 1);
    p.drive();
    assert!(p.responses.is_empty());
    // Cancelling a call the server already finished changes nothing there.
    let done = p.call("add", &[], None);
    p.drive();
    p.answer(done, 5);
    p.drive();
    assert!(!p.client.cancel(done));
}

#[test]
fn calls_over_max_inflight_are_busy() {
    let limits = SessionLimits {
        max_inflight: 2,
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    let ids: Vec<u64> = (0..3).map(|_| p.call("sleep", &[], None)).collect();
    p.drive();
    assert_eq!(p.calls.len(), 2);
    assert_eq!(code(p.result(ids[2])), Some(ErrorCode::Busy));
    p.answer(ids[0], 0);
    p.drive();
    let again = p.call("add", &[], None);
    p.drive();
    assert_eq!(p.calls.last().map(|c| c.0), Some(again));
}

#[test]
fn the_idle_timer_waits_for_calls_and_counts_only_messages() {
    let limits = SessionLimits {
        idle_timeout_ms: Some(1_000),
        call_timeout_ms: 5_000,
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    p.advance_to(900);
    let id = p.call("sleep", &[], None);
    p.drive();
    // A call in flight keeps the connection open past the idle timeout.
    p.advance_to(2_500);
    assert_eq!(p.server_closed, None);
    p.answer(id, 1);
    p.drive();
    // Idle counts from the client's last message (at 900).
    assert_eq!(p.server.poll_timeout(), Some(1_900));
    p.advance_to(2_600);
    assert_eq!(p.server_closed, Some(CloseReason::IdleTimeout));
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn invalid_requests_are_answered_and_bad_frames_close() {
    let (c, s) = sessions();
    let (mut sealer, _) = c.split();
    let mut server = ServerConnection::new(s, SessionLimits::default(), 0);
    let mut frame = Vec::new();
    sealer
        .seal(
            br#"{"id":5,"object":"a.b","method":"m","args":[]}"#,
            &mut frame,
        )
        .unwrap();
    assert!(server.handle_frame(0, &frame).unwrap().is_none());
    assert!(
        server.poll_transmit().is_some(),
        "an invalid_request answer"
    );
    // An id already in flight is refused, the first call stays.
    for _ in 0..2 {
        let mut frame = Vec::new();
        sealer
            .seal(
                br#"{"id":6,"object":"a","method":"m","args":[]}"#,
                &mut frame,
            )
            .unwrap();
        let _ = server.handle_frame(0, &frame).unwrap();
    }
    assert_eq!(server.calls_in_flight(), 1);
    assert!(server.poll_transmit().is_some());
    // A tampered frame closes the connection, and nothing more is accepted.
    let mut frame = Vec::new();
    sealer.seal(b"{}", &mut frame).unwrap();
    let last = frame.len() - 1;
    frame[last] ^= 1;
    assert_eq!(
        server.handle_frame(0, &frame).unwrap_err(),
        CloseReason::BadFrame(FrameError::BadTag)
    );
    assert!(server.handle_frame(0, &frame).is_err());
}

#[test]
fn responses_that_are_not_responses_close_the_client() {
    let (c, s) = sessions();
    let mut client = ClientConnection::new(c, SessionLimits::default());
    let (mut sealer, _) = s.split();
    let id = client
        .call(0, "a", "m", &[1], CallOptions::default())
        .unwrap();
    let mut frame = Vec::new();
    sealer
        .seal(
            br#"{"id":1,"object":"a","method":"m","args":[]}"#,
            &mut frame,
        )
        .unwrap();
    assert!(matches!(
        client.handle_frame(0, &frame),
        Err(CloseReason::Protocol(_))
    ));
    // The call in flight failed with the close.
    assert_eq!(client.take_failed(), vec![id]);
    assert!(matches!(
        client.call(0, "a", "m", &[1], CallOptions::default()),
        Err(CallError::Closed(CloseReason::Protocol(_)))
    ));
}

#[test]
fn sizes_are_checked_before_sending_and_before_answering() {
    let limits = SessionLimits {
        max_message_size: 128,
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    let big = vec![1i64; 100];
    match p
        .client
        .call(p.now, "test", "add", &big, CallOptions::default())
    {
        Err(CallError::Invalid(e)) => assert_eq!(e.code, ErrorCode::TooLarge),
        other => panic!("{other:?}"),
    }
    match p
        .client
        .call(p.now, "a.b", "m", &[1], CallOptions::default())
    {
        Err(CallError::Invalid(e)) => assert_eq!(e.code, ErrorCode::InvalidRequest),
        other => panic!("{other:?}"),
    }
    // Nothing was sent, and no id was spent.
    assert!(p.client.poll_transmit().is_none());
    let id = p.call("big", &[], None);
    assert_eq!(id, 1);
    p.drive();
    let mut out = Vec::new();
    write_result(&mut out, id, &"x".repeat(200)).unwrap();
    p.server.respond(id, &out);
    p.drive();
    assert_eq!(code(p.result(id)), Some(ErrorCode::TooLarge));
}

#[test]
fn the_server_answers_errors_it_is_given() {
    let mut p = Pair::new(SessionLimits::default());
    let id = p.call("div", &[1, 0], None);
    p.drive();
    p.server
        .respond_error(id, &RpcError::application("division by zero"));
    p.drive();
    let e = match p.result(id) {
        Some(Err(e)) => e.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(e, RpcError::application("division by zero"));
    let mut raw = Vec::new();
    write_error(&mut raw, 99, &e);
    let parsed: Box<RawValue> = serde_json::from_slice(&raw).unwrap();
    assert!(parsed.get().contains("application_error"));
}

#[test]
fn closing_fails_every_call_in_flight() {
    let mut p = Pair::new(SessionLimits::default());
    let a = p.call("sleep", &[], None);
    let b = p.call("sleep", &[], None);
    p.drive();
    p.client.handle_close(CloseReason::ConnectionLost);
    assert_eq!(p.client.take_failed(), vec![a, b]);
    assert!(p.client.take_failed().is_empty());
    assert_eq!(p.client.poll_timeout(), None);
    p.drive();
    assert_eq!(p.client_closed, Some(CloseReason::ConnectionLost));
}

#[test]
fn call_ids_stop_below_2_pow_53() {
    use sigil_core::connection::MAX_CALL_ID;
    let mut p = Pair::new(SessionLimits::default());
    p.client.dangerous_set_next_call_id(MAX_CALL_ID);
    let last = p.call("add", &[], None);
    assert_eq!(last, MAX_CALL_ID);
    assert!(matches!(
        p.client
            .call(p.now, "test", "add", &[1], CallOptions::default()),
        Err(CallError::Closed(CloseReason::Exhausted))
    ));
    // The call in flight failed with the close.
    assert_eq!(p.client.take_failed(), vec![last]);
}

// Streams.

/// A stream's items flow within the window: the server never holds more
/// credit than the window, and gets more as the consumer takes items.
#[test]
fn a_stream_sends_within_its_window_and_credit_follows_the_consumer() {
    let mut p = Pair::new(SessionLimits::default());
    let options = StreamOptions {
        window: Some(4),
        ..StreamOptions::default()
    };
    let id = p.stream("ticker", &[10], options);
    p.drive();
    assert_eq!(p.streams, vec![id]);
    assert_eq!(p.server.streams_open(), 1);
    assert_eq!(p.server.calls_in_flight(), 0);
    // The initial window, no more.
    assert_eq!(p.produce(id, 0, 100), 4);
    assert_eq!(p.server.stream_item(id, b"99"), Err(StreamError::NoCredit));
    p.drive();
    assert_eq!(p.items_of(id), [0, 1, 2, 3]);
    // A consumer that takes one item grants nothing yet (half a window
    // is the step), two grant two.
    p.client.consumed(p.now, id, 1);
    p.drive();
    assert!(p.credits.is_empty());
    p.client.consumed(p.now, id, 1);
    p.drive();
    assert_eq!(p.credits, vec![(id, 2)]);
    assert_eq!(p.produce(id, 4, 100), 2);
    p.client.consumed(p.now, id, 4);
    p.drive();
    assert_eq!(p.produce(id, 6, 100), 4);
    p.drive();
    p.server.end_stream(id);
    p.drive();
    assert_eq!(p.items_of(id), (0..10).collect::<Vec<_>>());
    assert_eq!(p.end_of(id), Some(&Ok(())));
    assert_eq!(p.server.streams_open(), 0);
    assert_eq!(p.client.calls_in_flight(), 0);
    // What comes after the end is not sent.
    assert_eq!(p.server.stream_item(id, b"1"), Err(StreamError::NotOpen));
}

/// A consumer that never reads stalls its own stream only: the server
/// sends a window's worth, and other calls and streams go on.
#[test]
fn a_slow_consumer_stalls_only_its_own_stream() {
    let mut p = Pair::new(SessionLimits::default());
    let slow = p.stream("ticker", &[10_000], StreamOptions::default());
    let fast = p.stream("ticker", &[100], StreamOptions::default());
    p.drive();
    let window = SessionLimits::default().stream_window as usize;
    assert_eq!(p.produce(slow, 0, 10_000), window);
    p.drive();
    // The fast one is consumed as it comes and runs to its end.
    let mut sent = 0;
    while sent < 100 {
        let n = p.produce(fast, sent as i64, 100 - sent);
        assert!(n > 0, "the fast stream must not stall");
        sent += n;
        p.drive();
        p.client.consumed(p.now, fast, n as u32);
        p.drive();
    }
    p.server.end_stream(fast);
    let call = p.call("add", &[1, 2], None);
    p.drive();
    p.answer(call, 3);
    p.drive();
    assert_eq!(p.items_of(fast).len(), 100);
    assert_eq!(p.end_of(fast), Some(&Ok(())));
    assert_eq!(p.result(call), Some(&Ok("3".to_owned())));
    // The slow one still has exactly one window delivered and no credit.
    assert_eq!(p.items_of(slow).len(), window);
    assert_eq!(p.server.stream_credit(slow), 0);
    assert_eq!(p.produce(slow, 0, 10_000), 0);
}

#[test]
fn the_client_cancels_a_stream_and_what_is_in_flight_is_dropped() {
    let mut p = Pair::new(SessionLimits::default());
    let id = p.stream("ticker", &[100], StreamOptions::default());
    p.drive();
    p.produce(id, 0, 2);
    // Sealed but not yet delivered when the client cancels.
    assert!(p.client.cancel(id));
    p.drive();
    assert_eq!(p.aborted, vec![(id, AbortReason::Cancelled)]);
    assert_eq!(p.server.streams_open(), 0);
    assert!(p.items_of(id).is_empty());
    assert!(p.end_of(id).is_none());
    // The server's producer may race the cancel: its items are refused.
    assert_eq!(p.server.stream_item(id, b"1"), Err(StreamError::NotOpen));
}

#[test]
fn the_server_ends_a_stream_with_an_error_mid_stream() {
    let mut p = Pair::new(SessionLimits::default());
    let id = p.stream("ticker", &[100], StreamOptions::default());
    p.drive();
    p.produce(id, 0, 3);
    p.server
        .respond_error(id, &RpcError::application("the sensor went away"));
    p.drive();
    assert_eq!(p.items_of(id), [0, 1, 2]);
    let e = p.end_of(id).unwrap().as_ref().unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::ApplicationError, "the sensor went away")
    );
    assert_eq!(p.server.streams_open(), 0);
}

#[test]
fn a_streams_first_item_has_the_calls_deadline_then_none_on_the_server() {
    let limits = SessionLimits {
        call_timeout_ms: 1_000,
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    // No first item in time: timeout, from the server (its deadline and
    // the client's are the same; the client's fires first in this loop).
    let late = p.stream("watch", &[], StreamOptions::default());
    // One that sends its first item in time lives on, long past it.
    let live = p.stream("watch", &[], StreamOptions::default());
    p.drive();
    p.advance_to(500);
    p.produce(live, 0, 1);
    p.drive();
    p.advance_to(100_000);
    assert_eq!(
        p.end_of(late).unwrap().as_ref().unwrap_err().code,
        ErrorCode::Timeout
    );
    assert!(p.aborted.iter().any(|&(id, _)| id == late));
    assert!(p.end_of(live).is_none());
    assert_eq!(p.server.streams_open(), 1);
    assert_eq!(p.produce(live, 1, 1), 1);
    p.drive();
    assert_eq!(p.items_of(live), [0, 1]);
}

#[test]
fn a_streams_idle_timeout_counts_only_while_the_server_has_credit() {
    let mut p = Pair::new(SessionLimits::default());
    let options = StreamOptions {
        window: Some(2),
        idle_timeout_ms: Some(1_000),
        ..StreamOptions::default()
    };
    let id = p.stream("ticker", &[], options);
    p.drive();
    p.produce(id, 0, 2);
    p.drive();
    // No credit left: the server cannot send, so no idle timeout.
    p.advance_to(50_000);
    assert!(p.end_of(id).is_none());
    // Credit again: now silence is an idle timeout.
    p.client.consumed(p.now, id, 2);
    p.drive();
    p.advance_to(50_999);
    assert!(p.end_of(id).is_none());
    p.advance_to(51_000);
    let e = p.end_of(id).unwrap().as_ref().unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout);
    assert!(e.message.contains("idle"), "{}", e.message);
    // The server was told to stop it.
    assert_eq!(p.aborted, vec![(id, AbortReason::Cancelled)]);
}

#[test]
fn streams_over_max_streams_are_busy_and_do_not_count_as_calls() {
    let limits = SessionLimits {
        max_streams: 2,
        max_inflight: 1,
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    let a = p.stream("ticker", &[], StreamOptions::default());
    let b = p.stream("ticker", &[], StreamOptions::default());
    let c = p.stream("ticker", &[], StreamOptions::default());
    let call = p.call("add", &[1, 2], None);
    p.drive();
    assert_eq!(p.streams, vec![a, b]);
    assert_eq!(
        p.end_of(c).unwrap().as_ref().unwrap_err().code,
        ErrorCode::Busy
    );
    // The call still had its place among max_inflight.
    assert!(p.calls.iter().any(|(id, _, _)| *id == call));
}

#[test]
fn an_item_over_max_message_size_ends_its_stream_too_large() {
    let limits = SessionLimits {
        max_message_size: 64,
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    let id = p.stream("ticker", &[], StreamOptions::default());
    p.drive();
    let big = format!("\"{}\"", "x".repeat(100));
    assert_eq!(
        p.server.stream_item(id, big.as_bytes()),
        Err(StreamError::TooLarge)
    );
    p.drive();
    assert_eq!(p.aborted, vec![(id, AbortReason::ItemTooLarge)]);
    assert_eq!(
        p.end_of(id).unwrap().as_ref().unwrap_err().code,
        ErrorCode::TooLarge
    );
}

#[test]
fn closing_fails_open_streams_too() {
    let mut p = Pair::new(SessionLimits::default());
    let call = p.call("sleep", &[], None);
    let stream = p.stream("ticker", &[], StreamOptions::default());
    p.drive();
    p.produce(stream, 0, 1);
    p.drive();
    p.client.handle_close(CloseReason::ConnectionLost);
    assert_eq!(p.client.take_failed(), vec![call, stream]);
    assert_eq!(p.client.poll_timeout(), None);
}

/// Sealed by the server's keys, handed to the client.
fn from_server(s: Session, payloads: &[&str]) -> Vec<Vec<u8>> {
    let (mut sealer, _) = s.split();
    payloads
        .iter()
        .map(|p| {
            let mut frame = Vec::new();
            sealer.seal(p.as_bytes(), &mut frame).unwrap();
            frame
        })
        .collect()
}

#[test]
fn a_server_that_breaks_the_stream_rules_is_closed() {
    let window = 2;
    let options = StreamOptions {
        window: Some(window),
        ..StreamOptions::default()
    };
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                r#"{"id":1,"item":1}"#,
                r#"{"id":1,"item":2}"#,
                r#"{"id":1,"item":3}"#,
            ],
            "more items than credit",
        ),
        (&[r#"{"id":1,"result":1}"#], "a result for stream"),
        (&[r#"{"id":2,"item":1}"#], "not a stream"),
        (&[r#"{"id":2,"end":true}"#], "end for call"),
    ];
    for (payloads, expected) in cases {
        let (c, s) = sessions();
        let mut client = ClientConnection::new(c, SessionLimits::default());
        let stream = client.stream(0, "a", "m", &[0; 0], options).unwrap();
        let call = client
            .call(0, "a", "m", &[0; 0], CallOptions::default())
            .unwrap();
        assert_eq!((stream, call), (1, 2));
        let mut outcome = Ok(());
        for frame in from_server(s, payloads) {
            outcome = client.handle_frame(0, &frame);
            if outcome.is_err() {
                break;
            }
        }
        match outcome {
            Err(CloseReason::Protocol(why)) => assert!(why.contains(expected), "{why}"),
            other => panic!("{expected}: {other:?}"),
        }
        assert_eq!(client.take_failed(), vec![1, 2]);
    }
}

#[test]
fn credit_beyond_the_limit_closes_the_server() {
    use sigil_core::rpc::{Control, MAX_STREAM_CREDIT, write_control};
    let (c, s) = sessions();
    let mut server = ServerConnection::new(s, SessionLimits::default(), 0);
    let (mut sealer, _) = c.split();
    let mut seal = |payload: &[u8]| {
        let mut frame = Vec::new();
        sealer.seal(payload, &mut frame).unwrap();
        frame
    };
    let open = seal(br#"{"id":1,"object":"a","method":"m","args":[],"stream":16}"#);
    assert!(server.handle_frame(0, &open).unwrap().unwrap().stream);
    let mut grant = Vec::new();
    write_control(
        &mut grant,
        Control::Credit {
            id: 1,
            n: MAX_STREAM_CREDIT - 16,
        },
    );
    assert!(server.handle_frame(0, &seal(&grant)).unwrap().is_none());
    assert_eq!(server.stream_credit(1), MAX_STREAM_CREDIT);
    grant.clear();
    write_control(&mut grant, Control::Credit { id: 1, n: 1 });
    assert!(matches!(
        server.handle_frame(0, &seal(&grant)),
        Err(CloseReason::Protocol(_))
    ));
    // Credit for a stream that is not open is ignored.
    let (c, s) = sessions();
    let mut server = ServerConnection::new(s, SessionLimits::default(), 0);
    let (mut sealer, _) = c.split();
    let mut frame = Vec::new();
    sealer.seal(br#"{"credit":9,"n":4}"#, &mut frame).unwrap();
    assert!(server.handle_frame(0, &frame).unwrap().is_none());
    assert!(server.poll_transmit().is_none());
}

/// Pings keep quiet sessions open through proxies: one after every quiet
/// interval, none while frames flow either way, and they never count as
/// activity for the idle timeout.
#[test]
fn quiet_sessions_are_pinged_and_pings_are_not_activity() {
    let limits = SessionLimits {
        ping_interval_ms: Some(1_000),
        idle_timeout_ms: Some(3_500),
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    p.advance_to(2_500);
    assert_eq!(p.pings, [1_000, 2_000]);
    // A call at 2.5 s: the next ping waits a quiet second after it.
    let id = p.call("add", &[1, 2], None);
    p.drive();
    p.answer(id, 3);
    p.drive();
    p.advance_to(3_400);
    assert_eq!(p.pings, [1_000, 2_000]);
    p.advance_to(4_100);
    assert_eq!(p.pings.len(), 3, "{:?}", p.pings);
    // The pings did not keep the session: idle 3.5 s after the call.
    assert!(p.server_closed.is_none());
    p.advance_to(6_000);
    assert_eq!(p.server_closed, Some(CloseReason::IdleTimeout));
    // Without an interval, no pings.
    let mut quiet = Pair::new(SessionLimits::default());
    quiet.advance_to(100_000);
    assert!(quiet.pings.is_empty());
}

/// A server that sends (a stream's items) is not pinged either.
#[test]
fn frames_the_server_sends_postpone_the_ping() {
    let limits = SessionLimits {
        ping_interval_ms: Some(1_000),
        ..SessionLimits::default()
    };
    let mut p = Pair::new(limits);
    let id = p.stream("ticker", &[], StreamOptions::default());
    p.drive();
    for t in (100..3_000).step_by(300) {
        p.advance_to(t);
        p.produce(id, t as i64, 1);
        p.client.consumed(p.now, id, 1);
        p.drive();
    }
    assert!(p.pings.is_empty(), "{:?}", p.pings);
    p.advance_to(5_000);
    assert!(!p.pings.is_empty());
}

// --- Batching (sigil.v1.batch): several frames in one WebSocket message ---

/// Seals `payload` with `from` into a new buffer.
fn sealed(from: &mut Session, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    from.seal(payload, &mut frame).unwrap();
    frame
}

/// Seals `payloads` with `from`, packs them with [`Batch`] and returns the
/// messages.
fn packed(from: &mut Session, payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut batch = Batch::new();
    let mut messages = Vec::new();
    for p in payloads {
        messages.extend(batch.push(sealed(from, p)));
    }
    messages.extend(batch.take());
    assert!(batch.is_empty());
    messages
}

#[test]
fn batched_frames_open_in_order_and_messages_stay_within_the_limit() {
    let (mut client, mut server) = sessions();
    // Small frames, one larger than the limit (it travels alone), more small.
    let mut payloads: Vec<Vec<u8>> = (0..300u32).map(|i| vec![b'a'; (i % 97) as usize]).collect();
    payloads.insert(150, vec![b'b'; BATCH_LIMIT + 1]);
    let messages = packed(&mut client, &payloads);
    assert!(messages.len() > 2, "{} messages", messages.len());
    let mut opened = Vec::new();
    for m in &messages {
        // Within the limit, or one frame alone (by its header).
        let one_frame =
            FrameOpener::declared_len(m).is_ok_and(|n| n as usize + FRAME_OVERHEAD == m.len());
        assert!(
            m.len() <= BATCH_LIMIT || one_frame,
            "a {}-byte batch",
            m.len()
        );
        for frame in frames(m, true) {
            opened.push(server.open(frame).unwrap().to_vec());
        }
    }
    assert_eq!(opened, payloads);
}

#[test]
fn a_batch_cut_inside_a_frame_is_malformed_after_the_whole_frames() {
    let (mut client, mut server) = sessions();
    let messages = packed(
        &mut client,
        &[b"[1]".to_vec(), b"[2]".to_vec(), b"[3]".to_vec()],
    );
    let [message] = &messages[..] else {
        panic!("{} messages", messages.len())
    };
    let cut = &message[..message.len() - 5];
    let mut it = frames(cut, true);
    assert_eq!(server.open(it.next().unwrap()), Ok(&b"[1]"[..]));
    assert_eq!(server.open(it.next().unwrap()), Ok(&b"[2]"[..]));
    assert_eq!(server.open(it.next().unwrap()), Err(FrameError::Malformed));
    assert_eq!(it.next(), None);
}

#[test]
fn odd_batches_fail_as_a_lone_frame_would() {
    let (mut client, mut server) = sessions();
    // Empty: one empty slice.
    let empty: &[u8] = &[];
    assert_eq!(frames(empty, true).collect::<Vec<&[u8]>>(), vec![empty]);
    assert_eq!(server.open(empty), Err(FrameError::Malformed));
    // A frame and then bytes that are not a frame header.
    let mut message = sealed(&mut client, b"[1]");
    message.extend_from_slice(&[0x01, 0x02]);
    let parts: Vec<&[u8]> = frames(&message, true).collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[1], &[0x01, 0x02][..]);
    // A header declaring 4 GiB: refused for its length, before any hashing.
    let mut huge = vec![0x10];
    huge.extend_from_slice(&0u64.to_be_bytes());
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    huge.extend_from_slice(&[0; 32]);
    let parts: Vec<&[u8]> = frames(&huge, true).collect();
    assert_eq!(parts, vec![&huge[..]]);
    let (_, mut fresh) = sessions();
    assert!(matches!(
        fresh.open(parts[0]),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn without_batching_or_over_the_limit_a_message_is_one_frame() {
    let (mut client, mut server) = sessions();
    let two = [sealed(&mut client, b"[1]"), sealed(&mut client, b"[2]")].concat();
    assert_eq!(frames(&two, false).collect::<Vec<&[u8]>>(), vec![&two[..]]);
    assert_eq!(server.open(&two), Err(FrameError::Malformed));
    // Two frames of 9 KiB each: 18 KiB, over the limit, so not split.
    let (mut client, _) = sessions();
    let big = vec![b'1'; 9 * 1024];
    let over = [sealed(&mut client, &big), sealed(&mut client, &big)].concat();
    assert!(over.len() > BATCH_LIMIT);
    assert_eq!(frames(&over, true).count(), 1);
    // The same frames sent apart: each alone.
    assert_eq!(frames(&over[..over.len() / 2], true).count(), 1);
}

#[test]
fn frames_swapped_inside_a_batch_are_refused() {
    let (mut client, mut server) = sessions();
    let a = sealed(&mut client, b"[1]");
    let b = sealed(&mut client, b"[2]");
    let message = [b, a].concat();
    let first = frames(&message, true).next().unwrap();
    assert_eq!(
        server.open(first),
        Err(FrameError::BadSequence {
            got: 1,
            expected: 0
        })
    );
}
