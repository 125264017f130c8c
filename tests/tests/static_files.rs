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
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

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
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
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
        "GET /server-key HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    server.shutdown().await;
}
