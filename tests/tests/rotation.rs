//! Rotating the server's key: a server holding an old and a new key serves
//! clients pinned to either or both; a client pinned to several keys tries
//! them in order; once the old key is dropped, its clients are refused with
//! code 1 while the others connect.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sigil_client::{Client, ClientOptions, RefusalCode};
use sigil_core::handshake::ClientAuth;
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_server::{RunningServer, ServerSettings};

/// A demo server with these keys (the first advertised) for `client`.
async fn server_with(keys: &[&SecretKey], client: PublicKey) -> RunningServer {
    let mut settings = ServerSettings::new(copy_key(keys[0]), ClientAuth::Keys(vec![client]));
    for key in &keys[1..] {
        settings = settings.with_additional_key(copy_key(key));
    }
    start(settings, demo_registry()).await
}

/// Connects pinned to `pinned` (tried in order) and pings.
async fn ping(
    server: &RunningServer,
    client: &SecretKey,
    pinned: &[PublicKey],
) -> Result<(), sigil_client::ClientError> {
    let mut options = ClientOptions::new(copy_key(client), pinned[0]);
    for key in &pinned[1..] {
        options = options.with_server_key(*key);
    }
    let c = Client::connect(&server.url(), options).await?;
    assert_eq!(c.call::<String>("sigil", "ping", ()).await?, "pong");
    c.close().await;
    Ok(())
}

#[tokio::test]
async fn clients_of_either_key_connect_during_the_overlap() {
    let (old, new, client) = (key(), key(), key());
    let (a, b) = (old.public_key(), new.public_key());
    let stranger = key().public_key();

    // The overlap: the new key is advertised, the old one kept.
    let server = server_with(&[&new, &old], client.public_key()).await;
    assert_eq!(server.public_key(), b);
    assert_eq!(server.public_keys(), [b, a]);
    for pinned in [vec![a], vec![b], vec![a, b], vec![b, a], vec![stranger, b]] {
        ping(&server, &client, &pinned).await.unwrap();
    }
    server.shutdown().await;

    // The old key dropped: clients pinned to it alone are refused.
    let server = server_with(&[&new], client.public_key()).await;
    let err = ping(&server, &client, &[a]).await.unwrap_err();
    assert!(
        matches!(
            err,
            sigil_client::ClientError::Refused {
                code: RefusalCode::HandshakeFailed,
                ..
            }
        ),
        "{err:?}"
    );
    ping(&server, &client, &[a, b]).await.unwrap();
    ping(&server, &client, &[b]).await.unwrap();
    // A client the server does not know is refused whatever it pins.
    let err = ping(&server, &key(), &[a, b]).await.unwrap_err();
    assert_eq!(err.refusal_code(), Some(1), "{err}");
    server.shutdown().await;
}
