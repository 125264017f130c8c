//! The running transcript hash `h` and chaining key `ck` of sigil/1.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::kdf::{hkdf_sha256, hkdf2, hmac_sha256};
use crate::keys::{PublicKey, SymmetricKey};

/// The protocol name hashed into the first `h`.
pub(crate) const PROTOCOL_NAME: &[u8] = b"sigil/1 X25519 HKDF-SHA256 HMAC-SHA256";
const TRANSPORT_INFO: &[u8] = b"sigil/1 transport";

/// `h` and `ck` at some point of a handshake.
#[derive(Clone)]
pub(crate) struct Transcript {
    h: [u8; 32],
    ck: Zeroizing<[u8; 32]>,
}

impl Transcript {
    /// The state after initialisation: protocol name, prologue, the server's
    /// static key and the optional psk. It depends only on configuration, so
    /// configs compute it once and clone it per handshake.
    pub(crate) fn initial(
        prologue: &[u8],
        server_static: &PublicKey,
        psk: Option<&SymmetricKey>,
    ) -> Transcript {
        let h: [u8; 32] = Sha256::digest(PROTOCOL_NAME).into();
        let mut t = Transcript {
            h,
            ck: Zeroizing::new(h),
        };
        t.mix_hash(prologue);
        t.mix_hash(server_static.as_bytes());
        if let Some(psk) = psk {
            // The second output of HKDF2 is not used here.
            let _ = t.mix_key(psk.dangerous_as_bytes());
        }
        t
    }

    /// `h = H(h || data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.h = Sha256::new()
            .chain_update(self.h)
            .chain_update(data)
            .finalize()
            .into();
    }

    /// `(ck, k) = HKDF2(ck, ikm)`; returns `k`.
    pub(crate) fn mix_key(&mut self, ikm: &[u8]) -> Zeroizing<[u8; 32]> {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        k
    }

    /// `HMAC(k, h)`: the tag that authenticates the transcript so far.
    pub(crate) fn tag(&self, k: &[u8; 32]) -> [u8; 32] {
        hmac_sha256(k, &self.h)
    }

    /// The current `h` (after the last message: the session hash).
    pub(crate) fn hash(&self) -> [u8; 32] {
        self.h
    }

    /// `(k_c2s, k_s2c)` from `HKDF-SHA256(salt = ck, ikm = empty, info = "sigil/1 transport", 64)`.
    pub(crate) fn transport_keys(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below the HKDF limit.
        let _ = hkdf_sha256(self.ck.as_ref(), &[], TRANSPORT_INFO, okm.as_mut());
        let mut c2s = Zeroizing::new([0u8; 32]);
        let mut s2c = Zeroizing::new([0u8; 32]);
        c2s.copy_from_slice(&okm[..32]);
        s2c.copy_from_slice(&okm[32..]);
        (c2s, s2c)
    }
}
