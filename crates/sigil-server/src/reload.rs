//! Changing the authorized keys and the TLS certificate while serving: on
//! request ([`RunningServer::reload`](crate::RunningServer::reload), which
//! `sigil serve` calls on SIGHUP) and when their files change.
//!
//! Files are watched by polling: every second each file's size,
//! modification time and inode are compared with what was last loaded. A
//! change is applied once it has held for one more second, so that a file
//! written in several steps is not read half written (a half-written
//! authorized_keys would revoke the keys it has not reached yet). Polling
//! needs no new dependency and behaves the same on every platform and file
//! system, including the network and container mounts where inotify misses
//! changes; a second or two of delay is fine for revocation, and SIGHUP
//! applies a change at once.
//!
//! A reload that fails keeps what was loaded before and says why. New
//! handshakes see a new key set at once; each open session watches the set
//! and, under `revoked_sessions = "close"`, closes when its key leaves it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use sigil_core::config::{AuthorizedKey, RevokedSessions};
use sigil_core::handshake::{ClientAuth, HandshakeError, ServerConfig};
use sigil_core::keyfile::{self, KeyFileError};
use sigil_core::keys::PublicKey;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::operating::{ReloadFiles, TlsFiles};
use crate::server::Shared;
use crate::settings::SetupError;
use crate::tls::TlsSettings;

/// How often watched files are looked at.
const POLL: Duration = Duration::from_secs(1);

/// Removed keys named one by one in the log; more are counted.
const MAX_NAMED: usize = 32;

/// Why a reload kept what was loaded before.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The authorized_keys file could not be read, or holds a bad line.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A key of the new set is unusable (a low-order point).
    #[error("authorized_keys: {0}")]
    Key(HandshakeError),
    /// The server accepts any client key: it has no authorized keys.
    #[error("the server accepts any client key (allow_any_client): it has no authorized keys")]
    AnyClient,
    /// The TLS certificate, key or client CA is unusable.
    #[error(transparent)]
    Tls(SetupError),
}

/// How the authorized keys changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyChanges {
    /// Keys authorised now.
    pub keys: usize,
    /// Keys that were not authorised before.
    pub added: Vec<PublicKey>,
    /// Keys no longer authorised, with their names as they were.
    pub removed: Vec<(PublicKey, Option<String>)>,
}

/// What a reload did, file by file: `None` for a file the server was not
/// configured from.
#[derive(Debug)]
#[non_exhaustive]
pub struct Reloaded {
    /// `authorized_keys`: the change, or why the previous keys were kept.
    pub authorized_keys: Option<Result<KeyChanges, ReloadError>>,
    /// `tls.cert`, `tls.key` and `tls.client_ca`: reloaded, or why the
    /// previous ones were kept.
    pub tls: Option<Result<(), ReloadError>>,
}

impl Reloaded {
    /// True unless some file failed to reload.
    pub fn is_ok(&self) -> bool {
        !matches!(self.authorized_keys, Some(Err(_))) && !matches!(self.tls, Some(Err(_)))
    }
}

/// The client policy in force: the handshake's config, with the keys'
/// names.
pub(crate) struct Authorized {
    pub(crate) core: ServerConfig,
    /// `None` under allow_any_client.
    keys: Option<HashSet<PublicKey>>,
    /// The comments of the authorized_keys lines.
    pub(crate) names: HashMap<PublicKey, String>,
}

/// The client policy, replaced whole by a reload; sessions watch it.
pub(crate) struct Clients {
    current: watch::Sender<Arc<Authorized>>,
    policy: RevokedSessions,
    /// One change at a time (a signal and the file watch may race).
    changing: Mutex<()>,
}

impl Clients {
    pub(crate) fn new(
        core: ServerConfig,
        auth_keys: Option<Vec<PublicKey>>,
        names: HashMap<PublicKey, String>,
        policy: RevokedSessions,
    ) -> Clients {
        let authorized = Authorized {
            core,
            keys: auth_keys.map(|k| k.into_iter().collect()),
            names,
        };
        Clients {
            current: watch::Sender::new(Arc::new(authorized)),
            policy,
            changing: Mutex::new(()),
        }
    }

    /// The policy for a handshake starting now.
    pub(crate) fn current(&self) -> Arc<Authorized> {
        self.current.borrow().clone()
    }

