//! sigil-core's own integration tests, run in a browser.
//!
//! `build.rs` copies `crates/sigil-core/tests/{vectors,primitives,handshake,connection}.rs`
//! into `OUT_DIR`; each is included here in a module where `#[test]` means
//! `#[wasm_bindgen_test]`. So the sigil/1 vectors (`tests/vectors/sigil1.json`:
//! handshakes in both roles, frames, pairwise keys), the primitive vectors
//! (RFC 7748, RFC 5869, RFC 4231, Wycheproof) and the in-memory protocol
//! tests (every refusal, replays, tampering) and the RPC session machines'
//! in-memory pair (deadlines, cancellation, limits) run on wasm32 in Chromium,
//! exactly as they run natively. The three proptest properties of
//! `handshake.rs` are replaced by the deterministic loops at the end.

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod vectors {
    use wasm_bindgen_test::wasm_bindgen_test as test;
    include!(concat!(env!("OUT_DIR"), "/core_vectors.rs"));
}

mod primitives {
    use wasm_bindgen_test::wasm_bindgen_test as test;
    include!(concat!(env!("OUT_DIR"), "/core_primitives.rs"));
}

mod connection {
    use wasm_bindgen_test::wasm_bindgen_test as test;
    include!(concat!(env!("OUT_DIR"), "/core_connection.rs"));
}

mod handshake {
    use wasm_bindgen_test::wasm_bindgen_test as test;
    include!(concat!(env!("OUT_DIR"), "/core_handshake.rs"));

    // Deterministic versions of the proptest properties of handshake.rs:
    // every 3rd bit flipped and every truncation, over a few seeds.

    #[test]
    fn every_bit_flip_or_truncation_of_message_1_is_refused() {
        for seed in 0..2 {
            let mut p = Pair::new(seed);
            let (_, msg1) = p.hello(Some(r#"{"a":[1,2,3]}"#));
            for bit in (0..msg1.len() * 8).step_by(3) {
                let flipped = flip(&msg1, bit);
                assert!(accept_hello(&p.server, &mut p.replay, p.now, &flipped).is_err());
            }
            for cut in 0..msg1.len() {
                assert!(accept_hello(&p.server, &mut p.replay, p.now, &msg1[..cut]).is_err());
            }
            assert!(accept_hello(&p.server, &mut p.replay, p.now, &msg1).is_ok());
        }
    }

    #[test]
    fn every_bit_flip_or_truncation_of_message_2_is_refused() {
        let mut p = Pair::new(7);
        let (hs, msg1) = p.hello(None);
        let (msg2, _) = p.server_answer(&msg1, Some(r#"{"welcome":true}"#)).unwrap();
        // `finish` consumes the handshake: replay message 1's state per try.
        let bads = (0..msg2.len() * 8)
            .step_by(3)
            .map(|bit| flip(&msg2, bit))
            .chain((0..msg2.len()).map(|cut| msg2[..cut].to_vec()));
        drop(hs);
        for bad in bads {
            let mut q = Pair::new(7);
            let (hs, msg1_again) = q.hello(None);
            assert_eq!(msg1_again, msg1);
            assert!(hs.finish(&bad).is_err());
        }
    }

    #[test]
    fn every_bit_flip_or_truncation_of_a_frame_is_refused() {
        let payload = br#"{"id":1,"object":"calculator","method":"add","args":[1,2]}"#;
        // A failed open is final, so each try gets a fresh session (the same
        // seed gives the same keys, hence the same frame).
        let session = || {
            let (mut c, s) = Pair::new(11).connect();
            (c_seal(&mut c, payload), s)
        };
        let (frame, mut s) = session();
        let len = frame.len();
        for bit in (0..len * 8).step_by(3) {
            let (_, mut s) = session();
            assert!(s.open(&flip(&frame, bit)).is_err());
        }
        for cut in (0..len).step_by(2) {
            let (_, mut s) = session();
            assert!(s.open(&frame[..cut]).is_err());
        }
        assert_eq!(s.open(&frame).unwrap(), &payload[..]);
    }
}
