//! Operating a real server on 127.0.0.1: reloading authorized_keys and
//! revoking keys, Prometheus metrics and the health check over plain HTTP,
//! client addresses behind trusted proxies, and pings for quiet sessions.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt as _;
use sigil_client::ClientError;
use sigil_core::config::Config;
use sigil_core::handshake::{ClientAuth, HandshakeError, RefusalCode};
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_core::transport::Session;
use sigil_server::{HookDecision, RevokedSessions, RunningServer, ServerLimits, ServerSettings};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The longest a server may take to do what a test waits for.
const WAIT: Duration = Duration::from_secs(10);

/// An authorized_keys line.
fn line(key: &PublicKey, name: &str) -> String {
    format!("{key} {name}\n")
}

/// Settings read from a config whose authorized_keys is `path`, as `sigil
/// serve` reads them.
fn settings_with_keys_file(path: &Path) -> ServerSettings {
    let config = Config::builder()
        .set("authorized_keys", path.to_str().unwrap(), "test")
        .unwrap()
        .build()
        .unwrap()
        .config;
    ServerSettings::from_config(&config).unwrap()
}

/// A WebSocket to `server` from `source`, with `headers` on the upgrade.
async fn raw_from(
    server: &RunningServer,
    source: Ipv4Addr,
    headers: &[(&'static str, &str)],
) -> Result<RawClient, tokio_tungstenite::tungstenite::Error> {
    let mut req = server.url().into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sigil.v1".parse().unwrap());
    for (name, value) in headers {
        req.headers_mut().append(*name, value.parse().unwrap());
    }
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = socket.connect(server.local_addr()).await?;
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await?;
    Ok(RawClient { ws })
}

/// A session over a raw WebSocket with `key`.
async fn raw_session(server: &RunningServer, key: &SecretKey) -> (RawClient, Session) {
    let mut raw = RawClient::open(&server.url()).await;
    let (_, session) = raw.handshake(&config_for(server.public_key(), key)).await;
    (raw, session.unwrap())
}

/// The refusal code of a new handshake with `key`, if refused.
async fn refusal(server: &RunningServer, key: &SecretKey) -> Option<RefusalCode> {
    let mut raw = RawClient::open(&server.url()).await;
    match raw.handshake(&config_for(server.public_key(), key)).await.1 {
        Ok(_) => None,
        Err(HandshakeError::Refused(r)) => Some(r.code()),
        Err(e) => panic!("neither a session nor a refusal: {e}"),
    }
}

/// Waits for the server's close of `raw`, and returns its code.
async fn closed(raw: &mut RawClient) -> Option<CloseCode> {
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match raw.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    });
    close.await.expect("the server closed the session")
}

const WHOAMI: &[u8] = br#"{"id":1,"object":"session","method":"whoami","args":[]}"#;

