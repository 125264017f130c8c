//! The task behind a [`Client`](crate::Client): it runs one connection
//! after another, reconnecting when one breaks (if the options ask for it),
//! and reports each change of state.
//!
//! While it reconnects, it keeps taking commands: calls made meanwhile wait
//! in a bounded backlog, each until its own deadline, and go first on the
//! new connection; a close ends the attempts. What was in flight when the
//! connection broke has already failed with a connection error (the
//! connection task does that), and is never sent again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sigil_core::OsRandom;
use sigil_core::connection::{ClientConnection, SessionLimits};
use sigil_core::handshake::RefusalCode;
use sigil_core::rand::RandomSource as _;
use sigil_core::reconnect::{Backoff, ReconnectPolicy};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;

use crate::connect::{Dialer, Established};
use crate::connection::{Channels, Command, Connection, Control, Ended};
use crate::error::{ClientError, ConnectError};

/// Where a client's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Making a connection and its handshake.
    Connecting,
    /// Connected: calls go through.
    Open,
    /// The connection broke; waiting before the next attempt.
    Reconnecting,
    /// Closed for good: by the client, or after the last attempt.
    Closed,
}

/// A change of a client's connection, as [`Client::events`](crate::Client::events)
/// reports it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// Attempt `attempt` (from 1) to connect again has started.
    Connecting {
        /// Which attempt since the connection broke.
        attempt: u32,
    },
    /// A new session is open (after a reconnection; the first one is open
    /// when [`Client::connect`](crate::Client::connect) returns).
    Open {
        /// The new session's hash (channel binding).
        session_hash: [u8; 32],
        /// The server's handshake payload for this session, if any.
        server_payload: Option<String>,
    },
    /// The connection broke, or an attempt failed: the next attempt comes
    /// after `delay`.
    Reconnecting {
        /// The attempt that comes next (from 1).
        attempt: u32,
        /// How long the client waits before it.
        delay: Duration,
        /// Why the connection broke, or why the last attempt failed.
        error: Arc<ClientError>,
    },
    /// The client is closed for good.
    Closed {
        /// `None`: closed by the client (or every handle was dropped);
        /// otherwise why the connection ended (the client gives up after
        /// its last attempt, or at once after a refusal that trying again
        /// would not change).
        error: Option<Arc<ClientError>>,
    },
}

/// The events of a client, from when they were asked for
/// ([`Client::events`](crate::Client::events)).
#[derive(Debug)]
pub struct ConnectionEvents {
    events: broadcast::Receiver<ConnectionEvent>,
}

impl ConnectionEvents {
    pub(crate) fn new(events: broadcast::Receiver<ConnectionEvent>) -> ConnectionEvents {
        ConnectionEvents { events }
    }

