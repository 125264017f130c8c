//! `sigil serve` behind a real nginx on loopback, as the book's "Behind a
//! proxy" section configures it: calls go through, the server sees each
//! client's own address (from `X-Forwarded-For`, trusted from nginx only),
//! a forged header changes nothing, and the server's pings keep a quiet
//! session open past nginx's `proxy_read_timeout`.
//!
//! nginx is required: `cargo xtask test` installs it (Debian package
//! nginx); without it the test fails and says so, it is not skipped.
//! nginx runs in the foreground with its own config, logs and temporary
//! files in a temp dir, and is killed when the test ends. It connects to
//! sigil from 127.0.0.5 (`proxy_bind`), the only address `trusted_proxies`
//! names; clients connect from 127.0.0.1 to 127.0.0.4.

#[path = "common/attack.rs"]
#[allow(dead_code)]
mod attack;
mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use attack::{Target, random_key};
use common::serve::{Serve, WAIT, dir, free_port, keygen, result};
use serde_json::{Value, json};
use sigil_tests::services::Nginx;

/// Where nginx connects to sigil from.
const NGINX_SOURCE: &str = "127.0.0.5";

/// nginx closes an upstream that sends nothing for this long; the book
/// sets it well above `ping_interval_ms`, the test just above it.
const NGINX_READ_TIMEOUT: Duration = Duration::from_millis(1500);

/// nginx with one `server` per `(listen port, sigil port)`.
fn nginx(dir: &Path, routes: &[(u16, u16)]) -> Nginx {
    let mut servers = String::new();
    for (listen, upstream) in routes {
        servers.push_str(&format!(
            "
    server {{
        listen 127.0.0.1:{listen};
        location /sigil {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_bind {NGINX_SOURCE};
            proxy_buffering off;
            proxy_read_timeout {read}ms;
            proxy_send_timeout {read}ms;
        }}
    }}
",
            read = NGINX_READ_TIMEOUT.as_millis()
        ));
    }
    let ports: Vec<u16> = routes.iter().map(|(listen, _)| *listen).collect();
    Nginx::start(dir, &servers, &ports)
}

/// `sigil serve --demo` trusting nginx only, with `extra` config lines.
fn serve(dir: &Path, extra: &str) -> Serve {
    std::fs::write(
        dir.join("sigil.toml"),
        format!("trusted_proxies = [\"{NGINX_SOURCE}/32\"]\n{extra}"),
    )
    .expect("write sigil.toml");
    Serve::start(dir, &["--demo", "--port", "0", "--config", "sigil.toml"])
}

/// `session.whoami`'s address, from `source` through `target` with
/// `headers` on the upgrade.
async fn whoami(target: &Target, source: Ipv4Addr, headers: &[(&str, &str)]) -> String {
    let mut session = target.session_with(source, &random_key(), headers).await;
    let answer = session
        .call("session", "whoami", &json!([]))
        .await
        .expect("a call through the connection")
        .expect("whoami answers");
    answer["address"].as_str().expect("an address").to_owned()
}

#[test]
fn calls_through_nginx_see_the_clients_address_and_pings_keep_quiet_sessions() {
    let tmp = dir();
    let d = tmp.path();
    let pinging = serve(d, "ping_interval_ms = 300\n");
    let quiet_dir = tmp.path().join("quiet");
    std::fs::create_dir(&quiet_dir).expect("mkdir");
    let quiet = serve(&quiet_dir, "ping_interval_ms = 0\n");
    let (front, quiet_front) = (free_port(), free_port());
    let sigil_port = |s: &Serve| Target::of(s).port;
    let nginx = nginx(
        d,
        &[
            (front, sigil_port(&pinging)),
            (quiet_front, sigil_port(&quiet)),
        ],
    );

    // The real client, through nginx: the server sees 127.0.0.1, the
    // address nginx named, with no port (not nginx's 127.0.0.5).
    keygen(d, "client.key");
    let through = pinging.url.replace(
        &format!(":{}/", sigil_port(&pinging)),
        &format!(":{front}/"),
    );
    let out = result(
        common::sigil()
            .current_dir(d)
            .timeout(WAIT)
            .args(["call", &through, "session", "whoami"])
            .args(["--server-key", &pinging.public_key, "--key", "client.key"]),
    );
    let out: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(out["address"], "127.0.0.1:0", "{out}\n{}", nginx.log());

    let direct = Target::of(&pinging);
    let proxied = Target {
        port: front,
        ..direct.clone()
    };
    let host = |n: u8| Ipv4Addr::new(127, 0, 0, n);
    attack::run(async {
        // Another host, through nginx.
        assert_eq!(whoami(&proxied, host(2), &[]).await, "127.0.0.2:0");
        // A forged header, through nginx: nginx appends the real address,
        // which the server takes; the forgery stays to its left.
        let forged = [("X-Forwarded-For", "203.0.113.66")];
        assert_eq!(whoami(&proxied, host(3), &forged).await, "127.0.0.3:0");
        // A forged header straight to the server: not from nginx, ignored.
        let address = whoami(&direct, host(4), &forged).await;
        assert!(address.starts_with("127.0.0.4:"), "{address}");
        assert!(!address.ends_with(":0"), "{address}");

        // Quiet sessions through nginx: pinged every 300 ms, one outlives
        // proxy_read_timeout; without pings, nginx closes the other.
        let quiet_target = Target {
            port: quiet_front,
            ..Target::of(&quiet)
        };
        let mut kept = proxied.session_with(host(2), &random_key(), &[]).await;
        let mut dropped = quiet_target.session_with(host(2), &random_key(), &[]).await;
        tokio::time::sleep(NGINX_READ_TIMEOUT * 2).await;
        let answer = kept.call("sigil", "ping", &json!([])).await;
        assert_eq!(
            answer.expect("the pinged session is open").ok(),
            Some(json!("pong"))
        );
        let answer = dropped.call("sigil", "ping", &json!([])).await;
        assert!(answer.is_err(), "nginx kept a silent session: {answer:?}");
    });
    assert!(
        nginx.log().contains("upstream timed out"),
        "nginx timed the quiet session out:\n{}",
        nginx.log()
    );
    drop(nginx);
    drop(quiet);
    drop(pinging);
}
