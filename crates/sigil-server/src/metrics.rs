//! Prometheus metrics, and the health check, at `metrics_addr`.
//!
//! The metrics are kept with `prometheus-client`, the Prometheus project's
//! own Rust client: each server has a registry of its own (no global
//! recorder, so two servers in one process do not mix their counts), and it
//! adds three small crates to the build. With `metrics_addr` unset nothing
//! is counted: every method here is then one branch.
//!
//! Label values come from fixed lists (outcomes, codes, limits) or from the
//! registry's own object and method names, never from what a client sends:
//! a call of an unknown object counts as `(unknown)`, so clients cannot
//! grow the series without bound. Nothing here names a client, a key or an
//! address.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry as Prometheus, Unit};
use sigil_core::connection::CloseReason;
use sigil_core::handshake::{Refusal, RefusalCode, RefusalDetail};
use sigil_core::rpc::ErrorCode;
use sigil_core::transport::FrameError;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::registry::BUILTIN_OBJECT;
use crate::server::Shared;

/// Upper bounds of the call duration buckets, in seconds: 100 µs to 30 s.
const DURATION_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The label of calls to objects or methods that are not registered.
const UNKNOWN: &str = "(unknown)";

/// Scrapes served at once; more connections are closed at once.
const MAX_SCRAPERS: usize = 8;

/// The longest a scrape connection may take, from accept to its answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    object: Arc<str>,
    method: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    object: Arc<str>,
    method: Arc<str>,
    outcome: &'static str,
}

type One = [(&'static str, &'static str); 1];
type Two = [(&'static str, &'static str); 2];

/// A new metric, registered.
fn add<M: Metric + Clone + Default>(registry: &mut Prometheus, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// A server's metrics; does nothing when `metrics_addr` is unset.
#[derive(Clone, Default)]
pub(crate) struct Metrics(Option<Arc<Inner>>);

struct Inner {
    registry: Prometheus,
    handshakes: Family<One, Counter>,
    refusals: Family<One, Counter>,
    pending: Gauge,
    sessions: Gauge,
    authorized_keys: Gauge,
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// The registered objects' and methods' labels.
    names: HashMap<String, HashMap<String, MethodLabels>>,
    unknown: MethodLabels,
    frames_refused: Family<One, Counter>,
    limits: Family<One, Counter>,
    received: Counter,
    sent: Counter,
    reloads: Family<Two, Counter>,
    revoked: Counter,
    replay_store_failures: Counter,
}

/// A limit that was reached, by its config key (or a fixed rule's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    MaxPendingHandshakes,
    MaxPendingPerIp,
    MaxConnections,
    HandshakeRatePerIp,
    HandshakeRatePerKey,
    ReplayCacheCapacity,
    HandshakeTimeout,
    IdleTimeout,
    CallTimeout,
    WriteTimeout,
    PingRate,
}

impl Limit {
    const ALL: [Limit; 11] = [
        Limit::MaxPendingHandshakes,
        Limit::MaxPendingPerIp,
        Limit::MaxConnections,
        Limit::HandshakeRatePerIp,
        Limit::HandshakeRatePerKey,
        Limit::ReplayCacheCapacity,
        Limit::HandshakeTimeout,
        Limit::IdleTimeout,
        Limit::CallTimeout,
        Limit::WriteTimeout,
        Limit::PingRate,
    ];

    fn label(self) -> &'static str {
        match self {
            Limit::MaxPendingHandshakes => "max_pending_handshakes",
            Limit::MaxPendingPerIp => "max_pending_per_ip",
            Limit::MaxConnections => "max_connections",
            Limit::HandshakeRatePerIp => "handshake_rate_per_ip",
            Limit::HandshakeRatePerKey => "handshake_rate_per_key",
            Limit::ReplayCacheCapacity => "replay_cache_capacity",
            Limit::HandshakeTimeout => "handshake_timeout_ms",
            Limit::IdleTimeout => "idle_timeout_ms",
            Limit::CallTimeout => "call_timeout_ms",
            Limit::WriteTimeout => "write_timeout_ms",
            Limit::PingRate => "ping_rate",
        }
    }
}

