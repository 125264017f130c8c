//! Transport frames as a receiver checks them: `FrameOpener::open` on
//! arbitrary bytes, with the sessions of the vectors' handshakes.
//!
//! Input: one selector byte, then frames, each as a big-endian u16 length
//! and that many bytes (see `sigil_fuzz::chunks`).
//! - bits 0-1: which vector's session;
//! - bit 2: clear, the client's session opens them (the vector's s2c frames
//!   open); set, the server's (c2s frames open);
//! - bit 3: the opener expects sequence number 2^64 - 2 (exhaustion);
//! - bit 7: round trip: the peer seals each chunk as a payload, and the
//!   opener must give it back.
//!
//! Whatever the frames, an opener gives back exactly the payload of a frame
//! it accepts, counts sequence numbers up by one, and refuses everything
//! after its first failure.

#![no_main]

use libfuzzer_sys::fuzz_target;
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

fn open_one(opener: &mut FrameOpener, frame: &[u8], failed: &mut bool) {
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
        }
    }
}
