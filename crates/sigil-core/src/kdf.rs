//! Key derivation: HKDF-SHA256, HMAC-SHA256, the handshake's `HKDF2`, and
//! the offline pairwise key of `sigil derive`.

use hkdf::Hkdf;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keys::{KEY_LEN, KeyError, PublicKey, SecretKey, SymmetricKey};

/// HMAC-SHA256.
pub type HmacSha256 = hmac::Hmac<Sha256>;

/// The default `context` (HKDF info) of [`pairwise_key`].
pub const DEFAULT_PAIRWISE_CONTEXT: &str = "sigil/1 psk";
const PAIRWISE_LABEL: &[u8] = b"sigil/1 pairwise";

/// HKDF-SHA256 output longer than 255 × 32 bytes was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HKDF-SHA256 output is limited to 8160 bytes")]
pub struct OutputTooLong;

/// HKDF-SHA256 (RFC 5869): extract with `salt` (empty means none), then
/// expand `info` into `out`.
pub fn hkdf_sha256(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), OutputTooLong> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| OutputTooLong)
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC takes keys of every length; this branch cannot be reached.
        unreachable!("HMAC accepts any key length")
    });
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// `HKDF2(ck, ikm)` of sigil/1: HKDF-SHA256 with salt `ck`, input `ikm`,
/// empty info and 64 bytes of output, split into the next chaining key (the
/// first 32 bytes) and a key (the last 32).
pub fn hkdf2(ck: &[u8; 32], ikm: &[u8]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let mut okm = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below the HKDF limit.
    let _ = hkdf_sha256(ck, ikm, &[], okm.as_mut());
    let mut next = Zeroizing::new([0u8; 32]);
    let mut k = Zeroizing::new([0u8; 32]);
    next.copy_from_slice(&okm[..32]);
    k.copy_from_slice(&okm[32..]);
    (next, k)
}

/// The pairwise key two parties derive without talking (`sigil derive`):
///
/// ```text
/// salt = SHA-256("sigil/1 pairwise" || min(A, B) || max(A, B))
/// key  = HKDF-SHA256(salt, X25519(a, B), info = context, L = 32)
/// ```
///
/// `context` defaults to [`DEFAULT_PAIRWISE_CONTEXT`]. Both parties get the
/// same key whichever of them computes it. A low-order peer key is refused.
pub fn pairwise_key(
    secret: &SecretKey,
    peer: &PublicKey,
    context: Option<&[u8]>,
) -> Result<SymmetricKey, KeyError> {
    let ours = secret.public_key();
    let (lo, hi) = if ours <= *peer {
        (ours, *peer)
    } else {
        (*peer, ours)
    };
    let salt = Sha256::new()
        .chain_update(PAIRWISE_LABEL)
        .chain_update(lo.as_bytes())
        .chain_update(hi.as_bytes())
        .finalize();
    let shared = secret.diffie_hellman(peer)?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    let info = context.unwrap_or(DEFAULT_PAIRWISE_CONTEXT.as_bytes());
    // 32 bytes is far below the HKDF limit.
    let _ = hkdf_sha256(&salt, shared.dangerous_as_bytes(), info, key.as_mut());
    Ok(SymmetricKey::from_bytes(&key))
}