const HANDSHAKE_OUTCOMES: [&str; 4] = ["accepted", "refused", "timed_out", "failed"];
const REFUSAL_CODES: [&str; 5] = [
    "handshake_failed",
    "rejected",
    "busy",
    "unsupported_version",
    "stale_or_replayed",
];
const FRAME_REASONS: [&str; 6] = [
    "bad_tag",
    "bad_sequence",
    "too_large",
    "malformed",
    "protocol",
    "text_message",
];

/// How a handshake ended, besides a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    Accepted,
    TimedOut,
    Failed,
}

impl Metrics {
    /// Metrics for a server with these objects and methods.
    pub(crate) fn new<'a>(objects: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Metrics {
        let mut registry = Prometheus::with_prefix("sigil");
        let r = &mut registry;
        let handshakes = add(
            r,
            "handshakes",
            "Handshakes that ended, by outcome: accepted, refused, timed_out (no hello within handshake_timeout_ms) or failed (the server could not answer)",
        );
        let refusals = add(
            r,
            "handshake_refusals",
            "Refused handshakes by refusal code",
        );
        let pending = add(
            r,
            "pending_connections",
            "Connections that are not yet sessions (TLS, HTTP upgrade or handshake in progress)",
        );
        let sessions = add(r, "sessions", "Established sessions");
        let authorized_keys = add(
            r,
            "authorized_keys",
            "Client keys authorised now (0 under allow_any_client)",
        );
        let calls = add(
            r,
            "calls",
            "Calls answered, by object, method and outcome (ok, an error code, or aborted: cancelled by the client or past call_timeout_ms)",
        );
        let durations = Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        r.register_with_unit(
            "call_duration",
            "Time from a call's arrival to its answer, by object and method",
            Unit::Seconds,
            durations.clone(),
        );
        let frames_refused = add(
            r,
            "frames_refused",
            "Messages from clients that closed their session, by reason",
        );
        let limits: Family<One, Counter> = add(
            r,
            "limits_hit",
            "Times a limit turned something away or ended it, by the limit's config key",
        );
        let received = add(
            r,
            "received_bytes",
            "Bytes received on WebSocket connections after the HTTP upgrade",
        );
        let sent = add(
            r,
            "sent_bytes",
            "Bytes sent on WebSocket connections after the HTTP upgrade",
        );
        let reloads: Family<Two, Counter> = add(
            r,
            "reloads",
            "Reloads of authorized_keys and of the TLS files, by file and outcome",
        );
        let revoked = add(
            r,
            "revoked_sessions_closed",
            "Sessions closed because their key left authorized_keys",
        );
        let replay_store_failures = add(
            r,
            "replay_store_failures",
            "Hellos refused as busy because the replay store could not be asked, failed, or did not answer within replay_store_timeout_ms",
        );
        // Every series of a fixed label set shows from the start, at 0, so
        // that rates and alerts need no special case for "never happened".
        let fixed: [(&Family<One, Counter>, &'static str, &[&'static str]); 3] = [
            (&handshakes, "outcome", &HANDSHAKE_OUTCOMES[..]),
            (&refusals, "code", &REFUSAL_CODES[..]),
            (&frames_refused, "reason", &FRAME_REASONS[..]),
        ];
        for (family, label, values) in fixed {
            for value in values {
                family.get_or_create_owned(&[(label, *value)]);
            }
        }
        for limit in Limit::ALL {
            limits.get_or_create_owned(&[("limit", limit.label())]);
        }
        for file in ["authorized_keys", "tls"] {
            for outcome in ["ok", "failed"] {
                reloads.get_or_create_owned(&[("file", file), ("outcome", outcome)]);
            }
        }
        let label = |name: &str| -> Arc<str> { Arc::from(name) };
        let mut names: HashMap<String, HashMap<String, MethodLabels>> = HashMap::new();
        for (object, methods) in objects {
            let entry = names.entry(object.to_owned()).or_default();
            for method in methods {
                entry.insert(
                    method.clone(),
                    MethodLabels {
                        object: label(object),
                        method: label(method),
                    },
                );
            }
        }
        Metrics(Some(Arc::new(Inner {
            registry,
            handshakes,
            refusals,
            pending,
            sessions,
            authorized_keys,
            calls,
            durations,
            names,
            unknown: MethodLabels {
                object: label(UNKNOWN),
                method: label(UNKNOWN),
            },
            frames_refused,
            limits,
            received,
            sent,
            reloads,
            revoked,
            replay_store_failures,
        })))
    }

    pub(crate) fn handshake(&self, outcome: Handshake) {
        if let Some(m) = &self.0 {
            let label = match outcome {
                Handshake::Accepted => "accepted",
                Handshake::TimedOut => "timed_out",
                Handshake::Failed => "failed",
            };
            m.handshakes.get_or_create(&[("outcome", label)]).inc();
            if outcome == Handshake::TimedOut {
                m.limit(Limit::HandshakeTimeout);
            }
        }
    }

    /// A refused handshake: by code, and the limit behind a busy one.
    pub(crate) fn refused(&self, refusal: &Refusal) {
        let Some(m) = &self.0 else { return };
        m.handshakes.get_or_create(&[("outcome", "refused")]).inc();
        let code = match refusal.code() {
            RefusalCode::HandshakeFailed => "handshake_failed",
            RefusalCode::Rejected => "rejected",
            RefusalCode::Busy => "busy",
            RefusalCode::UnsupportedVersion => "unsupported_version",
            RefusalCode::StaleOrReplayed => "stale_or_replayed",
            _ => "other",
        };
        m.refusals.get_or_create(&[("code", code)]).inc();
        let limit = match refusal.detail() {
            RefusalDetail::RateLimited => Some(Limit::HandshakeRatePerIp),
            RefusalDetail::OverQuota => Some(Limit::HandshakeRatePerKey),
            RefusalDetail::ReplayCacheFull => Some(Limit::ReplayCacheCapacity),
            RefusalDetail::Overloaded => Some(Limit::MaxConnections),
            _ => None,
        };
        if let Some(limit) = limit {
            m.limit(limit);
        }
        if refusal.detail() == RefusalDetail::ReplayStoreUnavailable {
            m.replay_store_failures.inc();
        }
    }

    pub(crate) fn limit(&self, limit: Limit) {
        if let Some(m) = &self.0 {
            m.limit(limit);
        }
    }

    /// A message that ended its session.
    pub(crate) fn frame_refused(&self, reason: &CloseReason) {
        let Some(m) = &self.0 else { return };
        let label = match reason {
            CloseReason::BadFrame(FrameError::BadTag) => "bad_tag",
            CloseReason::BadFrame(FrameError::BadSequence { .. }) => "bad_sequence",
            CloseReason::BadFrame(FrameError::TooLarge { .. }) => "too_large",
            CloseReason::BadFrame(_) => "malformed",
            _ => "protocol",
        };
        m.frames_refused.get_or_create(&[("reason", label)]).inc();
    }

    /// A text message (sigil/1 speaks binary only), or one over the
    /// WebSocket's size limit.
    pub(crate) fn message_refused(&self, reason: &'static str) {
        if let Some(m) = &self.0 {
            m.frames_refused.get_or_create(&[("reason", reason)]).inc();
        }
    }

    /// Now, if calls are timed.
    pub(crate) fn start(&self) -> Option<Instant> {
        self.0.as_ref().map(|_| Instant::now())
    }

    /// A call of `object.method`, started at `started` (`None`: not timed,
    /// a stream), answered with `outcome`: `ok` or an error code (see
    /// [`outcome_of`]).
    pub(crate) fn call(
        &self,
        object: &str,
        method: &str,
        started: Option<Instant>,
        outcome: &'static str,
    ) {
        if let Some(m) = &self.0 {
            m.call(m.labels(object, method), started, outcome);
        }
    }

    /// Times an asynchronous call: [`CallTimer::finish`] when it is
    /// answered; dropped unfinished, it counts as `aborted`.
    pub(crate) fn timer(&self, object: &str, method: &str) -> CallTimer {
        CallTimer(
            self.0
                .as_ref()
                .map(|m| (m.clone(), m.labels(object, method).clone(), Instant::now())),
        )
    }

    pub(crate) fn received(&self, bytes: usize) {
        if let Some(m) = &self.0 {
            m.received.inc_by(bytes as u64);
        }
    }

    pub(crate) fn sent(&self, bytes: usize) {
        if let Some(m) = &self.0 {
            m.sent.inc_by(bytes as u64);
        }
    }

    pub(crate) fn reloaded(&self, file: &'static str, ok: bool) {
        if let Some(m) = &self.0 {
            let outcome = if ok { "ok" } else { "failed" };
            m.reloads
                .get_or_create(&[("file", file), ("outcome", outcome)])
                .inc();
        }
    }

    pub(crate) fn revoked_session_closed(&self) {
        if let Some(m) = &self.0 {
            m.revoked.inc();
        }
    }

    /// The Prometheus text of every metric, the gauges read from `shared`.
    fn encode(&self, shared: &Shared) -> Option<String> {
        let m = self.0.as_ref()?;
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        m.pending.set(gauge(shared.pending.count()));
        let free = shared.sessions.available_permits();
        m.sessions
            .set(gauge(shared.limits.max_connections.saturating_sub(free)));
        m.authorized_keys
            .set(gauge(shared.clients.count().unwrap_or(0)));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &m.registry).ok()?;
        Some(text)
    }
}

