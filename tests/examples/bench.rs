//! `cargo xtask bench`: the speed of sigil's hot paths, as ratios against
//! baselines measured in the same run on the same machine.
//!
//! - handshake (client + server, in memory) against its own floor: 8
//!   X25519 operations (2 keygens + 6 DH when `ss` is cached);
//! - frame seal + open against raw HMAC-SHA256 over the same bytes;
//! - RPC calls per second over loopback WebSocket, sequential and with 64 in
//!   flight, with p50/p99 latency.
//!
//! Wall-clock numbers vary with the machine and its load; the ratios are
//! what to compare between runs. Nothing here asserts a time.

#![allow(clippy::unwrap_used, missing_docs)] // a measuring program, not a library

use std::hint::black_box;
use std::time::{Duration, Instant};

use sigil_client::{Client, ClientOptions};
use sigil_core::handshake::{
    ClientAuth, ClientConfig, ClientHandshake, ServerConfig, accept_hello,
};
use sigil_core::kdf::hmac_sha256;
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_core::rand::OsRandom;
use sigil_core::replay::ReplayCache;
use sigil_server::{Registry, Server, ServerSettings, demo};

/// Runs `f` repeatedly for about `budget` and returns operations per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up.
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..10 {
            f();
        }
        n += 10;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A server that authorises one client, and that client's config.
fn configs() -> (ServerConfig, ClientConfig) {
    let server_key = SecretKey::generate(&mut OsRandom).unwrap();
    let client_key = SecretKey::generate(&mut OsRandom).unwrap();
    let client_pub = client_key.public_key();
    let server_pub = server_key.public_key();
    let server = ServerConfig::new(server_key, ClientAuth::Keys(vec![client_pub])).unwrap();
    let client = ClientConfig::new(client_key, server_pub).unwrap();
    (server, client)
}

fn handshakes() {
    let (server, client) = configs();
    let mut replay = ReplayCache::new(usize::MAX, 60_000).with_rate(u32::MAX);
    let mut now = 1_795_000_000_000u64;
    let hs_rate = rate(Duration::from_secs(2), || {
        now += 1;
        let (hs, m1) = ClientHandshake::start(&client, &mut OsRandom, now, None).unwrap();
        let hello = accept_hello(&server, &mut replay, now, &m1).unwrap();
        let (m2, _s) = hello.accept(&mut OsRandom, None).unwrap();
        black_box(hs.finish(&m2).unwrap());
    });
    let a = SecretKey::generate(&mut OsRandom).unwrap();
    let b: PublicKey = SecretKey::generate(&mut OsRandom).unwrap().public_key();
    let dh_rate = rate(Duration::from_secs(1), || {
        black_box(a.diffie_hellman(black_box(&b)).unwrap());
    });
    let keygen_rate = rate(Duration::from_secs(1), || {
        black_box(SecretKey::generate(&mut OsRandom).unwrap());
    });
    let floor = 1.0 / (2.0 / keygen_rate + 6.0 / dh_rate);
    println!("handshake (client + server, in memory)");
    println!("  {hs_rate:>10.0} handshakes/s");
    println!(
        "  {:>10.1} µs per X25519 DH, {:.1} µs per keygen",
        1e6 / dh_rate,
        1e6 / keygen_rate
    );
    println!(
        "  {:>10.2} × the floor of 2 keygens + 6 DH ({floor:.0}/s)",
        hs_rate / floor
    );
}

fn frames() {
    let (server, client) = configs();
    let mut replay = ReplayCache::new(16, 60_000).with_rate(u32::MAX);
    let (hs, m1) = ClientHandshake::start(&client, &mut OsRandom, 1, None).unwrap();
    let (m2, s) = accept_hello(&server, &mut replay, 1, &m1)
        .unwrap()
        .accept(&mut OsRandom, None)
        .unwrap();
    let (c, _) = hs.finish(&m2).unwrap();
    let (mut tx, _) = c.split();
    let (_, mut rx) = s.split();
    println!("frames (seal + open)");
    for size in [64usize, 1024, 64 * 1024] {
        let payload = vec![b'x'; size];
        let mut frame = Vec::with_capacity(size + 64);
        let sealed = rate(Duration::from_secs(1), || {
            frame.clear();
            tx.seal(&payload, &mut frame).unwrap();
            black_box(rx.open(&frame).unwrap());
        });
        let key = [7u8; 32];
        let raw = rate(Duration::from_secs(1), || {
            // Two HMACs over the same bytes: what seal + open must do at least.
            black_box(hmac_sha256(&key, black_box(&payload)));
            black_box(hmac_sha256(&key, black_box(&payload)));
        });
        println!(
            "  {size:>6} B: {sealed:>10.0} frames/s ({:>7.1} MB/s), {:.2} × two raw HMACs",
            sealed * size as f64 / 1e6,
            sealed / raw
        );
    }
}

async fn rpc() {
    let client_key = SecretKey::generate(&mut OsRandom).unwrap();
    let mut registry = Registry::new();
    demo::register(&mut registry);
    let settings = ServerSettings::new(
        SecretKey::generate(&mut OsRandom).unwrap(),
        ClientAuth::Keys(vec![client_key.public_key()]),
    );
    let server = Server::new(settings, registry)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let c = Client::connect(
        &server.url(),
        ClientOptions::new(client_key, server.public_key()),
    )
    .await
    .unwrap();
    println!("RPC over loopback WebSocket (calculator.add, signed frames)");
    // Sequential.
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        black_box(c.call::<i64>("calculator", "add", (1, 2)).await.unwrap());
        lat.push(t.elapsed());
    }
    let seq = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "  sequential:   {seq:>9.0} calls/s  p50 {:.0} µs  p99 {:.0} µs",
        p(0.5),
        p(0.99)
    );
    // 64 in flight.
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        let calls = (0..64).map(|i| {
            let c = c.clone();
            async move { c.call::<i64>("calculator", "add", (i, 1)).await.unwrap() }
        });
        black_box(futures_util::future::join_all(calls).await);
        done += 64;
    }
    println!(
        "  64 in flight: {:>9.0} calls/s",
        done as f64 / start.elapsed().as_secs_f64()
    );
    c.close().await;
    server.shutdown().await;
}

fn main() {
    if cfg!(debug_assertions) {
        println!("note: a debug build; run `cargo xtask bench` for release numbers");
    }
    handshakes();
    frames();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(rpc());
}
