//! `sigil call`: one call to a sigil server, its result on stdout as JSON;
//! with `--stream`, a stream's items, one JSON value per line as they come.

use std::path::PathBuf;

use clap::Args;
use serde_json::value::RawValue;
use sigil_client::{Client, ClientError, ClientOptions, ConnectError, ErrorCode, RefusalCode};
use sigil_core::config::Resolved;
use sigil_core::handshake::GENERIC_REASON;
use sigil_core::rpc::check_name;

use crate::call_tls::{TlsArgs, path_arg};
use crate::config::{Override, Sources, report_ignored};
use crate::error::{Failure, plain_io_error};
use crate::input::{self, Source};
use crate::{keys, output};

/// The most characters of an argument, or of a server's text, shown in a message.
const MAX_SHOWN: usize = 200;

/// Arguments of `sigil call`.
#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The server's endpoint, as `sigil serve` prints it: ws://127.0.0.1:7070/sigil
    #[arg(value_name = "URL")]
    url: String,
    /// The object to call (`sigil` is built in: `sigil objects` lists the others)
    #[arg(value_name = "OBJECT")]
    object: String,
    /// The method to call
    #[arg(value_name = "METHOD")]
    method: String,
    /// The arguments, each one JSON value: 3, '"text"', '{"a":1}'
    #[arg(value_name = "JSON_ARG", allow_negative_numbers = true)]
    args: Vec<String>,
    /// A TOML config file
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Ignore the environment entirely (ignored SIGIL_* variables are reported)
    #[arg(long)]
    no_env: bool,
    /// The server's public key to pin: base64 inline, or a file; repeat it to pin several, tried in order [default: config server_public_key]
    #[arg(long, value_name = "PUBLIC")]
    server_key: Vec<String>,
    /// Your secret key file, base64 or PEM [default: config client_key]
    #[arg(long, value_name = "PATH")]
    key: Option<PathBuf>,
    /// A handshake payload for the server's handshake hook: one JSON value
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// The call's deadline in milliseconds; past it the call is cancelled (a stream: its first item) [default: config call_timeout_ms]
    #[arg(long, value_name = "MS")]
    timeout: Option<String>,
    /// Call a stream method: print each item as one line of JSON as it comes; exit 0 at its end, 1 on an error; Ctrl-C cancels it
    #[arg(long)]
    stream: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

/// `sigil call`: connects, calls, prints the result.
pub(crate) fn call(args: &CallArgs) -> Result<(), Failure> {
    check_url(&args.url)?;
    check_name("object", &args.object).map_err(|e| Failure::usage(e.message))?;
    check_name("method", &args.method).map_err(|e| Failure::usage(e.message))?;
    let call_args = json_args(&args.args)?;
    if let Some(payload) = &args.payload {
        serde_json::from_str::<&RawValue>(payload).map_err(|e| {
            Failure::usage(format_args!("--payload is not JSON: {e}"))
                .hint("give one JSON value, such as '{\"user\":\"alice\"}'")
        })?;
    }
    let resolved = resolve(args)?;
    report_ignored(&resolved);
    let mut options = client_options(&resolved)?;
    if let Some(payload) = &args.payload {
        options = options.with_payload(payload.clone());
    }
    let timeout_ms = resolved.config.handshake_timeout_ms.value;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format_args!("cannot start: {}", plain_io_error(&e))))?;
    runtime.block_on(async {
        let client = Client::connect(&args.url, options)
            .await
            .map_err(|e| connect_failure(e, &args.url, timeout_ms))?;
        let result = if args.stream {
            stream(&client, args, &call_args).await
        } else {
            client
                .call_raw(&args.object, &args.method, &call_args)
                .await
                .map_err(|e| call_failure(e, &args.object, &args.method))
                .and_then(|result| print_json(&result))
        };
        client.close().await;
        result
    })
}

/// Prints one JSON value on a line of its own.
fn print_json(value: &RawValue) -> Result<(), Failure> {
    let mut line = compact(value.get());
    line.push('\n');
    output::stdout(&line)
}

/// Prints a stream's items as they come, until its end, an error, or
/// Ctrl-C (which cancels it: the stream is dropped before the connection
/// closes, so the server stops its producer at once).
async fn stream(
    client: &Client,
    args: &CallArgs,
    call_args: &[Box<RawValue>],
) -> Result<(), Failure> {
    let failed = |e| call_failure(e, &args.object, &args.method);
    let mut items = client
        .stream::<Box<RawValue>>(&args.object, &args.method, call_args)
        .await
        .map_err(failed)?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            item = items.next() => match item {
                Some(Ok(item)) => print_json(&item)?,
                Some(Err(e)) => return Err(failed(e)),
                None => return Ok(()),
            },
            _ = &mut interrupted => {
                drop(items);
                return Err(Failure::interrupted("interrupted: the stream was cancelled"));
            }
        }
    }
}

