//! Transport frames as a receiver checks them: `FrameOpener::open` on
//! arbitrary bytes, with the sessions of the vectors' handshakes.
//!
//! Input: one selector byte, then frames, each as a big-endian u16 length
//! and that many bytes (see `sigil_fuzz::chunks`).
//! - bits 0-1: which vector's session;
//! - bit 2: clear, the client's session opens them (the vector's s2c frames
//!   open); set, the server's (c2s frames open);
//! - bit 3: the opener expects sequence number 2^64 - 2 (exhaustion);
//! - bit 4: batching (`sigil.v1.batch`): each chunk is a WebSocket message
//!   that `batch::frames` splits (with bit 7: the sealed frames are packed
//!   by `batch::Batch` first, and every payload must come back in order);
//! - bit 7: round trip: the peer seals each chunk as a payload, and the
//!   opener must give it back.
//!
//! Whatever the frames, an opener gives back exactly the payload of a frame
//! it accepts, counts sequence numbers up by one, and refuses everything
//! after its first failure; a batch splits into slices that cover it
//! exactly, in order, all but the last a whole frame by its header.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::batch::{BATCH_LIMIT, Batch, frames};
use sigil_core::transport::{FRAME_HEADER_LEN, FRAME_OVERHEAD, FrameError, FrameOpener};
use sigil_fuzz::{Auth, CASES, CLIENTS, case, chunks, client_session, server, server_session};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let index = usize::from(selector & 3) % CASES.len();
    let case = case(selector & 3);
    let server_side = selector & 4 != 0;
    let round_trip = selector & 0x80 != 0;
    let batching = selector & 0x10 != 0;
    let (mut sealer, mut opener) = if server_side {
        let server = server_session(case, server(index, Auth::Client));
        let (_, opener) = server.split();
        let sealer = round_trip.then(|| client_session(case, &CLIENTS[index]).split().0);
        (sealer, opener)
    } else {
        let client = client_session(case, &CLIENTS[index]);
        let (_, opener) = client.split();
        let sealer =
            round_trip.then(|| server_session(case, server(index, Auth::Client)).split().0);
        (sealer, opener)
    };
    if selector & 8 != 0 {
        opener.dangerous_set_next_seq(u64::MAX - 1);
        if let Some(sealer) = &mut sealer {
            sealer.dangerous_set_next_seq(u64::MAX - 1);
        }
    }

    let mut failed = false;
    if batching {
        let mut batch = Batch::new();
        let mut messages = Vec::new();
        let mut sealed = 0;
        for chunk in chunks(rest) {
            match &mut sealer {
                Some(sealer) => match sealer.seal_to_vec(chunk) {
                    Ok(frame) => {
                        sealed += 1;
                        messages.extend(batch.push(frame));
                    }
                    Err(_) => break,
                },
                None => messages.push(chunk.to_vec()),
            }
        }
        messages.extend(batch.take());
        let sent = chunks(rest);
        let mut opened: Vec<&[u8]> = Vec::new();
        for message in &messages {
            let parts: Vec<&[u8]> = frames(message, true).collect();
            if round_trip {
                // Packed within the limit, or one frame alone (by its header:
                // `frames` never splits a message over the limit).
                let one_frame = FrameOpener::declared_len(message)
                    .is_ok_and(|n| n as usize + FRAME_OVERHEAD == message.len());
                assert!(message.len() <= BATCH_LIMIT || one_frame);
            }
            assert_eq!(parts.concat(), *message, "the slices cover the message");
            for (i, part) in parts.iter().enumerate() {
                let whole = FrameOpener::declared_len(part)
                    .is_ok_and(|n| n as usize + FRAME_OVERHEAD == part.len());
                assert!(
                    whole || i + 1 == parts.len(),
                    "a broken slice before the last"
                );
                opened.extend(open_one(&mut opener, part, &mut failed));
            }
        }
        if round_trip {
            assert!(
                !failed,
                "a batch packed from the peer's frames did not open"
            );
            assert_eq!(opened.len(), sealed, "every sealed frame opened");
            assert_eq!(opened, sent[..sealed], "the payloads, in order");
        }
        return;
    }
    for chunk in chunks(rest) {
        let frame = match &mut sealer {
            Some(sealer) => match sealer.seal_to_vec(chunk) {
                Ok(frame) => frame,
                Err(FrameError::Exhausted) => {
                    assert!(sealer.next_seq().is_none());
                    break;
                }
                Err(e) => panic!("sealing a small payload failed: {e}"),
            },
            None => chunk.to_vec(),
        };
        open_one(&mut opener, &frame, &mut failed);
        if let (Some(_), false) = (&sealer, failed) {
            // The round trip gave the payload back (checked in open_one);
            // the frame must also be what its header says.
            assert_eq!(FrameOpener::declared_len(&frame), Ok(chunk.len() as u64));
        }
        if round_trip {
            assert!(!failed, "a frame sealed by the peer did not open");
        }
    }
});

/// Opens `frame`, checking what the opener promises; its payload if it opened.
fn open_one<'a>(opener: &mut FrameOpener, frame: &'a [u8], failed: &mut bool) -> Option<&'a [u8]> {
    let before = opener.next_seq();
    let declared = FrameOpener::declared_len(frame);
    match opener.open(frame) {
        Ok(payload) => {
            assert!(!*failed, "a frame opened after a failure");
            assert_eq!(payload.len() + FRAME_OVERHEAD, frame.len());
            assert_eq!(
                payload,
                &frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + payload.len()]
            );
            assert_eq!(declared, Ok(payload.len() as u64));
            let seq = before.expect("an opener with no sequence numbers left opened a frame");
            assert_eq!(opener.next_seq(), seq.checked_add(1));
            Some(payload)
        }
        Err(e) => {
            if *failed {
                assert_eq!(e, FrameError::Closed, "after a failure, only Closed");
            }
            let _ = e.to_string();
            assert_eq!(
                opener.next_seq(),
                before,
                "a refused frame moved the sequence"
            );
            *failed = true;
            None
        }
    }
}
