//! The native client reconnecting to a real server that goes away and comes
//! back on the same port: events in order, a fresh handshake each time,
//! calls in flight at the break failed and never sent again, calls made
//! meanwhile served by the new session within their deadlines, streams
//! ended with an error and opened again, bounded attempts, no attempts
//! after a lasting refusal, and no reconnection unless asked for.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use sigil_client::{
    Client, ClientError, ClientOptions, ConnectionEvent, ConnectionEvents, ConnectionState,
    ReconnectPolicy,
};
use sigil_core::handshake::ClientAuth;
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_server::{Registry, RunningServer, Server, ServerSettings, demo};

/// Quick attempts, for tests.
fn policy(max_attempts: u32) -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay_ms: 20,
        max_delay_ms: 200,
        max_attempts,
    }
}

/// Runs of `counter.slow_incr` (it counts, then sleeps `ms`).
fn registry(runs: &Arc<AtomicU64>) -> Registry {
    let mut r = Registry::new();
    demo::register(&mut r);
    let runs = runs.clone();
    r.object("counter")
        .async_method("slow_incr", move |(ms,): (u64,)| {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(n)
            }
        });
    r
}

/// One service (a key, the clients it accepts, a counter of runs) whose
/// server can be stopped and started again on the same address.
struct Service {
    key: SecretKey,
    clients: Vec<PublicKey>,
    runs: Arc<AtomicU64>,
    addr: String,
}

impl Service {
    async fn start(clients: &[PublicKey]) -> (Service, RunningServer) {
        let mut service = Service {
            key: key(),
            clients: clients.to_vec(),
            runs: Arc::default(),
            addr: "127.0.0.1:0".into(),
        };
        let server = service.serve().await;
        service.addr = server.local_addr().to_string();
        (service, server)
    }

    async fn serve(&self) -> RunningServer {
        let settings =
            ServerSettings::new(copy_key(&self.key), ClientAuth::Keys(self.clients.clone()));
        Server::new(settings, registry(&self.runs))
            .bind(&self.addr)
            .await
            .unwrap()
    }

    fn options(&self, secret: &SecretKey) -> ClientOptions {
        ClientOptions::new(copy_key(secret), self.key.public_key())
    }

    /// A client that reconnects with `policy`, and its events.
    async fn reconnecting(
        &self,
        secret: &SecretKey,
        policy: ReconnectPolicy,
    ) -> (Client, ConnectionEvents) {
        let options = self.options(secret).with_reconnect(policy);
        let client = Client::connect(&self.url(), options).await.unwrap();
        let events = client.events();
        (client, events)
    }

    fn url(&self) -> String {
        format!("ws://{}/sigil", self.addr)
    }
}

/// The next event, within 10 s.
async fn next(events: &mut ConnectionEvents) -> ConnectionEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the events go on")
}

