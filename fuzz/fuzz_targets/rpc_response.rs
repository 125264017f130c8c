//! RPC responses as the client reads them: `rpc::parse_response` and
//! `rpc::parse_server_message` on arbitrary bytes (a transport frame's
//! payload), and the client's controls as the server reads them
//! (`rpc::parse_control`).
//!
//! A response that parses has exactly one of a result or an error, and
//! writing it back (`write_result`, `write_error`) gives a response that
//! parses to the same outcome; a response is the same server message
//! either way; a stream's item or end, and a control, written back parse to
//! the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::rpc::{
    ServerMessage, parse_control, parse_response, parse_server_message, write_control, write_end,
    write_error, write_item, write_result,
};

fuzz_target!(|data: &[u8]| {
    if let Some(control) = parse_control(data) {
        let mut out = Vec::new();
        write_control(&mut out, control);
        assert_eq!(parse_control(&out), Some(control));
    }
    match parse_server_message(data) {
        Ok(ServerMessage::Item { id, value }) => {
            let mut out = Vec::new();
            write_item(&mut out, id, value.get().as_bytes());
            match parse_server_message(&out) {
                Ok(ServerMessage::Item {
                    id: again,
                    value: v,
                }) => {
                    assert_eq!((again, v.get()), (id, value.get()));
                }
                other => panic!("an item written back is {other:?}"),
            }
            assert!(parse_response(data).is_err());
        }
        Ok(ServerMessage::End { id }) => {
            let mut out = Vec::new();
            write_end(&mut out, id);
            assert!(
                matches!(parse_server_message(&out), Ok(ServerMessage::End { id: again }) if again == id)
            );
            assert!(parse_response(data).is_err());
        }
        Ok(ServerMessage::Response(r)) => {
            let again = parse_response(data).expect("a response parses either way");
            assert_eq!(again.id, r.id);
        }
        Err(_) => assert!(parse_response(data).is_err()),
    }
    let Ok(response) = parse_response(data) else {
        return;
    };
    let mut out = Vec::new();
    match &response.outcome {
        Ok(result) => {
            write_result(&mut out, response.id, result).expect("a raw JSON value is written");
        }
        Err(error) => {
            let _ = error.to_string();
            write_error(&mut out, response.id, error);
        }
    }
    let again = parse_response(&out).expect("a written response parses");
    assert_eq!(again.id, response.id);
    match (&again.outcome, &response.outcome) {
        (Ok(a), Ok(b)) => assert_eq!(a.get(), b.get()),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("the outcome changed when written back"),
    }
});
