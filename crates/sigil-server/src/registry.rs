//! Registered objects and their exposed methods.
//!
//! ```
//! use sigil_server::{NoArgs, Registry, RpcError};
//!
//! let mut registry = Registry::new();
//! registry
//!     .object("greeter")
//!     .method("hello", |(name,): (String,)| Ok(format!("hello, {name}")))
//!     .method("version", |_: NoArgs| Ok("1.0"));
//! ```
//!
//! A method takes its positional arguments as one type that deserializes
//! from the JSON `args` array — a tuple such as `(f64, f64)` or `(String,)`,
//! or [`NoArgs`] — and returns `Result<R, RpcError>` where `R: Serialize`.
//! A stream method ([`ObjectBuilder::stream_method`]) returns a
//! [`Stream`] of such results instead: live values, sent as the client
//! grants credit for them.
//! Arguments that do not fit give `invalid_arguments`; nothing but JSON
//! through serde is ever deserialized, and only methods registered here can
//! be called.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::net::SocketAddr;

use futures_util::{Stream, StreamExt as _};
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use sigil_core::keys::PublicKey;
use sigil_core::rpc::{ErrorCode, RpcError, check_name, parse_response, write_error, write_result};

use crate::tls::PeerCertificate;

/// The name of the built-in object every server exposes.
pub const BUILTIN_OBJECT: &str = "sigil";

/// Arguments of a method that takes none: deserializes from `[]` only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoArgs;

impl<'de> Deserialize<'de> for NoArgs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NoArgs, D::Error> {
        struct Empty;
        impl<'de> Visitor<'de> for Empty {
            type Value = NoArgs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("no arguments (an empty array)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoArgs, A::Error> {
                match seq.next_element::<serde::de::IgnoredAny>()? {
                    None => Ok(NoArgs),
                    Some(_) => Err(serde::de::Error::invalid_length(1, &self)),
                }
            }
        }
        d.deserialize_seq(Empty)
    }
}

/// A boxed future answering an asynchronous call: the whole response JSON.
type ResponseFuture = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
type SyncFn = dyn Fn(&Arc<CallContext>, u64, &str, &mut Vec<u8>) + Send + Sync;
type AsyncFn =
    dyn Fn(&Arc<CallContext>, u64, &str) -> Result<ResponseFuture, RpcError> + Send + Sync;
/// A stream's items as JSON text; an error ends it.
pub(crate) type Items = Pin<Box<dyn Stream<Item = Result<Vec<u8>, RpcError>> + Send>>;
type StreamFn = dyn Fn(&Arc<CallContext>, &str) -> Result<Items, RpcError> + Send + Sync;

/// Who is calling: what the handshake established about the client, the
/// same for every call of one session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallContext {
    /// The client's public key (authenticated by the handshake).
    pub client_key: PublicKey,
    /// The client's name: the comment after its key in `authorized_keys`.
    pub client_name: Option<String>,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The session hash, the same on both ends (channel binding).
    pub session_hash: [u8; 32],
    /// Under TLS with client certificates: the client's certificate.
    pub certificate: Option<PeerCertificate>,
    /// The handshake payload the client sent (JSON text), as the hook saw it.
    pub payload: Option<String>,
    /// The session's instances of per-session objects.
    pub(crate) instances: Instances,
}

/// The instances of per-session objects of one session, by object; they
/// are dropped with the session's last [`CallContext`].
#[derive(Clone, Default)]
pub(crate) struct Instances(Arc<Mutex<HashMap<usize, Arc<dyn Any + Send + Sync>>>>);

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instances")
    }
}

impl Instances {
    /// The session's instance of object `key`, made by `make` on first
    /// use. `None` only if `key` held another type (it cannot: each key
    /// belongs to one object).
    fn get_or_make<T: Send + Sync + 'static>(
        &self,
        key: usize,
        make: impl FnOnce() -> T,
    ) -> Option<Arc<T>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let any = map
            .entry(key)
            .or_insert_with(|| Arc::new(make()) as Arc<dyn Any + Send + Sync>)
            .clone();
        drop(map);
        any.downcast::<T>().ok()
    }
}

