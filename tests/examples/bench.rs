//! `cargo xtask bench`: the speed and memory of sigil's hot paths, beside
//! its peers measured in the same run on the same machine, as ratios.
//!
//! - handshake (client + server, in memory) against snow's
//!   `Noise_IK_25519_ChaChaPoly_SHA256` (interleaved), and against its own
//!   floor of 8 X25519 operations (2 keygens + 6 DH, `ss` being cached);
//! - frame seal + open against raw HMAC-SHA256 over the same bytes;
//! - RPC calls per second over loopback WebSocket against a `sigil serve`
//!   process: sequential, 64 in flight on one connection, 16 connections ×
//!   4, beside a raw tokio-tungstenite echo of the same message sizes,
//!   jsonrpsee (its own client, and the same raw client loop) and, where
//!   Python is present, Pyro4 with HMAC and Pyro5 (see `bench/rpc.rs`);
//! - handshakes per second over loopback with 4 connectors, and the CPU
//!   they cost beyond X25519;
//! - the server's memory with 0, 1,000 and 10,000 idle sessions and after
//!   they close (`bench/memory.rs`);
//! - RPC under hostile load: an honest client's sequential calls per second
//!   alone (before and after the floods), under a flood of junk hellos and
//!   under a flood of silent connections (attackers from 127.0.0.2 and up,
//!   see `bench/flood.rs`), each against the mean of alone;
//! - hellos rejected per second per core: the junk flood with no honest
//!   load, against `accept_hello` on junk hellos in memory (one thread);
//!   also per CPU-second the server used (Linux: from `/proc`), as the
//!   attackers share the cores;
//! - hellos per second over loopback with the in-memory replay store and
//!   with a shared Redis store (a redis-server the benchmark starts), and
//!   Redis's memory per hello (see `bench/hellos.rs`);
//! - refusal timing: the median time `accept_hello` takes to refuse an
//!   authorised key with a bad tag and an unknown key, and their ratio
//!   (about 1: both cost one X25519 operation, so timing tells an attacker
//!   nothing about `authorized_keys`).
//!
//! Every compared figure is measured [`REPS`] times, interleaved with what
//! it is compared to, and shown as min / median / max; the whole run is
//! written as JSON to `target/bench/latest.json` (or `$SIGIL_BENCH_DIR`).
//! Wall-clock numbers vary with the machine and its load; the ratios are
//! what to compare between runs. Nothing here asserts a time.

#![allow(clippy::unwrap_used, missing_docs)] // a measuring program, not a library

#[path = "bench/flood.rs"]
mod flood;
#[path = "bench/hellos.rs"]
mod hellos;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/memory.rs"]
mod memory;
#[path = "bench/peers.rs"]
mod peers;
#[path = "bench/procs.rs"]
mod procs;
#[path = "bench/pyro.rs"]
mod pyro;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/rpc.rs"]
mod rpc;
#[path = "bench/streams.rs"]
mod streams;

use std::hint::black_box;
use std::time::{Duration, Instant};

use sigil_client::{Client, ClientError, ClientOptions};
use sigil_core::handshake::{
    ClientAuth, ClientConfig, ClientHandshake, ServerConfig, accept_hello,
};
use sigil_core::kdf::hmac_sha256;
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_core::rand::OsRandom;
use sigil_core::replay::ReplayCache;
use sigil_server::{Registry, RunningServer, Server, ServerSettings, demo};

use flood::{ATTACKERS, Attack};
use report::Report;

/// Repetitions of every compared figure (1 with `--quick`).
const REPS: usize = 5;

/// A clock for in-memory handshakes (any fixed time will do).
const NOW_MS: u64 = 1_795_000_000_000;
/// How long each loopback measurement runs.
const CALLS_BUDGET: Duration = Duration::from_secs(2);
/// Calls one sequential measurement makes at most.
const MAX_CALLS: u64 = 1_000_000;
/// How long a flood runs before the honest client connects.
const FLOOD_WARMUP: Duration = Duration::from_millis(300);
/// A flood stops by itself after this, whatever happens.
const FLOOD_CAP: Duration = Duration::from_secs(10);
/// Samples per key in the refusal-timing row.
const TIMING_SAMPLES: usize = 2_000;

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

