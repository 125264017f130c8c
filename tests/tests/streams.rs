//! Streams against the real server: typed items in order, windows and
//! slow readers, cancellation from both sides, errors at open and mid-stream,
//! deadlines, `max_streams`, and the connection closing with streams open.

#![allow(clippy::unwrap_used)] // tests panic on failure by design

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{connect, demo_registry, key, start};
use futures_util::{StreamExt as _, stream};
use sigil_client::{ClientError, ClientOptions, ErrorCode, StreamOptions};
use sigil_core::handshake::ClientAuth;
use sigil_server::{NoArgs, Registry, RpcError, ServerLimits, ServerSettings};
use tokio::sync::Notify;

/// How long a test waits for something that must happen (a hang guard).
const WAIT: Duration = Duration::from_secs(10);

fn code<T: std::fmt::Debug>(item: Option<Result<T, ClientError>>) -> ErrorCode {
    match item {
        Some(Err(ClientError::Remote(e))) => e.code,
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

/// Every item of `object.method(args)`, which must all succeed.
async fn ticks(
    client: &sigil_client::Client,
    object: &str,
    method: &str,
    args: impl serde::Serialize,
) -> Vec<u64> {
    let items = client.stream::<u64>(object, method, args).await.unwrap();
    items.map(Result::unwrap).collect().await
}

/// Drops notify `dropped`.
struct NotifyOnDrop(Arc<Notify>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// The demo objects, and `probe`: `count(n)` yields 0..n and counts in
/// `produced` the items its stream was polled for; `forever()` never yields
/// and notifies `dropped` when dropped; `fail(n)` yields n items then fails.
fn probe_registry(produced: &Arc<AtomicU64>, dropped: &Arc<Notify>) -> Registry {
    let mut registry = demo_registry();
    let (produced, dropped) = (produced.clone(), dropped.clone());
    registry
        .object("probe")
        .stream_method("count", move |(n,): (u64,)| {
            let produced = produced.clone();
            Ok(stream::iter(0..n).map(move |i| {
                produced.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RpcError>(i)
            }))
        })
        .stream_method("forever", move |_: NoArgs| {
            let guard = NotifyOnDrop(dropped.clone());
            Ok(stream::pending::<Result<u64, RpcError>>().map(move |item| {
                let _keep = &guard;
                item
            }))
        })
        .stream_method("fail", |(n,): (u64,)| {
            let items = stream::iter(0..n).map(Ok);
            let failure =
                stream::once(async { Err(RpcError::application("the sensor went away")) });
            Ok(items.chain(failure))
        });
    registry
}

struct Probe {
    server: sigil_server::RunningServer,
    client: sigil_client::Client,
    produced: Arc<AtomicU64>,
    dropped: Arc<Notify>,
}

impl Probe {
    /// Opens `probe.forever`.
    async fn forever(&self) -> sigil_client::ItemStream<u64> {
        self.client.stream("probe", "forever", ()).await.unwrap()
    }

    /// A call answered after everything sent before it was read.
    async fn ping(&self) {
        let pong: String = self.client.call("sigil", "ping", ()).await.unwrap();
        assert_eq!(pong, "pong");
    }
}

async fn probe(limits: ServerLimits) -> Probe {
    let client_key = key();
    let produced = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(Notify::new());
    let settings = ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()]))
        .with_server_limits(limits);
    let server = start(settings, probe_registry(&produced, &dropped)).await;
    let client = connect(&server, client_key).await;
    Probe {
        server,
        client,
        produced,
        dropped,
    }
}