#[tokio::test]
async fn removing_a_key_refuses_its_next_handshake_and_closes_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authorized_keys");
    let (alice, bob) = (key(), key());
    std::fs::write(
        &path,
        line(&alice.public_key(), "alice") + &line(&bob.public_key(), "bob"),
    )
    .unwrap();
    let server = start(settings_with_keys_file(&path), demo_registry()).await;
    let (mut alice_raw, mut alice_session) = raw_session(&server, &alice).await;
    let bob_client = connect(&server, copy_key(&bob)).await;
    let answer = alice_raw.call(&mut alice_session, WHOAMI).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).contains(r#""name":"alice""#));

    std::fs::write(&path, line(&bob.public_key(), "bob")).unwrap();
    let reloaded = server.reload().await;
    assert!(reloaded.is_ok(), "{reloaded:?}");
    let changes = reloaded.authorized_keys.unwrap().unwrap();
    assert_eq!(changes.keys, 1);
    assert_eq!(
        changes.removed,
        [(alice.public_key(), Some("alice".to_owned()))]
    );
    assert!(changes.added.is_empty());

    // Alice's open session is closed (policy violation), her next
    // handshake refused; Bob goes on.
    assert_eq!(closed(&mut alice_raw).await, Some(CloseCode::Policy));
    assert_eq!(
        refusal(&server, &alice).await,
        Some(RefusalCode::HandshakeFailed)
    );
    assert_eq!(
        bob_client
            .call::<i64>("calculator", "add", (2, 2))
            .await
            .unwrap(),
        4
    );
    // Adding her back lets her in again, without a restart.
    std::fs::write(
        &path,
        line(&bob.public_key(), "bob") + &line(&alice.public_key(), "alice again"),
    )
    .unwrap();
    let changes = server.reload().await.authorized_keys.unwrap().unwrap();
    assert_eq!(changes.added, [alice.public_key()]);
    assert_eq!(refusal(&server, &alice).await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn revoked_sessions_keep_leaves_open_sessions_alone() {
    let (alice, bob) = (key(), key());
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![alice.public_key()]))
        .with_revoked_sessions(RevokedSessions::Keep);
    let server = start(settings, demo_registry()).await;
    let alice_client = connect(&server, copy_key(&alice)).await;
    let entries =
        sigil_core::config::parse_authorized_key_entries("keys", &line(&bob.public_key(), "bob"))
            .unwrap();
    let changes = server.set_authorized_keys(entries).await.unwrap();
    assert_eq!(changes.removed.len(), 1);
    assert_eq!(changes.added, [bob.public_key()]);
    // Her session still answers; a new one is refused; Bob is in.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        alice_client
            .call::<i64>("calculator", "add", (1, 1))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        refusal(&server, &alice).await,
        Some(RefusalCode::HandshakeFailed)
    );
    assert_eq!(refusal(&server, &bob).await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn fail_a_reload_keeps_the_previous_keys_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authorized_keys");
    let alice = key();
    std::fs::write(&path, line(&alice.public_key(), "alice")).unwrap();
    let server = start(settings_with_keys_file(&path), demo_registry()).await;
    let (mut raw, mut session) = raw_session(&server, &alice).await;

    std::fs::write(&path, "# half an edit\nnot-a-key\n").unwrap();
    let reloaded = server.reload().await;
    assert!(!reloaded.is_ok());
    let err = reloaded.authorized_keys.unwrap().unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = server.reload().await.authorized_keys.unwrap().unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");

    // The key set is the one before: her session and new handshakes work.
    assert!(raw.call(&mut session, WHOAMI).await.is_some());
    assert_eq!(refusal(&server, &alice).await, None);
    // Under allow_any_client there are no keys to set.
    let any = start(
        ServerSettings::new(key(), ClientAuth::AllowAny),
        demo_registry(),
    )
    .await;
    assert!(any.set_authorized_keys(Vec::new()).await.is_err());
    assert!(any.reload().await.authorized_keys.is_none());
    any.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_changed_file_is_reloaded_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authorized_keys");
    let (alice, bob) = (key(), key());
    std::fs::write(&path, line(&alice.public_key(), "alice")).unwrap();
    let server = start(settings_with_keys_file(&path), demo_registry()).await;
    let (mut alice_raw, _session) = raw_session(&server, &alice).await;
    assert_eq!(
        refusal(&server, &bob).await,
        Some(RefusalCode::HandshakeFailed)
    );

    // Replaced the way editors and configuration tools do: a new file
    // renamed over the old one.
    let next = dir.path().join("authorized_keys.new");
    std::fs::write(&next, line(&bob.public_key(), "bob")).unwrap();
    std::fs::rename(&next, &path).unwrap();
    let started = Instant::now();
    assert_eq!(closed(&mut alice_raw).await, Some(CloseCode::Policy));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(refusal(&server, &bob).await, None);
    assert_eq!(
        refusal(&server, &alice).await,
        Some(RefusalCode::HandshakeFailed)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_count_handshakes_and_calls_as_they_happen() {
    let alice = key();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![alice.public_key()]))
        .with_client_names([(alice.public_key(), "alice-laptop".to_owned())])
        .with_metrics_addr("127.0.0.1:0");
    let server = start(settings, demo_registry()).await;
    let addr = server.metrics_addr().expect("metrics are on");
    assert!(addr.ip().is_loopback());
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    let (_, before) = get(addr, "/metrics").await;
    const ACCEPTED: &str = r#"sigil_handshakes_total{outcome="accepted"}"#;
    const ADD_OK: &str = r#"sigil_calls_total{object="calculator",method="add",outcome="ok"}"#;
    assert_eq!(value(&before, ACCEPTED), 0.0);

    let client = connect(&server, copy_key(&alice)).await;
    for i in 0..3 {
        client
            .call::<i64>("calculator", "add", (i, 1))
            .await
            .unwrap();
    }
    let err = client
        .call::<f64>("calculator", "div", (1, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Remote(_)), "{err}");
    let err = client.call::<i64>("nothing", "here", ()).await.unwrap_err();
    assert!(matches!(err, ClientError::Remote(_)), "{err}");
    assert_eq!(client.call::<u64>("clock", "sleep", (5,)).await.unwrap(), 5);
    assert_eq!(
        refusal(&server, &key()).await,
        Some(RefusalCode::HandshakeFailed)
    );

    let (status, after) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(value(&after, ACCEPTED), 1.0, "{after}");
    assert_eq!(value(&after, ADD_OK), 3.0, "{after}");
    assert_eq!(
        value(
            &after,
            r#"sigil_calls_total{object="calculator",method="div",outcome="application_error"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"sigil_calls_total{object="(unknown)",method="(unknown)",outcome="no_such_object"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"sigil_calls_total{object="clock",method="sleep",outcome="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"sigil_call_duration_seconds_count{object="calculator",method="add"}"#
        ),
        3.0
    );
    assert!(
        value(
            &after,
            r#"sigil_call_duration_seconds_sum{object="clock",method="sleep"}"#
        ) >= 0.005
    );
    assert_eq!(
        value(&after, r#"sigil_handshakes_total{outcome="refused"}"#),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"sigil_handshake_refusals_total{code="handshake_failed"}"#
        ),
        1.0
    );
    assert_eq!(value(&after, "sigil_sessions"), 1.0);
    assert_eq!(value(&after, "sigil_authorized_keys"), 1.0);
    assert!(value(&after, "sigil_received_bytes_total") > 0.0);
    assert!(value(&after, "sigil_sent_bytes_total") > 0.0);
    // No client, key, name or address in the metrics.
    for secretish in [
        alice.public_key().to_string(),
        alice.public_key().fingerprint(),
        "alice-laptop".to_owned(),
        "127.0.0.1".to_owned(),
    ] {
        assert!(!after.contains(&secretish), "{secretish} in {after}");
    }
    // The counters move with more calls.
    client
        .call::<i64>("calculator", "add", (1, 1))
        .await
        .unwrap();
    let (_, later) = get(addr, "/metrics").await;
    assert_eq!(value(&later, ADD_OK), 4.0);

    assert_eq!(get(addr, "/other").await.0, 404);
    server.shutdown().await;
    // Stopped: the endpoint is gone.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn healthz_says_busy_when_no_session_fits() {
    let alice = key();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![alice.public_key()]))
        .with_server_limits(ServerLimits {
            max_connections: 1,
            ..ServerLimits::default()
        })
        .with_metrics_addr("127.0.0.1:0");
    let server = start(settings, demo_registry()).await;
    let addr = server.metrics_addr().unwrap();
    let _client = connect(&server, copy_key(&alice)).await;
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(refusal(&server, &alice).await, Some(RefusalCode::Busy));
    let (_, scrape) = get(addr, "/metrics").await;
    assert_eq!(
        value(
            &scrape,
            r#"sigil_limits_hit_total{limit="max_connections"}"#
        ),
        1.0
    );
    server.shutdown().await;
}

