//! What can go wrong on the client's side.

use sigil_core::handshake::RefusalCode;
use sigil_core::rpc::{ErrorCode, RpcError};

/// Why connecting or calling failed.
///
/// `Display` gives one line for people; programs look at the variant, or at
/// [`refusal_code`](ClientError::refusal_code) and
/// [`rpc_code`](ClientError::rpc_code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the handshake.
    ///
    /// The code and reason are the server's word: a refusal is not
    /// authenticated, so it proves nothing about the server.
    #[error("the server refused the handshake with code {} ({}): {reason}{}",
        code.as_u16(), code.description(), code.hint().map(|h| format!(" ({h})")).unwrap_or_default())]
    Refused {
        /// The refusal code (1 handshake failed, 2 rejected by the
        /// application, 3 busy, 4 unsupported version, 5 stale or replayed).
        code: RefusalCode,
        /// The server's reason, for people.
        reason: String,
    },
    /// The server's answer to the handshake did not authenticate (for example
    /// a server that does not hold the pinned key), or was malformed.
    /// Deliberately unspecific.
    #[error(
        "handshake failed: the server's answer did not authenticate \
         (check the server's public key, the psk and the prologue)"
    )]
    Handshake,
    /// The call reached the server and failed there.
    #[error("the call failed on the server: {0}")]
    Remote(RpcError),
    /// The connection could not be made: before the sigil/1 handshake.
    #[error("cannot connect to {url}: {cause}")]
    Connect {
        /// The URL given.
        url: String,
        /// What failed.
        cause: ConnectError,
    },
    /// The connection broke, or is closed. Calls in flight when it broke
    /// have failed; a new connection is needed.
    #[error("connection error: {0}")]
    Connection(String),
    /// Connecting and the handshake did not complete within the handshake
    /// timeout.
    #[error("timed out connecting to the server (handshake timeout)")]
    Timeout,
    /// A call's arguments or names were refused before anything was sent:
    /// the arguments do not serialize as a JSON array, a name is not a plain
    /// identifier, or the request is over `max_message_size`.
    #[error("invalid call: {0}")]
    InvalidArguments(String),
    /// The call succeeded but its result does not deserialize into the type
    /// asked for.
    #[error("unexpected result: {0}")]
    InvalidResult(String),
    /// The options or the configuration are unusable.
    #[error("configuration error: {0}")]
    Config(String),
    /// A local I/O failure (reading a key file, the system's random source).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a connection could not be made, before the handshake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP connection failed (nothing listens there, no route, …).
    #[error("{0}")]
    Tcp(std::io::Error),
    /// The server does not speak TLS on that port (it answered the TLS
    /// handshake with something else, or closed): a `wss://` URL for a plain
    /// `ws://` server.
    #[error(
        "the server does not speak TLS there (it answered the TLS handshake with something else, \
         or closed): use a ws:// URL, or give the server tls.cert and tls.key"
    )]
    NotTls,
    /// The TLS handshake failed (certificate not trusted, name mismatch, a
    /// certificate check that refused it, …).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server asks for a client certificate (mutual TLS) and none was
    /// given.
    #[error(
        "the server requires a client certificate (mutual TLS), and none was given \
         (tls.client_cert and tls.client_key)"
    )]
    ClientCertificateRequired,
    /// The server refused the client certificate (not issued by a CA it
    /// trusts, expired, …); the text is rustls' account of the alert.
    #[error("the server refused this client's certificate ({0})")]
    ClientCertificateRefused(String),
    /// The server answered the WebSocket upgrade with this HTTP status
    /// instead of 101.
    #[error("{}", upgrade_refused(*status, *retry_after_s))]
    UpgradeRefused {
        /// The HTTP status (403, 404, 426, 503, …).
        status: u16,
        /// With 503: the seconds the server asked to wait.
        retry_after_s: Option<u64>,
    },
    /// The server did not select the `sigil.v1` subprotocol.
    #[error(
        "the server did not select the WebSocket subprotocol sigil.v1: \
         it is not a sigil/1 endpoint (sigil servers use the path /sigil)"
    )]
    NoSubprotocol,
    /// The server broke the WebSocket protocol, or closed early.
    #[error("{0}")]
    Protocol(String),
}

fn upgrade_refused(status: u16, retry_after_s: Option<u64>) -> String {
    match status {
        503 => format!(
            "the server is busy (HTTP 503: too many connections waiting for their handshake); \
             try again after {} s",
            retry_after_s.unwrap_or(1)
        ),
        403 => "the server refused the request (HTTP 403): the URL's host is not in its \
                allowed_hosts, or the request's origin is not in its allowed_origins"
            .to_owned(),
        other => format!(
            "the server answered the WebSocket upgrade with HTTP {other} (sigil servers use the path /sigil)"
        ),
    }
}

impl ClientError {
    /// The refusal code on the wire, for [`ClientError::Refused`].
    pub fn refusal_code(&self) -> Option<u16> {
        match self {
            ClientError::Refused { code, .. } => Some(code.as_u16()),
            _ => None,
        }
    }

    /// The RPC error code, for [`ClientError::Remote`].
    pub fn rpc_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote(e) => Some(e.code),
            _ => None,
        }
    }

    /// A connection error with this text.
    pub(crate) fn connection(text: impl Into<String>) -> ClientError {
        ClientError::Connection(text.into())
    }

    /// The error of a call made on a connection that is gone.
    pub(crate) fn closed() -> ClientError {
        ClientError::connection("the connection is closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_each() {
        let errors = [
            ClientError::Refused {
                code: RefusalCode::Rejected,
                reason: "not today".into(),
            },
            ClientError::Handshake,
            ClientError::Remote(RpcError::new(
                ErrorCode::ApplicationError,
                "division by zero",
            )),
            ClientError::connection("the server closed the connection"),
            ClientError::Timeout,
            ClientError::InvalidArguments("args must serialize as a JSON array".into()),
            ClientError::InvalidResult("invalid type".into()),
            ClientError::Config("no server public key".into()),
            ClientError::Io(std::io::Error::other("boom")),
        ];
        for e in &errors {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(!text.is_empty());
        }
        assert_eq!(
            errors[0].to_string(),
            "the server refused the handshake with code 2 (rejected by the application): not today"
        );
        assert_eq!(errors[0].refusal_code(), Some(2));
        assert_eq!(errors[2].rpc_code(), Some(ErrorCode::ApplicationError));
        assert_eq!(
            errors[2].to_string(),
            "the call failed on the server: application_error: division by zero"
        );
        assert_eq!(errors[1].refusal_code(), None);
        assert_eq!(errors[1].rpc_code(), None);
    }
}