/// Keys of per-session objects (unique in the process).
static NEXT_SESSION_OBJECT: AtomicUsize = AtomicUsize::new(0);

/// How an object with state finds the instance for a call.
type Instance<T> = Arc<dyn Fn(&CallContext) -> Option<Arc<T>> + Send + Sync>;

impl CallContext {
    /// The client key's fingerprint, `SHA256:…`.
    pub fn fingerprint(&self) -> String {
        self.client_key.fingerprint()
    }

    /// A context for calling a registry in process (tests, tools): no
    /// address of note, no certificate, no payload.
    pub fn for_key(client_key: PublicKey) -> CallContext {
        CallContext {
            client_key,
            client_name: None,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            session_hash: [0; 32],
            certificate: None,
            payload: None,
            instances: Instances::default(),
        }
    }
}

/// How a method runs.
pub(crate) enum Handler {
    /// Runs inline on the connection's task: quick, non-blocking work.
    Sync(Box<SyncFn>),
    /// Spawned as its own task: many may be in flight on one connection.
    Async(Box<AsyncFn>),
    /// A stream: its producer runs as its own task, paced by credit.
    Stream(Box<StreamFn>),
}

/// The objects a server exposes.
#[derive(Default)]
pub struct Registry {
    objects: HashMap<String, BTreeMap<String, Handler>>,
    /// What could not be registered, in order (see [`Registry::check`]).
    errors: Vec<RegistryError>,
    /// Where the methods of an object that could not be registered go.
    discarded: BTreeMap<String, Handler>,
}

/// Why an object or a method could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is not `^[A-Za-z][A-Za-z0-9_]{0,63}$` (a dotted name, say).
    #[error("cannot register {kind} {name:?}: {reason}")]
    BadName {
        /// `object` or `method`.
        kind: &'static str,
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The name of the built-in object, `sigil`.
    #[error("cannot register object {0:?}: the name is reserved for the built-in object")]
    Reserved(String),
    /// An object of that name is registered already.
    #[error("object {0:?} is registered twice")]
    DuplicateObject(String),
    /// The object has a method of that name already.
    #[error("method {method:?} of object {object:?} is registered twice")]
    DuplicateMethod {
        /// The object.
        object: String,
        /// The method.
        method: String,
    },
}

/// What a call names, found in the registry.
pub(crate) enum Lookup<'a> {
    Handler(&'a Handler),
    Ping,
    Objects,
}