impl Inner {
    fn limit(&self, limit: Limit) {
        self.limits.get_or_create(&[("limit", limit.label())]).inc();
    }

    /// The labels of a registered method, or `(unknown)`.
    fn labels(&self, object: &str, method: &str) -> &MethodLabels {
        self.names
            .get(object)
            .and_then(|methods| methods.get(method))
            .unwrap_or(&self.unknown)
    }

    fn call(&self, labels: &MethodLabels, started: Option<Instant>, outcome: &'static str) {
        self.calls
            .get_or_create(&CallLabels {
                object: labels.object.clone(),
                method: labels.method.clone(),
                outcome,
            })
            .inc();
        if let Some(started) = started {
            self.durations
                .get_or_create(labels)
                .observe(started.elapsed().as_secs_f64());
        }
    }
}

/// An asynchronous call being timed (see [`Metrics::timer`]).
pub(crate) struct CallTimer(Option<(Arc<Inner>, MethodLabels, Instant)>);

impl CallTimer {
    /// The call was answered with `outcome` (see [`Metrics::call`]).
    pub(crate) fn finish(mut self, outcome: &'static str) {
        if let Some((m, labels, started)) = self.0.take() {
            m.call(&labels, Some(started), outcome);
        }
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        if let Some((m, labels, started)) = self.0.take() {
            m.call(&labels, Some(started), "aborted");
        }
    }
}