    /// Keys authorised now (`None` under allow_any_client).
    pub(crate) fn count(&self) -> Option<usize> {
        self.current.borrow().keys.as_ref().map(HashSet::len)
    }

    /// Watches for the removal of `key`, from now on: call it before
    /// reading [`current`](Self::current) for the handshake, so that no
    /// change between the two is missed.
    pub(crate) fn watch(&self) -> watch::Receiver<Arc<Authorized>> {
        self.current.subscribe()
    }

    /// Makes `entries` the authorized keys.
    pub(crate) fn replace(&self, entries: Vec<AuthorizedKey>) -> Result<KeyChanges, ReloadError> {
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current();
        let Some(old_keys) = &old.keys else {
            return Err(ReloadError::AnyClient);
        };
        let keys: Vec<PublicKey> = entries.iter().map(|e| e.key).collect();
        let core = old
            .core
            .with_client_auth(ClientAuth::Keys(keys.clone()))
            .map_err(ReloadError::Key)?;
        let new_keys: HashSet<PublicKey> = keys.into_iter().collect();
        let names: HashMap<PublicKey, String> = entries
            .into_iter()
            .filter_map(|e| Some((e.key, e.name?)))
            .collect();
        let mut added: Vec<PublicKey> = new_keys.difference(old_keys).copied().collect();
        added.sort_by_key(|k| *k.as_bytes());
        let mut removed: Vec<(PublicKey, Option<String>)> = old_keys
            .difference(&new_keys)
            .map(|k| (*k, old.names.get(k).cloned()))
            .collect();
        removed.sort_by_key(|(k, _)| *k.as_bytes());
        let changes = KeyChanges {
            keys: new_keys.len(),
            added,
            removed,
        };
        self.current.send_replace(Arc::new(Authorized {
            core,
            keys: Some(new_keys),
            names,
        }));
        Ok(changes)
    }

    /// Whether sessions of removed keys are closed.
    pub(crate) fn closes_revoked(&self) -> bool {
        self.policy == RevokedSessions::Close
    }

    fn policy(&self) -> RevokedSessions {
        self.policy
    }
}

/// Resolves once `key` is no longer authorised, under `revoked_sessions =
/// "close"`; never under `keep` (the session ends on its own).
pub(crate) async fn revoked(watch: Option<watch::Receiver<Arc<Authorized>>>, key: PublicKey) {
    let Some(mut rx) = watch else {
        return std::future::pending().await;
    };
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        if !rx.borrow_and_update().core.is_authorized(&key) {
            return;
        }
    }
}

