//! RPC messages carried in transport frames: requests, responses, names.
//!
//! ```text
//! request:  {"id": u64, "object": NAME, "method": NAME, "args": [..], "oneway": bool?, "stream": u32?}
//! response: {"id": u64, "result": any} | {"id": u64, "error": {"code": CODE, "message": text}}
//! item:     {"id": u64, "item": any}        (a stream's next value)
//! end:      {"id": u64, "end": true}        (a stream's completion)
//! credit:   {"credit": u64, "n": u32}       (client: n more items of stream `credit`)
//! cancel:   {"cancel": u64}                 (client: stop a call or a stream)
//! ```
//!
//! A request with `"stream": W` asks for a stream with an initial window of
//! `W` items (1 to [`MAX_STREAM_CREDIT`]); the server sends at most as many
//! items as the client has granted, and ends the stream with `end` or an
//! error response.
//!
//! JSON only, through serde only: nothing else is ever deserialized, and a
//! call names one registered object and one exposed method, never a path.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// The most credit a stream may have outstanding at once: the largest
/// window of a stream request, and the most a client's grants may add up
/// to beyond what it has received.
pub const MAX_STREAM_CREDIT: u32 = 65_536;

/// Longest object or method name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The error codes of an RPC response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No object of that name is registered.
    NoSuchObject,
    /// The object exposes no method of that name.
    NoSuchMethod,
    /// The frame is not a valid request (bad JSON, shape, or name).
    InvalidRequest,
    /// `args` does not fit the method.
    InvalidArguments,
    /// The method ran and failed.
    ApplicationError,
    /// The response would not fit in a frame.
    TooLarge,
    /// Too many calls in flight on this connection.
    Busy,
    /// The call ran past its deadline (`call_timeout_ms`) and was cancelled.
    Timeout,
    /// The handler failed unexpectedly (for example it panicked); the
    /// message reveals nothing of why.
    InternalError,
    /// The caller cancelled the call (given locally by a client; a server
    /// sends nothing for a cancelled call).
    Cancelled,
    /// A code this implementation does not know (received only).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoSuchObject => "no_such_object",
            ErrorCode::NoSuchMethod => "no_such_method",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidArguments => "invalid_arguments",
            ErrorCode::ApplicationError => "application_error",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of a failed call: a code for programs, a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(deny_unknown_fields)]
#[error("{code}: {message}")]
pub struct RpcError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// An `application_error`: the method ran and failed.
    pub fn application(message: impl Into<String>) -> RpcError {
        RpcError::new(ErrorCode::ApplicationError, message)
    }

    /// An `invalid_arguments` error: `args` does not fit the method.
    pub fn invalid_arguments(message: impl Into<String>) -> RpcError {
        RpcError::new(ErrorCode::InvalidArguments, message)
    }

    /// An `internal_error` that says nothing of why: for failures whose
    /// text must not reach the caller (`.map_err(|_| RpcError::internal())`).
    pub fn internal() -> RpcError {
        RpcError::new(ErrorCode::InternalError, "internal error")
    }
}

/// `?` in a handler: an I/O error becomes an `application_error` with its
/// text. Use [`RpcError::internal`] where the text must stay private.
impl From<std::io::Error> for RpcError {
    fn from(e: std::io::Error) -> RpcError {
        RpcError::application(e.to_string())
    }
}

/// `?` in a handler: a JSON error becomes an `application_error` with its text.
impl From<serde_json::Error> for RpcError {
    fn from(e: serde_json::Error) -> RpcError {
        RpcError::application(e.to_string())
    }
}

/// `Err("why")?` in a handler: an `application_error` with that text.
impl From<&str> for RpcError {
    fn from(message: &str) -> RpcError {
        RpcError::application(message)
    }
}

/// `Err(text)?` in a handler: an `application_error` with that text.
impl From<String> for RpcError {
    fn from(message: String) -> RpcError {
        RpcError::application(message)
    }
}