/// Every error code a server sends.
const ERROR_CODES: [ErrorCode; 10] = [
    ErrorCode::NoSuchObject,
    ErrorCode::NoSuchMethod,
    ErrorCode::InvalidRequest,
    ErrorCode::InvalidArguments,
    ErrorCode::ApplicationError,
    ErrorCode::TooLarge,
    ErrorCode::Busy,
    ErrorCode::Timeout,
    ErrorCode::InternalError,
    ErrorCode::Cancelled,
];

/// `ok`, or the error code of a response as `write_result` and
/// `write_error` write it (`{"id":N,"result":…}`,
/// `{"id":N,"error":{"code":"…",…}}`), read from its first bytes only.
pub(crate) fn outcome_of(response: &[u8]) -> &'static str {
    let error = response
        .strip_prefix(br#"{"id":"#)
        .map(|rest| {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            &rest[digits..]
        })
        .and_then(|rest| rest.strip_prefix(br#","error":{"code":""#));
    let Some(rest) = error else {
        return "ok";
    };
    ERROR_CODES
        .iter()
        .find(|code| {
            rest.strip_prefix(code.as_str().as_bytes())
                .is_some_and(|after| after.first() == Some(&b'"'))
        })
        .map_or("other", |code| code.as_str())
}

/// The objects and methods to label calls with: the registry's and the
/// built-in object's.
pub(crate) fn registered(described: &std::collections::BTreeMap<String, Vec<String>>) -> Metrics {
    debug_assert!(described.contains_key(BUILTIN_OBJECT));
    Metrics::new(described.iter().map(|(o, m)| (o.as_str(), m.as_slice())))
}

/// Binds the metrics endpoint.
pub(crate) async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        warn!(
            "serving metrics on {local}, which is not a loopback address: anyone who reaches it \
             can read them (they name no client, key or address)"
        );
    }
    Ok((listener, local))
}

