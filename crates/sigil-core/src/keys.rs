//! X25519 keys and their text forms.
//!
//! Two text forms are read and written, and readers detect which one they
//! are given:
//!
//! * **base64**: standard, padded base64 of the 32 raw bytes (44 characters),
//!   the same text as WireGuard's `wg genkey` / `wg pubkey`;
//! * **PEM**: PKCS#8 `PRIVATE KEY` for secrets and SPKI `PUBLIC KEY` for
//!   public keys, exactly as OpenSSL writes X25519 keys (RFC 8410).
//!
//! Secrets ([`SecretKey`], [`SymmetricKey`]) have no `Debug` or `Display`,
//! are zeroized on drop, and give out their bytes only through methods whose
//! names start with `dangerous_`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::rand::{RandomError, RandomSource};

/// Length in bytes of every X25519 key and of symmetric keys.
pub const KEY_LEN: usize = 32;

/// DER prefix of a PKCS#8 (RFC 5208 / RFC 8410) X25519 private key:
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.110 }, OCTET STRING { OCTET STRING (32) } }`.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of an SPKI (RFC 5280 / RFC 8410) X25519 public key:
/// `SEQUENCE { SEQUENCE { OID 1.3.101.110 }, BIT STRING (0 unused bits, 32 bytes) }`.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];
const PEM_PRIVATE: &str = "PRIVATE KEY";
const PEM_PUBLIC: &str = "PUBLIC KEY";
/// Longest key text a reader looks at: a PEM file with generous whitespace.
const MAX_KEY_TEXT: usize = 4096;

/// Why a key could not be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is neither base64 of 32 bytes nor a PEM block.
    #[error("not a key: expected base64 of 32 bytes (as `wg genkey` writes) or a PEM block")]
    Unrecognized,
    /// Base64 that does not decode, or decodes to the wrong length.
    #[error("invalid base64 key: {0}")]
    Base64(&'static str),
    /// A PEM block that is malformed or not an X25519 key of the expected kind.
    #[error("invalid PEM key: {0}")]
    Pem(&'static str),
    /// A public key was given where a secret key was expected, or the reverse.
    #[error("expected a {expected} key, found a {found} key")]
    WrongKind {
        /// What the caller asked for.
        expected: &'static str,
        /// What the text holds.
        found: &'static str,
    },
    /// The key text is longer than any key file could be.
    #[error("key text is too long (over {MAX_KEY_TEXT} bytes)")]
    TooLong,
    /// Diffie-Hellman with this public key gives the all-zero result: the key
    /// is of low order and contributes nothing.
    #[error("the peer's public key is of low order (non-contributory Diffie-Hellman result)")]
    NonContributory,
}

/// Which text form a key is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormat {
    /// Padded standard base64 of the 32 raw bytes (WireGuard's form).
    #[default]
    Base64,
    /// PKCS#8 / SPKI PEM (OpenSSL's form, RFC 8410).
    Pem,
}

impl KeyFormat {
    /// Detects the form of a key text: PEM if it holds a `-----BEGIN` line,
    /// base64 otherwise.
    pub fn detect(text: &str) -> KeyFormat {
        if text.trim_start().starts_with("-----BEGIN ") {
            KeyFormat::Pem
        } else {
            KeyFormat::Base64
        }
    }
}

/// An X25519 static secret key (a 32-byte scalar, clamped when used).
///
/// No `Debug`, `Display`, `Clone` or serialization; zeroized on drop.
pub struct SecretKey {
    secret: x25519_dalek::StaticSecret,
    public: PublicKey,
}

impl SecretKey {
    /// Makes a new secret key from the given random source.
    pub fn generate(rng: &mut impl RandomSource) -> Result<SecretKey, RandomError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(bytes.as_mut())?;
        Ok(SecretKey::from_bytes(&bytes))
    }

    /// Takes a secret key from its 32 raw bytes (the caller should zeroize its copy).
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> SecretKey {
        let secret = x25519_dalek::StaticSecret::from(*bytes);
        let public = PublicKey(base_point_mul(&secret, bytes));
        SecretKey { secret, public }
    }

    /// Reads a secret key in either text form (detected).
    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        let bytes = match KeyFormat::detect(check_len(text)?) {
            KeyFormat::Base64 => decode_base64_key(text)?,
            KeyFormat::Pem => {
                let der = pem_decode(text, PEM_PRIVATE, PEM_PUBLIC)?;
                let raw = der
                    .strip_prefix(&PKCS8_PREFIX[..])
                    .ok_or(KeyError::Pem("not a PKCS#8 X25519 private key"))?;
                let key: [u8; KEY_LEN] = raw
                    .try_into()
                    .map_err(|_| KeyError::Pem("not a PKCS#8 X25519 private key"))?;
                Zeroizing::new(key)
            }
        };
        Ok(SecretKey::from_bytes(&bytes))
    }

    /// The public key of this secret (computed once, when the key was made).
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// X25519 with a peer's public key. A non-contributory (all-zero) result
    /// is refused.
    pub fn diffie_hellman(&self, peer: &PublicKey) -> Result<SharedSecret, KeyError> {
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        if !shared.was_contributory() {
            return Err(KeyError::NonContributory);
        }
        Ok(SharedSecret(Zeroizing::new(shared.to_bytes())))
    }

    /// Writes the secret in the given text form (with a trailing newline).
    pub fn to_text(&self, format: KeyFormat) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.secret.to_bytes());
        match format {
            KeyFormat::Base64 => secret_base64(bytes.as_ref(), "\n"),
            KeyFormat::Pem => {
                let mut der = Zeroizing::new(Vec::with_capacity(PKCS8_PREFIX.len() + KEY_LEN));
                der.extend_from_slice(&PKCS8_PREFIX);
                der.extend_from_slice(bytes.as_ref());
                pem_encode(PEM_PRIVATE, &der)
            }
        }
    }

    /// A second copy of this secret, for state that must own it (zeroized
    /// on drop like the first). Not `Clone`, so that copies stay deliberate.
    pub(crate) fn duplicate(&self) -> SecretKey {
        SecretKey {
            secret: self.secret.clone(),
            public: self.public,
        }
    }

    /// The raw 32 bytes of the secret scalar. Handle with care.
    pub fn dangerous_to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }
}

/// The public key of a secret: X25519 of the secret with the base point.
/// Native builds take x25519-dalek's way (the precomputed table, fast);
/// wasm32 builds have no table (it is 30 KB of the browser's download) and
/// use the Montgomery ladder that Diffie-Hellman needs anyway, so the
/// module does not carry a second scalar multiplication (about 1 KB
/// gzipped). Both give the same bytes (the vectors check either way).
#[cfg(not(target_arch = "wasm32"))]
fn base_point_mul(secret: &x25519_dalek::StaticSecret, _: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    x25519_dalek::PublicKey::from(secret).to_bytes()
}

#[cfg(target_arch = "wasm32")]
fn base_point_mul(_: &x25519_dalek::StaticSecret, bytes: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    x25519_dalek::x25519(*bytes, x25519_dalek::X25519_BASEPOINT_BYTES)
}

/// An X25519 public key: 32 bytes, public by nature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Takes a public key from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> PublicKey {
        PublicKey(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Reads a public key in either text form (detected).
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        match KeyFormat::detect(check_len(text)?) {
            KeyFormat::Base64 => Ok(PublicKey(*decode_base64_key(text)?)),
            KeyFormat::Pem => {
                let der = pem_decode(text, PEM_PUBLIC, PEM_PRIVATE)?;
                let raw = der
                    .strip_prefix(&SPKI_PREFIX[..])
                    .ok_or(KeyError::Pem("not an SPKI X25519 public key"))?;
                let key: [u8; KEY_LEN] = raw
                    .try_into()
                    .map_err(|_| KeyError::Pem("not an SPKI X25519 public key"))?;
                Ok(PublicKey(key))
            }
        }
    }

    /// Writes the key in the given text form (base64 has no newline; PEM ends with one).
    pub fn to_text(&self, format: KeyFormat) -> String {
        match format {
            KeyFormat::Base64 => STANDARD.encode(self.0),
            KeyFormat::Pem => {
                let mut der = Vec::with_capacity(SPKI_PREFIX.len() + KEY_LEN);
                der.extend_from_slice(&SPKI_PREFIX);
                der.extend_from_slice(&self.0);
                pem_encode(PEM_PUBLIC, &der).to_string()
            }
        }
    }

    /// The fingerprint, as ssh shows keys: `SHA256:` and unpadded base64 of
    /// SHA-256 of the 32 raw bytes.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(self.0)))
    }
}

impl std::fmt::Display for PublicKey {
    /// Base64, as `wg pubkey` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text(KeyFormat::Base64))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::parse(s)
    }
}

/// The result of a contributory X25519 exchange. Zeroized on drop.
pub struct SharedSecret(Zeroizing<[u8; KEY_LEN]>);

impl SharedSecret {
    /// The result of an X25519 exchange done elsewhere (a key agent, such
    /// as a browser's WebCrypto with a non-extractable key). An all-zero
    /// (non-contributory) result is refused, as by
    /// [`SecretKey::diffie_hellman`].
    pub fn from_agent(bytes: [u8; KEY_LEN]) -> Result<SharedSecret, KeyError> {
        let bytes = Zeroizing::new(bytes);
        if bool::from(bytes.ct_eq(&[0u8; KEY_LEN])) {
            return Err(KeyError::NonContributory);
        }
        Ok(SharedSecret(bytes))
    }

    /// The 32 raw bytes. Handle with care.
    pub fn dangerous_as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// A 32-byte symmetric key: a pre-shared key (`psk`) or the output of
/// [`crate::kdf::pairwise_key`]. No `Debug`/`Display`; zeroized on drop;
/// compared in constant time.
#[derive(Clone)]
pub struct SymmetricKey(Zeroizing<[u8; KEY_LEN]>);

impl SymmetricKey {
    /// Takes a key from its 32 raw bytes (the caller should zeroize its copy).
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> SymmetricKey {
        SymmetricKey(Zeroizing::new(*bytes))
    }

    /// Reads a key written as padded standard base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<SymmetricKey, KeyError> {
        check_len(text)?;
        Ok(SymmetricKey(decode_base64_key(text)?))
    }

    /// Writes the key as padded standard base64 (no newline).
    pub fn to_base64(&self) -> Zeroizing<String> {
        secret_base64(self.0.as_ref(), "")
    }

    /// Writes the key as padded standard base64 and a newline.
    pub fn to_base64_line(&self) -> Zeroizing<String> {
        secret_base64(self.0.as_ref(), "\n")
    }

    /// The 32 raw bytes. Handle with care.
    pub fn dangerous_as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl PartialEq for SymmetricKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}
impl Eq for SymmetricKey {}

fn check_len(text: &str) -> Result<&str, KeyError> {
    if text.len() > MAX_KEY_TEXT {
        Err(KeyError::TooLong)
    } else {
        Ok(text)
    }
}

/// Decodes padded standard base64 of exactly 32 bytes (surrounding whitespace allowed).
fn decode_base64_key(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyError::Unrecognized);
    }
    if text.len() != 44 {
        return Err(KeyError::Base64(
            "expected 44 characters of base64 (32 bytes)",
        ));
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    let mut buf = Zeroizing::new([0u8; 33]);
    let n = STANDARD
        .decode_slice(text, buf.as_mut())
        .map_err(|_| KeyError::Base64("not valid base64"))?;
    if n != KEY_LEN {
        return Err(KeyError::Base64("does not decode to 32 bytes"));
    }
    out.copy_from_slice(&buf[..KEY_LEN]);
    Ok(out)
}

/// Decodes one PEM block with the given label into its DER bytes.
fn pem_decode(text: &str, label: &str, other: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let begin = lines.next().ok_or(KeyError::Unrecognized)?;
    let found = begin
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or(KeyError::Pem("malformed BEGIN line"))?;
    if found != label {
        return Err(if found == other {
            KeyError::WrongKind {
                expected: kind_name(label),
                found: kind_name(other),
            }
        } else {
            KeyError::Pem("not an X25519 key block")
        });
    }
    let end = format!("-----END {label}-----");
    let mut body = Zeroizing::new(String::new());
    let mut ended = false;
    for line in lines.by_ref() {
        if line == end {
            ended = true;
            break;
        }
        if line.starts_with("-----") || line.contains(':') {
            return Err(KeyError::Pem(
                "unexpected header or boundary inside the block",
            ));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(KeyError::Pem("missing END line"));
    }
    if lines.next().is_some() {
        return Err(KeyError::Pem("text after the END line"));
    }
    STANDARD
        .decode(body.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Pem("body is not valid base64"))
}

fn kind_name(label: &str) -> &'static str {
    if label == PEM_PRIVATE {
        "secret"
    } else {
        "public"
    }
}

/// Base64 of a secret, then `tail`, in a zeroizing string allocated at its
/// final size once: a string that grows frees its old buffer unzeroized.
fn secret_base64(secret: &[u8], tail: &str) -> Zeroizing<String> {
    let len = base64::encoded_len(secret.len(), true).unwrap_or(0) + tail.len();
    let mut out = Zeroizing::new(String::with_capacity(len));
    let start = out.as_ptr();
    STANDARD.encode_string(secret, &mut out);
    out.push_str(tail);
    debug_assert_eq!(start, out.as_ptr(), "the buffer moved");
    out
}

/// PEM of DER that may hold a secret, built without growing a buffer (see
/// [`secret_base64`]).
fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = secret_base64(der, "");
    let (begin, end) = ("-----BEGIN ", "-----END ");
    let line = |prefix: &str| prefix.len() + label.len() + "-----\n".len();
    let lines = body.len().div_ceil(64);
    let len = line(begin) + body.len() + lines + line(end);
    let mut out = Zeroizing::new(String::with_capacity(len));
    let start = out.as_ptr();
    for part in [begin, label, "-----\n"] {
        out.push_str(part);
    }
    for chunk in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    for part in [end, label, "-----\n"] {
        out.push_str(part);
    }
    debug_assert_eq!((start, out.len()), (out.as_ptr(), len), "the buffer moved");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7748 section 6.1 (Alice).
    const ALICE_SK: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PK: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

    fn alice() -> SecretKey {
        SecretKey::from_bytes(&hex::decode(ALICE_SK).unwrap().try_into().unwrap())
    }

    #[test]
    fn base64_and_pem_round_trip() {
        let sk = alice();
        assert_eq!(hex::encode(sk.public_key().as_bytes()), ALICE_PK);
        for format in [KeyFormat::Base64, KeyFormat::Pem] {
            let text = sk.to_text(format);
            assert_eq!(KeyFormat::detect(&text), format);
            let back = SecretKey::parse(&text).unwrap();
            assert_eq!(back.public_key(), sk.public_key());
            let pub_text = sk.public_key().to_text(format);
            assert_eq!(PublicKey::parse(&pub_text).unwrap(), sk.public_key());
        }
    }

    #[test]
    fn pem_matches_openssl_layout() {
        let pem = alice().to_text(KeyFormat::Pem);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VuBCIEI"));
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        let pem = alice().public_key().to_text(KeyFormat::Pem);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEA"));
    }

    #[test]
    fn fail_wrong_kind() {
        let sk = alice();
        let pub_pem = sk.public_key().to_text(KeyFormat::Pem);
        assert!(matches!(
            SecretKey::parse(&pub_pem),
            Err(KeyError::WrongKind {
                expected: "secret",
                ..
            })
        ));
        let sk_pem = sk.to_text(KeyFormat::Pem);
        assert!(matches!(
            PublicKey::parse(&sk_pem),
            Err(KeyError::WrongKind {
                expected: "public",
                ..
            })
        ));
    }

    #[test]
    fn fail_bad_text() {
        for bad in [
            "",
            "abc",
            "not base64 at all but exactly 44 characters!",
            "AAAA",
            &"A".repeat(5000),
        ] {
            assert!(PublicKey::parse(bad).is_err(), "{bad:?}");
            assert!(SecretKey::parse(bad).is_err(), "{bad:?}");
        }
        // 33 bytes of base64
        assert!(PublicKey::parse(&STANDARD.encode([1u8; 33])).is_err());
        // unpadded
        assert!(PublicKey::parse(&STANDARD_NO_PAD.encode([1u8; 32])).is_err());
    }

    #[test]
    fn fail_low_order_peer() {
        let zero = PublicKey::from_bytes([0u8; 32]);
        assert!(matches!(
            alice().diffie_hellman(&zero),
            Err(KeyError::NonContributory)
        ));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(matches!(
            alice().diffie_hellman(&PublicKey::from_bytes(one)),
            Err(KeyError::NonContributory)
        ));
    }

    #[test]
    fn fingerprint_form() {
        let fp = alice().public_key().fingerprint();
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), 7 + 43);
    }
}
