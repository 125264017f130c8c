//! RPC responses as the client reads them: `rpc::parse_response` on
//! arbitrary bytes (a transport frame's payload).
//!
//! A response that parses has exactly one of a result or an error, and
//! writing it back (`write_result`, `write_error`) gives a response that
//! parses to the same outcome.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::rpc::{parse_response, write_error, write_result};

fuzz_target!(|data: &[u8]| {
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