    /// The next event; `None` after [`ConnectionEvent::Closed`]. A reader
    /// that falls more than 64 events behind misses the oldest.
    pub async fn next(&mut self) -> Option<ConnectionEvent> {
        loop {
            match self.events.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// How many events wait for a slow reader.
pub(crate) const EVENTS: usize = 64;

/// Calls that may wait for a new connection; more fail at once.
const MAX_BACKLOG: usize = 256;

/// What a client shows of its connection: its state and session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    pub(crate) state: ConnectionState,
    pub(crate) session_hash: [u8; 32],
}

/// What each connection's session is made with.
#[derive(Clone, Copy)]
pub(crate) struct SessionSettings {
    pub(crate) limits: SessionLimits,
    pub(crate) call_timeout: Duration,
}

impl SessionSettings {
    /// The connection task of a new session.
    pub(crate) fn connection(
        &self,
        established: Established,
        channels: Channels,
        backlog: Vec<Command>,
    ) -> Connection {
        let conn = ClientConnection::new(established.session, self.limits);
        Connection::new(established.ws, conn, channels, backlog)
    }
}

/// The task that owns a client's connections.
pub(crate) struct Supervisor {
    pub(crate) dialer: Dialer,
    pub(crate) session: SessionSettings,
    pub(crate) policy: Option<ReconnectPolicy>,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) events: broadcast::Sender<ConnectionEvent>,
}

/// A call waiting for a connection, and until when it may.
struct Waiting {
    deadline: Instant,
    command: Command,
}

/// Why the attempts stopped.
enum Stop {
    /// Every client handle is gone.
    Dropped,
    /// A client asked to close; answer it once closed.
    Closed(oneshot::Sender<()>),
}

impl Supervisor {
    /// Runs connections until the client closes or gives up.
    pub(crate) async fn run(self, mut connection: Connection) {
        loop {
            let Ended { error, channels } = connection.run(self.policy.is_some()).await;
            let error = error.map(Arc::new);
            let (Some(channels), Some(error), Some(policy)) =
                (channels, error.clone(), self.policy)
            else {
                return self.closed(error);
            };
            match self.reconnect(channels, error, policy).await {
                Some(next) => connection = next,
                None => return,
            }
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.status.send_modify(|s| s.state = state);
    }

    fn emit(&self, event: ConnectionEvent) {
        // No receiver is fine: nobody asked for events.
        let _ = self.events.send(event);
    }

    fn closed(&self, error: Option<Arc<ClientError>>) {
        self.set_state(ConnectionState::Closed);
        self.emit(ConnectionEvent::Closed { error });
    }

    /// Attempts connections after `error` broke one, until one opens (its
    /// task is returned) or the client closes or gives up (`None`).
    async fn reconnect(
        &self,
        mut channels: Channels,
        mut error: Arc<ClientError>,
        policy: ReconnectPolicy,
    ) -> Option<Connection> {
        let mut backlog = VecDeque::new();
        let mut backoff = Backoff::new(policy);
        let stop = loop {
            if is_final(&error) {
                break None;
            }
            let Some(delay) = backoff.next_delay_ms(random()) else {
                break None;
            };
            let delay = Duration::from_millis(delay);
            let attempt = backoff.attempts();
            self.set_state(ConnectionState::Reconnecting);
            self.emit(ConnectionEvent::Reconnecting {
                attempt,
                delay,
                error: error.clone(),
            });
            let waited = self.serve_while(tokio::time::sleep(delay), &mut channels, &mut backlog);
            if let Err(stop) = waited.await {
                break Some(stop);
            }
            self.set_state(ConnectionState::Connecting);
            self.emit(ConnectionEvent::Connecting { attempt });
            match self
                .serve_while(self.dialer.dial(), &mut channels, &mut backlog)
                .await
            {
                Err(stop) => break Some(stop),
                Ok(Err(e)) => error = Arc::new(e),
                Ok(Ok(established)) => {
                    let session_hash = *established.session.session_hash();
                    let server_payload = established.server_payload.clone();
                    let now = Instant::now();
                    let backlog = backlog
                        .into_iter()
                        .filter_map(|w| started_within(w, now))
                        .collect();
                    let connection = self.session.connection(established, channels, backlog);
                    self.status.send_modify(|s| {
                        s.state = ConnectionState::Open;
                        s.session_hash = session_hash;
                    });
                    self.emit(ConnectionEvent::Open {
                        session_hash,
                        server_payload,
                    });
                    return Some(connection);
                }
            }
        };
        // Closed by the client, or given up: everything waiting fails.
        let (reason, final_error) = match &stop {
            Some(_) => ("the connection was closed by the client".to_owned(), None),
            None => (
                format!(
                    "gave up reconnecting after {} attempts: {error}",
                    backoff.attempts()
                ),
                Some(error.clone()),
            ),
        };
        let failed = || ClientError::connection(reason.clone());
        let mut done = Vec::new();
        for waiting in backlog {
            done.extend(waiting.command.fail(failed()));
        }
        done.extend(channels.close(failed));
        if let Some(Stop::Closed(d)) = stop {
            done.push(d);
        }
        self.closed(final_error);
        for d in done {
            let _ = d.send(());
        }
        None
    }

    /// Waits for `task` while taking the callers' commands: calls join the
    /// backlog (failing once their deadline passes), cancels remove them,
    /// and a close (or the last handle dropped) stops the wait.
    async fn serve_while<F: Future>(
        &self,
        task: F,
        channels: &mut Channels,
        backlog: &mut VecDeque<Waiting>,
    ) -> Result<F::Output, Stop> {
        tokio::pin!(task);
        loop {
            let next_deadline = backlog.iter().map(|w| w.deadline).min();
            tokio::select! {
                out = &mut task => return Ok(out),
                command = channels.commands.recv() => match command {
                    None => return Err(Stop::Dropped),
                    Some(Command::Close { done }) => return Err(Stop::Closed(done)),
                    Some(command) if backlog.len() >= MAX_BACKLOG => {
                        let _ = command.fail(ClientError::connection(
                            "reconnecting, and too many calls are waiting for the connection",
                        ));
                    }
                    Some(command) => {
                        let deadline = Instant::now() + self.deadline_of(&command);
                        backlog.push_back(Waiting { deadline, command });
                    }
                },
                Some(control) = channels.controls.recv() => {
                    if let Control::Cancel { token } = control {
                        backlog.retain(|w| w.command.token() != Some(token));
                    }
                }
                () = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)),
                    if next_deadline.is_some() =>
                {
                    let now = Instant::now();
                    for waiting in std::mem::take(backlog) {
                        if waiting.deadline <= now {
                            let _ = waiting.command.fail(ClientError::connection(
                                "reconnecting: no connection before the call's deadline",
                            ));
                        } else {
                            backlog.push_back(waiting);
                        }
                    }
                }
            }
        }
    }

