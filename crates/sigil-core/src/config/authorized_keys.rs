//! Reading the contents of an authorized_keys file.

use super::ConfigError;
use crate::keys::PublicKey;

/// Reads the contents of an authorized_keys file: one public key per line
/// in base64 (as `sigil pubkey` prints it), optionally followed by a space
/// and a comment; blank lines and lines starting with `#` are skipped. Keys
/// are returned in file order; `path` names the file in messages.
///
/// ```
/// use sigil_core::config::parse_authorized_keys;
///
/// let text = "# our clients\nhSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo= alice@laptop\n\n";
/// let keys = parse_authorized_keys("authorized_keys", text)?;
/// assert_eq!(keys.len(), 1);
/// # Ok::<(), sigil_core::config::ConfigError>(())
/// ```
///
/// # Errors
/// [`ConfigError::AuthorizedKey`], naming the first line that holds no
/// valid public key.
pub fn parse_authorized_keys(path: &str, contents: &str) -> Result<Vec<PublicKey>, ConfigError> {
    Ok(parse_authorized_key_entries(path, contents)?
        .into_iter()
        .map(|entry| entry.key)
        .collect())
}

/// One line of an authorized_keys file: the key, and the comment after it
/// (the client's name in logs and in a handler's call context), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The client's public key.
    pub key: PublicKey,
    /// The rest of the line after the key, trimmed; `None` when empty.
    pub name: Option<String>,
}

/// [`parse_authorized_keys`], keeping each key's comment as its name.
pub fn parse_authorized_key_entries(
    path: &str,
    contents: &str,
) -> Result<Vec<AuthorizedKey>, ConfigError> {
    let mut keys = Vec::new();
    let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
    for (index, line) in contents.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (text, comment) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let key = PublicKey::parse(text).map_err(|reason| ConfigError::AuthorizedKey {
            path: path.to_owned(),
            line: index + 1,
            reason,
        })?;
        let comment = comment.trim();
        keys.push(AuthorizedKey {
            key,
            name: (!comment.is_empty()).then(|| comment.to_owned()),
        });
    }
    Ok(keys)
}
