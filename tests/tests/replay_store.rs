//! Two servers of one service (the same key) sharing one real Redis as
//! their replay store: a hello captured on its way to one is refused by the
//! other (code 5); with the in-memory store the other one accepts it, which
//! is why that store is for one instance only. The per-key share holds
//! across instances. With Redis stopped, or answering late, new handshakes
//! are refused as busy and established sessions keep working.
//!
//! Redis is required: `cargo xtask test` installs it (Debian package
//! redis-server); without it these tests fail and say so.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sigil_client::{Client, ClientError, ClientOptions};
use sigil_core::handshake::{ClientAuth, Refusal, RefusalCode, SERVER_HELLO};
use sigil_core::keys::SecretKey;
use sigil_server::{ReplayStoreLocation, RunningServer, ServerLimits, ServerSettings};
use sigil_tests::services::Redis;

/// A server with `server_key`, serving the demo objects to `client`, its
/// replay cache at `store`.
async fn instance(
    server_key: &SecretKey,
    client: &SecretKey,
    store: &str,
    limits: ServerLimits,
) -> RunningServer {
    let auth = ClientAuth::Keys(vec![client.public_key()]);
    instance_for(server_key, auth, store, limits).await
}

/// [`instance`] for the clients `auth` allows.
async fn instance_for(
    server_key: &SecretKey,
    auth: ClientAuth,
    store: &str,
    limits: ServerLimits,
) -> RunningServer {
    let settings = ServerSettings::new(copy_key(server_key), auth)
        .with_replay_store_location(ReplayStoreLocation::parse(store).unwrap())
        .with_server_limits(limits);
    start(settings, demo_registry()).await
}

/// Two instances of one service (one key) with their replay caches at
/// `store`.
async fn pair(client: &SecretKey, store: &str) -> (RunningServer, RunningServer) {
    let server_key = key();
    let limits = ServerLimits::default();
    let a = instance(&server_key, client, store, limits).await;
    let b = instance(&server_key, client, store, limits).await;
    (a, b)
}

/// Handshakes with `first`, then sends the same message 1 to `second`:
/// the first's session works, and the second's answer is returned.
async fn capture_and_replay(
    first: &RunningServer,
    second: &RunningServer,
    client: &SecretKey,
) -> Vec<u8> {
    let cfg = config_for(first.public_key(), client);
    let mut honest = RawClient::open(&first.url()).await;
    let (msg1, session) = honest.handshake(&cfg).await;
    let mut session = session.unwrap();
    let reply = honest
        .call(
            &mut session,
            br#"{"id":1,"object":"sigil","method":"ping","args":[]}"#,
        )
        .await
        .unwrap();
    assert_eq!(reply, br#"{"id":1,"result":"pong"}"#);
    let mut attacker = RawClient::open(&second.url()).await;
    attacker.send(msg1).await;
    attacker.recv().await.expect("an answer to the replay")
}

/// Two instances of one service sharing `redis`, for the clients `auth`
/// allows, where each principal's share is one entry
/// (`replay_cache_capacity` 64).
async fn sharing_one_entry_each(redis: &Redis, auth: ClientAuth) -> (RunningServer, RunningServer) {
    let server_key = key();
    let limits = ServerLimits {
        replay_cache_capacity: 64,
        ..ServerLimits::default()
    };
    let a = instance_for(&server_key, auth.clone(), &redis.url(), limits).await;
    let b = instance_for(&server_key, auth, &redis.url(), limits).await;
    (a, b)
}

/// A new client with `secret`, connected to `server` (or why not).
async fn try_connect(server: &RunningServer, secret: &SecretKey) -> Result<Client, ClientError> {
    Client::connect(
        &server.url(),
        ClientOptions::new(copy_key(secret), server.public_key()),
    )
    .await
}

fn refusal_code(answer: &[u8]) -> RefusalCode {
    Refusal::parse(answer)
        .unwrap_or_else(|| panic!("not a refusal: {:02x?}", &answer[..answer.len().min(8)]))
        .code()
}

#[tokio::test]
async fn a_hello_replayed_to_another_instance_sharing_redis_is_refused_with_code_5() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let client = key();
    let (a, b) = pair(&client, &redis.url()).await;
    let answer = capture_and_replay(&a, &b, &client).await;
    assert_eq!(refusal_code(&answer), RefusalCode::StaleOrReplayed);
    // And the other way round, and to the same instance.
    let answer = capture_and_replay(&b, &a, &client).await;
    assert_eq!(refusal_code(&answer), RefusalCode::StaleOrReplayed);
    let answer = capture_and_replay(&a, &a, &client).await;
    assert_eq!(refusal_code(&answer), RefusalCode::StaleOrReplayed);
    // Each hello left its entry, its principal's share and its rate.
    assert!(redis.keys() >= 3, "{} keys", redis.keys());
    a.shutdown().await;
    b.shutdown().await;
}