/// The configuration, with `--server-key` and `--key` as overrides, checked
/// for the two keys a call needs.
fn resolve(args: &CallArgs) -> Result<Resolved, Failure> {
    let sources = Sources::load(args.config.as_deref(), args.no_env)?;
    let server_keys = args
        .server_key
        .iter()
        .map(|arg| Ok(input::public_key_arg(Some(arg))?.to_string()))
        .collect::<Result<Vec<_>, Failure>>()?
        .join(",");
    let key_path = match &args.key {
        Some(path) => Some(path_arg("--key", path)?),
        None => None,
    };
    let tls = args.tls.overrides()?;
    let mut overrides = Vec::new();
    if !server_keys.is_empty() {
        overrides.push(Override {
            key: "server_public_key",
            value: &server_keys,
            flag: "--server-key",
        });
    }
    if let Some(path) = key_path {
        overrides.push(Override {
            key: "client_key",
            value: path,
            flag: "--key",
        });
    }
    if let Some(ms) = &args.timeout {
        overrides.push(Override {
            key: "call_timeout_ms",
            value: ms,
            flag: "--timeout",
        });
    }
    overrides.extend(
        tls.iter()
            .map(|(key, value, flag)| Override { key, value, flag }),
    );
    sources.resolve(&overrides)
}

/// Options from the configuration. The client key file is read here first,
/// for the same messages as the other commands give about key files (and the
/// same refusal of a file that group or others can read).
fn client_options(resolved: &Resolved) -> Result<ClientOptions, Failure> {
    let config = &resolved.config;
    if config.server_public_key.value.is_empty() {
        return Err(Failure::usage(
            "no server key to pin: give --server-key PUBLIC or set server_public_key",
        )
        .hint("use the `public key:` line that `sigil serve` prints, or its public key file"));
    }
    let Some(key_path) = &config.client_key.value else {
        return Err(
            Failure::usage("no client key: give --key PATH or set client_key")
                .hint("make one with `sigil keygen --out client.key`, then use --key client.key"),
        );
    };
    keys::read_secret_key(&Source::File(key_path.clone()))?;
    ClientOptions::from_config(config).map_err(|e| match e {
        ClientError::Config(text) => Failure::usage(text),
        ClientError::Io(e) => Failure::runtime(plain_io_error(&e)),
        other => Failure::runtime(other),
    })
}

/// A URL that is not `ws://` or `wss://` is a usage error.
fn check_url(url: &str) -> Result<(), Failure> {
    if url.starts_with("ws://") || url.starts_with("wss://") {
        return Ok(());
    }
    Err(Failure::usage(format_args!(
        "`{}` is not a ws:// or wss:// URL",
        shown(url)
    ))
    .hint("give the URL that `sigil serve` prints, such as ws://127.0.0.1:7070/sigil"))
}

/// Each argument must be one JSON value.
fn json_args(args: &[String]) -> Result<Vec<Box<RawValue>>, Failure> {
    args.iter()
        .enumerate()
        .map(|(i, arg)| {
            RawValue::from_string(arg.trim().to_owned()).map_err(|e| {
                Failure::usage(format_args!(
                    "argument {} (`{}`) is not JSON: {e}",
                    i + 1,
                    shown(arg)
                ))
                .hint(format_args!(
                    "each argument is one JSON value: quote strings as JSON, as in '\"{}\"'",
                    shown(arg).replace(['"', '\'', '\\'], "")
                ))
            })
        })
        .collect()
}

