//! RPC requests as the server reads them: `rpc::parse_request` on arbitrary
//! bytes (a transport frame's payload).
//!
//! A request that parses has checked names and an array of arguments, and
//! writing it back with `write_request` gives a request that parses to the
//! same call. A rejected one is answered with `invalid_request`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::rpc::{
    ErrorCode, check_name, parse_request, write_error, write_request, write_stream_request,
};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(req) => {
            assert!(check_name("object", &req.object).is_ok());
            assert!(check_name("method", &req.method).is_ok());
            assert!(req.args.get().starts_with('['));
            let mut out = Vec::new();
            match req.stream {
                Some(window) => write_stream_request(
                    &mut out,
                    req.id,
                    &req.object,
                    &req.method,
                    req.args,
                    window,
                ),
                None => write_request(
                    &mut out,
                    req.id,
                    &req.object,
                    &req.method,
                    req.args,
                    req.oneway,
                ),
            }
            .expect("a parsed request is written back");
            let again = parse_request(&out).expect("a written request parses");
            assert_eq!(again.id, req.id);
            assert_eq!(again.object, req.object);
            assert_eq!(again.method, req.method);
            assert_eq!(again.args.get(), req.args.get());
            assert_eq!(again.oneway, req.oneway);
            assert_eq!(again.stream, req.stream);
        }
        Err(rejected) => {
            assert_eq!(rejected.error.code, ErrorCode::InvalidRequest);
            // The answer the server sends.
            let mut out = Vec::new();
            write_error(&mut out, rejected.id, &rejected.error);
            let _ = rejected.error.to_string();
        }
    }
});