impl Registry {
    /// An empty registry (the built-in `sigil` object is always there).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Starts registering the methods of the object `name`.
    ///
    /// A name that is not valid (`^[A-Za-z][A-Za-z0-9_]{0,63}$`), the
    /// built-in `sigil`, or an object registered already is an error that
    /// [`check`](Self::check) reports and [`Server::bind`](crate::Server::bind)
    /// refuses to start with; its methods are not registered.
    pub fn object(&mut self, name: &str) -> ObjectBuilder<'_> {
        let error = if let Err(e) = check_name("object", name) {
            Some(RegistryError::BadName {
                kind: "object",
                name: name.to_owned(),
                reason: e.message,
            })
        } else if name == BUILTIN_OBJECT {
            Some(RegistryError::Reserved(name.to_owned()))
        } else if self.objects.contains_key(name) {
            Some(RegistryError::DuplicateObject(name.to_owned()))
        } else {
            None
        };
        let methods = match error {
            Some(e) => {
                self.errors.push(e);
                &mut self.discarded
            }
            None => self.objects.entry(name.to_owned()).or_default(),
        };
        ObjectBuilder {
            name: name.to_owned(),
            methods,
            errors: &mut self.errors,
        }
    }

    /// Calls `object.method` in process, as a session with context `cx`
    /// would, without sockets or a handshake: for unit tests of objects.
    /// `args` is the JSON array of arguments.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use sigil_server::{CallContext, Registry};
    /// # use sigil_core::{keys::SecretKey, rand::OsRandom};
    ///
    /// let mut registry = Registry::new();
    /// registry.object("calculator").method("add", |(a, b): (i64, i64)| Ok(a + b));
    /// # let key = SecretKey::generate(&mut OsRandom).unwrap().public_key();
    /// let cx = Arc::new(CallContext::for_key(key));
    /// let sum = registry.call(&cx, "calculator", "add", "[1, 2]").await;
    /// assert_eq!(sum.unwrap().get(), "3");
    /// let err = registry.call(&cx, "calculator", "add", "[1]").await.unwrap_err();
    /// assert_eq!(err.message, "calculator.add takes 2 arguments, got 1");
    /// # });
    /// ```
    pub async fn call(
        &self,
        cx: &Arc<CallContext>,
        object: &str,
        method: &str,
        args: &str,
    ) -> Result<Box<RawValue>, RpcError> {
        let mut out = Vec::new();
        match self.lookup(object, method)? {
            Lookup::Ping => return raw("\"pong\"".to_owned()),
            Lookup::Objects => return raw(serde_json::to_string(&self.describe())?),
            Lookup::Handler(Handler::Sync(f)) => f(cx, 0, args, &mut out),
            Lookup::Handler(Handler::Async(f)) => out = f(cx, 0, args)?.await,
            Lookup::Handler(Handler::Stream(_)) => return Err(returns_a_stream(object, method)),
        }
        let response = parse_response(&out).map_err(|_| RpcError::internal())?;
        response.outcome
    }

    /// Opens stream `object.method` in process, as a session with context
    /// `cx` would (see [`call`](Self::call)): its items as JSON values.
    pub fn stream(
        &self,
        cx: &Arc<CallContext>,
        object: &str,
        method: &str,
        args: &str,
    ) -> Result<impl Stream<Item = Result<Box<RawValue>, RpcError>> + Send + use<>, RpcError> {
        match self.lookup(object, method)? {
            Lookup::Handler(Handler::Stream(f)) => {
                let items = f(cx, args)?;
                Ok(items.map(|item| {
                    item.and_then(|json| {
                        String::from_utf8(json)
                            .map_err(|_| RpcError::internal())
                            .and_then(raw)
                    })
                }))
            }
            _ => Err(not_a_stream(object, method)),
        }
    }

    /// The first thing that could not be registered, if any.
    pub fn check(&self) -> Result<(), RegistryError> {
        self.errors.first().map_or(Ok(()), |e| Err(e.clone()))
    }

    /// An object whose methods share one instance of `state` across every
    /// session (Pyro's instance mode "single"). The state is shared by
    /// concurrent calls: give it interior mutability (a `Mutex`, atomics).
    ///
    /// A bad or duplicate name is an error, as for [`object`](Self::object).
    pub fn object_with_state<T: Send + Sync + 'static>(
        &mut self,
        name: &str,
        state: T,
    ) -> StateBuilder<'_, T> {
        let state = Arc::new(state);
        self.stateful(name, Arc::new(move |_: &CallContext| Some(state.clone())))
    }

    /// An object with one instance per session (Pyro's "session"): `make`
    /// builds it from the caller's context at the session's first call to
    /// the object, and it is dropped when the session ends.
    ///
    /// A bad or duplicate name is an error, as for [`object`](Self::object).
    pub fn object_per_session<T, F>(&mut self, name: &str, make: F) -> StateBuilder<'_, T>
    where
        T: Send + Sync + 'static,
        F: Fn(&CallContext) -> T + Send + Sync + 'static,
    {
        let key = NEXT_SESSION_OBJECT.fetch_add(1, Ordering::Relaxed);
        self.stateful(
            name,
            Arc::new(move |cx: &CallContext| cx.instances.get_or_make(key, || make(cx))),
        )
    }

    /// An object with a fresh instance for every call (Pyro's "percall"),
    /// built by `make` from the caller's context.
    ///
    /// A bad or duplicate name is an error, as for [`object`](Self::object).
    pub fn object_per_call<T, F>(&mut self, name: &str, make: F) -> StateBuilder<'_, T>
    where
        T: Send + Sync + 'static,
        F: Fn(&CallContext) -> T + Send + Sync + 'static,
    {
        self.stateful(
            name,
            Arc::new(move |cx: &CallContext| Some(Arc::new(make(cx)))),
        )
    }

    fn stateful<T>(&mut self, name: &str, instance: Instance<T>) -> StateBuilder<'_, T> {
        StateBuilder {
            object: self.object(name),
            instance,
        }
    }

    /// What `object.method` names, or the `no_such_object` or
    /// `no_such_method` error.
    pub(crate) fn lookup(&self, object: &str, method: &str) -> Result<Lookup<'_>, RpcError> {
        let no_method = || {
            RpcError::new(
                ErrorCode::NoSuchMethod,
                format!("object {object} has no method {method}"),
            )
        };
        if object == BUILTIN_OBJECT {
            return match method {
                "ping" => Ok(Lookup::Ping),
                "objects" => Ok(Lookup::Objects),
                _ => Err(no_method()),
            };
        }
        let methods = self.objects.get(object).ok_or_else(|| {
            RpcError::new(ErrorCode::NoSuchObject, format!("no object named {object}"))
        })?;
        methods
            .get(method)
            .map(Lookup::Handler)
            .ok_or_else(no_method)
    }

    /// Every object and its method names, sorted, the built-in one included:
    /// the answer of `sigil.objects`.
    pub fn describe(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = self
            .objects
            .iter()
            .map(|(name, methods)| (name.clone(), methods.keys().cloned().collect()))
            .collect();
        out.insert(
            BUILTIN_OBJECT.to_owned(),
            vec!["objects".to_owned(), "ping".to_owned()],
        );
        out
    }
}

