//! The client against a small in-test sigil/1 server over loopback sockets.

mod common;

use std::time::Duration;

use common::{Behavior, Event, TestServer};
use serde_json::Value;
use sigil_client::{
    Client, ClientError, ClientOptions, ConnectError, ErrorCode, Limits, RefusalCode, SecretKey,
};
use sigil_core::OsRandom;

async fn connect(server: &TestServer) -> Client {
    Client::connect(&server.url(), server.options())
        .await
        .expect("connect")
}

fn assert_connection_error<T: std::fmt::Debug>(result: Result<T, ClientError>) {
    match result {
        Err(ClientError::Connection(_)) => {}
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[tokio::test]
async fn calls_results_and_remote_errors() {
    let mut server = TestServer::start(Behavior {
        payload: Some(r#"{"motd":"hi"}"#.into()),
        ..Behavior::default()
    })
    .await;
    let client = Client::connect(
        &server.url(),
        server.options().with_payload(r#"{"user":"alice"}"#),
    )
    .await
    .expect("connect");
    let Event::Hello {
        payload,
        session_hash,
    } = server.event().await
    else {
        panic!("expected a hello");
    };
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
}

#[tokio::test]
async fn concurrent_calls_match_out_of_order_responses() {
    // The server holds 8 responses and sends them in reverse order.
    let server = TestServer::start(Behavior {
        batch: 8,
        ..Behavior::default()
    })
    .await;
    let client = connect(&server).await;
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let got: u64 = client.call("echo", "echo", [i]).await.expect("echo");
            assert_eq!(got, i);
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("calls finish")
            .expect("task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_client() {
    let server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
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
}

#[tokio::test]
async fn oneway_calls_get_no_response() {
    let server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    for _ in 0..3 {
        client.oneway("counter", "incr", ()).await.expect("oneway");
    }
    // Frames are ordered: the get runs after the three increments.
    let count: u64 = client.call("counter", "get", ()).await.expect("get");
    assert_eq!(count, 3);
}

#[tokio::test]
async fn fail_refusal_code_2_is_reported() {
    let server = TestServer::start(Behavior {
        refuse: Some("not on the guest list".into()),
        ..Behavior::default()
    })
    .await;
    let err = Client::connect(&server.url(), server.options())
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
}

#[tokio::test]
async fn fail_wrong_pinned_key_is_refused_generically() {
    let server = TestServer::start(Behavior::default()).await;
    let other = SecretKey::generate(&mut OsRandom)
        .expect("random")
        .public_key();
    let err = Client::connect(
        &server.url(),
        ClientOptions::new(server.client_secret(), other),
    )
    .await
    .expect_err("wrong key");
    assert_eq!(err.refusal_code(), Some(1), "{err}");
    assert!(
        err.to_string().contains("check the pinned server key"),
        "{err}"
    );
}

#[tokio::test]
async fn fail_psk_mismatch_and_success_with_psk_and_prologue() {
    let server = TestServer::start(Behavior {
        psk: Some([7; 32]),
        prologue: b"app v1".to_vec(),
        ..Behavior::default()
    })
    .await;
    let psk = sigil_client::SymmetricKey::from_bytes(&[7; 32]);
    let client = Client::connect(
        &server.url(),
        server
            .options()
            .with_psk(psk.clone())
            .with_prologue(&b"app v1"[..]),
    )
    .await
    .expect("connect with psk and prologue");
    let sum: f64 = client.call("calculator", "add", (1, 1)).await.expect("add");
    assert_eq!(sum, 2.0);

    let err = Client::connect(&server.url(), server.options().with_psk(psk))
        .await
        .expect_err("prologue missing");
    assert_eq!(err.refusal_code(), Some(1));
    let err = Client::connect(
        &server.url(),
        server.options().with_prologue(&b"app v1"[..]),
    )
    .await
    .expect_err("psk missing");
    assert_eq!(err.refusal_code(), Some(1));
}

#[tokio::test]
async fn fail_tampered_server_hello_is_a_handshake_failure() {
    let server = TestServer::start(Behavior {
        tamper_hello: true,
        ..Behavior::default()
    })
    .await;
    let err = Client::connect(&server.url(), server.options())
        .await
        .expect_err("tampered");
    assert!(matches!(err, ClientError::Handshake), "{err:?}");
    assert_eq!(err.refusal_code(), None);
}

#[tokio::test]
async fn fail_tampered_frame_fails_every_pending_call() {
    let mut server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    assert!(matches!(server.event().await, Event::Hello { .. }));
    let mut hanging = Vec::new();
    for _ in 0..3 {
        let client = client.clone();
        hanging.push(tokio::spawn(async move {
            client.call::<Value>("test", "hang", ()).await
        }));
    }
    for _ in 0..3 {
        assert!(matches!(server.event().await, Event::Request { .. }));
    }
    assert_connection_error(client.call::<Value>("test", "tamper", ()).await);
    for h in hanging {
        let result = tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("pending call fails promptly")
            .expect("task");
        assert_connection_error(result);
    }
    assert_connection_error(client.call::<f64>("calculator", "add", (1, 2)).await);
    assert!(client.is_closed());
}

#[tokio::test]
async fn fail_text_message_closes_the_connection() {
    let server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    assert_connection_error(client.call::<Value>("test", "text", ()).await);
    assert_connection_error(client.call::<f64>("calculator", "add", (1, 2)).await);
}

#[tokio::test]
async fn fail_payload_that_is_not_a_response_closes_the_connection() {
    let server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    let err = client
        .call::<Value>("test", "garbage", ())
        .await
        .expect_err("garbage");
    assert!(
        err.to_string().contains("invalid response from the server"),
        "{err}"
    );
    assert_connection_error(client.call::<f64>("calculator", "add", (1, 2)).await);
}

#[tokio::test]
async fn fail_oversized_frame_closes_the_connection() {
    let server = TestServer::start(Behavior::default()).await;
    let limits = Limits {
        max_message_size: 1024,
        ..Limits::default()
    };
    let client = Client::connect(&server.url(), server.options().with_limits(limits))
        .await
        .expect("connect");
    assert_connection_error(client.call::<Value>("test", "big", ()).await);
    // Our own requests are held to the same limit, locally.
    let client = connect(&server).await;
    let long = "y".repeat(2000);
    let small = Client::connect(&server.url(), server.options().with_limits(limits))
        .await
        .expect("connect");
    let err = small
        .call::<Value>("echo", "echo", [&long])
        .await
        .expect_err("too large");
    assert!(matches!(err, ClientError::InvalidArguments(_)), "{err:?}");
    let echoed: String = client.call("echo", "echo", [&long]).await.expect("echo");
    assert_eq!(echoed, long);
}

#[tokio::test]
async fn unknown_ids_and_empty_frames_are_ignored() {
    let server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    let ok: String = client.call("test", "unknown_id", ()).await.expect("call");
    assert_eq!(ok, "ok");
    let ok: String = client.call("test", "empty", ()).await.expect("call");
    assert_eq!(ok, "ok");
    let sum: f64 = client.call("calculator", "add", (1, 2)).await.expect("add");
    assert_eq!(sum, 3.0);
}

#[tokio::test]
async fn fail_bad_calls_are_refused_locally() {
    let mut server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    assert!(matches!(server.event().await, Event::Hello { .. }));
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
    let err = client
        .call::<String>("calculator", "add", (1, 2))
        .await
        .expect_err("a number is not a string");
    assert!(matches!(err, ClientError::InvalidResult(_)), "{err:?}");
    // Only the last call reached the server.
    assert_eq!(
        server.event().await,
        Event::Request {
            object: "calculator".into(),
            method: "add".into(),
            oneway: false
        }
    );
}

#[tokio::test]
async fn fail_server_without_the_subprotocol() {
    let server = TestServer::start(Behavior {
        subprotocol: None,
        ..Behavior::default()
    })
    .await;
    let err = Client::connect(&server.url(), server.options())
        .await
        .expect_err("no subprotocol");
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

    let server = TestServer::start(Behavior {
        subprotocol: Some("other.v9"),
        ..Behavior::default()
    })
    .await;
    let err = Client::connect(&server.url(), server.options())
        .await
        .expect_err("wrong subprotocol");
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
}

#[tokio::test]
async fn fail_wrong_path_and_bad_urls() {
    let server = TestServer::start(Behavior::default()).await;
    let url = format!("ws://{}/elsewhere", server.addr);
    let err = Client::connect(&url, server.options())
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

    let url = format!("http://{}/sigil", server.addr);
    let err = Client::connect(&url, server.options())
        .await
        .expect_err("http");
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    let err = Client::connect("not a url", server.options())
        .await
        .expect_err("garbage");
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn fail_connection_refused() {
    // Bind, note the port, and close the listener: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let server_key = SecretKey::generate(&mut OsRandom)
        .expect("random")
        .public_key();
    let secret = SecretKey::generate(&mut OsRandom).expect("random");
    let err = Client::connect(
        &format!("ws://{addr}/sigil"),
        ClientOptions::new(secret, server_key),
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
    let server = TestServer::start(Behavior {
        silent: true,
        ..Behavior::default()
    })
    .await;
    let started = std::time::Instant::now();
    let err = Client::connect(
        &server.url(),
        server
            .options()
            .with_handshake_timeout(Duration::from_millis(200)),
    )
    .await
    .expect_err("timeout");
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn close_sends_a_normal_websocket_close() {
    let mut server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    let clone = client.clone();
    let sum: f64 = client.call("calculator", "add", (1, 2)).await.expect("add");
    assert_eq!(sum, 3.0);
    client.close().await;
    assert!(clone.is_closed());
    assert_connection_error(clone.call::<f64>("calculator", "add", (1, 2)).await);
    clone.close().await; // closing again is harmless
    assert!(matches!(server.event().await, Event::Hello { .. }));
    assert_eq!(
        server.event_skipping_requests().await,
        Event::Closed { code: Some(1000) }
    );
}

#[tokio::test]
async fn close_fails_calls_in_flight() {
    let mut server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    assert!(matches!(server.event().await, Event::Hello { .. }));
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.call::<Value>("test", "hang", ()).await })
    };
    assert!(matches!(server.event().await, Event::Request { .. }));
    client.close().await;
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("fails promptly")
        .expect("task");
    assert_connection_error(result);
}

#[tokio::test]
async fn dropping_every_clone_closes_the_connection() {
    let mut server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    let clone = client.clone();
    assert!(matches!(server.event().await, Event::Hello { .. }));
    drop(client);
    let sum: f64 = clone.call("calculator", "add", (1, 2)).await.expect("add");
    assert_eq!(sum, 3.0);
    drop(clone);
    assert_eq!(
        server.event_skipping_requests().await,
        Event::Closed { code: Some(1000) }
    );
}

#[tokio::test]
async fn server_closing_fails_calls() {
    let server = TestServer::start(Behavior::default()).await;
    let client = connect(&server).await;
    assert_connection_error(client.call::<Value>("test", "close", ()).await);
    assert_connection_error(client.call::<f64>("calculator", "add", (1, 2)).await);
    assert!(client.is_closed());
}