#[tokio::test]
async fn a_ticker_streams_typed_items_in_order_and_ends() {
    let p = probe(ServerLimits::default()).await;
    let ticks = ticks(&p.client, "clock", "ticker", (5, 10)).await;
    assert_eq!(ticks, [0, 1, 2, 3, 4]);
    // More items than one window: credit flows as the consumer reads.
    let mut counted = p
        .client
        .stream::<u64>("probe", "count", (1000,))
        .await
        .unwrap();
    let mut next = 0;
    while let Some(item) = counted.next().await {
        assert_eq!(item.unwrap(), next);
        next += 1;
    }
    assert_eq!(next, 1000);
    // Items that do not fit the type are an error of that item.
    let mut wrong = p
        .client
        .stream::<String>("clock", "ticker", (1, 10))
        .await
        .unwrap();
    assert!(matches!(
        wrong.next().await,
        Some(Err(ClientError::InvalidResult(_)))
    ));
    p.server.shutdown().await;
}

/// A reader that never reads a 10,000-item stream: the server polls its
/// stream for one window of items only (so holds no more), and the other
/// calls and streams of the connection are answered.
#[tokio::test]
async fn a_reader_that_never_reads_stalls_only_its_stream() {
    let p = probe(ServerLimits::default()).await;
    let options = StreamOptions {
        window: Some(8),
        ..StreamOptions::default()
    };
    let stalled = p
        .client
        .stream_with::<u64>("probe", "count", (10_000,), options)
        .await
        .unwrap();
    // Everything else on the connection goes on.
    for i in 0..50 {
        assert_eq!(
            p.client
                .call::<i64>("calculator", "add", (i, 1))
                .await
                .unwrap(),
            i + 1
        );
    }
    let ticks = ticks(&p.client, "clock", "ticker", (3, 10)).await;
    assert_eq!(ticks, [0, 1, 2]);
    // The stalled stream's producer ran for its window, and no further.
    assert_eq!(p.produced.load(Ordering::SeqCst), 8);
    drop(stalled);
    p.server.shutdown().await;
}

#[tokio::test]
async fn dropping_a_stream_drops_the_servers_producer() {
    let p = probe(ServerLimits::default()).await;
    let notified = p.dropped.notified();
    let forever = p.forever().await;
    // Opened on the server before it is dropped here.
    p.ping().await;
    drop(forever);
    tokio::time::timeout(WAIT, notified)
        .await
        .expect("the server dropped the producer");
    assert_eq!(
        p.client
            .call::<i64>("calculator", "add", (1, 1))
            .await
            .unwrap(),
        2
    );
    p.server.shutdown().await;
}

#[tokio::test]
async fn errors_at_open_and_mid_stream_end_the_stream() {
    let p = probe(ServerLimits::default()).await;
    let c = &p.client;
    let mut failing = c.stream::<u64>("probe", "fail", (2,)).await.unwrap();
    assert_eq!(failing.next().await.unwrap().unwrap(), 0);
    assert_eq!(failing.next().await.unwrap().unwrap(), 1);
    match failing.next().await {
        Some(Err(ClientError::Remote(e))) => {
            assert_eq!(e.code, ErrorCode::ApplicationError);
            assert_eq!(e.message, "the sensor went away");
        }
        other => panic!("{other:?}"),
    }
    assert!(failing.next().await.is_none());

    let mut opened = c
        .stream::<u64>("clock", "ticker", (10_001, 10))
        .await
        .unwrap();
    assert_eq!(code(opened.next().await), ErrorCode::InvalidArguments);
    let mut opened = c.stream::<u64>("calculator", "add", (1, 2)).await.unwrap();
    assert_eq!(code(opened.next().await), ErrorCode::InvalidRequest);
    let mut opened = c.stream::<u64>("nothing", "here", ()).await.unwrap();
    assert_eq!(code(opened.next().await), ErrorCode::NoSuchObject);
    // A stream method called as a plain call.
    let plain = c.call::<u64>("clock", "ticker", (1, 10)).await;
    assert!(
        matches!(&plain, Err(ClientError::Remote(e)) if e.code == ErrorCode::InvalidRequest && e.message.contains("returns a stream")),
        "{plain:?}"
    );
    p.server.shutdown().await;
}