/// Registers the methods of one object; see [`Registry::object`].
pub struct ObjectBuilder<'a> {
    name: String,
    methods: &'a mut BTreeMap<String, Handler>,
    errors: &'a mut Vec<RegistryError>,
}

impl ObjectBuilder<'_> {
    /// Exposes a method that runs inline on the connection's task. It must
    /// be quick and must not block; use [`async_method`](Self::async_method)
    /// for anything that waits.
    ///
    /// A bad or duplicate method name is an error that
    /// [`Registry::check`] reports.
    pub fn method<A, R, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> Result<R, RpcError> + Send + Sync + 'static,
    {
        self.method_with_context(name, move |_: &CallContext, args: A| f(args))
    }

    /// [`method`](Self::method), with the caller's [`CallContext`]: who is
    /// calling, for per-method authorisation and audit logs.
    ///
    /// A bad or duplicate method name is an error that
    /// [`Registry::check`] reports.
    pub fn method_with_context<A, R, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&CallContext, A) -> Result<R, RpcError> + Send + Sync + 'static,
    {
        let label = format!("{}.{name}", self.name);
        let handler = move |cx: &Arc<CallContext>, id: u64, args: &str, out: &mut Vec<u8>| {
            match parse_args::<A>(&label, args).and_then(|args| f(cx, args)) {
                Ok(result) => respond(out, id, &result),
                Err(e) => write_error(out, id, &e),
            }
        };
        self.insert(name, Handler::Sync(Box::new(handler)))
    }

    /// Exposes an asynchronous method: each call runs as its own task, so
    /// many can be in flight on one connection (up to `max_inflight`) and
    /// they are answered in the order they finish.
    ///
    /// A bad or duplicate method name is an error that
    /// [`Registry::check`] reports.
    pub fn async_method<A, R, F, Fut>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        self.async_method_with_context(name, move |_: Arc<CallContext>, args: A| f(args))
    }

    /// [`async_method`](Self::async_method), with the caller's
    /// [`CallContext`] (shared, so the future may keep it).
    ///
    /// A bad or duplicate method name is an error that
    /// [`Registry::check`] reports.
    pub fn async_method_with_context<A, R, F, Fut>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(Arc<CallContext>, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let label = format!("{}.{name}", self.name);
        let handler =
            move |cx: &Arc<CallContext>, id: u64, args: &str| -> Result<ResponseFuture, RpcError> {
                let args = parse_args::<A>(&label, args)?;
                let fut = f(cx.clone(), args);
                Ok(Box::pin(async move {
                    let mut out = Vec::new();
                    match fut.await {
                        Ok(result) => respond(&mut out, id, &result),
                        Err(e) => write_error(&mut out, id, &e),
                    }
                    out
                }))
            };
        self.insert(name, Handler::Async(Box::new(handler)))
    }

    /// Exposes a stream method: `f` checks the arguments and returns a
    /// [`Stream`] of results, sent to the client as items while it grants
    /// credit (the stream is polled only then, so a slow reader costs the
    /// server nothing but the open stream). The stream ends the call when
    /// it ends; an `Err` item ends it with that error. It is dropped at
    /// once when the client cancels or the connection ends.
    ///
    /// ```
    /// use futures_util::stream;
    /// use sigil_server::{Registry, RpcError};
    ///
    /// let mut registry = Registry::new();
    /// registry.object("count").stream_method("up_to", |(n,): (u32,)| {
    ///     if n > 1000 {
    ///         return Err(RpcError::invalid_arguments("count.up_to counts to 1000 at most"));
    ///     }
    ///     Ok(stream::iter((0..n).map(Ok::<_, RpcError>)))
    /// });
    /// ```
    ///
    /// A bad or duplicate method name is an error that
    /// [`Registry::check`] reports.
    pub fn stream_method<A, T, S, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        T: Serialize,
        S: Stream<Item = Result<T, RpcError>> + Send + 'static,
        F: Fn(A) -> Result<S, RpcError> + Send + Sync + 'static,
    {
        self.stream_method_with_context(name, move |_: Arc<CallContext>, args: A| f(args))
    }

    /// [`stream_method`](Self::stream_method), with the caller's
    /// [`CallContext`] (shared, so the stream may keep it).
    ///
    /// A bad or duplicate method name is an error that
    /// [`Registry::check`] reports.
    pub fn stream_method_with_context<A, T, S, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        T: Serialize,
        S: Stream<Item = Result<T, RpcError>> + Send + 'static,
        F: Fn(Arc<CallContext>, A) -> Result<S, RpcError> + Send + Sync + 'static,
    {
        let label = format!("{}.{name}", self.name);
        let handler = move |cx: &Arc<CallContext>, args: &str| -> Result<Items, RpcError> {
            let args = parse_args::<A>(&label, args)?;
            let items = f(cx.clone(), args)?.map(|item| {
                item.and_then(|item| {
                    serde_json::to_vec(&item).map_err(|e| {
                        RpcError::application(format!("an item cannot be encoded as JSON: {e}"))
                    })
                })
            });
            Ok(Box::pin(items))
        };
        self.insert(name, Handler::Stream(Box::new(handler)))
    }

    fn insert(self, name: &str, handler: Handler) -> Self {
        if let Err(e) = check_name("method", name) {
            self.errors.push(RegistryError::BadName {
                kind: "method",
                name: name.to_owned(),
                reason: e.message,
            });
        } else if self.methods.contains_key(name) {
            self.errors.push(RegistryError::DuplicateMethod {
                object: self.name.clone(),
                method: name.to_owned(),
            });
        } else {
            self.methods.insert(name.to_owned(), handler);
        }
        self
    }
}

