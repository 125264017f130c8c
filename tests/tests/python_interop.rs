//! The Python client of `tests/interop/sigil_client.py` against the real
//! server.
//!
//! That client was written from `book/src/protocol.md` alone, in another
//! language and with the standard library only, so these tests check that
//! the chapter is enough to interoperate with sigil: each test starts a real
//! server on 127.0.0.1 port 0, runs the client as a subprocess on a script
//! of operations, and reads the JSON lines it prints.
//!
//! Python is required: without a `python3` (or `$SIGIL_PYTHON`) the tests
//! fail, they are not skipped.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sigil_core::handshake::ClientAuth;
use sigil_core::keys::{KeyFormat, PublicKey, SecretKey, SymmetricKey};
use sigil_core::rand::OsRandom;
use sigil_server::{
    HookDecision, Registry, RunningServer, Server, ServerLimits, ServerSettings, demo,
};

/// The longest a client run may take before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn key() -> SecretKey {
    SecretKey::generate(&mut OsRandom).expect("the system random number generator")
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/sigil_client.py")
}

fn python() -> String {
    std::env::var("SIGIL_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

async fn start(settings: ServerSettings) -> RunningServer {
    let mut registry = Registry::new();
    demo::register(&mut registry);
    Server::new(settings, registry)
        .bind("127.0.0.1:0")
        .await
        .expect("bind a server on 127.0.0.1:0")
}

/// The client's side of a test: its key (in a file), what it pins and binds.
struct Client {
    dir: tempfile::TempDir,
    url: String,
    server_key: PublicKey,
    psk: Option<SymmetricKey>,
    prologue: Option<String>,
    payload: Option<String>,
    extra: Vec<String>,
}

impl Client {
    fn new(server: &RunningServer, key: &SecretKey) -> Client {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            dir.path().join("client.key"),
            key.to_text(KeyFormat::Base64).as_bytes(),
        )
        .expect("write the client key");
        Client {
            dir,
            url: server.url(),
            server_key: server.public_key(),
            psk: None,
            prologue: None,
            payload: None,
            extra: Vec::new(),
        }
    }

    /// Runs the client on `script` (a JSON list of operations).
    async fn run(&self, script: Value) -> Run {
        let mut args: Vec<String> = vec![
            client_script().display().to_string(),
            "--url".into(),
            self.url.clone(),
            "--server-key".into(),
            self.server_key.to_string(),
            "--secret-key-file".into(),
            self.dir.path().join("client.key").display().to_string(),
        ];
        if let Some(psk) = &self.psk {
            let path = self.dir.path().join("psk");
            std::fs::write(&path, psk.to_base64().as_bytes()).expect("write the psk");
            args.extend(["--psk-file".into(), path.display().to_string()]);
        }
        if let Some(prologue) = &self.prologue {
            args.push(format!("--prologue={prologue}"));
        }
        if let Some(payload) = &self.payload {
            args.push(format!("--payload={payload}"));
        }
        args.extend(self.extra.iter().cloned());
        args.push(script.to_string());
        run_python(&args).await
    }
}

/// What a client run printed.
struct Run {
    status: ExitStatus,
    elapsed: Duration,
    events: Vec<Value>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self, event: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == event).collect()
    }

    fn one(&self, event: &str) -> &Value {
        match self.all(event).as_slice() {
            [e] => e,
            found => panic!(
                "expected one {event:?} event, found {}\n{self}",
                found.len()
            ),
        }
    }

    /// The response with this id.
    fn response(&self, id: u64) -> &Value {
        let found: Vec<_> = self
            .all("response")
            .into_iter()
            .filter(|e| e["id"] == id)
            .collect();
        match found.as_slice() {
            [e] => e,
            _ => panic!(
                "expected one response with id {id}, found {}\n{self}",
                found.len()
            ),
        }
    }

    fn result(&self, id: u64) -> &Value {
        let r = self.response(id);
        assert!(r.get("error").is_none(), "call {id} failed: {r}\n{self}");
        &r["result"]
    }

    /// The error code and message of the response with this id.
    fn error(&self, id: u64) -> (&str, &str) {
        let r = self.response(id);
        let code = r["error"]["code"].as_str();
        let message = r["error"]["message"].as_str();
        match (code, message) {
            (Some(code), Some(message)) => (code, message),
            _ => panic!("call {id} did not fail: {r}\n{self}"),
        }
    }

    /// The script ran to its end, with no error event and exit status 0.
    fn assert_done(&self) {
        assert!(
            self.status.success() && self.all("error").is_empty(),
            "the client failed\n{self}"
        );
        assert_eq!(
            self.events.last().map(|e| &e["event"]),
            Some(&json!("done")),
            "{self}"
        );
        for r in self.all("response") {
            assert_eq!(
                r["expected"], true,
                "a response to no call in flight: {r}\n{self}"
            );
        }
    }

    /// The handshake was refused with this code (and the server then closed).
    fn assert_refused(&self, code: u16) -> &str {
        assert!(self.status.success(), "the client failed\n{self}");
        let refused = self.one("refused");
        assert_eq!(refused["code"], code, "{self}");
        assert!(self.all("handshake").is_empty(), "{self}");
        assert_eq!(self.one("closed")["by"], "peer", "{self}");
        refused["reason"].as_str().expect("a reason")
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- client exit: {} after {:?}\n--- stdout:\n{}--- stderr:\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

async fn run_python(args: &[String]) -> Run {
    let python = python();
    let started = std::time::Instant::now();
    let child = tokio::process::Command::new(&python)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {python:?} ({e}): the Python interop tests need Python 3.11 or later \
                 as `python3` on PATH, or set SIGIL_PYTHON to an interpreter"
            )
        });
    // On timeout the child is dropped, and `kill_on_drop` kills it.
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the Python client ran for over {RUN_TIMEOUT:?}: killed"))
        .expect("wait for the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let events = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("the client printed a line that is not JSON ({e}): {line}\n{stderr}")
            })
        })
        .collect();
    Run {
        status: output.status,
        elapsed: started.elapsed(),
        events,
        stdout,
        stderr,
    }
}