/// Checks an object or method name: `^[A-Za-z][A-Za-z0-9_]{0,63}$`.
/// The error message says what is wrong (dotted names get their own words).
pub fn check_name(kind: &str, name: &str) -> Result<(), RpcError> {
    let bad = |why: &str| {
        Err(RpcError::new(
            ErrorCode::InvalidRequest,
            format!("invalid {kind} name: {why}"),
        ))
    };
    if name.contains('.') {
        return bad("dotted names are not allowed (a call names one object and one method)");
    }
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 64 characters");
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return bad("must start with an ASCII letter");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return bad("only ASCII letters, digits and '_' are allowed");
    }
    Ok(())
}

/// A request as received: borrowed from the frame's payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request<'a> {
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    /// The object to call.
    #[serde(borrow)]
    pub object: Cow<'a, str>,
    /// The method to call.
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    /// The positional arguments, a JSON array, still as text.
    #[serde(borrow)]
    pub args: &'a RawValue,
    /// The client wants no response.
    #[serde(default)]
    pub oneway: bool,
    /// The client wants a stream, with this initial window (credit).
    #[serde(default)]
    pub stream: Option<u32>,
}

/// A payload that is not a valid request, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The request's `id` if it could be read, else 0.
    pub id: u64,
    /// Always [`ErrorCode::InvalidRequest`], with a message saying why.
    pub error: RpcError,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

/// Parses and checks a request (shape, unknown members, names, `args` an array).
pub fn parse_request(payload: &[u8]) -> Result<Request<'_>, Rejected> {
    let reject = |message: String| {
        let id = serde_json::from_slice::<IdOnly>(payload).map_or(0, |r| r.id);
        Rejected {
            id,
            error: RpcError::new(ErrorCode::InvalidRequest, message),
        }
    };
    let req: Request<'_> =
        serde_json::from_slice(payload).map_err(|e| reject(format!("not a valid request: {e}")))?;
    if !req.args.get().starts_with('[') {
        return Err(reject("args must be a JSON array".into()));
    }
    check_name("object", &req.object).map_err(|e| reject(e.message))?;
    check_name("method", &req.method).map_err(|e| reject(e.message))?;
    if let Some(window) = req.stream {
        if req.oneway {
            return Err(reject("a stream request cannot be oneway".into()));
        }
        if window == 0 || window > MAX_STREAM_CREDIT {
            return Err(reject(format!(
                "a stream's window must be 1 to {MAX_STREAM_CREDIT} items"
            )));
        }
    }
    Ok(req)
}

/// Writes a request to `out`. `args` must serialize as a JSON array (a
/// tuple, slice or `Vec`); names are checked first. Nothing is written on error.
pub fn write_request<A: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    id: u64,
    object: &str,
    method: &str,
    args: &A,
    oneway: bool,
) -> Result<(), RpcError> {
    let tail = if oneway { Tail::Oneway } else { Tail::Call };
    write_any_request(out, id, object, method, args, tail)
}

/// Writes a stream request with an initial window of `window` items (see
/// [`write_request`]); a window outside 1 to [`MAX_STREAM_CREDIT`] is an
/// error.
pub fn write_stream_request<A: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    id: u64,
    object: &str,
    method: &str,
    args: &A,
    window: u32,
) -> Result<(), RpcError> {
    if window == 0 || window > MAX_STREAM_CREDIT {
        return Err(RpcError::new(
            ErrorCode::InvalidArguments,
            format!("a stream's window must be 1 to {MAX_STREAM_CREDIT} items"),
        ));
    }
    write_any_request(out, id, object, method, args, Tail::Stream(window))
}

/// What ends a request: what the client expects back.
#[derive(Clone, Copy)]
enum Tail {
    Call,
    Oneway,
    Stream(u32),
}

