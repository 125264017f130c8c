//! The server's RPC session machine (`connection::ServerConnection`) fed
//! arbitrary client payloads, sealed with a real session, interleaved with
//! the adapter's own moves (stream items, ends, responses, the clock).
//!
//! Input: one selector byte (the vector case), then chunks (see
//! `sigil_fuzz::chunks`), each an operation: its first byte picks it,
//! the rest is its argument.
//! - 0: the client sends the rest as a payload (sealed, in order);
//! - 1: the adapter sends an item for the stream picked by the next byte;
//! - 2: the adapter ends that stream;
//! - 3: the adapter answers that call with `null`;
//! - 4: the clock moves on by the next two bytes, in milliseconds.
//!
//! Whatever comes, the machine does not panic, every frame it sends opens
//! for the client and is a message of the protocol, and no stream ever
//! gets more items than the client granted it.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use sigil_core::connection::{ServerConnection, ServerEvent, SessionLimits};
use sigil_core::rpc::{Control, ServerMessage, parse_control, parse_request, parse_server_message};
use sigil_fuzz::{Auth, CASES, CLIENTS, case, chunks, client_session, server, server_session};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let index = usize::from(selector & 3) % CASES.len();
    let case = case(selector & 3);
    let (mut to_server, mut from_server) = client_session(case, &CLIENTS[index]).split();
    let limits = SessionLimits {
        max_message_size: 4096,
        max_inflight: 8,
        max_streams: 4,
        stream_window: 4,
        call_timeout_ms: 1_000,
        idle_timeout_ms: Some(60_000),
        ping_interval_ms: Some(500),
    };
    let mut machine =
        ServerConnection::new(server_session(case, server(index, Auth::Client)), limits, 0);
    let mut now = 0u64;
    // What the client granted each stream, and the items it received.
    let mut granted: HashMap<u64, u64> = HashMap::new();
    let mut received: HashMap<u64, u64> = HashMap::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut closed = false;

    for chunk in chunks(rest) {
        let Some((&op, arg)) = chunk.split_first() else {
            continue;
        };
        let pick = |ids: &[u64]| {
            let i = usize::from(arg.first().copied().unwrap_or(0));
            (!ids.is_empty()).then(|| ids[i % ids.len()])
        };
        match op % 5 {
            0 if !closed => {
                if let Ok(req) = parse_request(arg) {
                    if let Some(window) = req.stream {
                        *granted.entry(req.id).or_insert(0) += u64::from(window);
                    }
                } else if let Some(Control::Credit { id, n }) = parse_control(arg) {
                    if let Some(g) = granted.get_mut(&id) {
                        *g += u64::from(n);
                    }
                }
                let frame = to_server.seal_to_vec(arg).expect("a small payload seals");
                match machine.handle_frame(now, &frame) {
                    Ok(Some(call)) => ids.push(call.id),
                    Ok(None) => {}
                    Err(_) => closed = true,
                }
            }
            1 => {
                if let Some(id) = pick(&ids) {
                    let _ = machine.stream_item(id, b"1");
                }
            }
            2 => {
                if let Some(id) = pick(&ids) {
                    machine.end_stream(id);
                }
            }
            3 => {
                if let Some(id) = pick(&ids) {
                    let response = format!(r#"{{"id":{id},"result":null}}"#);
                    machine.respond(id, response.as_bytes());
                }
            }
            4 => {
                let step = arg.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                now += u64::from(step);
                machine.handle_timeout(now);
            }
            _ => {}
        }
        while let Some(event) = machine.poll_event() {
            if let ServerEvent::Close(_) = event {
                closed = true;
            }
        }
        while let Some(frame) = machine.poll_transmit() {
            let payload = from_server.open(&frame).expect("the server's frames open");
            let message = parse_server_message(payload).expect("the server sends messages");
            if let ServerMessage::Item { id, .. } = message {
                let got = received.entry(id).or_insert(0);
                *got += 1;
                let allowed = granted.get(&id).copied().unwrap_or(0);
                assert!(
                    *got <= allowed,
                    "stream {id}: {got} items, {allowed} granted"
                );
            }
        }
    }
});
