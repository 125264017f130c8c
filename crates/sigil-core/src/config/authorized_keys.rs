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
    let mut keys = Vec::new();
    let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
    for (index, line) in contents.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let text = line.split_whitespace().next().unwrap_or_default();
        let key = PublicKey::parse(text).map_err(|reason| ConfigError::AuthorizedKey {
            path: path.to_owned(),
            line: index + 1,
            reason,
        })?;
        keys.push(key);
    }
    Ok(keys)
}
