//! `sigil serve`: a sigil server from the configuration, with the demo
//! objects on request, until Ctrl-C or SIGTERM; SIGHUP reloads
//! authorized_keys and the TLS files.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sigil_core::config::{Config, LogLevel, Resolved};
use sigil_server::{Registry, RunningServer, Server, ServerSettings, SetupError, demo};
use tracing_subscriber::filter::LevelFilter;

use crate::config::{Override, Sources, report_ignored};
use crate::error::{Failure, plain_io_error};
use crate::{output, web};

/// How long a stopping server waits for its connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `sigil serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML config file
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Ignore the environment entirely (ignored SIGIL_* variables are reported)
    #[arg(long)]
    no_env: bool,
    /// Serve the demo objects calculator, clock, echo, kv and session; without authorized_keys, accept ANY client key
    #[arg(long)]
    demo: bool,
    /// Address to listen on (overrides `host`)
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Port to listen on, 0 for any free port (overrides `port`)
    #[arg(long, value_name = "PORT")]
    port: Option<String>,
    /// Name this instance: the object `instance` answers it from `name` (which
    /// of several instances behind a load balancer served a call)
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// Serve the browser demo page from DIR (index.html, app.js, style.css and
    /// the built pkg/); with --demo, the page built into this binary or a built web/ is used
    #[arg(long, value_name = "DIR")]
    web: Option<PathBuf>,
}

/// `sigil serve`: runs a server until interrupted.
pub(crate) fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let (resolved, demo_allows_any) = resolve(args)?;
    report_ignored(&resolved);
    let config = &resolved.config;
    init_logging(config.log.value);
    let mut settings = ServerSettings::from_config(config).map_err(setup_failure)?;
    let web = web::find(args.web.as_deref(), args.demo);
    if let Some(page) = &web {
        settings = settings.with_static_files(page.load()?);
    }

    let mut registry = Registry::new();
    if args.demo {
        demo::register(&mut registry);
    }
    let mut notes = startup_notes(args.demo, demo_allows_any, config, &settings);
    if let Some(name) = &args.instance {
        demo::register_instance(&mut registry, name.as_str());
        let _ = writeln!(notes, "instance.name answers {name:?}");
    }
    if args.demo && web.is_none() {
        notes.push_str(web::NOT_FOUND);
    }
    let addr = listen_addr(&config.host.value, config.port.value);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format_args!("cannot start: {}", plain_io_error(&e))))?;
    runtime.block_on(async {
        // Catch the signals before anything is printed, so that whoever reads
        // the URL and stops the server at once gets a clean stop.
        let mut signals = Signals::new()?;
        let server = Server::new(settings, registry)
            .bind(&addr)
            .await
            .map_err(|e| bind_failure(e, config))?;
        output::stdout(&ready_text(&notes, &server, web.is_some()))?;
        // The server logs what a reload did, and why a file was kept.
        while signals.next().await == Signal::Reload {
            server.reload().await;
        }
        stop(server, &mut signals).await;
        output::stdout("stopped\n")
    })
}

/// The configuration: file < environment < `--host`/`--port`, and with
/// `--demo` and no `authorized_keys`, `allow_any_client = true` from `--demo`
/// (then the flag is true).
fn resolve(args: &ServeArgs) -> Result<(Resolved, bool), Failure> {
    let sources = Sources::load(args.config.as_deref(), args.no_env)?;
    let mut overrides = Vec::new();
    if let Some(host) = &args.host {
        overrides.push(Override {
            key: "host",
            value: host,
            flag: "--host",
        });
    }
    if let Some(port) = &args.port {
        overrides.push(Override {
            key: "port",
            value: port,
            flag: "--port",
        });
    }
    let resolved = sources.resolve(&overrides)?;
    let config = &resolved.config;
    if !args.demo || config.authorized_keys.value.is_some() || config.allow_any_client.value {
        return Ok((resolved, false));
    }
    overrides.push(Override {
        key: "allow_any_client",
        value: "true",
        flag: "--demo",
    });
    Ok((sources.resolve(&overrides)?, true))
}

/// What the operator must know before trusting this server: which objects it
/// serves, which clients it accepts, and whether its key is ephemeral.
fn startup_notes(
    demo: bool,
    demo_allows_any: bool,
    config: &Config,
    settings: &ServerSettings,
) -> String {
    let mut notes = String::new();
    if demo {
        notes
            .push_str("--demo: serving the demo objects calculator, clock, echo, kv and session\n");
    } else {
        notes.push_str(
            "serving only the built-in `sigil` object (ping, objects); \
             --demo adds the demo objects calculator, clock, echo, kv and session\n",
        );
    }
    if demo_allows_any {
        notes.push_str("--demo: accepting ANY client key (no authorized_keys configured)\n");
    } else if settings.allows_any_client() {
        let _ = writeln!(
            notes,
            "accepting ANY client key (allow_any_client = true, from {})",
            config.allow_any_client.origin
        );
    } else if let Some(path) = &config.authorized_keys.value {
        let _ = writeln!(
            notes,
            "accepting the client keys listed in {}",
            path.display()
        );
    }
    if settings.has_ephemeral_key() {
        notes.push_str(
            "no server_key configured: using an ephemeral key for this run; \
             clients must pin the key printed below\n\
             the key changes at every start: to keep one, run `sigil keygen --out server.key` \
             and set server_key = \"server.key\" (or SIGIL_SERVER_KEY)\n",
        );
    }
    for key in settings.public_keys().iter().skip(1) {
        let _ = writeln!(
            notes,
            "also serving clients that pinned {} (server_key, from {}): \
             drop it once they pin the key below",
            key.fingerprint(),
            config.server_key.origin
        );
    }
    notes
}

