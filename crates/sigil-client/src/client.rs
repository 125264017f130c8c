//! The client handle: connect, call, close.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use sigil_core::connection::{CallOptions, SessionLimits, StreamOptions};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::connect::Dialer;
use crate::connection::{CallRequest, Channels, Command, Control};
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::reconnect::{
    ConnectionEvent, ConnectionEvents, ConnectionState, EVENTS, SessionSettings, Status, Supervisor,
};
use crate::stream::ItemStream;

/// Commands waiting for the connection task before callers wait in turn.
const COMMAND_QUEUE: usize = 64;

/// A connection to a sigil server, after a completed handshake.
///
/// Cheap to clone: clones share the one connection, and any number of tasks
/// may call through it at once (responses are matched to calls by id, in
/// whatever order the server sends them). The connection is closed by
/// [`close`](Client::close), when it breaks, or when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    controls: mpsc::UnboundedSender<Control>,
    /// Names calls for cancels (the connection task gives them their ids).
    next_token: AtomicU64,
    /// The state and session of the connection now.
    status: watch::Receiver<Status>,
    /// Never read: new readers are made from it.
    events: broadcast::Receiver<ConnectionEvent>,
    /// The first session's.
    server_payload: Option<String>,
}

impl Client {
    /// Connects to a sigil server and runs the sigil/1 handshake.
    ///
    /// `url` is `ws://` or `wss://` with the endpoint's path (sigil servers
    /// use `/sigil`: `ws://127.0.0.1:7070/sigil`). The WebSocket subprotocol
    /// `sigil.v1` is requested and must be selected by the server. The
    /// whole of it — TCP, TLS, upgrade and handshake — must complete within
    /// the options' handshake timeout, or [`ClientError::Timeout`].
    ///
    /// Must be called within a tokio runtime: the connection runs in a task
    /// of its own, spawned here.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let ClientOptions {
            secret_key,
            server_keys,
            psk,
            prologue,
            payload,
            limits,
            handshake_timeout,
            call_timeout,
            stream_window,
            tls,
            reconnect,
        } = options;
        let dialer = Dialer {
            url: url.to_owned(),
            secret: secret_key,
            server_keys,
            psk,
            prologue,
            payload,
            limits,
            tls,
            handshake_timeout,
        };
        let established = dialer.dial().await?;

        let session_hash = *established.session.session_hash();
        let server_payload = established.server_payload.clone();
        let session = SessionSettings {
            limits: SessionLimits {
                max_message_size: limits.max_message_size,
                // The server's to enforce (it answers `busy`).
                max_inflight: usize::MAX,
                max_streams: usize::MAX,
                stream_window,
                call_timeout_ms: u64::try_from(call_timeout.as_millis()).unwrap_or(u64::MAX),
                idle_timeout_ms: None,
                // The server pings; the client answers.
                ping_interval_ms: None,
            },
            call_timeout,
        };
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (controls, control_receiver) = mpsc::unbounded_channel();
        let channels = Channels {
            commands: receiver,
            controls: control_receiver,
        };
        let connection = session.connection(established, channels, Vec::new());
        let (status, status_receiver) = watch::channel(Status {
            state: ConnectionState::Open,
            session_hash,
        });
        let (events, events_receiver) = broadcast::channel(EVENTS);
        let supervisor = Supervisor {
            dialer,
            session,
            policy: reconnect,
            status,
            events,
        };
        tokio::spawn(supervisor.run(connection));
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                controls,
                next_token: AtomicU64::new(1),
                status: status_receiver,
                events: events_receiver,
                server_payload,
            }),
        })
    }

    /// Calls `method` of `object` on the server and deserializes its result.
    ///
    /// `args` must serialize as a JSON array: a tuple (`(1, 2)`), a `Vec`, a
    /// slice or an array; `()` (or anything that serializes as `null`) means
    /// no arguments. Names and arguments are checked before anything is
    /// sent ([`ClientError::InvalidArguments`]); a failure on the server is
    /// [`ClientError::Remote`] with its code.
    ///
    /// The call has a deadline: the options' call timeout (30 s by
    /// default), or [`Call::timeout`]. When it passes, the call fails at
    /// once with the RPC error `timeout` and the server is told to stop it.
    /// Dropping the call's future cancels it the same way.
    ///
    /// ```no_run
    /// # async fn run(client: sigil_client::Client) -> Result<(), sigil_client::ClientError> {
    /// use std::time::Duration;
    /// let sum: i64 = client.call("calculator", "add", (1, 2)).await?;
    /// let slept: u64 = client
    ///     .call("clock", "sleep", (100,))
    ///     .timeout(Duration::from_secs(1))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn call<R: DeserializeOwned>(
        &self,
        object: &str,
        method: &str,
        args: impl Serialize,
    ) -> Call<'_, R> {
        Call {
            client: self,
            object: object.to_owned(),
            method: method.to_owned(),
            args: args_json(&args),
            timeout: None,
            result: PhantomData,
        }
    }

    /// [`call`](Client::call), giving the result as JSON text.
    pub async fn call_raw(
        &self,
        object: &str,
        method: &str,
        args: impl Serialize,
    ) -> Result<Box<RawValue>, ClientError> {
        let args = args_json(&args)?;
        self.run(object, method, args, None).await
    }

    /// Calls `method` of `object` without waiting for, or getting, a
    /// response. Returns once the request is written to the socket; whether
    /// the server ran it is not known (the server reports nothing for a
    /// oneway call, not even an error).
    pub async fn oneway(
        &self,
        object: &str,
        method: &str,
        args: impl Serialize,
    ) -> Result<(), ClientError> {
        let call = CallRequest {
            token: self.inner.next_token.fetch_add(1, Ordering::Relaxed),
            object: object.to_owned(),
            method: method.to_owned(),
            args: args_json(&args)?,
            options: CallOptions {
                timeout_ms: None,
                oneway: true,
            },
        };
        let (sent, written) = oneshot::channel();
        self.send(Command::Oneway { call, sent }).await?;
        written.await.map_err(|_| ClientError::closed())?
    }

    /// Calls `method` of `object` for a stream of results: the items come
    /// as the server produces them, deserialized as `T`, and the stream
    /// ends when the server completes it (`None`) or fails it (an error
    /// item, then `None`).
    ///
    /// Flow control: the server sends at most the stream's window of items
    /// (the options' stream window, 16 by default) before this consumer
    /// takes them; a consumer that stops reading stalls only its own
    /// stream. Dropping the stream cancels it and the server drops its
    /// producer. The call's timeout applies to the first item.
    ///
    /// ```no_run
    /// # async fn run(client: sigil_client::Client) -> Result<(), sigil_client::ClientError> {
    /// use futures_util::StreamExt as _;
    /// let mut ticks = client.stream::<u64>("clock", "ticker", (5, 100)).await?;
    /// while let Some(tick) = ticks.next().await {
    ///     println!("tick {}", tick?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stream<T: DeserializeOwned>(
        &self,
        object: &str,
        method: &str,
        args: impl Serialize,
    ) -> Result<ItemStream<T>, ClientError> {
        self.stream_with(object, method, args, StreamOptions::default())
            .await
    }

    /// [`stream`](Client::stream) with its own window, first-item deadline
    /// and idle timeout.
    pub async fn stream_with<T: DeserializeOwned>(
        &self,
        object: &str,
        method: &str,
        args: impl Serialize,
        options: StreamOptions,
    ) -> Result<ItemStream<T>, ClientError> {
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let call = CallRequest {
            token,
            object: object.to_owned(),
            method: method.to_owned(),
            args: args_json(&args)?,
            options: CallOptions::default(),
        };
        let (pieces, received) = mpsc::unbounded_channel();
        let (opened, sent) = oneshot::channel();
        self.send(Command::Stream {
            call,
            options,
            pieces,
            opened,
        })
        .await?;
        sent.await.map_err(|_| ClientError::closed())??;
        Ok(ItemStream::new(
            received,
            self.inner.controls.clone(),
            token,
            format!("{object}.{method}"),
        ))
    }

    /// Runs a call through the connection task; cancels it if dropped.
    async fn run(
        &self,
        object: &str,
        method: &str,
        args: Box<RawValue>,
        timeout: Option<Duration>,
    ) -> Result<Box<RawValue>, ClientError> {
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let call = CallRequest {
            token,
            object: object.to_owned(),
            method: method.to_owned(),
            args,
            options: CallOptions {
                timeout_ms: timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                oneway: false,
            },
        };
        let (reply, response) = oneshot::channel();
        self.send(Command::Call { call, reply }).await?;
        let mut guard = CancelOnDrop {
            controls: &self.inner.controls,
            token: Some(token),
        };
        let outcome = response.await.map_err(|_| ClientError::closed());
        guard.token = None;
        outcome?
    }

    /// The session hash: the same 32 bytes on both ends, unique to this
    /// session, for channel binding. A client that reconnects has a new
    /// session, and a new hash, with each connection.
    pub fn session_hash(&self) -> [u8; 32] {
        self.inner.status.borrow().session_hash
    }

    /// The server's handshake payload (JSON text) of the first session, if
    /// it sent one ([`ConnectionEvent::Open`] has those of later ones).
    pub fn server_payload(&self) -> Option<&str> {
        self.inner.server_payload.as_deref()
    }

    /// Where the connection is now: open, reconnecting (see
    /// [`ClientOptions::with_reconnect`]), or closed.
    pub fn state(&self) -> ConnectionState {
        self.inner.status.borrow().state
    }

    /// The changes of the connection from now on: reconnection attempts,
    /// new sessions, and the close.
    ///
    /// ```no_run
    /// # async fn run(client: sigil_client::Client) {
    /// use sigil_client::ConnectionEvent;
    /// let mut events = client.events();
    /// while let Some(event) = events.next().await {
    ///     match event {
    ///         ConnectionEvent::Reconnecting { attempt, delay, error } => {
    ///             eprintln!("connection lost ({error}): attempt {attempt} in {delay:?}");
    ///         }
    ///         ConnectionEvent::Open { .. } => eprintln!("connected again"),
    ///         ConnectionEvent::Closed { error } => eprintln!("closed: {error:?}"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> ConnectionEvents {
        ConnectionEvents::new(self.inner.events.resubscribe())
    }

    /// Whether the client is closed for good (closed, or broken without
    /// reconnecting, or given up reconnecting); calls then fail with
    /// [`ClientError::Connection`].
    pub fn is_closed(&self) -> bool {
        self.inner.commands.is_closed()
    }

    /// Closes the connection for every clone: calls in flight fail with
    /// [`ClientError::Connection`], a WebSocket close is sent, and this
    /// returns once the server answered it (or after a short timeout).
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.send(Command::Close { done }).await.is_ok() {
            let _ = closed.await;
        }
    }

    async fn send(&self, command: Command) -> Result<(), ClientError> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| ClientError::closed())
    }
}