/// A server rotating its key (the new one advertised, the old one still
/// held), and a client pinned to each.
fn rotation_configs() -> (ServerConfig, ClientConfig, ClientConfig) {
    let (new, old) = (
        SecretKey::generate(&mut OsRandom).unwrap(),
        SecretKey::generate(&mut OsRandom).unwrap(),
    );
    let client_key = SecretKey::generate(&mut OsRandom).unwrap();
    let pinned = |key: &SecretKey| {
        let copy = SecretKey::from_bytes(&client_key.dangerous_to_bytes());
        ClientConfig::new(copy, key.public_key()).unwrap()
    };
    let (of_new, of_old) = (pinned(&new), pinned(&old));
    let server = ServerConfig::new(new, ClientAuth::Keys(vec![client_key.public_key()]))
        .unwrap()
        .with_additional_key(old)
        .unwrap();
    (server, of_new, of_old)
}

/// A replay cache that never stands in the way of a measurement.
fn replay_cache(capacity: usize) -> ReplayCache {
    ReplayCache::new(capacity, 60_000).with_rate(u32::MAX)
}

/// In-memory handshakes, sigil and snow interleaved; returns the X25519
/// floor of one sigil handshake (both sides), in µs.
fn handshakes(report: &mut Report, reps: usize) -> f64 {
    const G: &str = "handshake (client + server, in memory), handshakes/s";
    let (server, client) = configs();
    let mut replay = replay_cache(usize::MAX);
    let mut now = NOW_MS;
    let mut snow = peers::Snow::new();
    let each = Duration::from_millis(400);
    // Key rotation: a server holding two keys; a client of the advertised
    // key costs what it costs with one key, one of the other key one X25519 more.
    let (rotating, of_first, of_second) = rotation_configs();
    let mut handshake = |server: &ServerConfig, client: &ClientConfig| {
        rate(each, || {
            now += 1;
            let (hs, m1) = ClientHandshake::start(client, &mut OsRandom, now, None).unwrap();
            let hello = accept_hello(server, &mut replay, now, &m1).unwrap();
            let (m2, _s) = hello.accept(&mut OsRandom, None).unwrap();
            black_box(hs.finish(&m2).unwrap());
        })
    };
    for _ in 0..reps {
        report.sample(G, "sigil/1", "1/s", handshake(&server, &client));
        let noise = rate(each, || snow.handshake());
        report.sample(G, &format!("snow {}", peers::NOISE_IK), "1/s", noise);
        let first = handshake(&rotating, &of_first);
        report.sample(G, "sigil/1, 2 server keys, advertised key", "1/s", first);
        let second = handshake(&rotating, &of_second);
        report.sample(G, "sigil/1, 2 server keys, the other key", "1/s", second);
    }
    let a = SecretKey::generate(&mut OsRandom).unwrap();
    let b: PublicKey = SecretKey::generate(&mut OsRandom).unwrap().public_key();
    let dh_rate = rate(Duration::from_secs(1), || {
        black_box(a.diffie_hellman(black_box(&b)).unwrap());
    });
    let keygen_rate = rate(Duration::from_secs(1), || {
        black_box(SecretKey::generate(&mut OsRandom).unwrap());
    });
    let floor = 1.0 / (2.0 / keygen_rate + 6.0 / dh_rate);
    report.sample(G, "X25519 floor: 2 keygens + 6 DH", "1/s", floor);
    report.print_group(G);
    println!(
        "  ({:.1} µs per X25519 DH, {:.1} µs per keygen)",
        1e6 / dh_rate,
        1e6 / keygen_rate
    );
    report.ratio(
        "handshake in memory: sigil / snow IK",
        "sigil/1",
        &format!("snow {}", peers::NOISE_IK),
        Some(1.4),
    );
    report.ratio(
        "handshake in memory: sigil / its X25519 floor",
        "sigil/1",
        "X25519 floor: 2 keygens + 6 DH",
        None,
    );
    for key in ["advertised key", "the other key"] {
        report.ratio(
            &format!("key rotation: {key} / one key"),
            &format!("sigil/1, 2 server keys, {key}"),
            "sigil/1",
            None,
        );
    }
    1e6 / floor
}

