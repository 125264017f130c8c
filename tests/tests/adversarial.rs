//! A hostile peer against a real server: replays, tampering, oversize
//! messages, stalled handshakes, connection floods. Each breach closes the
//! offending connection only; other clients are served throughout.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sigil_core::handshake::{ClientAuth, Limits, RefusalCode};
use sigil_server::{ServerLimits, ServerSettings};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

#[tokio::test]
async fn replayed_first_message_is_refused_with_code_5() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut first = RawClient::open(&server.url()).await;
    let (msg1, session) = first.handshake(&cfg).await;
    assert!(session.is_ok());
    // The captured message 1, sent again on a new connection.
    let mut second = RawClient::open(&server.url()).await;
    second.send(msg1).await;
    let answer = second.recv().await.unwrap();
    let refusal = sigil_core::handshake::Refusal::parse(&answer).unwrap();
    assert_eq!(refusal.code(), RefusalCode::StaleOrReplayed);
    assert_eq!(
        second.recv().await,
        None,
        "the server closes after a refusal"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tampered_frame_closes_that_connection_only() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let bystander = connect(&server, copy_key(&client_key)).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw = RawClient::open(&server.url()).await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let reply = raw
        .call(
            &mut session,
            br#"{"id":1,"object":"calculator","method":"add","args":[1,2]}"#,
        )
        .await
        .unwrap();
    assert_eq!(reply, br#"{"id":1,"result":3}"#);
    let mut frame = Vec::new();
    session
        .seal(
            br#"{"id":2,"object":"calculator","method":"add","args":[1,2]}"#,
            &mut frame,
        )
        .unwrap();
    frame[20] ^= 0x01;
    raw.send(frame).await;
    assert_eq!(
        raw.recv().await,
        None,
        "no answer: the connection is closed"
    );
    assert_eq!(
        bystander
            .call::<i64>("calculator", "add", (2, 3))
            .await
            .unwrap(),
        5
    );
    server.shutdown().await;
}

#[tokio::test]
async fn dotted_names_from_a_raw_client_get_invalid_request() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw = RawClient::open(&server.url()).await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let reply = raw
        .call(
            &mut session,
            br#"{"id":9,"object":"calculator.__class__","method":"add","args":[]}"#,
        )
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dotted names are not allowed")
    );
    let reply = raw.call(&mut session, b"not json").await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(
        (v["id"].as_u64(), v["error"]["code"].as_str()),
        (Some(0), Some("invalid_request"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn oversize_messages_close_the_connection() {
    let client_key = key();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]))
        .with_limits(Limits {
            max_message_size: 1024,
            ..Limits::default()
        });
    let server = start(settings, demo_registry()).await;
    let limits = Limits {
        max_message_size: 1 << 20,
        ..Limits::default()
    };
    let cfg = config_for(server.public_key(), &client_key).with_limits(limits);
    let mut raw = RawClient::open(&server.url()).await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let big = format!(
        r#"{{"id":1,"object":"echo","method":"echo","args":["{}"]}}"#,
        "x".repeat(4096)
    );
    let mut frame = Vec::new();
    session.seal(big.as_bytes(), &mut frame).unwrap();
    raw.send(frame).await;
    assert_eq!(raw.recv().await, None);
    // An oversize message 1 is refused too.
    let mut raw = RawClient::open(&server.url()).await;
    raw.send(vec![0x01; 64 * 1024]).await;
    assert_eq!(raw.recv().await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn stalled_handshake_is_dropped_while_others_are_served() {
    let client_key = key();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]))
        .with_server_limits(ServerLimits {
            handshake_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        });
    let server = start(settings, demo_registry()).await;
    // One peer opens TCP and says nothing; another upgrades and says nothing.
    let mut silent = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut mute = RawClient::open(&server.url()).await;
    let good = connect(&server, client_key).await;
    assert_eq!(
        good.call::<i64>("calculator", "add", (1, 1)).await.unwrap(),
        2
    );
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent TCP peer was dropped"
    );
    assert_eq!(
        mute.recv().await,
        None,
        "the mute WebSocket peer was dropped"
    );
    // The established session is not subject to the handshake timeout.
    assert_eq!(
        good.call::<i64>("calculator", "add", (2, 2)).await.unwrap(),
        4
    );
    server.shutdown().await;
}

