//! Hellos per second over loopback with the in-memory replay store and with
//! the Redis store (a local redis-server the benchmark starts), in the same
//! run; and what one hello costs Redis in memory, for sizing.
//!
//! Clients connect, finish the handshake and drop the connection, from
//! `CLIENTS` tasks at once, each its own client key (so that no key's share
//! or rate is what limits it: both are raised far out of the way). Clients
//! and server share the machine's cores: the ratio is what to compare.

use std::time::{Duration, Instant};

use sigil_client::{Client, ClientOptions};
use sigil_core::handshake::ClientAuth;
use sigil_core::keys::SecretKey;
use sigil_core::rand::OsRandom;
use sigil_server::{
    Registry, ReplayStoreLocation, RunningServer, Server, ServerLimits, ServerSettings,
};
use sigil_tests::services::Redis;

/// Clients handshaking at once.
const CLIENTS: usize = 32;
/// How long each store is measured.
const BUDGET: Duration = Duration::from_secs(3);

/// A server with `store`, authorising `clients`, with limits that do not
/// get in the way of a throughput measurement.
async fn server(
    store: ReplayStoreLocation,
    server_key: &SecretKey,
    clients: &[SecretKey],
) -> RunningServer {
    let settings = ServerSettings::new(
        SecretKey::from_bytes(&server_key.dangerous_to_bytes()),
        ClientAuth::Keys(clients.iter().map(SecretKey::public_key).collect()),
    )
    .with_replay_store_location(store)
    .with_server_limits(ServerLimits {
        replay_cache_capacity: 16 * 1024 * 1024,
        handshake_rate_per_key: 1_000_000,
        max_pending_handshakes: 4096,
        max_pending_per_ip: 4096,
        handshake_rate_per_ip: 1_000_000,
        max_connections: 4096,
        ..ServerLimits::default()
    });
    Server::new(settings, Registry::new())
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// Handshakes completed per second against `server`, and how many failed.
async fn hellos_per_second(server: &RunningServer, clients: &[SecretKey]) -> (f64, u64) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for key in clients {
        let key = SecretKey::from_bytes(&key.dangerous_to_bytes());
        let (url, server_key) = (server.url(), server.public_key());
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while start.elapsed() < BUDGET {
                let options = ClientOptions::new(
                    SecretKey::from_bytes(&key.dangerous_to_bytes()),
                    server_key,
                );
                match Client::connect(&url, options).await {
                    Ok(client) => {
                        ok += 1;
                        drop(client);
                    }
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (o, f) = done.unwrap();
        ok += o;
        failed += f;
    }
    (ok as f64 / start.elapsed().as_secs_f64(), failed)
}

fn used_memory(redis: &Redis) -> Option<f64> {
    redis.info("memory", "used_memory")?.parse().ok()
}

pub(crate) async fn hellos() {
    println!(
        "hellos over loopback, in-memory replay store against Redis ({CLIENTS} clients at once)"
    );
    let runs = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        println!("  skipped: redis-server is not installed (cargo xtask cluster installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let server_key = SecretKey::generate(&mut OsRandom).unwrap();
    let clients: Vec<SecretKey> = (0..CLIENTS)
        .map(|_| SecretKey::generate(&mut OsRandom).unwrap())
        .collect();

    let memory = server(ReplayStoreLocation::Memory, &server_key, &clients).await;
    let (mem_rate, mem_failed) = hellos_per_second(&memory, &clients).await;
    memory.shutdown().await;

    let location = ReplayStoreLocation::parse(&redis.url()).unwrap();
    let shared = server(location, &server_key, &clients).await;
    let before = used_memory(&redis);
    let (redis_rate, redis_failed) = hellos_per_second(&shared, &clients).await;
    let after = used_memory(&redis);
    let entries = redis.keys();
    shared.shutdown().await;

    println!("  in memory: {mem_rate:>9.0} hellos/s ({mem_failed} failed)");
    println!(
        "  Redis:     {redis_rate:>9.0} hellos/s ({redis_failed} failed), {:.2} × in memory",
        redis_rate / mem_rate
    );
    if let (Some(before), Some(after)) = (before, after) {
        let hellos = redis_rate * BUDGET.as_secs_f64();
        println!(
            "  Redis memory: {:.0} bytes per hello ({entries} keys after {hellos:.0} hellos from {CLIENTS} keys)",
            (after - before) / hellos
        );
    }
}