fn frames(report: &mut Report) {
    let (server, client) = configs();
    let mut replay = replay_cache(16);
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
        report.sample(
            "frames",
            &format!("seal + open, {size} B"),
            "frames/s",
            sealed,
        );
        report.sample("frames", &format!("two raw HMACs, {size} B"), "1/s", raw);
    }
}

/// An in-process server with the demo objects on 127.0.0.1 (any port),
/// authorising one client, and that client's key.
async fn demo_server() -> (RunningServer, SecretKey) {
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
    (server, client_key)
}

/// Connects to `server` as the client `key` (from 127.0.0.1).
async fn connect(server: &RunningServer, key: &SecretKey) -> Result<Client, ClientError> {
    let key = SecretKey::from_bytes(&key.dangerous_to_bytes());
    Client::connect(&server.url(), ClientOptions::new(key, server.public_key())).await
}

/// What a run of sequential calls gave.
struct Calls {
    per_s: f64,
    /// Of the calls that succeeded, sorted.
    latencies: Vec<Duration>,
    failed: u64,
    first_error: Option<String>,
}

impl Calls {
    /// The latency at quantile `q`, in µs.
    fn p(&self, q: f64) -> f64 {
        let lat = &self.latencies;
        lat.get(((lat.len().max(1) - 1) as f64 * q) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    }

    /// "N failed calls, first: …", if any failed.
    fn failures(&self) -> String {
        match &self.first_error {
            None => String::new(),
            Some(e) => format!("  {} FAILED calls, first: {e}", self.failed),
        }
    }
}

/// `calculator.add` on `c`, one call at a time, for about `budget`.
async fn sequential(c: &Client, budget: Duration) -> Calls {
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut first_error = None;
    let start = Instant::now();
    for _ in 0..MAX_CALLS {
        if start.elapsed() >= budget {
            break;
        }
        let t = Instant::now();
        match c.call::<i64>("calculator", "add", (1, 2)).await {
            Ok(n) => {
                black_box(n);
                latencies.push(t.elapsed());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let per_s = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort();
    Calls {
        per_s,
        latencies,
        failed,
        first_error,
    }
}

/// An honest client's sequential calls, with `attack` going on (started
/// before the client connects, so the client's handshake runs under it
/// too), and what the attackers saw.
async fn under(
    server: &RunningServer,
    key: &SecretKey,
    attack: Option<Attack>,
) -> (Result<Calls, ClientError>, Option<flood::Counts>) {
    let flood = attack.map(|a| flood::start(a, server.local_addr(), FLOOD_CAP));
    if flood.is_some() {
        tokio::time::sleep(FLOOD_WARMUP).await;
    }
    let calls = match connect(server, key).await {
        Ok(c) => {
            let calls = sequential(&c, CALLS_BUDGET).await;
            c.close().await;
            Ok(calls)
        }
        Err(e) => Err(e),
    };
    let counts = match flood {
        Some(f) => Some(f.finish().await),
        None => None,
    };
    (calls, counts)
}

/// Prints one honest-load row, with its ratio to `alone` (calls/s).
fn honest_row(label: &str, calls: &Result<Calls, ClientError>, alone: Option<f64>) {
    match calls {
        Ok(c) => {
            let ratio = alone.map_or(String::new(), |a| format!("  {:.2} × alone", c.per_s / a));
            println!(
                "  {label:<26} {:>9.0} calls/s  p50 {:.0} µs  p99 {:.0} µs  max {:.1} ms{ratio}{}",
                c.per_s,
                c.p(0.5),
                c.p(0.99),
                c.p(1.0) / 1e3,
                c.failures()
            );
        }
        Err(e) => println!("  {label:<26} the honest client could NOT connect: {e}"),
    }
}

async fn hostile() {
    let (server, key) = demo_server().await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "RPC under hostile load (honest client from 127.0.0.1; attackers from 127.0.0.2-{})",
        1 + ATTACKERS
    );
    let (before, _) = under(&server, &key, None).await;
    honest_row("alone (before)", &before, None);
    let mut floods = Vec::new();
    for (label, attack) in [
        ("under junk hellos", Attack::JunkHellos),
        ("under silent connections", Attack::Silent),
    ] {
        floods.push((label, under(&server, &key, Some(attack)).await));
    }
    let (after, _) = under(&server, &key, None).await;
    honest_row("alone (after)", &after, None);
    // The ratios are against the mean of both runs alone (one is NaN if a
    // run failed, and so are the ratios then).
    let alone = [before, after]
        .iter()
        .map(|c| c.as_ref().map_or(f64::NAN, |c| c.per_s))
        .sum::<f64>()
        / 2.0;
    for (label, (calls, counts)) in floods {
        honest_row(label, &calls, Some(alone));
        println!("  {:<26} attackers saw: {}", "", counts.unwrap());
    }

    // Hellos rejected, with no honest load.
    let cpu_before = flood::process_cpu();
    let flood = flood::start(Attack::JunkHellos, server.local_addr(), FLOOD_CAP);
    tokio::time::sleep(CALLS_BUDGET).await;
    let counts = flood.finish().await;
    let cpu = flood::process_cpu();
    let secs = counts.elapsed.as_secs_f64();
    let net = counts.refused() as f64 / secs;
    let (config, _) = configs();
    let mut replay = replay_cache(1024);
    let junk: Vec<Vec<u8>> = (0..256).map(|_| flood::junk_hello(NOW_MS)).collect();
    let mut i = 0;
    let mem = rate(Duration::from_secs(1), || {
        i = (i + 1) % junk.len();
        black_box(accept_hello(&config, &mut replay, NOW_MS, &junk[i]).is_err());
    });
    println!("hellos rejected (junk hellos, code 1; no honest load)");
    println!("  attackers saw:  {counts}");
    println!(
        "  over loopback:  {net:>9.0} /s, {:.0} /s per core ({cores} cores, shared with the attackers)",
        net / cores as f64
    );
    println!(
        "  in memory:      {mem:>9.0} /s (accept_hello, one thread); loopback per core {:.2} × in memory",
        net / cores as f64 / mem
    );
    // The server's own CPU time: the process's, less the attackers' thread.
    if let (Some(b), Some(a), Some(att)) = (cpu_before, cpu, counts.attacker_cpu) {
        let server_cpu = a.saturating_sub(b).saturating_sub(att).as_secs_f64();
        let per_cpu_s = counts.refused() as f64 / server_cpu;
        println!(
            "  server CPU:     {server_cpu:>9.2} s in {secs:.2} s (attackers' thread {:.2} s): {per_cpu_s:.0} rejected per server CPU-second, {:.2} × in memory",
            att.as_secs_f64(),
            per_cpu_s / mem
        );
    }
    server.shutdown().await;
}

/// The median time `accept_hello` takes on each of `a` and `b`, measured
/// interleaved (alternating which goes first), in µs.
fn median_refusals(config: &ServerConfig, a: &[Vec<u8>], b: &[Vec<u8>]) -> (f64, f64) {
    let mut replay = replay_cache(1024);
    let mut time = |m: &[u8]| {
        let t = Instant::now();
        black_box(accept_hello(config, &mut replay, NOW_MS, black_box(m)).is_err());
        t.elapsed()
    };
    // Warm up.
    for (x, y) in a.iter().zip(b).take(50) {
        time(x);
        time(y);
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if i % 2 == 0 {
            ta.push(time(x));
            tb.push(time(y));
        } else {
            tb.push(time(y));
            ta.push(time(x));
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    (median(&mut ta), median(&mut tb))
}

fn refusal_timing() {
    let (server, authorised) = configs();
    let unknown = ClientConfig::new(
        SecretKey::generate(&mut OsRandom).unwrap(),
        server.public_key(),
    )
    .unwrap();
    let hello = |client: &ClientConfig| {
        ClientHandshake::start(client, &mut OsRandom, NOW_MS, None)
            .unwrap()
            .1
    };
    let bad_tag: Vec<Vec<u8>> = (0..TIMING_SAMPLES)
        .map(|_| {
            let mut m = hello(&authorised);
            *m.last_mut().unwrap() ^= 1;
            m
        })
        .collect();
    let unknown: Vec<Vec<u8>> = (0..TIMING_SAMPLES).map(|_| hello(&unknown)).collect();
    let (a, b) = median_refusals(&server, &bad_tag, &unknown);
    println!(
        "refusal timing (accept_hello, in memory, {TIMING_SAMPLES} samples each, interleaved)"
    );
    println!("  authorised key, bad tag: median {a:>6.1} µs");
    println!(
        "  unknown key:             median {b:>6.1} µs  {:.3} × authorised",
        b / a
    );
}

/// Where the JSON and the Pyro virtualenv go: `$SIGIL_BENCH_DIR`, or
/// `target/bench` (this program is `target/release/examples/bench`).
fn bench_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("SIGIL_BENCH_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map_or_else(|| "target".into(), std::path::Path::to_path_buf)
        .join("bench")
}

/// The peers' servers and `sigil serve`, started for the RPC rows.
fn start_servers(
    setup: &procs::SigilSetup,
    dir: &std::path::Path,
    report: &mut Report,
) -> rpc::Servers {
    let sigil = setup.serve().unwrap_or_else(|e| panic!("sigil serve: {e}"));
    let pyro = match pyro::Pyro::start(dir) {
        Ok(p) => Some(p),
        Err(e) => {
            report.skip("Pyro4 and Pyro5 rows", &e);
            None
        }
    };
    rpc::Servers {
        sigil_key: sigil.public_key.unwrap(),
        sigil,
        client_key: SecretKey::from_bytes(&setup.clients[0].dangerous_to_bytes()),
        client_keys: setup
            .clients
            .iter()
            .map(|k| SecretKey::from_bytes(&k.dangerous_to_bytes()))
            .collect(),
        echo: procs::serve_peer("echo", dir).unwrap(),
        jsonrpsee: procs::serve_peer("jsonrpsee", dir).unwrap(),
        pyro,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, name] = args.as_slice()
        && flag == "--serve"
    {
        peers::serve(name);
    }
    if cfg!(debug_assertions) {
        println!("note: a debug build; run `cargo xtask bench` for release numbers");
    }
    // The session rows hold 10,000 sockets here and in the server (which
    // inherits the limit).
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let machine = report::machine();
    println!("machine: {machine}");
    let dir = bench_dir();
    // `--quick`: one repetition and 1,000 sessions, to try the benchmark out.
    let quick = args.iter().any(|a| a == "--quick");
    let reps = if quick { 1 } else { REPS };
    let sessions: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000] };
    // `--only SECTION,…`: just those sections (handshake, frames, rpc,
    // loopback, streams, hellos, memory, hostile, refusal), to profile one of them.
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    let run = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));
    let mut report = Report::default();
    let floor_us = if run("handshake") {
        handshakes(&mut report, reps)
    } else {
        f64::NAN
    };
    if run("frames") {
        frames(&mut report);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = procs::SigilSetup::new();
    if run("rpc") || run("loopback") || run("streams") {
        let servers = start_servers(&setup, &dir, &mut report);
        if run("rpc") {
            rt.block_on(rpc::rpc(&servers, reps, &mut report));
        }
        if run("streams") {
            rt.block_on(async {
                let client = servers.sigil_client().await;
                streams::streams(&client, reps, &mut report).await;
                client.close().await;
            });
        }
        if run("loopback") {
            rt.block_on(rpc::handshakes(&servers, 4, reps, floor_us, &mut report));
        }
    }
    if run("hellos") {
        rt.block_on(hellos::hellos());
    }
    if run("memory") {
        rt.block_on(memory::sessions(&setup, &mut report, sessions));
    }
    if run("hostile") {
        rt.block_on(hostile());
    }
    if run("refusal") {
        refusal_timing();
    }
    report.print_summary();
    let json = dir.join("latest.json");
    match report.write_json(&json, &machine) {
        Ok(()) => println!("written: {}", json.display()),
        Err(e) => println!("could not write {}: {e}", json.display()),
    }
}