/// The arguments as a JSON array; `null` (from `()`) means none.
fn args_json(args: &impl Serialize) -> Result<Box<RawValue>, ClientError> {
    let raw = serde_json::value::to_raw_value(args)
        .map_err(|e| ClientError::InvalidArguments(e.to_string()))?;
    match raw.get() {
        "null" => Ok(RawValue::from_string("[]".to_owned())
            .map_err(|e| ClientError::InvalidArguments(e.to_string()))?),
        text if text.starts_with('[') => Ok(raw),
        _ => Err(ClientError::InvalidArguments(
            "args must serialize as a JSON array".to_owned(),
        )),
    }
}

/// Tells the connection task that a call's caller gave up, unless disarmed.
struct CancelOnDrop<'a> {
    controls: &'a mpsc::UnboundedSender<Control>,
    token: Option<u64>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token {
            // Fails only when the connection is gone, and the call with it.
            let _ = self.controls.send(Control::Cancel { token });
        }
    }
}

/// A call being made: await it (it is an [`IntoFuture`]), after setting its
/// deadline with [`timeout`](Call::timeout) if the default will not do.
#[must_use = "a call does nothing unless it is awaited"]
pub struct Call<'c, R> {
    client: &'c Client,
    object: String,
    method: String,
    args: Result<Box<RawValue>, ClientError>,
    timeout: Option<Duration>,
    result: PhantomData<fn() -> R>,
}

impl<R> Call<'_, R> {
    /// Sets this call's deadline, instead of the options' call timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'c, R: DeserializeOwned + 'c> IntoFuture for Call<'c, R> {
    type Output = Result<R, ClientError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'c>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Call {
                client,
                object,
                method,
                args,
                timeout,
                ..
            } = self;
            let raw = client.run(&object, &method, args?, timeout).await?;
            serde_json::from_str(raw.get()).map_err(|e| {
                ClientError::InvalidResult(format!(
                    "the result of method {method} of object {object} does not fit the expected type: {e}"
                ))
            })
        })
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.is_closed())
            .field("server_payload", &self.inner.server_payload)
            .finish_non_exhaustive()
    }
}
