//! Reading key files from disk, for the native adapters (feature `fs`).
//!
//! This is the one place in the core that touches the file system, and the
//! protocol code never calls it: the server, the client and the CLI use it to
//! load what the configuration names. Secret files are checked the way ssh
//! checks private keys: a regular file that group or others can access is
//! refused. Reads are bounded.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::config::{
    AuthorizedKey, ConfigError, parse_authorized_key_entries, parse_authorized_keys,
};
use crate::keys::{KeyError, PublicKey, SecretKey, SymmetricKey};

/// The most that is read from a key file; any key is far shorter.
pub const MAX_KEY_FILE: usize = 64 * 1024;
/// The most that is read from an authorized_keys file (about 10,000 keys).
pub const MAX_AUTHORIZED_KEYS_FILE: usize = 1024 * 1024;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A secret file that group or others can access.
    #[error(
        "secret file {} is accessible by group or others (mode {mode:04o}); refusing to use it; make it private with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Longer than any such file could be.
    #[error("{} is too large (over {max} bytes)", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
    /// Not UTF-8 text.
    #[error("{} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// The contents are not a key of the expected kind.
    #[error("{}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with the key.
        source: KeyError,
    },
    /// An authorized_keys file with a bad line.
    #[error(transparent)]
    AuthorizedKeys(#[from] ConfigError),
}

/// Reads a secret key (base64 or PEM) from a private file.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let text = read_text(path, MAX_KEY_FILE, true)?;
    SecretKey::parse(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Reads a public key (base64 or PEM).
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    let text = read_text(path, MAX_KEY_FILE, false)?;
    PublicKey::parse(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Reads a pre-shared key (base64 of 32 bytes) from a private file.
pub fn read_psk(path: &Path) -> Result<SymmetricKey, KeyFileError> {
    let text = read_text(path, MAX_KEY_FILE, true)?;
    SymmetricKey::from_base64(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Reads an authorized_keys file: one public key per line, an optional
/// comment after a space, `#` comment lines.
pub fn read_authorized_keys(path: &Path) -> Result<Vec<PublicKey>, KeyFileError> {
    let text = read_text(path, MAX_AUTHORIZED_KEYS_FILE, false)?;
    Ok(parse_authorized_keys(&path.display().to_string(), &text)?)
}

/// [`read_authorized_keys`], keeping each key's comment as its name.
pub fn read_authorized_key_entries(path: &Path) -> Result<Vec<AuthorizedKey>, KeyFileError> {
    let text = read_text(path, MAX_AUTHORIZED_KEYS_FILE, false)?;
    Ok(parse_authorized_key_entries(
        &path.display().to_string(),
        &text,
    )?)
}

/// Reads at most `max` bytes of UTF-8 text into a zeroizing buffer.
pub fn read_text(path: &Path, max: usize, secret: bool) -> Result<Zeroizing<String>, KeyFileError> {
    let io_err = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    if secret {
        check_private(&file, path)?;
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(4096.min(max + 1)));
    file.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    if buf.len() > max {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    let text = std::str::from_utf8(&buf).map_err(|_| KeyFileError::NotText {
        path: path.to_owned(),
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(unix)]
fn check_private(file: &File, path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = file.metadata().map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        return Err(KeyFileError::NotPrivate {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &File, _path: &Path) -> Result<(), KeyFileError> {
    Ok(())
}