/// A value a reload swaps whole (the TLS config).
pub(crate) struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    pub(crate) fn new(value: Arc<T>) -> Swap<T> {
        Swap(RwLock::new(value))
    }

    pub(crate) fn load(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn store(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// What started a reload: it is logged even when nothing changed if it was
/// asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    Request,
    FileChange,
}

/// Rereads the files (blocking: run it off the runtime's threads).
pub(crate) fn reload(shared: &Shared, files: &ReloadFiles, trigger: Trigger) -> Reloaded {
    Reloaded {
        authorized_keys: files
            .authorized_keys
            .as_deref()
            .map(|path| reload_keys(shared, path, trigger)),
        tls: files.tls.as_ref().map(|tls| reload_tls(shared, tls)),
    }
}

fn reload_keys(shared: &Shared, path: &Path, trigger: Trigger) -> Result<KeyChanges, ReloadError> {
    let before = shared.clients.count().unwrap_or(0);
    let result = keyfile::read_authorized_key_entries(path)
        .map_err(ReloadError::from)
        .and_then(|entries| shared.clients.replace(entries));
    shared.metrics.reloaded("authorized_keys", result.is_ok());
    match &result {
        Ok(changes) => log_changes(&shared.clients, path, changes, trigger),
        Err(e) => warn!(
            "cannot reload authorized_keys from {}: {e}; keeping the previous {before} keys",
            path.display()
        ),
    }
    result
}

/// Applies [`KeyChanges`] from outside a file (the library's
/// `set_authorized_keys`), logging them as a reload does.
pub(crate) fn set_keys(
    shared: &Shared,
    entries: Vec<AuthorizedKey>,
) -> Result<KeyChanges, ReloadError> {
    let result = shared.clients.replace(entries);
    if let Ok(changes) = &result {
        log_changes(
            &shared.clients,
            Path::new("(set by the application)"),
            changes,
            Trigger::Request,
        );
    }
    result
}

fn log_changes(clients: &Clients, path: &Path, changes: &KeyChanges, trigger: Trigger) {
    let (added, removed) = (changes.added.len(), changes.removed.len());
    if added == 0 && removed == 0 && trigger == Trigger::FileChange {
        return debug!("{} changed; its keys did not", path.display());
    }
    info!(
        "reloaded authorized_keys from {}: {} keys, {added} added, {removed} removed",
        path.display(),
        changes.keys
    );
    let fate = match clients.policy() {
        RevokedSessions::Close => "its open sessions are closed (revoked_sessions = close)",
        RevokedSessions::Keep => "its open sessions stay until they end (revoked_sessions = keep)",
    };
    for (key, name) in changes.removed.iter().take(MAX_NAMED) {
        let name = name
            .as_deref()
            .map(|n| format!(" ({n:?})"))
            .unwrap_or_default();
        info!(
            "client key {}{name} is no longer authorised: {fate}",
            key.fingerprint()
        );
    }
    if removed > MAX_NAMED {
        info!(
            "{} more client keys are no longer authorised: {fate}",
            removed - MAX_NAMED
        );
    }
}

fn reload_tls(shared: &Shared, files: &TlsFiles) -> Result<(), ReloadError> {
    let Some(swap) = &shared.tls else {
        return Ok(());
    };
    let result = TlsSettings::from_files(
        &files.cert,
        &files.key,
        files.client_ca.as_deref(),
        files.require_client_cert,
    );
    shared.metrics.reloaded("tls", result.is_ok());
    match result {
        Ok(tls) => {
            swap.store(tls.config);
            info!("reloaded the TLS certificate from {}", files.cert.display());
            Ok(())
        }
        Err(e) => {
            warn!("cannot reload TLS: {e}; keeping the previous certificate and key");
            Err(ReloadError::Tls(e))
        }
    }
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// Files watched together, and what was seen of them.
struct Watched {
    paths: Vec<PathBuf>,
    loaded: Vec<Option<Stamp>>,
    seen: Vec<Option<Stamp>>,
}

impl Watched {
    fn new<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> Watched {
        let paths: Vec<PathBuf> = paths.cloned().collect();
        let now: Vec<Option<Stamp>> = paths.iter().map(|p| stamp(p)).collect();
        Watched {
            paths,
            loaded: now.clone(),
            seen: now,
        }
    }

    /// True when the files differ from what was loaded and did not change
    /// since the previous look (whoever writes them is done).
    fn settled_change(&mut self) -> bool {
        let now: Vec<Option<Stamp>> = self.paths.iter().map(|p| stamp(p)).collect();
        let settled = now != self.loaded && now == self.seen;
        if settled {
            self.loaded = now.clone();
        }
        self.seen = now;
        settled
    }
}

/// Polls the files every second and reloads what changed, until `stop`.
pub(crate) async fn watch_files(
    shared: Arc<Shared>,
    files: ReloadFiles,
    mut stop: watch::Receiver<bool>,
) {
    let mut keys = files
        .authorized_keys
        .as_ref()
        .map(|p| Watched::new(std::iter::once(p)));
    let mut tls = files.tls.as_ref().map(|t| Watched::new(t.paths()));
    if keys.is_none() && tls.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let (shared, files) = (shared.clone(), files.clone());
        let (k, t) = (keys.take(), tls.take());
        // stat, and a reload's reads and Diffie-Hellman work, block.
        let looked = tokio::task::spawn_blocking(move || {
            let mut k = k;
            let mut t = t;
            let changed = ReloadFiles {
                authorized_keys: files
                    .authorized_keys
                    .filter(|_| k.as_mut().is_some_and(Watched::settled_change)),
                tls: files
                    .tls
                    .filter(|_| t.as_mut().is_some_and(Watched::settled_change)),
            };
            if changed.authorized_keys.is_some() || changed.tls.is_some() {
                reload(&shared, &changed, Trigger::FileChange);
            }
            (k, t)
        })
        .await;
        match looked {
            Ok((k, t)) => (keys, tls) = (k, t),
            Err(_) => return,
        }
    }
}
