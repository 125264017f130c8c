//! A real cluster on loopback: Redis, two `sigil serve` instances sharing
//! it as their replay store (and one server key), and nginx balancing
//! WebSocket upgrades between them (`sigil_tests::cluster`, as the book's
//! "Scaling out" chapter configures it). In order, it shows:
//!
//! 1. calls from many clients land on both instances (`instance.name`);
//! 2. a message 1 captured from a handshake with one instance and replayed
//!    through nginx is refused with code 5 — by the other instance too, as
//!    its metrics show;
//! 3. with Redis stopped, new handshakes are refused as busy (code 3) while
//!    established sessions keep working, and once Redis is back new
//!    handshakes are served;
//! 4. killing one instance moves the reconnecting clients to the other.
//!
//! Redis and nginx are required: `cargo xtask test` installs them (Debian
//! packages redis-server and nginx); without them the test fails and says
//! so, it is not skipped.

#[path = "common/attack.rs"]
#[allow(dead_code)]
mod attack;
mod common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use attack::{Answer, Target, client_config, random_key, refusal_code};
use serde_json::{Value, json};
use sigil_client::{
    Client, ClientOptions, ConnectionEvent, ConnectionEvents, ConnectionState, ReconnectPolicy,
};
use sigil_core::handshake::SERVER_HELLO;
use sigil_core::{PublicKey, SecretKey};
use sigil_tests::cluster::{Cluster, ClusterOptions, metric};
use tokio::time::{Instant, timeout};

/// Clients that connect through nginx.
const CLIENTS: usize = 8;

/// The longest any one step may take.
const WAIT: Duration = Duration::from_secs(20);

const REPLAYED: &str = r#"sigil_handshake_refusals_total{code="stale_or_replayed"}"#;
const BUSY: &str = r#"sigil_handshake_refusals_total{code="busy"}"#;
const STORE_FAILURES: &str = "sigil_replay_store_failures_total";

/// Two instances behind nginx, with `dir/authorized_keys`, sharing Redis
/// as their replay store or not; and nginx as a target.
fn two_instances(dir: &std::path::Path, shared_store: bool) -> (Cluster, Target) {
    let cluster = Cluster::start(
        dir,
        &ClusterOptions {
            sigil: common::sigil_path(),
            instances: 2,
            authorized_keys: Some(dir.join("authorized_keys")),
            extra_config: String::new(),
            shared_store,
        },
    );
    let front = Target {
        url: cluster.url(),
        port: cluster.port,
        server_key: PublicKey::parse(&cluster.public_key).expect("the server key"),
    };
    (cluster, front)
}

/// A client through nginx that reconnects, and its events.
async fn reconnecting_client(cluster: &Cluster, key: &SecretKey) -> (Client, ConnectionEvents) {
    let server_key = PublicKey::parse(&cluster.public_key).expect("the server key");
    let policy = ReconnectPolicy {
        initial_delay_ms: 50,
        max_delay_ms: 1_000,
        max_attempts: 30,
    };
    let options = ClientOptions::new(attack::copy_key(key), server_key).with_reconnect(policy);
    let client = Client::connect(&cluster.url(), options)
        .await
        .expect("connect through nginx");
    let events = client.events();
    (client, events)
}

async fn instance_name(client: &Client) -> String {
    timeout(WAIT, client.call::<String>("instance", "name", ()))
        .await
        .expect("an answer in time")
        .expect("instance.name answers")
}

/// A new handshake through nginx with `key`: the answer.
async fn handshake(front: &Target, key: &SecretKey) -> Answer {
    let config = client_config(key, &front.server_key);
    let (_, answer) = front
        .handshake_from(Ipv4Addr::LOCALHOST, &config)
        .await
        .expect("connect through nginx");
    answer
}