fn write_any_request<A: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    id: u64,
    object: &str,
    method: &str,
    args: &A,
    tail: Tail,
) -> Result<(), RpcError> {
    check_name("object", object)?;
    check_name("method", method)?;
    let start = out.len();
    // Checked names are plain identifiers: they need no JSON escaping.
    out.extend_from_slice(
        format!(r#"{{"id":{id},"object":"{object}","method":"{method}","args":"#).as_bytes(),
    );
    let args_start = out.len();
    let written = serde_json::to_writer(&mut *out, args);
    if let Err(e) = written {
        out.truncate(start);
        return Err(RpcError::new(ErrorCode::InvalidArguments, e.to_string()));
    }
    if out.get(args_start) != Some(&b'[') {
        out.truncate(start);
        return Err(RpcError::new(
            ErrorCode::InvalidArguments,
            "args must serialize as a JSON array",
        ));
    }
    match tail {
        Tail::Call => out.push(b'}'),
        Tail::Oneway => out.extend_from_slice(b",\"oneway\":true}"),
        Tail::Stream(window) => {
            out.extend_from_slice(format!(r#","stream":{window}}}"#).as_bytes());
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ResultOut<'a, T: Serialize + ?Sized> {
    id: u64,
    result: &'a T,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    id: u64,
    error: &'a RpcError,
}

/// Writes a success response to `out`.
pub fn write_result<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    id: u64,
    result: &T,
) -> Result<(), serde_json::Error> {
    serde_json::to_writer(out, &ResultOut { id, result })
}

/// Writes an error response to `out`.
pub fn write_error(out: &mut Vec<u8>, id: u64, error: &RpcError) {
    // Serializing a u64 and two strings cannot fail.
    let _ = serde_json::to_writer(out, &ErrorOut { id, error });
}

/// A response as received by a client.
#[derive(Debug)]
pub struct Response {
    /// The id of the call it answers.
    pub id: u64,
    /// The result (JSON text) or the error.
    pub outcome: Result<Box<RawValue>, RpcError>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseIn {
    id: u64,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// `Some` for a present member, even when it is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Parses a response: `id` and exactly one of `result` or `error`.
pub fn parse_response(payload: &[u8]) -> Result<Response, serde_json::Error> {
    let r: ResponseIn = serde_json::from_slice(payload)?;
    let outcome = match (r.result, r.error) {
        (Some(v), None) => Ok(v),
        (None, Some(e)) => Err(e),
        _ => {
            return Err(serde::de::Error::custom(
                "a response has exactly one of result and error",
            ));
        }
    };
    Ok(Response { id: r.id, outcome })
}

/// What a client receives: a response, or a stream's item or end.
#[derive(Debug)]
pub enum ServerMessage {
    /// A call's response, or a stream's error (which ends it).
    Response(Response),
    /// A stream's next value (JSON text).
    Item {
        /// The stream's call id.
        id: u64,
        /// The value.
        value: Box<RawValue>,
    },
    /// A stream's completion.
    End {
        /// The stream's call id.
        id: u64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerMessageIn {
    id: u64,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<RpcError>,
    #[serde(default, deserialize_with = "present")]
    item: Option<Box<RawValue>>,
    #[serde(default)]
    end: Option<bool>,
}

/// Parses what a server sends: `id` and exactly one of `result`, `error`,
/// `item` or `"end": true`.
pub fn parse_server_message(payload: &[u8]) -> Result<ServerMessage, serde_json::Error> {
    let m: ServerMessageIn = serde_json::from_slice(payload)?;
    let id = m.id;
    Ok(match (m.result, m.error, m.item, m.end) {
        (Some(v), None, None, None) => ServerMessage::Response(Response { id, outcome: Ok(v) }),
        (None, Some(e), None, None) => ServerMessage::Response(Response {
            id,
            outcome: Err(e),
        }),
        (None, None, Some(value), None) => ServerMessage::Item { id, value },
        (None, None, None, Some(true)) => ServerMessage::End { id },
        _ => {
            return Err(serde::de::Error::custom(
                "a message from the server has exactly one of result, error, item and \"end\": true",
            ));
        }
    })
}

/// Writes a stream's item: `item` is the value's JSON text.
pub fn write_item(out: &mut Vec<u8>, id: u64, item: &[u8]) {
    out.extend_from_slice(format!(r#"{{"id":{id},"item":"#).as_bytes());
    out.extend_from_slice(item);
    out.push(b'}');
}

/// Writes a stream's end.
pub fn write_end(out: &mut Vec<u8>, id: u64) {
    out.extend_from_slice(format!(r#"{{"id":{id},"end":true}}"#).as_bytes());
}

/// A client's message about a call or stream in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `{"cancel": ID}`: stop call or stream `ID`.
    Cancel(u64),
    /// `{"credit": ID, "n": N}`: stream `ID` may send `N` more items.
    Credit {
        /// The stream.
        id: u64,
        /// How many more items.
        n: u32,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlIn {
    #[serde(default)]
    cancel: Option<u64>,
    #[serde(default)]
    credit: Option<u64>,
    #[serde(default)]
    n: Option<u32>,
}

/// Parses a cancel or a credit; `None` for anything else.
pub fn parse_control(payload: &[u8]) -> Option<Control> {
    let c: ControlIn = serde_json::from_slice(payload).ok()?;
    match (c.cancel, c.credit, c.n) {
        (Some(id), None, None) => Some(Control::Cancel(id)),
        (None, Some(id), Some(n)) => Some(Control::Credit { id, n }),
        _ => None,
    }
}

/// Writes a cancel or a credit.
pub fn write_control(out: &mut Vec<u8>, control: Control) {
    let text = match control {
        Control::Cancel(id) => format!(r#"{{"cancel":{id}}}"#),
        Control::Credit { id, n } => format!(r#"{{"credit":{id},"n":{n}}}"#),
    };
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "calculator", "A_1", &"x".repeat(64)] {
            assert!(check_name("object", good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "_a", "a-b", "é", &"x".repeat(65), "a b"] {
            assert!(check_name("object", bad).is_err(), "{bad}");
        }
        let e = check_name("method", "os.system").unwrap_err();
        assert!(e.message.contains("dotted names are not allowed"));
    }

    #[test]
    fn request_round_trip() {
        let mut out = Vec::new();
        write_request(&mut out, 7, "calculator", "add", &(1, 2), false).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":7,"object":"calculator","method":"add","args":[1,2]}"#
        );
        let req = parse_request(&out).unwrap();
        assert_eq!(
            (
                req.id,
                &*req.object,
                &*req.method,
                req.args.get(),
                req.oneway
            ),
            (7, "calculator", "add", "[1,2]", false)
        );
        out.clear();
        write_request(&mut out, 8, "kv", "set", &["k", "v"], true).unwrap();
        assert!(parse_request(&out).unwrap().oneway);
        assert!(write_request(&mut Vec::new(), 1, "a", "b", &5, false).is_err());
        out.clear();
        write_stream_request(&mut out, 9, "clock", "ticker", &(5, 10), 16).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":9,"object":"clock","method":"ticker","args":[5,10],"stream":16}"#
        );
        let req = parse_request(&out).unwrap();
        assert_eq!((req.stream, req.oneway), (Some(16), false));
        for window in [0, MAX_STREAM_CREDIT + 1] {
            assert!(write_stream_request(&mut Vec::new(), 1, "a", "b", &(), window).is_err());
        }
    }

    #[test]
    fn fail_bad_stream_requests() {
        for payload in [
            r#"{"id":1,"object":"a","method":"m","args":[],"stream":0}"#,
            r#"{"id":1,"object":"a","method":"m","args":[],"stream":65537}"#,
            r#"{"id":1,"object":"a","method":"m","args":[],"stream":-1}"#,
            r#"{"id":1,"object":"a","method":"m","args":[],"stream":4,"oneway":true}"#,
        ] {
            let r = parse_request(payload.as_bytes()).unwrap_err();
            assert_eq!(
                (r.id, r.error.code),
                (1, ErrorCode::InvalidRequest),
                "{payload}"
            );
        }
    }

    #[test]
    fn server_messages_and_controls() {
        let mut out = Vec::new();
        write_item(&mut out, 3, br#"{"a":[1]}"#);
        match parse_server_message(&out).unwrap() {
            ServerMessage::Item { id, value } => assert_eq!((id, value.get()), (3, r#"{"a":[1]}"#)),
            other => panic!("{other:?}"),
        }
        out.clear();
        write_end(&mut out, 4);
        assert_eq!(out, br#"{"id":4,"end":true}"#);
        assert!(matches!(
            parse_server_message(&out).unwrap(),
            ServerMessage::End { id: 4 }
        ));
        assert!(matches!(
            parse_server_message(br#"{"id":5,"result":null}"#).unwrap(),
            ServerMessage::Response(Response {
                id: 5,
                outcome: Ok(_)
            })
        ));
        for bad in [
            r#"{"id":1,"end":false}"#,
            r#"{"id":1,"item":1,"end":true}"#,
            r#"{"id":1,"item":1,"result":1}"#,
            r#"{"id":1}"#,
        ] {
            assert!(parse_server_message(bad.as_bytes()).is_err(), "{bad}");
        }
        // A response parser does not take stream messages.
        assert!(parse_response(br#"{"id":1,"item":1}"#).is_err());

        for control in [Control::Cancel(7), Control::Credit { id: 8, n: 3 }] {
            let mut out = Vec::new();
            write_control(&mut out, control);
            assert_eq!(parse_control(&out), Some(control));
        }
        for bad in [
            r#"{"cancel":1,"n":2}"#,
            r#"{"credit":1}"#,
            r#"{"credit":1,"n":-1}"#,
            r#"{"cancel":1,"credit":2,"n":1}"#,
            r#"{"id":1}"#,
        ] {
            assert_eq!(parse_control(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn fail_invalid_requests_keep_their_id() {
        let cases: [(&str, u64); 7] = [
            (r#"{"id":3,"object":"a.b","method":"m","args":[]}"#, 3),
            (r#"{"id":4,"object":"a","method":"m","args":{}}"#, 4),
            (
                r#"{"id":5,"object":"a","method":"m","args":[],"extra":1}"#,
                5,
            ),
            (r#"{"id":6,"object":"a","args":[]}"#, 6),
            (r#"{"id":-1,"object":"a","method":"m","args":[]}"#, 0),
            (r#"not json"#, 0),
            (r#"[1,2]"#, 0),
        ];
        for (payload, id) in cases {
            let r = parse_request(payload.as_bytes()).unwrap_err();
            assert_eq!(r.id, id, "{payload}");
            assert_eq!(r.error.code, ErrorCode::InvalidRequest);
        }
        let dotted =
            parse_request(br#"{"id":3,"object":"a.b","method":"m","args":[]}"#).unwrap_err();
        assert!(
            dotted
                .error
                .message
                .contains("dotted names are not allowed")
        );
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_result(&mut out, 1, &serde_json::Value::Null).unwrap();
        let r = parse_response(&out).unwrap();
        assert_eq!(r.outcome.unwrap().get(), "null");
        out.clear();
        write_error(
            &mut out,
            2,
            &RpcError::new(ErrorCode::ApplicationError, "division by zero"),
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":2,"error":{"code":"application_error","message":"division by zero"}}"#
        );
        let r = parse_response(&out).unwrap();
        assert_eq!(r.outcome.unwrap_err().code, ErrorCode::ApplicationError);
        let unknown =
            parse_response(br#"{"id":2,"error":{"code":"new_code","message":"m"}}"#).unwrap();
        assert_eq!(unknown.outcome.unwrap_err().code, ErrorCode::Unknown);
        assert!(parse_response(br#"{"id":1}"#).is_err());
        assert!(parse_response(br#"{"id":1,"result":1,"extra":0}"#).is_err());
        assert!(parse_response(br#"{"id":1,"error":{"code":"busy","message":"","x":1}}"#).is_err());
        assert!(
            parse_response(br#"{"id":1,"result":1,"error":{"code":"busy","message":""}}"#).is_err()
        );
    }
}