#[tokio::test]
async fn max_connections_is_enforced_and_recovers() {
    let client_key = key();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]))
        .with_server_limits(ServerLimits {
            max_connections: 2,
            ..ServerLimits::default()
        });
    let server = start(settings, demo_registry()).await;
    let a = connect(&server, copy_key(&client_key)).await;
    let b = connect(&server, copy_key(&client_key)).await;
    let third = sigil_client::Client::connect(
        &server.url(),
        sigil_client::ClientOptions::new(copy_key(&client_key), server.public_key()),
    )
    .await;
    assert!(third.is_err(), "a third connection is closed at once");
    assert_eq!(a.call::<i64>("calculator", "add", (1, 1)).await.unwrap(), 2);
    b.close().await;
    // The slot is free again once the server has seen the close.
    let mut retries = 0;
    let c = loop {
        let opts = sigil_client::ClientOptions::new(copy_key(&client_key), server.public_key());
        match sigil_client::Client::connect(&server.url(), opts).await {
            Ok(c) => break c,
            Err(_) if retries < 50 => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no slot after a close: {e}"),
        }
    };
    assert_eq!(c.call::<i64>("calculator", "add", (3, 3)).await.unwrap(), 6);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_subprotocol_and_paths_are_refused() {
    let server = demo_server(&[]).await;
    let url = format!("ws://{}/sigil", server.local_addr());
    // No subprotocol.
    assert!(
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err()
    );
    // Another path.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/other", server.local_addr()),
    )
    .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sigil.v1".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn text_messages_and_garbage_hellos_are_refused() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let mut raw = RawClient::open(&server.url()).await;
    raw.send(b"\x01\x01garbage".to_vec()).await;
    let answer = raw.recv().await.unwrap();
    assert_eq!(
        sigil_core::handshake::Refusal::parse(&answer)
            .unwrap()
            .code(),
        RefusalCode::HandshakeFailed
    );
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw = RawClient::open(&server.url()).await;
    let _session = raw.handshake(&cfg).await.1.unwrap();
    use futures_util::SinkExt as _;
    raw.ws
        .send(tokio_tungstenite::tungstenite::Message::Text(
            "hello".into(),
        ))
        .await
        .unwrap();
    assert_eq!(raw.recv().await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_with_a_close() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw = RawClient::open(&server.url()).await;
    let _session = raw.handshake(&cfg).await.1.unwrap();
    raw.ws.send(Message::Close(None)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), raw.ws.next())
        .await
        .unwrap();
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");
    server.shutdown().await;
}

// --- Batching (subprotocol sigil.v1.batch) ---