#[test]
fn a_cluster_behind_nginx_shares_its_replay_store_and_survives_an_instance() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path();
    let keys: Vec<SecretKey> = (0..=CLIENTS).map(|_| random_key()).collect();
    let authorized: String = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{} client-{i}\n", k.public_key()))
        .collect();
    std::fs::write(dir.join("authorized_keys"), authorized).expect("write authorized_keys");
    let (mut cluster, front) = two_instances(dir, true);
    let metrics: BTreeMap<String, _> = cluster
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.metrics))
        .collect();

    attack::run(async {
        // 1. Many clients, both instances.
        let mut clients = Vec::new();
        for key in &keys[..CLIENTS] {
            clients.push(reconnecting_client(&cluster, key).await);
        }
        let mut served: BTreeMap<String, usize> = BTreeMap::new();
        let mut first_names = Vec::new();
        for (client, _) in &clients {
            let name = instance_name(client).await;
            let sum: i64 = client.call("calculator", "add", (2, 3)).await.unwrap();
            assert_eq!(sum, 5);
            *served.entry(name.clone()).or_default() += 1;
            first_names.push(name);
        }
        assert_eq!(
            served.keys().collect::<Vec<_>>(),
            ["a", "b"],
            "calls landed on {served:?}"
        );

        // 2. A captured message 1, replayed through nginx: refused with
        // code 5 whichever instance gets it, the other one included.
        let replayer = &keys[CLIENTS];
        let (mut session, hello) = front
            .session_and_hello(Ipv4Addr::LOCALHOST, replayer, &[])
            .await;
        let first = session
            .call("instance", "name", &json!([]))
            .await
            .expect("a call")
            .expect("instance.name answers");
        let first = first.as_str().expect("a name").to_owned();
        let other = if first == "a" { "b" } else { "a" };
        let mut replays = 0;
        while metric(metrics[other], REPLAYED) < 1.0 {
            assert!(replays < 8, "the replay never reached instance {other}");
            let mut conn = front
                .upgraded_from(Ipv4Addr::LOCALHOST)
                .await
                .expect("a connection through nginx");
            let answer = conn.exchange(&hello).await.expect("an answer");
            assert_eq!(refusal_code(&answer), Some(5), "replay {replays}");
            replays += 1;
        }
        // The session it was captured from still works.
        let again = session.call("instance", "name", &json!([])).await;
        assert_eq!(
            again.expect("a call").ok(),
            Some(Value::from(first.clone()))
        );

        // 3. Redis stopped: new handshakes are busy, on both instances;
        // sessions keep working.
        cluster.redis.stop();
        let mut tries = 0;
        while metric(metrics["a"], STORE_FAILURES) < 1.0
            || metric(metrics["b"], STORE_FAILURES) < 1.0
        {
            assert!(tries < 8, "new handshakes did not reach both instances");
            tries += 1;
            match handshake(&front, &keys[0]).await {
                Answer::Refused(3) => {}
                other => panic!("with Redis stopped, a handshake got {other:?}"),
            }
        }
        assert!(metric(metrics["a"], BUSY) >= 1.0 && metric(metrics["b"], BUSY) >= 1.0);
        for (client, _) in &clients {
            let pong: String = client.call("sigil", "ping", ()).await.unwrap();
            assert_eq!(pong, "pong");
        }
        cluster.redis.restart();
        let deadline = Instant::now() + WAIT;
        loop {
            match handshake(&front, &keys[1]).await {
                Answer::Accepted(_) => break,
                Answer::Refused(3) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("with Redis back, a handshake got {other:?}"),
            }
        }

        // 4. Instance a goes away: its clients reconnect through nginx to b;
        // b's clients keep their sessions.
        let hashes: Vec<[u8; 32]> = clients.iter().map(|(c, _)| c.session_hash()).collect();
        cluster.instance("a").kill();
        for (i, (client, events)) in clients.iter_mut().enumerate() {
            if first_names[i] == "a" {
                wait_until_open_again(events).await;
                assert_ne!(client.session_hash(), hashes[i], "a new session");
            }
            assert_eq!(instance_name(client).await, "b", "client {i}");
            assert_eq!(client.state(), ConnectionState::Open);
            if first_names[i] == "b" {
                assert_eq!(client.session_hash(), hashes[i], "b's session kept");
            }
        }
        for (client, _) in clients {
            client.close().await;
        }
    });
    assert!(
        cluster.instance("b").is_running(),
        "{}",
        cluster.nginx.log()
    );
}

/// The same cluster with the in-memory store, each instance its own: a
/// message 1 replayed through nginx to the other instance is accepted
/// (answered with message 2). This is why the in-memory store is for one
/// instance only.
#[test]
fn with_in_memory_stores_the_other_instance_accepts_a_replay() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path();
    let key = random_key();
    std::fs::write(
        dir.join("authorized_keys"),
        format!("{}\n", key.public_key()),
    )
    .expect("write authorized_keys");
    let (_cluster, front) = two_instances(dir, false);
    attack::run(async {
        let (_session, hello) = front
            .session_and_hello(Ipv4Addr::LOCALHOST, &key, &[])
            .await;
        let mut answers = Vec::new();
        for _ in 0..4 {
            let mut conn = front
                .upgraded_from(Ipv4Addr::LOCALHOST)
                .await
                .expect("a connection through nginx");
            answers.push(conn.exchange(&hello).await.expect("an answer"));
        }
        let accepted = answers.iter().filter(|a| a[0] == SERVER_HELLO).count();
        let refused = answers
            .iter()
            .filter(|a| refusal_code(a) == Some(5))
            .count();
        // nginx alternates: the instance that saw the hello refuses it, the
        // other accepts it.
        assert!(
            accepted >= 1 && refused >= 1,
            "{accepted} accepted, {refused} refused"
        );
        assert_eq!(accepted + refused, answers.len());
    });
}

/// Events until the client has a new session (after reconnecting).
async fn wait_until_open_again(events: &mut ConnectionEvents) {
    let deadline = Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("reconnected in time")
            .expect("events go on");
        match event {
            ConnectionEvent::Open { .. } => return,
            ConnectionEvent::Closed { error } => panic!("the client gave up: {error:?}"),
            _ => {}
        }
    }
}
