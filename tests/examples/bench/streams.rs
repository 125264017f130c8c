//! Streams against calls: items per second over one stream and over 64
//! streams on one connection, beside the same values fetched by calls
//! (`echo.echo`) with 1 and 64 in flight, against `sigil serve --demo`.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use sigil_client::{Client, StreamOptions};

use crate::report::Report;

pub(crate) const GROUP: &str = "Streams over loopback WebSocket, items/s";

/// Items per stream run: enough for a steady rate, bounded in time.
const ITEMS: u64 = 50_000;
/// Streams (and calls) in flight in the concurrent rows.
const CONCURRENT: usize = 64;
/// How long each call row runs.
const CALL_BUDGET: Duration = Duration::from_secs(2);
/// The window of the streams (the client's default).
const WINDOW: u32 = 16;

/// Items/s of `streams` concurrent `echo.repeat(1, n)` streams, n items in all.
async fn stream_rate(client: &Client, streams: usize) -> f64 {
    let per_stream = ITEMS / streams as u64;
    let options = StreamOptions {
        window: Some(WINDOW),
        ..StreamOptions::default()
    };
    let start = Instant::now();
    let mut running: FuturesUnordered<_> = (0..streams)
        .map(|_| async {
            let mut items = client
                .stream_with::<u64>("echo", "repeat", (1, per_stream), options)
                .await
                .expect("open a stream");
            let mut n = 0u64;
            while let Some(item) = items.next().await {
                assert_eq!(item.expect("an item"), 1);
                n += 1;
            }
            n
        })
        .collect();
    let mut total = 0;
    while let Some(n) = running.next().await {
        total += n;
    }
    assert_eq!(total, per_stream * streams as u64, "every item arrived");
    total as f64 / start.elapsed().as_secs_f64()
}

/// Calls/s of `echo.echo(1)` with `in_flight` calls at a time.
async fn call_rate(client: &Client, in_flight: usize) -> f64 {
    let start = Instant::now();
    let deadline = start + CALL_BUDGET;
    let mut running = FuturesUnordered::new();
    let mut done = 0u64;
    let call = || async { client.call::<u64>("echo", "echo", (1,)).await };
    for _ in 0..in_flight {
        running.push(call());
    }
    while let Some(result) = running.next().await {
        assert_eq!(result.expect("a call"), 1);
        done += 1;
        if Instant::now() < deadline {
            running.push(call());
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// The stream rows, `reps` times, interleaved with the call rows they are
/// compared with; `client` is connected to `sigil serve --demo`.
pub(crate) async fn streams(client: &Client, reps: usize, report: &mut Report) {
    for _ in 0..reps {
        let one = stream_rate(client, 1).await;
        report.sample(GROUP, "1 stream of echo.repeat", "items/s", one);
        let calls = call_rate(client, 1).await;
        report.sample(GROUP, "echo.echo, sequential calls", "items/s", calls);
        let many = stream_rate(client, CONCURRENT).await;
        report.sample(GROUP, "64 streams of echo.repeat", "items/s", many);
        let calls = call_rate(client, CONCURRENT).await;
        report.sample(GROUP, "echo.echo, 64 calls in flight", "items/s", calls);
    }
    report.print_group(GROUP);
    report.ratio(
        "1 stream / sequential calls",
        "1 stream of echo.repeat",
        "echo.echo, sequential calls",
        None,
    );
    report.ratio(
        "64 streams / 64 calls in flight",
        "64 streams of echo.repeat",
        "echo.echo, 64 calls in flight",
        None,
    );
}