/// The lines printed once the server listens; tests and scripts read the
/// `url:` and `public key:` lines.
fn ready_text(notes: &str, server: &RunningServer, page: bool) -> String {
    let key = server.public_key();
    let mut text = notes.to_owned();
    if page {
        let scheme = if server.url().starts_with("wss:") {
            "https"
        } else {
            "http"
        };
        let _ = writeln!(text, "web demo: {scheme}://{}/", server.local_addr());
    }
    if let Some(addr) = server.metrics_addr() {
        let _ = writeln!(text, "metrics: http://{addr}/metrics");
    }
    let _ = write!(
        text,
        "url: {}\npublic key: {key}\nfingerprint: {}\n",
        server.url(),
        key.fingerprint()
    );
    text
}

/// `host:port`, with an IPv6 address in brackets.
fn listen_addr(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Logs go to stderr as plain text at the configured level: no colour codes
/// (tracing-subscriber is built without its `ansi` feature, so none reach a
/// file or a pipe) and no module paths (the messages say what they are about).
fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Stops the server, waiting a while for its connections to close; a second
/// signal stops waiting.
async fn stop(server: RunningServer, signals: &mut Signals) {
    let second_stop = async { while signals.next().await == Signal::Reload {} };
    tokio::select! {
        () = server.shutdown() => {}
        () = second_stop => {
            eprintln!("sigil: stopping without waiting for open connections");
        }
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            eprintln!(
                "sigil: connections still open after {} s; stopping anyway",
                SHUTDOWN_GRACE.as_secs()
            );
        }
    }
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Ctrl-C (SIGINT) or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

/// Ctrl-C (SIGINT) and, on Unix, SIGTERM and SIGHUP.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Result<Signals, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |e: io::Error| {
            Failure::runtime(format_args!("cannot catch signals: {}", plain_io_error(&e)))
        };
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
            terminate: signal(SignalKind::terminate()).map_err(failed)?,
            hangup: signal(SignalKind::hangup()).map_err(failed)?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> Result<Signals, Failure> {
        Ok(Signals {})
    }

    /// Waits for the next signal.
    #[cfg(unix)]
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> Signal {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        Signal::Stop
    }
}

/// A server that cannot be set up from its configuration: exit 2, except a
/// failing random source (exit 1).
fn setup_failure(err: SetupError) -> Failure {
    match err {
        SetupError::NoClientPolicy => {
            Failure::usage(err).hint("or run `sigil serve --demo` to try sigil out")
        }
        SetupError::Random | SetupError::Bind { .. } => Failure::runtime(err),
        other => Failure::usage(other),
    }
}

/// The socket could not be opened: exit 1, saying what to do.
fn bind_failure(err: SetupError, config: &Config) -> Failure {
    let SetupError::Bind { addr, source } = &err else {
        return setup_failure(err);
    };
    let port = config.port.value;
    match source.kind() {
        io::ErrorKind::AddrInUse => Failure::runtime(format_args!(
            "port {port} is in use: stop the other server or use --port"
        )),
        io::ErrorKind::PermissionDenied => {
            Failure::runtime(format_args!("cannot listen on {addr}: permission denied"))
                .hint("ports below 1024 need privileges: use --port with a higher port")
        }
        io::ErrorKind::AddrNotAvailable => Failure::runtime(format_args!(
            "cannot listen on {addr}: the address is not one of this machine's"
        ))
        .hint("use --host with an address of this machine, such as 127.0.0.1"),
        _ => Failure::runtime(format_args!(
            "cannot listen on {addr}: {}",
            plain_io_error(source)
        ))
        .hint("check --host and --port"),
    }
}

#[cfg(test)]
mod tests {
    use super::listen_addr;

    #[test]
    fn listen_addr_brackets_ipv6() {
        assert_eq!(listen_addr("127.0.0.1", 7070), "127.0.0.1:7070");
        assert_eq!(listen_addr("::1", 0), "[::1]:0");
        assert_eq!(listen_addr("[::1]", 80), "[::1]:80");
        assert_eq!(listen_addr("localhost", 1), "localhost:1");
    }
}
