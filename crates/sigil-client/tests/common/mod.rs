//! What the client's tests run against: the real `sigil-server` on
//! 127.0.0.1 port 0 for everything a server does, and a small [`hostile`]
//! server for the transport faults the real one never commits.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod hostile;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sigil_client::{Client, ClientError, ClientOptions, PublicKey, SecretKey};
use sigil_core::OsRandom;
use sigil_server::{ClientAuth, Registry, RpcError, RunningServer, Server, ServerSettings, demo};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long a test waits for anything: a guard against hangs, never a
/// measure of speed.
pub const HANG_GUARD: Duration = Duration::from_secs(10);

/// `what`, or a panic naming it after [`HANG_GUARD`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub fn fresh_key() -> SecretKey {
    SecretKey::generate(&mut OsRandom).expect("random")
}

/// A client key, and the server key it pins.
pub struct Keys {
    client: SecretKey,
    pub server_key: PublicKey,
}

impl Keys {
    pub fn client_secret(&self) -> SecretKey {
        SecretKey::from_bytes(&self.client.dangerous_to_bytes())
    }

    /// Options with the authorised client key and the server's key pinned.
    pub fn options(&self) -> ClientOptions {
        ClientOptions::new(self.client_secret(), self.server_key)
    }
}

/// The demo objects of `sigil serve --demo`.
pub fn demo_registry() -> Registry {
    let mut registry = Registry::new();
    demo::register(&mut registry);
    registry
}

/// A real sigil-server that authorises one client key.
pub struct Real {
    pub server: RunningServer,
    pub keys: Keys,
}

impl Real {
    /// The demo objects, default settings.
    pub async fn start() -> Real {
        Real::start_with(demo_registry(), |s| s).await
    }

    /// `registry`, with settings changed by `settings`.
    pub async fn start_with(
        registry: Registry,
        settings: impl FnOnce(ServerSettings) -> ServerSettings,
    ) -> Real {
        let client = fresh_key();
        let base = ServerSettings::new(fresh_key(), ClientAuth::Keys(vec![client.public_key()]));
        let server = Server::new(settings(base), registry)
            .bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let server_key = server.public_key();
        Real {
            server,
            keys: Keys { client, server_key },
        }
    }

    /// The demo objects and [`Gates`].
    pub async fn with_gates() -> (Real, Gates) {
        let mut registry = demo_registry();
        let gates = Gates::register(&mut registry);
        (Real::start_with(registry, |s| s).await, gates)
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn options(&self) -> ClientOptions {
        self.keys.options()
    }

    pub async fn connect(&self) -> Client {
        Client::connect(&self.url(), self.options())
            .await
            .expect("connect")
    }

    /// Waits until no connection is left (the server saw every one end).
    pub async fn wait_idle(&self) {
        within("the server's connections to end", async {
            while self.server.connection_count() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Shuts the server down: every session is closed.
    pub async fn stop(self) {
        within("the server to stop", self.server.shutdown()).await;
    }
}

/// `gate.wait(n)`, an asynchronous method of the real server that tells the
/// test when call `n` arrives and answers `n` only once the test opens
/// gate `n`: calls held in flight, answered in the order the test chooses.
pub struct Gates {
    arrived: mpsc::UnboundedReceiver<u64>,
    opened: watch::Sender<HashSet<u64>>,
}

impl Gates {
    pub fn register(registry: &mut Registry) -> Gates {
        let (arrivals, arrived) = mpsc::unbounded_channel();
        let (opened, watcher) = watch::channel(HashSet::new());
        registry
            .object("gate")
            .async_method("wait", move |(n,): (u64,)| {
                let arrivals = arrivals.clone();
                let mut watcher = watcher.clone();
                async move {
                    let _ = arrivals.send(n);
                    watcher
                        .wait_for(|open| open.contains(&n))
                        .await
                        .map_err(|_| RpcError::application("the test is gone"))?;
                    Ok(n)
                }
            });
        Gates { arrived, opened }
    }

    /// Starts call `gate.wait(n)`, and waits until the server runs it.
    pub async fn hold(&mut self, client: &Client, n: u64) -> JoinHandle<Result<u64, ClientError>> {
        let call = spawn_call(client, "gate", "wait", [n]);
        let arrived = within("a call to arrive", self.arrived.recv()).await;
        assert_eq!(arrived, Some(n));
        call
    }

    pub fn open(&self, n: u64) {
        self.opened.send_modify(|open| {
            open.insert(n);
        });
    }
}

/// Runs a call in its own task.
pub fn spawn_call<R: DeserializeOwned + Send + 'static>(
    client: &Client,
    object: &'static str,
    method: &'static str,
    args: impl Serialize + Send + 'static,
) -> JoinHandle<Result<R, ClientError>> {
    let client = client.clone();
    tokio::spawn(async move { client.call(object, method, args).await })
}

/// The outcome of a call spawned by [`spawn_call`].
pub async fn outcome<R>(call: JoinHandle<Result<R, ClientError>>) -> Result<R, ClientError> {
    within("a call to finish", call).await.expect("call task")
}

pub fn assert_connection_error<T: std::fmt::Debug>(result: Result<T, ClientError>) {
    match result {
        Err(ClientError::Connection(_)) => {}
        other => panic!("expected a connection error, got {other:?}"),
    }
}