/// The call's deadline covers the first item (the server's and the
/// client's); after it, a stream may be as slow as it likes, unless the
/// client set an idle timeout.
#[tokio::test]
async fn a_stream_without_a_first_item_times_out() {
    let p = probe(ServerLimits {
        call_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    })
    .await;
    let notified = p.dropped.notified();
    let mut forever = p.forever().await;
    assert_eq!(code(forever.next().await), ErrorCode::Timeout);
    tokio::time::timeout(WAIT, notified)
        .await
        .expect("the server dropped the producer");
    // A ticker slower than the deadline between items lives on.
    let ticks = ticks(&p.client, "clock", "ticker", (2, 300)).await;
    assert_eq!(ticks, [0, 1]);
    // Unless the client wants an item at least every 100 ms.
    let options = StreamOptions {
        idle_timeout_ms: Some(100),
        ..StreamOptions::default()
    };
    let mut slow = p
        .client
        .stream_with::<u64>("clock", "ticker", (2, 300), options)
        .await
        .unwrap();
    assert_eq!(slow.next().await.unwrap().unwrap(), 0);
    assert_eq!(code(slow.next().await), ErrorCode::Timeout);
    p.server.shutdown().await;
}

#[tokio::test]
async fn streams_over_max_streams_are_busy() {
    let p = probe(ServerLimits {
        max_streams: 2,
        ..ServerLimits::default()
    })
    .await;
    let a = p.forever().await;
    let b = p.forever().await;
    let mut c = p.forever().await;
    assert_eq!(code(c.next().await), ErrorCode::Busy);
    drop(a);
    // The place is free again once the server has seen the cancel: a
    // call after it is answered after it.
    p.ping().await;
    let mut d = p
        .client
        .stream::<u64>("probe", "count", (1,))
        .await
        .unwrap();
    assert_eq!(d.next().await.unwrap().unwrap(), 0);
    drop(b);
    p.server.shutdown().await;
}

#[tokio::test]
async fn the_connection_closing_fails_open_streams() {
    let p = probe(ServerLimits::default()).await;
    let mut watch = p
        .client
        .stream::<Option<String>>("kv", "watch", ("k",))
        .await
        .unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap(), None);
    let mut stuck = p.forever().await;
    p.client.close().await;
    assert!(matches!(
        watch.next().await,
        Some(Err(ClientError::Connection(_)))
    ));
    assert!(watch.next().await.is_none());
    assert!(matches!(
        stuck.next().await,
        Some(Err(ClientError::Connection(_)))
    ));
    // And the server shutting down fails them too.
    let p = probe(ServerLimits::default()).await;
    let mut stuck = p.forever().await;
    p.ping().await;
    p.server.shutdown().await;
    assert!(matches!(
        stuck.next().await,
        Some(Err(ClientError::Connection(_)))
    ));
}

/// `kv.watch` sees its key's value now, then each change made by another
/// client, and nothing for other keys.
#[tokio::test]
async fn kv_watch_sees_changes_from_another_client() {
    let watcher_key = key();
    let writer_key = key();
    let settings = ServerSettings::new(
        key(),
        ClientAuth::Keys(vec![watcher_key.public_key(), writer_key.public_key()]),
    );
    let server = start(settings, demo_registry()).await;
    let watcher = connect(&server, watcher_key).await;
    let writer = sigil_client::Client::connect(
        &server.url(),
        ClientOptions::new(writer_key, server.public_key()),
    )
    .await
    .unwrap();
    writer
        .call::<()>("kv", "set", ("colour", "red"))
        .await
        .unwrap();
    let mut watch = watcher
        .stream::<Option<String>>("kv", "watch", ("colour",))
        .await
        .unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap().as_deref(), Some("red"));
    writer
        .call::<()>("kv", "set", ("other", "x"))
        .await
        .unwrap();
    writer
        .call::<()>("kv", "set", ("colour", "blue"))
        .await
        .unwrap();
    writer
        .call::<bool>("kv", "delete", ("colour",))
        .await
        .unwrap();
    assert_eq!(
        watch.next().await.unwrap().unwrap().as_deref(),
        Some("blue")
    );
    assert_eq!(watch.next().await.unwrap().unwrap(), None);
    server.shutdown().await;
}
