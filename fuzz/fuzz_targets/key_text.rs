//! Key text as read from files and the command line: `SecretKey::parse`,
//! `PublicKey::parse` (base64 and PEM, detected) and
//! `SymmetricKey::from_base64` on arbitrary text.
//!
//! A key that is read is written back in both forms, and each form reads
//! back to the same key.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::keys::{KeyFormat, PublicKey, SecretKey, SymmetricKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = KeyFormat::detect(text);
    match SecretKey::parse(text) {
        Ok(secret) => {
            for format in [KeyFormat::Base64, KeyFormat::Pem] {
                let written = secret.to_text(format);
                assert_eq!(KeyFormat::detect(&written), format);
                let back = SecretKey::parse(&written).expect("a written secret key reads back");
                assert_eq!(back.public_key(), secret.public_key());
                assert_eq!(*back.dangerous_to_bytes(), *secret.dangerous_to_bytes());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match PublicKey::parse(text) {
        Ok(key) => {
            for format in [KeyFormat::Base64, KeyFormat::Pem] {
                let written = key.to_text(format);
                assert_eq!(KeyFormat::detect(&written), format);
                let back = PublicKey::parse(&written).expect("a written public key reads back");
                assert_eq!(back, key);
            }
            let fingerprint = key.fingerprint();
            assert!(fingerprint.starts_with("SHA256:"));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(key) = SymmetricKey::from_base64(text) {
        let back = SymmetricKey::from_base64(&key.to_base64()).expect("a written psk reads back");
        assert!(back == key);
    }
});
