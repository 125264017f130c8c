//! Reading keys: from a file or stdin, bounded in size, secret files checked
//! for permissions the way ssh checks them.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sigil_core::keyfile::{self, KeyFileError};
use sigil_core::{KeyError, PublicKey};
use zeroize::Zeroizing;

use crate::error::Failure;

/// The most that is read from a key file or stdin. A key in any form is far
/// shorter; anything longer is refused rather than read without bound.
pub(crate) const MAX_INPUT: usize = 64 * 1024;

/// Where a key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Standard input (`-` or no argument).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Source {
    /// `-` or nothing is stdin; anything else is a path.
    pub(crate) fn from_arg(arg: Option<&Path>) -> Source {
        match arg {
            None => Source::Stdin,
            Some(path) if path == Path::new("-") => Source::Stdin,
            Some(path) => Source::File(path.to_path_buf()),
        }
    }

    /// How the source is named in messages.
    pub(crate) fn name(&self) -> String {
        match self {
            Source::Stdin => "stdin".to_owned(),
            Source::File(path) => path.display().to_string(),
        }
    }
}

/// Reads the text of a secret key. A regular file that group or others can
/// access is refused, as ssh refuses such private keys.
pub(crate) fn read_secret(source: &Source) -> Result<Zeroizing<String>, Failure> {
    match source {
        Source::Stdin => read_bounded(io::stdin().lock(), source),
        Source::File(path) => keyfile::read_text(path, MAX_INPUT, true).map_err(key_file_failure),
    }
}

/// Reads the text of a public key (no permission check: it is public).
pub(crate) fn read_public(source: &Source) -> Result<Zeroizing<String>, Failure> {
    match source {
        Source::Stdin => read_bounded(io::stdin().lock(), source),
        Source::File(path) => keyfile::read_text(path, MAX_INPUT, false).map_err(key_file_failure),
    }
}

/// A public key given as `PUBLIC|PATH|-`: base64 inline, a file holding it
/// in base64 or PEM, or stdin. An existing file wins over inline text.
pub(crate) fn public_key_arg(arg: Option<&str>) -> Result<PublicKey, Failure> {
    let source = match arg {
        None | Some("-") => Source::Stdin,
        Some(text) if Path::new(text).exists() => Source::File(PathBuf::from(text)),
        Some(text) if text.trim().len() == 44 => {
            return PublicKey::parse(text).map_err(|err| {
                Failure::runtime(format_args!("`{text}` is not a public key: {err}"))
            });
        }
        Some(text) => {
            return Err(Failure::runtime(format_args!(
                "`{text}` is neither a base64 public key nor an existing file"
            ))
            .hint(
                "give a public key as `sigil pubkey` prints it, or the path of a public key file",
            ));
        }
    };
    let text = read_public(&source)?;
    parse_public(&text, &source)
}

/// Parses a public key read from `source`, explaining the common mistake of
/// giving a secret key where a public one is expected.
pub(crate) fn parse_public(text: &str, source: &Source) -> Result<PublicKey, Failure> {
    PublicKey::parse(text).map_err(|err| match err {
        KeyError::WrongKind {
            found: "secret", ..
        } => {
            let hint = match source {
                Source::Stdin => {
                    "get its public key first: `sigil pubkey < SECRET | sigil fingerprint`"
                        .to_owned()
                }
                Source::File(path) => format!(
                    "get its public key first: `sigil pubkey {}`",
                    path.display()
                ),
            };
            Failure::runtime(format_args!(
                "{} holds a secret key, not a public key",
                source.name()
            ))
            .hint(hint)
        }
        other => Failure::runtime(format_args!("{}: {other}", source.name())),
    })
}

/// A key file that cannot be used, in the CLI's two-line form: what is
/// wrong, then what to do (the permission check is sigil-core's, as ssh's).
fn key_file_failure(err: KeyFileError) -> Failure {
    match err {
        KeyFileError::Io { path, source } => Failure::io("read", &path, &source),
        KeyFileError::NotPrivate { path, mode } => Failure::runtime(format_args!(
            "secret key file {} is accessible by group or others (mode {mode:04o}); refusing to use it",
            path.display()
        ))
        .hint(format_args!(
            "make it private with `chmod 600 {}` and try again",
            path.display()
        )),
        KeyFileError::TooLarge { path, max } => Failure::runtime(format_args!(
            "{} is too long for a key (over {} KiB)",
            path.display(),
            max / 1024
        )),
        other => Failure::runtime(other),
    }
}

/// Reads at most [`MAX_INPUT`] bytes of UTF-8 text into a buffer that is
/// zeroized when dropped (allocated once, so no stray copies are left behind).
fn read_bounded(mut reader: impl Read, source: &Source) -> Result<Zeroizing<String>, Failure> {
    let mut buf = Zeroizing::new(vec![0u8; MAX_INPUT + 1]);
    let mut len = 0;
    while len < buf.len() {
        match reader.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                return Err(match source {
                    Source::Stdin => Failure::io("read", Path::new("stdin"), &err),
                    Source::File(path) => Failure::io("read", path, &err),
                });
            }
        }
    }
    if len > MAX_INPUT {
        return Err(Failure::runtime(format_args!(
            "{} is too long for a key (over {} KiB)",
            source.name(),
            MAX_INPUT / 1024
        )));
    }
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| {
        Failure::runtime(format_args!(
            "{} is not a key: it is not text",
            source.name()
        ))
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}
