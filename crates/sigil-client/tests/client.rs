//! The client against the real sigil-server over loopback sockets, and
//! against a hostile server for the transport faults the real one never
//! commits.

mod common;

use std::time::{Duration, Instant};

use common::hostile::{Hostile, Peer, result};
use common::{Real, assert_connection_error, demo_registry, fresh_key, outcome, spawn_call};
use serde_json::Value;
use sigil_client::{
    Client, ClientError, ClientOptions, ConnectError, ErrorCode, Limits, RefusalCode,
};
use sigil_server::{CallContext, HookDecision, NoArgs, RpcError};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn calls_results_and_remote_errors() {
    let mut registry = demo_registry();
    registry
        .object("test")
        .method_with_context("handshake", |cx: &CallContext, _: NoArgs| {
            Ok::<_, RpcError>((cx.payload.clone(), cx.session_hash))
        });
    let real = Real::start_with(registry, |s| {
        s.with_hook(|_| HookDecision::Accept(Some(r#"{"motd":"hi"}"#.into())))
    })
    .await;
    let client = Client::connect(
        &real.url(),
        real.options().with_payload(r#"{"user":"alice"}"#),
    )
    .await
    .expect("connect");
    let (payload, session_hash): (Option<String>, [u8; 32]) = client
        .call("test", "handshake", ())
        .await
        .expect("handshake");
    assert_eq!(payload.as_deref(), Some(r#"{"user":"alice"}"#));
    assert_eq!(client.session_hash(), session_hash);
    assert_eq!(client.server_payload(), Some(r#"{"motd":"hi"}"#));

    let sum: f64 = client.call("calculator", "add", (1, 2)).await.expect("add");
    assert_eq!(sum, 3.0);
    let sum: f64 = client
        .call("calculator", "add", vec![0.5, 0.25])
        .await
        .expect("add");
    assert_eq!(sum, 0.75);
    let raw = client
        .call_raw("echo", "echo", [serde_json::json!({"a": [1, 2]})])
        .await
        .expect("echo");
    assert_eq!(raw.get(), r#"{"a":[1,2]}"#);

    let err = client
        .call::<f64>("calculator", "div", (1, 0))
        .await
        .expect_err("division by zero");
    assert_eq!(err.rpc_code(), Some(ErrorCode::ApplicationError));
    assert_eq!(err.refusal_code(), None);
    assert!(err.to_string().contains("division by zero"), "{err}");
    let err = client
        .call::<Value>("nothing", "here", ())
        .await
        .expect_err("no such object");
    assert_eq!(err.rpc_code(), Some(ErrorCode::NoSuchObject));
    // The connection is still good after remote errors.
    let sum: f64 = client.call("calculator", "add", (2, 2)).await.expect("add");
    assert_eq!(sum, 4.0);
    client.close().await;
    real.stop().await;
}

#[tokio::test]
async fn concurrent_calls_match_out_of_order_responses() {
    let (real, mut gates) = Real::with_gates().await;
    let client = real.connect().await;
    let mut calls = Vec::new();
    for i in 0..8 {
        calls.push((i, gates.hold(&client, i).await));
    }
    // All 8 are in flight; each is let go only once the one after it has
    // been answered, so the responses come in reverse order.
    for (i, call) in calls.into_iter().rev() {
        gates.open(i);
        assert_eq!(outcome(call).await.expect("wait"), i);
    }
    real.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_client() {
    let real = Real::start().await;
    let client = real.connect().await;
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u32 {
                let sum: f64 = client.call("calculator", "add", (t, i)).await.expect("add");
                assert_eq!(sum, f64::from(t + i));
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("calls finish")
            .expect("task");
    }
    real.stop().await;
}

#[tokio::test]
async fn oneway_calls_get_no_response() {
    let real = Real::start().await;
    let client = real.connect().await;
    for _ in 0..3 {
        client.oneway("session", "count", ()).await.expect("oneway");
    }
    // Frames are ordered: this call runs after the three oneway ones.
    let count: u64 = client.call("session", "count", ()).await.expect("count");
    assert_eq!(count, 4);
    real.stop().await;
}

#[tokio::test]
async fn fail_refusal_code_2_is_reported() {
    let real = Real::start_with(demo_registry(), |s| {
        s.with_hook(|_| HookDecision::Refuse("not on the guest list".into()))
    })
    .await;
    let err = Client::connect(&real.url(), real.options())
        .await
        .expect_err("refused");
    assert_eq!(err.refusal_code(), Some(2));
    match &err {
        ClientError::Refused { code, reason } => {
            assert_eq!(*code, RefusalCode::Rejected);
            assert_eq!(reason, "not on the guest list");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(err.to_string().contains("not on the guest list"));
    real.stop().await;
}

#[tokio::test]
async fn fail_wrong_pinned_key_is_refused_generically() {
    let real = Real::start().await;
    let other = fresh_key().public_key();
    let err = Client::connect(
        &real.url(),
        ClientOptions::new(real.keys.client_secret(), other),
    )
    .await
    .expect_err("wrong key");
    assert_eq!(err.refusal_code(), Some(1), "{err}");
    assert!(
        err.to_string().contains("check the pinned server key"),
        "{err}"
    );
    // A client key the server does not authorise is refused the same way.
    let err = Client::connect(
        &real.url(),
        ClientOptions::new(fresh_key(), real.keys.server_key),
    )
    .await
    .expect_err("unauthorised client");
    assert_eq!(err.refusal_code(), Some(1), "{err}");
    real.stop().await;
}

#[tokio::test]
async fn fail_psk_mismatch_and_success_with_psk_and_prologue() {
    let psk = sigil_client::SymmetricKey::from_bytes(&[7; 32]);
    let server_psk = psk.clone();
    let real = Real::start_with(demo_registry(), |s| {
        s.with_psk(server_psk).with_prologue(b"app v1")
    })
    .await;
    let client = Client::connect(
        &real.url(),
        real.options()
            .with_psk(psk.clone())
            .with_prologue(&b"app v1"[..]),
    )
    .await
    .expect("connect with psk and prologue");
    let sum: f64 = client.call("calculator", "add", (1, 1)).await.expect("add");
    assert_eq!(sum, 2.0);

    let err = Client::connect(&real.url(), real.options().with_psk(psk))
        .await
        .expect_err("prologue missing");
    assert_eq!(err.refusal_code(), Some(1));
    let err = Client::connect(&real.url(), real.options().with_prologue(&b"app v1"[..]))
        .await
        .expect_err("psk missing");
    assert_eq!(err.refusal_code(), Some(1));
    real.stop().await;
}

#[tokio::test]
async fn fail_tampered_server_hello_is_a_handshake_failure() {
    let server = Hostile::start().await;
    let url = server.url();
    let (err, _peer) = tokio::join!(Client::connect(&url, server.options()), server.accept(true));
    let err = err.expect_err("tampered");
    assert!(matches!(err, ClientError::Handshake), "{err:?}");
    assert_eq!(err.refusal_code(), None);
}

/// Starts a call and waits for it at the hostile server: the call's task,
/// and its id.
async fn call_in_flight(
    client: &Client,
    peer: &mut Peer,
) -> (JoinHandle<Result<Value, ClientError>>, u64) {
    let call = spawn_call(client, "any", "thing", ());
    (call, peer.request().await.id)
}

#[tokio::test]
async fn fail_tampered_frame_fails_every_pending_call() {
    let server = Hostile::start().await;
    let (client, mut peer) = server.connect(server.options()).await;
    let mut hanging = Vec::new();
    for _ in 0..3 {
        hanging.push(call_in_flight(&client, &mut peer).await.0);
    }
    let (call, id) = call_in_flight(&client, &mut peer).await;
    let mut frame = peer.seal(&result(id, r#""ok""#));
    // Flip a bit of the payload: the tag no longer matches.
    frame[20] ^= 0x01;
    peer.send(Message::binary(frame)).await;
    assert_connection_error(outcome(call).await);
    for h in hanging {
        assert_connection_error(outcome(h).await);
    }
    assert_connection_error(client.call::<f64>("calculator", "add", (1, 2)).await);
    assert!(client.is_closed());
}

#[tokio::test]
async fn fail_text_message_closes_the_connection() {
    let server = Hostile::start().await;
    let (client, mut peer) = server.connect(server.options()).await;
    let (call, _) = call_in_flight(&client, &mut peer).await;
    peer.send(Message::text("hello")).await;
    assert_connection_error(outcome(call).await);
    assert_connection_error(client.call::<f64>("calculator", "add", (1, 2)).await);
}

#[tokio::test]
async fn fail_payload_that_is_not_a_response_closes_the_connection() {
    let server = Hostile::start().await;
    let (client, mut peer) = server.connect(server.options()).await;
    let (call, _) = call_in_flight(&client, &mut peer).await;
    peer.send_sealed(br#"{"not":"a response"}"#).await;
    let err = outcome(call).await.expect_err("garbage");
    assert!(
        err.to_string().contains("invalid response from the server"),
        "{err}"
    );
    assert_connection_error(client.call::<f64>("calculator", "add", (1, 2)).await);
}

/// Frames of at most 1024 bytes.
fn small() -> Limits {
    Limits {
        max_message_size: 1024,
        ..Limits::default()
    }
}

#[tokio::test]
async fn fail_oversized_frame_closes_the_connection() {
    let server = Hostile::start().await;
    let (client, mut peer) = server.connect(server.options().with_limits(small())).await;
    let (call, id) = call_in_flight(&client, &mut peer).await;
    let big = format!(r#""{}""#, "x".repeat(64 * 1024));
    peer.send_sealed(&result(id, &big)).await;
    assert_connection_error(outcome(call).await);
}

#[tokio::test]
async fn fail_oversized_request_is_refused_locally() {
    // Our own requests are held to the same limit, locally.
    let real = Real::start().await;
    let client = real.connect().await;
    let long = "y".repeat(2000);
    let small = Client::connect(&real.url(), real.options().with_limits(small()))
        .await
        .expect("connect");
    let err = small
        .call::<Value>("echo", "echo", [&long])
        .await
        .expect_err("too large");
    assert!(matches!(err, ClientError::InvalidArguments(_)), "{err:?}");
    let echoed: String = client.call("echo", "echo", [&long]).await.expect("echo");
    assert_eq!(echoed, long);
    real.stop().await;
}

#[tokio::test]
async fn unknown_ids_and_empty_frames_are_ignored() {
    let server = Hostile::start().await;
    let (client, mut peer) = server.connect(server.options()).await;
    let (call, id) = call_in_flight(&client, &mut peer).await;
    peer.send_sealed(&result(u64::MAX, r#""stray""#)).await;
    peer.send_sealed(&result(id, r#""ok""#)).await;
    assert_eq!(outcome(call).await.expect("call"), "ok");
    let (call, id) = call_in_flight(&client, &mut peer).await;
    peer.send_sealed(b"").await;
    peer.send_sealed(&result(id, r#""ok""#)).await;
    assert_eq!(outcome(call).await.expect("call"), "ok");
    let (call, id) = call_in_flight(&client, &mut peer).await;
    peer.send_sealed(&result(id, "3")).await;
    assert_eq!(outcome(call).await.expect("call"), 3);
}

/// Calls the client refuses without sending anything.
async fn assert_bad_calls_refused_locally(client: &Client) {
    let err = client
        .call::<Value>("calculator", "add", 5)
        .await
        .expect_err("not an array");
    assert!(matches!(err, ClientError::InvalidArguments(_)), "{err:?}");
    let err = client
        .call::<Value>("os.path", "join", ())
        .await
        .expect_err("dotted");
    assert!(
        err.to_string().contains("dotted names are not allowed"),
        "{err}"
    );
    let err = client
        .oneway("calculator", "", ())
        .await
        .expect_err("empty name");
    assert!(matches!(err, ClientError::InvalidArguments(_)), "{err:?}");
}

#[tokio::test]
async fn fail_bad_calls_are_refused_locally() {
    let real = Real::start().await;
    let client = real.connect().await;
    assert_bad_calls_refused_locally(&client).await;
    let err = client
        .call::<String>("calculator", "add", (1, 2))
        .await
        .expect_err("a number is not a string");
    assert!(matches!(err, ClientError::InvalidResult(_)), "{err:?}");
    real.stop().await;
}

#[tokio::test]
async fn fail_bad_calls_never_reach_the_server() {
    let server = Hostile::start().await;
    let (client, mut peer) = server.connect(server.options()).await;
    assert_bad_calls_refused_locally(&client).await;
    let call = spawn_call::<f64>(&client, "calculator", "add", (1, 2));
    // The first request the server sees is the good one.
    let request = peer.request().await;
    assert_eq!(
        (
            request.object.as_str(),
            request.method.as_str(),
            request.oneway
        ),
        ("calculator", "add", false)
    );
    peer.send_sealed(&result(request.id, "3")).await;
    assert_eq!(outcome(call).await.expect("add"), 3.0);
}

#[tokio::test]
async fn fail_server_without_the_subprotocol() {
    let server = Hostile::start().await;
    let url = server.url();
    for subprotocol in [None, Some("other.v9")] {
        let (err, _ws) = tokio::join!(
            Client::connect(&url, server.options()),
            server.upgrade(subprotocol)
        );
        let err = err.expect_err("no sigil.v1 subprotocol");
        assert!(
            matches!(
                err,
                ClientError::Connect {
                    cause: ConnectError::NoSubprotocol,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("sigil.v1"), "{err}");
    }
}

#[tokio::test]
async fn fail_wrong_path_and_bad_urls() {
    let real = Real::start().await;
    let addr = real.server.local_addr();
    let url = format!("ws://{addr}/elsewhere");
    let err = Client::connect(&url, real.options())
        .await
        .expect_err("404");
    assert!(
        matches!(
            err,
            ClientError::Connect {
                cause: ConnectError::UpgradeRefused { status: 404, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("404"), "{err}");
    assert!(err.to_string().contains("/sigil"), "{err}");

    let url = format!("http://{addr}/sigil");
    let err = Client::connect(&url, real.options())
        .await
        .expect_err("http");
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    let err = Client::connect("not a url", real.options())
        .await
        .expect_err("garbage");
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    real.stop().await;
}

#[tokio::test]
async fn fail_connection_refused() {
    // Bind, note the port, and close the listener: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = Client::connect(
        &format!("ws://{addr}/sigil"),
        ClientOptions::new(fresh_key(), fresh_key().public_key()),
    )
    .await
    .expect_err("nothing listens");
    match err {
        ClientError::Connect {
            cause: ConnectError::Tcp(e),
            ..
        } => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fail_silent_server_times_out() {
    let server = Hostile::start().await;
    let url = server.url();
    let started = Instant::now();
    // The server reads message 1 and never answers.
    let (err, _silent) = tokio::join!(
        Client::connect(
            &url,
            server
                .options()
                .with_handshake_timeout(Duration::from_millis(200)),
        ),
        server.hello()
    );
    let err = err.expect_err("timeout");
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn close_ends_the_connection_for_every_clone() {
    let real = Real::start().await;
    let client = real.connect().await;
    let clone = client.clone();
    let sum: f64 = client.call("calculator", "add", (1, 2)).await.expect("add");
    assert_eq!(sum, 3.0);
    client.close().await;
    assert!(clone.is_closed());
    assert_connection_error(clone.call::<f64>("calculator", "add", (1, 2)).await);
    clone.close().await; // closing again is harmless
    real.wait_idle().await;
    real.stop().await;
}

#[tokio::test]
async fn close_and_drop_send_a_normal_websocket_close() {
    let server = Hostile::start().await;
    let (client, peer) = server.connect(server.options()).await;
    let ((), code) = tokio::join!(client.close(), peer.close_code());
    assert_eq!(code, Some(1000));

    let (client, peer) = server.connect(server.options()).await;
    let clone = client.clone();
    drop(client);
    drop(clone);
    assert_eq!(peer.close_code().await, Some(1000));
}

#[tokio::test]
async fn close_fails_calls_in_flight() {
    let (real, mut gates) = Real::with_gates().await;
    let client = real.connect().await;
    let pending = gates.hold(&client, 0).await;
    client.close().await;
    assert_connection_error(outcome(pending).await);
    real.stop().await;
}

#[tokio::test]
async fn dropping_every_clone_closes_the_connection() {
    let real = Real::start().await;
    let client = real.connect().await;
    let clone = client.clone();
    drop(client);
    let sum: f64 = clone.call("calculator", "add", (1, 2)).await.expect("add");
    assert_eq!(sum, 3.0);
    drop(clone);
    real.wait_idle().await;
    real.stop().await;
}

#[tokio::test]
async fn server_closing_fails_calls() {
    let (real, mut gates) = Real::with_gates().await;
    let client = real.connect().await;
    let pending = gates.hold(&client, 0).await;
    // Shutting down closes every session, this call still in flight.
    real.stop().await;
    assert_connection_error(outcome(pending).await);
    assert_connection_error(client.call::<f64>("calculator", "add", (1, 2)).await);
    assert!(client.is_closed());
}
