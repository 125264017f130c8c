//! The client handle: connect, call, close.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use sigil_core::handshake::ClientConfig;
use sigil_core::rpc::{ErrorCode, write_request};
use tokio::sync::{mpsc, oneshot};

use crate::connect::{Target, establish, handshake_error};
use crate::connection::{Command, Connection};
use crate::error::ClientError;
use crate::options::ClientOptions;

/// The empty argument list, `[]`.
const NO_ARGS: [(); 0] = [];

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
    next_id: AtomicU64,
    session_hash: [u8; 32],
    server_payload: Option<String>,
    max_message_size: usize,
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
            server_key,
            psk,
            prologue,
            payload,
            limits,
            handshake_timeout,
            tls,
        } = options;
        let mut config = ClientConfig::new(secret_key, server_key)
            .map_err(handshake_error)?
            .with_limits(limits)
            .with_prologue(&prologue);
        if let Some(psk) = psk {
            config = config.with_psk(psk);
        }
        let target = Target {
            url,
            tls: tls.as_ref(),
            payload: payload.as_deref(),
            limits,
        };
        let established = tokio::time::timeout(handshake_timeout, establish(&target, &config))
            .await
            .map_err(|_| ClientError::Timeout)??;

        let session_hash = *established.session.session_hash();
        let (sealer, opener) = established.session.split();
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let connection = Connection::new(established.ws, sealer, opener, receiver);
        tokio::spawn(connection.run());
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                next_id: AtomicU64::new(1),
                session_hash,
                server_payload: established.server_payload,
                max_message_size: limits.max_message_size as usize,
            }),
        })
    }

    /// Calls `method` of `object` on the server and deserializes its result.
    ///
    /// `args` must serialize as a JSON array: a tuple (`(1, 2)`), a `Vec`, a
    /// slice or an array; `()` (or anything that serializes as `null`) means
    /// no arguments. Names and arguments are checked
    /// before anything is sent ([`ClientError::InvalidArguments`]); a failure
    /// on the server is [`ClientError::Remote`] with its code.
    pub async fn call<R: DeserializeOwned>(
        &self,
        object: &str,
        method: &str,
        args: impl Serialize,
    ) -> Result<R, ClientError> {
        let raw = self.call_raw(object, method, args).await?;
        serde_json::from_str(raw.get()).map_err(|e| {
            ClientError::InvalidResult(format!(
                "the result of method {method} of object {object} does not fit the expected type: {e}"
            ))
        })
    }

    /// [`call`](Client::call), giving the result as JSON text.
    pub async fn call_raw(
        &self,
        object: &str,
        method: &str,
        args: impl Serialize,
    ) -> Result<Box<RawValue>, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let request = self.request(id, object, method, &args, false)?;
        let (reply, response) = oneshot::channel();
        self.send(Command::Call { id, request, reply }).await?;
        response.await.map_err(|_| ClientError::closed())?
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
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let request = self.request(id, object, method, &args, true)?;
        let (sent, written) = oneshot::channel();
        self.send(Command::Oneway { request, sent }).await?;
        written.await.map_err(|_| ClientError::closed())?
    }

    /// The session hash: the same 32 bytes on both ends, unique to this
    /// session, for channel binding.
    pub fn session_hash(&self) -> [u8; 32] {
        self.inner.session_hash
    }

    /// The server's handshake payload (JSON text), if it sent one.
    pub fn server_payload(&self) -> Option<&str> {
        self.inner.server_payload.as_deref()
    }

    /// Whether the connection has ended (closed, broken, or refused by the
    /// server); calls then fail with [`ClientError::Connection`].
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

    fn request(
        &self,
        id: u64,
        object: &str,
        method: &str,
        args: &impl Serialize,
        oneway: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let mut request = Vec::new();
        if let Err(e) = write_request(&mut request, id, object, method, args, oneway) {
            // `()` serializes as `null`; take it to mean "no arguments".
            let none = e.code == ErrorCode::InvalidArguments
                && serde_json::to_vec(args).is_ok_and(|json| json == b"null");
            if !none {
                return Err(ClientError::InvalidArguments(e.message));
            }
            write_request(&mut request, id, object, method, &NO_ARGS, oneway)
                .map_err(|e| ClientError::InvalidArguments(e.message))?;
        }
        if request.len() > self.inner.max_message_size {
            return Err(ClientError::InvalidArguments(format!(
                "the request is {} bytes, over max_message_size ({} bytes)",
                request.len(),
                self.inner.max_message_size
            )));
        }
        Ok(request)
    }

    async fn send(&self, command: Command) -> Result<(), ClientError> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| ClientError::closed())
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