/// Serves `/metrics` and `/healthz` until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let tcp = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    debug!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        let stopping = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let answer = answer(&req, &shared, *stopping.borrow());
                async move { Ok::<_, Infallible>(answer) }
            });
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Some(SCRAPE_TIMEOUT))
                .keep_alive(false)
                .max_buf_size(8 * 1024)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = timeout(SCRAPE_TIMEOUT, http).await;
            drop(slot);
        });
    }
}

fn answer(req: &Request<Incoming>, shared: &Shared, stopping: bool) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => match shared.metrics.encode(shared) {
            Some(body) => {
                let mut resp = text(StatusCode::OK, body);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
                );
                resp
            }
            None => text(StatusCode::INTERNAL_SERVER_ERROR, "no metrics\n".into()),
        },
        "/healthz" => {
            if stopping {
                text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into())
            } else if shared.sessions.available_permits() == 0 {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "full: max_connections sessions are open\n".into(),
                )
            } else {
                text(StatusCode::OK, "ok\n".into())
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_read_from_the_response_head() {
        assert_eq!(outcome_of(br#"{"id":7,"result":3}"#), "ok");
        assert_eq!(
            outcome_of(br#"{"id":7,"result":{"x":1,"error":{"code":"busy"}}}"#),
            "ok"
        );
        assert_eq!(
            outcome_of(br#"{"id":12,"error":{"code":"application_error","message":"m"}}"#),
            "application_error"
        );
        assert_eq!(
            outcome_of(br#"{"id":1,"error":{"code":"busy_x","message":""}}"#),
            "other"
        );
        assert_eq!(outcome_of(b""), "ok");
    }

    #[test]
    fn calls_are_labelled_by_registered_names_only() {
        let methods = vec!["add".to_owned()];
        let m = Metrics::new([("calculator", methods.as_slice())]);
        let inner = m.0.as_ref().expect("on");
        assert_eq!(&*inner.labels("calculator", "add").method, "add");
        assert_eq!(&*inner.labels("calculator", "sub").method, UNKNOWN);
        assert_eq!(&*inner.labels("made_up", "add").object, UNKNOWN);
        for i in 0..100 {
            m.call("made_up", &format!("m{i}"), m.start(), "ok");
        }
        m.timer("calculator", "add").finish("ok");
        drop(m.timer("calculator", "add"));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &inner.registry).expect("encode");
        assert!(
            text.contains(
                r#"sigil_calls_total{object="(unknown)",method="(unknown)",outcome="ok"} 100"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sigil_calls_total{object="calculator",method="add",outcome="aborted"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sigil_call_duration_seconds_count{object="calculator",method="add"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("m99"), "{text}");
    }

    #[test]
    fn off_counts_nothing() {
        let m = Metrics::default();
        assert!(m.start().is_none());
        m.limit(Limit::IdleTimeout);
        m.timer("a", "b").finish("ok");
    }
}