/// A server trusting `proxies` whose hook records each client's address.
async fn recording_server(
    proxies: &[&str],
    client: &SecretKey,
) -> (RunningServer, Arc<Mutex<Vec<SocketAddr>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client.public_key()]))
        .with_trusted_proxies(proxies.iter().map(|p| p.parse().unwrap()).collect())
        .with_hook(move |info| {
            record.lock().unwrap().push(info.peer_addr);
            HookDecision::Accept(None)
        });
    (start(settings, demo_registry()).await, seen)
}

/// `session.whoami`'s address over a session from `source` with `headers`.
async fn whoami_from(
    server: &RunningServer,
    key: &SecretKey,
    source: Ipv4Addr,
    headers: &[(&'static str, &str)],
) -> String {
    let mut raw = raw_from(server, source, headers).await.unwrap();
    let (_, session) = raw.handshake(&config_for(server.public_key(), key)).await;
    let mut session = session.unwrap();
    let answer = raw.call(&mut session, WHOAMI).await.unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    answer["result"]["address"].as_str().unwrap().to_owned()
}

const PROXY: Ipv4Addr = Ipv4Addr::LOCALHOST;
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[tokio::test]
async fn forwarded_addresses_come_only_from_trusted_proxies() {
    let alice = key();
    let (server, seen) = recording_server(&["127.0.0.1/32"], &alice).await;
    // From the proxy: the client it names, everywhere the address is used.
    let forwarded = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7")];
    let address = whoami_from(&server, &alice, PROXY, &forwarded).await;
    assert_eq!(address, "203.0.113.7:0");
    assert_eq!(
        seen.lock().unwrap().pop(),
        Some("203.0.113.7:0".parse().unwrap())
    );
    // From anyone else: the header is ignored.
    let forged = [("X-Forwarded-For", "203.0.113.7")];
    let address = whoami_from(&server, &alice, STRANGER, &forged).await;
    assert!(address.starts_with("127.0.0.2:"), "{address}");
    assert_eq!(
        seen.lock().unwrap().pop().map(|a| a.ip()),
        Some(STRANGER.into())
    );
    // The proxy itself, naming no one, is the client.
    let address = whoami_from(&server, &alice, PROXY, &[]).await;
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    server.shutdown().await;

    // With no trusted proxies, even loopback cannot name a client.
    let (server, _) = recording_server(&[], &alice).await;
    let address = whoami_from(&server, &alice, PROXY, &forged).await;
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    server.shutdown().await;
}

#[tokio::test]
async fn fail_a_malformed_forwarded_header_is_refused_and_harms_nothing() {
    let alice = key();
    let (server, seen) = recording_server(&["127.0.0.1/32"], &alice).await;
    let long = "1".repeat(4000);
    for bad in [
        "unknown",
        "203.0.113.7, ::zz",
        "1.2.3.4:99999",
        long.as_str(),
    ] {
        let refused = raw_from(&server, PROXY, &[("X-Forwarded-For", bad)]).await;
        let Err(tokio_tungstenite::tungstenite::Error::Http(resp)) = refused else {
            panic!("{bad}: not refused with an HTTP status");
        };
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let many = vec!["10.0.0.1"; 40].join(",");
    let (server2, _) = recording_server(&["127.0.0.1/32", "10.0.0.0/8"], &alice).await;
    let refused = raw_from(&server2, PROXY, &[("X-Forwarded-For", &many)]).await;
    assert!(refused.is_err());
    server2.shutdown().await;
    // Nothing reached the hook, and the server goes on.
    assert!(seen.lock().unwrap().is_empty());
    let address = whoami_from(&server, &alice, PROXY, &[("X-Forwarded-For", "192.0.2.1")]).await;
    assert_eq!(address, "192.0.2.1:0");
    server.shutdown().await;
}

#[tokio::test]
async fn quiet_sessions_are_pinged_and_still_close_when_idle() {
    let alice = key();
    let idle = Duration::from_millis(900);
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![alice.public_key()]))
        .with_server_limits(ServerLimits {
            idle_timeout: idle,
            ping_interval: Some(Duration::from_millis(150)),
            ..ServerLimits::default()
        });
    let server = start(settings, demo_registry()).await;
    let (mut raw, _session) = raw_session(&server, &alice).await;
    let started = Instant::now();
    // Reading answers each ping with a pong (tungstenite does).
    let mut pings = 0;
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match raw.ws.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("the idle session was closed although it answered pings");
    assert_eq!(close, Some(CloseCode::Normal));
    assert!(started.elapsed() >= idle - Duration::from_millis(100));
    assert!(pings >= 3, "{pings} pings in {:?}", started.elapsed());
    server.shutdown().await;

    // ping_interval None: no pings.
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![alice.public_key()]))
        .with_server_limits(ServerLimits {
            idle_timeout: Duration::from_millis(500),
            ping_interval: None,
            ..ServerLimits::default()
        });
    let server = start(settings, demo_registry()).await;
    let (mut raw, _session) = raw_session(&server, &alice).await;
    while let Some(Ok(msg)) = raw.ws.next().await {
        assert!(!matches!(msg, Message::Ping(_)), "a ping with pings off");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_revoked_key_is_closed_without_waiting_for_its_slowly_read_batch() {
    use sigil_core::batch::frames;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authorized_keys");
    let alice = key();
    std::fs::write(&path, line(&alice.public_key(), "alice")).unwrap();
    let server = start(settings_with_keys_file(&path), demo_registry()).await;
    let mut raw = RawClient::offering(&server.url(), "sigil.v1.batch", "sigil.v1.batch").await;
    let (_, session) = raw
        .handshake(&config_for(server.public_key(), &alice))
        .await;
    let mut session = session.unwrap();
    // Read slowly until the key is revoked, then as fast as they come.
    raw.send_large_get_batch(&mut session).await;
    let mut answers = 0;
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        let message = raw.recv().await.expect("answers");
        answers += frames(&message, true).count();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&path, "").unwrap();
    assert!(server.reload().await.is_ok());
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match raw.ws.next().await {
                Some(Ok(Message::Binary(_))) => answers += 1,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    });
    assert_eq!(close.await.expect("closed"), Some(CloseCode::Policy));
    assert!(answers < 161, "all {answers} answers came before the close");
    server.shutdown().await;
}