/// Runs the clients at once, each on its script; the runs in input order.
async fn run_all(runs: impl IntoIterator<Item = (Client, Value)>) -> Vec<Run> {
    let tasks: Vec<_> = runs
        .into_iter()
        .map(|(client, script)| tokio::spawn(async move { client.run(script).await }))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("a client run"));
    }
    out
}

fn call(object: &str, method: &str, args: Value) -> Value {
    json!({"op": "call", "object": object, "method": method, "args": args})
}

/// A server with the demo objects that accepts exactly `client`.
async fn demo_server(client: &SecretKey) -> RunningServer {
    start(ServerSettings::new(
        key(),
        ClientAuth::Keys(vec![client.public_key()]),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_reproduces_the_test_vectors() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors/sigil1.json");
    let run = run_python(&[
        client_script().display().to_string(),
        "--check-vectors".into(),
        vectors.display().to_string(),
    ])
    .await;
    assert!(run.status.success(), "{run}");
    let summary = run.one("vectors");
    assert_eq!(summary["failures"], 0, "{run}");
    assert!(summary["handshakes"].as_u64() >= Some(4), "{run}");
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_without_psk_prologue_or_payload() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let run = Client::new(&server, &client_key)
        .run(json!([call("sigil", "ping", json!([]))]))
        .await;
    run.assert_done();
    let handshake = run.one("handshake");
    assert_eq!(handshake["payload"], Value::Null, "{run}");
    assert_eq!(
        handshake["session_hash"].as_str().map(str::len),
        Some(64),
        "{run}"
    );
    assert_eq!(run.result(1), "pong", "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_with_psk_prologue_and_payloads() {
    let client_key = key();
    let client_public = client_key.public_key();
    let psk = SymmetricKey::from_bytes(&[0x5a; 32]);
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_public]))
        .with_psk(psk.clone())
        .with_prologue("interop prologue ✓".as_bytes())
        .with_hook(move |info| {
            if *info.client_key != client_public {
                return HookDecision::Refuse("the hook saw another client key".into());
            }
            match info.payload.map(serde_json::from_str::<Value>) {
                Some(Ok(payload)) => {
                    HookDecision::Accept(Some(json!({"welcome": payload["user"]}).to_string()))
                }
                _ => HookDecision::Refuse("the hook saw no JSON payload".into()),
            }
        });
    let server = start(settings).await;
    let mut client = Client::new(&server, &client_key);
    client.psk = Some(psk);
    client.prologue = Some("interop prologue ✓".into());
    client.payload = Some(r#" {"user": "py", "n": [1, 2.5, null]} "#.into());
    let run = client.run(json!([call("sigil", "ping", json!([]))])).await;
    run.assert_done();
    assert_eq!(
        run.one("handshake")["payload"],
        json!({"welcome": "py"}),
        "{run}"
    );
    assert_eq!(run.result(1), "pong", "{run}");

    // Each of psk and prologue on its own is checked: a mismatch is code 1.
    let mut no_psk = Client::new(&server, &client_key);
    no_psk.prologue = Some("interop prologue ✓".into());
    let run = no_psk.run(json!([])).await;
    assert_eq!(run.assert_refused(1), "handshake failed", "{run}");

    let mut wrong_prologue = Client::new(&server, &client_key);
    wrong_prologue.psk = Some(SymmetricKey::from_bytes(&[0x5a; 32]));
    wrong_prologue.prologue = Some("interop prologue".into());
    let run = wrong_prologue.run(json!([])).await;
    assert_eq!(run.assert_refused(1), "handshake failed", "{run}");

    let mut wrong_psk = Client::new(&server, &client_key);
    wrong_psk.psk = Some(SymmetricKey::from_bytes(&[0x5b; 32]));
    wrong_psk.prologue = Some("interop prologue ✓".into());
    let run = wrong_psk.run(json!([])).await;
    assert_eq!(run.assert_refused(1), "handshake failed", "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calculator_and_builtin_object() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let run = Client::new(&server, &client_key)
        .run(json!([
            call("calculator", "add", json!([1, 2])),
            call("calculator", "sub", json!([5, 8])),
            call("calculator", "mul", json!([6, 7])),
            call("calculator", "div", json!([7, 2])),
            call("calculator", "div", json!([8, 2])),
            call("calculator", "add", json!([1.5, 2])),
            call("calculator", "div", json!([1, 0])),
            call("sigil", "ping", json!([])),
            call("sigil", "objects", json!([])),
            call("echo", "echo", json!([{"nested": ["ü", 1, null, true]}])),
            call("kv", "set", json!(["py", "thon"])),
            call("kv", "get", json!(["py"])),
        ]))
        .await;
    run.assert_done();
    assert_eq!(run.result(1), &json!(3), "{run}");
    assert_eq!(run.result(2), &json!(-3), "{run}");
    assert_eq!(run.result(3), &json!(42), "{run}");
    assert_eq!(run.result(4), &json!(3.5), "{run}");
    assert_eq!(run.result(5), &json!(4), "{run}");
    assert_eq!(run.result(6), &json!(3.5), "{run}");
    let (code, message) = run.error(7);
    assert_eq!(code, "application_error", "{run}");
    assert!(message.contains("division by zero"), "{run}");
    assert_eq!(run.result(8), "pong", "{run}");
    assert_eq!(
        run.result(9),
        &json!({
            "calculator": ["add", "div", "mul", "sub"],
            "clock": ["sleep", "ticker"],
            "echo": ["echo", "repeat"],
            "kv": ["delete", "get", "set", "watch"],
            "session": ["count", "whoami"],
            "sigil": ["objects", "ping"],
        }),
        "{run}"
    );
    assert_eq!(
        run.result(10),
        &json!({"nested": ["ü", 1, null, true]}),
        "{run}"
    );
    assert_eq!(run.result(11), &Value::Null, "{run}");
    assert_eq!(run.result(12), "thon", "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_errors() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let run = Client::new(&server, &client_key)
        .run(json!([
            call("nothing", "add", json!([1, 2])),
            call("calculator", "pow", json!([2, 3])),
            call("calculator", "add", json!(["one", 2])),
            call("calculator", "add", json!([1])),
            call("calculator.add", "add", json!([1, 2])),
            call("calculator", "add.x", json!([1, 2])),
            call("sigil", "ping", json!([1])),
            call("1calculator", "add", json!([1, 2])),
            // Not JSON: answered with id 0.
            {"op": "raw", "text": "{not json", "await_id": 0},
            // An unknown member: answered with the request's id.
            {"op": "raw", "text": r#"{"id":77,"object":"sigil","method":"ping","args":[],"x":1}"#, "await_id": 77},
            // An empty frame carries no RPC message; the session goes on.
            {"op": "raw", "text": ""},
            {"op": "silence", "ms": 200},
            call("sigil", "ping", json!([])),
        ]))
        .await;
    assert!(run.status.success(), "{run}");
    assert_eq!(
        run.events.last().map(|e| &e["event"]),
        Some(&json!("done")),
        "{run}"
    );
    assert_eq!(run.error(1).0, "no_such_object", "{run}");
    assert_eq!(run.error(2).0, "no_such_method", "{run}");
    assert_eq!(run.error(3).0, "invalid_arguments", "{run}");
    assert_eq!(run.error(4).0, "invalid_arguments", "{run}");
    for id in [5, 6] {
        let (code, message) = run.error(id);
        assert_eq!(code, "invalid_request", "{run}");
        assert!(message.contains("dotted names are not allowed"), "{run}");
    }
    assert_eq!(run.error(7).0, "invalid_arguments", "{run}");
    assert_eq!(run.error(8).0, "invalid_request", "{run}");
    assert_eq!(run.error(0).0, "invalid_request", "{run}");
    assert_eq!(run.error(77).0, "invalid_request", "{run}");
    assert_eq!(run.result(9), "pong", "{run}");
    // Only these responses: nothing for the empty frame.
    assert_eq!(run.all("response").len(), 11, "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn several_calls_in_flight() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let mut script: Vec<Value> = (1..=20)
        .map(|i| json!({"op": "call", "object": "calculator", "method": "mul", "args": [i, 1000], "wait": false}))
        .collect();
    script.push(json!({"op": "wait"}));
    let run = Client::new(&server, &client_key)
        .run(Value::Array(script))
        .await;
    run.assert_done();
    // All were sent before any response was read.
    let sent_last = run
        .events
        .iter()
        .rposition(|e| e["event"] == "sent")
        .expect("sent events");
    let first_response = run
        .events
        .iter()
        .position(|e| e["event"] == "response")
        .expect("responses");
    assert!(sent_last < first_response, "{run}");
    for i in 1..=20u64 {
        assert_eq!(run.result(i), &json!(i * 1000), "{run}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oneway_calls_get_no_response() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let run = Client::new(&server, &client_key)
        .run(json!([
            {"op": "call", "object": "kv", "method": "set", "args": ["oneway", "done"], "oneway": true},
            // Not even an error for a valid oneway request that fails.
            {"op": "call", "object": "nothing", "method": "x", "args": [], "oneway": true},
            {"op": "call", "object": "calculator", "method": "div", "args": [1, 0], "oneway": true},
            call("kv", "get", json!(["oneway"])),
            {"op": "silence", "ms": 300},
        ]))
        .await;
    run.assert_done();
    assert_eq!(run.result(4), "done", "{run}");
    assert_eq!(run.all("response").len(), 1, "{run}");
    server.shutdown().await;
}

/// The chapter's cancel message: the server stops the call and never
/// answers it; a call past the server's deadline is answered `timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_calls_get_no_response_and_slow_ones_time_out() {
    let client_key = key();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]))
        .with_server_limits(ServerLimits {
            call_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        });
    let mut registry = Registry::new();
    demo::register(&mut registry);
    let server = Server::new(settings, registry)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let run = Client::new(&server, &client_key)
        .run(json!([
            {"op": "call", "object": "clock", "method": "sleep", "args": [200], "wait": false},
            {"op": "cancel", "id": 1},
            {"op": "silence", "ms": 400},
            {"op": "call", "object": "clock", "method": "sleep", "args": [5000]},
            call("sigil", "ping", json!([])),
        ]))
        .await;
    run.assert_done();
    assert_eq!(run.all("cancelled").len(), 1, "{run}");
    // Nothing ever came for call 1, though it would have ended in 200 ms.
    assert!(run.all("response").iter().all(|r| r["id"] != 1), "{run}");
    assert_eq!(run.error(2).0, "timeout", "{run}");
    assert_eq!(run.result(3), "pong", "{run}");
    server.shutdown().await;
}

/// The chapter's streams: items within the window, credit, the end, an
/// error at open, a cancel after some items, and a client that grants no
/// more credit gets exactly its window and then nothing.
#[tokio::test(flavor = "multi_thread")]
async fn streams_with_credit_cancel_and_errors() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let run = Client::new(&server, &client_key)
        .run(json!([
            {"op": "stream", "object": "clock", "method": "ticker", "args": [40, 10], "window": 4},
            {"op": "stream", "object": "clock", "method": "ticker", "args": [10001, 10]},
            {"op": "stream", "object": "clock", "method": "ticker", "args": [1000, 10], "cancel_after": 3},
            {"op": "stream", "object": "clock", "method": "ticker", "args": [1000, 10], "window": 5, "grant": false},
            {"op": "silence", "ms": 300},
            call("sigil", "ping", json!([])),
        ]))
        .await;
    run.assert_done();
    let items = |id: u64| -> Vec<Value> {
        run.all("item")
            .iter()
            .filter(|e| e["id"] == id)
            .map(|e| e["value"].clone())
            .collect()
    };
    // Stream 1: all 40 ticks in order, the window refilled by credit 2 at a time.
    assert_eq!(
        items(1),
        (0..40).map(|i| json!(i)).collect::<Vec<_>>(),
        "{run}"
    );
    assert!(
        run.all("end")
            .iter()
            .any(|e| e["id"] == 1 && e["expected"] == true),
        "{run}"
    );
    let credits = run.all("credit");
    assert!(
        credits.iter().filter(|c| c["id"] == 1).all(|c| c["n"] == 2),
        "{run}"
    );
    // Stream 2: refused at open with invalid_arguments.
    assert_eq!(run.error(2).0, "invalid_arguments", "{run}");
    // Stream 3: cancelled after 3 items; anything already on the wire is
    // unexpected, and no end comes.
    assert!(items(3).len() >= 3, "{run}");
    assert!(run.all("end").iter().all(|e| e["id"] != 3), "{run}");
    // Stream 4: exactly its window of 5, nothing more while no credit comes.
    assert_eq!(items(4).len(), 5, "{run}");
    assert_eq!(run.result(5), "pong", "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_ping_and_close() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let run = Client::new(&server, &client_key)
        .run(json!([
            {"op": "ws_ping"},
            call("sigil", "ping", json!([])),
            {"op": "close"},
        ]))
        .await;
    run.assert_done();
    run.one("pong");
    assert_eq!(run.result(1), "pong", "{run}");
    // The server ends the connection; RFC 6455 wants a close frame in
    // answer to ours, but the chapter calls the close informative only, so
    // the end of the stream is accepted too.
    let closed = run.one("closed");
    assert_eq!(closed["by"], "us", "{run}");
    assert!(
        closed["how"] == "close_frame" || closed["how"] == "eof",
        "{run}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fragmented_websocket_messages() {
    // Every message the client sends (message 1 and the frames) is split
    // into WebSocket frames of 7 bytes, with a ping after the first one:
    // the server must reassemble them (chapter: "WebSocket binding").
    let client_key = key();
    let server = demo_server(&client_key).await;
    let mut client = Client::new(&server, &client_key);
    client.extra = vec!["--fragment=7".into()];
    client.payload = Some(r#"{"fragmented": true}"#.into());
    let run = client
        .run(json!([
            call(
                "echo",
                "echo",
                json!(["a message in many WebSocket frames"])
            ),
            call("calculator", "add", json!([20, 22])),
        ]))
        .await;
    run.assert_done();
    assert_eq!(run.result(1), "a message in many WebSocket frames", "{run}");
    assert_eq!(run.result(2), &json!(42), "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_server_key_is_refused_with_code_1() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let mut client = Client::new(&server, &client_key);
    client.server_key = key().public_key();
    let run = client.run(json!([])).await;
    assert_eq!(run.assert_refused(1), "handshake failed", "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorised_client_key_is_refused_with_code_1() {
    let client_key = key();
    let server = demo_server(&key()).await;
    let run = Client::new(&server, &client_key).run(json!([])).await;
    assert_eq!(run.assert_refused(1), "handshake failed", "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hook_refusal_and_bad_payload_are_code_2() {
    let client_key = key();
    let settings =
        ServerSettings::new(key(), ClientAuth::AllowAny).with_hook(|info| match info.payload {
            Some(p) if p.contains("let me in") => HookDecision::Accept(None),
            _ => HookDecision::Refuse("no entry for snakes".into()),
        });
    let server = start(settings).await;

    let mut refused = Client::new(&server, &client_key);
    refused.payload = Some(r#"{"please": true}"#.into());
    let run = refused.run(json!([])).await;
    assert_eq!(run.assert_refused(2), "no entry for snakes", "{run}");

    let mut not_json = Client::new(&server, &client_key);
    not_json.payload = Some("let me in".into());
    let run = not_json.run(json!([])).await;
    assert_eq!(
        run.assert_refused(2),
        "handshake payload is not valid JSON",
        "{run}"
    );

    let mut accepted = Client::new(&server, &client_key);
    accepted.payload = Some(r#""let me in""#.into());
    let run = accepted
        .run(json!([call("sigil", "ping", json!([]))]))
        .await;
    run.assert_done();
    assert_eq!(run.one("handshake")["payload"], Value::Null, "{run}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_hello_and_stale_timestamps_are_code_5() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let run = Client::new(&server, &client_key)
        .run(json!([{"op": "replay_hello"}, call("sigil", "ping", json!([]))]))
        .await;
    run.assert_done();
    assert_eq!(run.one("replay")["refused"], true, "{run}");
    assert_eq!(run.one("replay")["code"], 5, "{run}");
    // The first session is untouched by the replay.
    assert_eq!(run.result(1), "pong", "{run}");

    for offset in ["-120000", "120000"] {
        let mut skewed = Client::new(&server, &client_key);
        skewed.extra = vec![format!("--clock-offset-ms={offset}")];
        let run = skewed.run(json!([])).await;
        run.assert_refused(5);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_or_replayed_frame_closes_the_connection() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let mut cases: Vec<(String, Value)> = ["type", "seq", "length", "payload", "tag"]
        .into_iter()
        .map(|field| {
            let op = json!({"op": "tamper", "field": field, "object": "sigil", "method": "ping", "args": []});
            (field.to_owned(), op)
        })
        .collect();
    // A single bit in the middle of the JSON payload (byte 20).
    cases.push((
        "bit 163".into(),
        json!({"op": "tamper", "bit": 163, "object": "sigil", "method": "ping", "args": []}),
    ));
    cases.push(("replayed frame".into(), json!({"op": "replay_frame"})));
    let runs = run_all(cases.iter().map(|(_, op)| {
        let script = json!([call("sigil", "ping", json!([])), op]);
        (Client::new(&server, &client_key), script)
    }))
    .await;
    for ((name, _), run) in cases.iter().zip(runs) {
        assert!(run.status.success(), "{name}: {run}");
        assert_eq!(run.result(1), "pong", "{name}: {run}");
        // No response to the bad frame, then the server closed.
        assert_eq!(run.all("response").len(), 1, "{name}: {run}");
        assert!(run.all("unexpected_message").is_empty(), "{name}: {run}");
        assert_eq!(run.one("closed")["by"], "peer", "{name}: {run}");
        run.one("done");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_hellos_are_refused_in_the_chapters_order() {
    let client_key = key();
    let server = demo_server(&client_key).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis();
    let now = u64::try_from(now).expect("a 64-bit timestamp");
    // type, version, EC, C, timestamp, n, payload, tag1
    let hello = |version: &str, ts: u64, n: u32, rest: usize| {
        format!(
            "01{version}{}{}{ts:016x}{n:08x}{}",
            "00".repeat(32),
            "11".repeat(32),
            "00".repeat(rest)
        )
    };
    let cases = [
        ("empty message", String::new(), 1, Some("handshake failed")),
        (
            "a frame first",
            format!("10{}", "00".repeat(44)),
            1,
            Some("handshake failed"),
        ),
        ("version 2", hello("02", now, 0, 32), 4, None),
        ("short", "0101".to_owned(), 1, Some("handshake failed")),
        (
            "too large",
            hello("01", now, 5000, 32),
            1,
            Some("handshake payload too large"),
        ),
        // Step 5 (exact length) comes before step 6 (timestamp).
        (
            "trailing byte",
            hello("01", 0, 0, 33),
            1,
            Some("handshake failed"),
        ),
        ("stale", hello("01", 0, 0, 32), 5, None),
        // EC is the all-zero (low-order) point: DH aborts at step 7.
        (
            "low-order EC",
            hello("01", now, 0, 32),
            1,
            Some("handshake failed"),
        ),
    ];
    let runs = run_all(cases.iter().map(|(_, hex, _, _)| {
        let mut client = Client::new(&server, &client_key);
        client.extra = vec![format!("--hello-hex={hex}")];
        (client, json!([]))
    }))
    .await;
    for ((name, _, code, reason), run) in cases.into_iter().zip(runs) {
        let got = run.assert_refused(code);
        if let Some(reason) = reason {
            assert_eq!(got, reason, "{name}: {run}");
        }
    }

    // After the handshake: a text message, or a second ClientHello, closes.
    let ops = [
        json!({"op": "ws_text", "text": r#"{"id":1,"object":"sigil","method":"ping","args":[]}"#}),
        json!({"op": "ws_binary", "hex": hello("01", now, 0, 32)}),
    ];
    let runs = run_all(
        ops.into_iter()
            .map(|op| (Client::new(&server, &client_key), json!([op]))),
    )
    .await;
    for run in runs {
        assert!(run.status.success(), "{run}");
        run.one("handshake");
        assert_eq!(run.one("closed")["by"], "peer", "{run}");
        assert!(run.all("response").is_empty(), "{run}");
        run.one("done");
    }
    server.shutdown().await;
}