/// The weakness the shared store closes: with the in-memory store each
/// instance has its own cache, and a hello replayed to the other one is
/// answered with message 2. (The attacker cannot finish the handshake
/// without the client's keys, but the server has accepted a replay.)
#[tokio::test]
async fn with_the_in_memory_store_another_instance_accepts_the_replay() {
    let client = key();
    let (a, b) = pair(&client, "memory").await;
    let answer = capture_and_replay(&a, &b, &client).await;
    assert_eq!(answer[0], SERVER_HELLO, "the replay was accepted");
    // The same instance still refuses it.
    let answer = capture_and_replay(&a, &a, &client).await;
    assert_eq!(refusal_code(&answer), RefusalCode::StaleOrReplayed);
    a.shutdown().await;
    b.shutdown().await;
}

/// A client's share of the store (a 64th of `replay_cache_capacity`) holds
/// across instances: with a share of one entry, a client that has a live
/// hello at one instance is refused as busy at the other, while another
/// client is served.
#[tokio::test]
async fn a_clients_share_of_redis_holds_across_instances() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let (greedy, other) = (key(), key());
    let both = ClientAuth::Keys(vec![greedy.public_key(), other.public_key()]);
    let (a, b) = sharing_one_entry_each(&redis, both).await;
    let first = connect(&a, copy_key(&greedy)).await;
    let refused = try_connect(&b, &greedy).await.unwrap_err();
    assert_eq!(refused.refusal_code(), Some(3), "{refused}");
    let bystander = connect(&b, copy_key(&other)).await;
    let pong: String = bystander.call("sigil", "ping", ()).await.unwrap();
    assert_eq!(pong, "pong");
    let pong: String = first.call("sigil", "ping", ()).await.unwrap();
    assert_eq!(pong, "pong");
    a.shutdown().await;
    b.shutdown().await;
}

/// Under `allow_any_client` keys cost nothing to make, so the share is the
/// address's: with a share of one entry, a second key from the same
/// address is refused as busy at the other instance.
#[tokio::test]
async fn an_addresss_share_holds_across_instances_under_allow_any_client() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let (a, b) = sharing_one_entry_each(&redis, ClientAuth::AllowAny).await;
    let first = try_connect(&a, &key()).await.unwrap();
    let refused = try_connect(&b, &key()).await.unwrap_err();
    assert_eq!(refused.refusal_code(), Some(3), "{refused}");
    let pong: String = first.call("sigil", "ping", ()).await.unwrap();
    assert_eq!(pong, "pong");
    a.shutdown().await;
    b.shutdown().await;
}