/// Registers the methods of an object with state; see
/// [`Registry::object_with_state`], [`Registry::object_per_session`] and
/// [`Registry::object_per_call`]. Its methods get the instance and the
/// caller's [`CallContext`].
pub struct StateBuilder<'a, T> {
    object: ObjectBuilder<'a>,
    instance: Instance<T>,
}

impl<T: Send + Sync + 'static> StateBuilder<'_, T> {
    /// A method that runs inline (see [`ObjectBuilder::method`]).
    ///
    /// A bad or duplicate method name is an error that
    /// [`Registry::check`] reports.
    pub fn method<A, R, F>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&T, &CallContext, A) -> Result<R, RpcError> + Send + Sync + 'static,
    {
        let instance = self.instance.clone();
        let object = self
            .object
            .method_with_context(name, move |cx: &CallContext, args: A| {
                let this = instance(cx).ok_or_else(lost_instance)?;
                f(&this, cx, args)
            });
        StateBuilder {
            object,
            instance: self.instance,
        }
    }

    /// An asynchronous method (see [`ObjectBuilder::async_method`]); the
    /// future owns its instance and context.
    ///
    /// A bad or duplicate method name is an error that
    /// [`Registry::check`] reports.
    pub fn async_method<A, R, F, Fut>(self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        F: Fn(Arc<T>, Arc<CallContext>, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        let instance = self.instance.clone();
        let f = Arc::new(f);
        let object =
            self.object
                .async_method_with_context(name, move |cx: Arc<CallContext>, args: A| {
                    let this = instance(&cx);
                    let f = f.clone();
                    async move {
                        let this = this.ok_or_else(lost_instance)?;
                        f(this, cx, args).await
                    }
                });
        StateBuilder {
            object,
            instance: self.instance,
        }
    }
}