/// Seals a `calculator.add(i, i)` request with id `i`.
fn add_frame(session: &mut sigil_core::transport::Session, i: u64) -> Vec<u8> {
    let payload = format!(r#"{{"id":{i},"object":"calculator","method":"add","args":[{i},{i}]}}"#);
    let mut frame = Vec::new();
    session.seal(payload.as_bytes(), &mut frame).unwrap();
    frame
}

#[tokio::test]
async fn a_batching_client_gets_its_answers_together() {
    use sigil_core::batch::{BATCH_LIMIT, frames};
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw =
        RawClient::offering(&server.url(), "sigil.v1.batch, sigil.v1", "sigil.v1.batch").await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    // 200 calls in one message (about 19 KiB would not fit: 2 messages).
    let all: Vec<Vec<u8>> = (1..=200).map(|i| add_frame(&mut session, i)).collect();
    let (first, second) = all.split_at(100);
    raw.send(first.concat()).await;
    raw.send(second.concat()).await;
    let mut answered = Vec::new();
    let mut messages = 0;
    while answered.len() < 200 {
        let message = raw.recv().await.expect("answers");
        assert!(
            message.len() <= BATCH_LIMIT,
            "a {}-byte batch",
            message.len()
        );
        messages += 1;
        for frame in frames(&message, true) {
            let payload = session.open(frame).unwrap();
            let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
            answered.push((v["id"].as_u64().unwrap(), v["result"].as_u64().unwrap()));
        }
    }
    assert_eq!(answered, (1..=200).map(|i| (i, 2 * i)).collect::<Vec<_>>());
    // Two messages of requests: the answers came in a few, not 200.
    assert!(messages <= 4, "{messages} messages");
    server.shutdown().await;
}

#[tokio::test]
async fn a_batching_client_gets_answers_of_asynchronous_calls_together() {
    use sigil_core::batch::frames;
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw = RawClient::offering(&server.url(), "sigil.v1.batch", "sigil.v1.batch").await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    // 50 sleeps of 20 ms, in one message: they end together.
    let batch: Vec<u8> = (1..=50u64)
        .flat_map(|i| {
            let payload = format!(r#"{{"id":{i},"object":"clock","method":"sleep","args":[20]}}"#);
            let mut frame = Vec::new();
            session.seal(payload.as_bytes(), &mut frame).unwrap();
            frame
        })
        .collect();
    raw.send(batch).await;
    let (mut answered, mut messages) = (0, 0);
    while answered < 50 {
        let message = raw.recv().await.expect("answers");
        messages += 1;
        for frame in frames(&message, true) {
            let v: serde_json::Value =
                serde_json::from_slice(session.open(frame).unwrap()).unwrap();
            assert!(v.get("result").is_some(), "{v}");
            answered += 1;
        }
    }
    assert!(messages < 10, "{messages} messages for 50 answers");
    server.shutdown().await;
}

#[tokio::test]
async fn without_batching_two_frames_in_one_message_close_the_session() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let bystander = connect(&server, copy_key(&client_key)).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw = RawClient::open(&server.url()).await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let two = [add_frame(&mut session, 1), add_frame(&mut session, 2)].concat();
    raw.send(two).await;
    assert_eq!(raw.recv().await, None);
    let sum: u64 = bystander.call("calculator", "add", (1, 2)).await.unwrap();
    assert_eq!(sum, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_batches_close_the_session() {
    let client_key = key();
    let server = demo_server(&[client_key.public_key()]).await;
    let cfg = config_for(server.public_key(), &client_key);
    let url = server.url();
    let batching = || RawClient::offering(&url, "sigil.v1.batch", "sigil.v1.batch");
    // Cut inside its last frame.
    let mut raw = batching().await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let mut cut = [add_frame(&mut session, 1), add_frame(&mut session, 2)].concat();
    cut.truncate(cut.len() - 3);
    raw.send(cut).await;
    assert_eq!(raw.recv().await, None);
    // Frames out of order.
    let mut raw = batching().await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let (a, b) = (add_frame(&mut session, 1), add_frame(&mut session, 2));
    raw.send([b, a].concat()).await;
    assert_eq!(raw.recv().await, None);
    // Over the batch limit (16 KiB) with more than one frame in it.
    let mut raw = batching().await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let over: Vec<u8> = (1..=200).flat_map(|i| add_frame(&mut session, i)).collect();
    assert!(over.len() > sigil_core::batch::BATCH_LIMIT);
    raw.send(over).await;
    assert_eq!(raw.recv().await, None);
    // An honest batching client is still served.
    let mut raw = batching().await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    let reply = raw
        .call(
            &mut session,
            br#"{"id":1,"object":"calculator","method":"add","args":[2,3]}"#,
        )
        .await;
    assert_eq!(reply.unwrap(), br#"{"id":1,"result":5}"#);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_slowly_read_batch() {
    use futures_util::StreamExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let client_key = key();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]))
        .with_server_limits(ServerLimits {
            write_timeout: Duration::from_secs(10),
            ..ServerLimits::default()
        });
    let server = start(settings, demo_registry()).await;
    let cfg = config_for(server.public_key(), &client_key);
    let mut raw = RawClient::offering(&server.url(), "sigil.v1.batch", "sigil.v1.batch").await;
    let mut session = raw.handshake(&cfg).await.1.unwrap();
    // Read slowly (one message every 20 ms, well within write_timeout)
    // until the shutdown starts, then as fast as they come.
    raw.send_large_get_batch(&mut session).await;
    let slow = Arc::new(AtomicBool::new(true));
    let reading = slow.clone();
    let reader = tokio::spawn(async move {
        let mut messages = 0;
        while let Some(Ok(m)) = raw.ws.next().await {
            if m.is_binary() {
                messages += 1;
            }
            if reading.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        messages
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.store(false, Ordering::Relaxed);
    server.shutdown().await;
    // The session closed before the rest of the batch: the set's answer
    // and some of the 160 gets', not all of them.
    let messages = reader.await.unwrap();
    assert!(
        messages < 1 + 160,
        "the client got {messages} messages: the whole batch"
    );
}