/// A client's rate (`handshake_rate_per_key`, a burst of one second's
/// worth) holds across instances too: with a rate of 2, a third hello
/// within the second is refused as busy, whichever instance it reaches.
#[tokio::test]
async fn a_clients_rate_holds_across_instances() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let (server_key, client) = (key(), key());
    let limits = ServerLimits {
        handshake_rate_per_key: 2,
        ..ServerLimits::default()
    };
    let a = instance(&server_key, &client, &redis.url(), limits).await;
    let b = instance(&server_key, &client, &redis.url(), limits).await;
    let started = Instant::now();
    let first = try_connect(&a, &client).await.unwrap();
    let second = try_connect(&b, &client).await.unwrap();
    let third = try_connect(&a, &client).await;
    if started.elapsed() < Duration::from_millis(400) {
        let refused = third.unwrap_err();
        assert_eq!(refused.refusal_code(), Some(3), "{refused}");
    }
    // A second later the bucket has refilled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fourth = try_connect(&b, &client).await.unwrap();
    for c in [first, second, fourth] {
        let pong: String = c.call("sigil", "ping", ()).await.unwrap();
        assert_eq!(pong, "pong");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Redis goes away: new handshakes are refused as busy (never accepted
/// unchecked), sessions made before keep working, and once Redis is back
/// handshakes are served again.
#[tokio::test]
async fn with_redis_stopped_new_handshakes_are_busy_and_sessions_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let client = key();
    let server_key = key();
    let settings = ServerSettings::new(
        copy_key(&server_key),
        ClientAuth::Keys(vec![client.public_key()]),
    )
    .with_replay_store_location(ReplayStoreLocation::parse(&redis.url()).unwrap())
    .with_metrics_addr("127.0.0.1:0");
    let a = start(settings, demo_registry()).await;
    let b = instance(&server_key, &client, &redis.url(), ServerLimits::default()).await;
    let established = connect(&a, copy_key(&client)).await;

    redis.stop();
    for server in [&a, &b] {
        let started = Instant::now();
        let refused = try_connect(server, &client).await.unwrap_err();
        assert!(
            matches!(
                refused,
                ClientError::Refused {
                    code: RefusalCode::Busy,
                    ..
                }
            ),
            "{refused}"
        );
        // Within replay_store_timeout_ms (250 ms by default), and more.
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let sum: i64 = established.call("calculator", "add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
    // Counted, as busy refusals and as failures of the store.
    let (_, scrape) = get(a.metrics_addr().unwrap(), "/metrics").await;
    assert_eq!(value(&scrape, "sigil_replay_store_failures_total"), 1.0);
    assert_eq!(
        value(&scrape, r#"sigil_handshake_refusals_total{code="busy"}"#),
        1.0
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_connect(&b, &client).await {
            Ok(c) => {
                let pong: String = c.call("sigil", "ping", ()).await.unwrap();
                assert_eq!(pong, "pong");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.refusal_code(), Some(3), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still refused after Redis came back: {e}"),
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// A Redis out of memory under `noeviction` refuses the write: the hello
/// is refused as busy (the store is full, never evicted into accepting a
/// replay), and counted as the replay cache's limit, not as a failure.
#[tokio::test]
async fn a_full_redis_refuses_hellos_as_busy_and_evicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let client = key();
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client.public_key()]))
        .with_replay_store_location(ReplayStoreLocation::parse(&redis.url()).unwrap())
        .with_metrics_addr("127.0.0.1:0");
    let server = start(settings, demo_registry()).await;
    let first = try_connect(&server, &client).await.unwrap();
    let keys = redis.keys();
    assert_eq!(redis.command(&["CONFIG", "SET", "maxmemory", "1"]), "+OK");
    let refused = try_connect(&server, &client).await.unwrap_err();
    assert_eq!(refused.refusal_code(), Some(3), "{refused}");
    assert_eq!(redis.keys(), keys, "nothing evicted, nothing added");
    let (_, scrape) = get(server.metrics_addr().unwrap(), "/metrics").await;
    let full = r#"sigil_limits_hit_total{limit="replay_cache_capacity"}"#;
    assert_eq!(value(&scrape, full), 1.0);
    assert_eq!(value(&scrape, "sigil_replay_store_failures_total"), 0.0);
    assert_eq!(redis.command(&["CONFIG", "SET", "maxmemory", "0"]), "+OK");
    let again = try_connect(&server, &client).await.unwrap();
    for c in [first, again] {
        let pong: String = c.call("sigil", "ping", ()).await.unwrap();
        assert_eq!(pong, "pong");
    }
    server.shutdown().await;
}

/// A store that takes connections and never answers: each hello waits
/// `replay_store_timeout_ms`, then is refused as busy.
#[tokio::test]
async fn a_replay_store_that_answers_late_gets_hellos_refused_as_busy() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/0", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let client = key();
    let limits = ServerLimits {
        replay_store_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let server = instance(&key(), &client, &url, limits).await;
    let started = Instant::now();
    let refused = try_connect(&server, &client).await.unwrap_err();
    assert_eq!(refused.refusal_code(), Some(3), "{refused}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    server.shutdown().await;
    held.abort();
}
