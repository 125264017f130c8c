//! Abuse tests (issue 8): each attack on the issue's list, run for a few
//! seconds against a real `sigil serve --demo` on loopback, while an honest
//! client on 127.0.0.1 connects and calls every 200 ms (each within 5 s,
//! every one must succeed). The attackers connect from 127.0.0.2 and up, so
//! that the per-address limits meet them as they would meet other hosts.
//! Each test also bounds the server's RSS (sampled from /proc every 50 ms,
//! the peak asserted) and checks that the server closes the attackers'
//! connections within their deadlines (a read gives end of file or a reset,
//! or a write fails).
//!
//! The tests run one at a time (they measure time and memory); the whole
//! file takes about a minute.

#[path = "common/attack.rs"]
mod attack;
mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use attack::{
    Answer, Bystander, Conn, HONEST, HONEST_WAIT, OP_BINARY, OP_PING, RssWatch, Tally, Target,
    WsMessage, assert_closed, assert_quiet_log, attacker, client_config, get_request,
    hello_by_hand, join_tallies, junk_hello, now_ms, random_key, refusal_code, run, serve_demo,
    upgrade_request, write_config, ws_frame, ws_header,
};
use common::serve::dir;
use common::{fails, sigil};
use serde_json::{Value, json};
use sigil_client::{Client, ClientOptions};
use sigil_core::handshake::ClientHandshake;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

/// Time the server gets beyond a deadline it sets itself (scheduling on a
/// busy two-core machine).
const SLACK: Duration = Duration::from_secs(2);

/// How often the honest client connects and calls.
const HONEST_EVERY: Duration = Duration::from_millis(200);

/// The `handshake_timeout_ms` and `write_timeout_ms` most tests configure.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

// ---------------------------------------------------------------------------
// 1. Ping flood without reading

/// Attacker connections of the ping flood, 4 from each of 5 addresses.
const FLOODERS: usize = 20;