    /// How long a command may wait for a connection: its own deadline.
    fn deadline_of(&self, command: &Command) -> Duration {
        let ms = match command {
            Command::Call { call, .. } => call.options.timeout_ms,
            Command::Stream { options, .. } => options.timeout_ms,
            Command::Oneway { .. } | Command::Close { .. } => None,
        };
        ms.map_or(self.session.call_timeout, Duration::from_millis)
    }
}

/// A waiting command with what is left of its deadline, or `None` (after
/// failing it) if nothing is.
fn started_within(waiting: Waiting, now: Instant) -> Option<Command> {
    let left = waiting.deadline.saturating_duration_since(now);
    let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    if left_ms == 0 {
        let _ = waiting.command.fail(ClientError::connection(
            "reconnecting: no connection before the call's deadline",
        ));
        return None;
    }
    let mut command = waiting.command;
    match &mut command {
        Command::Call { call, .. } => call.options.timeout_ms = Some(left_ms),
        Command::Stream { options, .. } => options.timeout_ms = Some(left_ms),
        Command::Oneway { .. } | Command::Close { .. } => {}
    }
    Some(command)
}

/// Whether trying again cannot help: the server refused this client or
/// this handshake for good, the server is not the one pinned, or the
/// client's own setup is wrong.
fn is_final(error: &ClientError) -> bool {
    match error {
        ClientError::Refused { code, .. } => matches!(
            code,
            RefusalCode::HandshakeFailed | RefusalCode::Rejected | RefusalCode::UnsupportedVersion
        ),
        ClientError::Connect { cause, .. } => match cause {
            ConnectError::Tcp(_) | ConnectError::Protocol(_) => false,
            // A proxy with no instance behind it answers 502 to 504.
            ConnectError::UpgradeRefused { status, .. } => *status < 500,
            _ => true,
        },
        ClientError::Connection(_) | ClientError::Timeout => false,
        _ => true,
    }
}

/// A uniformly random number for the jitter (0 if the system has none:
/// the delays still grow, they only stop spreading out).
fn random() -> u64 {
    let mut bytes = [0u8; 8];
    match OsRandom.fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lasting_failures_are_final() {
        let refused = |code| ClientError::Refused {
            code,
            reason: String::new(),
        };
        let upgrade = |status| ClientError::Connect {
            url: "ws://x/sigil".into(),
            cause: ConnectError::UpgradeRefused {
                status,
                retry_after_s: None,
            },
        };
        for lasting in [
            refused(RefusalCode::HandshakeFailed),
            refused(RefusalCode::Rejected),
            refused(RefusalCode::UnsupportedVersion),
            ClientError::Handshake,
            upgrade(403),
            upgrade(404),
            ClientError::Config("x".into()),
        ] {
            assert!(is_final(&lasting), "{lasting}");
        }
        for passing in [
            refused(RefusalCode::Busy),
            refused(RefusalCode::StaleOrReplayed),
            upgrade(502),
            upgrade(503),
            ClientError::Connection("broke".into()),
            ClientError::Timeout,
            ClientError::Connect {
                url: "ws://x/sigil".into(),
                cause: ConnectError::Tcp(std::io::ErrorKind::ConnectionRefused.into()),
            },
        ] {
            assert!(!is_final(&passing), "{passing}");
        }
    }
}
