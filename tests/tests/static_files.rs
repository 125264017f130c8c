//! The web demo's files and `/server-key`, served beside the endpoint.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sigil_core::handshake::ClientAuth;
use sigil_server::{ServerSettings, StaticFiles};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn files_server_key_and_nothing_else() {
    let mut files = StaticFiles::new();
    files.insert("/index.html", "text/html; charset=utf-8", "<h1>sigil</h1>");
    files.insert("/pkg/app.js", "text/javascript; charset=utf-8", "export {}");
    let settings = ServerSettings::new(key(), ClientAuth::AllowAny).with_static_files(files);
    let server = start(settings, demo_registry()).await;
    let addr = server.local_addr();
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");

    let index = http(addr, &get("/")).await;
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(index.contains("<h1>sigil</h1>"));
    assert!(
        index
            .to_lowercase()
            .contains("content-security-policy: default-src 'self'")
    );
    assert!(
        index
            .to_lowercase()
            .contains("x-content-type-options: nosniff")
    );
    assert!(http(addr, &get("/pkg/app.js")).await.contains("export {}"));

    let key = http(addr, &get("/server-key")).await;
    let body = key.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["public_key"], server.public_key().to_string());
    assert_eq!(v["fingerprint"], server.public_key().fingerprint());

    for path in [
        "/nothing",
        "/../Cargo.toml",
        "/pkg/../index.html",
        "/%2e%2e/etc/passwd",
    ] {
        assert!(
            http(addr, &get(path)).await.starts_with("HTTP/1.1 404"),
            "{path}"
        );
    }
    let post = http(
        addr,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    // Plain HTTP to the endpoint is told to upgrade.
    assert!(http(addr, &get("/sigil")).await.starts_with("HTTP/1.1 426"));
    server.shutdown().await;
}

#[tokio::test]
async fn without_static_files_only_the_endpoint_exists() {
    let server = start(
        ServerSettings::new(key(), ClientAuth::AllowAny),
        demo_registry(),
    )
    .await;
    let resp = http(
        server.local_addr(),
        "GET /server-key HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    server.shutdown().await;
}

/// DNS rebinding and cross-site requests: every HTTP request must name an
/// allowed host, and a browser's must come from an allowed origin.
#[tokio::test]
async fn host_and_origin_are_checked_on_every_request() {
    let mut files = StaticFiles::new();
    files.insert("/index.html", "text/html; charset=utf-8", "<h1>sigil</h1>");
    let settings = ServerSettings::new(key(), ClientAuth::AllowAny).with_static_files(files);
    let server = start(settings, demo_registry()).await;
    let addr = server.local_addr();
    let port = addr.port();
    let get = |path: &str, headers: &str| {
        format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n")
    };
    for (path, headers, status) in [
        ("/", "Host: 127.0.0.1\r\n", "200"),
        ("/", "Host: localhost:7070\r\n", "200"),
        ("/", "Host: [::1]\r\n", "200"),
        ("/", "Host: attacker.example\r\n", "403"),
        ("/server-key", "Host: attacker.example:1234\r\n", "403"),
        ("/", "", "403"),
        ("/server-key", "Host: 127.0.0.1\r\n", "200"),
    ] {
        let resp = http(addr, &get(path, headers)).await;
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{headers}: {resp}"
        );
    }
    let upgrade = |host: &str, origin: &str| {
        format!(
            "GET /sigil HTTP/1.1\r\nHost: {host}\r\n{origin}Upgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sigil.v1\r\n\r\n"
        )
    };
    let own = format!("127.0.0.1:{port}");
    for (host, origin, status) in [
        (own.as_str(), String::new(), "101"),
        (
            own.as_str(),
            format!("Origin: http://127.0.0.1:{port}\r\n"),
            "101",
        ),
        (
            own.as_str(),
            "Origin: http://attacker.example\r\n".to_owned(),
            "403",
        ),
        (
            own.as_str(),
            format!("Origin: http://localhost:{port}\r\n"),
            "403",
        ),
        ("attacker.example", String::new(), "403"),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(upgrade(host, &origin).as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 512];
        let n = tcp.read(&mut buf).await.unwrap();
        let resp = String::from_utf8_lossy(&buf[..n]);
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status}")),
            "{host} {origin}: {resp}"
        );
    }
    server.shutdown().await;
}