/// 20 connections send masked pings (125-byte payloads) as fast as the
/// server takes them and never read, for 6 s, reconnecting when closed;
/// before (`after_handshake = false`) or after the sigil/1 handshake.
async fn ping_flood(after_handshake: bool) {
    let tmp = dir();
    let serve = serve_demo(
        tmp.path(),
        &[
            ("handshake_timeout_ms", &ms(HANDSHAKE_TIMEOUT)),
            ("write_timeout_ms", &ms(WRITE_TIMEOUT)),
            // Bounds the write buffer to about 128 KiB a connection.
            ("max_message_size", "65536"),
        ],
        &[],
    );
    let target = Target::of(&serve);
    let rss = RssWatch::start(&serve);
    let bystander = Bystander::start(&target, &random_key(), HONEST_EVERY);
    let attack_end = Instant::now() + Duration::from_secs(6);
    // Before the handshake the server stops reading once the largest
    // message 1 could have come; after it, once its bounded write buffer is
    // full, a write waits at most write_timeout.
    let deadline = HANDSHAKE_TIMEOUT + WRITE_TIMEOUT + SLACK;
    let pings: Vec<u8> = (0..64)
        .flat_map(|_| ws_frame(OP_PING, &[0x55; 125]))
        .collect();
    let mut tasks = JoinSet::new();
    for i in 0..FLOODERS {
        let (target, pings) = (target.clone(), pings.clone());
        tasks.spawn(async move {
            let source = attacker(i / 4);
            let mut tally = Tally::default();
            while Instant::now() < attack_end {
                let opened = if after_handshake {
                    open_session(&target, source).await
                } else {
                    target
                        .upgraded_from(source)
                        .await
                        .map_err(|e| e.to_string())
                };
                let mut conn = match opened {
                    Ok(conn) => conn,
                    Err(e) => {
                        tally.turned_away(e);
                        sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                tally.opened += 1;
                let end = conn.opened + deadline;
                let written = conn.write_until(&pings, true, end).await;
                tally.bytes += written.bytes;
                tally.closed(&mut conn, written.failed_at, deadline).await;
                sleep(Duration::from_millis(50)).await;
            }
            tally
        });
    }
    let tally = join_tallies(tasks).await;
    rss.finish().assert_bounded(FLOODERS, 1024, 64 * 1024);
    tally.assert_closed(deadline, "ping flooder");
    bystander.assert_all_ok(10);
}

/// A completed handshake with a random client key (`--demo` accepts any).
async fn open_session(target: &Target, source: Ipv4Addr) -> Result<Conn, String> {
    let config = client_config(&random_key(), &target.server_key);
    match target.handshake_from(source, &config).await {
        Ok((conn, Answer::Accepted(_))) => Ok(conn),
        Ok((_, answer)) => Err(format!("{answer:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn ping_flood_before_the_handshake_is_bounded_and_closed() {
    run(ping_flood(false));
}

#[test]
fn ping_flood_after_the_handshake_is_bounded_and_closed() {
    run(ping_flood(true));
}

// ---------------------------------------------------------------------------
// 2. Silent sockets

/// Opens a connection from `source` that says nothing (`stalled = false`)
/// or stops in the middle of its upgrade request.
async fn silent(target: &Target, source: Ipv4Addr, stalled: bool) -> Option<Conn> {
    let mut conn = target.tcp_from(source).await.ok()?;
    if stalled {
        let request = upgrade_request(&target.host(), &[]);
        let half = request.len() / 2;
        conn.send(&request.as_bytes()[..half]).await.ok()?;
    }
    Some(conn)
}

#[test]
fn silent_sockets_do_not_lock_out_honest_clients() {
    run(async {
        let tmp = dir();
        // max_connections counts sessions; the silent sockets must not take them.
        let serve = serve_demo(
            tmp.path(),
            &[
                ("max_connections", "128"),
                ("handshake_timeout_ms", &ms(HANDSHAKE_TIMEOUT)),
                ("write_timeout_ms", &ms(WRITE_TIMEOUT)),
            ],
            &[],
        );
        let target = Target::of(&serve);
        let log_start = serve.stderr().len();
        let rss = RssWatch::start(&serve);
        let bystander = Bystander::start(&target, &random_key(), HONEST_EVERY);
        let deadline = HANDSHAKE_TIMEOUT + WRITE_TIMEOUT + SLACK;

        // 400 idle sockets and 100 stalled upgrades from 127.0.0.2 to 127.0.0.5,
        // the first 8 from 127.0.0.2 (its whole budget of pending connections
        // by default): the next one from there is over the limit, and is
        // answered at once (asked before the rest, while the server has time
        // to answer: it may just close over-limit connections in a flood).
        let mut held = Vec::new();
        for _ in 0..8 {
            held.extend(silent(&target, attacker(0), false).await);
        }
        let mut over = silent(&target, attacker(0), false).await.expect("connect");
        let over_limit = over.read_head().await;
        drop(over);
        for i in 8..500 {
            let source = attacker(i % 4);
            held.extend(silent(&target, source, i >= 400).await);
        }
        let opened = held.len();

        // Then, for 5 s, keep reopening them: 100 per address held at a time.
        let churn_end = Instant::now() + Duration::from_secs(5);
        let mut tasks = JoinSet::new();
        for a in 0..4 {
            let target = target.clone();
            tasks.spawn(async move {
                let mut ring = std::collections::VecDeque::new();
                let mut n = 0;
                while Instant::now() < churn_end {
                    if let Some(conn) = silent(&target, attacker(a), n % 4 == 0).await {
                        ring.push_back(conn);
                    }
                    if ring.len() > 100 {
                        ring.pop_front();
                    }
                    n += 1;
                    sleep(Duration::from_millis(5)).await;
                }
                (n, ring)
            });
        }
        let mut reopened = 0;
        for (n, ring) in tasks.join_all().await {
            reopened += n;
            held.extend(ring);
        }
        println!("silent sockets: {opened} opened at once, then {reopened} reopened in 5 s");
        assert_closed(held, deadline, "silent or stalled connections").await;
        rss.finish().assert_bounded(opened, 64, 64 * 1024);
        bystander.assert_all_ok(20);
        let head = over_limit.unwrap_or_else(|e| {
            panic!("a connection over the pending limits got no HTTP answer ({e}); expected 503")
        });
        assert_eq!(head.status, 503, "{}", head.text);
        assert!(head.header("retry-after").is_some(), "{}", head.text);
        assert_quiet_log(&serve, log_start);
    });
}

// ---------------------------------------------------------------------------
// 3. Oversized message before authentication

#[test]
fn oversized_messages_before_the_handshake_are_refused_at_once() {
    run(async {
        let tmp = dir();
        // A long handshake timeout: the server must not wait for it, since no
        // message 1 is anywhere near 1 MiB.
        let serve = serve_demo(
            tmp.path(),
            &[
                ("handshake_timeout_ms", "10000"),
                ("write_timeout_ms", &ms(WRITE_TIMEOUT)),
            ],
            &[],
        );
        let target = Target::of(&serve);
        let rss = RssWatch::start(&serve);
        let bystander = Bystander::start(&target, &random_key(), HONEST_EVERY);
        let deadline = WRITE_TIMEOUT + SLACK;
        let mut start = ws_header(OP_BINARY, 1 << 20);
        start.extend_from_slice(&[0; 64 * 1024]); // masked with zeros
        const CONNS: usize = 100;
        let mut tasks = JoinSet::new();
        for i in 0..CONNS {
            let (target, start) = (target.clone(), start.clone());
            // 5 from each of 20 addresses.
            tasks.spawn(async move {
                let mut tally = Tally::default();
                match target.upgraded_from(attacker(i / 5)).await {
                    Ok(mut conn) => {
                        tally.opened += 1;
                        let end = conn.opened + deadline;
                        let written = conn.write_until(&start, false, end).await;
                        tally.bytes += written.bytes;
                        tally.closed(&mut conn, written.failed_at, deadline).await;
                    }
                    Err(e) => tally.turned_away(e),
                }
                tally
            });
        }
        let tally = join_tallies(tasks).await;
        // Let the honest client go on a little after the attack.
        sleep(Duration::from_secs(1)).await;
        rss.finish().assert_bounded(CONNS, 256, 64 * 1024);
        tally.assert_closed(deadline, "1 MiB hello");
        assert_eq!(tally.opened, CONNS, "{tally:?}");
        bystander.assert_all_ok(5);
    });
}

// ---------------------------------------------------------------------------
// 4. Junk hello flood

#[test]
fn junk_hello_flood_leaves_room_for_honest_clients() {
    run(async {
        let tmp = dir();
        let serve = serve_demo(
            tmp.path(),
            &[
                ("handshake_timeout_ms", &ms(HANDSHAKE_TIMEOUT)),
                ("write_timeout_ms", &ms(WRITE_TIMEOUT)),
            ],
            &[],
        );
        let target = Target::of(&serve);
        let log_start = serve.stderr().len();
        let rss = RssWatch::start(&serve);
        let bystander = Bystander::start(&target, &random_key(), HONEST_EVERY);
        let attack = Duration::from_secs(5);
        let attack_end = Instant::now() + attack;
        let deadline = HANDSHAKE_TIMEOUT + WRITE_TIMEOUT + SLACK;
        // 4 loops on each of 3 addresses.
        const LOOPS: usize = 12;
        let mut tasks = JoinSet::new();
        for i in 0..LOOPS {
            let target = target.clone();
            tasks.spawn(async move {
                let (mut tally, mut refused, mut other) = (Tally::default(), 0usize, Vec::new());
                while Instant::now() < attack_end {
                    let mut conn = match target.upgraded_from(attacker(i / 4)).await {
                        Ok(conn) => conn,
                        Err(e) => {
                            tally.turned_away(e);
                            sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                    };
                    tally.opened += 1;
                    let hello = junk_hello(&random_key().public_key());
                    match conn.exchange(&hello).await {
                        Ok(answer) if refusal_code(&answer) == Some(1) => refused += 1,
                        Ok(answer) => {
                            other.push(format!("{:02x?}", &answer[..answer.len().min(8)]))
                        }
                        Err(e) => tally.turned_away(e),
                    }
                    tally.closed(&mut conn, None, deadline).await;
                }
                (tally, refused, other)
            });
        }
        let (mut tally, mut refused, mut other) = (Tally::default(), 0, Vec::new());
        for (t, r, o) in tasks.join_all().await {
            tally.add(t);
            refused += r;
            other.extend(o);
        }
        println!(
            "junk hellos refused with code 1: {refused} in {attack:?}, {:.0} a second",
            refused as f64 / attack.as_secs_f64()
        );
        rss.finish().assert_bounded(LOOPS, 2 * 1024, 64 * 1024);
        assert!(
            other.is_empty(),
            "answers other than refusal code 1: {other:?}"
        );
        tally.assert_closed(deadline, "junk hello");
        bystander.assert_all_ok(15);
        assert_quiet_log(&serve, log_start);
    });
}

// ---------------------------------------------------------------------------
// 5. Filling the replay cache

/// `replay_cache_capacity` in these tests: each principal may hold 640 / 64
/// = 10 live entries. With a clock skew of 5 s an entry lives about 5 s, so
/// the honest client, connecting once a second, holds at most 6.
const REPLAY_CONFIG: [(&str, &str); 2] = [
    ("replay_cache_capacity", "640"),
    ("max_clock_skew_ms", "5000"),
];
const SHARE: usize = 10;
const ATTACK_5: Duration = Duration::from_secs(4);

/// Valid hellos from 127.0.0.2 (4 loops), each with a fresh ephemeral key
/// and `key()` as the client key, abandoned once accepted; returns
/// (accepted, refused as busy, other outcomes).
async fn valid_hello_loops(
    target: &Target,
    key: impl Fn() -> sigil_core::SecretKey + Clone + Send + 'static,
) -> (usize, usize, Tally) {
    let attack_end = Instant::now() + ATTACK_5;
    let deadline = WRITE_TIMEOUT + SLACK;
    let mut tasks = JoinSet::new();
    for _ in 0..4 {
        let (target, key) = (target.clone(), key.clone());
        tasks.spawn(async move {
            let (mut accepted, mut busy, mut tally) = (0, 0, Tally::default());
            while Instant::now() < attack_end {
                let config = client_config(&key(), &target.server_key);
                match target.handshake_from(attacker(0), &config).await {
                    Ok((_, Answer::Accepted(_))) => accepted += 1,
                    Ok((mut conn, answer)) => {
                        tally.opened += 1;
                        if matches!(answer, Answer::Refused(3)) {
                            busy += 1;
                        } else {
                            tally.turned_away(format!("{answer:?}"));
                        }
                        tally.closed(&mut conn, None, deadline).await;
                    }
                    Err(e) => {
                        tally.turned_away(e);
                        sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (accepted, busy, tally)
        });
    }
    let (mut accepted, mut busy, mut tally) = (0, 0, Tally::default());
    for (a, b, t) in tasks.join_all().await {
        accepted += a;
        busy += b;
        tally.add(t);
    }
    println!("valid hellos from the attacker: {accepted} accepted, {busy} refused as busy");
    (accepted, busy, tally)
}

#[test]
fn abandoned_valid_hellos_cannot_fill_the_replay_cache() {
    run(async {
        let tmp = dir();
        let mut config = REPLAY_CONFIG.to_vec();
        config.push(("write_timeout_ms", "1000"));
        let serve = serve_demo(tmp.path(), &config, &[]);
        let target = Target::of(&serve);
        let rss = RssWatch::start(&serve);
        let bystander = Bystander::start(&target, &random_key(), Duration::from_secs(1));
        // Under allow_any_client a new key costs nothing: the share is per address.
        let (accepted, busy, tally) = valid_hello_loops(&target, random_key).await;
        rss.finish().assert_bounded(4, 4 * 1024, 64 * 1024);
        bystander.assert_all_ok(4);
        assert!(
            accepted <= SHARE,
            "one address had {accepted} hellos accepted within the skew window, over its share of {SHARE}"
        );
        assert!(busy > 0, "the attacker was never refused as busy");
        tally.assert_closed(WRITE_TIMEOUT + SLACK, "refused valid hello");
    });
}

#[test]
fn garbage_hellos_with_a_victims_key_do_not_lock_the_victim_out() {
    run(async {
        let tmp = dir();
        let d = tmp.path();
        let (attacker_key, victim_key) = (random_key(), random_key());
        let authorized = format!(
            "{} attacker\n{} victim\n",
            attacker_key.public_key(),
            victim_key.public_key()
        );
        std::fs::write(d.join("authorized_keys"), authorized).expect("write authorized_keys");
        let mut config = REPLAY_CONFIG.to_vec();
        config.push(("authorized_keys", "\"authorized_keys\""));
        config.push(("write_timeout_ms", "1000"));
        let serve = serve_demo(d, &config, &[]);
        assert!(
            !serve.startup.contains("ANY client key"),
            "{}",
            serve.startup
        );
        let target = Target::of(&serve);
        let rss = RssWatch::start(&serve);
        let victim = Bystander::start(&target, &victim_key, Duration::from_secs(1));

        // Garbage hellos that name the victim, as fast as they go, from 4 loops...
        let garbage_end = Instant::now() + ATTACK_5;
        let victim_public = victim_key.public_key();
        let mut garbage = JoinSet::new();
        for _ in 0..4 {
            let target = target.clone();
            garbage.spawn(async move {
                let (mut refused, mut other) = (0usize, Vec::new());
                while Instant::now() < garbage_end {
                    let Ok(mut conn) = target.upgraded_from(attacker(0)).await else {
                        sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    match conn.exchange(&junk_hello(&victim_public)).await {
                        Ok(answer) if refusal_code(&answer) == Some(1) => refused += 1,
                        Ok(answer) => other.push(refusal_code(&answer)),
                        Err(_) => {}
                    }
                }
                (refused, other)
            });
        }
        // ... and valid ones with the attacker's own key.
        let own = attacker_key.dangerous_to_bytes();
        let own = move || sigil_core::SecretKey::from_bytes(&own);
        let (accepted, busy, tally) = valid_hello_loops(&target, own).await;
        let (mut refused, mut other) = (0, Vec::new());
        for (r, o) in garbage.join_all().await {
            refused += r;
            other.extend(o);
        }
        println!("garbage hellos with the victim's key: {refused} refused with code 1");
        rss.finish().assert_bounded(8, 4 * 1024, 64 * 1024);
        victim.assert_all_ok(4);
        assert!(refused > 0, "no garbage hello was refused");
        assert!(
            other.is_empty(),
            "garbage hellos answered otherwise: {other:?}"
        );
        assert!(
            accepted <= SHARE,
            "one key had {accepted} hellos accepted within the skew window, over its share of {SHARE}"
        );
        assert!(busy > 0, "the attacker's key was never refused as busy");
        tally.assert_closed(WRITE_TIMEOUT + SLACK, "refused valid hello");
    });
}

// ---------------------------------------------------------------------------
// 6. Browsers

/// A stand-in for the built web demo, so that the server serves static
/// files and `/server-key`.
fn fake_web(dir: &Path) -> String {
    let web = dir.join("web");
    std::fs::create_dir_all(web.join("pkg")).expect("mkdir web/pkg");
    for file in [
        "index.html",
        "app.js",
        "style.css",
        "hello.html",
        "hello.js",
        "pkg/sigil_wasm.js",
        "pkg/sigil_wasm_bg.wasm",
    ] {
        std::fs::write(web.join(file), "x").expect("write a web file");
    }
    web.to_str().expect("UTF-8 temp path").to_owned()
}

/// Sends `request` from 127.0.0.1 and returns the response's head.
async fn http(target: &Target, request: &str) -> attack::HttpHead {
    let mut conn = target.tcp_from(HONEST).await.expect("connect");
    conn.send(request.as_bytes()).await.expect("send");
    conn.read_head().await.expect("an HTTP answer")
}

#[test]
fn web_pages_of_other_origins_and_hosts_are_refused() {
    run(async {
        let tmp = dir();
        let web = fake_web(tmp.path());
        let serve = serve_demo(tmp.path(), &[], &["--web", &web]);
        let target = Target::of(&serve);
        let host = target.host();
        let own_origin = format!("http://{host}");

        let cases: [(&str, String, u16); 6] = [
            (
                "an upgrade from a page of another origin",
                upgrade_request(&host, &[("Origin", "http://attacker.example")]),
                403,
            ),
            (
                "a DNS-rebinding upgrade (Host and Origin attacker.example)",
                upgrade_request(
                    "attacker.example:80",
                    &[("Origin", "http://attacker.example:80")],
                ),
                403,
            ),
            (
                "/server-key for Host attacker.example",
                get_request("/server-key", "attacker.example", &[]),
                403,
            ),
            (
                "an upgrade from the server's own page",
                upgrade_request(&host, &[("Origin", &own_origin)]),
                101,
            ),
            (
                "an upgrade with no Origin (not a browser)",
                upgrade_request(&host, &[]),
                101,
            ),
            (
                "/server-key for its own host",
                get_request("/server-key", &host, &[]),
                200,
            ),
        ];
        for (what, request, status) in &cases {
            let head = http(&target, request).await;
            assert_eq!(head.status, *status, "{what}: {}", head.text);
        }
        // The key is what it serves to its own host.
        let mut conn = target.tcp_from(HONEST).await.expect("connect");
        conn.send(get_request("/server-key", "localhost", &[]).as_bytes())
            .await
            .expect("send");
        let head = conn.read_head().await.expect("an HTTP answer");
        assert_eq!(head.status, 200, "Host localhost: {}", head.text);
        let body = conn.read_to_end().await.expect("the body");
        assert!(body.contains(&serve.public_key), "{body}");
    });
}

// ---------------------------------------------------------------------------
// 7. Timers

#[test]
fn pings_do_not_keep_an_idle_session_open() {
    run(async {
        let tmp = dir();
        let serve = serve_demo(tmp.path(), &[("idle_timeout_ms", "1000")], &[]);
        let target = Target::of(&serve);
        let mut session = target.session_from(attacker(0), &random_key()).await;
        let pong = session
            .call("sigil", "ping", &json!([]))
            .await
            .expect("a call");
        assert_eq!(pong, Ok(json!("pong")));
        let start = Instant::now();
        let conn = &mut session.conn;
        let closed = loop {
            if start.elapsed() > Duration::from_secs(4) {
                break None;
            }
            match timeout(Duration::from_millis(200), conn.read_message()).await {
                Err(_) => {
                    if conn.send(&ws_frame(OP_PING, b"still here")).await.is_err() {
                        break Some(start.elapsed());
                    }
                }
                Ok(Ok(WsMessage::Close(_)) | Err(_)) => break Some(start.elapsed()),
                Ok(Ok(_)) => {} // a pong
            }
        };
        let closed = closed.expect(
            "a session that only sends pings was still open after 4 s (idle_timeout_ms = 1000)",
        );
        println!("the pinging session was closed {closed:?} after its handshake");
        assert!(
            closed >= Duration::from_millis(800) && closed <= Duration::from_millis(1000) + SLACK,
            "closed {closed:?} after the handshake; idle_timeout_ms = 1000"
        );
    });
}

#[test]
fn a_call_past_call_timeout_is_cancelled_and_answered_timeout() {
    run(async {
        let tmp = dir();
        let serve = serve_demo(tmp.path(), &[("call_timeout_ms", "500")], &[]);
        let target = Target::of(&serve);
        let options = ClientOptions::new(random_key(), target.server_key);
        let client = Client::connect(&target.url, options)
            .await
            .expect("connect");
        let start = Instant::now();
        let slept = timeout(
            Duration::from_secs(6),
            client.call::<Value>("clock", "sleep", (5000,)),
        )
        .await
        .expect("clock.sleep(5000) was not answered within 6 s");
        let took = start.elapsed();
        let error = slept.expect_err("clock.sleep(5000) completed under call_timeout_ms = 500");
        assert_eq!(
            error.rpc_code().map(|code| code.as_str()),
            Some("timeout"),
            "{error}"
        );
        assert!(
            took < Duration::from_millis(500) + SLACK,
            "answered after {took:?}"
        );
        // The connection carries on.
        let sum: i64 = timeout(HONEST_WAIT, client.call("calculator", "add", (2, 3)))
            .await
            .expect("an answer after the timeout")
            .expect("the next call succeeds");
        assert_eq!(sum, 5);
    });
}

#[test]
fn a_client_that_pipelines_calls_and_never_reads_is_closed() {
    // 400 calls echoing 100 kB each: 40 MB of responses, far more than the
    // socket buffers and the server's write buffer hold.
    never_reading("pipelining calls", |session| {
        let args = json!(["x".repeat(100_000)]);
        (0..400)
            .flat_map(|_| session.request("echo", "echo", &args))
            .collect()
    });
}

/// The same with batching (`sigil.v1.batch`), where one small message
/// asks for a lot: each 16 KiB batch carries about 170 `kv.get` of a 60 KB
/// value, 10 MB of responses per message read. The server sends the
/// responses to a batch's frames as it goes, waiting for the socket like
/// any writer, so the attacker is still closed within write_timeout with
/// the server's memory bounded (it held a whole batch's responses at once
/// before that was fixed).
#[test]
fn a_batching_client_that_asks_for_large_results_and_never_reads_is_closed() {
    never_reading_with(BATCHING, "batches of large gets", |session| {
        let set = session.sealed_request("kv", "set", &json!(["k", "v".repeat(60_000)]));
        let mut messages = ws_frame(OP_BINARY, &set);
        let mut batch = sigil_core::batch::Batch::new();
        // 2,000 batches, 34 MB: more than the sockets' buffers hold, so the
        // attacker's writes stall once the server stops reading.
        for _ in 0..2_000 * 170 {
            let get = session.sealed_request("kv", "get", &json!(["k"]));
            if let Some(full) = batch.push(get) {
                messages.extend(ws_frame(OP_BINARY, &full));
            }
        }
        messages.extend(ws_frame(OP_BINARY, &batch.take().expect("a last batch")));
        messages
    });
}

/// Streams amplify: one `kv.set` of 64 KB becomes an item for every watch
/// of that key. A client that opens the most watches with the most credit,
/// then sets the key over and over and never reads, is closed within
/// write_timeout like any other peer that stops reading, with the server's
/// memory bounded (its producers wait for the socket, not a queue).
#[test]
fn a_client_that_watches_with_all_its_credit_and_never_reads_is_closed() {
    never_reading("watching and setting", |session| {
        // max_streams (16) watches of one key, each with the largest window.
        let mut frames: Vec<u8> = (0..16)
            .flat_map(|_| session.stream_request("kv", "watch", &json!(["k"]), 65_536))
            .collect();
        // 300 sets of 64 KB: 300 × 16 × 64 KB = 300 MB of items to send.
        let value = json!(["k", "v".repeat(65_000)]);
        for _ in 0..300 {
            frames.extend_from_slice(&session.request("kv", "set", &value));
        }
        frames
    });
}

/// An attacker's session sends what `frames` makes and never reads: the
/// server closes it within write_timeout (the buffers fill in well under a
/// second on loopback), its memory stays bounded, and an honest client is
/// served throughout.
fn never_reading(what: &str, frames: impl FnOnce(&mut attack::RawSession) -> Vec<u8>) {
    never_reading_with(&[], what, frames);
}

/// The upgrade header that asks for batching.
const BATCHING: &[(&str, &str)] = &[("Sec-WebSocket-Protocol", "sigil.v1.batch")];

/// [`never_reading`] with `extra` headers on the attacker's upgrade.
fn never_reading_with(
    extra: &[(&str, &str)],
    what: &str,
    frames: impl FnOnce(&mut attack::RawSession) -> Vec<u8>,
) {
    run(async {
        let tmp = dir();
        let serve = serve_demo(tmp.path(), &[("write_timeout_ms", &ms(WRITE_TIMEOUT))], &[]);
        let target = Target::of(&serve);
        let rss = RssWatch::start(&serve);
        let bystander = Bystander::start(&target, &random_key(), HONEST_EVERY);
        let mut session = target.session_with(attacker(0), &random_key(), extra).await;
        let batching = extra == BATCHING;
        let selected = if batching {
            "sigil.v1.batch"
        } else {
            "sigil.v1"
        };
        assert_eq!(session.conn.subprotocol.as_deref(), Some(selected));
        let echoed = session.call("echo", "echo", &json!(["hi"])).await;
        assert_eq!(echoed.expect("a call"), Ok(json!("hi")));
        let frames = frames(&mut session);
        let deadline = WRITE_TIMEOUT + Duration::from_secs(2) + SLACK;
        let conn = &mut session.conn;
        let start = Instant::now();
        let written = conn.write_until(&frames, false, start + deadline).await;
        println!(
            "{what}: sent {} of {} bytes without reading",
            written.bytes,
            frames.len()
        );
        let mut tally = Tally {
            opened: 1,
            ..Tally::default()
        };
        tally
            .closed_since(conn, start, written.failed_at, deadline)
            .await;
        rss.finish().assert_bounded(1, 8 * 1024, 64 * 1024);
        tally.assert_closed(deadline, what);
        // Closed for not reading, not for anything it sent (the line may
        // reach the test's reader of the server's stderr a little later).
        let logged = |log: &str| log.contains("did not read its responses within write_timeout_ms");
        let wait = Instant::now() + Duration::from_secs(3);
        while !logged(&serve.stderr()) && Instant::now() < wait {
            sleep(Duration::from_millis(50)).await;
        }
        let log = serve.stderr();
        assert!(
            logged(&log),
            "{what}: the server did not log a write timeout:\n{log}"
        );
        bystander.assert_all_ok(5);
    });
}

// ---------------------------------------------------------------------------
// 8. Small faults

#[test]
fn a_handshake_payload_that_is_not_utf8_is_refused_with_code_2() {
    run(async {
        let tmp = dir();
        let serve = serve_demo(tmp.path(), &[], &[]);
        let target = Target::of(&serve);
        let server = target.server_key;
        let client = random_key();

        // The hand-made hello is the library's, byte for byte.
        let (ephemeral, ts) = (random_key(), now_ms());
        let config = client_config(&client, &server);
        let (_, library) = ClientHandshake::dangerous_start_with_ephemeral(
            &config,
            attack::copy_key(&ephemeral),
            ts,
            Some(r#"{"a":1}"#),
        )
        .expect("a hello");
        assert_eq!(
            hello_by_hand(&client, &ephemeral, &server, ts, br#"{"a":1}"#),
            library
        );

        let answer = |payload: &'static [u8]| {
            let (target, client) = (target.clone(), attack::copy_key(&client));
            async move {
                let hello = hello_by_hand(&client, &random_key(), &server, now_ms(), payload);
                let mut conn = target.upgraded_from(attacker(0)).await.expect("upgrade");
                conn.exchange(&hello).await.expect("an answer")
            }
        };
        // A JSON string of valid UTF-8 is accepted (message 2)...
        let accepted = answer(br#""ok""#).await;
        assert_eq!(accepted.first(), Some(&0x02), "{accepted:02x?}");
        // ... the same with two bytes that are not UTF-8 is refused.
        let refused = answer(b"\"\xff\xfe\"").await;
        assert_eq!(
            refusal_code(&refused),
            Some(2),
            "a payload that is not UTF-8 got {:02x?}",
            &refused[..refused.len().min(8)]
        );
    });
}

#[test]
fn limits_out_of_range_are_configuration_errors() {
    let cases = [
        ("max_connections", "2305843009213693952", "1000000"),
        ("max_clock_skew_ms", "18446744073709551615", "600000"),
    ];
    for (key, value, upper) in cases {
        let tmp = dir();
        let path = write_config(tmp.path(), &[(key, value)]);
        let mut cmd = sigil();
        cmd.current_dir(tmp.path())
            .timeout(Duration::from_secs(10))
            .args(["serve", "--demo", "--port", "0", "--config"])
            .arg(&path);
        let stderr = fails(&mut cmd, 2);
        assert!(stderr.contains(&format!("`{key}`")), "{stderr}");
        assert!(stderr.contains(upper), "the range of {key}: {stderr}");
    }
}