/// The error of a plain call to a stream method.
pub(crate) fn returns_a_stream(object: &str, method: &str) -> RpcError {
    RpcError::new(
        ErrorCode::InvalidRequest,
        format!(
            "{object}.{method} returns a stream: call it as a stream (`sigil call --stream`, `Client::stream`, `client.stream`)"
        ),
    )
}

/// The error of a stream request for a method that is not a stream.
pub(crate) fn not_a_stream(object: &str, method: &str) -> RpcError {
    RpcError::new(
        ErrorCode::InvalidRequest,
        format!("{object}.{method} is not a stream method: call it without a stream"),
    )
}

/// The error of a call whose instance could not be found (it cannot happen).
fn lost_instance() -> RpcError {
    RpcError::internal()
}

/// A JSON text as a `RawValue` (an `internal_error` if it is not JSON).
fn raw(json: String) -> Result<Box<RawValue>, RpcError> {
    RawValue::from_string(json).map_err(|_| RpcError::internal())
}

/// The arguments of `label` (`object.method`), or an `invalid_arguments`
/// error in the method's words: "calculator.add takes 2 arguments, got 1".
fn parse_args<A: DeserializeOwned>(label: &str, args: &str) -> Result<A, RpcError> {
    serde_json::from_str(args)
        .map_err(|e| RpcError::invalid_arguments(args_error::<A>(label, args, &e)))
}

/// Says why `args` do not fit: a wrong count of arguments in the method's
/// words, or serde's explanation.
fn args_error<A: DeserializeOwned>(label: &str, args: &str, e: &serde_json::Error) -> String {
    let arguments = |n: usize| {
        if n == 1 {
            "1 argument".to_owned()
        } else {
            format!("{n} arguments")
        }
    };
    let given: Option<Vec<&RawValue>> = serde_json::from_str(args).ok();
    if let Some(given) = given {
        // Too few: serde names the tuple's size.
        let text = e.to_string();
        let wanted = text
            .split("expected a tuple of size ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(wanted) = wanted {
            return format!("{label} takes {}, got {}", arguments(wanted), given.len());
        }
        // Too many: the longest first part that fits tells the count (tried
        // for short lists only).
        if text.starts_with("trailing characters") && given.len() <= 16 {
            let fits = (0..given.len()).rev().find(|&k| {
                let prefix: Vec<&str> = given[..k].iter().map(|v| v.get()).collect();
                serde_json::from_str::<A>(&format!("[{}]", prefix.join(","))).is_ok()
            });
            if let Some(k) = fits {
                return format!("{label} takes {}, got {}", arguments(k), given.len());
            }
        }
    }
    format!("invalid arguments for {label}: {e}")
}