/// Events until a new session is open; panics on a close.
async fn until_open(events: &mut ConnectionEvents) -> [u8; 32] {
    loop {
        match next(events).await {
            ConnectionEvent::Open { session_hash, .. } => return session_hash,
            ConnectionEvent::Closed { error } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_client_reconnects_and_never_resends_a_call_in_flight() {
    let client_key = key();
    let (service, server) = Service::start(&[client_key.public_key()]).await;
    let (client, mut events) = service.reconnecting(&client_key, policy(50)).await;
    let first_session = client.session_hash();
    assert_eq!(client.state(), ConnectionState::Open);

    // A call in flight when the server goes away.
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.call::<u64>("counter", "slow_incr", (5_000,)).await })
    };
    while service.runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.shutdown().await;
    let failed = in_flight.await.unwrap().unwrap_err();
    assert!(matches!(failed, ClientError::Connection(_)), "{failed}");

    match next(&mut events).await {
        ConnectionEvent::Reconnecting { attempt, error, .. } => {
            assert_eq!(attempt, 1);
            assert!(matches!(*error, ClientError::Connection(_)), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.state(),
        ConnectionState::Reconnecting | ConnectionState::Connecting
    ));
    // A call made while the server is away waits for the new connection.
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.call::<i64>("calculator", "add", (40, 2)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = service.serve().await;
    let second_session = until_open(&mut events).await;
    assert_ne!(second_session, first_session, "a fresh handshake");
    assert_eq!(client.session_hash(), second_session);
    assert_eq!(client.state(), ConnectionState::Open);
    assert_eq!(waiting.await.unwrap().unwrap(), 42);

    // The call that broke ran once, and was not sent again.
    let n: u64 = client.call("counter", "slow_incr", (0,)).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(service.runs.load(Ordering::SeqCst), 2);

    client.close().await;
    match next(&mut events).await {
        ConnectionEvent::Closed { error: None } => {}
        other => panic!("{other:?}"),
    }
    assert!(events.next().await.is_none());
    assert_eq!(client.state(), ConnectionState::Closed);
    server.shutdown().await;
}

#[tokio::test]
async fn a_stream_ends_with_an_error_at_the_break_and_can_be_opened_again() {
    let client_key = key();
    let (service, server) = Service::start(&[client_key.public_key()]).await;
    let (client, mut events) = service.reconnecting(&client_key, policy(50)).await;
    let mut ticks = client
        .stream::<u64>("clock", "ticker", (1_000, 20))
        .await
        .unwrap();
    assert_eq!(ticks.next().await.unwrap().unwrap(), 0);
    server.shutdown().await;
    let mut ended = None;
    while let Some(item) = ticks.next().await {
        if let Err(e) = item {
            ended = Some(e);
        }
    }
    assert!(
        matches!(ended, Some(ClientError::Connection(_))),
        "{ended:?}"
    );
    let server = service.serve().await;
    until_open(&mut events).await;
    let mut again = client
        .stream::<u64>("clock", "ticker", (2, 10))
        .await
        .unwrap();
    assert_eq!(again.next().await.unwrap().unwrap(), 0);
    assert_eq!(again.next().await.unwrap().unwrap(), 1);
    assert!(again.next().await.is_none());
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_gives_up_after_its_last_attempt() {
    let client_key = key();
    let (service, server) = Service::start(&[client_key.public_key()]).await;
    let (client, mut events) = service.reconnecting(&client_key, policy(3)).await;
    server.shutdown().await;
    let mut attempts = Vec::new();
    let error = loop {
        match next(&mut events).await {
            ConnectionEvent::Reconnecting { attempt, delay, .. } => {
                assert!(delay <= Duration::from_millis(200));
                attempts.push(attempt);
            }
            ConnectionEvent::Connecting { .. } => {}
            ConnectionEvent::Closed { error } => break error.expect("a reason"),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(attempts, [1, 2, 3]);
    assert!(matches!(*error, ClientError::Connect { .. }), "{error}");
    assert!(client.is_closed());
    let e = client
        .call::<String>("sigil", "ping", ())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connection(_)), "{e}");
}

/// A refusal that trying again would not change (the key was dropped from
/// authorized_keys: code 1) ends the attempts at once.
#[tokio::test]
async fn a_lasting_refusal_stops_the_attempts() {
    let client_key = key();
    let (mut service, server) = Service::start(&[client_key.public_key()]).await;
    let (client, mut events) = service.reconnecting(&client_key, policy(50)).await;
    server.shutdown().await;
    service.clients = vec![key().public_key()];
    let server = service.serve().await;
    let error = loop {
        match next(&mut events).await {
            ConnectionEvent::Closed { error } => break error.expect("a reason"),
            ConnectionEvent::Open { .. } => panic!("opened"),
            _ => {}
        }
    };
    assert_eq!(error.refusal_code(), Some(1), "{error}");
    assert_eq!(client.state(), ConnectionState::Closed);
    server.shutdown().await;
}

/// While the server is away, a call waits no longer than its own deadline,
/// and `close` stops the attempts.
#[tokio::test]
async fn calls_waiting_for_a_connection_keep_their_deadlines() {
    let client_key = key();
    let (service, server) = Service::start(&[client_key.public_key()]).await;
    let slow = ReconnectPolicy {
        initial_delay_ms: 5_000,
        max_delay_ms: 5_000,
        max_attempts: 5,
    };
    let (client, mut events) = service.reconnecting(&client_key, slow).await;
    server.shutdown().await;
    assert!(matches!(
        next(&mut events).await,
        ConnectionEvent::Reconnecting { .. }
    ));
    let started = tokio::time::Instant::now();
    let e = client
        .call::<String>("sigil", "ping", ())
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connection(_)), "{e}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    client.close().await;
    assert!(matches!(
        next(&mut events).await,
        ConnectionEvent::Closed { error: None }
    ));
}

/// Reconnecting is opt-in: by default a broken connection closes the
/// client, and says why.
#[tokio::test]
async fn without_reconnect_a_break_closes_the_client() {
    let client_key = key();
    let (service, server) = Service::start(&[client_key.public_key()]).await;
    let client = Client::connect(&service.url(), service.options(&client_key))
        .await
        .unwrap();
    let mut events = client.events();
    server.shutdown().await;
    match next(&mut events).await {
        ConnectionEvent::Closed { error: Some(e) } => {
            assert!(matches!(*e, ClientError::Connection(_)), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(client.is_closed());
    let server = service.serve().await;
    let e = client
        .call::<String>("sigil", "ping", ())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connection(_)), "{e}");
    server.shutdown().await;
}