/// Connecting failed: exit 1, except for unusable options (exit 2).
fn connect_failure(err: ClientError, url: &str, timeout_ms: u64) -> Failure {
    match err {
        ClientError::Refused { code, reason } => {
            let reason = if code == RefusalCode::HandshakeFailed && reason == GENERIC_REASON {
                // Code 1 is every key failure alike (no oracle): say what
                // it most often means, as a rotated server key does.
                "the server's key did not match the pinned key, or the server does not accept \
                 this client's key"
                    .to_owned()
            } else if reason.is_empty() {
                code.description().to_owned()
            } else {
                shown(&reason)
            };
            let failure = Failure::runtime(format_args!(
                "the server refused the handshake (code {}): {reason}",
                code.as_u16()
            ));
            match code.hint() {
                Some(hint) => failure.hint(hint),
                None => failure,
            }
        }
        ClientError::Handshake => Failure::runtime(
            "the server's answer to the handshake did not authenticate",
        )
        .hint(
            "check --server-key: pin the key that server printed (and match its psk and prologue)",
        ),
        ClientError::Timeout => Failure::runtime(format_args!(
            "no answer from {} within {timeout_ms} ms (handshake_timeout_ms)",
            shown(url)
        ))
        .hint("check the URL, or raise handshake_timeout_ms"),
        ClientError::Connect { url, cause } => {
            let failure = Failure::runtime(format_args!(
                "cannot connect to {}: {}",
                shown(&url),
                shown(&without_os_error(&cause.to_string()))
            ));
            match cause {
                ConnectError::UpgradeRefused { status: 503, .. } => {
                    failure.hint("the server is busy: try again in a moment")
                }
                ConnectError::UpgradeRefused { status: 403, .. } => failure.hint(
                    "use the host name the server expects (its allowed_hosts), e.g. the one `sigil serve` printed",
                ),
                ConnectError::NotTls => failure,
                ConnectError::ClientCertificateRequired => failure
                    .hint("give your certificate with --client-cert PATH --client-cert-key PATH"),
                ConnectError::ClientCertificateRefused(_) => failure.hint(
                    "the server trusts client certificates of its tls.client_ca only: check --client-cert",
                ),
                ConnectError::Tls(_) => failure.hint(
                    "check the server's certificate, the name in the URL, and --ca (tls.ca) for a private CA",
                ),
                _ => failure.hint("check the URL, and that `sigil serve` is running there"),
            }
        }
        ClientError::Connection(text) => Failure::runtime(format_args!(
            "cannot connect to {}: {}",
            shown(url),
            shown(&without_os_error(&text))
        ))
        .hint("check the URL, and that `sigil serve` is running there"),
        ClientError::Config(text) | ClientError::InvalidArguments(text) => {
            Failure::usage(shown(&text))
        }
        other => Failure::runtime(shown(&other.to_string())),
    }
}

/// The call failed: exit 1 (2 if it was refused before it was sent).
fn call_failure(err: ClientError, object: &str, method: &str) -> Failure {
    match err {
        ClientError::Remote(e) if e.code == ErrorCode::Timeout => Failure::runtime(format_args!(
            "{object}.{method} timed out: {}",
            shown(&e.message)
        ))
        .hint("the call was cancelled; give it longer with --timeout MS (call_timeout_ms)"),
        ClientError::Remote(e) => {
            let failure = Failure::runtime(format_args!(
                "{object}.{method} failed: {}: {}",
                e.code,
                shown(&e.message)
            ));
            match e.code {
                ErrorCode::NoSuchObject | ErrorCode::NoSuchMethod => {
                    failure.hint("list the objects and methods with `sigil call URL sigil objects`")
                }
                _ => failure,
            }
        }
        ClientError::InvalidArguments(text) => Failure::usage(format_args!(
            "{object}.{method} was not sent: {}",
            shown(&text)
        )),
        ClientError::Connection(text) => Failure::runtime(format_args!(
            "{object}.{method}: the connection broke: {}",
            shown(&text)
        )),
        other => Failure::runtime(format_args!(
            "{object}.{method}: {}",
            shown(&other.to_string())
        )),
    }
}

/// Text from the command line or from the server, made safe for one line
/// of a terminal: control characters escaped, at most [`MAX_SHOWN`] characters.
fn shown(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The text without the " (os error N)" that I/O errors end with.
fn without_os_error(text: &str) -> String {
    match text.find(" (os error ") {
        Some(at) => {
            let rest = &text[at + 1..];
            let end = rest.find(')').map_or(rest.len(), |e| e + 1);
            format!("{}{}", &text[..at], &rest[end..])
        }
        None => text.to_owned(),
    }
}

/// Valid JSON text without the whitespace between tokens (strings, which
/// cannot hold raw control characters, are kept as they are).
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings() {
        assert_eq!(compact("3"), "3");
        assert_eq!(
            compact("{ \"a b\" : [1, 2],\n \"c\\\" d\": \"x \\\\\" }"),
            "{\"a b\":[1,2],\"c\\\" d\":\"x \\\\\"}"
        );
    }

    #[test]
    fn os_error_numbers_are_dropped() {
        assert_eq!(
            without_os_error("cannot connect to x: Connection refused (os error 111)"),
            "cannot connect to x: Connection refused"
        );
        assert_eq!(without_os_error("closed"), "closed");
    }

    #[test]
    fn shown_escapes_and_bounds() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(300)).chars().count(), MAX_SHOWN + 1);
    }

    #[test]
    fn json_args_keep_their_text() {
        let args = json_args(&["1".into(), " {\"b\":1,\"a\":[2]} ".into()]).expect("json");
        assert_eq!(
            serde_json::to_string(&args).expect("serialize"),
            "[1,{\"b\":1,\"a\":[2]}]"
        );
        assert!(json_args(&["hello".into()]).is_err());
    }
}