/// Writes a result, or an `application_error` if it cannot be serialized
/// (for example a non-finite float).
fn respond<R: Serialize>(out: &mut Vec<u8>, id: u64, result: &R) {
    let start = out.len();
    if let Err(e) = write_result(out, id, result) {
        out.truncate(start);
        write_error(
            out,
            id,
            &RpcError::application(format!("result cannot be encoded as JSON: {e}")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_errors_speak_the_methods_words() {
        let err = |args: &str| parse_args::<(i64, i64)>("calculator.add", args).unwrap_err();
        assert_eq!(
            err("[1]").message,
            "calculator.add takes 2 arguments, got 1"
        );
        assert_eq!(err("[]").message, "calculator.add takes 2 arguments, got 0");
        assert_eq!(
            err("[1,2,3]").message,
            "calculator.add takes 2 arguments, got 3"
        );
        let e = err(r#"["x",2]"#);
        assert_eq!(e.code, sigil_core::rpc::ErrorCode::InvalidArguments);
        assert!(
            e.message
                .starts_with("invalid arguments for calculator.add: invalid type")
        );
        let one = parse_args::<(String,)>("echo.echo", "[1, 2]").unwrap_err();
        assert!(
            one.message.starts_with("invalid arguments for echo.echo"),
            "{}",
            one.message
        );
        let none = parse_args::<NoArgs>("sigil.x", "[1]").unwrap_err();
        assert!(none.message.contains("sigil.x"), "{}", none.message);
    }

    #[test]
    fn no_args_only_from_empty_array() {
        assert!(serde_json::from_str::<NoArgs>("[]").is_ok());
        assert!(serde_json::from_str::<NoArgs>("[1]").is_err());
        assert!(serde_json::from_str::<NoArgs>("null").is_err());
    }

    #[test]
    fn describe_lists_builtin_and_sorted_methods() {
        let mut r = Registry::new();
        r.object("b")
            .method("z", |_: NoArgs| Ok::<_, RpcError>(1))
            .method("a", |_: NoArgs| Ok::<_, RpcError>(2));
        let d = r.describe();
        assert_eq!(d["b"], ["a", "z"]);
        assert_eq!(d["sigil"], ["objects", "ping"]);
    }

    #[test]
    fn bad_and_duplicate_names_are_errors_not_panics_or_overwrites() {
        let mut r = Registry::new();
        r.object("a.b").method("m", |_: NoArgs| Ok(1));
        match r.check() {
            Err(RegistryError::BadName { reason, .. }) => {
                assert!(reason.contains("dotted names are not allowed"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let mut r = Registry::new();
        r.object("x")
            .method("m", |_: NoArgs| Ok(1))
            .method("m", |_: NoArgs| Ok(2))
            .method("bad-name", |_: NoArgs| Ok(3));
        r.object("x");
        r.object("sigil");
        let mut errors = r.errors.clone().into_iter();
        assert_eq!(
            errors.next(),
            Some(RegistryError::DuplicateMethod {
                object: "x".into(),
                method: "m".into()
            })
        );
        assert!(matches!(
            errors.next(),
            Some(RegistryError::BadName { kind: "method", .. })
        ));
        assert_eq!(
            errors.next(),
            Some(RegistryError::DuplicateObject("x".into()))
        );
        assert_eq!(errors.next(), Some(RegistryError::Reserved("sigil".into())));
        // The first registration stands.
        assert_eq!(r.describe()["x"], ["m"]);
        assert!(Registry::new().check().is_ok());
    }
}
